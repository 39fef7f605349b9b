"""Baseline controllers: local (no sharing), random, and the market baselines (greedy,
proportional, threshold), which are clearing rules of the one market pipeline
(``policies/clearing.py``). Each is one sentence in docs/policies.md."""
from __future__ import annotations

import numpy as np

from otmarl.scenarios.controllers import MarketParams, RandomParams
from otmarl.simulator.control import Decision, Observation, WorldInfo

from . import market as M
from .clearing import Clearing, clear_markets


class LocalController:
    """No sharing, no offloading: every node lives on its own harvest and serves its own tasks."""

    name = "local"

    def reset(self, world_info: WorldInfo, rng: np.random.Generator) -> None:
        self.info = world_info

    def decide(self, obs: Observation) -> Decision:
        return Decision()


class RandomController:
    """Each up node, with probability ``p_act`` (params), sends a random share of its spare energy
    to a random neighbour, or a random number of its waiting tasks to a random up neighbour,
    always within the limits the world enforces."""

    name = "random"

    def reset(self, world_info: WorldInfo, rng: np.random.Generator) -> None:
        self.info, self.rng = world_info, rng
        self.p_act = M.parse_params(world_info, RandomParams).p_act
        n = world_info.n_nodes
        self.nbrs: list[list[int]] = [[] for _ in range(n)]
        for a, b in zip(world_info.link_u.tolist(), world_info.link_v.tolist()):
            self.nbrs[a].append(b)
            self.nbrs[b].append(a)

    def decide(self, obs: Observation) -> Decision:
        rng = self.rng
        es, ed, ew, ts, td, tc = [], [], [], [], [], []
        room = obs.headroom_wh.copy()
        load = np.zeros(len(self.info.link_u))
        limit = self.info.link_power_limit_w * self.info.dt_s / 3600.0
        for s in np.flatnonzero(obs.up):
            nb = self.nbrs[s]
            if not nb:
                continue
            t = nb[int(rng.integers(len(nb)))]
            if rng.uniform() < self.p_act and obs.sendable_wh[s] > 0 and not obs.failed[t]:
                edges, eff = obs.network.energy_route(int(s), t)
                if eff > 0:
                    wh = rng.uniform() * min(obs.sendable_wh[s], room[t] / eff,
                                             np.min(limit[edges] - load[edges]) if edges else np.inf)
                    if wh > 0:
                        es.append(s), ed.append(t), ew.append(wh)
                        room[t] -= wh * eff
                        load[edges] += wh
                        continue
            if rng.uniform() < self.p_act and obs.queue_len[s] > 0 and obs.up[t]:
                try:
                    _, _, wh_per_kb = obs.network.task_route(int(s), t)
                except KeyError:          # no task path over the links that are up
                    continue
                count = int(rng.integers(1, obs.queue_len[s] + 1))
                ids = obs.waiting_of(int(s))[:count]
                if float(obs.task_data_kb[ids].sum()) * wh_per_kb <= obs.budget_wh[s]:
                    ts.append(s), td.append(t), tc.append(count)
        return Decision(np.array(es, np.int64), np.array(ed, np.int64), np.array(ew, float),
                        np.array(ts, np.int64), np.array(td, np.int64), np.array(tc, np.int64))


class _MarketBaseline:
    """A baseline that clears the same markets as the OT allocator, through the same pipeline,
    with a simpler rule (``match``)."""

    name = "market"

    def reset(self, world_info: WorldInfo, rng: np.random.Generator) -> None:
        self.info, self.rng = world_info, rng
        self.p = M.parse_params(world_info, MarketParams)

    def decide(self, obs: Observation) -> Decision:
        return clear_markets(self, M.build_markets(obs, self.info, self.p), obs, self.info).decision

    def clear_energy(self, m: M.EnergyMarket, obs: Observation) -> Clearing:
        # a transfer losing more than a request is worth is not made
        cost = np.where(m.cost <= self.p.max_loss, m.cost, np.inf)
        return self._clearing(self.match(m.offers.amount, m.demand_sent, cost, obs, m.offers.nodes,
                                         m.requests.nodes), m.cost)

    def clear_tasks(self, m: M.TaskMarket, obs: Observation) -> Clearing:
        plan = self.match(m.offers.amount.astype(float), m.requests.amount.astype(float), m.cost, obs,
                          m.offers.nodes, m.requests.nodes)
        return self._clearing(plan, m.cost)

    def _clearing(self, plan: np.ndarray, cost: np.ndarray) -> Clearing:
        moved = plan > 0
        return Clearing(plan, self.name, "heuristic", float(plan[moved] @ cost[moved]))

    def match(self, supply: np.ndarray, demand: np.ndarray, cost: np.ndarray, obs: Observation,
              nodes_s: np.ndarray, nodes_d: np.ndarray) -> np.ndarray:
        """The plan (supply x demand) of this rule; zero where ``cost`` is infinite."""
        raise NotImplementedError


class GreedyController(_MarketBaseline):
    """Nearest first: the neediest requester (by amount) takes from the cheapest feasible offer,
    then the next cheapest, until served or nothing feasible is left."""

    name = "greedy"

    def match(self, supply, demand, cost, obs, nodes_s, nodes_d):
        plan, s, d = np.zeros(cost.shape), supply.copy(), demand.copy()
        for j in np.argsort(-d, kind="stable"):
            for i in np.argsort(cost[:, j], kind="stable"):
                if d[j] <= 1e-12 or not np.isfinite(cost[i, j]):
                    break
                x = min(s[i], d[j])
                plan[i, j] += x
                s[i] -= x
                d[j] -= x
        return plan


class ProportionalController(_MarketBaseline):
    """A community pool: every offer contributes and every request receives pro rata to its size
    (the product coupling), over the pairs that can trade."""

    name = "proportional"

    def match(self, supply, demand, cost, obs, nodes_s, nodes_d):
        ok = np.isfinite(cost)
        moved = min(supply.sum(), demand.sum())
        plan = np.outer(supply / supply.sum(), demand / demand.sum()) * moved * ok
        return _within_marginals(plan, supply, demand)


class ThresholdController(_MarketBaseline):
    """One hop only: a node that requests energy takes equal shares from its direct neighbours
    that offer, and an overloaded node sends tasks to neighbours with spare capacity."""

    name = "threshold"

    def reset(self, world_info: WorldInfo, rng: np.random.Generator) -> None:
        super().reset(world_info, rng)
        n = world_info.n_nodes
        self.nbrs = [set() for _ in range(n)]
        for a, b in zip(world_info.link_u.tolist(), world_info.link_v.tolist()):
            self.nbrs[a].add(b)
            self.nbrs[b].add(a)

    def match(self, supply, demand, cost, obs, nodes_s, nodes_d):
        ok = np.array([[t in self.nbrs[s] for t in nodes_d.tolist()] for s in nodes_s.tolist()],
                      dtype=bool).reshape(len(nodes_s), len(nodes_d)) & np.isfinite(cost)
        deg = np.maximum(ok.sum(0), 1)
        plan = np.where(ok, demand[None, :] / deg[None, :], 0.0)
        return _within_marginals(plan, supply, demand)


def _within_marginals(plan: np.ndarray, supply: np.ndarray, demand: np.ndarray) -> np.ndarray:
    row = plan.sum(1)
    plan = plan * np.minimum(1.0, supply / np.maximum(row, 1e-300))[:, None]
    col = plan.sum(0)
    return plan * np.minimum(1.0, demand / np.maximum(col, 1e-300))[None, :]
