"""The reference engine: one SimPy process per task, a dispatcher process per node, and energy
settled node by node in plain Python. Small and slow on purpose: it is the yardstick the fast engine
is tested against, and ``--engine reference`` runs it. Its processes note what happens to each task
(``_Events``) and ``run_epoch`` returns it as an ``EpochOutcome``: the world's arrays are written by
the world alone.
"""
from __future__ import annotations

import numpy as np
import simpy

from .world import EXPIRED, NODE_DOWN, Q_FULL, EpochOutcome, World


class _Events:
    """Task events of one epoch, in the order they happened."""

    def __init__(self):
        self.queued: list[int] = []
        self.started: list[tuple[int, float, float]] = []
        self.done: list[tuple[int, float, bool]] = []
        self.dropped: list[tuple[int, float, int]] = []

    def outcome(self, energy: dict, stored: list, brown_next: list) -> EpochOutcome:
        st = list(zip(*self.started)) or [(), (), ()]
        dn = list(zip(*self.done)) or [(), (), ()]
        dr = list(zip(*self.dropped)) or [(), (), ()]
        ids = lambda x: np.array(x, np.int64)      # noqa: E731
        return EpochOutcome(
            energy={k: np.array(v) for k, v in energy.items()}, stored_wh=np.array(stored),
            brown_next=np.array(brown_next, bool), queued=ids(self.queued),
            started=ids(st[0]), start_s=np.array(st[1], float), finish_s=np.array(st[2], float),
            done=ids(dn[0]), done_s=np.array(dn[1], float), done_late=np.array(dn[2], bool),
            dropped=ids(dr[0]), drop_s=np.array(dr[1], float), drop_reason=ids(dr[2]))


class _Node:
    def __init__(self, env: simpy.Environment, servers: int):
        self.servers = servers
        self.busy = 0
        self.waiting: dict[int, tuple] = {}   # id -> (order key, start event, removed event)
        self.up = True
        self.serve = True
        self.blocked = False
        self.budget = 0.0
        self.used = 0.0
        self.wake = env.event()


class ReferenceEngine:
    name = "reference"

    def __init__(self, world: World):
        self.w = world
        self.env = simpy.Environment()
        self.nodes = [_Node(self.env, int(c)) for c in world.p.servers]
        self.where: dict[int, int] = {}
        self.events = _Events()
        for i in range(world.n):
            self.env.process(self._dispatcher(i))

    # ----------------------------------------------------------------------------- processes
    def _wake(self, node: _Node) -> None:
        if not node.wake.triggered:
            node.wake.succeed()

    def _dispatcher(self, i: int):
        node, w = self.nodes[i], self.w
        while True:
            while node.serve and not node.blocked and node.busy < node.servers and node.waiting:
                tid = min(node.waiting, key=lambda t: node.waiting[t][0])
                energy = w.p.active_w[i] * (w.tasks.work_s[tid] / w.p.speed[i]) / 3600.0
                if node.used + energy > node.budget:
                    node.blocked = True
                    break
                node.used += energy
                node.busy += 1
                node.waiting.pop(tid)[1].succeed()
            node.wake = self.env.event()
            yield node.wake

    def _task(self, tid: int, i: int):
        env, w = self.env, self.w
        yield env.timeout(w.arrive_s[tid] - env.now)
        node, deadline = self.nodes[i], w.tasks.deadline_s[tid]
        if not node.up and w.p.drop_on_down[i]:
            return self.events.dropped.append((tid, env.now, NODE_DOWN))
        if deadline < env.now:
            return self.events.dropped.append((tid, env.now, EXPIRED))
        if len(node.waiting) >= w.p.queue_cap[i]:
            return self.events.dropped.append((tid, env.now, Q_FULL))
        start, removed = env.event(), env.event()
        key = (deadline if w.p.edf[i] else env.now, tid)
        node.waiting[tid] = (key, start, removed)
        self.where[tid] = i
        self.events.queued.append(tid)
        self._wake(node)
        res = yield start | removed | env.timeout(deadline - env.now)
        if removed in res:
            return None
        if start not in res:
            del node.waiting[tid]
            return self.events.dropped.append((tid, deadline, EXPIRED))
        service = w.tasks.work_s[tid] / w.p.speed[i]
        self.events.started.append((tid, env.now, env.now + service))
        yield env.timeout(service)
        self.events.done.append((tid, env.now, env.now > deadline))
        node.busy -= 1
        self._wake(node)
        return None

    def remove(self, ids) -> None:
        for tid in ids:
            node = self.nodes[self.where.pop(int(tid))]
            node.waiting.pop(int(tid))[2].succeed()

    # ---------------------------------------------------------------------------- one epoch
    def run_epoch(self, t0: float, t1: float) -> EpochOutcome:
        w, p = self.w, self.w.p
        dth = w.dt / 3600.0
        out = {k: [0.0] * w.n for k in ("harvested_wh", "curtailed_wh", "consumed_idle_wh",
                                        "consumed_tasks_wh", "consumed_tx_wh", "self_discharge_wh",
                                        "conversion_loss_wh", "unserved_wh")}
        pre, stored_out, brown_next = [], [0.0] * w.n, [False] * w.n
        self.events = _Events()
        for i, node in enumerate(self.nodes):
            stored, up = float(w.stored[i]), bool(w.up[i])
            sd = stored * float(w.sd_share[i])
            s1 = stored - sd
            avail = min(max(s1 - p.min_wh[i], 0.0) * p.eta_d[i], p.max_discharge_w[i] * dth) if up else 0.0
            harvest, tx = float(w.harvest_now[i]), float(w.tx_wh[i])
            idle = p.idle_w[i] * dth if up else 0.0
            ok = up and idle + tx <= harvest + avail
            idle_used = idle if (ok or not up) else max(harvest + avail - tx, 0.0)
            node.up, node.serve, node.blocked, node.used = up, ok, False, 0.0
            node.budget = harvest + avail - idle - tx if ok else 0.0
            pre.append((sd, s1, harvest, tx, idle_used, ok))
            self._wake(node)
        for tid in w.arrivals(t1):
            self.env.process(self._task(int(tid), int(w.node[tid])))
        self.env.run(until=t1)
        for i, node in enumerate(self.nodes):
            sd, s1, harvest, tx, idle_used, ok = pre[i]
            net = harvest - idle_used - tx - node.used
            if net >= 0:
                charge = max(min(net, p.max_charge_w[i] * dth, (p.capacity_wh[i] - s1) / p.eta_c[i]), 0.0)
                stored = s1 + charge * p.eta_c[i]
                curtailed, conv = net - charge, charge * (1.0 - p.eta_c[i])
            else:
                stored = s1 + net / p.eta_d[i]
                curtailed, conv = 0.0, -net * (1.0 / p.eta_d[i] - 1.0)
            stored_out[i] = stored
            brown_next[i] = bool(w.up[i]) and (not ok or stored <= p.min_wh[i] * (1 + 1e-9) + 1e-12)
            for k, v in (("harvested_wh", harvest), ("curtailed_wh", curtailed),
                         ("consumed_idle_wh", idle_used), ("consumed_tasks_wh", node.used),
                         ("consumed_tx_wh", tx), ("self_discharge_wh", sd), ("conversion_loss_wh", conv),
                         ("unserved_wh", p.idle_w[i] * dth * (not w.failed[i]) - idle_used)):
                out[k][i] = v
        return self.events.outcome(out, stored_out, brown_next)
