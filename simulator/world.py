"""The world: static parameters drawn from the scenario and seed, and the one owner of a run's state.

A run is a loop over control epochs [t0, t1). At each boundary t0 the world applies faults and
brownout transitions, builds the (read-only) Observation, validates and applies the controller's
Decision (energy moves battery to battery; routed tasks go into transit). Then an engine (fast or
reference) works out what happens in the epoch and returns it as an ``EpochOutcome``; only
``World.settle`` writes it into the world's arrays. Nothing outside the simulator package assigns
to a World attribute (tests/test_ownership.py). See docs/model.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from otmarl.scenarios import schema as S
from otmarl.scenarios.errors import DecisionError, ScenarioError

from .control import Decision, Observation, WorldInfo, first_true, normalise, read_only, validate
from .harvest import HarvestModel, start_s_of_day
from .network import NetworkState, NetworkView, make_links, make_topology
from .workload import generate

# task status codes
PENDING, TRANSIT, WAITING, RUNNING, DONE_ON_TIME, DONE_LATE, DROPPED = range(7)
STATUS_NAMES = ("pending", "in_transit", "queued", "running", "completed_on_time",
                "completed_late", "dropped")
# the reasons a task can be dropped for (docs/model.md, "Tasks"); code 0 is "not dropped"
DROP_REASONS = ("", "queue_full", "expired", "node_down")
Q_FULL, EXPIRED, NODE_DOWN = 1, 2, 3
STREAMS = ("topology", "nodes", "workload", "harvest", "faults", "policy")
_INT0, _FLOAT0 = np.zeros(0, np.int64), np.zeros(0)
_NO_ENERGY = {"src": _INT0, "dst": _INT0, "wh": _FLOAT0, "delivered": _FLOAT0}
_NO_TASKS = {"src": _INT0, "dst": _INT0, "count": _INT0}


def _frozen(a: np.ndarray) -> np.ndarray:
    """``a``, marked read-only: a state array the world replaces rather than writes into."""
    a.setflags(write=False)
    return a


def _is_empty(d: Decision) -> bool:
    return not (len(d.energy_src) or len(d.energy_dst) or len(d.energy_wh) or len(d.task_src)
                or len(d.task_dst) or len(d.task_count) or d.task_ids)


@dataclass
class NodeParams:
    """Per-node parameters (arrays over nodes), drawn once per run."""

    class_idx: np.ndarray
    capacity_wh: np.ndarray
    initial_wh: np.ndarray
    min_wh: np.ndarray
    resume_wh: np.ndarray
    eta_c: np.ndarray
    eta_d: np.ndarray
    max_charge_w: np.ndarray
    max_discharge_w: np.ndarray
    self_discharge_per_day: np.ndarray
    idle_w: np.ndarray
    active_w: np.ndarray
    speed: np.ndarray
    servers: np.ndarray
    queue_cap: np.ndarray
    edf: np.ndarray
    drop_on_down: np.ndarray


def _draw_nodes(sc: S.Scenario, rng: np.random.Generator) -> NodeParams:
    cols: dict[str, list] = {f: [] for f in NodeParams.__dataclass_fields__}
    for ci, nc in enumerate(sc.nodes.values()):
        m, b = nc.count, nc.battery
        cap = b.capacity_wh.sample(rng, m)
        put = {
            "class_idx": np.full(m, ci), "capacity_wh": cap,
            "initial_wh": cap * b.initial_soc.sample(rng, m),
            "min_wh": cap * b.min_soc, "resume_wh": cap * b.resume_soc,
            "eta_c": b.charge_efficiency.sample(rng, m), "eta_d": b.discharge_efficiency.sample(rng, m),
            "max_charge_w": b.max_charge_w.sample(rng, m), "max_discharge_w": b.max_discharge_w.sample(rng, m),
            "self_discharge_per_day": b.self_discharge_per_day.sample(rng, m),
            "idle_w": nc.idle_power_w.sample(rng, m), "active_w": nc.active_power_w.sample(rng, m),
            "speed": nc.speed.sample(rng, m), "servers": np.full(m, nc.servers),
            "queue_cap": np.full(m, nc.queue.capacity), "edf": np.full(m, nc.queue.discipline == "edf"),
            "drop_on_down": np.full(m, nc.on_down == "drop"),
        }
        for f, v in put.items():
            cols[f].append(np.broadcast_to(v, (m,)))
    out = {f: np.concatenate(v) for f, v in cols.items()}
    for f in ("class_idx", "servers", "queue_cap"):
        out[f] = out[f].astype(np.int64)
    for f in ("edf", "drop_on_down"):
        out[f] = out[f].astype(bool)
    return NodeParams(**out)


def _fault_schedule(sc: S.Scenario, names: list[str], links, rng: np.random.Generator) -> dict:
    """{epoch: [(kind, index, down)]} with every event moved to the next epoch boundary."""
    dt, horizon = sc.control_interval_s, sc.horizon_h * 3600.0
    index = {nm: i for i, nm in enumerate(names)}
    # links by end pair, only when an event names one (4.5 million links make a 0.7 GB dict)
    link_events = any(ev.node is None for ev in sc.faults.events)
    link_index = ({(a, b): e for e, (a, b) in enumerate(zip(links.u.tolist(), links.v.tolist()))}
                  if link_events else {})
    sched: dict[int, list] = {}

    def add(t_s: float, kind: str, idx: int, down: bool) -> None:
        k = int(math.ceil(t_s / dt - 1e-9))
        if k < sc.n_epochs:
            sched.setdefault(k, []).append((kind, idx, down))

    for ev in sc.faults.events:
        if ev.node is not None:
            add(ev.at_h * 3600, "node", index[ev.node], ev.action == "down")
        else:
            a, b = sorted(index[x] for x in ev.link)
            if (a, b) not in link_index:   # the loader refuses these; a Scenario built in Python may not
                raise ScenarioError([f"faults.events: '{ev.link[0]}' and '{ev.link[1]}' are not "
                                     "linked in this run's graph, so a link event cannot name them"])
            add(ev.at_h * 3600, "link", link_index[(a, b)], ev.action == "down")
    rf = sc.faults.random
    for kind, count, mtbf, mttr in (("node", len(names), rf.node_mtbf_h, rf.node_mttr_h),
                                    ("link", len(links), rf.link_mtbf_h, rf.link_mttr_h)):
        if mtbf is None:
            continue
        for i in range(count):
            t = rng.exponential(mtbf * 3600)
            while t < horizon:
                add(t, kind, i, True)
                t += rng.exponential(mttr * 3600)
                add(t, kind, i, False)
                t += rng.exponential(mtbf * 3600)
    return sched


@dataclass(slots=True)
class EpochOutcome:
    """What an engine found in one epoch [t0, t1), for ``World.settle`` to apply.

    Energy: the ledger terms per node (``energy``, Wh), the stored energy at t1 and the nodes
    that brown out at the next boundary. Tasks, in the order they are applied: ids that reached
    a queue; ids that started (with start and finish times); ids that finished (with end times
    and whether late); ids that were dropped (with times and reasons)."""

    energy: dict[str, np.ndarray]
    stored_wh: np.ndarray
    brown_next: np.ndarray
    queued: np.ndarray
    started: np.ndarray
    start_s: np.ndarray
    finish_s: np.ndarray
    done: np.ndarray
    done_s: np.ndarray
    done_late: np.ndarray
    dropped: np.ndarray
    drop_s: np.ndarray
    drop_reason: np.ndarray


@dataclass(slots=True)
class Finished:
    """Tasks that reached a final status in one epoch (including drops at its start boundary):
    their final status, origin node and the node they ended at."""

    status: np.ndarray
    origin: np.ndarray
    node: np.ndarray


_NONE_FINISHED = Finished(_INT0.astype(np.int8), _INT0, _INT0)


class World:
    """Static parameters plus the dynamic state of one run, changed only by its own methods."""

    def __init__(self, scenario: S.Scenario, seed: int):
        sc = self.sc = scenario
        self.seed = seed
        rngs = dict(zip(STREAMS, (np.random.default_rng(s)
                                  for s in np.random.SeedSequence(seed).spawn(len(STREAMS)))))
        self.rng = rngs
        self.names = scenario.node_names()
        self.n = n = len(self.names)
        self.dt = sc.control_interval_s
        self.n_epochs = sc.n_epochs
        self.p = _draw_nodes(sc, rngs["nodes"])
        topology = make_topology(sc, rngs["topology"])
        self._positions = topology.positions
        self.links = make_links(topology, sc.network.link, rngs["topology"])
        self.tasks = generate(sc, self.p.class_idx, rngs["workload"])
        mean_kb = float(self.tasks.data_kb.mean()) if len(self.tasks) else 0.0
        self.net = NetworkState(n, self.links, mean_kb)
        self.net_view = NetworkView(self.net)      # what controllers see of it (read-only)
        t = self.tasks      # read-only views of static arrays, made once for every observation
        self._static_view = {"capacity_wh": read_only(self.p.capacity_wh),
                             "task_deadline_s": read_only(t.deadline_s),
                             "task_data_kb": read_only(t.data_kb), "task_work_s": read_only(t.work_s)}
        self.harvest = HarvestModel(sc, self.p.class_idx, rngs["harvest"])
        self.faults = _fault_schedule(sc, self.names, self.links, rngs["faults"])
        self._node_bounds = np.arange(self.n + 1)
        self._servers_1 = np.maximum(self.p.servers, 1)
        dth = self.dt / 3600.0
        self.idle_wh = self.p.idle_w * dth               # idle load per epoch when up
        self.charge_cap_wh = self.p.max_charge_w * dth   # most a battery takes per epoch
        self.discharge_cap_wh = self.p.max_discharge_w * dth   # ... and gives
        self.link_cap_wh = self.links.power_limit_w * self.dt / 3600.0   # most a link carries
        self.link_cap_min_wh = float(self.link_cap_wh.min()) if len(self.links) else np.inf
        # share of the stored energy lost to self-discharge per epoch (both engines use it, so
        # that they agree to the last bit)
        self.sd_share = -np.expm1(np.log1p(-self.p.self_discharge_per_day) * self.dt / 86400.0)
        self.zeros = np.zeros(n)                # no transfers this epoch (shared, read-only)
        self.zeros.flags.writeable = False
        self.resume_at_wh = self.p.resume_wh * (1 - 1e-12)     # at or above it a node recovers
        self._init_state()

    @property
    def positions(self) -> np.ndarray:
        """Node positions (n, 2) for maps (a layout is computed on first use)."""
        return self._positions()

    # ------------------------------------------------------------------------ dynamic state
    def _init_state(self) -> None:
        n, m = self.n, len(self.tasks)
        # arrays an Observation shares are frozen values: the world replaces them, never writes
        # into them, so an observation holds them as they were
        self.stored = _frozen(self.p.initial_wh.astype(float))
        self.browned = self.stored <= self.p.min_wh * (1 + 1e-12)
        self.failed = _frozen(np.zeros(n, bool))
        self.alive = ~self.failed      # not failed (kept with ``failed``)
        self.link_up = np.ones(len(self.links), bool)
        self.up = _frozen(~self.browned)
        self.brown_next = np.zeros(n, bool)
        t = self.tasks
        self.status = np.full(m, PENDING, np.int8)
        self.node = t.origin.copy()
        self.arrive_s = t.gen_s.copy()
        self.start_s = np.full(m, np.nan)
        self.finish_s = np.full(m, np.nan)
        self.end_s = np.full(m, np.nan)      # completion or drop time
        self.reason = np.zeros(m, np.int8)
        self.offloads = np.zeros(m, np.int16)
        self.transit: list[int] = []
        self._finished: list[np.ndarray] = []   # ids finished since the last close_finished
        self.next_pending = 0      # tasks from here on have not been generated yet
        self.open_lo = 0           # tasks below this are finished (completed or dropped)
        self.harvest_last = _frozen(np.zeros(n))
        self.arrivals_last = _frozen(np.zeros(n, np.int64))
        # per-epoch boundary flows, read by the engines' settlement
        # (replaced, never written in place: the recorder and the reward read them after the epoch)
        self.sent = self.received = self.tx_wh = self.zeros
        self.harvest_now = np.zeros(n)
        self.avail_now = np.zeros(n)        # available_wh after transfers: what the engine may draw

    def info(self) -> WorldInfo:
        p = self.p
        return WorldInfo(
            n_nodes=self.n, names=tuple(self.names), node_class=p.class_idx,
            class_names=tuple(self.sc.nodes), capacity_wh=p.capacity_wh, min_wh=p.min_wh,
            resume_wh=p.resume_wh, servers=p.servers, queue_capacity=p.queue_cap, speed=p.speed, idle_power_w=p.idle_w,
            active_power_w=p.active_w, layout=self._positions, link_u=self.links.u,
            link_v=self.links.v, link_power_limit_w=self.links.power_limit_w, dt_s=self.dt,
            n_epochs=self.n_epochs,
            mean_task_work_s=float(self.tasks.work_s.mean()) if len(self.tasks) else 0.0,
            params=dict(self.sc.controller.params), start_s_of_day=start_s_of_day(self.sc),
            charge_efficiency=p.eta_c, discharge_efficiency=p.eta_d, max_charge_w=p.max_charge_w,
            harvest_forecast=self.harvest.forecast, scenario=self.sc, seed=self.seed)

    # ---------------------------------------------------------------------- boundary steps
    def apply_faults(self, k: int) -> None:
        events = self.faults.get(k)
        if not events:
            return
        link_up, failed = self.link_up.copy(), self.failed.copy()
        for kind, idx, down in events:
            if kind == "node":
                failed[idx] = down
            else:
                link_up[idx] = not down
        self.failed, self.link_up = _frozen(failed), link_up
        self.alive = ~failed
        self.net.set_state(link_up, failed)

    def update_status(self, t0: float, engine) -> None:
        """Brownout and recovery at a boundary; waiting tasks of nodes going down may be dropped."""
        recover = self.stored >= self.resume_at_wh
        self.browned = (self.browned & ~recover) | self.brown_next
        self.brown_next[:] = False
        was_up, self.up = self.up, _frozen(self.alive & ~self.browned)
        going = was_up & ~self.up & self.p.drop_on_down
        if going.any():
            going = going.nonzero()[0]
            ids = self.with_status(WAITING)
            ids = ids[np.isin(self.node[ids], going)]
            self.drop(ids, t0, NODE_DOWN)
            engine.remove(ids)

    def with_status(self, code: int) -> np.ndarray:
        """Ids of the tasks with a status that is not final (only open ids are scanned)."""
        lo = self.open_lo
        return (self.status[lo:self.next_pending] == code).nonzero()[0] + lo

    def close_finished(self) -> Finished:
        """Move ``open_lo`` past the tasks that are finished (after an epoch) and report the tasks
        that finished since the last call."""
        lo = self.open_lo
        still = (self.status[lo:self.next_pending] < DONE_ON_TIME).nonzero()[0]
        self.open_lo = lo + (int(still[0]) if len(still) else self.next_pending - lo)
        if not self._finished:
            return _NONE_FINISHED
        ids = np.concatenate(self._finished)
        self._finished = []
        return Finished(status=self.status[ids], origin=self.tasks.origin[ids], node=self.node[ids])

    def drop(self, ids: np.ndarray, t: float | np.ndarray, reason: int | np.ndarray) -> None:
        self.status[ids] = DROPPED
        self.reason[ids] = reason
        self.end_s[ids] = t
        self._finished.append(np.asarray(ids, np.int64))

    def draw_harvest(self) -> None:
        """The harvest of the epoch about to be simulated (one draw of the harvest stream)."""
        self.harvest_now = self.harvest.step()

    def settle(self, out: EpochOutcome) -> None:
        """Apply what an engine found in the epoch just simulated."""
        if len(out.queued):
            self.status[out.queued] = WAITING
        if len(out.started):
            self.status[out.started] = RUNNING
            self.start_s[out.started], self.finish_s[out.started] = out.start_s, out.finish_s
        if len(out.done):
            self.status[out.done] = np.where(out.done_late, DONE_LATE, DONE_ON_TIME)
            self.end_s[out.done] = out.done_s
            self._finished.append(out.done)
        if len(out.dropped):
            self.drop(out.dropped, out.drop_s, out.drop_reason)
        self.stored, self.brown_next = _frozen(out.stored_wh), out.brown_next
        self.harvest_last = _frozen(self.harvest_now)

    def waiting_by_node(self, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Waiting task ids (``w``, ascending, when the caller has them) sorted by (node,
        deadline, id) and per-node offsets (n+1)."""
        if w is None:
            w = self.with_status(WAITING)
        w = w[np.lexsort((self.tasks.deadline_s[w], self.node[w]))]    # stable: ties by id
        return w, self.node[w].searchsorted(self._node_bounds)

    def battery_view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sendable, headroom, budget) in Wh for this boundary, before any transfer."""
        p = self.p
        sendable = np.maximum(self.stored - p.min_wh, 0.0) * self.up
        headroom = np.maximum(np.minimum(p.capacity_wh - self.stored, self.charge_cap_wh), 0.0) * self.alive
        return sendable, headroom, self.available_wh(self.stored)

    def available_wh(self, stored: np.ndarray) -> np.ndarray:
        """Energy the bus may draw from the battery this epoch (after self-discharge)."""
        p = self.p
        s1 = stored - self.self_discharge_wh(stored)
        return np.minimum(np.maximum(s1 - p.min_wh, 0.0) * p.eta_d, self.discharge_cap_wh) * self.up

    def self_discharge_wh(self, stored: np.ndarray) -> np.ndarray:
        return stored * self.sd_share

    def observe(self, k: int, t0: float) -> Observation:
        lo = self.open_lo
        st = self.status[lo:self.next_pending]          # one scan for waiting and running
        w, ptr = self.waiting_by_node((st == WAITING).nonzero()[0] + lo)
        qlen = ptr[1:] - ptr[:-1]
        slack = np.full(self.n, np.inf)
        if len(w):
            has = (qlen > 0).nonzero()[0]
            slack[has] = self.tasks.deadline_s[w[ptr[has]]] - t0
            work = np.bincount(self.node[w], self.tasks.work_s[w], self.n)
        else:
            work = np.zeros(self.n)
        run = (st == RUNNING).nonzero()[0] + lo
        busy = (np.bincount(self.node[run], np.maximum(self.finish_s[run] - t0, 0.0), self.n)
                / self._servers_1 if len(run) else np.zeros(self.n))
        sendable, headroom, budget = self.battery_view()
        fresh = {"sendable_wh": sendable, "headroom_wh": headroom, "budget_wh": budget,
                 "idle_need_wh": self.idle_wh * self.up, "harvest_clear_wh": self.harvest.clear_wh(k),
                 "queue_len": qlen, "queue_work_s": work, "busy_s": busy,
                 "slack_s": slack, "waiting_ids": w, "waiting_ptr": ptr}
        for a in fresh.values():          # made for this observation alone: no view needed
            a.setflags(write=False)
        return Observation(
            epoch=k, time_s=t0, stored_wh=self.stored, up=self.up, failed=self.failed,
            harvest_last_wh=self.harvest_last, arrivals_last=self.arrivals_last,
            network=self.net_view, **fresh, **self._static_view)

    # ------------------------------------------------------------------------ decisions
    def apply(self, d: Decision, obs: Observation, t0: float, engine) -> dict:
        """Validate and carry out a decision. Returns the flow records of this epoch."""
        self.sent = self.received = self.tx_wh = self.zeros
        if _is_empty(d):       # nothing to check or move (the common case in long runs)
            self.avail_now = self.available_wh(self.stored)
            return {"energy": _NO_ENERGY, "tasks": _NO_TASKS, "audit": d.audit}
        d = normalise(d)
        validate(d, obs, tuple(self.names))
        flows = {"energy": self._apply_energy(d, obs), "tasks": self._apply_tasks(d, obs, t0, engine)}
        avail = self.avail_now = self.available_wh(self.stored)
        j = first_true(self.tx_wh > avail * (1 + 1e-9) + 1e-12)
        if j >= 0:
            raise DecisionError(f"node {self.names[j]} needs {self.tx_wh[j]:.6g} Wh to transmit its "
                                f"offloaded tasks but can draw only {avail[j]:.6g} Wh this epoch")
        flows["audit"] = d.audit
        return flows

    def _apply_energy(self, d: Decision, obs: Observation) -> dict:
        if not len(d.energy_wh):
            return {"src": d.energy_src, "dst": d.energy_dst, "wh": d.energy_wh, "delivered": d.energy_wh}
        routes = [self.net.energy_route(s, t)
                  for s, t in zip(d.energy_src.tolist(), d.energy_dst.tolist())]
        eff = np.array([r[1] for r in routes])
        i = first_true(eff <= 0)
        if i >= 0:
            raise DecisionError(f"energy transfer {i}: no path from {self.names[d.energy_src[i]]} "
                                f"to {self.names[d.energy_dst[i]]} over links that are up")
        # no link can be over its limit when all transfers together fit the smallest: at the
        # sizes of a MARL step, summing loads link by link costs more than the rest of apply
        if sum(d.energy_wh.tolist()) > self.link_cap_min_wh:
            on, amount = [], []
            for (e, _), wh in zip(routes, d.energy_wh.tolist()):
                on += e
                amount += [wh] * len(e)
            load = np.bincount(np.array(on, np.int64), np.array(amount), len(self.links))
            cap = self.link_cap_wh
            e = first_true(load > cap * (1 + 1e-9))
            if e >= 0:
                raise DecisionError(f"link {self.names[self.links.u[e]]}-{self.names[self.links.v[e]]} "
                                    f"would carry {load[e]:.6g} Wh but its power limit allows "
                                    f"{cap[e]:.6g} Wh per epoch")
        delivered = d.energy_wh * eff
        sent = np.bincount(d.energy_src, d.energy_wh, self.n)
        recv = np.bincount(d.energy_dst, delivered, self.n)
        room = np.minimum(self.p.capacity_wh - (self.stored - sent), self.charge_cap_wh)
        j = first_true(recv > room * (1 + 1e-9) + 1e-12)
        if j >= 0:
            raise DecisionError(f"node {self.names[j]} would receive {recv[j]:.6g} Wh but has room "
                                f"for {room[j]:.6g} Wh (capacity and charge limit)")
        self.stored = _frozen(self.stored - sent + recv)
        self.sent, self.received = sent, recv
        return {"src": d.energy_src, "dst": d.energy_dst, "wh": d.energy_wh, "delivered": delivered}

    def _apply_tasks(self, d: Decision, obs: Observation, t0: float, engine) -> dict:
        moved: list[np.ndarray] = []
        taken: dict[int, int] = {}      # tasks already taken from the front of each queue
        tx = np.zeros(self.n)
        for r, (s, t, c) in enumerate(zip(d.task_src.tolist(), d.task_dst.tolist(), d.task_count.tolist())):
            if d.task_ids is not None:
                ids = d.task_ids[r]
            else:
                lo = int(obs.waiting_ptr[s]) + taken.get(s, 0)
                ids = obs.waiting_ids[lo:lo + c]
                taken[s] = taken.get(s, 0) + c
            try:
                lat, s_per_kb, wh_per_kb = self.net.task_route(s, t)
            except KeyError:
                raise DecisionError(f"task route {r}: no path from {self.names[s]} to {self.names[t]} "
                                    "over links that are up") from None
            kb = self.tasks.data_kb[ids]
            self.node[ids] = t
            self.arrive_s[ids] = (t0 + lat) + kb * s_per_kb
            tx[s] += float((kb * wh_per_kb).sum())
            moved.append(ids)
        ids = np.concatenate(moved) if len(moved) > 1 else moved[0] if moved else np.zeros(0, np.int64)
        self.status[ids] = TRANSIT
        self.offloads[ids] += 1
        self.tx_wh = tx
        # routes by count take disjoint slices of each queue; given ids may repeat
        if d.task_ids is not None and len(ids) != len(np.unique(ids)):
            raise DecisionError("a task was routed twice in one epoch")
        engine.remove(ids)
        self.transit.extend(ids.tolist())
        return {"src": d.task_src, "dst": d.task_dst, "count": d.task_count}

    def arrivals(self, t1: float) -> np.ndarray:
        """Ids of tasks reaching a queue in this epoch, sorted by (arrival time, id)."""
        lo = self.next_pending
        hi = int(self.tasks.gen_s.searchsorted(t1))
        self.next_pending = hi
        ids = np.arange(lo, hi)          # new tasks: in (generation time, id) order already
        if self.transit:
            tr = np.asarray(self.transit, np.int64)
            soon = self.arrive_s[tr] < t1
            if soon.any():
                self.transit = tr[~soon].tolist()
                ids = np.concatenate([ids, tr[soon]])
                ids = ids[np.lexsort((ids, self.arrive_s[ids]))]
        self.arrivals_last = _frozen(np.bincount(self.node[ids], minlength=self.n))
        return ids
