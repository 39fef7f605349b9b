"""The fast engine: numpy state, closed-form energy settlement, tasks resolved per epoch.

Agents interact only at epoch boundaries, so within an epoch each node's queue is independent.
Node-epochs whose outcome needs no event walk (a node serving nothing; servers whose queue
order is never in question) are resolved for all nodes at once (``_vectorised``); the rest walk
their events (arrivals, start opportunities, expiries) with two heaps (``serve_queue``). There is
no SimPy process per task, and all nodes' energy is settled in one vectorised pass. The engine
reads the world and returns what happened as an ``EpochOutcome``; it never writes the world's
arrays. It must agree with ``engine_reference`` exactly (tests/test_engines.py).
"""
from __future__ import annotations

from heapq import heapify, heappop, heappush, heapreplace
from math import inf

import numpy as np

from .world import EXPIRED, NODE_DOWN, Q_FULL, WAITING, EpochOutcome, World

_NONE, _NO_TIME = np.zeros(0, np.int64), np.zeros(0)
Rows = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Task rows as columns: ids, a time, and a third column (finish times of starts, reasons of drops)."""
_NO_ROWS: Rows = (_NONE, _NO_TIME, _NONE)


def _columns(rows: list, third: type) -> Rows:
    """Rows (id, time, x) of the event walk as three columns (x of type ``third``)."""
    if not rows:
        return _NONE, _NO_TIME, np.zeros(0, third)
    i, t, x = zip(*rows)
    return np.array(i, np.int64), np.array(t), np.array(x, third)


def _concat(a: Rows, b: Rows) -> Rows:
    """The rows of ``a`` followed by those of ``b``."""
    return tuple(np.concatenate([x, y]) for x, y in zip(a, b))


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
    if not serve and not arrivals:
        return _held(t1, waiting)
    if serve and len(free) == 1 and len(waiting) + len(arrivals) <= qcap:
        out = _one_server(t0, t1, free, waiting, arrivals, edf, budget)
        if out is not None:
            return out
    q = _Queue(waiting, edf)
    starts = []
    used, blocked, ai, na, now = 0.0, not serve, 0, len(arrivals), t0
    refuse = not up and drop_down
    while True:
        s = max(free[0], now) if (q.present and not blocked) else inf
        a = arrivals[ai][0] if ai < na else inf
        if a <= s:
            if a >= t1:
                break
            now = a
            q.expire(now)
            q.admit(arrivals[ai], qcap, refuse)
            ai += 1
            continue
        if s >= t1:
            break
        now = s
        q.expire(now)
        if not q.present:
            continue
        key, i = q.pop_next()
        e = q.present[i][3]
        if used + e > budget:
            blocked = True
            heappush(q.order, (key, i))
            continue
        used += e
        sv = q.present.pop(i)[2]
        heapreplace(free, s + sv)
        starts.append((i, s, s + sv))
    q.expire(t1)
    return starts, q.drops, used, [(v[0], i) for i, v in q.present.items()]


class _Queue:
    """One node's waiting tasks within an epoch: a heap in service order ((deadline, id) under
    EDF, (arrival, id) under FIFO), a heap of deadlines, and the drops so far."""

    def __init__(self, waiting: list, edf: bool):
        self.edf = edf
        self.present = {i: (a, d, sv, e) for a, i, d, sv, e in waiting}
        self.order = [(d if edf else a, i) for a, i, d, _, _ in waiting]
        self.dl = [(d, i) for _, i, d, _, _ in waiting]
        heapify(self.order)
        heapify(self.dl)
        self.drops: list = []

    def expire(self, t: float) -> None:
        """Drop the waiting tasks whose deadline is before t, at their deadline."""
        dl, present = self.dl, self.present
        while dl and dl[0][0] < t:
            d, i = heappop(dl)
            if i in present:
                del present[i]
                self.drops.append((i, d, EXPIRED))

    def admit(self, arrival: tuple, qcap: int, refuse: bool) -> None:
        """An arrival joins the queue, or is dropped (node down, already late, queue full)."""
        a, i, d, sv, e = arrival
        if refuse:
            self.drops.append((i, a, NODE_DOWN))
        elif d < a:
            self.drops.append((i, a, EXPIRED))
        elif len(self.present) >= qcap:
            self.drops.append((i, a, Q_FULL))
        else:
            self.present[i] = (a, d, sv, e)
            heappush(self.order, (d if self.edf else a, i))
            heappush(self.dl, (d, i))

    def pop_next(self) -> tuple[float, int]:
        """The next task in service order that is still waiting (its key and id)."""
        key, i = heappop(self.order)
        while i not in self.present:
            key, i = heappop(self.order)
        return key, i


def _held(t1: float, waiting: list):
    """``serve_queue`` when nothing starts or arrives: waiting tasks expire at their deadlines."""
    return ([], [(i, d, EXPIRED) for _, i, d, _, _ in waiting if d < t1], 0.0,
            [(a, i) for a, i, d, _, _ in waiting if d >= t1])


def _one_server(t0: float, t1: float, free: list, waiting: list, arrivals: list, edf: bool,
                budget: float):
    """``serve_queue`` for one server when nothing can overflow: the Lindley recursion
    start_k = max(arrival_k, t0, finish_{k-1}) in queue order. Returns None (and changes nothing)
    when a task would expire, the energy budget would block, or under EDF an arrival is present
    at an earlier start (the order would then be EDF's to choose): the event walk takes over."""
    if len(waiting) > 1:
        waiting = sorted(waiting, key=(lambda r: (r[2], r[1])) if edf else (lambda r: (r[0], r[1])))
    f, used, last, nw = free[0], 0.0, -inf, len(waiting)
    starts, rest = [], []
    for k, (a, i, d, sv, e) in enumerate(waiting + arrivals):
        if edf and k >= nw and a <= last:
            return None
        s = a if a > t0 else t0
        if f > s:
            s = f
        if s < t1:
            if d < s or used + e > budget:
                return None
            used += e
            f = s + sv
            last = s
            starts.append((i, s, f))
        elif d < t1:
            return None
        else:
            rest.append((a, i))
    free[0] = f
    return starts, [], used, rest


def stable_order(key: np.ndarray) -> np.ndarray:
    """``np.argsort(key, kind="stable")`` for non-negative integers: below 2**32 as one or two
    passes of numpy's radix sort on 16-bit digits (low digit first), several times faster than
    the merge sort numpy uses for wider integers, on the ~150,000 tasks of an epoch at 100,000
    nodes."""
    top = int(key.max()) if len(key) else 0
    if top < 1 << 16:
        return np.argsort(key.astype(np.uint16), kind="stable")
    if top >= 1 << 32:
        return np.argsort(key, kind="stable")
    order = np.argsort((key & 0xFFFF).astype(np.uint16), kind="stable")
    return order[np.argsort((key[order] >> 16).astype(np.uint16), kind="stable")]


LINDLEY_MAX = 16   # the most tasks per node-epoch the vectorised paths take
SMALL_EPOCH = 48   # with at most this many tasks in play, every node walks its events


class FastEngine:
    name = "fast"

    def __init__(self, world: World):
        self.w = world
        self.small_epoch = SMALL_EPOCH
        p = world.p
        self.charge_loss, self.draw_loss = 1.0 - p.eta_c, 1.0 / p.eta_d - 1.0
        self.brown_wh = p.min_wh * (1 + 1e-9) + 1e-12     # at or below it the node browns out
        self.qcap, self.edf, self.drop_down = p.queue_cap.tolist(), p.edf.tolist(), p.drop_on_down.tolist()
        # server free times, one row per node (unused places +inf): the walk heapifies a node's
        # row as a list and writes it back; the vectorised path reads and writes column 0
        self.servers = p.servers.tolist()
        width = max(max(self.servers, default=1), 1)
        self.free = np.where(np.arange(width) < p.servers[:, None], 0.0, np.inf)
        self.running = np.zeros(0, np.int64)
        self.running_until = np.zeros(0)       # their finish times

    def remove(self, ids: np.ndarray) -> None:
        """Tasks taken out of their queue at a boundary: the state lives in the world's arrays."""

    def run_epoch(self, t0: float, t1: float) -> EpochOutcome:
        w, p, z = self.w, self.w.p, 0.0
        s0 = w.stored
        sd = w.self_discharge_wh(s0)
        s1 = s0 - sd
        harvest, tx, up = w.harvest_now, w.tx_wh, w.up
        idle = w.idle_wh * up
        supply = harvest + w.avail_now
        unsust = up & (idle + tx > supply)
        idle_used = np.where(unsust, np.maximum(supply - tx, z), idle)
        serve = up & ~unsust
        budget = np.where(serve, supply - idle - tx, z)
        task_wh, tasks = self._serve(t0, t1, budget, serve)
        net = harvest - idle_used - tx - task_wh
        # charge what is left within the charge limit and the room; draw what is missing
        charge = np.maximum(np.minimum(net, np.minimum(w.charge_cap_wh, (p.capacity_wh - s1) / p.eta_c)), z)
        draw = np.maximum(z, -net)
        curtailed = np.maximum(net - charge, z)
        stored = s1 + charge * p.eta_c - draw / p.eta_d
        conv = charge * self.charge_loss + draw * self.draw_loss
        energy = {"harvested_wh": harvest, "curtailed_wh": curtailed, "consumed_idle_wh": idle_used,
                  "consumed_tasks_wh": task_wh, "consumed_tx_wh": tx, "self_discharge_wh": sd,
                  "conversion_loss_wh": conv, "unserved_wh": w.idle_wh * w.alive - idle_used}
        return EpochOutcome(energy=energy, stored_wh=stored, brown_next=up & (unsust | (stored <= self.brown_wh)),
                            **tasks)

    def _serve(self, t0: float, t1: float, budget: np.ndarray, serve: np.ndarray) -> tuple[np.ndarray, dict]:
        """Energy each node spends on tasks, and the task fields of the epoch's outcome."""
        w = self.w
        arr = w.arrivals(t1)
        wait = w.with_status(WAITING)
        task_wh = np.zeros(w.n)
        ids = np.concatenate([wait, arr])
        is_arrival = np.zeros(len(ids), bool)
        is_arrival[len(wait):] = True
        if len(ids) <= self.small_epoch:
            # few tasks in play: the per-node event walk costs less than numpy's per-call overhead
            s, d = self._walk(t0, t1, ids, is_arrival, budget, serve, task_wh)
            started, dropped = _columns(s, float), _columns(d, np.int64)
        else:
            started, dropped = self._serve_many(t0, t1, ids, is_arrival, budget, serve, task_wh)
        out = {"queued": arr, "started": _NONE, "start_s": _NO_TIME, "finish_s": _NO_TIME,
               "dropped": _NONE, "drop_s": _NO_TIME, "drop_reason": _NONE}
        if len(dropped[0]):
            out.update(dropped=dropped[0], drop_s=dropped[1], drop_reason=dropped[2])
        if len(started[0]):
            si, sf = started[0], started[2]
            out.update(started=si, start_s=started[1], finish_s=sf)
            self.running = np.concatenate([self.running, si])
            self.running_until = np.concatenate([self.running_until, sf])
        return task_wh, {**out, **self._finish_running(t1)}

    def _walk(self, t0, t1, ids, is_arrival, budget, serve, task_wh) -> tuple[list, list]:
        """``serve_queue`` for every node with tasks in ``ids`` (arrivals in (arrival, id) order)."""
        if not len(ids):
            return [], []
        w, p, t = self.w, self.w.p, self.w.tasks
        node = w.node[ids]
        service = t.work_s[ids] / p.speed[node]
        energy = p.active_w[node] * service / 3600.0
        groups: dict[int, tuple[list, list]] = {}
        for row in zip(node.tolist(), is_arrival.tolist(), w.arrive_s[ids].tolist(), ids.tolist(),
                       t.deadline_s[ids].tolist(), service.tolist(), energy.tolist()):
            g = groups.get(row[0])
            if g is None:
                g = groups[row[0]] = ([], [])
            g[row[1]].append(row[2:])
        up, serve_l, budget_l = w.up.tolist(), serve.tolist(), budget.tolist()
        qcap, edf, drop_down, servers = self.qcap, self.edf, self.drop_down, self.servers
        started, dropped = [], []
        for nd, (waiting, arrivals) in groups.items():
            free = self.free[nd, :servers[nd]].tolist()
            s, d, u, _ = serve_queue(t0, t1, free, waiting, arrivals, qcap[nd], edf[nd], up[nd],
                                     drop_down[nd], serve_l[nd], budget_l[nd])
            self.free[nd, :servers[nd]] = free
            started += s
            dropped += d
            task_wh[nd] = u
        return started, dropped

    def _serve_many(self, t0, t1, ids, is_arrival, budget, serve, task_wh) -> tuple[Rows, Rows]:
        """The vectorised paths where they apply, the event walk for the other nodes."""
        w, p, t = self.w, self.w.p, self.w.tasks
        node = w.node[ids]
        # by node; waiting tasks first in queue order ((deadline, id) under EDF, (arrival, id)
        # under FIFO), then the arrivals in (arrival, id) order. ``ids`` holds the waiting tasks
        # first and then the arrivals, already in (arrival, id) order (``World.arrivals``): the
        # few waiting ones are sorted on three keys, then one stable sort by node keeps the rest
        nw = len(ids) - int(np.count_nonzero(is_arrival))
        wn = node[:nw]
        key = np.where(p.edf[wn], t.deadline_s[ids[:nw]], w.arrive_s[ids[:nw]])
        order = np.concatenate([np.lexsort((ids[:nw], key, wn)), np.arange(nw, len(ids))])
        order = order[stable_order(node[order])]
        ids, is_arrival, node = ids[order], is_arrival[order], node[order]
        service = t.work_s[ids] / p.speed[node]
        energy = p.active_w[node] * service / 3600.0
        first = np.flatnonzero(np.concatenate([[True], node[1:] != node[:-1]]))     # node is sorted
        nodes = node[first]
        last = np.append(first[1:], len(ids))
        fast, used, begun, begin_s, dropped = self._vectorised(t0, t1, ids, is_arrival, service, energy,
                                                               nodes, first, last, budget, serve)
        task_wh[nodes[fast]] = used
        started = (ids[begun], begin_s, begin_s + service[begun])
        rest = np.repeat(~fast, last - first)
        s, d = self._walk(t0, t1, ids[rest], is_arrival[rest], budget, serve, task_wh)
        return _concat(started, _columns(s, float)), _concat(dropped, _columns(d, np.int64))

    def _vectorised(self, t0, t1, ids, is_arrival, service, energy, nodes, first, last, budget, serve):
        """The node-epochs whose outcome needs no event walk, resolved for all nodes at once.

        Every group here holds no more tasks than queue places (nothing can overflow) and at most
        ``LINDLEY_MAX``. Two kinds:

        - idle (the node serves nothing this epoch: down, or its load is unsustainable): each
          task's fate is its own: an arrival at a node that is down and drops is dropped, one past
          its deadline on arrival expires then, any other expires at its deadline if that falls in
          the epoch, and the rest keep waiting;
        - serving: the Lindley recursion for c servers, start_k = max(arrival_k, t0, the earliest
          time a server is free) in queue order, that server then busy until start_k + service_k.
          Kept only if nothing expires and every start fits the energy budget and, under EDF, no
          arrival is present at any earlier start (so the order is EDF's: waiting tasks are in
          deadline order, and each arrival finds no other task to be chosen over it). Starts
          never go back in time (ready times and the earliest free time only grow along the
          queue), so queue order is start order, as in the event walk.

        Every other node-epoch goes through ``serve_queue``. The arithmetic (max, sums in start
        order) is the kernel's, so both paths give identical numbers."""
        w, p, t = self.w, self.w.p, self.w.tasks
        size = last - first
        small = size <= np.minimum(p.queue_cap[nodes], LINDLEY_MAX)
        idle = small & ~serve[nodes]
        fast = idle | (small & serve[nodes] & (p.servers[nodes] >= 1))
        dropped = self._idle_drops(t1, ids, is_arrival, nodes, size, idle) if idle.any() else _NO_ROWS
        g = np.flatnonzero(fast & ~idle)
        if not len(g):
            return fast, np.zeros(np.count_nonzero(fast)), np.zeros(len(ids), bool), np.zeros(0), dropped
        free = self.free[nodes[g]]        # (groups, most servers), unused places +inf
        arrive, deadline = w.arrive_s[ids], t.deadline_s[ids]
        ready = np.maximum(arrive, t0)
        edf = p.edf[nodes[g]]
        cum, ok = np.zeros(len(g)), np.ones(len(g), bool)
        last_start = np.full(len(g), -np.inf)
        start = np.full(len(ids), np.inf)
        cap = budget[nodes[g]]
        sz, fi = size[g], first[g]
        for r in range(int(sz.max())):
            m = np.flatnonzero(sz > r)
            pos = fi[m] + r
            j = free[m].argmin(1)
            soonest = free[m, j]
            s = np.maximum(ready[pos], soonest)
            began = s < t1
            c = cum[m] + np.where(began, energy[pos], 0.0)
            clash = edf[m] & is_arrival[pos] & (arrive[pos] <= last_start[m])
            ok[m] &= ~clash & np.where(began, (s <= deadline[pos]) & (c <= cap[m]), deadline[pos] >= t1)
            start[pos] = np.where(began, s, np.inf)
            free[m, j] = np.where(began, s + service[pos], soonest)
            cum[m] = c
            last_start[m] = np.where(began, s, last_start[m])
        fast[g[~ok]] = False
        keep = g[ok]
        # rows ascending: a valid heap for the event walk (only the values matter to it)
        self.free[nodes[keep]] = np.sort(free[ok], axis=1) if free.shape[1] > 1 else free[ok]
        kept = np.zeros(len(nodes), bool)
        kept[keep] = True
        begun = np.repeat(kept, size) & np.isfinite(start)
        used = np.zeros(len(nodes))
        used[keep] = cum[ok]
        return fast, used[fast], begun, start[begun], dropped

    def _idle_drops(self, t1, ids, is_arrival, nodes, size, idle) -> Rows:
        """Drops at the node-epochs that serve nothing: each task's fate is its own."""
        w, p, t = self.w, self.w.p, self.w.tasks
        member = np.repeat(idle, size)
        sel = ids[member]
        nd, arrv = nodes[np.repeat(np.arange(len(nodes)), size)][member], is_arrival[member]
        a, d = w.arrive_s[sel], t.deadline_s[sel]
        down = arrv & ~w.up[nd] & p.drop_on_down[nd]
        late = arrv & ~down & (d < a)
        due = ~down & ~late & (d < t1)
        kinds = ((down, a, NODE_DOWN), (late, a, EXPIRED), (due, d, EXPIRED))
        return (np.concatenate([sel[m] for m, _, _ in kinds]),
                np.concatenate([when[m] for m, when, _ in kinds]),
                np.concatenate([np.full(np.count_nonzero(m), why, np.int64) for m, _, why in kinds]))

    def _finish_running(self, t1: float) -> dict:
        """Running tasks that end before t1: ids, end times and whether late."""
        r, until = self.running, self.running_until
        ends = until < t1
        done, f = r[ends], until[ends]
        self.running, self.running_until = r[~ends], until[~ends]
        return {"done": done, "done_s": f, "done_late": f > self.w.tasks.deadline_s[done]}
