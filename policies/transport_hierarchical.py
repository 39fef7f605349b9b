"""Coarse-to-fine transport for thousands of nodes.

1. **Cluster** supply and demand (given labels, or k-means on positions with k ~ sqrt(n), seeded).
2. **Coarse**: exact transport between clusters (aggregated masses; cluster-to-cluster cost = the
   mean of the finite member costs, or their min).
3. **Fine**: for each cluster pair the coarse plan links, an exact sub-problem moves the coarse
   flow, split over members in proportion to their mass.
4. **Leftovers**: mass a sub-problem could not place (infeasible pairs inside the block) goes
   through one exact pass over the residual supply and demand.
5. **Refine** (``refine_rounds`` > 0): exact transport restricted to a sparse support (the pairs
   used so far + each supply's ``knn`` nearest partners, by position when positions are given,
   else by cost), solved with POT's sparse network simplex, then priced against the full cost
   matrix with the duals: pairs of negative reduced cost (and, with positions, their neighbours)
   join the support and the sparse problem is solved again. The c-transform of the duals gives a
   certified lower bound on the optimal objective, so the loop stops with status 'converged' when
   (objective - bound) <= gap_tol * transport cost (relative to the transport cost, not the
   objective, whose unserved penalties would dilute it), or 'optimal' when no pair prices out
   (then the plan is exact).

Measured gaps (total_cost over exact, relative to the exact transport cost). Steps 1-4 alone
(``refine_rounds=0``) do well when supply and demand sit in separate clusters (max 1.6 % over 12
blob instances of 500-2000 points) but not when they interleave: the proportional split sends
far-side members across the cluster (29-37 % on shared blobs, 35-140 % on uniform points). The
refinement brings every measured instance within 0.25 % in 1-5 rounds (0.1 % at 10 000 uniform
points). 'mean' gave a smaller gap than 'min' in every measured instance (e.g. 1.56 % vs 1.91 %
at worst on the blobs, 141 % vs 164 % on uniform points), so it is the default.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from otmarl.policies.transport_core import (
    Problem,
    SolveOptions,
    TransportInputError,
    TransportResult,
    partial_result,
    trivial_result,
)
from otmarl.policies.transport_exact import (
    EMD_MAX_ITER,
    Triplets,
    exact_plan,
    solve_exact,
    solve_sparse,
)
from scipy.cluster.vq import kmeans2
from scipy.spatial import cKDTree

_SPREAD = 4
"""Neighbours (self included) of a priced-out partner that join the support with it."""
_PRICE_BLOCK = 2**20
"""Cost entries priced per block (memory bound of the pricing pass)."""


def solve_hierarchical(p: Problem, opts: SolveOptions) -> TransportResult:
    """Coarse-to-fine transport (module docstring). Works on the nodes that carry mass."""
    if p.trivial:
        return trivial_result(p, "hierarchical")
    ls, ld = cluster_labels(p, opts)
    rows, cols = np.flatnonzero(p.supply > 0), np.flatnonzero(p.demand > 0)
    sub = _restrict(p, rows, cols)
    ls, ld = _compact(ls[rows]), _compact(ld[cols])
    coarse = _coarse(sub, ls, ld, opts.cluster_cost)
    fine = _fine(sub, ls, ld, coarse.plan)
    plan = Triplets.concat([fine, _leftovers(sub, fine)])
    if opts.refine_rounds <= 0:
        return _embed(p, rows, cols, plan, coarse.u[ls], coarse.v[ld], "heuristic", 0, None)
    xy = None
    if opts.supply_xy is not None and opts.demand_xy is not None:
        xy = (_positions(opts.supply_xy, p.supply.size, "supply")[rows],
              _positions(opts.demand_xy, p.demand.size, "demand")[cols])
    plan, u, v, status, rounds, bound = refine(sub, plan, opts, xy)
    return _embed(p, rows, cols, plan, u, v, status, rounds, bound)


# -- clustering --------------------------------------------------------------------------------
def cluster_labels(p: Problem, opts: SolveOptions) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels of supply and demand entries: given, or k-means on the given positions."""
    rng = np.random.default_rng(opts.rng)
    out = []
    for side, n, labels, xy in (("supply", p.supply.size, opts.supply_clusters, opts.supply_xy),
                                ("demand", p.demand.size, opts.demand_clusters, opts.demand_xy)):
        if labels is not None:
            out.append(_labels(labels, n, side))
        elif xy is not None:
            out.append(kmeans_labels(_positions(xy, n, side), rng))
        else:
            raise TransportInputError(f"method 'hierarchical' needs {side}_clusters or {side}_xy")
    return out[0], out[1]


