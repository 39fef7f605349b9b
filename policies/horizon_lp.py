"""One linear program over a horizon of epochs: the hindsight bound and the MPC controller share it.

``HorizonInputs`` holds what the program knows (harvest, failures and usable links per epoch, the
nodes' batteries, the tasks); ``energy_program`` builds the energy part (batteries, transfers over
the link graph with a loss per link, idle loads), ``task_program`` adds a fluid relaxation of task
service, and ``solve`` hands the sparse matrix to HiGHS; ``WarmSolver`` keeps one program in
HiGHS across solves whose matrix stays the same (mpc's rolling window), so each solve starts from
the last basis, and ``price_moves`` solves the task program by column generation over its work
moves. The matrix is assembled from COO triplets
in whole-array steps (no loop over variables). Every constraint is one a run of the simulator
satisfies (docs/model.md, "The hindsight bound" gives the argument), so the program's optimum is a
bound no controller can beat.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import highspy
import numpy as np
from scipy import sparse
from scipy.optimize import OptimizeWarning, linprog
from scipy.sparse.csgraph import connected_components

from otmarl.scenarios.errors import UserError


@dataclass(frozen=True)
class HorizonInputs:
    """What the program knows, over ``K`` epochs, ``n`` nodes and ``L`` links (all energies Wh per
    epoch). ``usable0_wh``: energy above the brownout level at the start; ``room_wh``: capacity less
    the brownout level. Tasks (optional, ``task_*`` arrays over tasks): the node where each is
    queued or generated, the first and last epoch in which it may start on time, its work (s at
    speed 1)."""

    harvest_wh: np.ndarray
    alive: np.ndarray
    link_usable: np.ndarray
    usable0_wh: np.ndarray
    room_wh: np.ndarray
    eta_c: np.ndarray
    eta_d: np.ndarray
    charge_cap_wh: np.ndarray
    discharge_cap_wh: np.ndarray
    sd_share: np.ndarray
    idle_wh: np.ndarray
    link_u: np.ndarray
    link_v: np.ndarray
    link_eff: np.ndarray
    link_cap_wh: np.ndarray
    dt_s: float
    speed: np.ndarray
    servers: np.ndarray
    active_w: np.ndarray
    task_node: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    task_first: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    task_last: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    task_work_s: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def shape(self) -> tuple[int, int]:
        return self.harvest_wh.shape


class Program:
    """A sparse LP under construction: variable blocks, rows ``A x <= b`` and ``A x = b``."""

    def __init__(self) -> None:
        self.lb: list[np.ndarray] = []
        self.ub: list[np.ndarray] = []
        self.cost: list[np.ndarray] = []
        self.n_var = 0
        self.parts = {"ub": ([], [], []), "eq": ([], [], [])}
        self.rhs: dict[str, list[np.ndarray]] = {"ub": [], "eq": []}
        self.n_row = {"ub": 0, "eq": 0}

    def var(self, shape: tuple[int, ...], lb=0.0, ub=np.inf, cost=0.0) -> np.ndarray:
        """A block of variables; returns their indices in ``shape``."""
        size = int(np.prod(shape))
        idx = np.arange(self.n_var, self.n_var + size).reshape(shape)
        self.n_var += size
        for dst, v in ((self.lb, lb), (self.ub, ub), (self.cost, cost)):
            dst.append(np.broadcast_to(np.asarray(v, float), shape).ravel())
        return idx

    def rows(self, kind: str, rhs: np.ndarray) -> np.ndarray:
        """New rows of ``kind`` ('ub' or 'eq') with right-hand sides ``rhs``; their indices."""
        rhs = np.asarray(rhs, float)
        idx = np.arange(self.n_row[kind], self.n_row[kind] + rhs.size).reshape(rhs.shape)
        self.n_row[kind] += rhs.size
        self.rhs[kind].append(rhs.ravel())
        return idx

    def add(self, kind: str, row: np.ndarray, col: np.ndarray, val) -> None:
        """Coefficients ``val`` at (row, col), broadcast together."""
        r, c, v = np.broadcast_arrays(row, col, np.asarray(val, float))
        for dst, a in zip(self.parts[kind], (r, c, v)):
            dst.append(a.ravel())

    def matrix(self, kind: str):
        r, c, v = (np.concatenate(p) if p else np.zeros(0) for p in self.parts[kind])
        return sparse.coo_array((v, (r.astype(np.int64), c.astype(np.int64))),
                                shape=(self.n_row[kind], self.n_var)).tocsr()


@dataclass(frozen=True)
class EnergyVars:
    """Variable indices of the energy part, (K, n) per node-epoch unless said otherwise:
    ``usable`` (energy above the brownout level at the end of the epoch), ``net`` (received less
    sent, battery to battery at the boundary), ``draw`` and ``charge`` (bus side), ``idle`` (idle
    load served), ``flow`` (arc flows, one per usable link and direction, with their epoch, tail
    and head), ``bus`` (row of each node-epoch's bus balance, where task energy joins)."""

    usable: np.ndarray
    net: np.ndarray
    draw: np.ndarray
    charge: np.ndarray
    idle: np.ndarray
    flow: np.ndarray
    flow_epoch: np.ndarray
    flow_tail: np.ndarray
    flow_head: np.ndarray
    bus: np.ndarray


def energy_program(lp: Program, x: HorizonInputs, idle_cost: float = -1.0, store_value: float = 0.0,
                   flow_cost: float = 0.0, network: str = "links") -> EnergyVars:
    """Batteries, transfers and idle loads over the horizon; ``idle_cost`` per Wh of idle load
    served (negative: the program serves as much as it can), ``store_value`` per Wh above the
    brownout level at the end, ``flow_cost`` per Wh entering a link (the bound uses 0 for both).
    ``network``: 'links' (a flow on every usable link with its loss) or 'pool' (each connected
    part of the usable graph a pool: smaller, and looser; ``_pool``)."""
    K, n = x.shape
    al = x.alive.astype(float)
    room = np.maximum(x.room_wh, 0.0)
    end_value = np.zeros((K, n))
    end_value[-1] = -store_value
    U = lp.var((K, n), 0.0, room, cost=end_value)
    # net received at the boundary (received - sent): at most the charge limit, at least -room
    t = lp.var((K, n), -room * al, x.charge_cap_wh * al)
    d = lp.var((K, n), 0.0, x.discharge_cap_wh * al)
    c = lp.var((K, n), 0.0, np.broadcast_to(x.charge_cap_wh, (K, n)))
    ell = lp.var((K, n), 0.0, x.idle_wh * al, cost=idle_cost)
    keep = 1.0 - x.sd_share
    first = np.zeros((K, n))
    first[0] = np.maximum(x.usable0_wh, 0.0)
    prev = U[:-1]        # U_k of epoch k >= 1 is the variable of epoch k - 1

    def with_prev(rows: np.ndarray, coef) -> None:
        lp.add("ub", rows[1:], prev, np.broadcast_to(coef, (K, n))[1:])

    # (a) send at most what is above the brownout level: -t - U_k <= 0
    ra = lp.rows("ub", first)
    lp.add("ub", ra, t, -1.0)
    with_prev(ra, -1.0)
    # (b) draw at most what is above it after self-discharge: d / eta_d - keep (U_k + t) <= 0
    rb = lp.rows("ub", first * keep)
    lp.add("ub", rb, d, 1.0 / x.eta_d)
    lp.add("ub", rb, t, -keep)
    with_prev(rb, -keep)
    # (c) the store: U_{k+1} <= keep (U_k + t) + eta_c c - d / eta_d
    rc = lp.rows("ub", first * keep)
    lp.add("ub", rc, U, 1.0)
    lp.add("ub", rc, t, -keep)
    lp.add("ub", rc, c, -x.eta_c)
    lp.add("ub", rc, d, 1.0 / x.eta_d)
    with_prev(rc, -keep)
    # (d) the bus: idle + charge (+ task energy) - draw <= harvest
    rd = lp.rows("ub", x.harvest_wh)
    lp.add("ub", rd, ell, 1.0)
    lp.add("ub", rd, c, 1.0)
    lp.add("ub", rd, d, -1.0)
    if network == "pool":
        f = _pool(lp, x, t, flow_cost)
        none = np.zeros((0, 2), np.int64)
        return EnergyVars(U, t, d, c, ell, f, none, none, none, rd)
    f, fk, tail, head = _transfers(lp, x, t, flow_cost)
    return EnergyVars(U, t, d, c, ell, f, fk, tail, head, rd)


def _transfers(lp: Program, x: HorizonInputs, t: np.ndarray, flow_cost: float):
    """Arc flows over the usable links with a loss per link, each direction within the link's
    limit, and the node balances ``net received = eta * in - out``."""
    K, n = x.shape
    kk, ll = np.nonzero(x.link_usable)
    f = lp.var((len(kk), 2), 0.0, np.repeat(x.link_cap_wh[ll][:, None], 2, 1), cost=flow_cost)
    tail = np.stack([x.link_u[ll], x.link_v[ll]], 1)
    head = np.stack([x.link_v[ll], x.link_u[ll]], 1)
    epoch = np.repeat(kk[:, None], 2, 1)
    re = lp.rows("eq", np.zeros((K, n)))
    lp.add("eq", re, t, 1.0)
    lp.add("eq", re[epoch, tail], f, 1.0)
    lp.add("eq", re[epoch, head], f, -x.link_eff[ll][:, None])
    return f, epoch, tail, head


def _pool(lp: Program, x: HorizonInputs, t: np.ndarray, send_cost: float) -> np.ndarray:
    """Transfers pooled over each epoch's connected part of the usable graph: a node sends ``s``
    and receives ``r`` (``t = r - s``), each at most the limits of its usable links, and a part
    receives at most its best link efficiency times what it sends (every Wh crosses a link).
    Every flow on the links meets these, so the pool is a relaxation of them. Returns ``s``."""
    K, n = x.shape
    comp = _components(x)
    kk, ll = np.nonzero(x.link_usable)
    cap = np.zeros((K, n))
    for end in (x.link_u, x.link_v):
        np.add.at(cap, (kk, end[ll]), x.link_cap_wh[ll])
    best = np.zeros(K * n)
    np.maximum.at(best, kk * n + comp[kk, x.link_u[ll]], x.link_eff[ll])
    eta = best[np.arange(K)[:, None] * n + comp]
    s = lp.var((K, n), 0.0, cap, cost=send_cost)
    r = lp.var((K, n), 0.0, cap * eta)
    re = lp.rows("eq", np.zeros((K, n)))
    lp.add("eq", re, t, 1.0)
    lp.add("eq", re, r, -1.0)
    lp.add("eq", re, s, 1.0)
    key = np.arange(K)[:, None] * n + comp
    uniq, row_of = np.unique(key, return_inverse=True)
    rp = lp.rows("ub", np.zeros(len(uniq)))[row_of.reshape(K, n)]
    lp.add("ub", rp, r, 1.0)
    lp.add("ub", rp, s, -eta)
    return s


@dataclass(frozen=True)
class TaskVars:
    """Variable indices of the task part: ``done`` (one per task: the fraction started on time),
    ``served`` (K, n, W+1): work started at a node in an epoch, by how many epochs remain before
    the tasks' last start; ``moves`` (one per usable link, direction and class of remaining
    epochs): work handed from ``move_from`` to ``move_to`` (the rows of the two nodes' work
    balances) within the epoch."""

    done: np.ndarray
    served: np.ndarray
    moves: np.ndarray
    move_from: np.ndarray
    move_to: np.ndarray
    move_cap: float


def task_program(lp: Program, x: HorizonInputs, ev: EnergyVars, done_cost: float = -1.0,
                 moves_open: bool = True, admitted: np.ndarray | None = None,
                 work_max: float = 0.0, move_ub: np.ndarray | None = None,
                 move_cost: float = 0.0) -> TaskVars:
    """Fluid task service: work is pooled over each epoch's connected part of the usable graph
    (handed along its links, any number of hops, at no cost), started by a node within its
    servers' time and its energy, and counted per task. ``moves_open`` False: every move fixed at
    0 (each node serves its own tasks), the start of ``price_moves``.

    With ``admitted`` ((K, n, Q): seconds of work, at speed 1, that may arrive at each epoch and
    node with q epochs left before its last start), that work replaces the tasks of ``x``:
    ``done`` is then one variable per entry, up to it, at ``done_cost`` per second of work, so
    that the program's matrix does not depend on the tasks (mpc's rolling window keeps it); ``work_max`` is the largest task's work (the overrun of the servers' time),
    ``move_ub`` the limit of each move (one per usable link and direction) and ``move_cost`` the
    cost per second of work moved."""
    K, n = x.shape
    # work started, waiting or moved never needs to exceed all the tasks' work (finite bounds keep
    # ``dual_bound`` finite and change no optimum): ``total``
    if admitted is None:
        Q = int(np.max(x.task_last - x.task_first)) + 1 if len(x.task_node) else 1
        wmax = float(x.task_work_s.max()) if len(x.task_work_s) else 0.0
        y = lp.var((len(x.task_node),), 0.0, 1.0, cost=done_cost)
        total = float(x.task_work_s.sum()) + 1.0
    else:
        Q, wmax = admitted.shape[2], work_max
        y = lp.var(admitted.shape, 0.0, admitted, cost=done_cost)
        total = np.inf         # no dual bound is read: bounds that do not move keep warm starts cheap
    due_ok = (np.arange(K)[:, None] + np.arange(Q)[None, :]) < K           # (K, Q)
    z_ub = np.where(x.alive[:, :, None] & due_ok[:, None, :], total, 0.0)
    z = lp.var((K, n, Q), 0.0, z_ub)
    b_ub = z_ub.copy()
    b_ub[:, :, 0] = 0.0      # nothing waits past its last start epoch
    b = lp.var((K, n, Q), 0.0, b_ub)
    rows = lp.rows("ub", np.zeros((K, n, Q)))
    # at a node, the work of the tasks counted done (from this epoch and still waiting from the
    # last) and handed in is started, waits or is handed on:
    # admitted + waiting from before + moved in - moved out - started - waiting on <= 0
    lp.add("ub", rows, z, -1.0)
    lp.add("ub", rows, b, -1.0)
    lp.add("ub", rows[1:, :, :-1], b[:-1, :, 1:], 1.0)
    if admitted is None:
        q = x.task_last - x.task_first
        lp.add("ub", rows[x.task_first, x.task_node, q], y, x.task_work_s)
    else:
        lp.add("ub", rows, y, 1.0)
    kk, ll = np.nonzero(x.link_usable)
    ek = np.concatenate([kk, kk])[:, None]
    tail = np.concatenate([x.link_u[ll], x.link_v[ll]])[:, None]
    head = np.concatenate([x.link_v[ll], x.link_u[ll]])[:, None]
    limit = (total if moves_open else 0.0) if move_ub is None else np.minimum(move_ub, total)[:, None]
    m = lp.var((len(ek), Q), 0.0, limit * np.ones((len(ek), Q)), cost=move_cost)
    m_from, m_to = rows[ek, tail, np.arange(Q)[None, :]], rows[ek, head, np.arange(Q)[None, :]]
    lp.add("ub", m_from, m, -1.0)
    lp.add("ub", m_to, m, 1.0)
    e_per_work = x.active_w / (3600.0 * x.speed)
    lp.add("ub", ev.bus[:, :, None], z, e_per_work[None, :, None])
    # work started per epoch within the servers' time (plus the one task that may run over), and
    # only while the idle load is fully served: e * sum z <= cap_e * idle / idle_load
    cap_e = e_per_work * x.servers * (x.speed * x.dt_s + wmax)
    rs = lp.rows("ub", np.where(x.idle_wh > 0, 0.0, cap_e) * np.ones((K, 1)))
    lp.add("ub", rs[:, :, None], z, e_per_work[None, :, None])
    has_idle = x.idle_wh > 0
    lp.add("ub", rs[:, has_idle], ev.idle[:, has_idle], -cap_e[has_idle] / x.idle_wh[has_idle])
    return TaskVars(y, z, m, m_from, m_to, total)


def price_moves(lp: Program, tv: TaskVars, tol: float = 1e-9,
                coupling: np.ndarray | None = None) -> tuple[Solution, int, int]:
    """Solve ``lp`` (built with its task moves closed, ``moves_open=False``) by column
    generation: solve without the moves, add those whose reduced cost (the sender's multiplier
    less the receiver's) is below ``-tol`` (each up to ``tv.move_cap``), re-solve from the last
    basis, until none prices out. The final point (a point of ``lp``: moves never added are 0)
    is optimal for the program with every move open, and its multipliers certify it
    (``dual_bound`` with the open bounds). Each node serving its own tasks is a much easier
    program than the pooled one, and one round of a few thousand moves closes the gap on the
    built-ins. Returns the last solution, the number of solves and the number of moves added."""
    a, cost = _stacked(lp), np.concatenate(lp.cost)
    row_lo, row_hi, lb, ub = _bounds(lp)
    moves = tv.moves.ravel()
    kept = np.ones(lp.n_var, bool)
    kept[moves] = False
    order = np.flatnonzero(kept)                              # the program's columns in HiGHS
    kept_a, kept_cost, kept_lb, kept_ub = a[:, order], cost[order], lb[order], ub[order]
    h = _highs_model(kept_a, kept_cost, row_lo, row_hi, kept_lb, kept_ub)
    if coupling is not None:       # the coupling columns among the program's (moves are not)
        start_from_blocks(h, kept_a, kept_cost, row_lo, row_hi, kept_lb, kept_ub,
                          np.flatnonzero(np.isin(order, coupling)))
    closed = np.ones(moves.size, bool)
    rounds = 0
    while True:
        sol = _run(h, lp.n_row["ub"])
        rounds += 1
        reduced = sol.y_ub[tv.move_from.ravel()] - sol.y_ub[tv.move_to.ravel()]
        add = closed & (reduced < -tol)
        if not add.any():
            x = np.zeros(lp.n_var)
            x[order] = sol.x
            return replace(sol, x=x, n_var=lp.n_var), rounds, int((~closed).sum())
        closed &= ~add
        new = a[:, moves[add]]
        h.addCols(len(new.indptr) - 1, cost[moves[add]], np.zeros(int(add.sum())),
                  np.full(int(add.sum()), tv.move_cap), new.nnz, new.indptr[:-1].astype(np.int32),
                  new.indices.astype(np.int32), new.data)
        order = np.concatenate([order, moves[add]])


def _components(x: HorizonInputs) -> np.ndarray:
    """(K, n) label of each node's connected part of the usable link graph, epoch by epoch."""
    K, n = x.shape
    out = np.zeros((K, n), np.int64)
    for k in range(K):
        on = x.link_usable[k]
        g = sparse.coo_array((np.ones(int(on.sum())), (x.link_u[on], x.link_v[on])), shape=(n, n))
        out[k] = connected_components(g, directed=False)[1]
    return out


@dataclass(frozen=True)
class Solution:
    """A solved program: its objective, the values of its variables, the multipliers of its
    ``<=`` rows (``y_ub``, at most 0) and ``=`` rows (``y_eq``), and HiGHS's status."""

    objective: float
    x: np.ndarray
    y_ub: np.ndarray
    y_eq: np.ndarray
    status: int
    message: str
    n_var: int
    n_row: int


def dual_bound(lp: Program, sol: Solution, cost: np.ndarray, ub: np.ndarray | None = None) -> float:
    """A lower bound on the least value of ``cost @ x`` over the program's feasible set, from the
    multipliers of ``sol`` (weak duality, with the variables' bounds kept): valid whichever
    objective ``sol`` solved, so a program solved with a small tie-breaking cost still gives a
    bound on the program without it. -inf when a reduced cost points at an infinite bound.
    ``ub``: upper bounds of the variables to use instead of the program's (the bound then holds
    for the program with those bounds: ``price_moves`` certifies the program with its moves open
    from a solve with some closed)."""
    y_ub, y_eq = np.minimum(sol.y_ub, 0.0), sol.y_eq
    value = 0.0
    reduced = np.asarray(cost, float).copy()
    for kind, y in (("ub", y_ub), ("eq", y_eq)):
        if lp.n_row[kind]:
            reduced -= lp.matrix(kind).T @ y
            value += float(np.concatenate(lp.rhs[kind]) @ y)
    lb, ub = np.concatenate(lp.lb), np.concatenate(lp.ub) if ub is None else ub
    with np.errstate(invalid="ignore"):
        at = np.where(reduced > 0, reduced * lb, np.where(reduced < 0, reduced * ub, 0.0))
    return value + float(at.sum())


def solve(lp: Program, method: str = "simplex") -> Solution:
    """Solve with HiGHS: 'ipm' (interior point, no crossover: fastest on these programs),
    'simplex' (dual simplex) or 'highs' (HiGHS chooses)."""
    names = {"ipm": "highs-ipm", "simplex": "highs-ds", "highs": "highs"}
    opts = {"run_crossover": "off"} if method == "ipm" else {}
    bounds = np.column_stack([np.concatenate(lp.lb), np.concatenate(lp.ub)])
    eq, ub = lp.n_row["eq"], lp.n_row["ub"]
    with warnings.catch_warnings():
        # scipy passes options it does not know (run_crossover) on to HiGHS, with a warning
        warnings.simplefilter("ignore", OptimizeWarning)
        res = linprog(np.concatenate(lp.cost), A_ub=lp.matrix("ub") if ub else None,
                      b_ub=np.concatenate(lp.rhs["ub"]) if ub else None,
                      A_eq=lp.matrix("eq") if eq else None,
                      b_eq=np.concatenate(lp.rhs["eq"]) if eq else None,
                      bounds=bounds, method=names[method], options=opts)
    if res.status != 0 or res.x is None:
        raise UserError(f"the horizon program was not solved: {res.message} (status {res.status})")
    y_ub = res.ineqlin.marginals if ub else np.zeros(0)
    y_eq = res.eqlin.marginals if eq else np.zeros(0)
    return Solution(float(res.fun), res.x, y_ub, y_eq, int(res.status), str(res.message), lp.n_var, eq + ub)


class WarmSolver:
    """Solves a sequence of programs, each with HiGHS's dual simplex from the basis the previous
    solve ended with when the two share their matrix and costs (one rolling window after another,
    where only bounds and right-hand sides change): that basis stays dual feasible, so a solve
    takes a few pivots instead of a cold start. A program with another matrix or other costs is
    handed to HiGHS afresh (the check compares the coefficient arrays, so a warm start never
    solves the wrong program). Serial and seeded: the same sequence gives the same points."""

    def __init__(self) -> None:
        self.h: highspy.Highs | None = None
        self.signature: list[np.ndarray] = []
        self.cols: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))
        self.rows: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))

    def solve(self, lp: Program) -> np.ndarray:
        """The optimal point of ``lp``."""
        row_lo, row_hi, lb, ub = _bounds(lp)
        signature = [np.concatenate(lp.cost), np.array([lp.n_row["ub"], lp.n_row["eq"]])] + [
            np.concatenate(part) if part else np.zeros(0) for kind in ("ub", "eq") for part in lp.parts[kind]]
        same = self.h is not None and len(signature) == len(self.signature) and all(
            a.shape == b.shape and np.array_equal(a, b) for a, b in zip(signature, self.signature))
        if same:     # only the bounds that changed: HiGHS takes its time over each one passed
            for change, new, old in ((self.h.changeColsBounds, (lb, ub), self.cols),
                                     (self.h.changeRowsBounds, (row_lo, row_hi), self.rows)):
                at = np.flatnonzero((new[0] != old[0]) | (new[1] != old[1])).astype(np.int32)
                if len(at):
                    change(len(at), at, new[0][at], new[1][at])
        else:
            self.h = _highs_model(_stacked(lp), np.concatenate(lp.cost), row_lo, row_hi, lb, ub)
            self.signature = signature
        self.cols, self.rows = (lb, ub), (row_lo, row_hi)
        return _run(self.h).x


