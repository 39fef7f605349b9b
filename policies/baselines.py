"""Baseline controllers. Each is one sentence in docs/policies.md."""
from __future__ import annotations

import numpy as np

from otmarl.simulator.control import Decision, Observation, WorldInfo


class LocalController:
    """No sharing, no offloading: every node lives on its own harvest and serves its own tasks."""

    name = "local"

    def reset(self, world_info: WorldInfo, rng: np.random.Generator) -> None:
        self.info = world_info

    def decide(self, obs: Observation) -> Decision:
        return Decision()


class RandomController:
    """Each up node, with probability ``p_act`` (params), sends a random share of its spare energy
    to a random reachable node and a random number of its waiting tasks to another random node,
    always within the limits the world enforces."""

    name = "random"

    def reset(self, world_info: WorldInfo, rng: np.random.Generator) -> None:
        self.info, self.rng = world_info, rng
        self.p_act = float(world_info.params.get("p_act", 0.3))

    def decide(self, obs: Observation) -> Decision:
        rng, n = self.rng, len(obs.stored_wh)
        up = np.flatnonzero(obs.up)
        if len(up) < 2:
            return Decision()
        es, ed, ew, ts, td, tc = [], [], [], [], [], []
        room = obs.headroom_wh.copy()
        load = np.zeros(len(self.info.link_u))
        limit = self.info.link_power_limit_w * self.info.dt_s / 3600.0
        for s in up:
            if rng.uniform() < self.p_act and obs.sendable_wh[s] > 0:
                t = int(rng.integers(n))
                eff = obs.network.energy_efficiency([s], [t])[0, 0] if t != s else 0.0
                if eff > 0 and not obs.failed[t]:
                    edges = obs.network.energy.edges(int(s), t)
                    wh = rng.uniform() * min(obs.sendable_wh[s], room[t] / eff,
                                             np.min(limit[edges] - load[edges]) if edges else np.inf)
                    if wh > 0:
                        es.append(s), ed.append(t), ew.append(wh)
                        room[t] -= wh * eff
                        load[edges] += wh
                        continue
            if rng.uniform() < self.p_act and obs.queue_len[s] > 0:
                t = int(up[rng.integers(len(up))])
                if t == s or not np.isfinite(obs.network.task.rows([s])[0, t]):
                    continue
                count = int(rng.integers(1, obs.queue_len[s] + 1))
                ids = obs.waiting_of(int(s))[:count]
                _, _, wh_per_kb = obs.network.task_route(int(s), t)
                if float(obs.task_data_kb[ids].sum()) * wh_per_kb <= obs.budget_wh[s]:
                    ts.append(s), td.append(t), tc.append(count)
        return Decision(np.array(es, np.int64), np.array(ed, np.int64), np.array(ew, float),
                        np.array(ts, np.int64), np.array(td, np.int64), np.array(tc, np.int64))
