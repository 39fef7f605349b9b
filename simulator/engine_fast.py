"""The fast engine: numpy state, closed-form energy settlement, tasks resolved per epoch.

Agents interact only at epoch boundaries, so within an epoch each node's queue is independent:
the engine walks every active node's events (arrivals, start opportunities, expiries) with two
heaps, with no SimPy process per task, and settles all nodes' energy in one vectorised pass.
It must agree with ``engine_reference`` exactly (tests/test_engines.py).
"""
from __future__ import annotations

from heapq import heapify, heappop, heappush, heapreplace
from math import inf

import numpy as np

from .world import DONE_LATE, DONE_ON_TIME, EXPIRED, NODE_DOWN, Q_FULL, RUNNING, WAITING, World


def serve_queue(t0: float, t1: float, free: list, waiting: list, arrivals: list, qcap: int,
                edf: bool, up: bool, drop_down: bool, serve: bool, budget: float):
    """Resolve one node's queue over [t0, t1).

    ``free``: heap of server free times (updated in place). ``waiting`` and ``arrivals``: tuples
    (arrive_s, id, deadline_s, service_s, energy_wh); arrivals sorted by (arrive_s, id).
    Returns (starts [(id, start, finish)], drops [(id, time, reason)], energy used, new waiting).
    Conventions (shared with the reference engine): an arrival at the same instant as a start
    opportunity joins the queue first; a task expires when the time is past its deadline; a task
    whose energy does not fit the node's remaining budget blocks the node until the next epoch.
    """
    present: dict = {}
    order: list = []
    dl: list = []
    for a, i, d, sv, e in waiting:
        present[i] = (a, d, sv, e)
        order.append((d if edf else a, i))
        dl.append((d, i))
    heapify(order)
    heapify(dl)
    starts, drops = [], []
    used, blocked, ai, na, now = 0.0, not serve, 0, len(arrivals), t0

    def expire(t: float) -> None:
        while dl and dl[0][0] < t:
            d, i = heappop(dl)
            if i in present:
                del present[i]
                drops.append((i, d, EXPIRED))

    while True:
        s = max(free[0], now) if (present and not blocked) else inf
        a = arrivals[ai][0] if ai < na else inf
        if a <= s:
            if a >= t1:
                break
            now = a
            _, i, d, sv, e = arrivals[ai]
            ai += 1
            expire(now)
            if not up and drop_down:
                drops.append((i, a, NODE_DOWN))
            elif d < a:
                drops.append((i, a, EXPIRED))
            elif len(present) >= qcap:
                drops.append((i, a, Q_FULL))
            else:
                present[i] = (a, d, sv, e)
                heappush(order, (d if edf else a, i))
                heappush(dl, (d, i))
            continue
        if s >= t1:
            break
        now = s
        expire(now)
        if not present:
            continue
        key, i = heappop(order)
        while i not in present:
            key, i = heappop(order)
        e = present[i][3]
        if used + e > budget:
            blocked = True
            heappush(order, (key, i))
            continue
        used += e
        sv = present.pop(i)[2]
        heapreplace(free, s + sv)
        starts.append((i, s, s + sv))
    expire(t1)
    return starts, drops, used, [(v[0], i) for i, v in present.items()]