def _bounds(lp: Program) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row lower, row upper, column lower, column upper) of ``lp`` in HiGHS's form."""
    b_ub = np.concatenate(lp.rhs["ub"]) if lp.n_row["ub"] else np.zeros(0)
    b_eq = np.concatenate(lp.rhs["eq"]) if lp.n_row["eq"] else np.zeros(0)
    return (np.concatenate([np.full(len(b_ub), -np.inf), b_eq]), np.concatenate([b_ub, b_eq]),
            np.concatenate(lp.lb), np.concatenate(lp.ub))


def _run(h: highspy.Highs, n_ub: int = 0) -> Solution:
    """Run HiGHS to optimality; the point and the multipliers (the first ``n_ub`` rows are the
    ``<=`` rows, the rest the ``=`` rows)."""
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise UserError(f"the horizon program was not solved: {h.modelStatusToString(status)}")
    sol, info = h.getSolution(), h.getInfo()
    y = np.asarray(sol.row_dual)
    return Solution(float(info.objective_function_value), np.asarray(sol.col_value), y[:n_ub], y[n_ub:],
                    0, h.modelStatusToString(status), h.getNumCol(), h.getNumRow())


def solve_without_presolve(lp: Program, coupling: np.ndarray | None = None) -> Solution:
    """``lp`` solved by HiGHS's dual simplex on the program as written (no presolve): on the
    energy program, whose presolve removes little, that is what makes sensor-field's solve take
    half a minute instead of many (measured in docs/model.md, "Certified, and fast"). With
    ``coupling`` (indices of columns whose lower bound is 0, e.g. the link flows), the solve
    starts from ``start_from_blocks``."""
    a, cost, bounds = _stacked(lp), np.concatenate(lp.cost), _bounds(lp)
    h = _highs_model(a, cost, *bounds)
    if coupling is not None:
        start_from_blocks(h, a, cost, *bounds, coupling)
    return _run(h, lp.n_row["ub"])


