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


LINDLEY_MAX = 16   # the most tasks per node-epoch the vectorised path takes


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
        task_wh = np.zeros(w.n)
        if not len(ids):
            self._finish_running(t1)
            return task_wh
        nodes, first = np.unique(node, return_index=True)
        n_wait = np.add.reduceat(1 - is_arrival, first)
        last = np.append(first[1:], len(ids))
        fast, used, begun, begin_s = self._lindley(t0, t1, ids, service, energy, nodes, first, last,
                                                   n_wait, budget, serve)
        task_wh[nodes[fast]] = used
        started = list(zip(ids[begun].tolist(), begin_s.tolist(), (begin_s + service[begun]).tolist()))
        dropped = []
        rest = np.flatnonzero(~fast)
        if len(rest):
            sel = np.concatenate([np.arange(first[g], last[g]) for g in rest])
            rows = dict(zip(sel.tolist(), zip(w.arrive_s[ids[sel]].tolist(), ids[sel].tolist(),
                                               t.deadline_s[ids[sel]].tolist(), service[sel].tolist(),
                                               energy[sel].tolist())))
            up, drop_down, qcap, edf = (w.up.tolist(), p.drop_on_down.tolist(), p.queue_cap.tolist(),
                                        p.edf.tolist())
            serve_l, budget_l = serve.tolist(), budget.tolist()
            for g in rest.tolist():
                nd, a, m, b = int(nodes[g]), int(first[g]), int(n_wait[g]), int(last[g])
                s, d, u, _ = serve_queue(t0, t1, self.free[nd], [rows[k] for k in range(a, a + m)],
                                         [rows[k] for k in range(a + m, b)], qcap[nd], edf[nd], up[nd],
                                         drop_down[nd], serve_l[nd], budget_l[nd])
                started += s
                dropped += d
                task_wh[nd] = u
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

    def _lindley(self, t0, t1, ids, service, energy, nodes, first, last, n_wait, budget, serve):
        """Vectorised across nodes: the Lindley recursion start_k = max(arrival_k, finish_{k-1})
        for node-epochs with one FIFO server, nothing waiting at t0 and no more tasks than queue
        places. A node is kept only if nothing would have expired, overflowed or been blocked by
        energy; every other node goes through ``serve_queue``. The arithmetic (max, sums in start
        order) is the kernel's, so both paths give identical numbers."""
        w, p, t = self.w, self.w.p, self.w.tasks
        size = last - first
        fast = ((n_wait == 0) & (size <= np.minimum(p.queue_cap[nodes], LINDLEY_MAX))
                & ~p.edf[nodes] & (p.servers[nodes] == 1) & w.up[nodes] & serve[nodes])
        g = np.flatnonzero(fast)
        empty = (fast, np.zeros(0), np.zeros(len(ids), bool), np.zeros(0))
        if not len(g):
            return empty
        free = np.array([self.free[nd][0] for nd in nodes[g].tolist()])
        arrive, deadline = w.arrive_s[ids], t.deadline_s[ids]
        cum, ok = np.zeros(len(g)), np.ones(len(g), bool)
        start = np.full(len(ids), np.inf)
        cap = budget[nodes[g]]
        sz, fi = size[g], first[g]
        for r in range(int(sz.max())):
            m = np.flatnonzero(sz > r)
            pos = fi[m] + r
            s = np.maximum(arrive[pos], free[m])
            began = s < t1
            c = cum[m] + np.where(began, energy[pos], 0.0)
            ok[m] &= np.where(began, (s <= deadline[pos]) & (c <= cap[m]), deadline[pos] >= t1)
            start[pos] = np.where(began, s, np.inf)
            free[m] = np.where(began, s + service[pos], free[m])
            cum[m] = c
        fast[g[~ok]] = False
        keep = g[ok]
        for nd, f in zip(nodes[keep].tolist(), free[ok].tolist()):
            self.free[nd][0] = f
        in_kept = np.zeros(len(ids), bool)
        for a, b in zip(first[keep].tolist(), last[keep].tolist()):
            in_kept[a:b] = True
        begun = in_kept & np.isfinite(start)
        return fast, cum[ok], begun, start[begun]

    def _finish_running(self, t1: float) -> None:
        w, r = self.w, self.running
        done = r[w.finish_s[r] < t1]
        if len(done):
            late = w.finish_s[done] > w.tasks.deadline_s[done]
            w.status[done] = np.where(late, DONE_LATE, DONE_ON_TIME)
            w.end_s[done] = w.finish_s[done]
            self.running = r[w.finish_s[r] >= t1]
