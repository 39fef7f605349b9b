"""The allocation market every sharing controller clears: its parameters, and the offers and
requests of energy and of task capacity with the cost of each pair.

Controllers differ only in how they clear it (``policies/ot.py``: optimal transport;
``policies/baselines.py``: greedy, proportional, threshold; MARL market mode sets the offers and
requests from its agents' levels); ``policies/clearing.py`` turns any plan into a valid Decision,
so comparisons between them are fair. The equations are in docs/model.md ("The allocation market").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from pydantic import ValidationError

from otmarl.scenarios.controllers import MarketParams, carried  # noqa: F401  (the market's parameters)
from otmarl.scenarios.fields import Model
from otmarl.scenarios.errors import UserError
from otmarl.simulator.control import Observation, WorldInfo

P = TypeVar("P", bound=Model)


def parse_params(info: WorldInfo, model: type[P]) -> P:
    """The scenario's ``controller.params`` as a controller's typed model (``model``: its entry of
    ``scenarios.controllers.PARAMS``), keeping the parameters it reads (``controllers.carried``): a
    world built for one controller serves another (the MARL env clears its market with ot's). ``UserError`` names the
    field and the bound (for parameters that did not come through a validated scenario)."""
    if isinstance(info.params, model):
        return info.params
    try:
        return model.model_validate(carried(dict(info.params), model))
    except ValidationError as e:
        msgs = [f"controller.params.{'.'.join(map(str, x['loc']))}: {x['msg']} "
                f"(got {x.get('input')!r})" for x in e.errors()]
        raise UserError("\n".join(msgs)) from None


@dataclass(frozen=True)
class Side:
    """One side of a market: participating nodes (ascending) and their amounts."""

    nodes: np.ndarray
    amount: np.ndarray


FEW_REQUESTS_FROM = 2**14
"""From this many nodes on, the task market of a least-cost clearing rule (``task_market_from``'s
``cut``: ot with ``exact`` or ``hierarchical``) keeps only the requests an optimal plan needs
(``cheapest``); the rules that spread or rank by other than cost, and the entropic solvers,
see every request. At 100,000 nodes up to ~75 offers of ~100 tasks face ~50,000-100,000 requests, and
clearing them all took 0.4-1 s an epoch. Below it every request is kept, as before."""

SPARSE_ABOVE = 2**20
"""An energy market with more offer-request pairs than this, whose pairs stop at a least
efficiency, is built sparse (``Pairs``) when its clearing rule takes it: a 10,000-node field has
~9,600 offers x ~400 requests of which ~17,000 pairs can pay, and at 100,000 nodes the dense
matrices would take gigabytes each."""


@dataclass(frozen=True)
class Pairs:
    """The offer-request pairs of a sparse energy market, those with a path efficient enough to
    pay: offer index ``i`` and request index ``j`` (sorted by i, then j), their path efficiency
    and cost per Wh sent (every other pair has no path)."""

    i: np.ndarray
    j: np.ndarray
    eff: np.ndarray
    cost: np.ndarray


@dataclass(frozen=True)
class EnergyMarket:
    offers: Side
    """Wh a node may send."""
    requests: Side
    """Wh a node wants to receive."""
    eff: np.ndarray | None
    """Path efficiency (offers x requests), 0 = no path; None for a sparse market (``pairs``)."""
    cost: np.ndarray | None
    """Per Wh sent: loss + wear; inf where no path; None for a sparse market (``pairs``)."""
    demand_sent: np.ndarray
    """Requests in sent units (request / best efficiency into the node)."""
    urgency: np.ndarray
    """Per request, 0 .. 1: how early in the forecast window the requester would fall short
    (1 = now, 0 = not within it, or not known)."""
    spill: np.ndarray
    """Per offer, Wh of it that the node would otherwise curtail (its battery full) before it
    next draws on its store: sending them costs the node nothing later. 0 where not known."""
    pairs: Pairs | None = None
    """The pairs with a path, for a market built sparse (``eff`` and ``cost`` are then None)."""

    def can_pair(self) -> bool:
        """Some offer-request pair has a path."""
        return bool(len(self.pairs.i)) if self.pairs is not None else bool(np.isfinite(self.cost).any())


@dataclass(frozen=True)
class TaskMarket:
    offers: Side
    """Tasks a node wants to move."""
    requests: Side
    """Tasks a node can take."""
    cost: np.ndarray
    """Per task; inf where the move cannot meet the deadline."""


@dataclass(frozen=True)
class Markets:
    """One epoch's markets; None where the controller does not trade that kind."""

    energy: EnergyMarket | None
    tasks: TaskMarket | None


def build_markets(obs: Observation, info: WorldInfo, p: MarketParams, least: float | None = None,
                  sparse: bool = False) -> Markets:
    """The markets the parameters switch on; only nodes above the low state of charge take tasks.
    ``least``: the energy market's pairs less efficient than this are left out (no path);
    ``sparse``: the clearing rule finds the least-cost plan of each market (no other plan depends
    on every pair), so a large energy market may come sparse (``SPARSE_ABOVE``) and a large task
    market cut to each offer's cheapest requests (``FEW_REQUESTS_FROM``)."""
    em = energy_market(obs, info, p, least, sparse) if p.energy else None
    tm = task_market(obs, info, p, obs.stored_wh > p.low_soc * obs.capacity_wh, sparse) if p.tasks else None
    return Markets(em, tm)


def forecast_drift(obs: Observation, info: WorldInfo, p: MarketParams) -> np.ndarray:
    """Levels 'soc': expected change of stored energy over the lookahead, epochs x (forecast -
    need), Wh."""
    lookahead = 4.0 if p.lookahead_epochs is None else p.lookahead_epochs
    return lookahead * (p.clearness * obs.harvest_clear_wh - need_now(obs, info))


def need_now(obs: Observation, info: WorldInfo) -> np.ndarray:
    """Energy each node needs this epoch (Wh): its idle draw and the work its servers will do."""
    busy_work = np.minimum(obs.queue_work_s / info.speed + obs.busy_s * info.servers,
                           info.servers * info.dt_s)
    return obs.idle_need_wh + info.active_power_w * busy_work / 3600.0


def harvest_now(obs: Observation, info: WorldInfo, p: MarketParams) -> np.ndarray:
    """The harvest a node expects this epoch (Wh) under the parameters' levels."""
    if p.levels == "soc":
        return p.clearness * obs.harvest_clear_wh
    return info.harvest_forecast(obs.epoch, 1)[0]


def backlog_epochs(info: WorldInfo, p: MarketParams) -> float | np.ndarray:
    """Epochs of server time a node keeps queued before it offers work: the parameter, or per
    node its class's shortest relative deadline in epochs, at most 1."""
    if p.backlog_epochs is not None:
        return p.backlog_epochs
    return np.minimum(info.min_deadline_s / info.dt_s, 1.0)


def lookahead(info: WorldInfo, p: MarketParams) -> int:
    """The forecast window in epochs: the parameter, or one day."""
    if p.lookahead_epochs is not None:
        return max(int(math.ceil(p.lookahead_epochs)), 1)
    return max(int(math.ceil(86400.0 / info.dt_s)), 1)


@dataclass(frozen=True)
class Projection:
    """Each node's store over the forecast window if it trades nothing (``projected``)."""

    low: np.ndarray
    """Lowest stored energy over the window (Wh), the present included."""
    need: np.ndarray
    """Steady need per epoch after this one (Wh)."""
    floor: np.ndarray
    """Brownout level plus ``reserve_epochs`` of need (Wh, in stored units)."""
    due: np.ndarray
    """Share of the window before the store first falls below the floor (1 = never)."""
    path: np.ndarray
    """(window, n): the stored energy at the end of each epoch of the window (Wh)."""
    room: np.ndarray
    """Wh (stored units) a delivery now can add to the lowest point: the battery's room before
    it, less what the node's own harvest fills of it first (0 when the battery fills up before
    the low point: energy received now would be curtailed by then)."""
    spill: np.ndarray
    """Wh (stored units) the node would curtail, its battery full, before the first epoch that
    draws on its store."""


def projected(obs: Observation, info: WorldInfo, p: MarketParams) -> Projection:
    """Each node's store over the window if it trades nothing.

    Each epoch's net (expected harvest minus need) charges the battery at ``eta_c`` (at most the
    charge power) or draws from it at ``1/eta_d``; the battery is full at ``C``. With ``X_t`` the
    cumulative change and ``M_t = max(0, X_1..X_t)``, the stored energy is
    ``S_t = X_t + min(S_0, C - M_t)`` (a walk reflected at the capacity), so the window costs two
    cumulative passes. Need: this epoch's (``need_now``), then idle draw plus the work of last
    epoch's arrivals, at most the servers' time."""
    f = info.harvest_forecast(obs.epoch, lookahead(info, p))
    mean_service = max(info.mean_task_work_s, 1e-9) / info.speed
    steady = (info.idle_power_w * info.dt_s / 3600.0 + info.active_power_w
              * np.minimum(obs.arrivals_last * mean_service, info.servers * info.dt_s) / 3600.0)
    # a day's window at 100,000 nodes is 77 MB an array: each pass below reuses the arrays it
    # can (the same floats as the plain expressions in the comments)
    net = f - steady                                  # net = f - need
    if len(net):
        net[0] = f[0] - need_now(obs, info)
    dth = info.dt_s / 3600.0
    # x = eta_c * min(max(net, 0), charge) + min(net, 0) / eta_d
    x = np.maximum(net, 0.0)
    np.minimum(x, info.max_charge_w * dth, out=x)
    x *= info.charge_efficiency
    np.minimum(net, 0.0, out=net)
    net /= info.discharge_efficiency
    x += net
    del net
    h, n = x.shape
    cols = np.arange(n)
    draws = x < 0
    first = np.where(draws.any(0), draws.argmax(0), h) if h else np.zeros(n, np.int64)   # first draw (h: none)
    del draws
    X = np.cumsum(x, axis=0, out=x)
    M = np.maximum(X, 0.0)
    np.maximum.accumulate(M, axis=0, out=M)
    stored = obs.stored_wh
    S = np.minimum(stored, obs.capacity_wh - M)       # S = X + min(S_0, C - M)
    S += X
    del X

    def before(t):
        """M before point t of the walk with the present first (0 before the present)."""
        return np.where(t > 0, M[np.maximum(t - 1, 0), cols], 0.0) if h else np.zeros(n)

    # the lowest point of the walk, the present first (ties: the earliest)
    s_at = S.argmin(axis=0) if h else np.zeros(n, np.int64)
    s_low = S[s_at, cols] if h else np.full(n, np.inf)
    at = np.where(stored <= s_low, 0, s_at + 1)
    low = np.where(at == 0, stored, s_low)
    floor = info.min_wh + p.reserve_epochs * steady / info.discharge_efficiency
    short = S < floor[None, :]
    now = stored < floor
    due = np.where(now | short.any(0), np.where(now, 0, (short.argmax(0) if h else 0) + 1) / max(h, 1), 1.0)
    del short
    # what the walk rises above C before its first net draw (later spills may never come: the
    # store may be drawn on by others before then)
    spill = np.maximum(stored + before(first) - obs.capacity_wh, 0.0)
    # S_t = X_t + min(S_0, C - M_t): a Wh more now raises the low point t* only while
    # S_0 + 1 <= C - M_t*
    room = np.maximum(obs.capacity_wh - stored - before(at), 0.0)
    return Projection(low, steady, floor, due, S, room, spill)


def energy_market(obs: Observation, info: WorldInfo, p: MarketParams,
                  least: float | None = None, sparse: bool = False) -> EnergyMarket:
    """Offers and requests of energy (Wh) by the parameters' levels ('forecast' or 'soc');
    ``least``: pairs less efficient than this are left out; ``sparse``: see ``build_markets``."""
    if p.levels == "soc":
        return _soc_market(obs, info, p, least, sparse)
    pr = projected(obs, info, p)
    offer = np.where(obs.up, np.clip(pr.low - pr.floor, 0.0, obs.sendable_wh), 0.0)
    lack = np.minimum(np.maximum(pr.floor - pr.low, 0.0), pr.room)
    # a node down for lack of energy needs its resume level first
    lack = np.where(obs.up, lack, np.maximum(lack, info.resume_wh * 1.05 - obs.stored_wh))
    request = np.where(obs.failed | (offer > 0), 0.0, np.clip(lack, 0.0, obs.headroom_wh))
    return energy_market_from(obs, p, offer, request, urgency=1.0 - pr.due, spill=pr.spill, least=least,
                              sparse=sparse)


def _soc_market(obs: Observation, info: WorldInfo, p: MarketParams, least: float | None = None,
                sparse: bool = False) -> EnergyMarket:
    """Offers above a forecast-shifted reserve, requests up to a forecast-shifted target (Wh)."""
    cap, stored = obs.capacity_wh, obs.stored_wh
    drift = forecast_drift(obs, info, p)
    reserve = np.clip(p.high_soc * cap - drift, info.min_wh, cap)
    offer = np.where(obs.up, np.clip(stored - reserve, 0.0, obs.sendable_wh), 0.0)
    target = np.clip(p.low_soc * cap - drift, 0.0, cap)
    target = np.where(obs.up, target, np.maximum(target, info.resume_wh * 1.05))
    request = np.where(obs.failed, 0.0, np.clip(target - stored, 0.0, obs.headroom_wh))
    request[offer > 0] = 0.0
    return energy_market_from(obs, p, offer, request, least=least, sparse=sparse)


def energy_market_from(obs: Observation, p: MarketParams, offer: np.ndarray,
                       request: np.ndarray, urgency: np.ndarray | None = None,
                       spill: np.ndarray | None = None, least: float | None = None,
                       sparse: bool = False) -> EnergyMarket:
    """The energy market for given per-node offers and requests (Wh); e.g. set by MARL actions.
    Offers are capped at what each node may send and requests at what it may receive.
    ``urgency`` (per node, 0 .. 1): how soon a requester would fall short; 0 if not given.
    ``spill`` (per node, Wh): what it would curtail before its next draw; 0 if not given.
    ``least``: pairs whose path efficiency is below it count as having no path (the searches
    for them stop there). ``sparse``: with ``least``, a market of more than ``SPARSE_ABOVE``
    pairs keeps only those with a path (``Pairs``)."""
    offer = np.where(obs.up, np.clip(offer, 0.0, obs.sendable_wh), 0.0)
    request = np.where(obs.failed | (offer > 0), 0.0, np.clip(request, 0.0, obs.headroom_wh))
    o, r = np.flatnonzero(offer > 1e-9), np.flatnonzero(request > 1e-9)
    due = np.zeros(len(r)) if urgency is None else urgency[r]
    free = np.zeros(len(o)) if spill is None else np.minimum(spill[o], offer[o])
    big = len(o) * len(r) > SPARSE_ABOVE
    if sparse and big and least is not None and 0 < least and p.path_costs == "energy":
        i, j, eff = obs.network.energy_pairs(o, r, least)
        best = np.zeros(len(r))
        np.maximum.at(best, j, eff)
        pairs = Pairs(i, j, eff, 1.0 - eff + p.wear_cost)
        return EnergyMarket(Side(o, offer[o]), Side(r, request[r]), None, None, _sent_units(request[r], best),
                            due, free, pairs)
    eff = obs.network.energy_efficiency(o, r, least) if len(o) and len(r) else np.zeros((len(o), len(r)))
    if p.path_costs == "latency" and eff.size:
        cost = _latency_cost(obs.network.task.rows(o)[:, r], eff > 0, p)
    else:
        cost = np.where(eff > 0, 1.0 - eff + p.wear_cost, np.inf)
    best = eff.max(axis=0) if len(o) else np.zeros(len(r))
    return EnergyMarket(Side(o, offer[o]), Side(r, request[r]), eff, cost, _sent_units(request[r], best), due, free)


def _sent_units(request: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Requests in sent units: over the best path efficiency into each requester (0: no path)."""
    return np.where(best > 0, request / np.where(best > 0, best, 1.0), 0.0)


def _latency_cost(transit: np.ndarray, reachable: np.ndarray, p: MarketParams) -> np.ndarray:
    """Energy pair costs of ``path_costs: latency``: the path's transit time, scaled so that the
    slowest reachable pair of the market costs just under ``max_loss`` (every reachable pair is
    worth trading, as a latency-only allocator sees it), plus wear."""
    ok = reachable & np.isfinite(transit)
    slowest = float(transit[ok].max()) if ok.any() else 1.0
    scale = max(p.max_loss - p.wear_cost, 0.0) * 0.99 / max(slowest, 1e-12)
    return np.where(ok, transit * scale + p.wear_cost, np.inf)


def task_market(obs: Observation, info: WorldInfo, p: MarketParams, stored_ok: np.ndarray,
                cut: bool = False) -> TaskMarket:
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
    excess = np.maximum(load + incoming - served - backlog_epochs(info, p) * dt * info.servers, 0.0) / mean_service
    want = np.ceil(np.maximum(np.maximum(overflow, excess), miss))
    # a node short of energy offers all its waiting tasks: compute is cheaper where energy is
    poor = obs.stored_wh < p.low_soc * obs.capacity_wh
    want = np.where(poor, obs.queue_len, want)
    offer = np.where(obs.up, np.minimum(want, obs.queue_len), 0).astype(np.int64)
    spare = np.maximum(info.servers * dt - load - incoming, 0.0)
    e_task = info.active_power_w * mean_service / 3600.0
    energy_room = obs.budget_wh + harvest_now(obs, info, p) - obs.idle_need_wh
    by_energy = np.where(e_task > 0, np.floor(np.maximum(energy_room, 0) / np.where(e_task > 0, e_task, 1)),
                         np.inf)
    room = np.maximum(info.queue_capacity - obs.queue_len - obs.arrivals_last, 0)
    take = np.minimum(np.minimum(np.floor(spare / mean_service), by_energy), room)
    take = np.where(obs.up & stored_ok & (offer == 0), take, 0).astype(np.int64)
    return task_market_from(obs, info, p, offer, take, cut)


def task_market_from(obs: Observation, info: WorldInfo, p: MarketParams, offer: np.ndarray,
                     take: np.ndarray, cut: bool = False) -> TaskMarket:
    """The task market for given per-node counts offered and accepted (e.g. set by MARL actions).
    Offers are capped at the waiting tasks of up nodes; a node does not both offer and take.
    ``cut``: for a least-cost clearing rule, a large market keeps only each offer's cheapest
    requests (``FEW_REQUESTS_FROM``)."""
    dt = info.dt_s
    offer = np.where(obs.up, np.clip(offer, 0, obs.queue_len), 0).astype(np.int64)
    take = np.where(obs.up & (offer == 0), np.maximum(take, 0), 0).astype(np.int64)
    load = obs.busy_s * info.servers + obs.queue_work_s / info.speed
    mean_service = max(info.mean_task_work_s, 1e-9) / info.speed
    e_task = info.active_power_w * mean_service / 3600.0
    o, r = np.flatnonzero(offer > 0), np.flatnonzero(take > 0)
    if not len(o) or not len(r):
        return TaskMarket(Side(o, offer[o]), Side(r, take[r]), np.zeros((len(o), len(r))))
    transit = obs.network.task.rows(o)[:, r]
    slack = np.array([median_sorted(obs.task_deadline_s[obs.waiting_of(int(i))][:max(offer[i], 1)])
                      for i in o.tolist()]) - obs.time_s
    wait = load[r] / info.servers[r]
    done_at = transit + wait[None, :] + mean_service[r][None, :]
    e_rel = e_task[r] / max(float(e_task[r].mean()), 1e-12) if e_task[r].any() else np.zeros(len(r))
    energy_weight = p.energy_weight if p.path_costs == "energy" else 0.0
    cost = (transit + wait[None, :]) / dt + energy_weight * e_rel[None, :]
    cost = np.where(np.isfinite(transit) & (done_at <= slack[:, None]), cost, np.inf)
    if cut and len(obs.stored_wh) >= FEW_REQUESTS_FROM:
        cost = cheapest(cost, int(offer[o].sum()))
        keep = np.flatnonzero(np.isfinite(cost).any(0))
        r, cost = r[keep], cost[:, keep]
    return TaskMarket(Side(o, offer[o]), Side(r, take[r]), cost)


def cheapest(cost: np.ndarray, offered: int) -> np.ndarray:
    """A task market's costs (offers x requests, inf where infeasible) with each offer's pairs
    cut to its ``offered`` cheapest (ties kept; every feasible pair where it has no more), for
    ``offered`` the tasks offered in all. Some optimal plan of the market uses only those pairs
    (the default penalties put moving every task it can first, then the least cost): a task
    sent from offer i to a request beyond them could go, for no more, to one of them with room
    left, since each request takes at least one task and at most ``offered`` are moved."""
    if offered < 1 or offered >= cost.shape[1]:
        return cost
    kth = np.partition(cost, offered - 1, axis=1)[:, offered - 1]
    return np.where(cost <= kth[:, None], cost, np.inf)


def median_sorted(x: np.ndarray) -> float:
    """``np.median`` of an ascending, non-empty array (a queue's deadlines, most urgent first).

    Kept on purpose: ``np.median`` is a Python-level wrapper costing tens of microseconds per
    call, and the task market calls it once per offering node every epoch; under cProfile it was
    8 % of MARL market-mode stepping at 100 agents (2 % at 17; 0.4 % of ``otmarl run
    edge-offload --policy ot``). Same bits as ``np.median`` (the test checks it).
    """
    m = len(x)
    return float(x[m // 2]) if m % 2 else float((x[m // 2 - 1] + x[m // 2]) / 2)