BLOCK_COLUMNS = 4_096
"""Columns per HiGHS model when ``start_from_blocks`` solves the independent parts: a pivot's
cost grows with the model, so many small parts solve several times faster as a few groups than as
one program, and the groups keep the number of models (each with its set-up) small."""
BLOCK_THREADS = max(1, min(4, os.cpu_count() or 1))
"""Parts solved at once (HiGHS runs without Python's lock, one model per thread)."""


def start_from_blocks(h: highspy.Highs, a: sparse.csc_array, cost: np.ndarray, row_lo: np.ndarray,
                      row_hi: np.ndarray, lb: np.ndarray, ub: np.ndarray, coupling: np.ndarray) -> None:
    """Give ``h`` (the program ``a``, ``cost``, bounds) a starting basis: the optimal one of the
    program with the ``coupling`` columns held at 0 (their lower bound). Without them the program
    falls apart into independent parts (each node's own battery and tasks over the horizon),
    solved here in groups of about ``BLOCK_COLUMNS`` columns, ``BLOCK_THREADS`` at a time; their
    bases put together are optimal for the held program and primal feasible for ``h``, whose dual
    simplex then only has to bring the coupling columns in. Each part's solve is deterministic
    and the bases are assembled in a fixed order, so the start does not depend on the threads.
    Measured in docs/model.md ("Certified, and fast")."""
    m, n = a.shape
    free = np.ones(n, bool)
    free[coupling] = False
    if np.any(lb[coupling] != 0.0):
        raise ValueError("start_from_blocks: coupling columns must have a lower bound of 0")
    part = a[:, free].tocoo()
    cols = np.flatnonzero(free)[part.col]
    g = sparse.coo_array((np.ones(part.nnz), (part.row, m + cols)), shape=(m + n, m + n))
    label = connected_components(g, directed=False)[1]
    group = label % max(1, -(-int(free.sum()) // BLOCK_COLUMNS))
    used = np.zeros(m, bool)                  # rows with a free column (the others stay basic)
    used[part.row] = True
    rows_by, cols_by = _members(group[:m], used), _members(group[m:], free)
    col_status = np.full(n, int(highspy.HighsBasisStatus.kLower), np.int8)
    row_status = np.full(m, int(highspy.HighsBasisStatus.kBasic), np.int8)
    local = np.zeros(m, np.int64)

    def solved(hg: highspy.Highs, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _run(hg)
        return basis_codes(hg, lb[c], ub[c], row_lo[r], row_hi[r])

    with ThreadPoolExecutor(BLOCK_THREADS) as pool:
        jobs = []
        for r, c in zip(rows_by, cols_by):
            if c.size:
                sub = a[:, c]                     # its rows are all in r (a part is closed)
                local[r] = np.arange(r.size)
                sub = sparse.csc_array((sub.data, local[sub.indices], sub.indptr), shape=(r.size, c.size))
                hg = _highs_model(sub, cost[c], row_lo[r], row_hi[r], lb[c], ub[c])
                jobs.append((r, c, pool.submit(solved, hg, r, c)))
        for r, c, job in jobs:
            col_status[c], row_status[r] = job.result()
    start = highspy.HighsBasis()
    start.col_status, start.row_status = _STATUS[col_status].tolist(), _STATUS[row_status].tolist()
    start.valid = True
    h.setBasis(start)


_STATUS = np.array(sorted(highspy.HighsBasisStatus.__members__.values(), key=int), dtype=object)
"""HiGHS's basis statuses indexed by their codes (kLower 0, kBasic 1, kUpper 2, kZero 3, ...)."""


def basis_codes(h: highspy.Highs, lb: np.ndarray, ub: np.ndarray, row_lo: np.ndarray,
                row_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The optimal basis of the solved ``h`` as status codes (columns, rows; int8), read from its
    basic variables and where the others sit (at their upper bound, or free at zero): what
    ``h.getBasis()`` says, without a Python object per entry (the test checks they agree)."""
    code = {k: int(v) for k, v in highspy.HighsBasisStatus.__members__.items()}
    sol = h.getSolution()
    x, act = np.asarray(sol.col_value), np.asarray(sol.row_value)
    col = np.where((x == ub) & (lb != ub), code["kUpper"], code["kLower"]).astype(np.int8)
    col[np.isneginf(lb) & np.isposinf(ub)] = code["kZero"]
    row = np.where((act == row_hi) & (row_lo != row_hi), code["kUpper"], code["kLower"]).astype(np.int8)
    row[np.isneginf(row_lo) & np.isposinf(row_hi)] = code["kZero"]
    basic = h.getBasicVariables()[1]
    col[basic[basic >= 0]] = code["kBasic"]
    row[-1 - basic[basic < 0]] = code["kBasic"]
    return col, row


def _members(label: np.ndarray, keep: np.ndarray) -> list[np.ndarray]:
    """For each label 0..max, the indices (ascending) of the kept entries carrying it."""
    at = np.flatnonzero(keep)
    counts = np.bincount(label[at], minlength=int(label.max()) + 1 if label.size else 0)
    return np.split(at[np.argsort(label[at], kind="stable")], np.cumsum(counts)[:-1])


def _stacked(lp: Program) -> sparse.csc_array:
    """The program's ``<=`` rows over its ``=`` rows, by columns."""
    return sparse.vstack([lp.matrix("ub"), lp.matrix("eq")]).tocsc()


def _f64(v: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(v, np.float64)


def _highs_model(a: sparse.csc_array, cost: np.ndarray, row_lo: np.ndarray, row_hi: np.ndarray,
                 lb: np.ndarray, ub: np.ndarray) -> highspy.Highs:
    """A program handed to HiGHS: dual simplex, serial, seeded, no presolve (so that the basis of
    one solve carries to the next), no output."""
    h = highspy.Highs()
    for option, value in (("output_flag", False), ("solver", "simplex"), ("presolve", "off"),
                          ("threads", 1), ("random_seed", 0)):
        h.setOptionValue(option, value)
    n = a.shape[1]
    status = h.passModel(n, a.shape[0], a.nnz, int(highspy.MatrixFormat.kColwise),
                         int(highspy.ObjSense.kMinimize), 0.0, _f64(cost), _f64(lb), _f64(ub),
                         _f64(row_lo), _f64(row_hi), np.ascontiguousarray(a.indptr[:-1], np.int32),
                         np.ascontiguousarray(a.indices, np.int32), _f64(a.data),
                         np.zeros(n, np.int32))              # integrality: every column continuous
    if status == highspy.HighsStatus.kError:
        raise ValueError("HiGHS refused the horizon program")
    return h
