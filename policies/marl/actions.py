"""From per-node discrete actions to a valid Decision, in two modes.

Market (OT and MARL together): each node picks levels that set its offers and requests in the
energy and task markets of ``policies/market.py``; ``OTController.clear`` clears them, so every
plan respects sendable energy, headroom, link power limits and transmit budgets, and its duals
become the next observation's prices. Direct (the ablation, no OT): each node picks a graph
neighbour (or none) to send a fixed share of its spare energy to, and one to send a share of its
waiting tasks to; amounts are clipped to every limit the world enforces.

Masks (int8, one row per node, the components' options concatenated; 1 = allowed) forbid what a
node that is down cannot do; a masked action is still valid and simply does nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from otmarl.policies import market as M
from otmarl.policies.ot import OTController
from otmarl.simulator.control import Decision, Observation, WorldInfo

from .features import neighbours

LEVELS = np.array([0.0, 1 / 3, 2 / 3, 1.0])
"""Fractions a market level picks (of the surplus, the deficit, the queue or the spare room)."""
RESERVE_SOC = np.array([0.2, 0.4, 0.6, 0.8])
"""Reserve targets (state of charge) a node may pick: it offers above and requests below."""


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


def _empty_plan() -> dict:
    return {"energy_transfers": 0, "energy_sent_wh": 0.0, "energy_delivered_wh": 0.0,
            "task_routes": 0, "tasks_routed": 0}


def plan_summary(d: Decision, eff: np.ndarray | None = None) -> dict:
    """Totals of a decision for ``infos`` (delivered uses the path efficiencies if given)."""
    ew, tc = np.asarray(d.energy_wh, float), np.asarray(d.task_count)
    sent = float(ew.sum())
    return {"energy_transfers": len(ew), "energy_sent_wh": sent,
            "energy_delivered_wh": float((ew * eff).sum()) if eff is not None else sent,
            "task_routes": len(tc), "tasks_routed": int(tc.sum())}


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
        n, off = info.n_nodes, self.spec.offsets
        self._mask = np.ones((n, off[-1]), np.int8)
        self._down_cols = np.concatenate([np.arange(off[k] + 1, off[k + 1]) for k in (0, 3, 4)])
        self._request_cols = np.arange(off[1] + 1, off[2])
        self._task_offer_cols = np.arange(off[3] + 1, off[4])
        self.mean_service_s = max(info.mean_task_work_s, 1e-9) / info.speed
        self.e_task_wh = info.active_power_w * self.mean_service_s / 3600.0

    @property
    def energy_price(self) -> np.ndarray:
        return self.ot.energy_price

    @property
    def task_price(self) -> np.ndarray:
        return self.ot.task_price

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
        # prices are those of this epoch's markets: none cleared means no price
        self.ot.energy_price[:] = 0.0
        self.ot.task_price[:] = 0.0
        d = self.ot.clear(obs, em, tm)
        eff = None
        if em is not None and len(d.energy_wh):
            eff = em.eff[np.searchsorted(em.offers.nodes, d.energy_src),
                         np.searchsorted(em.requests.nodes, d.energy_dst)]
        self.plan = plan_summary(d, eff)
        return d


class DirectActions:
    """A neighbour slot (0 = none, k = k-th neighbour by index) for energy and one for tasks."""

    def __init__(self, info: WorldInfo, energy_share: float, spare_soc: float, task_share: float):
        self.info = info
        self.energy_share, self.spare_soc, self.task_share = energy_share, spare_soc, task_share
        nbrs, links = neighbours(info)
        n, width = info.n_nodes, links.shape[1]
        # column 0 is 'none'; columns 1..width the neighbours, -1 past a node's degree
        self.slot_node = np.full((n, width + 1), -1, np.int64)
        for i, x in enumerate(nbrs):
            self.slot_node[i, 1:len(x) + 1] = x
        self.has = self.slot_node[:, 1:] >= 0
        self.nb = np.where(self.has, self.slot_node[:, 1:], 0)
        self.nb_link = np.where(self.has, links, 0)
        self.spec = ActionSpec(("energy_to", "tasks_to"), (width + 1, width + 1), (False, False))
        self.energy_price = np.zeros(n)
        self.task_price = np.zeros(n)
        self.plan = _empty_plan()
        self.limit_wh = info.link_power_limit_w * info.dt_s / 3600.0
        self.min_limit_wh = float(self.limit_wh.min()) if len(self.limit_wh) else np.inf
        self._slot_flat = self.slot_node.ravel()
        self._row_base = np.arange(n) * (width + 1)
        self._mask = np.ones((n, 2 * (width + 1)), np.int8)
        self._links_version = -1

    def spare_wh(self, obs: Observation) -> np.ndarray:
        return np.minimum(np.maximum(obs.stored_wh - self.spare_soc * obs.capacity_wh, 0.0),
                          obs.sendable_wh)

    def masks(self, obs: Observation) -> np.ndarray:
        w = self.has.shape[1]
        version = obs.network.energy.version        # links and failures change only with it
        if version != self._links_version:
            self._link_ok = self.has & obs.network.link_up[self.nb_link]
            self._to_working = self._link_ok & ~obs.failed[self.nb]
            self._links_version = version
        m = self._mask.copy()
        m[:, 1:w + 1] = self._to_working & (obs.up & (self.spare_wh(obs) > 1e-9))[:, None]
        m[:, w + 2:] = self._link_ok & obs.up[self.nb] & (obs.up & (obs.queue_len > 0))[:, None]
        return m

    @staticmethod
    def _targets(dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sender, neighbour) of every node whose slot named a neighbour (-1: none)."""
        src = (dst >= 0).nonzero()[0]
        return src, dst[src]

    def decide(self, obs: Observation, a: np.ndarray) -> Decision:
        dst = self._slot_flat[self._row_base[:, None] + a]      # (n, 2): the chosen neighbours
        es, ed, ew, eff = self._energy(obs, dst[:, 0])
        sent = np.bincount(es, ew, self.info.n_nodes) if len(es) else np.zeros(self.info.n_nodes)
        ts, td, tc = self._tasks(obs, dst[:, 1], sent)
        d = Decision(es, ed, ew, ts, td, tc)
        self.plan = plan_summary(d, eff)
        return d

    def _energy(self, obs: Observation, chosen: np.ndarray):
        src, dst = self._targets(chosen)
        ok = obs.up[src] & ~obs.failed[dst]
        src, dst = src[ok], dst[ok]
        wh = self.energy_share * self.spare_wh(obs)[src]
        route = obs.network.energy_route       # cached until the topology changes
        paths = [route(s, t) for s, t in zip(src.tolist(), dst.tolist())]
        eff = np.array([p[1] for p in paths])
        keep = (eff > 0) & (wh > 1e-9)
        if not keep.any():
            z = np.zeros(0)
            return np.zeros(0, np.int64), np.zeros(0, np.int64), z, z
        src, dst, wh, eff = src[keep], dst[keep], wh[keep], eff[keep]
        edges = [p[0] for p, k in zip(paths, keep) if k]
        # receivers: what arrives must fit their headroom (several may send to one node)
        got = np.bincount(dst, wh * eff, self.info.n_nodes)
        scale = np.minimum(1.0, obs.headroom_wh / np.maximum(got, 1e-300))
        wh = self._within_link_limits(edges, wh * scale[dst]) * (1 - 1e-12)
        keep = wh > 1e-9
        return src[keep], dst[keep], wh[keep], eff[keep]

    def _within_link_limits(self, paths: list[list[int]], wh: np.ndarray) -> np.ndarray:
        """Scale each transfer by the tightest (limit / load) along its energy path: afterwards
        no link carries more than its limit (one pass suffices)."""
        if wh.sum() <= self.min_limit_wh:       # no link can carry more than all of it
            return wh
        edges = np.array([e for p in paths for e in p], np.int64)
        owner = np.repeat(np.arange(len(paths)), [len(e) for e in paths])
        load = np.bincount(edges, wh[owner], len(self.limit_wh))
        if np.all(load <= self.limit_wh):
            return wh
        scale = np.minimum(1.0, self.limit_wh / np.maximum(load, 1e-300))
        factor = np.ones(len(wh))
        np.minimum.at(factor, owner, scale[edges])
        return wh * factor * (1 - 1e-12)

    def _tasks(self, obs: Observation, chosen: np.ndarray, sent_wh: np.ndarray):
        src, dst = self._targets(chosen)
        ok = obs.up[src] & obs.up[dst] & (obs.queue_len[src] > 0)
        src, dst = src[ok], dst[ok]
        count = np.ceil(self.task_share * obs.queue_len[src] - 1e-9).astype(np.int64)
        budget = (obs.budget_wh - sent_wh) * (1 - 1e-9)
        for k, (s, t) in enumerate(zip(src.tolist(), dst.tolist())):
            try:
                wh_per_kb = obs.network.task_route(s, t)[2]     # cached until topology changes
            except KeyError:          # no task path over the links that are up
                count[k] = 0
                continue
            need = np.cumsum(obs.task_data_kb[obs.waiting_of(s)[:count[k]]]) * wh_per_kb
            count[k] = int(np.searchsorted(need, budget[s], side="right"))
        keep = count > 0
        return src[keep], dst[keep], count[keep]
