"""The one market pipeline every sharing controller runs: markets -> clear (the rule) -> round
and fit the world's limits -> Decision.

A controller builds the energy and task markets (``policies/market.py``, or from MARL levels) and
hands them, with its clearing rule, to ``clear_markets``. The rule only turns a market into a plan
(``Clearing``): optimal transport (``policies/ot.py``), or greedy, proportional and threshold
(``policies/baselines.py``). Everything after the plan is written here once, so every controller
meets the same limits: receivers' headroom and link power limits for energy
(``policies/link_limits.py``), whole tasks and senders' transmit budgets for tasks. Steps hand each
other named, frozen dataclasses. The equations are in docs/model.md ("The allocation market").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from otmarl.simulator.control import Decision, Observation, WorldInfo

from .link_limits import fit_link_limits
from .market import EnergyMarket, Markets, TaskMarket
from .transport import SparsePlan

_EPS = 1e-9
"""Amounts (Wh, fractions of a task) below this count as nothing."""


@dataclass(frozen=True)
class Clearing:
    """A rule's answer for one market: the plan and how it was reached.

    ``plan`` (offers x requests) holds Wh sent (energy) or fractional tasks; the pipeline ignores
    it where the market's cost is infinite. For a sparse energy market it is a ``SparsePlan``
    (coordinates), and mass off the market's pairs is ignored. ``offer_price`` /
    ``request_price`` are the nodes' shadow prices (the OT duals), None for rules that have none.
    """

    plan: np.ndarray | SparsePlan
    solver: str
    status: str
    objective: float
    offer_price: np.ndarray | None = None
    request_price: np.ndarray | None = None
    request_penalty: np.ndarray | None = None
    """Per request, the cost per unit the rule charged for leaving it unmet (None if it has none)."""
    total_cost: float = float("nan")
    """The plan's transport cost plus the penalties of what it left unmet (NaN: not known)."""
    bound: float = float("nan")
    """A certified lower bound on the least ``total_cost`` of the market (equal to it for an
    exact solve; from the duals for the entropic solvers; NaN: none known)."""


class ClearingRule(Protocol):
    """How a controller clears a market; the pipeline calls it only for a market that can trade."""

    def clear_energy(self, m: EnergyMarket, obs: Observation) -> Clearing: ...

    def clear_tasks(self, m: TaskMarket, obs: Observation) -> Clearing: ...


@dataclass(frozen=True)
class EnergyTransfers:
    """Energy a Decision sends: ``wh`` from ``src`` to ``dst`` (at the sender), the path efficiency
    ``eff`` (``wh * eff`` arrives) and the market cost per Wh of each pair."""

    src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dst: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    wh: np.ndarray = field(default_factory=lambda: np.zeros(0))
    eff: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cost: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def sent_wh(self, n_nodes: int) -> np.ndarray:
        """Wh each node sends."""
        return np.bincount(self.src, self.wh, n_nodes)


@dataclass(frozen=True)
class TaskRoutes:
    """Tasks a Decision moves: ``count`` waiting tasks from ``src`` to ``dst``, and their market cost."""

    src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dst: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cost: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass(frozen=True)
class Cleared:
    """What the pipeline made of one epoch's markets."""

    decision: Decision
    energy: EnergyTransfers
    tasks: TaskRoutes
    energy_clearing: Clearing | None
    """None when there was no energy market or it could not trade."""
    task_clearing: Clearing | None


def can_trade(m: EnergyMarket | TaskMarket | None) -> bool:
    """Both sides have a node and some pair has a finite cost."""
    if m is None or not len(m.offers.nodes) or not len(m.requests.nodes):
        return False
    return m.can_pair() if isinstance(m, EnergyMarket) else bool(np.isfinite(m.cost).any())


