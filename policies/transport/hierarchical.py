"""Coarse-to-fine transport for thousands of nodes.

0. **Few pairs**: when the feasible pairs are no more than the refinement's pool (below), all of
   them go to one sparse exact solve instead (``_few_pairs``; status 'optimal', no rounds).
   With at most ``_SMALL_SIDE`` entries on one side, steps 1-4 are skipped (refinement from an
   empty plan).
1. **Cluster** supply and demand (given labels, or k-means on positions with k ~ sqrt(n), its
   initialisation drawn from the ``rng`` handed to ``solve``).
2. **Coarse**: exact transport between clusters (aggregated masses; cluster-to-cluster cost = the
   mean of the finite member costs, or their min).
3. **Fine**: for each cluster pair the coarse plan links, an exact sub-problem moves the coarse
   flow, split over members in proportion to their mass.
4. **Leftovers**: mass a sub-problem could not place (infeasible pairs inside the block) goes
   through one exact pass over the residual supply and demand.
5. **Refine** (``refine_rounds`` > 0): column generation on sparse exact problems. The support
   starts as the pairs used so far plus each node's 8 nearest partners (by position when
   positions are given, else by cost); a pool holds each node's ``knn`` nearest. Each restricted
   problem is solved by POT's sparse network simplex warm-started from the previous duals
   (``RestrictedExact``); while many pool pairs price out against its duals they join the support
   and it is solved again. Then a pass over the full cost matrix repairs the duals into a feasible
   pair (c-transforms), which gives a certified lower bound on the optimal objective: the loop
   stops with status 'converged' when (objective - bound) <= gap_tol * transport cost (relative to
   the transport cost, not the objective, whose unserved penalties would dilute it), or 'optimal'
   when no pair prices out (then the plan is exact; with gap_tol = 0 only, since otherwise the
   restricted solves see costs perturbed by a factor 1 + 1e-7 to break ties). Else the pairs that
   price out (each supply's and demand's most negative partner, with positions also its
   neighbours) join the support: one refinement round is one such pass.

Measured gaps (total_cost over exact, relative to the exact transport cost). Steps 1-4 alone
(``refine_rounds=0``) do well when supply and demand sit in separate clusters (max 1.6 % over 12
blob instances of 500-2000 points) but not when they interleave: the proportional split sends
far-side members across the cluster (29-37 % on shared blobs, 35-140 % on uniform points). 'mean'
gave a smaller gap than 'min' in every measured instance (e.g. 1.56 % vs 1.91 % at worst on the
blobs, 141 % vs 164 % on uniform points), so it is the default. The refinement brings every
measured instance within 0.6 % in 1-2 rounds (48 blob instances of 500-2000 points: median 0.2 %,
certified <= 1.9 %; 0.14-0.27 % at 10 000 uniform points, certified <= 1 %, in one round of
three restricted solves).

Cost at 10 000 nodes (3300 x 3300, ``benchmarks/allocator.py``): 0.45-0.65 s of CPU time, of
which 0.25-0.35 s in the restricted solves (the first, cold, 0.12-0.2 s; the network simplex
grows about as n^2.2 here), 0.03 s per pass over the cost matrix, and 0.1-0.13 s for clustering,
coarse and fine levels; at 20 000 nodes 2.6 s (5.7 s before warm starts and pool pricing).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from scipy.cluster.vq import kmeans2
from scipy.spatial import cKDTree

from .core import (
    Problem,
    SparsePlan,
    TransportInputError,
    TransportResult,
    check_positive,
    partial_result,
    trivial_result,
)
from .exact import (
    EMD_MAX_ITER,
    RestrictedExact,
    Triplets,
    balanced_dense_plan,
    exact_plan,
    solve_exact,
    solve_sparse,
)

_SPREAD = 4
"""Neighbours (self included) of a priced-out partner that join the support with it."""
_FIRST = 8
"""Nearest candidate partners per node in the first restricted support (the rest wait in the pool)."""
_PRICE_BLOCK = 2**17
"""Cost entries priced per block (the block and its temporaries stay in cache)."""
_PERTURB, _PERTURB_PER_GAP = 1e-7, 1e-4
"""Relative cost perturbation of the restricted solves (``RestrictedExact``): at most _PERTURB and
_PERTURB_PER_GAP * gap_tol (none for gap_tol = 0); dropped for one more solve when nothing is left
to add but the certificate still falls short."""
_MAX_INNER = 10
"""Restricted solves between two full pricing passes, at most."""
_SMALL_SIDE = 64
"""With at most this many supply or demand entries carrying mass, the refinement starts from an
empty plan: clustering the other side (k-means over all its points) costs more than it saves. A
task market at 100,000 nodes has 1-8 offers and ~97,000 requests; on such shapes (random costs,
one side of 97,000) a solve took 1.25-4.6 s with the coarse-to-fine start and 0.3-3.4 s without
(1, 8, 32 and 64 on the small side), to the same cost (one run each, a script not kept)."""


@dataclass(frozen=True)
class HierarchicalOptions:
    """Options of the 'hierarchical' solver. Each side needs cluster labels or positions."""

    supply_clusters: ArrayLike | None = None
    """Cluster label of each supply entry; or give supply_xy."""
    demand_clusters: ArrayLike | None = None
    """Cluster label of each demand entry; or give demand_xy."""
    supply_xy: ArrayLike | None = None
    """Positions (n_supply, dim), clustered with k-means (and used to pick refinement candidates)."""
    demand_xy: ArrayLike | None = None
    """Positions (n_demand, dim), clustered with k-means (and used to pick refinement candidates)."""
    cluster_cost: Literal["mean", "min"] = "mean"
    """How member costs aggregate into a cluster-to-cluster cost."""
    refine_rounds: int = 10
    """Pricing rounds of the sparse exact refinement; 0 keeps the plain coarse-to-fine plan."""
    gap_tol: float = 0.02
    """Stop refining once (objective - certified lower bound) <= gap_tol * transport cost."""
    knn: int = 40
    """Candidate partners per supply of the refinement: its ``knn`` nearest demands (by position,
    else its cheapest partners), priced after every restricted solve; the nearest 8 (and, with
    positions, each demand's 8 nearest supplies) start the support."""
    max_iter: int = EMD_MAX_ITER
    """Network simplex iteration cap of each restricted solve."""

    def __post_init__(self) -> None:
        if self.refine_rounds < 0 or self.knn < 0 or self.gap_tol < 0:
            raise TransportInputError("refine_rounds, knn and gap_tol must be >= 0")
        if self.cluster_cost not in ("mean", "min"):
            raise TransportInputError(f"cluster_cost must be 'mean' or 'min', got {self.cluster_cost!r}")
        check_positive("max_iter", self.max_iter)


def solve_hierarchical(p: Problem, opts: HierarchicalOptions, rng: np.random.Generator) -> TransportResult:
    """Coarse-to-fine transport (module docstring). Works on the nodes that carry mass; ``rng``
    seeds the k-means initialisation. The plan comes as ``plan_coo`` only (``plan`` is None)."""
    if p.trivial:
        return trivial_result(p, "hierarchical")
    rows, cols = np.flatnonzero(p.supply > 0), np.flatnonzero(p.demand > 0)
    sub = _restrict(p, rows, cols)
    pairs = _few_pairs(sub, opts) if opts.refine_rounds > 0 else None
    if pairs is not None:
        plan, u, v, status = solve_sparse(sub, *pairs, opts.max_iter)
        return _embed(p, rows, cols, plan, u, v, status, 0,
                      _objective(sub, plan)[0] if status == "optimal" else None)
    if opts.refine_rounds > 0 and min(rows.size, cols.size) <= _SMALL_SIDE:
        _require_sides(opts)     # no clustering: the refinement's first support covers such a side
        plan = Triplets.concat([])
    else:
        ls, ld = cluster_labels(p, opts, rng)
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
def _require_sides(opts: HierarchicalOptions) -> None:
    """Raise unless each side has cluster labels or positions."""
    for side, labels, xy in (("supply", opts.supply_clusters, opts.supply_xy),
                             ("demand", opts.demand_clusters, opts.demand_xy)):
        if labels is None and xy is None:
            raise TransportInputError(f"method 'hierarchical' needs {side}_clusters or {side}_xy")


def cluster_labels(p: Problem, opts: HierarchicalOptions, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels of supply and demand entries: given, or k-means on the given positions."""
    _require_sides(opts)
    out = []
    for side, n, labels, xy in (("supply", p.supply.size, opts.supply_clusters, opts.supply_xy),
                                ("demand", p.demand.size, opts.demand_clusters, opts.demand_xy)):
        if labels is not None:
            out.append(_labels(labels, n, side))
        else:
            out.append(kmeans_labels(_positions(xy, n, side), rng))
    return out[0], out[1]


def kmeans_labels(xy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """k-means++ with k = ceil(sqrt(n)); empty clusters are simply dropped."""
    k = int(np.ceil(np.sqrt(xy.shape[0])))
    if k <= 1:
        return np.zeros(xy.shape[0], dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "One of the clusters is empty": harmless here
        _, labels = kmeans2(xy, _kmeans_pp(xy, k, rng), minit="matrix")
    return labels.astype(np.int64)


def _kmeans_pp(xy: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds drawn as scipy's ``kmeans2(minit='++')`` draws them, in O(n k) not O(n k^2).

    Each new seed is a point drawn with probability proportional to its squared distance to the
    nearest seed so far; that distance is updated with the new seed only (scipy recomputes it
    against all seeds: 16 of the 20 ms of a k-means at 3300 points; this takes 6 ms).
    """
    seeds = np.empty((k, xy.shape[1]))
    seeds[0] = xy[rng.integers(xy.shape[0])]
    diff = xy - seeds[0]
    d2 = np.einsum("ij,ij->i", diff, diff)
    cum = np.empty_like(d2)
    for i in range(1, k):
        np.cumsum(d2, out=cum)
        seeds[i] = xy[min(int(np.searchsorted(cum, rng.uniform() * cum[-1])), xy.shape[0] - 1)]
        np.subtract(xy, seeds[i], out=diff)
        np.minimum(d2, np.einsum("ij,ij->i", diff, diff), out=d2)
    return seeds


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
def _few_pairs(p: Problem, opts: HierarchicalOptions) -> tuple[np.ndarray, np.ndarray] | None:
    """Every feasible pair (rows, cols) when they are no more than the pool ``refine`` would price
    (``knn`` per supply and ``_FIRST`` per demand), else None. Then one sparse exact solve on all
    of them is no larger than a restricted solve of the refinement, and it is exact: an energy
    market whose pairs stop at the efficiency that can pay (``OTController.least_efficiency``)
    is such a problem (at 10,000 nodes, ~9,600 offers x ~400 requests, ~17,000 feasible pairs)."""
    if p.all_feasible:
        return None
    n_s, n_d = p.feasible.shape
    if np.count_nonzero(p.feasible) > opts.knn * n_s + _FIRST * n_d:
        return None
    return np.nonzero(p.feasible)


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
        finite = p.all_feasible
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
    return solve_exact(coarse)


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
    """Exact sub-problem per linked cluster pair, masses split in proportion to the members'.

    A block's masses have equal totals (the coarse flow), so when all its pairs are feasible it is
    a plain balanced problem, solved without the dummy row and column of ``balance``.
    """
    a_k, b_l = np.bincount(ls, p.supply), np.bincount(ld, p.demand)
    members_s, members_d = _members(ls), _members(ld)
    all_feasible = p.all_feasible
    parts = []
    for k, l in zip(*np.nonzero(flows > 1e-14 * flows.sum()), strict=False):
        rows, cols = members_s[k], members_d[l]
        a, b = p.supply[rows] * (flows[k, l] / a_k[k]), p.demand[cols] * (flows[k, l] / b_l[l])
        plan = balanced_dense_plan(a, b, p.cost[np.ix_(rows, cols)]) if all_feasible else None
        if plan is None:
            parts.append(_block(p, rows, cols, a, b))
        else:
            i, j = np.nonzero(plan)
            parts.append(Triplets(rows[i], cols[j], plan[i, j]))
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
def refine(p: Problem, plan: Triplets, opts: HierarchicalOptions, xy: tuple[np.ndarray, np.ndarray] | None = None):
    """Sparse exact transport with pricing rounds (module docstring, step 5); all masses > 0.

    Column generation on two levels. The support starts as the pairs of ``plan`` plus each node's
    ``_FIRST`` nearest candidates; a pool holds each node's ``opts.knn`` nearest candidates (by
    position with ``xy``, a k-d tree query; else the cheapest per supply). After each restricted
    solve (warm-started from the previous duals) the pool is priced, which is cheap; while many
    pool pairs price out they join the support and the problem is solved again. Then one pass over
    the full cost matrix gives a feasible dual pair and so the certified bound, and the pairs that
    price out there (each supply's and demand's most negative partner, with positions also that
    partner's neighbours) join the support and the pool. A pricing round is one such full pass.
    """
    n_s, n_d = p.cost.shape
    (keys, pool, near), (tol, tol_full, solver) = _support(p, plan, opts.knn, xy), _restricted_solver(p, opts)
    pool_rows, pool_cols = np.divmod(pool, n_d)
    pool_cost = solver.costs(pool_rows, pool_cols)
    inner_limit = max(n_s, n_d) // 8
    status, rounds, inner = "max_rounds_reached", 0, 0
    while True:
        at = np.searchsorted(pool, keys)
        sol = solver.solve(pool_rows[at], pool_cols[at], pool_cost[at])
        negative = pool_cost - sol.u[pool_rows] - sol.v[pool_cols] < -tol
        n_negative = int(np.count_nonzero(negative))
        if sol.status == "optimal" and n_negative > inner_limit and inner < _MAX_INNER:
            keys, inner = _union(keys, pool[negative]), inner + 1
            continue
        rounds, inner = rounds + 1, 0
        objective, value = _objective(p, sol.plan)
        plan = sol.plan
        bound, u, v, row_min, col_min = certify(p, sol.u, sol.v, enough=objective - opts.gap_tol * value)
        new_rows, new_cols = np.flatnonzero(row_min - sol.u < -tol_full), np.flatnonzero(col_min - sol.v < -tol_full)
        if sol.status != "optimal":
            status = f"sparse_{sol.status}"
            break
        if n_negative == 0 and new_rows.size == 0 and new_cols.size == 0 and solver.perturb == 0:
            status = "optimal"
            break
        if objective - bound <= opts.gap_tol * value:
            status = "converged"
            break
        if rounds >= opts.refine_rounds:
            break
        row_arg = (p.cost[new_rows] - sol.v).argmin(axis=1)
        col_arg = (p.cost[:, new_cols] - sol.u[:, None]).argmin(axis=0)
        added = _spread(new_rows, row_arg, col_arg, new_cols, near, n_d)
        added = added[p.feasible[added // n_d, added % n_d]]
        grown = _union(keys, pool[negative], added)
        if grown.size == keys.size:  # what prices out is already in the support: rounding noise,
            if solver.perturb == 0:  # or the cost perturbation: then solve once more without it
                status = "optimal"
                break
            solver.perturb, tol_full = 0.0, tol
            pool_cost = solver.costs(pool_rows, pool_cols)
            continue
        keys = grown
        if not np.isin(added, pool, assume_unique=False).all():
            pool = _union(pool, added)
            pool_rows, pool_cols = np.divmod(pool, n_d)
            pool_cost = solver.costs(pool_rows, pool_cols)
    return plan, u, v, status, rounds, bound


def _support(p: Problem, plan: Triplets, knn: int, xy: tuple[np.ndarray, np.ndarray] | None):
    """The first support (plan pairs and nearest candidates), the pool and each node's nearest
    neighbours (with positions), as keys row * n_d + col (``refine``)."""
    n_d = p.cost.shape[1]
    trees = None if xy is None else (cKDTree(xy[0]), cKDTree(xy[1]))
    first, pool = _candidates(p, knn, xy, trees)
    keys = _union(plan.rows * n_d + plan.cols, first)
    pool = _union(pool, keys)
    near = None if xy is None else tuple(t.query(z, k=min(_SPREAD, len(z)))[1].reshape(len(z), -1)
                                         for t, z in zip(trees, xy, strict=True))
    return keys, pool, near


def _restricted_solver(p: Problem, opts: HierarchicalOptions) -> tuple[float, float, RestrictedExact]:
    """Pricing tolerances (restricted, full pass) and the warm-started solver of ``refine``."""
    cmax = float(p.cost.max(initial=0.0) if p.all_feasible else np.max(p.cost, where=p.feasible, initial=0.0))
    scale = max(cmax, float(p.supply_penalty.max()), float(p.demand_penalty.max()))
    tol = 1e-10 * scale  # duals of magnitude ~penalty carry rounding noise of about 1e-12 of it
    perturb = min(_PERTURB, _PERTURB_PER_GAP * opts.gap_tol)
    tol_full = tol + 2.0 * perturb * cmax  # the duals price the perturbed costs exactly, the true ones to this
    return tol, tol_full, RestrictedExact(p, opts.max_iter, perturb)  # perturb: see _PERTURB


def certify(p: Problem, u: np.ndarray, v: np.ndarray, enough: float = np.inf):
    """A certified lower bound from duals (u, v) that may violate some pair constraints.

    The c-transform repairs them: rows first, u1 = min(ps, min_j C - v), v1 = min(pd, min_i C - u1);
    or columns first, v2 = min(pd, min_i C - u), u2 = min(ps, min_j C - v2). Either pair is feasible
    for the dual of the partial problem, so a.u + b.v is a lower bound. Rows first costs one pass
    over the cost matrix (it also yields min_i C - u); columns first a second one, done only when
    the first bound is below ``enough``, and the better pair is kept (columns first was the tighter
    on blobs, e.g. 1.0 % vs 2.6 % after the first solve; rows first by a little on uniform points).
    Returns the bound, its dual pair, and min_j (C - v) per row and min_i (C - u) per column, which
    say what prices out.
    """
    row_min, col_min, col_min1 = _pass(p.cost, u, v, p.supply_penalty)
    u1, v1 = np.minimum(p.supply_penalty, row_min), np.minimum(p.demand_penalty, col_min1)
    bound = float(p.supply @ u1 + p.demand @ v1)
    if bound < enough:
        v2 = np.minimum(p.demand_penalty, col_min)
        u2 = np.minimum(p.supply_penalty, _row_min(p.cost, v2))
        b2 = float(p.supply @ u2 + p.demand @ v2)
        if b2 > bound:
            bound, u1, v1 = b2, u2, v2
    return bound, u1, v1, row_min, col_min


def _blocks(cost: np.ndarray):
    """Row blocks of about _PRICE_BLOCK entries, so that a block and its temporaries stay in cache."""
    step = max(1, _PRICE_BLOCK // max(cost.shape[1], 1))
    for lo in range(0, cost.shape[0], step):
        yield lo, cost[lo:lo + step]


def _pass(cost: np.ndarray, u: np.ndarray, v: np.ndarray, ps: np.ndarray):
    """One pass over C: min_j (C_ij - v_j) per row, min_i (C_ij - u_i) and min_i (C_ij - u1_i) per
    column with u1 = min(ps, min_j (C - v)) (rows-first c-transform, known block by block)."""
    n_s, n_d = cost.shape
    row_min, col_min, col_min1 = np.full(n_s, np.inf), np.full(n_d, np.inf), np.full(n_d, np.inf)
    if n_s == 0 or n_d == 0:
        return row_min, col_min, col_min1
    buf, part = np.empty((min(max(1, _PRICE_BLOCK // n_d), n_s), n_d)), np.empty(n_d)
    for lo, c in _blocks(cost):
        hi = lo + c.shape[0]
        r = buf[:c.shape[0]]
        np.subtract(c, v, out=r)
        r.min(axis=1, out=row_min[lo:hi])
        np.subtract(c, u[lo:hi, None], out=r)
        r.min(axis=0, out=part)
        np.minimum(col_min, part, out=col_min)
        np.subtract(c, np.minimum(ps[lo:hi], row_min[lo:hi])[:, None], out=r)
        r.min(axis=0, out=part)
        np.minimum(col_min1, part, out=col_min1)
    return row_min, col_min, col_min1


def _row_min(cost: np.ndarray, v: np.ndarray) -> np.ndarray:
    """min_j (C_ij - v_j) per row, block by block."""
    out = np.full(cost.shape[0], np.inf)
    if cost.shape[1] == 0:
        return out
    buf = np.empty((min(max(1, _PRICE_BLOCK // cost.shape[1]), cost.shape[0]), cost.shape[1]))
    for lo, c in _blocks(cost):
        r = buf[:c.shape[0]]
        np.subtract(c, v, out=r)
        r.min(axis=1, out=out[lo:lo + c.shape[0]])
    return out


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


def _candidates(p: Problem, k: int, xy: tuple[np.ndarray, np.ndarray] | None,
                trees: tuple[cKDTree, cKDTree] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Keys of the first support and of the pool (``refine``): feasible pairs, sorted, unique.

    The pool holds each supply's k nearest demands (by position: a k-d tree query; else its k
    cheapest partners, a partial sort of every cost row) and, with positions, each demand's
    ``_FIRST`` nearest supplies; the first support each node's ``_FIRST`` nearest of those. A
    demand-side pool as deep as the supply side made the restricted problems larger, not the
    result better (measured at 10 000 nodes: 12 % more time in sum over 8 instances; certified
    gap 0.4 % vs 0.9 %, both within the 2 % asked).
    """
    n_s, n_d = p.cost.shape
    firsts, pools = [], []
    if xy is not None:
        trees = trees or (cKDTree(xy[0]), cKDTree(xy[1]))
        for by_row, a, tree_b, n_a, n_b, kk in ((True, xy[0], trees[1], n_s, n_d, k),
                                                (False, xy[1], trees[0], n_d, n_s, _FIRST)):
            kk = min(kk, n_b)
            if kk <= 0 or n_a == 0:
                continue
            idx = tree_b.query(a, k=kk)[1].reshape(n_a, kk)
            keys = np.arange(n_a)[:, None] * n_d + idx if by_row else idx * n_d + np.arange(n_a)[:, None]
            pools.append(keys.ravel())
            firsts.append(keys[:, :_FIRST].ravel())
    else:
        kk = min(k, n_d)
        if kk > 0:
            k0 = min(_FIRST, kk)
            idx = np.argpartition(p.cost, sorted({k0 - 1, kk - 1}), axis=1)[:, :kk]
            keys = np.arange(n_s)[:, None] * n_d + idx
            pools.append(keys.ravel())
            firsts.append(keys[:, :k0].ravel())
    first, pool = _union(*firsts), _union(*pools)
    return (first[p.feasible[first // n_d, first % n_d]], pool[p.feasible[pool // n_d, pool % n_d]])


def _union(*keys: np.ndarray) -> np.ndarray:
    """Sorted unique union of integer key arrays (a sort: numpy's hash-based unique is slower here)."""
    x = np.sort(np.concatenate([np.asarray(k, dtype=np.int64) for k in keys]) if keys else np.zeros(0, np.int64))
    if x.size > 1:
        x = x[np.concatenate([[True], x[1:] != x[:-1]])]
    return x


def _embed(p: Problem, rows: np.ndarray, cols: np.ndarray, plan: Triplets, u: np.ndarray, v: np.ndarray,
           status: str, rounds: int, bound: float | None) -> TransportResult:
    """Back to the full index set; massless nodes get c-transform duals, which keeps (u, v) feasible."""
    n_d = p.demand.size
    keys, inverse = np.unique(rows[plan.rows] * n_d + cols[plan.cols], return_inverse=True)
    mass = np.bincount(inverse.ravel(), plan.mass, keys.size)
    keep = mass > 0
    keys, mass = keys[keep], mass[keep]
    coo = SparsePlan(keys // n_d, keys % n_d, mass, (p.supply.size, n_d))
    for arr in (coo.rows, coo.cols, coo.mass):
        arr.setflags(write=False)
    uu, vv = np.zeros(p.supply.size), np.zeros(n_d)
    uu[rows], vv[cols] = u, v
    zero_s, zero_d = np.setdiff1d(np.arange(uu.size), rows), np.setdiff1d(np.arange(vv.size), cols)
    if zero_d.size:
        slack = (p.cost[np.ix_(rows, zero_d)] - u[:, None]).min(axis=0, initial=np.inf)
        vv[zero_d] = np.minimum(p.demand_penalty[zero_d], slack)
    if zero_s.size:
        slack = (p.cost[zero_s] - vv[None, :]).min(axis=1, initial=np.inf)
        uu[zero_s] = np.minimum(p.supply_penalty[zero_s], slack)
    served = (np.bincount(coo.rows, coo.mass, uu.size), np.bincount(coo.cols, coo.mass, vv.size))
    value = float(coo.mass @ p.cost[coo.rows, coo.cols])
    return partial_result(p, None, uu, vv, "hierarchical", status, rounds,
                          lower_bound=bound, known=(value, *served), plan_coo=coo)
