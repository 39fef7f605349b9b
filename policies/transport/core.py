"""Shared pieces of the transport solvers: errors, the result type, input checks, balancing.

Every solver answers the same *partial transport* problem. Given supplies ``a`` (n_s,), demands
``b`` (n_d,) and costs ``C`` (n_s, n_d) with ``inf`` for pairs that cannot trade::

    minimise    sum_ij C_ij P_ij + sum_i ps_i s_i + sum_j pd_j t_j
    subject to  sum_j P_ij + s_i = a_i,   sum_i P_ij + t_j = b_j,   P, s, t >= 0,
                P_ij = 0 where C_ij = inf

``s`` is unserved supply (it stays home), ``t`` unserved demand, ``ps`` / ``pd`` the penalties per
unit. Its LP dual is ``max a.u + b.v`` s.t. ``u_i + v_j <= C_ij``, ``u_i <= ps_i``, ``v_j <= pd_j``:
``u_i`` is the marginal cost of one more unit offered at supply i, ``v_j`` of one more unit requested
at demand j (the shadow prices reported in ``TransportResult.u`` / ``.v``).

The matrix solvers see it as a balanced problem (``balance``): a dummy demand column absorbs unsent
supply at cost ``ps``, a dummy supply row covers unmet demand at cost ``pd``, and the dummy/dummy
cell (cost 0) carries the mass that is moved. Infeasible pairs get a finite ``big_m > max(ps)+max(pd)``
so that any mass there could be rerouted through both dummies for less: the optimum puts none there,
and the solvers check it.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from otmarl.scenarios.errors import OtmarlError

Penalty = float | tuple[ArrayLike, ArrayLike] | None


class TransportError(OtmarlError):
    """A transport solver failed or returned a plan that breaks the problem's constraints."""


class TransportInputError(TransportError, ValueError):
    """Arrays handed to a transport solver that do not describe a valid problem."""


def sparse_zeros(shape: tuple[int, int]) -> np.ndarray:
    """``np.zeros(shape)`` for an array that will stay mostly zero.

    A large one comes from its own anonymous memory mapping, without the transparent-huge-page
    hint numpy gives its large allocations: filling a few entries then faults in only the 4 KiB
    pages they touch. Measured at 3300 x 3300 with 7000 entries: 14 ms every time, against 7 ms
    to 290 ms with huge pages (when the kernel has to compact memory to find them).
    """
    size = int(np.prod(shape)) * 8
    if size < 1 << 24:
        return np.zeros(shape)
    return np.frombuffer(mmap.mmap(-1, size), dtype=np.float64).reshape(shape)


@dataclass(frozen=True)
class SparsePlan:
    """A plan as coordinates: ``mass[k]`` moves from supply ``rows[k]`` to demand ``cols[k]``.

    Pairs are unique and sorted by (row, col); masses are > 0; ``shape`` = (n_s, n_d).
    """

    rows: np.ndarray
    cols: np.ndarray
    mass: np.ndarray
    shape: tuple[int, int]

    @staticmethod
    def from_dense(plan: np.ndarray) -> SparsePlan:
        rows, cols = np.nonzero(plan > 0)
        return SparsePlan(_frozen(rows.astype(np.int64)), _frozen(cols.astype(np.int64)),
                          _frozen(plan[rows, cols]), (int(plan.shape[0]), int(plan.shape[1])))

    def dense(self) -> np.ndarray:
        """The (n_s, n_d) array."""
        plan = sparse_zeros(self.shape)
        plan[self.rows, self.cols] = self.mass
        return plan

    def tocsr(self):
        """As a ``scipy.sparse.csr_array``."""
        import scipy.sparse as sp

        return sp.csr_array((self.mass, (self.rows, self.cols)), shape=self.shape)