def clear_markets(rule: ClearingRule, markets: Markets, obs: Observation, info: WorldInfo) -> Cleared:
    """Clear both markets with ``rule`` and turn the plans into a valid Decision (module docstring)."""
    em, tm = markets.energy, markets.tasks
    energy, tasks = EnergyTransfers(), TaskRoutes()
    e_clear = rule.clear_energy(em, obs) if can_trade(em) else None
    if e_clear is not None:
        energy = energy_transfers(em, e_clear.plan, obs, info)
    t_clear = rule.clear_tasks(tm, obs) if can_trade(tm) else None
    if t_clear is not None:
        plan = within_market(t_clear.plan, tm.cost, tm.offers.amount, tm.requests.amount)
        counts = round_plan(plan, tm.offers.amount, tm.requests.amount)
        tasks = task_routes(tm, counts, obs, energy.sent_wh(len(obs.stored_wh)))
    audit = {"energy": _audit(e_clear, energy.cost), "task": _audit(t_clear, tasks.cost),
             "rows": offer_rows(markets, e_clear, t_clear)}
    decision = Decision(energy_src=energy.src, energy_dst=energy.dst, energy_wh=energy.wh,
                        task_src=tasks.src, task_dst=tasks.dst, task_count=tasks.count, audit=audit)
    return Cleared(decision, energy, tasks, e_clear, t_clear)


def within_market(plan: np.ndarray, cost: np.ndarray, offers: np.ndarray, requests: np.ndarray) -> np.ndarray:
    """The rule's plan without pairs that cannot trade (infinite cost) and without rows or columns
    above their offer or request: those (beyond the solvers' own 1e-9 rounding, which is left
    alone) are scaled down onto it, so no rule can ask more than the market holds."""
    plan = np.where(np.isfinite(cost) & (plan > _EPS), plan, 0.0)
    for axis, cap in ((1, offers), (0, requests)):
        total = plan.sum(axis)
        over = total > cap * (1 + _EPS)
        if over.any():
            factor = np.where(over, cap / np.where(over, total, 1.0), 1.0)
            plan = plan * (factor[:, None] if axis == 1 else factor[None, :])
    return plan


# ------------------------------------------------------------------------------------- energy
def energy_transfers(m: EnergyMarket, plan: np.ndarray | SparsePlan, obs: Observation,
                     info: WorldInfo) -> EnergyTransfers:
    """The transfers of a rule's plan within the market (``within_market``; ``within_pairs`` for
    a sparse market), scaled to the receivers' headroom, then to the link power limits."""
    room = obs.headroom_wh[m.requests.nodes]
    if m.pairs is not None:
        return _transfers(m, *within_pairs(plan, m, room), obs, info)
    plan = within_market(plan, m.cost, m.offers.amount, m.demand_sent)
    delivered = (plan * m.eff).sum(0)
    plan = plan * np.minimum(1.0, room / np.maximum(delivered, 1e-300))[None, :]
    i, j = np.nonzero(plan > _EPS)
    return _transfers(m, i, j, plan[i, j], m.eff[i, j], m.cost[i, j], obs, info)


def within_pairs(plan: SparsePlan, m: EnergyMarket, room: np.ndarray):
    """``within_market`` for a sparse market's plan (offers x requests as coordinates), then scaled
    to the receivers' headroom ``room`` (Wh per request): (offer index, request index, Wh,
    efficiency, cost) of each pair."""
    pr, n_r = m.pairs, len(m.requests.nodes)
    keys = pr.i * n_r + pr.j
    at = np.minimum(np.searchsorted(keys, plan.rows * n_r + plan.cols), max(len(keys) - 1, 0))
    ok = (plan.mass > _EPS) & (keys[at] == plan.rows * n_r + plan.cols) if len(keys) else plan.mass < 0
    at, wh = at[ok], plan.mass[ok]
    i, j = pr.i[at], pr.j[at]
    for side, cap, n in ((i, m.offers.amount, len(m.offers.nodes)), (j, m.demand_sent, n_r)):
        total = np.bincount(side, wh, n)
        over = total > cap * (1 + _EPS)
        if over.any():
            wh = wh * np.where(over, cap / np.where(over, total, 1.0), 1.0)[side]
    delivered = np.bincount(j, wh * pr.eff[at], n_r)
    wh = wh * np.minimum(1.0, room / np.maximum(delivered, 1e-300))[j]
    return i, j, wh, pr.eff[at], pr.cost[at]


