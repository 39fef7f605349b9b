"""Shortest-path ties: the path chosen among equal-cost ones does not depend on the order of
queries, nor on whether a bounded search (from 257 nodes on) or a full row found it."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from otmarl.simulator.network import NEAR_MIN, Links, Paths


def _grid_links(rows: int, cols: int, diagonals: bool = False) -> Links:
    g = nx.grid_2d_graph(rows, cols)
    if diagonals:
        g.add_edges_from(((r, c), (r + 1, c + 1)) for r in range(rows - 1) for c in range(cols - 1))
    g = nx.convert_node_labels_to_integers(g, ordering="sorted")
    e = np.array(sorted((min(a, b), max(a, b)) for a, b in g.edges), np.int64)
    one = np.ones(len(e))
    return Links(e[:, 0], e[:, 1], one, one, one, one, one)


def _ask(paths: Paths, queries: list[tuple[int, int]]) -> dict:
    return {(s, t): (tuple(paths.edges(s, t)), paths.cost(s, t)) for s, t in queries}


@pytest.mark.parametrize("zero_links", [0, 40])
def test_equal_cost_paths_do_not_depend_on_query_order(zero_links):
    """An 18 x 18 grid (324 nodes) with unit weights and diagonals of weight 3 has many shortest
    paths between most pairs, diagonal neighbours included (the two ways round the square tie:
    cost 2); some links of zero weight add plateaus of equal distance. Neighbours (found by the
    bounded search) and distant pairs (full rows), asked in three shuffled orders, get the same
    links and costs each time."""
    links = _grid_links(18, 18, diagonals=True)
    n = 324
    assert n >= NEAR_MIN
    rng = np.random.default_rng(7)
    weight = np.where(links.v - links.u == 19, 3.0, 1.0)      # diagonals join i and i + 19
    weight[rng.choice(len(links), zero_links, replace=False)] = 0.0
    near = [(int(a), int(b)) for a, b in zip(links.u[::7], links.v[::7])]
    near += [(b, a) for a, b in near[::3]]
    far = [(int(a), int(b)) for a, b in rng.integers(0, n, (60, 2)) if a != b]
    queries = near + far
    answers = []
    for order in range(4):
        q = [queries[i] for i in np.random.default_rng(order).permutation(len(queries))]
        p = Paths(n, links, weight)
        if order == 2:
            p.ensure(range(n))         # every row first: no bounded search at all
        if order == 3:                 # the neighbours' searches batched in scipy first
            p.prefetch_near([a for a, _ in near], [b for _, b in near])
            assert set(near) <= p._near.keys()
        answers.append(_ask(p, q))
    assert answers[0] == answers[1] == answers[2] == answers[3]
    for (s, t), (edges, cost) in answers[0].items():
        # a path from s to t whose weights add up to the cost
        assert sum(weight[e] for e in edges) == pytest.approx(cost, abs=1e-12)
        ends = np.concatenate([links.u[list(edges)], links.v[list(edges)]])
        odd = np.flatnonzero(np.bincount(ends, minlength=n) % 2)
        assert sorted(odd.tolist()) == sorted([s, t])


def test_the_canonical_path_takes_the_lowest_numbered_predecessor():
    """A 2 x 2 grid 0-1 / 2-3: from 0 to 3 both 0-1-3 and 0-2-3 cost 2; walking back from 3 the
    lower-numbered predecessor, 1, is taken; and from 3 to 0, walking back from 0, again 1."""
    links = _grid_links(2, 2)            # links (0,1), (0,2), (1,3), (2,3)
    p = Paths(4, links, np.ones(4))
    assert p.edges(0, 3) == [0, 2]
    assert p.edges(3, 0) == [2, 0]


def test_batched_neighbour_searches_equal_one_search_each():
    """Random float weights on a random geometric graph of 400 nodes: the costs (bit for bit)
    and links of every linked pair are the same whether each was searched on its own or all
    were searched in batches of scipy calls."""
    g = nx.random_geometric_graph(400, 0.09, seed=3)
    e = np.array(sorted((min(a, b), max(a, b)) for a, b in g.edges), np.int64)
    one = np.ones(len(e))
    links = Links(e[:, 0], e[:, 1], one, one, one, one, one)
    weight = np.random.default_rng(5).uniform(0.01, 1.0, len(e))
    pairs = [(int(a), int(b)) for a, b in e[::2]] + [(int(b), int(a)) for a, b in e[1::2]]
    one_each = Paths(400, links, weight)
    batched = Paths(400, links, weight)
    batched.prefetch_near([a for a, _ in pairs], [b for _, b in pairs])
    for a, b in pairs:
        want = one_each.near(a, b)
        assert batched._near[(a, b)] == want and want is not None


def test_bounded_prefetch_of_any_pairs_gives_the_paths_of_full_rows():
    """Multi-hop pairs on a random geometric graph of 400 nodes (random float weights): bounded
    searches (``prefetch_within``) give the links a full row gives, keep no row, and leave the
    pairs beyond the bound alone."""
    g = nx.random_geometric_graph(400, 0.09, seed=4)
    e = np.array(sorted((min(a, b), max(a, b)) for a, b in g.edges), np.int64)
    one = np.ones(len(e))
    links = Links(e[:, 0], e[:, 1], one, one, one, one, one)
    rng = np.random.default_rng(6)
    weight = rng.uniform(0.01, 1.0, len(e))
    full, bounded = Paths(400, links, weight), Paths(400, links, weight)
    src, dst = rng.integers(0, 400, 300), rng.integers(0, 400, 300)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    full.ensure(np.unique(src))
    cost = np.array([full.cost(int(a), int(b)) for a, b in zip(src, dst)])
    ok = np.isfinite(cost)
    limit = float(np.median(cost[ok]))
    bounded.prefetch_within(src, dst, limit)
    assert not bounded._dist
    near = ok & (cost <= limit)
    assert near.sum() > 50 and (~near & ok).sum() > 50
    for a, b, inside in zip(src.tolist(), dst.tolist(), near.tolist()):
        assert ((a, b) in bounded._edges) == inside
        if inside:
            assert bounded._edges[(a, b)] == full.edges(a, b)
            assert bounded.cost(a, b) == full.cost(a, b)     # the path's weights summed, bit for bit
    assert not bounded._dist                                  # no search was needed for that