@dataclass(frozen=True)
class TransportResult:
    """The answer of every solver.

    ``plan`` (n_s, n_d) is the mass moved between real nodes; None when the caller asked for
    ``dense_plan=False``, and then ``plan_coo`` holds it. ``plan_coo`` (a ``SparsePlan``) is the
    same plan as coordinates: set by 'hierarchical' always, by the other methods when
    ``dense_plan=False``, else None. ``value`` = sum(plan * cost) over
    feasible pairs; ``unserved_cost`` = ps.unserved_supply + pd.unserved_demand; ``objective`` is
    what the solver minimised: value + unserved_cost (+ the entropic / KL terms of the entropic
    solvers). ``u`` / ``v`` are the duals of the partial problem (module docstring) in cost units;
    for entropic solvers the converged log potentials mapped the same way. ``status`` is
    'optimal' (exact, certified), 'converged' (iterative, tolerance met), 'max_iter_reached',
    'max_rounds_reached' or 'fallback:<reason>' (then ``solver`` names the method that produced the
    plan). ``iterations`` counts solver iterations where the solver reports them (0 for POT's
    network simplex, which does not). ``edge_flow`` is set by the network solver only;
    ``lower_bound`` is a certified lower bound on the optimal ``total_cost`` where one is known.
    """

    plan: np.ndarray | None
    value: float
    objective: float
    unserved_supply: np.ndarray
    unserved_demand: np.ndarray
    u: np.ndarray
    v: np.ndarray
    solver: str
    status: str
    iterations: int
    unserved_cost: float = 0.0
    edge_flow: np.ndarray | None = None
    lower_bound: float | None = None
    plan_coo: SparsePlan | None = None

    @property
    def moved(self) -> float:
        """Total mass moved between real nodes."""
        return float(self.plan.sum() if self.plan is not None else self.plan_coo.mass.sum())

    @property
    def total_cost(self) -> float:
        """Transport cost plus unserved penalties: comparable across solvers."""
        return self.value + self.unserved_cost


@dataclass(frozen=True)
class Problem:
    """Validated inputs of one solve; arrays are float64 and read-only."""

    supply: np.ndarray
    demand: np.ndarray
    cost: np.ndarray | None
    supply_penalty: np.ndarray
    demand_penalty: np.ndarray
    feasible: np.ndarray | None = field(default=None)

    @property
    def all_feasible(self) -> bool:
        """No pair is infeasible (cheap for the broadcast mask of ``make_problem``)."""
        f = self.feasible
        if f is None or f.size == 0:
            return True
        return bool(f.flat[0]) if f.strides == (0,) * f.ndim else bool(f.all())

    @property
    def trivial(self) -> bool:
        """Nothing can move: one side is empty or carries no mass."""
        return self.supply.sum() <= 0 or self.demand.sum() <= 0


def check_positive(name: str, x: float | None, *, optional: bool = False) -> None:
    """Raise ``TransportInputError`` unless ``x`` is a finite number > 0 (or None if ``optional``)."""
    if x is None and optional:
        return
    if x is None or not (np.isfinite(x) and x > 0):
        raise TransportInputError(f"{name}={x} must be a finite number > 0")


@dataclass(frozen=True)
class Balanced:
    """The balanced problem of ``balance``: one dummy row and column appended."""

    a: np.ndarray
    b: np.ndarray
    cost: np.ndarray
    big_m: float
    infeasible: np.ndarray
    supply_penalty: np.ndarray
    demand_penalty: np.ndarray


# -- input checks ------------------------------------------------------------------------------
def as_masses(x: ArrayLike, name: str) -> np.ndarray:
    """A 1-D float64 copy of ``x``; raise unless finite and >= 0."""
    arr = np.array(x, dtype=np.float64)
    if arr.ndim != 1:
        raise TransportInputError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise TransportInputError(f"{name}[{bad}]={arr[bad]} must be finite")
    if np.any(arr < 0):
        bad = int(np.argmin(arr))
        raise TransportInputError(f"{name}[{bad}]={arr[bad]} must be >= 0")
    return _frozen(arr)


def as_cost(cost: ArrayLike, n_s: int, n_d: int) -> np.ndarray:
    """``cost`` as a read-only (n_s, n_d) float64 array; +inf marks infeasible pairs, the rest must be >= 0.

    Not copied when already float64: the matrix can be large and the solvers never write to it.
    """
    c = np.asarray(cost, dtype=np.float64).view()
    if c.shape != (n_s, n_d):
        raise TransportInputError(f"cost has shape {c.shape}, expected (n_supply, n_demand) = ({n_s}, {n_d})")
    if c.size and not c.min() >= 0:  # NaN propagates through min; one pass, no temporary mask
        i, j = np.argwhere(~(c >= 0))[0]
        what = " is NaN" if np.isnan(c[i, j]) else f"={c[i, j]} must be >= 0"
        raise TransportInputError(f"cost[{i}, {j}]{what} (np.inf marks an infeasible pair)")
    c.setflags(write=False)
    return c