def _transfers(m: EnergyMarket, i: np.ndarray, j: np.ndarray, wh: np.ndarray, eff: np.ndarray,
               cost: np.ndarray, obs: Observation, info: WorldInfo) -> EnergyTransfers:
    """Transfers of the pairs (offer i, request j) with Wh ``wh`` > 0, fitted to the link limits."""
    keep = wh > _EPS
    i, j, wh, eff, cost = i[keep], j[keep], wh[keep], eff[keep], cost[keep]
    src, dst = m.offers.nodes[i], m.requests.nodes[j]
    if len(eff):    # the paths of every transfer, from bounded searches (no full row per sender)
        obs.network.prefetch_routes("energy", src, dst, limit=float(-np.log(eff.min())) * (1 + 1e-9) + 1e-12)
    paths = [obs.network.energy.edges(int(s), int(t)) for s, t in zip(src, dst)]
    wh = fit_link_limits(wh, paths, info.link_power_limit_w * info.dt_s / 3600.0)
    keep = wh > _EPS
    # a hair below the plan: the world's checks sum in another order
    return EnergyTransfers(src[keep], dst[keep], wh[keep] * (1 - 1e-12), eff[keep], cost[keep])


# -------------------------------------------------------------------------------------- tasks
def round_plan(plan: np.ndarray, row_cap: np.ndarray, col_cap: np.ndarray) -> np.ndarray:
    """Whole tasks from a fractional plan: floor, then largest remainders within row/col caps."""
    out = np.floor(plan + _EPS).astype(np.int64)
    frac = plan - out
    want = np.minimum(np.floor(plan.sum(1) + 0.5), row_cap)
    for k in np.argsort(-frac, axis=None, kind="stable"):
        i, j = np.unravel_index(k, plan.shape)
        if frac[i, j] <= _EPS:
            break
        if out[i].sum() < want[i] and out[:, j].sum() < col_cap[j]:
            out[i, j] += 1
    return out


def task_routes(m: TaskMarket, counts: np.ndarray, obs: Observation, energy_sent: np.ndarray) -> TaskRoutes:
    """Routes of the whole-task plan, each sender's cheapest first, kept while the transmit energy
    of its most urgent waiting tasks fits its budget (after the energy it sends)."""
    i, j = np.nonzero(counts > 0)
    order = np.lexsort((m.cost[i, j], i))
    i, j = i[order], j[order]
    src, dst, cnt = m.offers.nodes[i], m.requests.nodes[j], counts[i, j].astype(np.int64)
    budget = obs.budget_wh - energy_sent
    used = np.zeros(len(obs.stored_wh))
    taken = np.zeros(len(obs.stored_wh), np.int64)
    keep = np.ones(len(src), bool)
    for k, (s, t, c) in enumerate(zip(src, dst, cnt)):
        ids = obs.waiting_of(int(s))[taken[s]:taken[s] + c]
        _, _, wh_per_kb = obs.network.task_route(int(s), int(t))
        wh = float(obs.task_data_kb[ids].sum()) * wh_per_kb
        if used[s] + wh > budget[s] * (1 - _EPS):
            keep[k] = False
            continue
        used[s] += wh
        taken[s] += c
    return TaskRoutes(src[keep], dst[keep], cnt[keep], m.cost[i, j][keep])


# -------------------------------------------------------------------------------------- audit
def _audit(c: Clearing | None, cost: np.ndarray) -> dict:
    """flows.parquet columns of one kind's rows: the pair cost, and how the plan was reached."""
    if c is None:
        return {"cost": cost}
    return {"solver": c.solver, "status": c.status, "objective": c.objective, "cost": cost,
            "total_cost": c.total_cost, "bound": c.bound}


def offer_rows(markets: Markets, e_clear: Clearing | None, t_clear: Clearing | None) -> list[dict]:
    """Extra flows.parquet rows: every offer and request of the epoch, with its price if known."""
    rows = []
    for kind, mk, c in (("energy", markets.energy, e_clear), ("task", markets.tasks, t_clear)):
        if mk is None:
            continue
        for side, s, price in (("offer", mk.offers, None if c is None else c.offer_price),
                               ("request", mk.requests, None if c is None else c.request_price)):
            penalty = None if c is None or side == "offer" else c.request_penalty
            rows.append({"kind": f"{kind}_{side}", "src": s.nodes, "dst": np.full(len(s.nodes), -1),
                         "amount": s.amount.astype(float),
                         "price": np.full(len(s.nodes), np.nan) if price is None else price,
                         "penalty": np.full(len(s.nodes), np.nan) if penalty is None else penalty})
    return rows
