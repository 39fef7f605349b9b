"""Transport on the network itself: min-cost flow (exact W1 over shortest paths), path costs.

``solve_network`` writes the partial transport problem on the edges and solves it with HiGHS
(``scipy.optimize.linprog``, dual simplex, floats: no integer rounding of masses)::

    minimise    sum_e c_e x_e + sum_i ps_i s_i + sum_j pd_j t_j
    subject to  out_v(x) - in_v(x) = sum_{i at v} (a_i - s_i) - sum_{j at v} (b_j - t_j)   for every node v
                0 <= x_e <= capacity_e,  s, t >= 0

With unlimited capacities this is W1 over shortest paths (equal to ``exact`` on the shortest-path
cost matrix); capacities model link power limits. The source x sink plan comes from a path
decomposition of the edge flows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from scipy.optimize import linprog
from scipy.sparse.csgraph import dijkstra

from .core import (
    Penalty,
    Problem,
    TransportError,
    TransportInputError,
    TransportResult,
    check_positive,
    make_problem,
    partial_result,
)

_FLOW_TOL = 1e-12
"""Flows below this fraction of the total mass count as zero in the path decomposition."""
_DIJKSTRA_BLOCK = 2**22
"""Distance entries computed per dijkstra call: bounds memory for many sources on a large graph."""


@dataclass(frozen=True)
class FlowGraph:
    """A directed network given as arrays; an undirected link is two edges.

    Edge k goes from ``edge_src[k]`` to ``edge_dst[k]`` at ``edge_cost[k]`` (>= 0, finite) per unit
    and carries at most ``edge_capacity[k]`` (>= 0, ``np.inf`` or None for unlimited).
    """

    n_nodes: int
    edge_src: np.ndarray
    edge_dst: np.ndarray
    edge_cost: np.ndarray
    edge_capacity: np.ndarray | None = None

    def __post_init__(self) -> None:
        if int(self.n_nodes) != self.n_nodes or self.n_nodes < 0:
            raise TransportInputError(f"graph n_nodes={self.n_nodes} must be an integer >= 0")
        src = _node_ids(self.edge_src, self.n_nodes, "graph edge_src")
        dst = _node_ids(self.edge_dst, self.n_nodes, "graph edge_dst")
        cost = np.array(self.edge_cost, dtype=np.float64)
        cap = np.full(src.size, np.inf) if self.edge_capacity is None else np.array(self.edge_capacity, float)
        for name, arr in (("edge_dst", dst), ("edge_cost", cost), ("edge_capacity", cap)):
            if arr.shape != src.shape:
                raise TransportInputError(f"graph {name} has shape {arr.shape}, expected {src.shape} like edge_src")
        if not np.all(np.isfinite(cost)) or np.any(cost < 0):
            raise TransportInputError("graph edge_cost must be finite and >= 0 (drop an edge instead of inf)")
        if np.isnan(cap).any() or np.any(cap < 0):
            raise TransportInputError("graph edge_capacity must be >= 0 (np.inf for unlimited)")
        for name, arr in (("edge_src", src), ("edge_dst", dst), ("edge_cost", cost), ("edge_capacity", cap)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "n_nodes", int(self.n_nodes))

    @property
    def n_edges(self) -> int:
        return int(self.edge_src.size)


@dataclass(frozen=True)
class NetworkOptions:
    """Options of the 'network' solver: the graph, and where each supply and demand entry sits."""

    graph: FlowGraph
    """The network; its edge costs define the transport cost (a cost matrix is optional)."""
    supply_nodes: np.ndarray
    """Graph node of each supply entry."""
    demand_nodes: np.ndarray
    """Graph node of each demand entry."""
    max_iter: int | None = None
    """HiGHS iteration cap; None: HiGHS's own."""

    def __post_init__(self) -> None:
        if not isinstance(self.graph, FlowGraph):
            raise TransportInputError(f"graph must be a FlowGraph, got {type(self.graph).__name__}")
        check_positive("max_iter", self.max_iter, optional=True)
        for name in ("supply_nodes", "demand_nodes"):
            arr = _node_ids(getattr(self, name), self.graph.n_nodes, name)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)


def network_problem(supply: ArrayLike, demand: ArrayLike, cost: ArrayLike | None, penalty: Penalty,
                    opts: NetworkOptions) -> Problem:
    """The problem of 'network': the default penalty comes from the graph, the cost is optional."""
    default = network_default_penalty(opts.graph) if penalty is None else penalty
    problem = make_problem(supply, demand, cost, default, cost_required=False)
    for side, nodes, n in (("supply", opts.supply_nodes, problem.supply.size),
                           ("demand", opts.demand_nodes, problem.demand.size)):
        if nodes.shape != (n,):
            raise TransportInputError(f"{side}_nodes has shape {nodes.shape}, expected ({n},) like {side}")
    return problem


