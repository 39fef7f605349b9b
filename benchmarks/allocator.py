"""Speed and cost gap of the transport solvers on allocator-like instances.

Nodes sit uniformly in the unit square; a third offer (supply), a third request (demand), the rest
only relay. Masses are uniform on [0, 1] per node, so totals differ (imbalance is normal). Two cost
models:

* ``euclid``: cost = euclidean distance between a supply and a demand node;
* ``graph``: a random geometric graph over all nodes (edge cost = length), cost = shortest-path
  distance (``shortest_path_costs``); the 'network' method solves the same instance on the graph.

'hierarchical-coo' is 'hierarchical' with ``dense_plan=False``: the plan comes back as coordinates
(``plan_coo``) and the (n_s, n_d) array is never built.

For each size and method: median wall and CPU time of one ``solve`` call over ``--repeats`` runs
(CPU time is the steadier figure on a shared machine), the gap (total_cost - exact) / exact value
(exact runs at every size, so no subsampling is needed; 'hierarchical' adds its own certified
bound (total_cost - lower_bound) / value), and the status. 'unbalanced' solves a different
(KL-relaxed) problem, so its column shows the share of the exact plan's moved mass it moves.

    python benchmarks/allocator.py --sizes 100,1000,3000,10000 --repeats 3
"""
from __future__ import annotations

import os

# Single-threaded BLAS: on this shared 2-core machine a two-thread OpenBLAS matrix-vector product
# was measured 50x slower than one thread under load; one thread gives stable, comparable timings.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np
from otmarl.policies.transport import (
    FlowGraph,
    HierarchicalOptions,
    NetworkOptions,
    TransportResult,
    default_penalty,
    shortest_path_costs,
    solve,
)
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

METHODS = ("exact", "network", "sinkhorn", "unbalanced", "hierarchical", "hierarchical-coo")
SLOW_S = 20.0
"""Stop repeating a measurement once its calls add up to this many seconds."""
ENTROPIC_MAX_PAIRS = 20_000_000
"""Sinkhorn / unbalanced beyond this many pairs (about 13 000 nodes) take minutes per call:
skipped (10 000 nodes: sinkhorn 30 s CPU, unbalanced 8 s)."""


@dataclass(frozen=True)
class Instance:
    """One benchmark instance: masses, cost matrix, positions, and the graph for 'network'."""

    supply: np.ndarray
    demand: np.ndarray
    cost: np.ndarray
    supply_xy: np.ndarray
    demand_xy: np.ndarray
    graph: FlowGraph | None
    supply_nodes: np.ndarray
    demand_nodes: np.ndarray


def make_instance(n: int, kind: str, rng: np.random.Generator) -> Instance:
    """``n`` nodes in the unit square, roles and masses as in the module docstring."""
    xy = rng.random((n, 2))
    role = rng.permutation(np.arange(n) % 3)
    s_nodes, d_nodes = np.flatnonzero(role == 0), np.flatnonzero(role == 1)
    supply, demand = rng.random(s_nodes.size), rng.random(d_nodes.size)
    if kind == "euclid":
        cost = cdist(xy[s_nodes], xy[d_nodes])
        return Instance(supply, demand, cost, xy[s_nodes], xy[d_nodes], None, s_nodes, d_nodes)
    radius = np.sqrt(2.0 * np.log(n) / (np.pi * n))  # above the connectivity threshold
    pairs = cKDTree(xy).query_pairs(radius, output_type="ndarray")
    src, dst = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
    length = np.linalg.norm(xy[src] - xy[dst], axis=1)
    graph = FlowGraph(n, src, dst, length)
    cost = shortest_path_costs(n, src, dst, length, s_nodes, d_nodes)
    return Instance(supply, demand, cost, xy[s_nodes], xy[d_nodes], graph, s_nodes, d_nodes)


def run(method: str, inst: Instance) -> TransportResult:
    """One solve call with the method's defaults."""
    if method == "network":
        return solve(inst.supply, inst.demand, None, "network",
                     options=NetworkOptions(inst.graph, inst.supply_nodes, inst.demand_nodes),
                     penalty=default_penalty(inst.cost))  # exact's penalty, so total costs compare
    if method in ("hierarchical", "hierarchical-coo"):
        return solve(inst.supply, inst.demand, inst.cost, "hierarchical",
                     options=HierarchicalOptions(supply_xy=inst.supply_xy, demand_xy=inst.demand_xy),
                     rng=0, dense_plan=method == "hierarchical")
    return solve(inst.supply, inst.demand, inst.cost, method)


def skip_reason(method: str, inst: Instance) -> str | None:
    """Why a method is not run on an instance, or None."""
    if method == "network" and inst.graph is None:
        return "no graph"
    if method in ("sinkhorn", "unbalanced") and inst.cost.size > ENTROPIC_MAX_PAIRS:
        return f"> {ENTROPIC_MAX_PAIRS:,} pairs: minutes per call"
    return None


@dataclass(frozen=True)
class Timing:
    """Median wall and CPU seconds of one call, number of calls, last result."""

    wall_s: float
    cpu_s: float
    runs: int
    result: TransportResult


def timed(method: str, inst: Instance, repeats: int) -> Timing:
    """Up to ``repeats`` calls, fewer once they add up to SLOW_S seconds."""
    times, cpu, res = [], [], None
    while len(times) < repeats and sum(times) < SLOW_S:
        start, start_cpu = time.perf_counter(), time.process_time()
        res = run(method, inst)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return Timing(statistics.median(times), statistics.median(cpu), len(times), res)


def quality(method: str, res: TransportResult, exact: TransportResult) -> str:
    """Gap against exact, or the moved-mass share for 'unbalanced'."""
    if method == "unbalanced":
        return f"moves {res.moved / exact.moved:6.1%}"
    gap = (res.total_cost - exact.total_cost) / exact.value
    if res.lower_bound is None:
        return f"gap {gap:+.2e}"
    return f"gap {gap:+.2e} (certified <= {(res.total_cost - res.lower_bound) / res.value:.1e})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,3000,10000", help="node counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="calls per measurement (median)")
    parser.add_argument("--kinds", default="euclid,graph", help="cost models: euclid, graph")
    parser.add_argument("--methods", default=",".join(METHODS), help="methods to run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"{'kind':6} {'nodes':>6} {'pairs':>11} {'method':16} {'wall s':>8} {'cpu s':>8} {'runs':>4}  "
          f"{'quality':42} status")
    for kind in args.kinds.split(","):
        for n in (int(x) for x in args.sizes.split(",")):
            inst = make_instance(n, kind, rng)
            exact_timing = timed("exact", inst, args.repeats)
            exact = exact_timing.result
            for method in args.methods.split(","):
                head = f"{kind:6} {n:6d} {inst.cost.size:11,d} {method:16}"
                reason = skip_reason(method, inst)
                if reason:
                    print(f"{head} {'':>8} {'':>8} {'':>4}  skipped ({reason})")
                    continue
                t = exact_timing if method == "exact" else timed(method, inst, args.repeats)
                print(f"{head} {t.wall_s:8.4f} {t.cpu_s:8.4f} {t.runs:4d}  {quality(method, t.result, exact):42} "
                      f"{t.result.status}", flush=True)


if __name__ == "__main__":
    main()
