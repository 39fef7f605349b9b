"""Exact transport with POT's network simplex (``ot.emd``), dense or on a sparse support."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import ot
import scipy.sparse as sp
from otmarl.policies.transport_core import (
    Problem,
    SolveOptions,
    TransportError,
    TransportResult,
    balance_problem,
    partial_result,
    trivial_result,
)

EMD_MAX_ITER = 10_000_000
_EMD_STATUS = {1: "optimal", 3: "max_iter_reached"}


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
    if not infeasible.any():
        return plan
    bad = np.where(infeasible, plan, 0.0)
    if bad.max() > 1e-12 * total:
        i, j = np.unravel_index(int(np.argmax(bad)), bad.shape)
        raise TransportError(f"solver put {bad[i, j]:.3g} on infeasible pair ({i}, {j}): big-M too small")
    return np.where(infeasible, 0.0, plan)


def solve_exact(p: Problem, opts: SolveOptions) -> TransportResult:
    """Exact partial transport: dense ``ot.emd`` on the balanced problem."""
    if p.trivial:
        return trivial_result(p, "exact")
    plan, out = exact_plan(p, opts.max_iter or EMD_MAX_ITER)
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
    n_s, n_d = p.cost.shape
    r = np.concatenate([rows, np.arange(n_s), np.full(n_d, n_s), [n_s]])
    c = np.concatenate([cols, np.full(n_s, n_d), np.arange(n_d), [n_d]])
    w = np.concatenate([p.cost[rows, cols], p.supply_penalty, p.demand_penalty, [0.0]])
    cost = sp.coo_matrix((w, (r, c)), shape=(n_s + 1, n_d + 1))
    a = np.append(p.supply, p.demand.sum())
    b = np.append(p.demand, p.supply.sum())
    out = run_emd(a, b, cost, max_iter)
    g = out.plan.tocoo()
    real = (g.row < n_s) & (g.col < n_d) & (g.data > 0)
    u, v = partial_duals(out.u, out.v)
    return Triplets(g.row[real].astype(np.int64), g.col[real].astype(np.int64), g.data[real]), u, v, out.status


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
