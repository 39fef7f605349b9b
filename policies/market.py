"""The allocation market every sharing controller clears: offers and requests of energy and of
task capacity, the cost of each pair, and turning a plan into a valid Decision.

Controllers differ only in how they clear it (``policies/ot.py``: optimal transport;
``policies/baselines.py``: greedy, proportional, threshold), so comparisons between them are fair.
The equations are in docs/model.md ("The allocation market").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from otmarl.scenarios.errors import UserError
from otmarl.simulator.control import Decision, Observation, WorldInfo


class MarketParams(BaseModel):
    """Parameters of the market (``controller.params`` in a scenario)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    energy: bool = True
    """Share energy."""
    tasks: bool = True
    """Offload tasks."""
    high_soc: float = Field(0.6, ge=0, le=1)
    """A node offers the energy it holds above this state of charge (shifted by its forecast)."""
    low_soc: float = Field(0.3, ge=0, le=1)
    """A node requests energy up to this state of charge (shifted by its forecast)."""
    lookahead_epochs: float = Field(4.0, ge=0)
    """Epochs of expected net harvest (forecast minus need) that shift both levels."""
    clearness: float = Field(0.7, ge=0, le=1)
    """Expected fraction of clear-sky harvest, for the forecast."""
    max_loss: float = Field(0.5, ge=0, le=1)
    """Energy: leaving a Wh of request unmet costs this much; a transfer losing more is not made."""
    wear_cost: float = Field(0.01, ge=0)
    """Energy: battery wear per Wh sent, in the same units as loss (fraction of a Wh)."""
    backlog_epochs: float = Field(1.0, gt=0)
    """Tasks: a node offers the waiting work beyond this many epochs of its servers' time, and
    every waiting task predicted to miss its deadline."""
    energy_weight: float = Field(1.0, ge=0)
    """Tasks: weight of the processing energy at the target (relative to the mean) in the cost."""
    fairness: float = Field(0.0, ge=0)
    """Weight of a node's history of unmet requests in the penalty for leaving it unserved."""
    fairness_memory: float = Field(0.9, ge=0, lt=1)
    """Exponential smoothing of that history per epoch."""
    solver: str = "exact"
    """OT solver: exact, network, sinkhorn, unbalanced, hierarchical."""
    reg: float = Field(0.01, gt=0)
    """Entropic regularisation (sinkhorn, unbalanced), relative to the largest cost."""
    reg_m: float = Field(1.0, gt=0)
    """Marginal relaxation (unbalanced)."""
    p_act: float = Field(0.3, ge=0, le=1)
    """Random controller only: probability that a node acts in an epoch."""


def parse_params(info: WorldInfo) -> MarketParams:
    try:
        p = MarketParams.model_validate(info.params)
    except ValidationError as e:
        msgs = [f"controller.params.{'.'.join(map(str, x['loc']))}: {x['msg']} "
                f"(got {x.get('input')!r})" for x in e.errors()]
        raise UserError("\n".join(msgs)) from None
    if p.low_soc > p.high_soc:
        raise UserError(f"controller.params.low_soc: value {p.low_soc:g} must be <= high_soc={p.high_soc:g}")
    return p


@dataclass
class Side:
    """One side of a market: participating nodes and their amounts."""

    nodes: np.ndarray
    amount: np.ndarray


@dataclass
class EnergyMarket:
    offers: Side           # Wh a node may send
    requests: Side         # Wh a node wants to receive
    eff: np.ndarray        # path efficiency (offers x requests), 0 = no path
    cost: np.ndarray       # per Wh sent: loss + wear; inf where no path
    demand_sent: np.ndarray  # requests in sent units (request / best efficiency into the node)


@dataclass
class TaskMarket:
    offers: Side           # tasks a node wants to move
    requests: Side         # tasks a node can take
    cost: np.ndarray       # per task; inf where the move cannot meet the deadline


def forecast_drift(obs: Observation, info: WorldInfo, p: MarketParams) -> np.ndarray:
    """Expected change of stored energy over the lookahead: epochs x (forecast - need), Wh."""
    busy_work = np.minimum(obs.queue_work_s / info.speed + obs.busy_s * info.servers,
                           info.servers * info.dt_s)
    need = obs.idle_need_wh + info.active_power_w * busy_work / 3600.0
    return p.lookahead_epochs * (p.clearness * obs.harvest_clear_wh - need)


def energy_market(obs: Observation, info: WorldInfo, p: MarketParams) -> EnergyMarket:
    cap, stored = obs.capacity_wh, obs.stored_wh
    drift = forecast_drift(obs, info, p)
    reserve = np.clip(p.high_soc * cap - drift, info.min_wh, cap)
    offer = np.where(obs.up, np.clip(stored - reserve, 0.0, obs.sendable_wh), 0.0)
    target = np.clip(p.low_soc * cap - drift, 0.0, cap)
    target = np.where(obs.up, target, np.maximum(target, info.resume_wh * 1.05))
    request = np.where(obs.failed, 0.0, np.clip(target - stored, 0.0, obs.headroom_wh))
    request[offer > 0] = 0.0
    return energy_market_from(obs, p, offer, request)


