"""Exact transport with POT's network simplex (``ot.emd``), dense or on a sparse support.

``RestrictedExact`` solves the partial problem restricted to a chosen set of pairs again and again
as the set grows (column generation), each solve warm-started from the previous duals through
POT's compiled sparse solver (``emd_c_sparse``, warm starts since POT 0.9.7; without it each solve
starts cold through ``ot.emd``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import ot
import scipy.sparse as sp
from numpy.typing import ArrayLike

from .core import (
    Penalty,
    Problem,
    SparsePlan,
    TransportInputError,
    penalty_rule,
    as_masses,
    as_penalties,
    check_positive,
    TransportError,
    TransportResult,
    any_true,
    balance_problem,
    partial_result,
    trivial_result,
)

try:  # the compiled solvers behind ot.emd; the sparse one takes warm-start potentials since POT 0.9.7
    from ot.lp.emd_wrap import emd_c as _emd_c
    from ot.lp.emd_wrap import emd_c_sparse as _emd_c_sparse
except ImportError:  # pragma: no cover - older POT: everything through ot.emd, cold starts
    _emd_c = _emd_c_sparse = None

EMD_MAX_ITER = 10_000_000
_EMD_STATUS = {1: "optimal", 3: "max_iter_reached"}


@dataclass(frozen=True)
class ExactOptions:
    """Options of the 'exact' solver."""

    max_iter: int = EMD_MAX_ITER
    """Network simplex iteration cap (POT's ``numItermax``)."""

    def __post_init__(self) -> None:
        check_positive("max_iter", self.max_iter)


@dataclass(frozen=True)
class EmdOutput:
    """Plan (dense array, or COO for a sparse support) and duals of the balanced problem."""

    plan: np.ndarray | sp.coo_matrix
    u: np.ndarray
    v: np.ndarray
    status: str


def run_emd(a: np.ndarray, b: np.ndarray, cost: np.ndarray | sp.coo_matrix, max_iter: int) -> EmdOutput:
    """``ot.emd`` on a balanced problem, masses normalised to sum 1 and scaled back.

    The totals are equal by construction (``balance``), so POT's marginal check is skipped rather
    than risk its assert on a last-bit difference. POT's result code becomes the status; its
    warnings are recorded, not printed. Infeasible / unbounded cannot happen on a balanced problem
    with finite costs, so they raise.
    """
    total = float(a.sum())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, log = ot.emd(a / total, b / total, cost, numItermax=max_iter, log=True, check_marginals=False)
    code = int(log["result_code"])
    if code not in _EMD_STATUS:
        notes = "; ".join(str(w.message) for w in caught)
        raise TransportError(f"ot.emd failed on a balanced problem (result code {code}): {notes}")
    return EmdOutput(plan * total, np.asarray(log["u"]), np.asarray(log["v"]), _EMD_STATUS[code])


def partial_duals(u_ext: np.ndarray, v_ext: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Duals of the partial problem from those of the balanced one.

    u_i = u'_i + v'_dummy, v_j = v'_j + u'_dummy. The balanced dual constraints give u_i <= ps_i,
    v_j <= pd_j and u_i + v_j <= C_ij + (u'_dummy + v'_dummy) <= C_ij, and a.u + b.v equals the
    balanced dual objective, so the pair is optimal for the partial dual. It also removes the
    additive gauge freedom of the balanced duals.
    """
    return u_ext[:-1] + v_ext[-1], v_ext[:-1] + u_ext[-1]


def checked_plan(plan: np.ndarray, infeasible: np.ndarray, total: float) -> np.ndarray:
    """Raise if mass sits on an infeasible pair (big-M > ps + pd forbids it at the optimum)."""
    if not any_true(infeasible):
        return plan
    bad = np.where(infeasible, plan, 0.0)
    if bad.max() > 1e-12 * total:
        i, j = np.unravel_index(int(np.argmax(bad)), bad.shape)
        raise TransportError(f"solver put {bad[i, j]:.3g} on infeasible pair ({i}, {j}): big-M too small")
    return np.where(infeasible, 0.0, plan)


def balanced_dense_plan(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> np.ndarray | None:
    """Exact plan of a balanced problem (equal totals > 0, finite costs), or None if that fails.

    Calls POT's compiled solver directly: no dummy row and column, none of ``ot.emd``'s checks and
    conversions (a third of its time on 60 x 60 blocks). None sends the caller to the general path.
    """
    total = float(a.sum())
    if _emd_c is None or not total > 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan, _, _, _, code = _emd_c(a / total, b / float(b.sum()), np.ascontiguousarray(cost, dtype=np.float64),
                                     EMD_MAX_ITER, 1)
    return plan * total if int(code) == 1 else None


def solve_exact(p: Problem, opts: ExactOptions = ExactOptions()) -> TransportResult:
    """Exact partial transport: dense ``ot.emd`` on the balanced problem."""
    if p.trivial:
        return trivial_result(p, "exact")
    plan, out = exact_plan(p, opts.max_iter)
    u, v = partial_duals(out.u, out.v)
    return partial_result(p, plan, u, v, "exact", out.status, 0)


def exact_plan(p: Problem, max_iter: int) -> tuple[np.ndarray, EmdOutput]:
    """The real part of the exact plan, checked, and the raw ``ot.emd`` output (non-trivial p)."""
    bal = balance_problem(p)
    out = run_emd(bal.a, bal.b, bal.cost, max_iter)
    return checked_plan(out.plan[:-1, :-1], bal.infeasible, float(bal.a.sum())), out


def solve_sparse(p: Problem, rows: np.ndarray, cols: np.ndarray, max_iter: int) -> tuple[Triplets, np.ndarray,
                                                                                         np.ndarray, str]:
    """Exact partial transport restricted to the feasible pairs (rows[k], cols[k]).

    Dummy pairs are always included, so the restricted problem is feasible. Returns the real part
    of the plan as (rows, cols, mass) triplets, the partial duals (optimal for the restricted
    problem) and the status.
    """
    sol = RestrictedExact(p, max_iter).solve(rows, cols)
    return sol.plan, sol.u, sol.v, sol.status


def solve_pairs(supply: ArrayLike, demand: ArrayLike, rows: ArrayLike, cols: ArrayLike, cost: ArrayLike,
                penalty: Penalty = None, max_iter: int = EMD_MAX_ITER) -> TransportResult:
    """Exact partial transport where only the pairs (rows[k], cols[k]) can trade, at cost[k] per
    unit (a sparse market: every other pair is infeasible). One sparse network simplex on them; no
    (n_s, n_d) array is made: the plan comes as ``plan_coo`` (``plan`` is None). The duals are
    optimal, so ``lower_bound`` is the objective. ``penalty`` as for ``solve`` (None: the default
    for a problem with infeasible pairs, from the largest pair cost)."""
    a, b = as_masses(supply, "supply"), as_masses(demand, "demand")
    i, j, c = (np.asarray(x) for x in (rows, cols, cost))
    if not (i.ndim == j.ndim == c.ndim == 1 and i.size == j.size == c.size):
        raise TransportInputError(f"rows, cols and cost must be 1-D of one length, got {i.shape}, {j.shape}, {c.shape}")
    if i.size and not (np.issubdtype(i.dtype, np.integer) and np.issubdtype(j.dtype, np.integer)
                       and 0 <= i.min() and i.max() < a.size and 0 <= j.min() and j.max() < b.size):
        raise TransportInputError(f"rows and cols must be indices below ({a.size}, {b.size})")
    c = np.asarray(c, np.float64)
    if c.size and not (np.all(np.isfinite(c)) and c.min() >= 0):
        raise TransportInputError("pair costs must be finite and >= 0")
    keys = i.astype(np.int64) * b.size + j.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys, i, j, c = keys[order], i[order].astype(np.int64), j[order].astype(np.int64), c[order]
    if np.any(keys[1:] == keys[:-1]):
        raise TransportInputError("a pair is given twice")
    top = float(c.max(initial=0.0))
    ps, pd = as_penalties(penalty, a.size, b.size, penalty_rule(top, c.size == a.size * b.size, (a.size, b.size)))
    p = Problem(a, b, None, ps, pd)
    empty = SparsePlan(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), (a.size, b.size))
    if not a.sum() + b.sum() > 0:      # nothing anywhere: nothing to solve
        return partial_result(p, None, np.zeros(a.size), np.zeros(b.size), "exact", "optimal", 0,
                              lower_bound=0.0, known=(0.0, np.zeros(a.size), np.zeros(b.size)), plan_coo=empty)
    # only the pairs between a supply and a demand that are both > 0 go to the simplex. Its
    # duals of an empty node can break a pair's constraint (POT leaves such nodes out of its
    # graph), and a large sparse market has many others: by the ninth hour of a 100,000-node
    # run four fifths of the offers have no pair, and ot's two-tier clearing gives every offer a
    # row of each tier, one often empty. A supply or demand left out stays unserved at its penalty (the
    # dual of its one arc, to the dummy); an empty one's dual is lowered where a pair needs it.
    live = (a[i] > 0) & (b[j] > 0)
    ri, ii = np.unique(i[live], return_inverse=True)
    cj, jj = np.unique(j[live], return_inverse=True)
    u, v = np.array(ps), np.array(pd)
    fr = fc = np.zeros(0, np.int64)
    fm, status = np.zeros(0), "optimal"
    if live.any():
        sol = RestrictedExact(Problem(a[ri], b[cj], None, ps[ri], pd[cj]), max_iter).solve(ii, jj, c[live])
        t, status = sol.plan, sol.status
        u[ri], v[cj] = sol.u, sol.v
        fr, fc, fm = ri[t.rows], cj[t.cols], t.mass
        at = np.argsort(fr * b.size + fc, kind="stable")
        fr, fc, fm = fr[at], fc[at], fm[at]
    fixed = a > 0                 # supplies whose dual is final: solved, or unserved at the penalty
    free = np.ones(b.size, bool)  # demands left out: those with a pair to a fixed supply are empty
    free[cj] = False
    m = free[j] & fixed[i]
    np.minimum.at(v, j[m], c[m] - u[i[m]])
    m = ~fixed[i]                 # empty supplies left out
    np.minimum.at(u, i[m], c[m] - v[j[m]])
    pair_cost = c[np.searchsorted(keys, fr * b.size + fc)]
    value = float(fm @ pair_cost)
    sent, received = np.bincount(fr, fm, a.size), np.bincount(fc, fm, b.size)
    res = partial_result(p, None, u, v, "exact", status, 0, known=(value, sent, received),
                         plan_coo=SparsePlan(fr, fc, fm, (a.size, b.size)))
    return res if status != "optimal" else replace(res, lower_bound=res.objective)


@dataclass(frozen=True)
class RestrictedSolution:
    """Plan (triplets over real pairs), partial duals optimal for the restricted problem, status."""

    plan: Triplets
    u: np.ndarray
    v: np.ndarray
    status: str


class RestrictedExact:
    """The partial problem of ``p`` restricted to chosen pairs, solved repeatedly with warm starts.

    Every solve includes the dummy pairs (i, dummy), (dummy, j) and (dummy, dummy) of ``balance``,
    so each restricted problem is feasible. Each solve after the first starts from the potentials
    of the previous one, which makes a solve after adding a few pairs several times cheaper than a
    cold one. ``perturb`` > 0 multiplies each pair's cost by 1 + perturb * h with a fixed
    pseudo-random h in [0, 1) of the pair: it breaks the ties of degenerate costs (shortest-path
    distances), without which the warm start does not find the previous basis again (measured: a
    re-solve after adding 10 pairs to 67 000 took 0.06 s unperturbed, 0.02 s at 1e-7). The plan is
    then optimal for the perturbed costs, so its true cost is within a factor 1 + perturb of the
    restricted optimum; ``costs`` gives the perturbed costs, against which the duals price exactly.
    """

    def __init__(self, p: Problem, max_iter: int, perturb: float = 0.0):
        n_s, n_d = p.supply.size, p.demand.size
        self.p, self.max_iter, self.perturb = p, int(max_iter), float(perturb)
        self._dummy_rows = np.concatenate([np.arange(n_s), np.full(n_d, n_s), [n_s]]).astype(np.uint64)
        self._dummy_cols = np.concatenate([np.full(n_s, n_d), np.arange(n_d), [n_d]]).astype(np.uint64)
        self._dummy_cost = np.concatenate([p.supply_penalty, p.demand_penalty, [0.0]])
        a = np.append(p.supply, p.demand.sum())
        b = np.append(p.demand, p.supply.sum())
        self.total = float(a.sum())
        self._a, self._b = a / self.total, b / float(b.sum())  # equal totals to the last bit
        self._warm: tuple[np.ndarray, np.ndarray] | None = None

    def costs(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The (perturbed) costs the solver sees for pairs (rows[k], cols[k])."""
        c = self.p.cost[rows, cols]
        if self.perturb:
            h = ((rows * self.p.cost.shape[1] + cols) % 1_000_003) * 104_729 % 1_000_003 / 1_000_003.0
            c = c * (1.0 + self.perturb * h)
        return c

    def solve(self, rows: np.ndarray, cols: np.ndarray, cost: np.ndarray | None = None) -> RestrictedSolution:
        """Solve on the pairs (rows[k], cols[k]) (feasible, no repeats); ``cost`` = ``costs(rows, cols)``."""
        n_s, n_d = self.p.supply.size, self.p.demand.size
        cost = self.costs(rows, cols) if cost is None else cost
        r = np.concatenate([rows.astype(np.uint64), self._dummy_rows])
        c = np.concatenate([cols.astype(np.uint64), self._dummy_cols])
        w = np.concatenate([cost, self._dummy_cost])
        if _emd_c_sparse is None:  # pragma: no cover - older POT
            out = run_emd(self._a * self.total, self._b * self.total,
                          sp.coo_matrix((w, (r.astype(np.int64), c.astype(np.int64))), shape=(n_s + 1, n_d + 1)),
                          self.max_iter)
            g = out.plan.tocoo()
            fr, fc, fm, alpha, beta, status = g.row, g.col, g.data, out.u, out.v, out.status
        else:
            warm = {} if self._warm is None else {"alpha_init": self._warm[0], "beta_init": self._warm[1]}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    fr, fc, fm, _, alpha, beta, code = _emd_c_sparse(self._a, self._b, r, c, w, self.max_iter, **warm)
                except TypeError:  # pragma: no cover - POT < 0.9.7 takes no warm start
                    fr, fc, fm, _, alpha, beta, code = _emd_c_sparse(self._a, self._b, r, c, w, self.max_iter)
            if int(code) not in _EMD_STATUS:
                raise TransportError(f"sparse network simplex failed on a feasible problem (result code {code})")
            fm, status = fm * self.total, _EMD_STATUS[int(code)]
            self._warm = (alpha, beta)
        fr, fc = fr.astype(np.int64), fc.astype(np.int64)
        real = (fr < n_s) & (fc < n_d) & (fm > 0)
        u, v = partial_duals(np.asarray(alpha, float), np.asarray(beta, float))
        return RestrictedSolution(Triplets(fr[real], fc[real], fm[real]), u, v, status)


@dataclass(frozen=True)
class Triplets:
    """A sparse plan: mass[k] moves from supply rows[k] to demand cols[k] (pairs may repeat)."""

    rows: np.ndarray
    cols: np.ndarray
    mass: np.ndarray

    @staticmethod
    def concat(parts: list[Triplets]) -> Triplets:
        if not parts:
            return Triplets(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        return Triplets(*(np.concatenate([getattr(t, f) for t in parts]) for f in ("rows", "cols", "mass")))

    def dense(self, shape: tuple[int, int]) -> np.ndarray:
        """The (n_s, n_d) plan, repeated pairs summed."""
        keys, inverse = np.unique(self.rows * shape[1] + self.cols, return_inverse=True)
        plan = np.zeros(shape)
        plan.ravel()[keys] = np.bincount(inverse, self.mass, keys.size)
        return plan
