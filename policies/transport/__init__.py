"""Optimal transport solvers for the allocator: arrays in, a ``TransportResult`` out.

One functional entry point, ``solve(supply, demand, cost, method, options=..., rng=...)``, over the
solvers of the registry ``SOLVERS`` (name -> ``Solver``: its function and its typed options):

=============== ===================================================================================
``exact``        POT network simplex (``ot.emd``) on the balanced problem; LP duals.
``network``      min-cost flow on the graph (``NetworkOptions``: a ``FlowGraph`` and where each
                 entry sits), HiGHS; honours edge capacities; W1 over shortest paths when they
                 are unlimited; per-edge flows in ``edge_flow``.
``sinkhorn``     entropic (log-stabilised, eps-scaled, over-relaxed), ``reg`` relative to the
                 largest cost; falls back to ``exact`` (status 'fallback:<reason>') if it does not
                 converge.
``unbalanced``   KL-relaxed marginals (``reg_m``) for partial service; plan clipped to the marginals.
``hierarchical`` clusters -> coarse exact -> fine exact sub-problems -> leftovers -> sparse exact
                 refinement with a certified lower bound; for thousands of nodes. Its k-means
                 draws from ``rng``.
=============== ===================================================================================

``solve_pairs(supply, demand, rows, cols, cost)`` is exact transport where only the given pairs
can trade (a sparse market: the ot allocator's energy market at scale keeps only the pairs whose
path efficiency can pay); one sparse network simplex, the plan as ``plan_coo``.

Unequal totals are normal: unsent supply and unmet demand are explicit (``unserved_supply`` /
``unserved_demand``) at ``penalty`` per unit; ``np.inf`` costs mark pairs that cannot trade. See
``core`` for the problem every method solves, the duals and the default penalty.

Status vocabulary: 'optimal' (exact, or hierarchical with gap_tol=0 and no pair pricing out),
'converged' (iterative method within its tolerance; hierarchical within ``gap_tol`` of its
certified bound),
'heuristic' (hierarchical without refinement), 'max_iter_reached' / 'max_rounds_reached', and
'fallback:<reason>' (the exact plan replaced a failed iterative one; ``solver`` says 'exact').

Measured (``benchmarks/allocator.py``, ``tests/test_transport.py``): exact at 1000 nodes
(333 x 333) in ~0.02 s; sinkhorn at reg=1e-3 within 0.8 % of exact up to 3000 nodes (2 % at
10 000); hierarchical within 0.3 % at 10 000 nodes (certified <= 1 %) in 0.45-0.65 s of CPU
time against 2.1-3.4 s for exact (shared 2-core machine; euclidean and shortest-path costs).

Adding a solver: write ``solve_x(problem, options)`` and its frozen options dataclass in a module
of this folder, and register a ``Solver`` in ``SOLVERS`` below; the scenario's
``controller.params.solver`` accepts every registered name.

``dense_plan=False`` (any method) returns the plan as coordinates only: ``TransportResult.plan``
is None and ``plan_coo`` (a ``SparsePlan``: rows, cols, mass, shape; ``dense()``, ``tocsr()``)
holds it. 'hierarchical' sets ``plan_coo`` in any case.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .core import (
    Balanced,
    Penalty,
    Problem,
    SparsePlan,
    TransportError,
    TransportInputError,
    TransportResult,
    balance,
    default_penalty,
    make_problem,
)
from .entropic import SinkhornOptions, UnbalancedOptions, solve_sinkhorn, solve_unbalanced, unbalanced_problem
from .exact import ExactOptions, solve_exact, solve_pairs
from .hierarchical import HierarchicalOptions, solve_hierarchical
from .network import (
    FlowGraph,
    NetworkOptions,
    network_problem,
    path_efficiency,
    shortest_path_costs,
    solve_network,
)

__all__ = [
    "METHODS",
    "SOLVERS",
    "Balanced",
    "Site",
    "ExactOptions",
    "FlowGraph",
    "HierarchicalOptions",
    "NetworkOptions",
    "SinkhornOptions",
    "Solver",
    "SparsePlan",
    "TransportError",
    "TransportInputError",
    "TransportResult",
    "UnbalancedOptions",
    "balance",
    "default_penalty",
    "path_efficiency",
    "shortest_path_costs",
    "solve",
    "solve_pairs",
]


def matrix_problem(supply: ArrayLike, demand: ArrayLike, cost: ArrayLike | None, penalty: Penalty,
                   options: Any) -> Problem:
    """The problem of a solver that reads only the cost matrix and the penalties."""
    return make_problem(supply, demand, cost, penalty)


@dataclass(frozen=True)
class Site:
    """Where a problem's entries sit on a network, for the solvers that use more than the cost
    matrix: the graph node of each supply and demand entry, the nodes' positions, the flow graph
    (built only when a solver asks for it), and the caller's entropic settings."""

    supply_nodes: np.ndarray
    demand_nodes: np.ndarray
    positions: np.ndarray
    """(n_nodes, dim)."""
    graph: Callable[[], FlowGraph]
    reg: float = 1e-3
    """Entropic regularisation, relative to the largest cost."""
    reg_m: float = 1.0
    """KL marginal relaxation, relative to the largest cost."""