class FastEngine:
    name = "fast"

    def __init__(self, world: World):
        self.w = world
        self.free = [[0.0] * int(c) for c in world.p.servers]
        self.running = np.zeros(0, np.int64)

    def remove(self, ids: np.ndarray) -> None:
        """Tasks taken out of their queue at a boundary: the state lives in the world's arrays."""

    def run_epoch(self, t0: float, t1: float) -> dict:
        w, p = self.w, self.w.p
        dth = w.dt / 3600.0
        s0 = w.stored
        sd = w.self_discharge_wh(s0)
        s1 = s0 - sd
        avail = w.available_wh(s0)
        harvest, tx = w.harvest_now, w.tx_wh
        idle = np.where(w.up, p.idle_w * dth, 0.0)
        supply = harvest + avail
        unsust = w.up & (idle + tx > supply)
        idle_used = np.where(unsust, np.maximum(supply - tx, 0.0), idle)
        budget = np.where(w.up & ~unsust, supply - idle - tx, 0.0)
        task_wh = self._serve(t0, t1, budget, w.up & ~unsust)
        net = harvest - idle_used - tx - task_wh
        pos = net >= 0
        charge = np.where(pos, np.minimum(np.minimum(net, p.max_charge_w * dth),
                                          (p.capacity_wh - s1) / p.eta_c), 0.0)
        charge = np.maximum(charge, 0.0)
        draw = np.where(pos, 0.0, -net)
        curtailed = np.where(pos, net - charge, 0.0)
        w.stored = s1 + charge * p.eta_c - draw / p.eta_d
        conv = charge * (1.0 - p.eta_c) + draw * (1.0 / p.eta_d - 1.0)
        w.brown_next = w.up & (unsust | (w.stored <= p.min_wh * (1 + 1e-9) + 1e-12))
        return {"harvested_wh": harvest, "curtailed_wh": curtailed, "consumed_idle_wh": idle_used,
                "consumed_tasks_wh": task_wh, "consumed_tx_wh": tx.copy(), "self_discharge_wh": sd,
                "conversion_loss_wh": conv}

    def _serve(self, t0: float, t1: float, budget: np.ndarray, serve: np.ndarray) -> np.ndarray:
        w, p, t = self.w, self.w.p, self.w.tasks
        arr = w.arrivals(t1)
        wait = np.flatnonzero(w.status == WAITING)
        ids = np.concatenate([wait, arr])
        is_arrival = np.concatenate([np.zeros(len(wait), np.int64), np.ones(len(arr), np.int64)])
        # group by node; the stable sort keeps waiting tasks first and arrivals in time order
        order = np.argsort(w.node[ids], kind="stable")
        ids, is_arrival = ids[order], is_arrival[order]
        node = w.node[ids]
        service = t.work_s[ids] / p.speed[node]
        energy = p.active_w[node] * service / 3600.0
        rows = list(zip(w.arrive_s[ids].tolist(), ids.tolist(), t.deadline_s[ids].tolist(),
                        service.tolist(), energy.tolist()))
        task_wh = np.zeros(w.n)
        if not len(ids):
            return task_wh
        nodes, first = np.unique(node, return_index=True)
        n_wait = np.add.reduceat(1 - is_arrival, first)
        last = np.append(first[1:], len(ids))
        up, drop_down, qcap, edf = (w.up.tolist(), p.drop_on_down.tolist(), p.queue_cap.tolist(),
                                    p.edf.tolist())
        serve_l, budget_l = serve.tolist(), budget.tolist()
        started, dropped = [], []
        for nd, a, m, b in zip(nodes.tolist(), first.tolist(), n_wait.tolist(), last.tolist()):
            s, d, used, _ = serve_queue(t0, t1, self.free[nd], rows[a:a + m], rows[a + m:b], qcap[nd],
                                        edf[nd], up[nd], drop_down[nd], serve_l[nd], budget_l[nd])
            started += s
            dropped += d
            task_wh[nd] = used
        w.status[arr] = WAITING
        if dropped:
            di, dt_, dr = (np.array(x) for x in zip(*dropped))
            w.drop(di.astype(np.int64), dt_, 0)
            w.reason[di.astype(np.int64)] = dr
        if started:
            si, ss, sf = (np.array(x) for x in zip(*started))
            si = si.astype(np.int64)
            w.status[si] = RUNNING
            w.start_s[si], w.finish_s[si] = ss, sf
            self.running = np.concatenate([self.running, si])
        self._finish_running(t1)
        return task_wh

    def _finish_running(self, t1: float) -> None:
        w, r = self.w, self.running
        done = r[w.finish_s[r] < t1]
        if len(done):
            late = w.finish_s[done] > w.tasks.deadline_s[done]
            w.status[done] = np.where(late, DONE_LATE, DONE_ON_TIME)
            w.end_s[done] = w.finish_s[done]
            self.running = r[w.finish_s[r] >= t1]