def _node_ids(x: ArrayLike, n: int, name: str) -> np.ndarray:
    arr = np.array(x)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TransportInputError(f"{name} must be a 1-D array of node indices, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise TransportInputError(f"{name} has node index {arr.min() if arr.min() < 0 else arr.max()} "
                                  f"outside [0, {n})")
    return arr


# -- path costs --------------------------------------------------------------------------------
def shortest_path_costs(n: int, edge_src: ArrayLike, edge_dst: ArrayLike, edge_weight: ArrayLike,
                        sources: ArrayLike, targets: ArrayLike, *, directed: bool = True) -> np.ndarray:
    """Shortest-path cost from each of ``sources`` to each of ``targets``; inf where unreachable.

    Dijkstra runs from the distinct sources only (never all pairs), in blocks so that memory stays
    bounded; parallel edges keep their cheapest weight; zero weights are real edges.
    """
    graph = FlowGraph(n, edge_src, edge_dst, edge_weight)
    src = _node_ids(sources, n, "sources")
    dst = _node_ids(targets, n, "targets")
    csr = _cheapest_csr(graph)
    uniq, inverse = np.unique(src, return_inverse=True)
    out = np.empty((uniq.size, dst.size))
    block = max(1, _DIJKSTRA_BLOCK // max(n, 1))
    for lo in range(0, uniq.size, block):
        dist = dijkstra(csr, directed=directed, indices=uniq[lo:lo + block])
        out[lo:lo + block] = dist[:, dst]
    return out[inverse]


def path_efficiency(n: int, edge_src: ArrayLike, edge_dst: ArrayLike, edge_efficiency: ArrayLike,
                    sources: ArrayLike, targets: ArrayLike, *, directed: bool = True) -> np.ndarray:
    """Best end-to-end efficiency (product of link efficiencies in (0, 1]); 0 where unreachable.

    Multiplicative efficiencies become additive weights -log(eff) >= 0, so the most efficient path
    is a shortest path and its efficiency is exp(-distance).
    """
    eff = np.array(edge_efficiency, dtype=np.float64)
    if eff.ndim != 1 or np.isnan(eff).any() or np.any(eff <= 0) or np.any(eff > 1):
        raise TransportInputError("edge_efficiency must be a 1-D array of values in (0, 1]")
    dist = shortest_path_costs(n, edge_src, edge_dst, -np.log(eff), sources, targets, directed=directed)
    return np.exp(-dist)


def _cheapest_csr(g: FlowGraph) -> sp.csr_matrix:
    order = np.lexsort((g.edge_cost, g.edge_dst, g.edge_src))
    s, d, w = g.edge_src[order], g.edge_dst[order], g.edge_cost[order]
    first = np.ones(s.size, bool)
    first[1:] = (s[1:] != s[:-1]) | (d[1:] != d[:-1])
    return sp.csr_matrix((w[first], (s[first], d[first])), shape=(g.n_nodes, g.n_nodes))


def network_default_penalty(g: FlowGraph) -> float:
    """Per-unit penalty that makes the flow move as much as is feasible (cf. ``default_penalty``).

    An augmenting path in the residual network is simple and its backward edges cost <= 0, so its
    cost is at most min((n_nodes - 1) * max c_e, sum c_e); ps + pd = twice that bound beats it.
    """
    if g.n_edges == 0:
        return 1.0
    bound = min(max(g.n_nodes - 1, 1) * float(g.edge_cost.max()), float(g.edge_cost.sum()))
    return bound if bound > 0 else 1.0


# -- min-cost flow -----------------------------------------------------------------------------
def solve_network(p: Problem, opts: NetworkOptions) -> TransportResult:
    """Min-cost flow of the partial problem on ``opts.graph`` (module docstring)."""
    g = opts.graph
    s_nodes, d_nodes = opts.supply_nodes, opts.demand_nodes
    n_s, n_d, n_e = p.supply.size, p.demand.size, g.n_edges
    mass = max(float(p.supply.sum()), float(p.demand.sum()), np.finfo(float).tiny)
    scale = float(g.edge_cost.max()) if n_e and g.edge_cost.max() > 0 else 1.0
    a_eq = _incidence(g, s_nodes, d_nodes)
    b_eq = (np.bincount(s_nodes, p.supply, g.n_nodes) - np.bincount(d_nodes, p.demand, g.n_nodes)) / mass
    c = np.concatenate([g.edge_cost, p.supply_penalty, p.demand_penalty]) / scale
    bounds = np.zeros((n_e + n_s + n_d, 2))
    bounds[:, 1] = np.inf
    bounds[:n_e, 1] = g.edge_capacity / mass
    options = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}
    if opts.max_iter:
        options["maxiter"] = int(opts.max_iter)
    # dual simplex: IPM + crossover was faster at 3000 nodes but ended in an unknown model status
    # at 10 000 with these tolerances
    res = linprog(c, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs-ds", options=options)
    if res.status not in (0, 1) or res.x is None:
        raise TransportError(f"HiGHS failed on the network flow problem (status {res.status}): {res.message}")
    x = np.maximum(res.x, 0.0)
    flow = x[:n_e]
    served_s = np.maximum(p.supply / mass - x[n_e:n_e + n_s], 0.0)
    served_d = np.maximum(p.demand / mass - x[n_e + n_s:], 0.0)
    plan, pair_cost = decompose_flow(g, flow, s_nodes, d_nodes, served_s, served_d)
    lam = res.eqlin.marginals * scale
    u, v = lam[s_nodes], -lam[d_nodes]
    mean_cost = np.divide(pair_cost, plan, out=np.zeros_like(plan), where=plan > 0)
    status = "optimal" if res.status == 0 else "max_iter_reached"
    return partial_result(p, plan * mass, u, v, "network", status, int(res.nit), edge_flow=flow * mass,
                          cost=mean_cost)


def _incidence(g: FlowGraph, s_nodes: np.ndarray, d_nodes: np.ndarray) -> sp.csc_matrix:
    """Node x variable matrix: +1 at an edge's tail, -1 at its head, +1 / -1 for s_i / t_j."""
    n_e, n_s, n_d = g.n_edges, s_nodes.size, d_nodes.size
    rows = np.concatenate([g.edge_src, g.edge_dst, s_nodes, d_nodes])
    cols = np.concatenate([np.arange(n_e), np.arange(n_e), n_e + np.arange(n_s), n_e + n_s + np.arange(n_d)])
    vals = np.concatenate([np.ones(n_e), -np.ones(n_e), np.ones(n_s), -np.ones(n_d)])
    return sp.csc_matrix((vals, (rows, cols)), shape=(g.n_nodes, n_e + n_s + n_d))


def decompose_flow(g: FlowGraph, flow: np.ndarray, s_nodes: np.ndarray, d_nodes: np.ndarray,
                   inject: np.ndarray, extract: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split an edge flow into source -> sink paths.

    ``inject[i]`` enters at ``s_nodes[i]``, ``extract[j]`` leaves at ``d_nodes[j]``. Each path ends
    at the first node with unmet extraction (conservation keeps holding), so every path exhausts a
    source, a sink or an edge. Cycles met on the way are cancelled. Returns the plan and, per pair,
    the mass-weighted path cost (so that their sum is the edge cost of the flow).
    """
    flow = np.where(flow > _FLOW_TOL, flow, 0.0)
    inject = inject.copy()
    extract = extract.copy()
    order = np.argsort(g.edge_src, kind="stable")
    start = np.searchsorted(g.edge_src[order], np.arange(g.n_nodes + 1))
    cursor = start[:-1].copy()
    sinks_at = _members(d_nodes, g.n_nodes)
    sink_cursor = np.zeros(g.n_nodes, dtype=np.int64)
    plan = np.zeros((s_nodes.size, d_nodes.size))
    pair_cost = np.zeros_like(plan)

    def next_edge(node: int) -> int:
        while cursor[node] < start[node + 1] and flow[order[cursor[node]]] <= _FLOW_TOL:
            cursor[node] += 1
        return int(order[cursor[node]]) if cursor[node] < start[node + 1] else -1

    def next_sink(node: int) -> int:
        sinks = sinks_at[node]
        while sink_cursor[node] < len(sinks) and extract[sinks[sink_cursor[node]]] <= _FLOW_TOL:
            sink_cursor[node] += 1
        return sinks[sink_cursor[node]] if sink_cursor[node] < len(sinks) else -1

    for i in np.flatnonzero(inject > _FLOW_TOL):
        while inject[i] > _FLOW_TOL:
            path, j = _walk(int(s_nodes[i]), g, flow, next_edge, next_sink)
            if j < 0:
                break
            delta = min(inject[i], extract[j], flow[path].min() if path else np.inf)
            flow[path] -= delta
            inject[i] -= delta
            extract[j] -= delta
            plan[i, j] += delta
            pair_cost[i, j] += delta * float(g.edge_cost[path].sum())
    return plan, pair_cost


def _walk(node: int, g: FlowGraph, flow: np.ndarray, next_edge, next_sink) -> tuple[list[int], int]:
    """Follow positive flow from ``node`` to the first node with unmet extraction."""
    path: list[int] = []
    seen = {node: 0}
    while True:
        j = next_sink(node)
        if j >= 0:
            return path, j
        e = next_edge(node)
        if e < 0:
            return path, -1
        path.append(e)
        node = int(g.edge_dst[e])
        if node in seen:  # a cycle (zero cost at an optimum): cancel it and go on from here
            k0 = seen[node]
            cycle = path[k0:]
            flow[cycle] -= flow[cycle].min()
            for k in cycle:
                seen.pop(int(g.edge_dst[k]), None)
            del path[k0:]
        seen[node] = len(path)


def _members(nodes: np.ndarray, n: int) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(n)]
    for k, v in enumerate(nodes):
        out[int(v)].append(k)
    return out