def as_penalties(penalty: Penalty, n_s: int, n_d: int, default: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-node penalties from None (``default``), a scalar, or a pair (supply side, demand side)."""
    if penalty is None:
        penalty = default
    pair = penalty if isinstance(penalty, tuple) else (penalty, penalty)
    if len(pair) != 2:
        raise TransportInputError(f"penalty must be a number or a pair (supply, demand), got {len(pair)} items")
    out = []
    for name, p, n in (("supply", pair[0], n_s), ("demand", pair[1], n_d)):
        arr = np.array(p, dtype=np.float64)
        if arr.ndim > 1 or (arr.ndim == 1 and arr.shape != (n,)):
            raise TransportInputError(f"{name} penalty has shape {arr.shape}, expected () or ({n},)")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise TransportInputError(f"{name} penalty must be finite and >= 0, got {p!r}")
        out.append(_frozen(np.broadcast_to(arr, (n,)).copy()))
    return out[0], out[1]


def default_penalty(cost: np.ndarray, feasible: np.ndarray | None = None) -> float:
    """A per-unit penalty large enough that the optimum moves as much mass as is feasible.

    A plan that leaves mass unserved although more could move admits an augmenting path from an
    unserved supply i to an unserved demand j; pushing one unit along it changes the objective by
    (path cost) - ps_i - pd_j. With every pair feasible the direct pair is such a path, cost <= D
    (the largest finite cost), so ps = pd = 2*D makes it profitable: the plan maximises the mass
    moved, then minimises cost. With infeasible pairs an augmenting path alternates forward and
    backward pairs over at most K = min(n_s, n_d) forward pairs, cost <= K*D, so the default
    becomes 2*K*D. (No "+1" is added so that the rule is unit-free; D == 0 gives 1.)
    """
    feasible = np.isfinite(cost) if feasible is None else feasible
    d = float(np.max(cost, where=feasible, initial=0.0)) if cost.size else 0.0
    return penalty_rule(d, bool(feasible.all()), cost.shape)


def penalty_rule(d: float, all_feasible: bool, shape: tuple[int, int]) -> float:
    if d <= 0:
        return 1.0
    return 2.0 * (1 if all_feasible else min(shape)) * d


def make_problem(supply: ArrayLike, demand: ArrayLike, cost: ArrayLike | None, penalty: Penalty,
                 *, cost_required: bool = True) -> Problem:
    """Check and freeze the inputs shared by all solvers.

    When every pair is feasible (no inf), ``Problem.feasible`` is a read-only broadcast of True:
    no (n_s, n_d) mask is built (a pass and 11 MB of fresh memory at 3300 x 3300).
    """
    a = as_masses(supply, "supply")
    b = as_masses(demand, "demand")
    if cost is None:
        if cost_required:
            raise TransportInputError("cost is required for this method (shape (n_supply, n_demand))")
        ps, pd = as_penalties(penalty, a.size, b.size, 1.0)
        return Problem(a, b, None, ps, pd)
    c = as_cost(cost, a.size, b.size)
    top = float(c.max()) if c.size else 0.0
    if top < np.inf:
        feasible = np.broadcast_to(np.True_, c.shape)
        default = penalty_rule(top, True, c.shape) if penalty is None else 0.0
    else:
        feasible = _frozen(c < np.inf)
        default = default_penalty(c, feasible) if penalty is None else 0.0
    ps, pd = as_penalties(penalty, a.size, b.size, default)
    return Problem(a, b, c, ps, pd, feasible)


# -- balancing ---------------------------------------------------------------------------------
def balance(supply: ArrayLike, demand: ArrayLike, cost: ArrayLike, penalty: Penalty = None) -> Balanced:
    """Append a dummy demand column (cost ps) and a dummy supply row (cost pd); see module docstring.

    The result has equal totals (sum supply + sum demand on both sides), only finite costs, and
    ``big_m`` in place of each infeasible pair.
    """
    return balance_problem(make_problem(supply, demand, cost, penalty))


def balance_problem(p: Problem) -> Balanced:
    """``balance`` for an already validated problem."""
    n_s, n_d = p.cost.shape
    big_m = 2.0 * (p.supply_penalty.max(initial=0.0) + p.demand_penalty.max(initial=0.0))
    big_m = big_m if big_m > 0 else 1.0
    m = np.zeros((n_s + 1, n_d + 1))
    if p.all_feasible:
        m[:n_s, :n_d] = p.cost
        infeasible = np.broadcast_to(np.False_, p.cost.shape)
    else:
        m[:n_s, :n_d] = np.where(p.feasible, p.cost, big_m)
        infeasible = ~p.feasible
    m[:n_s, n_d] = p.supply_penalty
    m[n_s, :n_d] = p.demand_penalty
    a = np.concatenate((p.supply, [p.demand.sum()]))
    b = np.concatenate((p.demand, [p.supply.sum()]))
    return Balanced(a, b, m, big_m, infeasible, p.supply_penalty, p.demand_penalty)


def any_true(mask: np.ndarray) -> bool:
    """``mask.any()``, immediate for a broadcast constant (``make_problem``, ``balance_problem``)."""
    if mask.size and mask.strides == (0,) * mask.ndim:
        return bool(mask.flat[0])
    return bool(mask.any())


# -- results -----------------------------------------------------------------------------------
def partial_result(p: Problem, plan: np.ndarray | None, u: np.ndarray, v: np.ndarray, solver: str, status: str,
                   iterations: int, *, extra_objective: float = 0.0, lower_bound: float | None = None,
                   edge_flow: np.ndarray | None = None, cost: np.ndarray | None = None,
                   known: tuple[float, np.ndarray, np.ndarray] | None = None,
                   plan_coo: SparsePlan | None = None) -> TransportResult:
    """Assemble a result; unserved masses are the marginal residuals, so marginals hold by construction.

    ``known`` = (value, row sums, column sums) of a non-negative plan spares passes over a large one
    (and is required when ``plan`` is None, with ``plan_coo`` holding the plan).
    """
    if known is None:
        cost = p.cost if cost is None else cost
        plan = np.maximum(plan, 0.0) if plan.size and plan.min() < 0 else plan
        nz = np.nonzero(plan)
        known = (float(plan[nz] @ cost[nz]), plan.sum(axis=1), plan.sum(axis=0))
    value, sent, received = known
    _check_marginal(sent, p.supply, "supply", solver)
    _check_marginal(received, p.demand, "demand", solver)
    us = np.maximum(p.supply - sent, 0.0)
    ud = np.maximum(p.demand - received, 0.0)
    unserved = float(p.supply_penalty @ us + p.demand_penalty @ ud)
    return TransportResult(
        plan=None if plan is None else _frozen(plan), value=value, objective=value + unserved + extra_objective,
        unserved_supply=_frozen(us), unserved_demand=_frozen(ud), u=_frozen(np.asarray(u, float)),
        v=_frozen(np.asarray(v, float)), solver=solver, status=status, iterations=int(iterations),
        unserved_cost=unserved, edge_flow=None if edge_flow is None else _frozen(edge_flow),
        lower_bound=lower_bound, plan_coo=plan_coo,
    )


def _check_marginal(moved: np.ndarray, mass: np.ndarray, side: str, solver: str) -> None:
    """A plan may not move more than a node offers / requests (beyond rounding)."""
    over = moved - mass
    slack = 1e-9 * (mass + mass.sum() / max(mass.size, 1))
    if np.any(over > slack):
        k = int(np.argmax(over - slack))
        raise TransportError(f"{solver} plan moves {moved[k]:.12g} at {side} {k}, more than its {mass[k]:.12g}")


def trivial_result(p: Problem, solver: str) -> TransportResult:
    """Nothing can move (one side empty or massless): every unit is unserved.

    Duals: a side that carries mass is priced at its penalty, the other side at the largest value
    that keeps u_i + v_j <= C_ij (a c-transform), which makes them optimal for the partial dual.
    """
    ps, pd = p.supply_penalty, p.demand_penalty
    if p.demand.sum() > 0:
        v = pd.copy()
        u = np.minimum(ps, _c_transform(p.cost, v, axis=1))
    elif p.supply.sum() > 0:
        u = ps.copy()
        v = np.minimum(pd, _c_transform(p.cost, u, axis=0))
    else:
        u, v = np.zeros_like(ps), np.zeros_like(pd)
    plan = np.zeros((p.supply.size, p.demand.size))
    return partial_result(p, plan, u, v, solver, "optimal", 0)


def _c_transform(cost: np.ndarray, pot: np.ndarray, axis: int) -> np.ndarray:
    """min over the other side of (C - pot): per row for axis=1, per column for axis=0."""
    if cost.size == 0:
        return np.full(cost.shape[0] if axis == 1 else cost.shape[1], np.inf)
    shifted = cost - (pot[None, :] if axis == 1 else pot[:, None])
    return shifted.min(axis=axis)


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr)
    arr.setflags(write=False)
    return arr
