"""From per-node discrete actions to a valid Decision, in two modes.

Market (OT and MARL together): each node picks levels that set its offers and requests in the
energy and task markets of ``policies/market.py``; the OT clearing rule clears them in the one
market pipeline (``policies/clearing.py``), so every plan respects sendable energy, headroom,
link power limits and transmit budgets, and its duals become the next observation's prices.
Direct (the ablation, no OT): each node picks a graph neighbour (or none) to send a fixed share of
its spare energy to, and one to send a share of its waiting tasks to; amounts are clipped to every
limit the world enforces, the link power limits by the market's own algorithm
(``policies/link_limits.py``).

Masks (int8, one row per node, the components' options concatenated; 1 = allowed) forbid what a
node that is down cannot do; a masked action is still valid and simply does nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from otmarl.policies import market as M
from otmarl.policies.clearing import Clearing
from otmarl.policies.link_limits import fit_link_limits
from otmarl.policies.ot import OTController
from otmarl.scenarios import Scenario
from otmarl.scenarios.graphfile import seed_dependent
from otmarl.simulator.control import Decision, Observation, WorldInfo
from otmarl.simulator.network import make_graph

from .features import neighbours

LEVELS = np.array([0.0, 1 / 3, 2 / 3, 1.0])
"""Fractions a market level picks (of the surplus, the deficit, the queue or the spare room)."""
RESERVE_SOC = np.array([0.2, 0.4, 0.6, 0.8])
"""Reserve targets (state of charge) a node may pick: it offers above and requests below."""
"""Graph generators whose node degrees depend on the seed (no bound below n - 1)."""


@dataclass(frozen=True)
class ActionSpec:
    """The MultiDiscrete action of every agent: component names, sizes, and whether the options
    of a component are ordered levels (ground cost |a - a'|) or unordered choices (cost 1)."""

    names: tuple[str, ...]
    nvec: tuple[int, ...]
    ordinal: tuple[bool, ...]

    @cached_property
    def offsets(self) -> np.ndarray:
        """Where each component's options start in a concatenated mask row (and the end)."""
        return np.concatenate([[0], np.cumsum(self.nvec)])


def plan_totals(ew: list[float], eff: list[float] | None, tc: list[int]) -> dict:
    """Totals of a decision for ``infos``: Wh sent per transfer, path efficiencies (None: count
    what is sent as delivered) and tasks per route."""
    sent = sum(ew, 0.0)
    return {"energy_transfers": len(ew), "energy_sent_wh": sent,
            "energy_delivered_wh": sent if eff is None else sum([w * e for w, e in zip(ew, eff)], 0.0),
            "task_routes": len(tc), "tasks_routed": sum(tc)}


def _empty_plan() -> dict:
    return plan_totals([], None, [])


def plan_summary(d: Decision, eff: np.ndarray | None = None) -> dict:
    """``plan_totals`` of a Decision (delivered uses the path efficiencies if given)."""
    return plan_totals(np.asarray(d.energy_wh, float).reshape(-1).tolist(),
                       None if eff is None else np.asarray(eff, float).tolist(),
                       [int(c) for c in np.asarray(d.task_count).reshape(-1).tolist()])


class MarketActions:
    """Levels -> offers and requests -> cleared by optimal transport."""

    spec = ActionSpec(("energy_offer", "energy_request", "reserve_soc", "task_offer", "task_accept"),
                      (4, 4, 4, 4, 4), (True,) * 5)

    def __init__(self, info: WorldInfo, rng: np.random.Generator):
        self.info = info
        self.ot = OTController()
        self.ot.reset(info, rng)
        self.p = self.ot.p
        self.plan = _empty_plan()
        self.energy_price = np.zeros(info.n_nodes)   # duals of this epoch's markets (0: none)
        self.task_price = np.zeros(info.n_nodes)
        n, off = info.n_nodes, self.spec.offsets
        self._mask = np.ones((n, off[-1]), np.int8)
        self._down_cols = np.concatenate([np.arange(off[k] + 1, off[k + 1]) for k in (0, 3, 4)])
        self._request_cols = np.arange(off[1] + 1, off[2])
        self._task_offer_cols = np.arange(off[3] + 1, off[4])
        self.mean_service_s = max(info.mean_task_work_s, 1e-9) / info.speed
        self.e_task_wh = info.active_power_w * self.mean_service_s / 3600.0

    def masks(self, obs: Observation) -> np.ndarray:
        m = self._mask.copy()
        m[np.ix_(~obs.up, self._down_cols)] = 0
        m[np.ix_(obs.failed, self._request_cols)] = 0
        m[np.ix_(obs.queue_len == 0, self._task_offer_cols)] = 0
        return m

    def take_max(self, obs: Observation) -> np.ndarray:
        """Whole tasks a node could start next epoch: free server time (after its own load and
        last epoch's arrivals), energy for them, and queue room."""
        info = self.info
        load = obs.busy_s * info.servers + obs.queue_work_s / info.speed
        incoming = obs.arrivals_last * self.mean_service_s
        spare = np.maximum(info.servers * info.dt_s - load - incoming, 0.0) / self.mean_service_s
        room_wh = np.maximum(obs.budget_wh + self.p.clearness * obs.harvest_clear_wh - obs.idle_need_wh, 0.0)
        by_energy = np.where(self.e_task_wh > 0, room_wh / np.maximum(self.e_task_wh, 1e-300), np.inf)
        room = np.maximum(info.queue_capacity - obs.queue_len, 0)
        return np.floor(np.minimum(np.minimum(spare, by_energy), room))

    def decide(self, obs: Observation, a: np.ndarray) -> Decision:
        markets = self.markets(obs, a)
        out = self.ot.clear(obs, markets)
        # prices are those of this epoch's markets: none cleared means no price
        _set_prices(self.energy_price, markets.energy, out.energy_clearing)
        _set_prices(self.task_price, markets.tasks, out.task_clearing)
        self.plan = plan_summary(out.decision, out.energy.eff if len(out.energy.wh) else None)
        return out.decision

    def markets(self, obs: Observation, a: np.ndarray) -> M.Markets:
        """The markets the agents' levels set (one row of ``a`` per node)."""
        stored, cap = obs.stored_wh, obs.capacity_wh
        reserve = RESERVE_SOC[a[:, 2]] * cap
        em = tm = None
        if self.p.energy:
            offer = LEVELS[a[:, 0]] * np.maximum(stored - reserve, 0.0)
            request = LEVELS[a[:, 1]] * np.maximum(reserve - stored, 0.0)
            em = M.energy_market_from(obs, self.p, offer, request)
        if self.p.tasks:
            offer_t = np.ceil(LEVELS[a[:, 3]] * obs.queue_len - 1e-9)
            take = np.floor(LEVELS[a[:, 4]] * self.take_max(obs) + 0.5)
            tm = M.task_market_from(obs, self.info, self.p, offer_t, take)
        return M.Markets(em, tm)


def _set_prices(price: np.ndarray, m: M.EnergyMarket | M.TaskMarket | None, c: Clearing | None) -> None:
    """The nodes' prices in one market: the clearing's duals, 0 for a node not in it."""
    price[:] = 0.0
    if c is not None:
        price[m.offers.nodes], price[m.requests.nodes] = c.offer_price, c.request_price


def direct_slots(scenario: Scenario, cap: int) -> int:
    """Neighbour slots of direct mode for every seed of ``scenario``: the largest degree of its
    graph when the graph does not depend on the seed (``seed_dependent``: grid, star, tree,
    complete, small_world with p = 0, a file),
    otherwise ``n_nodes - 1``; at most ``cap``."""
    if seed_dependent(scenario.network.topology.model_dump()):
        bound = scenario.n_nodes - 1
    else:
        g, _ = make_graph(scenario, np.random.default_rng(0))
        bound = max((d for _, d in g.degree()), default=0)
    return max(min(bound, int(cap)), 0)


class DirectActions:
    """A neighbour slot (0 = none, k = k-th neighbour by index) for energy and one for tasks.

    ``slots`` fixes the number of neighbour slots (``direct_slots``: the same for every seed of
    a scenario); slots past a node's degree are masked and do nothing, and a node with more
    neighbours than slots reaches its first ``slots`` neighbours by index. None: this graph's
    largest degree."""

    def __init__(self, info: WorldInfo, energy_share: float, spare_soc: float, task_share: float,
                 slots: int | None = None):
        self.info = info
        self.energy_share, self.spare_soc, self.task_share = energy_share, spare_soc, task_share
        nbrs, links = neighbours(info)
        n = info.n_nodes
        width = links.shape[1] if slots is None else int(slots)
        # column 0 is 'none'; columns 1..width the neighbours, -1 past a node's degree
        self.slot_node = np.full((n, width + 1), -1, np.int64)
        link_of = np.full((n, max(width, 1)), -1, np.int64)
        for i, x in enumerate(nbrs):
            k = min(len(x), width)
            self.slot_node[i, 1:k + 1] = x[:k]
            link_of[i, :k] = links[i, :k]
        self.has = self.slot_node[:, 1:] >= 0
        self.nb = np.where(self.has, self.slot_node[:, 1:], 0)
        self.nb_link = np.where(self.has, link_of[:, :width], 0)
        self.spec = ActionSpec(("energy_to", "tasks_to"), (width + 1, width + 1), (False, False))
        self.energy_price = np.zeros(n)
        self.task_price = np.zeros(n)
        self.plan = _empty_plan()
        self.limit_wh = info.link_power_limit_w * info.dt_s / 3600.0
        self._slot_flat = self.slot_node.ravel()
        self._row_base = np.arange(n) * (width + 1)
        self._mask = np.ones((n, 2 * (width + 1)), np.int8)
        self._spare_floor_wh = spare_soc * info.capacity_wh

    def spare_wh(self, obs: Observation) -> np.ndarray:
        """Energy above the spare state of charge that a node may send."""
        return np.clip(obs.stored_wh - self._spare_floor_wh, 0.0, obs.sendable_wh)

    def masks(self, obs: Observation) -> np.ndarray:
        w = self.has.shape[1]
        link_ok = self.has & obs.network.link_up[self.nb_link]
        m = self._mask.copy()
        m[:, 1:w + 1] = link_ok & ~obs.failed[self.nb] & (obs.up & (self.spare_wh(obs) > 1e-9))[:, None]
        m[:, w + 2:] = link_ok & obs.up[self.nb] & (obs.up & (obs.queue_len > 0))[:, None]
        return m

    def decide(self, obs: Observation, a: np.ndarray) -> Decision:
        # per chosen pair in plain Python: a decision has at most one transfer of each kind per
        # node, and at the sizes agents train at a numpy call costs more than its arithmetic
        e_to, t_to = self._slot_flat[self._row_base[:, None] + a].T.tolist()   # neighbour or -1
        up = obs.up.tolist()
        es, ed, ew, eff = self._energy(obs, e_to, up)
        sent: dict[int, float] = {}
        for s_, w in zip(es, ew):
            sent[s_] = sent.get(s_, 0.0) + w
        ts, td, tc = self._tasks(obs, t_to, up, sent)
        d = Decision(np.array(es, np.int64), np.array(ed, np.int64), np.array(ew, float),
                     np.array(ts, np.int64), np.array(td, np.int64), np.array(tc, np.int64))
        self.plan = plan_totals(ew, eff, tc)
        return d

    def _energy(self, obs: Observation, chosen: list[int], up: list[bool]):
        """(senders, receivers, Wh, path efficiencies) as lists, within every limit."""
        failed, spare = obs.failed.tolist(), self.spare_wh(obs).tolist()
        share, route = self.energy_share, obs.network.energy_route   # routes cached by topology
        src, dst, wh, eff, paths = [], [], [], [], []
        got: dict[int, float] = {}          # what arrives per receiver
        for s_, t in enumerate(chosen):
            if t < 0 or not up[s_] or failed[t]:
                continue
            x = share * spare[s_]
            if x <= 1e-9:
                continue
            path, e = route(s_, t)
            if e <= 0:
                continue
            src.append(s_), dst.append(t), wh.append(x), eff.append(e), paths.append(path)
            got[t] = got.get(t, 0.0) + x * e
        if not src:
            return src, dst, wh, eff
        # receivers: what arrives must fit their headroom (several may send to one node)
        head = obs.headroom_wh
        scale = {t: min(1.0, float(head[t]) / max(g, 1e-300)) for t, g in got.items()}
        wh = fit_link_limits(np.array([x * scale[t] for x, t in zip(wh, dst)]), paths, self.limit_wh).tolist()
        keep = [k for k, x in enumerate(wh) if x * (1 - 1e-12) > 1e-9]
        return ([src[k] for k in keep], [dst[k] for k in keep], [wh[k] * (1 - 1e-12) for k in keep],
                [eff[k] for k in keep])

    def _tasks(self, obs: Observation, chosen: list[int], up: list[bool], sent_wh: dict[int, float]):
        """(senders, receivers, counts) as lists: a share of each sender's most urgent waiting
        tasks, as many as its energy budget (after what it sends) can transmit."""
        qlen, budget = obs.queue_len.tolist(), obs.budget_wh
        share, route, kb_of = self.task_share, obs.network.task_route, obs.task_data_kb
        src, dst, count = [], [], []
        for s_, t in enumerate(chosen):
            if t < 0 or not up[s_] or not up[t] or not qlen[s_]:
                continue
            c = math.ceil(share * qlen[s_] - 1e-9)
            try:
                wh_per_kb = route(s_, t)[2]          # cached until the topology changes
            except KeyError:                       # no task path over the links that are up
                continue
            room = (float(budget[s_]) - sent_wh.get(s_, 0.0)) * (1 - 1e-9)
            k, need = 0, 0.0
            for kb in kb_of[obs.waiting_of(s_)[:c]].tolist():
                need += kb
                if need * wh_per_kb > room:
                    break
                k += 1
            if k:
                src.append(s_), dst.append(t), count.append(k)
        return src, dst, count
