"""The network: graph construction, link arrays and shortest-path costs.

Paths come from ``scipy.sparse.csgraph.dijkstra`` run only from the sources asked for and cached
until the topology changes (a node or link fails or recovers); nothing here builds an n x n matrix
per epoch. Among paths of equal cost the same one is chosen whichever way its cost was found (a
full row or a bounded search) and in whatever order paths are asked for (``Paths.edges``).
Controllers see the network through ``NetworkView``, which has no method that changes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from heapq import heappop, heappush
from math import inf

import networkx as nx
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from otmarl.scenarios import schema as S
from otmarl.scenarios.graphfile import read_graph

ALL_SOURCES_MAX = 64
"""Up to this many nodes, the first path asked for computes the paths from every source: one
Dijkstra call from all of them costs about what a call from one does (scipy's per-call overhead
dominates), and an episode then never pays it again until the topology changes."""
ALL_SOURCES_LATER = (256, 8)
"""Up to 256 nodes, once paths from more than 8 sources have been asked for, the rest are
computed at once (paths from every source of 256 nodes cost about 25 single-source calls)."""
NEAR_BATCH = 256
"""Sources per bounded scipy search when ``Paths.prefetch_near`` fills the cache of ``near``
for many pairs at once (its rows are dense: 256 x n floats at a time)."""
BOUNDED_BATCH = 32
"""Sources per ``Paths.bounded`` call: a few sources span a small sub-graph of a large field."""
NEAR_MIN = 257
"""From this many nodes on, a path between two nodes joined by a link that is up is found by a
search bounded by that link's weight (the best path cannot cost more), unless the source's full
row is cached already: controllers that act between neighbours (random, the direct MARL mode)
then never pay for, or keep, a full row per source (at 10,000 nodes, 10,000 rows are 1.2 GB)."""

LINK_FIELDS = ("latency_s", "bandwidth_kbps", "tx_energy_wh_per_kb", "transfer_efficiency",
               "power_limit_w")


@dataclass
class Links:
    """Undirected links as arrays (one row per link, u < v)."""

    u: np.ndarray
    v: np.ndarray
    latency_s: np.ndarray
    bandwidth_kbps: np.ndarray
    tx_energy_wh_per_kb: np.ndarray
    transfer_efficiency: np.ndarray
    power_limit_w: np.ndarray

    def __len__(self) -> int:
        return len(self.u)


class Positions:
    """Node positions (n, 2) in [0, 1]^2 for maps and geometric decompositions, computed when
    first asked for: a spring layout costs more than building the rest of a small world, and
    most runs (and every MARL episode that is not rendered) never look at it. Its seed is drawn
    when the graph is made, so the topology stream is the same whether or not it is used."""

    def __init__(self, xy: np.ndarray | None = None, graph: nx.Graph | None = None, seed: int = 0):
        self._xy, self._graph, self._seed = xy, graph, seed

    def __call__(self) -> np.ndarray:
        if self._xy is None:
            g, n = self._graph, self._graph.number_of_nodes()
            p = nx.spring_layout(g, seed=self._seed, iterations=50)
            xy = np.array([p[i] for i in range(n)], dtype=float).reshape(n, 2)
            lo, hi = xy.min(0), xy.max(0)
            self._xy, self._graph = (xy - lo) / np.where(hi > lo, hi - lo, 1.0), None
        return self._xy


@dataclass
class Topology:
    """The links of a graph on nodes 0..n-1 as sorted (low, high) pairs without repeats or self
    loops, the per-link parameters a graph file sets (``attrs``: field -> {link row: value}) and
    the node positions."""

    n: int
    edges: np.ndarray
    attrs: dict[str, dict[int, float]]
    positions: Positions

    @classmethod
    def of_graph(cls, g: nx.Graph, positions: Positions) -> Topology:
        """The topology of a networkx graph (its edge attributes named in ``LINK_FIELDS`` kept)."""
        edges = _edge_array((min(a, b), max(a, b)) for a, b in g.edges if a != b)
        attrs: dict[str, dict[int, float]] = {}
        row = {(a, b): e for e, (a, b) in enumerate(edges.tolist())}
        for a, b, data in g.edges(data=True):
            for f in LINK_FIELDS:
                if a != b and f in data:
                    attrs.setdefault(f, {})[row[(min(a, b), max(a, b))]] = float(data[f])
        return cls(g.number_of_nodes(), edges, attrs, positions)

    def graph(self) -> nx.Graph:
        """The topology as a networkx graph (link attributes left out)."""
        g = nx.empty_graph(self.n)
        g.add_edges_from(self.edges.tolist())
        return g


def _edge_array(pairs) -> np.ndarray:
    """(m, 2) int64 array of sorted, distinct (low, high) pairs."""
    return np.array(sorted(set(pairs)), dtype=np.int64).reshape(-1, 2)


def make_topology(scenario: S.Scenario, rng: np.random.Generator) -> Topology:
    """The scenario's network for this run. A random geometric graph is built from a k-d tree
    over the drawn positions (networkx's rule: a link where the distance is at most the radius)
    without a networkx graph, which at 100,000 nodes costs more than the rest of the world."""
    n, topo = scenario.n_nodes, scenario.network.topology
    seed = int(rng.integers(2**31 - 1))
    if isinstance(topo, S.RandomGeometricTopology):
        pos = rng.uniform(0.0, 1.0, (n, 2))
        pairs = cKDTree(pos).query_pairs(topo.radius, p=2.0, output_type="ndarray").astype(np.int64)
        if topo.connect:
            pairs = np.concatenate([pairs, _connecting_links(n, pairs, pos)])
        pairs = np.unique(np.sort(pairs, axis=1), axis=0).reshape(-1, 2)
        return Topology(n, pairs, {}, Positions(pos))
    g, pos = _generated_graph(scenario, topo, seed)
    g = nx.Graph(g)
    g.remove_edges_from(nx.selfloop_edges(g))
    if pos is not None:
        positions = Positions(np.asarray(pos, dtype=float))
    elif g.number_of_nodes() <= 2000:
        positions = Positions(graph=g, seed=int(rng.integers(2**31 - 1)))
    else:
        positions = Positions(rng.uniform(0.0, 1.0, (g.number_of_nodes(), 2)))
    return Topology.of_graph(g, positions)


def make_graph(scenario: S.Scenario, rng: np.random.Generator) -> tuple[nx.Graph, Positions]:
    """The graph on nodes 0..n-1 and its node positions for maps (``make_topology`` as networkx)."""
    t = make_topology(scenario, rng)
    return t.graph(), t.positions


def _generated_graph(scenario: S.Scenario, topo, seed: int) -> tuple[nx.Graph, np.ndarray | None]:
    """A graph of any topology kind but the random geometric one, and positions if it has them."""
    n = scenario.n_nodes
    if isinstance(topo, S.GridTopology):
        g = nx.grid_2d_graph(topo.rows, topo.cols)
        pos = np.array([(c / max(topo.cols - 1, 1), r / max(topo.rows - 1, 1)) for r, c in g.nodes])
        return nx.convert_node_labels_to_integers(g, ordering="sorted"), pos
    if isinstance(topo, S.SmallWorldTopology):
        return (nx.connected_watts_strogatz_graph(n, min(topo.k, n - 1), topo.p, seed=seed) if n > 2
                else nx.path_graph(n)), None
    if isinstance(topo, S.ScaleFreeTopology):
        return (nx.barabasi_albert_graph(n, min(topo.m, n - 1), seed=seed) if n > 1
                else nx.empty_graph(1)), None
    if isinstance(topo, S.StarTopology):
        return nx.star_graph(n - 1), None
    if isinstance(topo, S.TreeTopology):
        return nx.full_rary_tree(topo.branching, n), None
    if isinstance(topo, S.CompleteTopology):
        return nx.complete_graph(n), None
    return read_graph(topo.kind, topo.file).graph, None


def _connecting_links(n: int, pairs: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Links joining every component to the largest: for each other component (largest first,
    ties by lowest node), the closest pair of nodes between it and everything joined so far."""
    adj = csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    count, label = connected_components(adj, directed=False)
    if count <= 1:
        return np.zeros((0, 2), np.int64)
    order = np.argsort(label, kind="stable")
    comps = np.split(order, np.cumsum(np.bincount(label, minlength=count))[:-1])
    comps.sort(key=lambda c: (-len(c), int(c[0])))      # members ascending: c[0] is the lowest
    main, out = comps[0], []
    for c in comps[1:]:
        d = ((pos[c, None, :] - pos[None, main, :]) ** 2).sum(-1)
        i, j = np.unravel_index(np.argmin(d), d.shape)
        out.append((int(c[i]), int(main[j])))
        main = np.concatenate([main, c])
    return np.array(out, np.int64).reshape(-1, 2)


def make_links(g: nx.Graph | Topology, link: S.Link, rng: np.random.Generator) -> Links:
    """Arrays of link parameters: per-edge attributes of a graph file override the defaults."""
    topo = g if isinstance(g, Topology) else Topology.of_graph(g, Positions(np.zeros((0, 2))))
    edges, m = topo.edges, len(topo.edges)
    cols = {}
    for f in LINK_FIELDS:
        vals = getattr(link, f).sample(rng, m)
        for e, v in topo.attrs.get(f, {}).items():
            vals[e] = v
        cols[f] = vals
    return Links(u=edges[:, 0], v=edges[:, 1], **cols)


class Paths:
    """Shortest paths over the links that are up, for one additive edge weight.

    ``row(s)`` gives distances from node ``s`` to every node (inf when unreachable) and
    ``edges(s, t)`` the link indices on the chosen path. Rows are computed on demand, several
    sources at a time, and cached until ``invalidate`` is called.
    """

    def __init__(self, n: int, links: Links, weight: np.ndarray):
        self.n, self.links, self.weight = n, links, np.asarray(weight, float)
        self.link_up = np.ones(len(links), bool)
        self.node_ok = np.ones(n, bool)
        self._lookup: dict[tuple[int, int], int] | None = None
        self._arcs: np.ndarray | None = None
        self._w: list[float] | None = None
        self.version = 0
        self.invalidate()

    @property
    def _edge_lookup(self) -> dict[tuple[int, int], int]:
        """Every link by its (low, high) end pair (paths only ever use links that are up); made
        on first use: controllers that never ask for a path never pay for it."""
        if self._lookup is None:
            L = self.links
            self._lookup = {(a, b): e for e, (a, b) in enumerate(zip(L.u.tolist(), L.v.tolist()))}
        return self._lookup

    @property
    def _graph(self) -> csr_matrix:
        """The links that are up as a symmetric sparse matrix of weights, built on first use
        after a topology change (faults change it most epochs of a large run, and a controller
        that asks for no path then never pays for it). Searches read it as directed: it holds
        both directions of every link already, and scipy would otherwise add its transpose on
        every call (at 100,000 nodes 10 ms a call, 6 % of a day under ot)."""
        if self._csr is None:
            L = self.links
            m = max(len(L), 1)
            if self._arcs is None:     # both directions of every link, by (tail, head): CSR order
                self._arcs = np.lexsort((np.concatenate([L.v, L.u]), np.concatenate([L.u, L.v])))
            arcs = self._arcs[self._use[self._arcs % m]]
            link, back = arcs % m, arcs >= len(L)
            tail, head = np.where(back, L.v[link], L.u[link]), np.where(back, L.u[link], L.v[link])
            ptr = np.concatenate([[0], np.cumsum(np.bincount(tail, minlength=self.n))])
            # a tiny epsilon keeps zero-weight links as explicit edges of the sparse graph
            self._csr = csr_matrix((np.maximum(self.weight[link], 1e-300), head, ptr),
                                   shape=(self.n, self.n))
        return self._csr

    @property
    def _graph_weight(self) -> list[float]:
        """Each link's weight as the searches see it (zero raised to the graph's epsilon)."""
        if self._w is None:
            self._w = np.maximum(self.weight, 1e-300).tolist()
        return self._w

    def invalidate(self, link_up: np.ndarray | None = None, node_ok: np.ndarray | None = None) -> None:
        if link_up is not None:
            self.link_up = link_up.copy()
        if node_ok is not None:
            self.node_ok = node_ok.copy()
        L = self.links
        use = self.link_up & self.node_ok[L.u] & self.node_ok[L.v]
        self._csr: csr_matrix | None = None
        self._dist: dict[int, np.ndarray] = {}
        self._edges: dict[tuple[int, int], list[int]] = {}
        self._near: dict[tuple[int, int], tuple[float, list[int]]] = {}
        self._use = use
        self.version += 1

    def ensure(self, sources) -> None:
        need = sorted({int(s) for s in np.atleast_1d(sources)} - self._dist.keys())
        if not need:
            return
        most, after = ALL_SOURCES_LATER
        if self.n <= ALL_SOURCES_MAX or (self.n <= most and len(self._dist) + len(need) > after):
            need = [s for s in range(self.n) if s not in self._dist]
        d = dijkstra(self._graph, directed=True, indices=need)
        for k, s in enumerate(need):
            d[k, s] = 0.0 if self.node_ok[s] else np.inf
            self._dist[s] = d[k]

    def rows(self, sources, limit: float | None = None) -> np.ndarray:
        """Distances (len(sources), n). With ``limit``: only those up to it, inf beyond (the same
        whichever way they were found); from ``NEAR_MIN`` nodes on, a source without a cached
        row is then searched only that far, in one scipy call for all of them, and not cached."""
        src = np.atleast_1d(np.asarray(sources, np.int64))
        if len(src) == 0:
            return np.zeros((0, self.n))
        if limit is None or self.n < NEAR_MIN:
            self.ensure(src)
            out = np.stack([self._dist[int(s)] for s in src])
        else:
            cached = np.array([int(s) in self._dist for s in src.tolist()], bool)
            if not cached.any():      # scipy's searches stop at the limit: inf beyond it already
                out = dijkstra(self._graph, directed=True, indices=src, limit=limit)
                out[np.arange(len(src)), src] = np.where(self.node_ok[src], 0.0, np.inf)
                return out
            out = np.empty((len(src), self.n))
            for k in np.flatnonzero(cached):
                out[k] = self._dist[int(src[k])]
            todo = np.flatnonzero(~cached)
            if len(todo):
                part = src[todo]
                out[todo] = dijkstra(self._graph, directed=True, indices=part, limit=limit)
                out[todo, part] = np.where(self.node_ok[part], 0.0, np.inf)
        if limit is not None:
            out[out > limit] = np.inf
        return out

    def near(self, s: int, t: int) -> tuple[float, list[int]] | None:
        """(cost, link indices) of the best path s -> t found by a search bounded by the weight of
        the link s-t; None when the network is small (rows are cheap there), the source's row is
        cached, or no link that is up joins s and t. Of paths of equal cost it keeps the canonical
        one (``_canonical``), the same a full row gives."""
        if self.n < NEAR_MIN or s in self._dist:
            return None
        hit = self._near.get((s, t))
        if hit is not None:
            return hit
        e = self._edge_lookup.get((min(s, t), max(s, t)))
        if e is None or not self._use[e]:
            return None
        limit = max(float(self.weight[e]), 1e-300)    # the graph's weight of the link
        ptr, nbr, wt = self._graph.indptr, self._graph.indices, self._graph.data
        dist, heap, done = {s: 0.0}, [(0.0, s)], set()
        while heap:
            d, u = heappop(heap)
            if d > dist.get(t, inf):      # every node as close as t is settled: the path is known
                break
            if u in done:
                continue
            done.add(u)
            a, b = ptr[u], ptr[u + 1]
            for v, w in zip(nbr[a:b].tolist(), wt[a:b].tolist()):
                nd = d + w
                if nd <= limit and nd < dist.get(v, inf):
                    dist[v] = nd
                    heappush(heap, (nd, v))
        hit = self._near[(s, t)] = (dist[t], self._canonical(s, t, lambda v: dist.get(v, inf)))
        return hit

    def prefetch_near(self, sources, targets) -> None:
        """Fill the cache of ``near`` for many pairs (``sources[k]``, ``targets[k]``) at once:
        one search from each distinct source, bounded by the heaviest of its pairs' links, in
        scipy (``NEAR_BATCH`` sources per call) instead of one Python search per pair. Each
        entry is what ``near`` would give: the distances of the nodes the canonical walk reads
        (those no farther than the target) are the same floats whichever search found them."""
        if self.n < NEAR_MIN:
            return
        todo: dict[int, list[tuple[int, float]]] = {}
        for a, b in zip(np.atleast_1d(sources).tolist(), np.atleast_1d(targets).tolist()):
            if a in self._dist or (a, b) in self._near:
                continue
            e = self._edge_lookup.get((min(a, b), max(a, b)))
            if e is not None and self._use[e]:
                todo.setdefault(a, []).append((b, max(float(self.weight[e]), 1e-300)))
        src = sorted(todo)
        for lo in range(0, len(src), NEAR_BATCH):
            part = src[lo:lo + NEAR_BATCH]
            limit = max(w for a in part for _, w in todo[a])
            rows = dijkstra(self._graph, directed=True, indices=part, limit=limit)
            for row, a in zip(rows, part):
                for b, _ in todo[a]:
                    self._near[(a, b)] = (float(row[b]), self._canonical(a, b, row.item))

    def bounded(self, sources, limit: float) -> tuple[np.ndarray, np.ndarray]:
        """Distances from ``sources`` (their rows not cached) up to ``limit``, over only the
        nodes some source reaches within it: (len(sources), len(nodes)) and ``nodes`` (ascending).
        One search from all the sources at once finds those nodes; the searches from each then run
        on the sub-graph they span, which holds every path no longer than ``limit`` (each node of
        such a path is that close to its source), so the distances are the floats a search on the
        whole graph gives. A few sources at a time reach a small part of a large field: at
        100,000 nodes a row of the whole graph is 0.8 MB to fill, most of it with inf."""
        src = np.atleast_1d(np.asarray(sources, np.int64))
        g = self._graph
        near = dijkstra(g, directed=True, indices=src, limit=limit, min_only=True)
        nodes = np.flatnonzero(near < np.inf)
        sub = g[nodes][:, nodes]
        at = np.searchsorted(nodes, src)
        d = np.atleast_2d(dijkstra(sub, directed=True, indices=at, limit=limit))
        d[np.arange(len(src)), at] = np.where(self.node_ok[src], 0.0, np.inf)
        return d, nodes

    def prefetch_within(self, sources, targets, limit: float) -> None:
        """Fill the path cache for pairs (``sources[k]``, ``targets[k]``) at most ``limit`` apart:
        one search from each distinct source whose row is not cached, bounded by ``limit``,
        ``NEAR_BATCH`` sources per scipy call, and no row kept (at 100,000 nodes a full row is
        0.8 MB, and a market's transfers start from thousands of sources). The paths are the
        canonical ones a full row gives: the walk reads only nodes no farther than the target
        (``prefetch_near``). Pairs farther apart than ``limit`` are left to ``edges``."""
        if self.n < NEAR_MIN:
            return
        todo: dict[int, list[int]] = {}
        for a, b in zip(np.atleast_1d(sources).tolist(), np.atleast_1d(targets).tolist()):
            if a != b and a not in self._dist and (a, b) not in self._edges and self.node_ok[a]:
                todo.setdefault(a, []).append(b)
        src = sorted(todo)
        at = np.full(self.n, -1, np.int64)
        for lo in range(0, len(src), BOUNDED_BATCH):
            part = src[lo:lo + BOUNDED_BATCH]
            rows, nodes = self.bounded(part, limit)
            at[nodes] = np.arange(len(nodes))
            for row, a in zip(rows, part):
                dist = _on(row, at)
                for b in todo[a]:
                    if dist(b) < np.inf:
                        self._edges[(a, b)] = self._canonical(a, b, dist)
            at[nodes] = -1

    def _canonical(self, s: int, t: int, dist) -> list[int]:
        """Link indices of the canonical shortest path s -> t given exact distances from s.

        Walking back from t, the predecessor of a node v is the lowest-numbered neighbour u with
        dist(u) + w(u, v) == dist(v) and dist(u) < dist(v). The choice depends on the distances
        alone, and those are the same floats whichever search found them (each is the least sum
        over its neighbours, a fixed point no visiting order changes), so a path does not depend
        on the order of queries or on how its row was computed. Where links of zero weight leave
        several nodes at the same distance, a breadth-first search over them (lowest numbers first)
        reaches the nearest one with a closer neighbour."""
        out, cur = [], t
        while cur != s:
            hops = self._step_back(s, cur, dist)
            for a, b in zip(hops, hops[1:]):
                out.append(self._edge_lookup[(min(a, b), max(a, b))])
            cur = hops[-1]
        out.reverse()
        return out

    def _tight(self, v: int, dist) -> tuple[list[int], list[int]]:
        """Neighbours u of v on a shortest path to v: (closer than v, as close as v), ascending."""
        ptr, nbr, wt = self._graph.indptr, self._graph.indices, self._graph.data
        a, b = ptr[v], ptr[v + 1]
        dv, closer, level = dist(v), [], []
        for u, w in zip(nbr[a:b].tolist(), wt[a:b].tolist()):
            du = dist(u)
            if du + w == dv:
                (closer if du < dv else level).append(u)
        return sorted(closer), sorted(level)

    def _step_back(self, s: int, v: int, dist) -> list[int]:
        """Nodes from v back to its canonical predecessor at a smaller distance (or to s)."""
        parent, queue = {v: v}, [v]
        for x in queue:          # breadth first over nodes at v's distance (usually just v)
            closer, level = self._tight(x, dist)
            if x == s or closer:
                chain = [x]
                while chain[-1] != v:
                    chain.append(parent[chain[-1]])
                chain.reverse()
                return chain if x == s else chain + [closer[0]]
            for u in level:
                if u not in parent:
                    parent[u] = x
                    queue.append(u)
        raise KeyError((s, v))

    def edges(self, s: int, t: int) -> list[int]:
        """Link indices on the path from s to t ([] when s == t); raises KeyError if unreachable.
        Cached until the topology changes: do not modify the list."""
        hit = self._edges.get((s, t))
        if hit is not None:
            return hit
        near = self.near(s, t)
        if near is not None:       # the canonical path, as a full row would give it
            self._edges[(s, t)] = near[1]
            return near[1]
        row = self._dist.get(s)
        if row is None:
            self.ensure([s])
            row = self._dist[s]
        if not np.isfinite(row[t]):
            raise KeyError((s, t))
        out = self._edges[(s, t)] = self._canonical(s, t, row.item)
        return out

    def cost(self, s: int, t: int) -> float:
        """Path cost from s to t (inf when unreachable). A path already found (``edges``) gives
        it without a search: its weights summed from s are the float the search computed (each
        of its links is tight, ``_tight``: dist(v) == dist(u) + w exactly)."""
        d = self._dist.get(s)
        if d is None:
            path = self._edges.get((s, t))
            if path is not None:
                total, w = 0.0, self._graph_weight
                for e in path:
                    total += w[e]
                return total
            near = self.near(s, t)
            if near is not None:
                return near[0]
            self.ensure([s])
            d = self._dist[s]
        return float(d[t])

    def along(self, s: int, t: int, values: np.ndarray) -> float:
        """Sum of a per-link quantity along the path s -> t."""
        return float(np.sum(values[self.edges(s, t)])) if s != t else 0.0


class NetworkState:
    """The graph's live state: links and nodes up or down, and the two path systems.

    Energy follows the most efficient path (weight -log efficiency); tasks follow the fastest path
    for a task of the scenario's mean data size (weight latency + mean_kb / bandwidth).
    """

    def __init__(self, n: int, links: Links, mean_kb: float):
        self.n, self.links = n, links
        self.energy = Paths(n, links, -np.log(links.transfer_efficiency))
        self.task = Paths(n, links, links.latency_s + mean_kb / links.bandwidth_kbps)
        self.link_up = np.ones(len(links), bool)
        self.node_failed = np.zeros(n, bool)
        self._routes: dict[tuple[int, int], tuple[float, float, float]] = {}
        self._energy_routes: dict[tuple[int, int], tuple[list[int], float]] = {}

    def set_state(self, link_up: np.ndarray, node_failed: np.ndarray) -> None:
        if np.array_equal(link_up, self.link_up) and np.array_equal(node_failed, self.node_failed):
            return
        self.link_up, self.node_failed = link_up.copy(), node_failed.copy()
        for p in (self.energy, self.task):
            p.invalidate(link_up, ~node_failed)
        self._routes, self._energy_routes = {}, {}

    def energy_efficiency(self, sources, targets=None, least: float | None = None) -> np.ndarray:
        """Path efficiency from each source to each target (0 when unreachable). The network is
        undirected, so the shortest-path rows are computed from the smaller side (a market often
        has many more offers than requests, and every row is a Dijkstra run). ``least`` (0 .. 1):
        efficiencies below it count as 0, and the searches stop there (``Paths.rows``)."""
        limit = None if least is None or least <= 0 else _limit(least)
        if targets is None:
            return np.exp(-self.energy.rows(sources, limit))
        src, dst = np.atleast_1d(np.asarray(sources, np.int64)), np.atleast_1d(np.asarray(targets, np.int64))
        if len(dst) < len(src):
            return self.energy_efficiency(dst, src, least).T
        if limit is None:
            return np.exp(-self.energy.rows(src)[:, dst])
        # bounded rows are not cached: made NEAR_BATCH at a time and cut to the targets at once,
        # so that a market of thousands of sources never holds thousands of full rows
        out = np.empty((len(src), len(dst)))
        for lo in range(0, len(src), NEAR_BATCH):
            out[lo:lo + NEAR_BATCH] = np.exp(-self.energy.rows(src[lo:lo + NEAR_BATCH], limit)[:, dst])
        return out

    def energy_pairs(self, sources, targets, least: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs of ``energy_efficiency(sources, targets, least)`` with a path, kept sparse:
        (source index, target index, efficiency), sorted by source, then target. No
        (sources x targets) array is made: rows are searched ``NEAR_BATCH`` at a time from the
        smaller side, each batch cut to its reachable pairs at once."""
        limit = _limit(max(least, 1e-300))
        src, dst = np.atleast_1d(np.asarray(sources, np.int64)), np.atleast_1d(np.asarray(targets, np.int64))
        swap = len(dst) < len(src)
        a, b = (dst, src) if swap else (src, dst)
        at = np.full(self.n, -1, np.int64)       # each node's index among the targets (-1: none)
        at[b] = np.arange(len(b))
        parts = []
        for lo in range(0, len(a), BOUNDED_BATCH):
            d, nodes = self.energy.bounded(a[lo:lo + BOUNDED_BATCH], limit)
            r, c = np.nonzero(d < np.inf)
            keep = at[nodes[c]] >= 0
            r, c = r[keep], c[keep]
            parts.append((r + lo, at[nodes[c]], np.exp(-d[r, c])))
        r, c, eff = (np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in range(3))
        i, j = (c, r) if swap else (r, c)
        order = np.lexsort((j, i))
        return i[order].astype(np.int64), j[order].astype(np.int64), eff[order]

    def energy_route(self, s: int, t: int) -> tuple[list[int], float]:
        """(link indices, efficiency) of the energy path s -> t; ([], 0.0) when unreachable.
        Cached until the topology changes: do not modify the list."""
        hit = self._energy_routes.get((s, t))
        if hit is None:
            eff = float(np.exp(-self.energy.cost(s, t)))     # as energy_efficiency computes it
            hit = self._energy_routes[(s, t)] = (self.energy.edges(s, t), eff) if eff > 0 else ([], 0.0)
        return hit

    def task_route(self, s: int, t: int) -> tuple[float, float, float]:
        """(latency_s, seconds per kB, Wh per kB) summed along the task path s -> t; raises
        KeyError when t cannot be reached. Cached until the topology changes."""
        hit = self._routes.get((s, t))
        if hit is None:
            L = self.links
            e = self.task.edges(s, t)
            hit = self._routes[(s, t)] = (float(L.latency_s[e].sum()),
                                          float((1.0 / L.bandwidth_kbps[e]).sum()),
                                          float(L.tx_energy_wh_per_kb[e].sum()))
        return hit


def _limit(least: float) -> float:
    """The energy path weight (-log efficiency) of a least efficiency in (0, 1]."""
    return float(-np.log(min(least, 1.0)))


def _on(row: np.ndarray, at: np.ndarray):
    """Distance of a node from a row over a node subset (``at``: each node's column, -1: none)."""
    def dist(v: int) -> float:
        k = at[v]
        return float(row[k]) if k >= 0 else inf
    return dist


def _read_only(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


class PathView:
    """Read-only queries on one path system of the world (``rows``, ``edges``, ``cost``).

    ``version`` changes whenever the topology does (a node or link fails or recovers)."""

    __slots__ = ("_paths",)

    def __init__(self, paths: Paths):
        self._paths = paths

    @property
    def version(self) -> int:
        return self._paths.version

    def rows(self, sources) -> np.ndarray:
        """Distances (len(sources), n), a fresh array."""
        return self._paths.rows(sources)

    def edges(self, s: int, t: int) -> list[int]:
        """Link indices on the path s -> t (cached: do not modify the list)."""
        return self._paths.edges(s, t)

    def cost(self, s: int, t: int) -> float:
        return self._paths.cost(s, t)


class NetworkView:
    """What a controller sees of the network: the links (read-only arrays), which are up, and
    path queries. It holds no method that changes the world's network state."""

    __slots__ = ("_net", "links", "energy", "task")

    def __init__(self, net: NetworkState):
        self._net = net
        L = net.links
        self.links = Links(**{f: _read_only(getattr(L, f)) for f in ("u", "v") + LINK_FIELDS})
        self.energy, self.task = PathView(net.energy), PathView(net.task)

    @property
    def link_up(self) -> np.ndarray:
        """Links that are up now (read-only)."""
        return _read_only(self._net.link_up)

    def energy_efficiency(self, sources, targets=None, least: float | None = None) -> np.ndarray:
        """Path efficiency from each source to each target (0 when unreachable, or below
        ``least``)."""
        return self._net.energy_efficiency(sources, targets, least)

    def energy_pairs(self, sources, targets, least: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (source index, target index, efficiency) of every pair at least ``least``
        efficient, sorted (``NetworkState.energy_pairs``)."""
        return self._net.energy_pairs(sources, targets, least)

    def energy_route(self, s: int, t: int) -> tuple[list[int], float]:
        """(link indices, efficiency) of the energy path s -> t; ([], 0.0) when unreachable."""
        return self._net.energy_route(s, t)

    def task_route(self, s: int, t: int) -> tuple[float, float, float]:
        """(latency_s, seconds per kB, Wh per kB) along the task path s -> t; KeyError when
        t cannot be reached."""
        return self._net.task_route(s, t)

    def prefetch_routes(self, kind: str, sources, targets, limit: float | None = None) -> None:
        """Find the paths between many neighbours (``sources[k]``, ``targets[k]``) of the
        ``kind`` 'energy' or 'task' at once, so that the route queries that follow are cache
        hits (a controller about to ask for hundreds of one-hop routes). With ``limit`` (the
        largest path cost among the pairs), any pairs, not only neighbours
        (``Paths.prefetch_within``)."""
        paths = getattr(self._net, kind)
        if limit is None:
            paths.prefetch_near(sources, targets)
        else:
            paths.prefetch_within(sources, targets, limit)