def energy_market_from(obs: Observation, p: MarketParams, offer: np.ndarray,
                       request: np.ndarray) -> EnergyMarket:
    """The energy market for given per-node offers and requests (Wh); e.g. set by MARL actions.
    Offers are capped at what each node may send and requests at what it may receive."""
    offer = np.where(obs.up, np.minimum(np.maximum(offer, 0.0), obs.sendable_wh), 0.0)
    request = np.where(obs.failed | (offer > 0), 0.0,
                       np.minimum(np.maximum(request, 0.0), obs.headroom_wh))
    o, r = np.flatnonzero(offer > 1e-9), np.flatnonzero(request > 1e-9)
    eff = obs.network.energy_efficiency(o, r) if len(o) and len(r) else np.zeros((len(o), len(r)))
    cost = np.where(eff > 0, 1.0 - eff + p.wear_cost, np.inf)
    best = eff.max(axis=0) if len(o) else np.zeros(len(r))
    demand_sent = np.where(best > 0, request[r] / np.where(best > 0, best, 1.0), 0.0)
    return EnergyMarket(Side(o, offer[o]), Side(r, request[r]), eff, cost, demand_sent)

def task_market(obs: Observation, info: WorldInfo, p: MarketParams, stored_ok: np.ndarray) -> TaskMarket:
    """Offers: waiting tasks predicted to miss their deadline, to overflow the queue or to exceed
    the backlog target over the next epoch (arrivals expected as in the last one), and every
    waiting task of a node below its low state of charge. Requests: whole
    tasks a node can finish in the next epoch with its free servers, energy and queue room."""
    n, dt = len(obs.stored_wh), info.dt_s
    w, ptr = obs.waiting_ids, obs.waiting_ptr
    node = np.repeat(np.arange(n), np.diff(ptr))
    service = obs.task_work_s[w] / info.speed[node]
    ahead = np.cumsum(service) - np.repeat(np.concatenate([[0.0], np.cumsum(service)])[ptr[:-1]],
                                           np.diff(ptr))
    finish = obs.time_s + obs.busy_s[node] + ahead / info.servers[node]
    miss = np.bincount(node, finish > obs.task_deadline_s[w], n)
    load = obs.busy_s * info.servers + obs.queue_work_s / info.speed
    mean_service = max(info.mean_task_work_s, 1e-9) / info.speed
    # expected over the next epoch if nothing moves: arrivals as in the last epoch
    incoming = obs.arrivals_last * mean_service
    served = np.minimum(load + incoming, info.servers * dt)
    left = (load + incoming - served) / mean_service                  # tasks still waiting
    overflow = np.maximum(left - info.queue_capacity, 0.0)             # would be dropped
    excess = np.maximum(load + incoming - served - p.backlog_epochs * dt * info.servers, 0.0) / mean_service
    want = np.ceil(np.maximum(np.maximum(overflow, excess), miss))
    # a node short of energy offers all its waiting tasks: compute is cheaper where energy is
    poor = obs.stored_wh < p.low_soc * obs.capacity_wh
    want = np.where(poor, obs.queue_len, want)
    offer = np.where(obs.up, np.minimum(want, obs.queue_len), 0).astype(np.int64)
    spare = np.maximum(info.servers * dt - load - incoming, 0.0)
    e_task = info.active_power_w * mean_service / 3600.0
    energy_room = obs.budget_wh + p.clearness * obs.harvest_clear_wh - obs.idle_need_wh
    by_energy = np.where(e_task > 0, np.floor(np.maximum(energy_room, 0) / np.where(e_task > 0, e_task, 1)),
                         np.inf)
    room = np.maximum(info.queue_capacity - obs.queue_len - obs.arrivals_last, 0)
    take = np.minimum(np.minimum(np.floor(spare / mean_service), by_energy), room)
    take = np.where(obs.up & stored_ok & (offer == 0), take, 0).astype(np.int64)
    return task_market_from(obs, info, p, offer, take)


def task_market_from(obs: Observation, info: WorldInfo, p: MarketParams, offer: np.ndarray,
                     take: np.ndarray) -> TaskMarket:
    """The task market for given per-node counts offered and accepted (e.g. set by MARL actions).
    Offers are capped at the waiting tasks of up nodes; a node does not both offer and take."""
    dt = info.dt_s
    offer = np.where(obs.up, np.minimum(np.maximum(offer, 0), obs.queue_len), 0).astype(np.int64)
    take = np.where(obs.up & (offer == 0), np.maximum(take, 0), 0).astype(np.int64)
    load = obs.busy_s * info.servers + obs.queue_work_s / info.speed
    mean_service = max(info.mean_task_work_s, 1e-9) / info.speed
    e_task = info.active_power_w * mean_service / 3600.0
    o, r = np.flatnonzero(offer > 0), np.flatnonzero(take > 0)
    if not len(o) or not len(r):
        return TaskMarket(Side(o, offer[o]), Side(r, take[r]), np.zeros((len(o), len(r))))
    transit = obs.network.task.rows(o)[:, r]
    slack = np.array([_median_sorted(obs.task_deadline_s[obs.waiting_of(int(i))][:max(offer[i], 1)])
                      for i in o.tolist()]) - obs.time_s
    wait = load[r] / info.servers[r]
    done_at = transit + wait[None, :] + mean_service[r][None, :]
    e_rel = e_task[r] / max(float(e_task[r].mean()), 1e-12) if e_task[r].any() else np.zeros(len(r))
    cost = (transit + wait[None, :]) / dt + p.energy_weight * e_rel[None, :]
    cost = np.where(np.isfinite(transit) & (done_at <= slack[:, None]), cost, np.inf)
    return TaskMarket(Side(o, offer[o]), Side(r, take[r]), cost)

