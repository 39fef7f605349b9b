"""Model predictive control: each epoch, the horizon program over the next epochs, first epoch applied.

``MPCController`` solves the energy part of ``policies/horizon_lp.py`` over a window of
``mpc_horizon`` epochs from the current state, with a forecast of harvest (the market's by default:
the scenario's expected harvest of each epoch of the window, ``WorldInfo.harvest_forecast``, with
today's failures held; or, with ``mpc_forecast: perfect``, the realised harvest and failures), and sends the first epoch's link flows as energy
transfers between neighbours (the program plans transfers in that epoch only; the later ones
plan each node's own battery), fitted to what the world allows (senders' spare energy, receivers'
headroom, link limits). It moves energy only: tasks stay where they arrive. The window's program
keeps its matrix from one epoch to the next (only bounds and right-hand sides change), so HiGHS
starts each solve from the last one's basis (``horizon_lp.WarmSolver``).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from otmarl.scenarios.controllers import MPCParams
from otmarl.scenarios.errors import UserError
from otmarl.simulator.control import Decision, Observation, WorldInfo
from otmarl.simulator.foresight import foresee

from . import market as M
from .hindsight import inputs_from_foresight
from .horizon_lp import Program, WarmSolver, energy_program
from .link_limits import fit_link_limits

_EPS = 1e-9


class MPCController:
    """Model predictive control: each epoch a linear program over the next ``mpc_horizon`` epochs
    (batteries, transfers with link losses, idle loads) from a forecast; the first epoch's energy
    transfers are applied."""

    name = "mpc"

    def reset(self, world_info: WorldInfo, rng: np.random.Generator) -> None:
        if world_info.scenario is None or world_info.seed is None:
            raise UserError("mpc: the world did not say which scenario and seed it runs")
        self.info = world_info
        self.params = M.parse_params(world_info, MPCParams)
        # the realised future only for the perfect forecast; otherwise its parameters alone
        perfect = self.params.mpc_forecast == "perfect"
        self.future = foresee(world_info.scenario, world_info.seed, None if perfect else 0)
        self.base = replace(inputs_from_foresight(self.future), task_node=np.zeros(0, np.int64),
                            task_first=np.zeros(0, np.int64), task_last=np.zeros(0, np.int64),
                            task_work_s=np.zeros(0))
        self.min_wh = world_info.min_wh
        self.forecast = world_info.harvest_forecast
        self.solver = WarmSolver()

    def _window(self, obs: Observation):
        """The program's inputs over the window that starts at this epoch."""
        k, K = obs.epoch, self.info.n_epochs
        h = min(self.params.mpc_horizon, K - k)
        if self.params.mpc_forecast == "perfect":
            f = self.future
            harvest, alive, usable_now = f.harvest_wh[k:k + h], f.alive[k:k + h], f.link_usable[k]
        else:
            alive_now = ~obs.failed
            links = obs.network.links
            usable_now = obs.network.link_up & alive_now[links.u] & alive_now[links.v]
            harvest, alive = self.forecast(k, h), np.tile(alive_now, (h, 1))
        # transfers in the first epoch only (the one applied): the later epochs of the window
        # plan each node's own battery, which keeps the program about three times smaller. Every
        # link has its flows in the program and an unusable one a limit of 0, so that the matrix
        # stays the same from one epoch to the next (the warm start)
        cap = np.where(usable_now, self.base.link_cap_wh, 0.0)
        # near the end of the run the window keeps its length (and so its matrix): the epochs past
        # the end have no harvest, no load and no transfers (their nodes count as failed)
        pad = ((0, min(self.params.mpc_horizon, K) - h), (0, 0))
        harvest, alive = np.pad(harvest, pad), np.pad(alive, pad, constant_values=False)
        first = np.zeros((len(alive), len(usable_now)), bool)
        first[0] = True
        return replace(self.base, harvest_wh=harvest, alive=alive, link_usable=first,
                       link_cap_wh=cap, usable0_wh=np.maximum(obs.stored_wh - self.min_wh, 0.0))

    def decide(self, obs: Observation) -> Decision:
        p = self.params
        x = self._window(obs)
        lp = Program()
        ev = energy_program(lp, x, idle_cost=-p.mpc_unserved_weight, store_value=p.mpc_store_value,
                            flow_cost=p.mpc_transfer_cost)
        x_opt = self.solver.solve(lp)
        now = ev.flow_epoch == 0
        wh = x_opt[ev.flow[now]]
        moved = wh > _EPS
        return self._transfers(obs, ev.flow_tail[now][moved], ev.flow_head[now][moved], wh[moved])

    def _transfers(self, obs: Observation, src: np.ndarray, dst: np.ndarray, wh: np.ndarray) -> Decision:
        """Neighbour-to-neighbour transfers within senders' spare energy, receivers' headroom and
        the link limits."""
        n = len(obs.stored_wh)
        if not len(wh):
            return Decision()
        sent = np.bincount(src, wh, n)
        wh = wh * np.minimum(1.0, obs.sendable_wh / np.maximum(sent, 1e-300))[src]
        routes = [obs.network.energy_route(int(s), int(t)) for s, t in zip(src, dst)]
        eff = np.array([r[1] for r in routes])
        got = np.bincount(dst, wh * eff, n)
        wh = wh * np.minimum(1.0, obs.headroom_wh / np.maximum(got, 1e-300))[dst]
        wh = fit_link_limits(wh, [r[0] for r in routes], self.info.link_power_limit_w * self.info.dt_s / 3600.0)
        keep = (wh > _EPS) & (eff > 0)
        return Decision(energy_src=src[keep], energy_dst=dst[keep], energy_wh=wh[keep] * (1 - 1e-12))
