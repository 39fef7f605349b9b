"""Model predictive control: each epoch, the horizon program over the next epochs, first epoch applied.

``MPCController`` solves the program of ``policies/horizon_lp.py`` (energy, and tasks as fluid
work) over a window of ``mpc_horizon`` epochs from the current state, with a forecast (the
market's by default: the scenario's expected harvest of each epoch of the window,
``WorldInfo.harvest_forecast``, with today's failures held, and tasks arriving at each node as in
the last epoch; or, with ``mpc_forecast: perfect``, the realised harvest, failures and tasks).
It applies the first epoch: its link flows become energy transfers between neighbours, and its
work moves become task routes (the waiting tasks of each slack class, most urgent first), fitted
to what the world allows (senders' spare energy and transmit budget, receivers' headroom, link
limits). Transfers and moves are planned in the first epoch only; the later epochs plan each
node's own battery and servers. The window's program keeps its matrix from one epoch to the next
(only bounds and right-hand sides change), so HiGHS starts each solve from the last one's basis
(``horizon_lp.WarmSolver``).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from otmarl.scenarios.controllers import MarketParams, MPCParams
from otmarl.scenarios.errors import UserError
from otmarl.simulator.control import Decision, Observation, WorldInfo
from otmarl.simulator.foresight import foresee

from . import market as M
from .hindsight import inputs_from_foresight
from .horizon_lp import Program, WarmSolver, energy_program, task_program
from .link_limits import fit_link_limits

_EPS = 1e-9


class MPCController:
    """Model predictive control: each epoch a linear program over the next ``mpc_horizon`` epochs
    (batteries, transfers with link losses, idle loads, task work) from a forecast; the first
    epoch's energy transfers and task moves are applied."""

    name = "mpc"

    def reset(self, world_info: WorldInfo, rng: np.random.Generator) -> None:
        if world_info.scenario is None or world_info.seed is None:
            raise UserError("mpc: the world did not say which scenario and seed it runs")
        self.info = world_info
        self.params = M.parse_params(world_info, MPCParams)
        # the realised future only for the perfect forecast; otherwise its parameters alone
        perfect = self.params.mpc_forecast == "perfect"
        self.future = foresee(world_info.scenario, world_info.seed, None if perfect else 0)
        full = inputs_from_foresight(self.future)
        self.known = full          # the realised tasks (none unless the forecast is perfect)
        self.base = replace(full, task_node=np.zeros(0, np.int64), task_first=np.zeros(0, np.int64),
                            task_last=np.zeros(0, np.int64), task_work_s=np.zeros(0))
        self.min_wh = world_info.min_wh
        self.forecast = world_info.harvest_forecast
        self.solver = WarmSolver()
        e_per_work = float((world_info.active_power_w / (3600.0 * world_info.speed)).mean())
        # value per second of work: the weight times the mean energy of a second of work
        self.work_value = self.params.mpc_task_weight * e_per_work
        # a move costs as much per second of work as a Wh of energy entering a link per Wh
        self.move_cost = self.params.mpc_transfer_cost * e_per_work
        self.work_max = world_info.mean_task_work_s
        self.tasks = self.work_value > 0 and self.work_max > 0
        # the task program's arcs: every link, both directions, in the program's order
        self.arc_tail = np.concatenate([self.base.link_u, self.base.link_v])
        self.arc_head = np.concatenate([self.base.link_v, self.base.link_u])
        self.slack_epochs, self.classes = _slack_epochs(world_info)
        self.market = M.parse_params(world_info, MarketParams)

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

    def _work(self, obs: Observation, K: int) -> tuple[np.ndarray, np.ndarray]:
        """Work due within the window of ``K`` epochs, (K, n, Q) seconds at speed 1 by epoch of
        arrival, node and epochs left before its last start (``Q`` classes: as many as the
        scenario's longest deadline needs, at most K), and each waiting task's slack class (-1:
        its last start is past or beyond the window). Work due later is left out: it can wait,
        and the program would otherwise hurry it (moving a run that could wait for tomorrow's
        sun, say)."""
        k, n, dt, Q = obs.epoch, len(obs.stored_wh), self.info.dt_s, min(K, self.classes)
        w, ptr = obs.waiting_ids, obs.waiting_ptr
        node = np.repeat(np.arange(n), np.diff(ptr))
        last = (obs.task_deadline_s[w] // dt).astype(np.int64) - k
        cls = np.where((last >= 0) & (last < Q), last, -1)
        out = np.zeros((K, n, Q))
        ok = cls >= 0
        np.add.at(out, (0, node[ok], cls[ok]), obs.task_work_s[w][ok])
        # tasks arriving from this epoch on (none is waiting yet)
        if self.params.mpc_forecast == "perfect":
            t = self.known
            new = (t.task_first >= k) & (t.task_last < k + K) & (t.task_last - t.task_first < Q)
            first = t.task_first[new] - k
            np.add.at(out, (first, t.task_node[new], t.task_last[new] - k - first), t.task_work_s[new])
        else:             # as many as in the last epoch, due after their class's mean deadline
            j = np.arange(K)[:, None] + np.zeros((1, n), np.int64)
            due = (j + self.slack_epochs[None, :] < K) & (self.slack_epochs[None, :] < Q)
            np.add.at(out, (j[due], np.broadcast_to(np.arange(n), j.shape)[due],
                            np.broadcast_to(self.slack_epochs, j.shape)[due]),
                      np.broadcast_to(obs.arrivals_last * self.info.mean_task_work_s, j.shape)[due])
        return out, cls

    def decide(self, obs: Observation) -> Decision:
        p = self.params
        x = self._window(obs)
        lp = Program()
        ev = energy_program(lp, x, idle_cost=-p.mpc_unserved_weight, store_value=p.mpc_store_value,
                            flow_cost=p.mpc_transfer_cost)
        if p.mpc_end_reserve:
            # the window's end: energy up to what the rest of the day needs is worth the unserved
            # weight (the market's projection), above it the store value
            n = len(obs.stored_wh)
            r = lp.var((n,), 0.0, self._end_reserve(obs, x.shape[0]),
                       cost=-(p.mpc_unserved_weight - p.mpc_store_value))
            row = lp.rows("ub", np.zeros(n))
            lp.add("ub", row, r, 1.0)
            lp.add("ub", row, ev.usable[-1], -1.0)
        tv = None
        if self.tasks:
            work, cls = self._work(obs, x.shape[0])
            link_up = np.concatenate([obs.network.link_up, obs.network.link_up])
            movable = obs.up[self.arc_tail] & obs.up[self.arc_head] & link_up
            tv = task_program(lp, x, ev, done_cost=-self.work_value, admitted=work, work_max=self.work_max,
                              move_ub=np.where(movable, np.inf, 0.0), move_cost=self.move_cost)
            # the servers' time left this epoch after the running tasks
            free = self.info.speed * self.info.servers * np.maximum(self.info.dt_s - obs.busy_s, 0.0)
            row = lp.rows("ub", free + self.work_max)
            lp.add("ub", row[:, None], tv.served[0], 1.0)
        x_opt = self.solver.solve(lp)
        now = ev.flow_epoch == 0
        wh = x_opt[ev.flow[now]]
        moved = wh > _EPS
        d = self._transfers(obs, ev.flow_tail[now][moved], ev.flow_head[now][moved], wh[moved])
        return d if tv is None else self._moves(obs, d, x_opt[tv.moves], cls)

    def _end_reserve(self, obs: Observation, K: int) -> np.ndarray:
        """Per node, the energy above its brownout level (Wh) the window should end with: the
        market's floor plus the deepest fall of its projected store (no trade) after the window,
        within the market's lookahead (a node that will draw down overnight keeps what carries
        it through)."""
        pr = M.projected(obs, self.info, self.market)
        later = pr.path[K - 1:]
        fall = (later[0] - later.min(axis=0)) if len(later) else np.zeros(len(obs.stored_wh))
        return np.clip(pr.floor + fall, self.min_wh, obs.capacity_wh) - self.min_wh

    def _moves(self, obs: Observation, d: Decision, work: np.ndarray, cls: np.ndarray) -> Decision:
        """Task routes for the first epoch's work moves ``work`` (arcs x slack classes, seconds):
        from each sender's waiting tasks of each class, most urgent first, whole tasks up to the
        work moved (a task is taken while at least half of it is still to move), each task once,
        within the sender's transmit budget after the energy it sends."""
        tail, head = self.arc_tail, self.arc_head
        arcs = np.flatnonzero(work.sum(1) > _EPS)
        if not len(arcs):
            return d
        n = len(obs.stored_wh)
        w = obs.waiting_ids
        budget = obs.budget_wh - np.bincount(d.energy_src, d.energy_wh, n)
        used = np.zeros(n)
        taken = np.zeros(len(w), bool)
        src, dst, ids = [], [], []
        obs.network.prefetch_routes("task", tail[arcs], head[arcs])
        for a in arcs[np.lexsort((-work[arcs].sum(1), tail[arcs]))]:
            s, t = int(tail[a]), int(head[a])
            wh_per_kb = obs.network.task_route(s, t)[2]
            lo, hi = int(obs.waiting_ptr[s]), int(obs.waiting_ptr[s + 1])
            chosen = []
            for q in np.flatnonzero(work[a] > _EPS):
                left = work[a, q]
                for i in np.flatnonzero((cls[lo:hi] == q) & ~taken[lo:hi]) + lo:
                    task = int(w[i])
                    size = float(obs.task_work_s[task])
                    if left < 0.5 * size:
                        break
                    wh = float(obs.task_data_kb[task]) * wh_per_kb
                    if used[s] + wh > budget[s] * (1 - 1e-9):
                        break
                    used[s] += wh
                    taken[i] = True
                    chosen.append(task)
                    left -= size
            if chosen:
                src.append(s)
                dst.append(t)
                ids.append(np.array(chosen, np.int64))
        if not src:
            return d
        return replace(d, task_src=np.array(src, np.int64), task_dst=np.array(dst, np.int64),
                       task_count=np.array([len(i) for i in ids], np.int64), task_ids=ids)

    def _transfers(self, obs: Observation, src: np.ndarray, dst: np.ndarray, wh: np.ndarray) -> Decision:
        """Neighbour-to-neighbour transfers within senders' spare energy, receivers' headroom and
        the link limits."""
        n = len(obs.stored_wh)
        if not len(wh):
            return Decision()
        sent = np.bincount(src, wh, n)
        wh = wh * np.minimum(1.0, obs.sendable_wh / np.maximum(sent, 1e-300))[src]
        obs.network.prefetch_routes("energy", src, dst)
        routes = [obs.network.energy_route(int(s), int(t)) for s, t in zip(src, dst)]
        eff = np.array([r[1] for r in routes])
        got = np.bincount(dst, wh * eff, n)
        wh = wh * np.minimum(1.0, obs.headroom_wh / np.maximum(got, 1e-300))[dst]
        wh = fit_link_limits(wh, [r[0] for r in routes], self.info.link_power_limit_w * self.info.dt_s / 3600.0)
        keep = (wh > _EPS) & (eff > 0)
        return Decision(energy_src=src[keep], energy_dst=dst[keep], energy_wh=wh[keep] * (1 - 1e-12))


def _slack_epochs(info: WorldInfo) -> tuple[np.ndarray, int]:
    """Per node, the epochs between a task's arrival and its last start epoch, its class's mean
    relative deadline in epochs (0 for a class without a workload); and the number of slack
    classes a task can need: its longest relative deadline D spans at most D // dt + 1 epoch
    boundaries (a large number when D is unbounded; the window caps it)."""
    mean = np.zeros(len(info.class_names), np.int64)
    most = 1
    for c, name in enumerate(info.class_names):
        wl = info.scenario.nodes[name].workload
        if wl is not None:
            mean[c] = int(wl.deadline_s.mean() // info.dt_s)
            top = wl.deadline_s.support()[1]
            most = max(most, int(min(top // info.dt_s, 1e6)) + 2)
    return mean[info.node_class], most
