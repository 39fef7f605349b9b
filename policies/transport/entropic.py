"""Entropic solvers: Sinkhorn on the balanced problem, and KL-unbalanced Sinkhorn.

Both share one log-stabilised scaling loop (our own, in numpy, rather than POT's):

* costs are divided by the largest finite real cost, so ``reg`` and ``reg_m`` are relative to the
  cost scale (reg=1e-3 blurs over 0.1 % of the largest cost) and the same defaults work in Wh,
  seconds or euros;
* the kernel is K_ij = a_i b_j exp((f_i + g_j - C_ij) / eps): the reference measure a x b makes
  the potentials f, g soft c-transforms that stay finite for nodes without mass, and the running
  potentials are absorbed into K whenever the scalings grow (per entry, unlike POT's stabilised
  unbalanced solver which absorbs one scalar), so nothing under- or overflows at small eps;
* eps is lowered geometrically (eps-scaling) from 1 to ``reg``, and the updates are over-relaxed
  with an omega estimated from the observed convergence rate: together 3-30x fewer iterations
  (e.g. 1000 nodes: 16 000 -> 1 100 iterations);
* large kernels are stored sparse without the entries below exp(-100) (10-15 % of them are kept at
  reg=1e-3 on allocator instances);
* infeasible pairs keep cost +inf, i.e. an exact zero in the kernel: no big-M, no leak;
* status 'converged' means the L1 marginal error is below ``tol`` (default 1e-6 of the mass);
  the plan is then scaled down onto the marginals, so it is always feasible.

Measured gap (total_cost vs exact, relative to the exact transport cost) at the default reg=1e-3:
max 0.8 % over 1600 random instances of 2-60 nodes per side; on the euclidean benchmark instances
0.03 % at 100 nodes, 0.3 % at 1000, 0.8 % at 3000, 2 % at 10 000 (``benchmarks/allocator.py``): the
blur is fixed relative to the largest cost while typical transport distances shrink with n. Slowly mixing instances (about 1 in 130 of the
random ones) need more than 20 000 iterations and fall back to exact.

The unbalanced variant minimises <C,P> + eps KL(P | a x b / m) + reg_m (KL(P1 | a) + KL(P'1 | b))
with masses divided by m = (sum a + sum b) / 2, so the plan scales linearly with the masses. We use
our loop instead of ``ot.unbalanced.sinkhorn_unbalanced`` for the inf handling and the per-entry
absorption above; the tests cross-check it against POT on finite instances.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from .core import (
    Problem,
    TransportInputError,
    TransportResult,
    check_positive,
    balance_problem,
    make_problem,
    partial_result,
    trivial_result,
)
from .exact import partial_duals, solve_exact
from .hierarchical import certify  # the c-transform bound: any potentials certify a lower bound

SINKHORN_MAX_ITER = 20_000
SINKHORN_TOL = 1e-6
"""Balanced: L1 marginal error relative to the total mass. Unbalanced: largest potential change
per iteration, relative to the cost scale."""
_ABSORB_LOG = 30.0
_EPS_STEP = 4.0
_STAGE_TOL = 1e-3
_TRUNCATE = float(np.exp(-100.0))
_SPARSE_MIN = 40_000
OMEGA = 1.9
"""Cap of the over-relaxation parameter (1 disables it)."""
_CHECK = 10


@dataclass(frozen=True)
class SinkhornOptions:
    """Options of the 'sinkhorn' solver."""

    reg: float = 1e-3
    """Entropic regularisation, relative to the largest finite cost."""
    max_iter: int = SINKHORN_MAX_ITER
    """Scaling iterations, at most (over all eps stages)."""
    tol: float = SINKHORN_TOL
    """L1 marginal error, relative to the total mass, at which the loop has converged."""
    fallback: bool = True
    """Solve exactly instead when the loop does not converge (status 'fallback:<reason>')."""

    def __post_init__(self) -> None:
        for name in ("reg", "max_iter", "tol"):
            check_positive(name, getattr(self, name))


@dataclass(frozen=True)
class UnbalancedOptions:
    """Options of the 'unbalanced' solver (KL-relaxed marginals instead of penalties)."""

    reg: float = 1e-3
    """Entropic regularisation, relative to the largest finite cost."""
    reg_m: float = 1.0
    """KL marginal relaxation, relative to the largest finite cost."""
    max_iter: int = SINKHORN_MAX_ITER
    """Scaling iterations, at most (over all eps stages)."""
    tol: float = SINKHORN_TOL
    """Largest potential change per iteration, relative to the cost scale, at convergence."""
    fallback: bool = True
    """Solve exactly (default penalty) instead when the loop does not converge."""

    def __post_init__(self) -> None:
        for name in ("reg", "reg_m", "max_iter", "tol"):
            check_positive(name, getattr(self, name))


def unbalanced_problem(supply, demand, cost, penalty, opts: UnbalancedOptions) -> Problem:
    """The problem of 'unbalanced': no penalties (its marginals are relaxed by ``reg_m``)."""
    if penalty is not None:
        raise TransportInputError("penalty does not apply to method 'unbalanced' (use reg_m)")
    return make_problem(supply, demand, cost, 0.0)


@dataclass(frozen=True)
class Scaling:
    """Outcome of the scaling loop on the rows / columns that carry mass (normalised units)."""

    plan: np.ndarray
    f: np.ndarray
    g: np.ndarray
    iterations: int
    status: str


def _kernel(a: np.ndarray, b: np.ndarray, c: np.ndarray, f: np.ndarray, g: np.ndarray,
            eps: float) -> np.ndarray | sp.csr_matrix:
    """K_ij = a_i b_j exp((f_i + g_j - c_ij)/eps); large kernels drop entries below exp(-100).

    After absorption the scalings stay within exp(+-30), so a dropped entry would carry at most
    exp(-40) of mass: truncation is invisible, and it makes each iteration several times cheaper.
    """
    with np.errstate(under="ignore", divide="ignore"):
        fa = f + eps * np.log(a)
        gb = g + eps * np.log(b)
        k = np.exp((fa[:, None] + gb[None, :] - c) / eps)
    if k.size < _SPARSE_MIN:
        return k
    keep = k >= _TRUNCATE
    if keep.mean() > 0.3:
        return k
    return sp.csr_matrix(np.where(keep, k, 0.0))


def _kernels(a: np.ndarray, b: np.ndarray, c: np.ndarray, f: np.ndarray, g: np.ndarray, eps: float):
    """The kernel and its transpose (a CSR copy when sparse, so that both products are row-wise)."""
    k = _kernel(a, b, c, f, g, eps)
    return k, (k.T.tocsr() if sp.issparse(k) else k.T)


def _update(mass: np.ndarray, k_other: np.ndarray, pot: np.ndarray, eps: float, fi: float) -> np.ndarray:
    """Scaling update; fi = reg_m / (reg_m + eps) (1 when balanced) turns it into the KL version."""
    if fi == 1.0:
        return mass / k_other
    return (mass / k_other) ** fi * np.exp(-pot * (1.0 - fi) / eps)


def _relax(old: np.ndarray, new: np.ndarray, omega: float) -> np.ndarray:
    """Over-relaxed update old^(1-omega) new^omega (omega = 1: plain Sinkhorn)."""
    return new if omega == 1.0 else old ** (1.0 - omega) * new ** omega


def scaling_loop(a: np.ndarray, b: np.ndarray, c: np.ndarray, eps_target: float, reg_m: float,
                 max_iter: int, tol: float) -> Scaling:
    """Log-stabilised, eps-scaled, over-relaxed Sinkhorn; ``reg_m=inf`` is the balanced problem.

    ``a``, ``b`` > 0, every row and column of ``c`` has a finite entry. Over-relaxation
    (omega = 1.5) cuts iterations 2-3x on allocator instances but is not guaranteed to converge
    far from the optimum: if it produces non-finite values the loop reruns plainly (omega = 1).
    """
    out = _eps_scaling(a, b, c, eps_target, reg_m, max_iter, tol, OMEGA)
    if out.status == "nan" and OMEGA != 1.0:
        again = _eps_scaling(a, b, c, eps_target, reg_m, max_iter, tol, 1.0)
        return replace(again, iterations=again.iterations + out.iterations)
    return out


def _eps_scaling(a: np.ndarray, b: np.ndarray, c: np.ndarray, eps_target: float, reg_m: float,
                 max_iter: int, tol: float, omega: float) -> Scaling:
    """Stages of decreasing eps (factor 4) from 1 to eps_target, each warm-started."""
    f = c.min(axis=1)
    g = (c - f[:, None]).min(axis=0)
    eps, it = max(1.0, eps_target), 0
    while True:
        last = eps <= eps_target
        fi = 1.0 if np.isinf(reg_m) else reg_m / (reg_m + eps)
        stage = _stage(a, b, c, f, g, eps, fi, tol if last else max(tol, _STAGE_TOL), max_iter - it, omega)
        f, g, it = stage.f, stage.g, it + stage.iterations
        if last or stage.status != "converged":
            return replace(stage, iterations=it)
        eps = max(eps_target, eps / _EPS_STEP)


def _stage(a: np.ndarray, b: np.ndarray, c: np.ndarray, f: np.ndarray, g: np.ndarray, eps: float, fi: float,
           tol: float, max_iter: int, omega: float) -> Scaling:
    """Scaling iterations at one eps, absorbing the scalings into (f, g) when they grow.

    Errors are checked every ``_CHECK`` iterations. Over-relaxation: after ``_CHECK * 5`` plain
    iterations the linear rate theta of the error is estimated and omega = 2 / (1 + sqrt(1 - theta))
    (the SOR optimum for a Gauss-Seidel rate theta) is used, capped at ``_OMEGA_MAX``; if the error
    then grows past 10x its best, the stage goes back to plain iterations.
    """
    k, kt = _kernels(a, b, c, f, g, eps)
    u, v = np.ones_like(a), np.ones_like(b)
    ktu = kt @ u
    status, it, w = "max_iter_reached", 0, 1.0
    history: list[float] = []
    while it < max_iter:
        u_old, v_old = u, v
        for _ in range(min(_CHECK, max_iter - it)):
            v = _relax(v, _update(b, ktu, g, eps, fi), w)
            kv = k @ v
            u = _relax(u, _update(a, kv, f, eps, fi), w)
            ktu = kt @ u
            it += 1
        if not (np.all(np.isfinite(u)) and np.all(np.isfinite(v)) and np.all(ktu > 0)):
            return Scaling(np.zeros(c.shape), f, g, it, "nan")
        if fi == 1.0:  # L1 error of both marginals
            err = float(np.abs(u * kv - a).sum() + np.abs(v * ktu - b).sum())
        else:  # largest change of the potentials over the last iteration (approx.)
            err = eps * max(np.abs(np.log(u / u_old)).max(), np.abs(np.log(v / v_old)).max()) / _CHECK
        if err < tol:
            status = "converged"
            break
        history.append(err)
        w = _omega(history, w, omega)
        if max(np.abs(np.log(u)).max(), np.abs(np.log(v)).max()) > _ABSORB_LOG:
            f, g = f + eps * np.log(u), g + eps * np.log(v)
            k, kt = _kernels(a, b, c, f, g, eps)
            u, v = np.ones_like(a), np.ones_like(b)
            ktu = kt @ u
    plan = sp.diags(u) @ k @ sp.diags(v) if sp.issparse(k) else u[:, None] * k * v[None, :]
    plan = plan.toarray() if sp.issparse(plan) else plan
    return Scaling(plan, f + eps * np.log(u), g + eps * np.log(v), it, status)


def _omega(history: list[float], w: float, omega_max: float) -> float:
    """Relaxation for the next block of iterations (see ``_stage``)."""
    if omega_max <= 1.0:
        return 1.0
    if w > 1.0:
        return 1.0 if history[-1] > 10 * min(history) else w
    if len(history) < 5 or not history[-5] > 0:
        return 1.0
    theta = min((history[-1] / history[-5]) ** (1.0 / (4 * _CHECK)), 0.9999)
    if theta >= 1.0 or theta <= 0:
        return 1.0
    return min(omega_max, 2.0 / (1.0 + np.sqrt(1.0 - theta)))


def soft_c_transform(c: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float, fi: float) -> np.ndarray:
    """Row potentials -fi eps log sum_j b_j exp((g_j - c_ij)/eps): +inf for a row without partners."""
    with np.errstate(divide="ignore"):
        return -fi * eps * logsumexp((g[None, :] - c) / eps, b=np.broadcast_to(b, c.shape), axis=1)


def clip_to_marginals(plan: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Scale rows, then columns, down so that no row sum exceeds a and no column sum exceeds b.

    A converged entropic plan misses its marginals by at most the tolerance (over-relaxed updates
    satisfy neither side exactly); the KL-unbalanced plan may exceed them by design.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        plan = plan * np.minimum(1.0, np.nan_to_num(a / plan.sum(axis=1), nan=1.0, posinf=1.0))[:, None]
        return plan * np.minimum(1.0, np.nan_to_num(b / plan.sum(axis=0), nan=1.0, posinf=1.0))[None, :]


def _kl(x: np.ndarray, y: np.ndarray) -> float:
    """Generalised KL divergence sum x log(x/y) - x + y (0 log 0 = 0)."""
    pos = x > 0
    return float(np.sum(x[pos] * np.log(x[pos] / y[pos])) - x.sum() + y.sum())


def _cost_scale(p: Problem) -> float:
    top = float(np.max(p.cost, where=p.feasible, initial=0.0))
    return top if top > 0 else 1.0


def _fallback(p: Problem, reason: str) -> TransportResult:
    res = solve_exact(p)
    return partial_result(p, res.plan, res.u, res.v, "exact", f"fallback:{reason}", res.iterations)


# -- balanced Sinkhorn -------------------------------------------------------------------------
def solve_sinkhorn(p: Problem, opts: SinkhornOptions = SinkhornOptions()) -> TransportResult:
    """Entropic transport on the balanced problem; falls back to exact on failure if allowed."""
    if p.trivial:
        return trivial_result(p, "sinkhorn")
    bal = balance_problem(p)
    scale, total = _cost_scale(p), float(bal.a.sum())
    c = bal.cost / scale
    c[:-1, :-1][bal.infeasible] = np.inf
    rows, cols = bal.a > 0, bal.b > 0
    a, b = bal.a[rows] / total, bal.b[cols] / total
    out = scaling_loop(a, b, c[np.ix_(rows, cols)], opts.reg, np.inf,
                       opts.max_iter, opts.tol)
    if out.status != "converged" and opts.fallback:
        return _fallback(p, out.status)
    ext = np.zeros_like(c)
    ext[np.ix_(rows, cols)] = clip_to_marginals(out.plan, a, b) * total
    f, g = np.zeros(c.shape[0]), np.zeros(c.shape[1])
    f[rows], g[cols] = out.f, out.g
    f[~rows] = soft_c_transform(c[np.ix_(~rows, cols)], out.g, b, opts.reg, 1.0)
    g[~cols] = soft_c_transform(c[np.ix_(rows, ~cols)].T, out.f, a, opts.reg, 1.0)
    u, v = partial_duals(f * scale, g * scale)
    res = partial_result(p, ext[:-1, :-1], u, v, "sinkhorn", out.status, out.iterations)
    full = np.block([[res.plan, res.unserved_supply[:, None]],
                     [res.unserved_demand[None, :], np.array([[res.moved]])]])
    entropy = opts.reg * scale * _kl(full, np.outer(bal.a, bal.b) / total)
    return partial_result(p, res.plan, u, v, "sinkhorn", out.status, out.iterations, extra_objective=entropy,
                          lower_bound=certify(p, u, v)[0])


# -- KL-unbalanced Sinkhorn --------------------------------------------------------------------
def solve_unbalanced(p: Problem, opts: UnbalancedOptions = UnbalancedOptions()) -> TransportResult:
    """KL-relaxed marginals (partial service); the plan never exceeds supply or demand.

    The KL relaxation may create mass (a row sum above its supply when transport is cheap); rows,
    then columns, are scaled down so that no node sends more than it offers or receives more than
    it asked for. ``u``, ``v`` are the converged potentials of the unclipped optimum,
    u_i = -reg_m log(row_sum_i / a_i) (+inf for a node that cannot trade).
    """
    if p.trivial:
        return trivial_result(p, "unbalanced")
    scale = _cost_scale(p)
    norm = 0.5 * float(p.supply.sum() + p.demand.sum())
    c = np.where(p.feasible, p.cost / scale, np.inf)
    rows = (p.supply > 0) & p.feasible.any(axis=1)
    cols = (p.demand > 0) & p.feasible.any(axis=0)
    rows &= p.feasible[:, cols].any(axis=1)
    cols &= p.feasible[rows].any(axis=0)
    a, b = p.supply[rows] / norm, p.demand[cols] / norm
    out = scaling_loop(a, b, c[np.ix_(rows, cols)], opts.reg, opts.reg_m,
                       opts.max_iter, opts.tol)
    if out.status != "converged" and opts.fallback:
        return _fallback_unbalanced(p, out.status)
    plan = np.zeros(p.cost.shape)
    plan[np.ix_(rows, cols)] = clip_to_marginals(out.plan, a, b) * norm
    fi = opts.reg_m / (opts.reg_m + opts.reg)
    f, g = np.full(rows.size, np.inf), np.full(cols.size, np.inf)
    f[rows], g[cols] = out.f, out.g
    f[~rows] = soft_c_transform(c[np.ix_(~rows, cols)], out.g, b, opts.reg, fi)
    g[~cols] = soft_c_transform(c[np.ix_(rows, ~cols)].T, out.f, a, opts.reg, fi)
    extra = _unbalanced_terms(plan, p, opts, scale, norm)
    return partial_result(p, plan, f * scale, g * scale, "unbalanced", out.status, out.iterations,
                          extra_objective=extra)   # its potentials price another problem: no bound


def _unbalanced_terms(plan: np.ndarray, p: Problem, opts: UnbalancedOptions, scale: float, norm: float) -> float:
    """eps KL(P | a x b / m) + reg_m (KL(P1 | a) + KL(P'1 | b)) in cost units."""
    entropy = _kl(plan, np.outer(p.supply, p.demand) / norm)
    marg = _kl(plan.sum(axis=1), p.supply) + _kl(plan.sum(axis=0), p.demand)
    return scale * (opts.reg * entropy + opts.reg_m * marg)


def _fallback_unbalanced(p: Problem, reason: str) -> TransportResult:
    """Exact partial transport with the default penalty (moves as much as is feasible)."""
    exact = make_problem(p.supply, p.demand, p.cost, None)
    res = solve_exact(exact)
    return partial_result(exact, res.plan, res.u, res.v, "exact", f"fallback:{reason}", res.iterations)
