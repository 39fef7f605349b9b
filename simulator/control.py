"""The control seam: what a controller sees (Observation), what it returns (Decision).

Every decision maker (baselines, the OT allocator, trained MARL policies) implements ``Controller``.
The world validates each Decision and raises ``DecisionError`` naming the offending entry. An
Observation is a read-only snapshot: its arrays have ``writeable=False`` and its ``network`` is a
path-query view, so a controller can read the world but has no handle through which to change it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from otmarl.scenarios.errors import DecisionError

from .network import NetworkView


@dataclass(frozen=True)
class WorldInfo:
    """Static facts about the world, handed to ``Controller.reset``."""

    n_nodes: int
    names: tuple[str, ...]
    node_class: np.ndarray        # int class index per node
    class_names: tuple[str, ...]
    capacity_wh: np.ndarray
    min_wh: np.ndarray            # brownout level
    resume_wh: np.ndarray
    servers: np.ndarray
    queue_capacity: np.ndarray
    speed: np.ndarray
    idle_power_w: np.ndarray
    active_power_w: np.ndarray
    layout: Callable[[], np.ndarray] = field(repr=False, compare=False)   # -> positions
    link_u: np.ndarray
    link_v: np.ndarray
    link_power_limit_w: np.ndarray
    dt_s: float                   # control epoch length
    n_epochs: int
    mean_task_work_s: float
    params: dict[str, Any] = field(default_factory=dict)  # controller.params of the scenario
    start_s_of_day: float = 0.0   # local clock time at t = 0, seconds since midnight
    charge_efficiency: np.ndarray | None = None      # battery eta_c per node
    discharge_efficiency: np.ndarray | None = None   # battery eta_d per node
    max_charge_w: np.ndarray | None = None
    harvest_forecast: Callable[[int, int], np.ndarray] | None = field(default=None, repr=False,
                                                                      compare=False)
    """``harvest_forecast(k, h)``: expected harvest (Wh) of epochs k .. k+h-1 (cut at the horizon)
    x nodes, from the scenario alone (no weather draw): see ``HarvestModel.forecast``."""
    scenario: Any = field(default=None, repr=False, compare=False)   # the run's Scenario
    seed: int | None = None       # the run's root seed (with the scenario: what mpc's perfect
                                  # forecast rebuilds the world's harvest from)

    @cached_property
    def min_deadline_s(self) -> np.ndarray:
        """Per node, the shortest relative deadline its class's workload can draw (s; inf for a
        class without a workload, or when the scenario is not known)."""
        if self.scenario is None:
            return np.full(self.n_nodes, np.inf)
        nodes = self.scenario.nodes
        lo = [nodes[c].workload.deadline_s.support()[0] if nodes[c].workload is not None else np.inf
              for c in self.class_names]
        return np.asarray(lo, float)[self.node_class]

    @cached_property
    def positions(self) -> np.ndarray:
        """Node positions (n, 2) in [0, 1]^2 for maps and geometric decompositions (a graph
        without coordinates gets a spring layout, computed when first asked for)."""
        return self.layout()


def read_only(a: np.ndarray) -> np.ndarray:
    """A view of ``a`` that refuses writes (``a`` itself stays writable for its owner)."""
    v = a.view()
    v.setflags(write=False)
    return v


@dataclass
class Observation:
    """The world at the start of a control epoch, as read-only arrays over nodes."""

    epoch: int
    time_s: float
    stored_wh: np.ndarray
    capacity_wh: np.ndarray
    up: np.ndarray                # serving this epoch (not failed, not browned out)
    failed: np.ndarray            # down by a fault (cannot send, receive or relay)
    sendable_wh: np.ndarray       # energy a node may send now (stored above its brownout level)
    headroom_wh: np.ndarray       # energy a node may receive now (capacity and charge limit)
    budget_wh: np.ndarray         # energy the node can draw from its battery this epoch
    idle_need_wh: np.ndarray      # idle energy the node needs this epoch
    harvest_last_wh: np.ndarray   # harvest in the previous epoch (persistence forecast)
    harvest_clear_wh: np.ndarray  # clear-sky (noise-free) harvest expected this epoch
    arrivals_last: np.ndarray     # tasks that reached each node's queue in the previous epoch
    queue_len: np.ndarray         # waiting tasks
    queue_work_s: np.ndarray      # waiting work at speed 1, s
    busy_s: np.ndarray            # remaining service of running tasks, per server, s
    slack_s: np.ndarray           # earliest waiting deadline minus now (inf when none)
    network: NetworkView          # paths: network.energy_efficiency(...), network.task_route(...)
    waiting_ids: np.ndarray       # waiting task ids sorted by (node, deadline, id)
    waiting_ptr: np.ndarray       # node i's waiting tasks: waiting_ids[ptr[i]:ptr[i+1]]
    task_deadline_s: np.ndarray   # absolute deadline per task id
    task_data_kb: np.ndarray
    task_work_s: np.ndarray

    def waiting_of(self, node: int) -> np.ndarray:
        """Waiting task ids at ``node``, most urgent (earliest deadline) first."""
        return self.waiting_ids[self.waiting_ptr[node]:self.waiting_ptr[node + 1]]


@dataclass
class Decision:
    """Energy transfers and task routes for one epoch (sparse).

    Energy: ``energy_src[i]`` sends ``energy_wh[i]`` (measured at the sender) to ``energy_dst[i]``;
    ``energy_wh[i] * path efficiency`` arrives. Tasks: ``task_src[i]`` sends ``task_count[i]`` of its
    waiting tasks (most urgent first) to ``task_dst[i]``, or the ids in ``task_ids`` when given.
    ``audit`` carries extra per-row columns for flows.parquet (e.g. solver, status, cost).
    """

    energy_src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    energy_dst: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    energy_wh: np.ndarray = field(default_factory=lambda: np.zeros(0))
    task_src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    task_dst: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    task_count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    task_ids: list[np.ndarray] | None = None
    audit: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Controller(Protocol):
    name: str

    def reset(self, world_info: WorldInfo, rng: np.random.Generator) -> None: ...

    def decide(self, obs: Observation) -> Decision: ...


# ------------------------------------------------------------------------------ validation
def first_true(mask: np.ndarray) -> int:
    """Index of the first True in a 1-D mask, or -1."""
    hit = mask.nonzero()[0]
    return int(hit[0]) if len(hit) else -1


def _arr(x, dtype) -> np.ndarray:
    return np.asarray(x, dtype=dtype).reshape(-1)


def normalise(d: Decision) -> Decision:
    """Arrays of the right dtype; zero-amount rows dropped."""
    es, ed, ew = _arr(d.energy_src, np.int64), _arr(d.energy_dst, np.int64), _arr(d.energy_wh, float)
    ts, td, tc = _arr(d.task_src, np.int64), _arr(d.task_dst, np.int64), _arr(d.task_count, np.int64)
    if not (len(es) == len(ed) == len(ew)) or not (len(ts) == len(td) == len(tc)):
        raise DecisionError("decision arrays of one kind must have equal lengths: "
                            f"energy {len(es)}/{len(ed)}/{len(ew)}, tasks {len(ts)}/{len(td)}/{len(tc)}")
    ids = d.task_ids
    if ids is not None:
        ids = [np.asarray(x, np.int64).reshape(-1) for x in ids]
        if len(ids) != len(ts):
            raise DecisionError(f"task_ids has {len(ids)} entries for {len(ts)} routes")
        tc = np.array([len(x) for x in ids], np.int64)
    keep_e = ew != 0
    keep_t = tc != 0
    return Decision(es[keep_e], ed[keep_e], ew[keep_e], ts[keep_t], td[keep_t], tc[keep_t],
                    None if ids is None else [x for x, k in zip(ids, keep_t) if k], d.audit)


def validate(d: Decision, obs: Observation, names: tuple[str, ...], tol: float = 1e-9) -> None:
    """Raise DecisionError for the first impossible entry, naming it."""
    n = len(obs.stored_wh)
    every = np.concatenate((d.energy_src, d.energy_dst, d.task_src, d.task_dst))
    if ((every < 0) | (every >= n)).any():
        for what, arr in (("energy_src", d.energy_src), ("energy_dst", d.energy_dst),
                          ("task_src", d.task_src), ("task_dst", d.task_dst)):
            i = first_true((arr < 0) | (arr >= n))
            if i >= 0:
                raise DecisionError(f"{what}[{i}]={arr[i]} is not a node index (0..{n - 1})")
    _validate_energy(d, obs, names, tol)
    _validate_tasks(d, obs, names)


def _validate_energy(d: Decision, obs: Observation, names, tol: float) -> None:
    if not len(d.energy_wh):
        return
    i = first_true(~np.isfinite(d.energy_wh) | (d.energy_wh < 0) | (d.energy_src == d.energy_dst))
    if i >= 0:
        raise DecisionError(f"energy transfer {i}: {names[d.energy_src[i]]} -> {names[d.energy_dst[i]]} "
                            f"of {d.energy_wh[i]!r} Wh must be finite, > 0 and between two nodes")
    i = first_true(~obs.up[d.energy_src] | obs.failed[d.energy_dst])
    if i >= 0:
        raise DecisionError(f"energy transfer {i}: {names[d.energy_src[i]]} -> {names[d.energy_dst[i]]}: "
                            "the sender must be up and the receiver not failed")
    n = len(obs.stored_wh)
    sent = np.bincount(d.energy_src, d.energy_wh, n)
    j = first_true(sent > obs.sendable_wh * (1 + tol) + tol)
    if j >= 0:
        raise DecisionError(f"node {names[j]} sends {sent[j]:.6g} Wh but may send at most "
                            f"{obs.sendable_wh[j]:.6g} Wh this epoch")


def _validate_tasks(d: Decision, obs: Observation, names) -> None:
    if not len(d.task_count):
        return
    n = len(obs.stored_wh)
    i = first_true((d.task_count < 0) | (d.task_src == d.task_dst))
    if i >= 0:
        raise DecisionError(f"task route {i}: {names[d.task_src[i]]} -> {names[d.task_dst[i]]} "
                            f"count {d.task_count[i]} must be > 0 and between two nodes")
    i = first_true(~obs.up[d.task_src] | ~obs.up[d.task_dst])
    if i >= 0:
        raise DecisionError(f"task route {i}: {names[d.task_src[i]]} -> {names[d.task_dst[i]]}: "
                            "both nodes must be up")
    asked = np.bincount(d.task_src, d.task_count, n)
    j = first_true(asked > obs.queue_len)
    if j >= 0:
        raise DecisionError(f"node {names[j]} routes {asked[j]} tasks but has {obs.queue_len[j]} waiting")
    if d.task_ids is not None:
        for i, ids in enumerate(d.task_ids):
            s = d.task_src[i]
            here = obs.waiting_ids[obs.waiting_ptr[s]:obs.waiting_ptr[s + 1]]
            if not np.isin(ids, here).all() or len(np.unique(ids)) != len(ids):
                raise DecisionError(f"task route {i}: task ids must be distinct tasks waiting at "
                                    f"{names[d.task_src[i]]}")