# ------------------------------------------------------------------------- plan -> decision
def round_plan(plan: np.ndarray, row_cap: np.ndarray, col_cap: np.ndarray) -> np.ndarray:
    """Whole tasks from a fractional plan: floor, then largest remainders within row/col caps."""
    out = np.floor(plan + 1e-9).astype(np.int64)
    frac = plan - out
    want = np.minimum(np.floor(plan.sum(1) + 0.5), row_cap)
    for k in np.argsort(-frac, axis=None, kind="stable"):
        i, j = np.unravel_index(k, plan.shape)
        if frac[i, j] <= 1e-9:
            break
        if out[i].sum() < want[i] and out[:, j].sum() < col_cap[j]:
            out[i, j] += 1
    return out


def energy_transfers(m: EnergyMarket, plan: np.ndarray, obs: Observation, info: WorldInfo):
    """(src, dst, wh, cost) within receivers' headroom and link power limits."""
    plan = np.where(np.isfinite(m.cost) & (plan > 1e-9), plan, 0.0)
    delivered = (plan * m.eff).sum(0)
    room = obs.headroom_wh[m.requests.nodes]
    plan = plan * np.minimum(1.0, room / np.maximum(delivered, 1e-300))[None, :]
    i, j = np.nonzero(plan > 1e-9)
    src, dst, wh = m.offers.nodes[i], m.requests.nodes[j], plan[i, j]
    wh = _within_link_limits(src, dst, wh, obs, info)
    keep = wh > 1e-9
    return src[keep], dst[keep], wh[keep] * (1 - 1e-12), m.cost[i, j][keep]


def link_scale(load: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Per link: the factor (<= 1) that brings its load within its limit."""
    scale = np.ones(len(limit))
    over = (load > limit).nonzero()[0]
    scale[over] = limit[over] / load[over]
    return scale


def _median_sorted(x: np.ndarray) -> float:
    """``np.median`` of an ascending array (a queue's deadlines), without its per-call cost."""
    m = len(x)
    return float(x[m // 2]) if m % 2 else float((x[m // 2 - 1] + x[m // 2]) / 2)


def _within_link_limits(src, dst, wh, obs: Observation, info: WorldInfo) -> np.ndarray:
    limit = info.link_power_limit_w * info.dt_s / 3600.0
    wh = wh.copy()
    if not len(limit) or wh.sum() <= limit.min():      # no link can carry more than all of it
        return wh
    paths = [obs.network.energy.edges(int(s), int(t)) for s, t in zip(src, dst)]
    for _ in range(20):
        load = np.zeros(len(limit))
        for k, e in enumerate(paths):
            load[e] += wh[k]
        scale = link_scale(load, limit)
        if scale.min() >= 1.0:
            break
        for k, e in enumerate(paths):
            if e:
                wh[k] *= scale[e].min() * (1 - 1e-12)
    return wh


def task_routes(m: TaskMarket, counts: np.ndarray, obs: Observation, energy_sent: np.ndarray):
    """(src, dst, count, cost) with each sender's transmit energy within its budget."""
    i, j = np.nonzero(counts > 0)
    order = np.lexsort((m.cost[i, j], i))          # per sender: cheapest destination first
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
        if used[s] + wh > budget[s] * (1 - 1e-9):
            keep[k] = False
            continue
        used[s] += wh
        taken[s] += c
    return src[keep], dst[keep], cnt[keep], m.cost[i, j][keep]


def build_decision(energy, tasks, audit: dict) -> Decision:
    es, ed, ew, ec = energy
    ts, td, tc, tcost = tasks
    audit.setdefault("energy", {})["cost"] = ec
    audit.setdefault("task", {})["cost"] = tcost
    return Decision(energy_src=es, energy_dst=ed, energy_wh=ew, task_src=ts, task_dst=td,
                    task_count=tc, audit=audit)


def offer_rows(em: EnergyMarket | None, tm: TaskMarket | None, prices: dict | None = None) -> list:
    """Extra flows.parquet rows: every offer and request of the epoch, with prices if known."""
    rows = []
    prices = prices or {}
    for kind, mk in (("energy", em), ("task", tm)):
        if mk is None:
            continue
        for side, s in (("offer", mk.offers), ("request", mk.requests)):
            rows.append({"kind": f"{kind}_{side}", "src": s.nodes, "dst": np.full(len(s.nodes), -1),
                         "amount": s.amount.astype(float),
                         "price": prices.get(f"{kind}_{side}", np.full(len(s.nodes), np.nan))})
    return rows