def kmeans_labels(xy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """k-means++ with k = ceil(sqrt(n)); empty clusters are simply dropped."""
    k = int(np.ceil(np.sqrt(xy.shape[0])))
    if k <= 1:
        return np.zeros(xy.shape[0], dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "One of the clusters is empty": harmless here
        _, labels = kmeans2(xy, k, minit="++", rng=rng)
    return labels.astype(np.int64)


def _labels(x: np.ndarray, n: int, side: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.shape != (n,) or (n and not np.issubdtype(arr.dtype, np.integer)):
        raise TransportInputError(f"{side}_clusters must be {n} integer labels, got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64)


def _positions(x: np.ndarray, n: int, side: str) -> np.ndarray:
    arr = np.array(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n or not np.all(np.isfinite(arr)):
        raise TransportInputError(f"{side}_xy must be finite positions of shape ({n}, dim), got {arr.shape}")
    return arr


def _compact(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


# -- coarse and fine levels --------------------------------------------------------------------
def _restrict(p: Problem, rows: np.ndarray, cols: np.ndarray) -> Problem:
    """The sub-problem on the given rows and columns (no copy when they are all of them)."""
    if rows.size == p.supply.size and cols.size == p.demand.size:
        return p
    return Problem(p.supply[rows], p.demand[cols], p.cost[np.ix_(rows, cols)], p.supply_penalty[rows],
                   p.demand_penalty[cols], p.feasible[np.ix_(rows, cols)])


def _coarse(p: Problem, ls: np.ndarray, ld: np.ndarray, how: str) -> TransportResult:
    """Exact transport between clusters."""
    ks, kd = ls.max() + 1, ld.max() + 1
    a, b = np.bincount(ls, p.supply, ks), np.bincount(ld, p.demand, kd)
    ms = sp.csr_matrix((np.ones(ls.size), (ls, np.arange(ls.size))), shape=(ks, ls.size))
    md = sp.csc_matrix((np.ones(ld.size), (np.arange(ld.size), ld)), shape=(ld.size, kd))
    if how == "mean":
        finite = p.feasible.all()
        total = (ms @ (p.cost if finite else np.where(p.feasible, p.cost, 0.0))) @ md
        count = np.outer(ms.sum(axis=1), md.sum(axis=0)) if finite else (ms @ p.feasible.astype(float)) @ md
        cost = np.divide(total, count, out=np.full(total.shape, np.inf), where=count > 0)
    elif how == "min":
        os, od = np.argsort(ls, kind="stable"), np.argsort(ld, kind="stable")
        starts_s, starts_d = np.searchsorted(ls[os], np.arange(ks)), np.searchsorted(ld[od], np.arange(kd))
        block = p.cost[np.ix_(os, od)]
        cost = np.minimum.reduceat(np.minimum.reduceat(block, starts_s, axis=0), starts_d, axis=1)
    else:
        raise TransportInputError(f"cluster_cost must be 'mean' or 'min', got {how!r}")
    ps = np.bincount(ls, p.supply * p.supply_penalty, ks) / a
    pd = np.bincount(ld, p.demand * p.demand_penalty, kd) / b
    coarse = Problem(a, b, np.asarray(cost), ps, pd, np.isfinite(cost))
    return solve_exact(coarse, SolveOptions())


def _members(labels: np.ndarray) -> list[np.ndarray]:
    return np.split(np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels))[:-1])


def _block(p: Problem, rows: np.ndarray, cols: np.ndarray, a: np.ndarray, b: np.ndarray) -> Triplets:
    """Exact sub-problem on rows x cols with masses a, b; its plan as global triplets."""
    sub = Problem(a, b, p.cost[np.ix_(rows, cols)], p.supply_penalty[rows], p.demand_penalty[cols],
                  p.feasible[np.ix_(rows, cols)])
    plan, _ = exact_plan(sub, EMD_MAX_ITER)
    i, j = np.nonzero(plan)
    return Triplets(rows[i], cols[j], plan[i, j])


def _fine(p: Problem, ls: np.ndarray, ld: np.ndarray, flows: np.ndarray) -> Triplets:
    """Exact sub-problem per linked cluster pair, masses split in proportion to the members'."""
    a_k, b_l = np.bincount(ls, p.supply), np.bincount(ld, p.demand)
    members_s, members_d = _members(ls), _members(ld)
    parts = []
    for k, l in zip(*np.nonzero(flows > 1e-14 * flows.sum()), strict=False):
        rows, cols = members_s[k], members_d[l]
        share_s, share_d = flows[k, l] / a_k[k], flows[k, l] / b_l[l]
        parts.append(_block(p, rows, cols, p.supply[rows] * share_s, p.demand[cols] * share_d))
    return Triplets.concat(parts)


def _leftovers(p: Problem, plan: Triplets) -> Triplets:
    """One exact pass over the supply and demand the fine level left unplaced."""
    res_s = p.supply - np.bincount(plan.rows, plan.mass, p.supply.size)
    res_d = p.demand - np.bincount(plan.cols, plan.mass, p.demand.size)
    rows = np.flatnonzero(res_s > 1e-12 * p.supply.sum())
    cols = np.flatnonzero(res_d > 1e-12 * p.demand.sum())
    if rows.size == 0 or cols.size == 0:
        return Triplets.concat([])
    return _block(p, rows, cols, res_s[rows], res_d[cols])


# -- refinement --------------------------------------------------------------------------------
def refine(p: Problem, plan: Triplets, opts: SolveOptions, xy: tuple[np.ndarray, np.ndarray] | None = None):
    """Sparse exact transport with pricing rounds (module docstring, step 5); all masses > 0.

    ``xy`` (supply and demand positions) makes the candidate neighbours a k-d tree query instead of
    a partial sort of every cost row: 10-30x cheaper, and pricing repairs any poor candidate.
    """
    n_d = p.demand.size
    keys = np.union1d(plan.rows * n_d + plan.cols, _knn_keys(p, opts.knn, xy))
    near = None if xy is None else tuple(cKDTree(z).query(z, k=min(_SPREAD, len(z)))[1].reshape(len(z), -1)
                                         for z in xy)
    scale = max(float(np.max(p.cost, where=p.feasible, initial=0.0)), float(p.supply_penalty.max()),
                float(p.demand_penalty.max()))
    tol = 1e-10 * scale  # duals of magnitude ~penalty carry rounding noise of about 1e-12 of it
    status, rounds = "max_rounds_reached", 0
    while rounds < opts.refine_rounds:
        rounds += 1
        plan, u, v, emd_status = solve_sparse(p, keys // n_d, keys % n_d, opts.max_iter or EMD_MAX_ITER)
        row_min, row_arg, col_min, col_arg = _price(p.cost, u, v)
        u_feasible = np.minimum(p.supply_penalty, row_min)
        bound = float(p.supply @ u_feasible + p.demand @ v)
        new_rows, new_cols = np.flatnonzero(row_min - u < -tol), np.flatnonzero(col_min - v < -tol)
        objective, value = _objective(p, plan)
        if emd_status != "optimal":
            status = f"sparse_{emd_status}"
            break
        if new_rows.size == 0 and new_cols.size == 0:
            status = "optimal"
            break
        if objective - bound <= opts.gap_tol * value:
            status = "converged"
            break
        added = _spread(new_rows, row_arg[new_rows], col_arg[new_cols], new_cols, near, n_d)
        grown = np.union1d(keys, added[p.feasible.ravel()[added]])
        if grown.size == keys.size:  # what prices out is already in the support: rounding noise
            status = "optimal"
            break
        keys = grown
    return plan, u_feasible, v, status, rounds, bound


def _spread(rows_i: np.ndarray, rows_j: np.ndarray, cols_i: np.ndarray, cols_j: np.ndarray,
            near: tuple[np.ndarray, np.ndarray] | None, n_d: int) -> np.ndarray:
    """Keys of the priced-out pairs; with positions, also of their geometric neighbours.

    A supply that should ship to demand j probably also pairs well with j's neighbours (and a
    demand priced out by supply i with i's neighbours): adding them cuts the number of rounds on
    degenerate costs such as shortest-path distances (5 -> 3 at 10 000 nodes).
    """
    if near is None:
        return np.concatenate([rows_i * n_d + rows_j, cols_i * n_d + cols_j])
    near_s, near_d = near
    by_row = rows_i[:, None] * n_d + near_d[rows_j]
    by_col = near_s[cols_i] * n_d + cols_j[:, None]
    return np.concatenate([by_row.ravel(), by_col.ravel()])


def _objective(p: Problem, plan: Triplets) -> tuple[float, float]:
    """Objective (transport cost + unserved penalties) and transport cost of a sparse plan."""
    served_s = np.bincount(plan.rows, plan.mass, p.supply.size)
    served_d = np.bincount(plan.cols, plan.mass, p.demand.size)
    value = float(plan.mass @ p.cost[plan.rows, plan.cols])
    return value + float(p.supply_penalty @ (p.supply - served_s) + p.demand_penalty @ (p.demand - served_d)), value


def _knn_keys(p: Problem, k: int, xy: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Flat indices of each row's k nearest (by position) or cheapest (by cost) feasible pairs."""
    n_s, n_d = p.cost.shape
    k = min(k, n_d)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k == n_d:
        idx = np.tile(np.arange(n_d), (n_s, 1))
    elif xy is not None:
        idx = cKDTree(xy[1]).query(xy[0], k=k)[1].reshape(n_s, k)
    else:
        idx = np.argpartition(p.cost, k - 1, axis=1)[:, :k]
    keys = np.repeat(np.arange(n_s), k) * n_d + idx.ravel()
    return keys[p.feasible.ravel()[keys]]


def _price(cost: np.ndarray, u: np.ndarray, v: np.ndarray):
    """Row-wise min / argmin of C - v and column-wise min / argmin of C - u, block by block."""
    n_s, n_d = cost.shape
    row_min, row_arg = np.empty(n_s), np.empty(n_s, dtype=np.int64)
    col_min, col_arg = np.full(n_d, np.inf), np.zeros(n_d, dtype=np.int64)
    step = max(1, _PRICE_BLOCK // max(n_d, 1))
    for lo in range(0, n_s, step):
        c = cost[lo:lo + step]
        r = c - v[None, :]
        arg = r.argmin(axis=1)
        row_arg[lo:lo + step], row_min[lo:lo + step] = arg, r[np.arange(r.shape[0]), arg]
        s = c - u[lo:lo + step, None]
        arg = s.argmin(axis=0)
        val = s[arg, np.arange(n_d)]
        better = val < col_min
        col_min[better], col_arg[better] = val[better], arg[better] + lo
    return row_min, row_arg, col_min, col_arg


def _embed(p: Problem, rows: np.ndarray, cols: np.ndarray, plan: Triplets, u: np.ndarray, v: np.ndarray,
           status: str, rounds: int, bound: float | None) -> TransportResult:
    """Back to the full index set; massless nodes get c-transform duals, which keeps (u, v) feasible."""
    plan = Triplets(rows[plan.rows], cols[plan.cols], plan.mass)
    full = plan.dense(p.cost.shape)
    uu, vv = np.zeros(p.supply.size), np.zeros(p.demand.size)
    uu[rows], vv[cols] = u, v
    zero_s, zero_d = np.setdiff1d(np.arange(uu.size), rows), np.setdiff1d(np.arange(vv.size), cols)
    if zero_d.size:
        slack = (p.cost[np.ix_(rows, zero_d)] - u[:, None]).min(axis=0, initial=np.inf)
        vv[zero_d] = np.minimum(p.demand_penalty[zero_d], slack)
    if zero_s.size:
        slack = (p.cost[zero_s] - vv[None, :]).min(axis=1, initial=np.inf)
        uu[zero_s] = np.minimum(p.supply_penalty[zero_s], slack)
    served = (np.bincount(plan.rows, plan.mass, uu.size), np.bincount(plan.cols, plan.mass, vv.size))
    value = float(plan.mass @ p.cost[plan.rows, plan.cols])
    return partial_result(p, full, uu, vv, "hierarchical", status, rounds, lower_bound=bound,
                          known=(value, *served))