@dataclass(frozen=True)
class Solver:
    """One entry of the registry: how to pose the problem for a solver and how to solve it."""

    name: str
    options: type
    """Its frozen options dataclass; ``options()`` are the defaults (None if a field is required)."""
    run: Callable[..., TransportResult]
    """``run(problem, options)``, or ``run(problem, options, rng)`` when ``random``."""
    problem: Callable[[ArrayLike, ArrayLike, ArrayLike | None, Penalty, Any], Problem] = matrix_problem
    """Builds the checked ``Problem`` from the arrays, the penalty and the options."""
    random: bool = False
    """The solver draws random numbers (from the ``rng`` given to ``solve``)."""
    penalty: bool = True
    """Takes per-unit penalties for unserved mass ('unbalanced' relaxes its marginals instead)."""
    on_graph: bool = False
    """Solves on a flow graph whose edges define the cost (the options carry the graph)."""
    pairs: bool = False
    """Its optimum of a market given as its feasible pairs alone is ``solve_pairs``'s (an exact
    solver), so the allocator may build a large market sparse for it."""
    at: Callable[[Site], Any] | None = None
    """Its options for a problem posed on a network (``Site``), as the allocator calls it;
    None: the defaults."""

    def options_at(self, site: Site) -> Any:
        """Options for a problem posed on a network (``at``, or the defaults)."""
        return self.options() if self.at is None else self.at(site)


SOLVERS: dict[str, Solver] = {s.name: s for s in (
    Solver("exact", ExactOptions, solve_exact, pairs=True),
    Solver("network", NetworkOptions, solve_network, network_problem, on_graph=True,
           at=lambda site: NetworkOptions(site.graph(), site.supply_nodes, site.demand_nodes)),
    Solver("sinkhorn", SinkhornOptions, solve_sinkhorn, at=lambda site: SinkhornOptions(reg=site.reg)),
    Solver("unbalanced", UnbalancedOptions, solve_unbalanced, unbalanced_problem, penalty=False,
           at=lambda site: UnbalancedOptions(reg=site.reg, reg_m=site.reg_m)),
    Solver("hierarchical", HierarchicalOptions, solve_hierarchical, random=True, pairs=True,
           at=lambda site: HierarchicalOptions(supply_xy=site.positions[site.supply_nodes],
                                               demand_xy=site.positions[site.demand_nodes])),
)}
METHODS: tuple[str, ...] = tuple(SOLVERS)


def solve(supply: ArrayLike, demand: ArrayLike, cost: ArrayLike | None, method: str = "exact", *,
          penalty: Penalty = None, options: Any = None, rng: np.random.Generator | int | None = None,
          dense_plan: bool = True) -> TransportResult:
    """Move ``supply`` (n_s,) to ``demand`` (n_d,) at ``cost`` (n_s, n_d) per unit, ``inf`` = infeasible.

    ``method`` names a solver of ``SOLVERS``; ``options`` are its options (``ExactOptions``,
    ``NetworkOptions``, ...; None takes the defaults). ``penalty``: per unit left unserved, a number
    or a pair (supply side, demand side) of numbers or per-node arrays; None picks a value that
    makes the plan move as much as is feasible, then minimise cost (``default_penalty``; for
    'network' ``network_default_penalty``). Not used by 'unbalanced', whose marginals are relaxed
    by ``reg_m`` instead. ``cost`` may be None for 'network' (the graph defines the costs).
    ``rng`` (a Generator or a seed; None: fresh entropy) feeds the solvers that draw random
    numbers ('hierarchical'). ``dense_plan=False`` returns the plan as coordinates only
    (``plan_coo``, a ``SparsePlan``; ``plan`` is None): 'hierarchical' then never builds the
    (n_s, n_d) array, which at 3300 x 3300 costs 0.01-0.2 s (mostly page faults of a fresh 90 MB
    array). Raises ``TransportInputError`` (a ValueError) for bad inputs.
    """
    solver = _solver(method)
    opts = _options(solver, options)
    problem = solver.problem(supply, demand, cost, penalty, opts)
    res = solver.run(problem, opts, np.random.default_rng(rng)) if solver.random else solver.run(problem, opts)
    if dense_plan and res.plan is None:
        res = replace(res, plan=_read_only(res.plan_coo.dense()))
    elif not dense_plan and res.plan is not None:
        res = replace(res, plan=None, plan_coo=res.plan_coo or SparsePlan.from_dense(res.plan))
    return res


def _solver(method: str) -> Solver:
    if method not in SOLVERS:
        raise TransportInputError(f"method={method!r} is not one of {', '.join(METHODS)}")
    return SOLVERS[method]


def _options(solver: Solver, options: Any) -> Any:
    """The given options if they are the solver's type, else its defaults for None."""
    if options is None:
        required = [f.name for f in fields(solver.options) if f.default is MISSING]
        if required:
            raise TransportInputError(f"method {solver.name!r} needs options={solver.options.__name__}"
                                      f"({', '.join(required)}, ...)")
        return solver.options()
    if not isinstance(options, solver.options):
        raise TransportInputError(f"method {solver.name!r} takes options of type {solver.options.__name__}, "
                                  f"got {type(options).__name__}")
    return options


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr
