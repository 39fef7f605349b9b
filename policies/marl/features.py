"""Observations of the MARL env: one flat feature vector per node, and the global state.

Every feature is a dimensionless ratio clipped to a documented range, computed with numpy for all
nodes at once from the simulator's ``Observation``, the static ``WorldInfo`` and the allocator's
last shadow prices, and nothing else: a trained policy deployed as a Controller sees exactly the
features it was trained on. The table is in docs/marl.md.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.sparse import csr_matrix

from otmarl.simulator.control import Observation, WorldInfo

#: (name, low, high) of each observation feature, in order.
FEATURES: tuple[tuple[str, float, float], ...] = (
    ("soc", 0, 1),             # stored / capacity
    ("up", 0, 1),              # serving this epoch
    ("failed", 0, 1),          # down by a fault
    ("sendable", 0, 1),        # sendable / capacity
    ("headroom", 0, 1),        # headroom / capacity
    ("budget", 0, 10),         # battery budget / per-epoch full load (idle + all servers busy)
    ("harvest_last", 0, 10),   # last epoch's harvest / full load
    ("harvest_clear", 0, 10),  # clear-sky harvest of this epoch / full load
    ("queue", 0, 1),           # waiting tasks / queue capacity
    ("backlog", 0, 10),        # waiting work in epochs of the node's servers
    ("busy", 0, 1),            # remaining service of running tasks / epoch
    ("arrivals", 0, 10),       # last epoch's arrivals' work / the node's capacity per epoch
    ("slack", 0, 1),           # earliest deadline slack / (10 epochs); 1 when nothing waits
    ("tod_sin", -1, 1),        # time of day
    ("tod_cos", -1, 1),
    ("progress", 0, 1),        # epoch / epochs in the run
    ("nbr_soc", 0, 1),         # mean soc of graph neighbours
    ("nbr_queue", 0, 1),       # mean queue fill of graph neighbours
    ("nbr_up", 0, 1),          # share of graph neighbours up
    ("energy_price", -10, 10),  # the allocator's last dual of the node's energy (0 if none)
    ("task_price", -10, 10),    # ... and of its compute
    # what the node is (static): absolute size against the scenario's mean node
    ("cap_rel", 0, 10),        # battery capacity / mean capacity over the nodes
    ("load_rel", 0, 10),       # full load / mean full load
    ("compute_rel", 0, 10),    # servers x speed / mean
    ("degree", 0, 1),          # graph degree / largest degree
    # global context (the same for every node)
    ("g_soc", 0, 1),           # total stored / total capacity
    ("g_soc_min", 0, 1),       # lowest soc
    ("g_up", 0, 1),            # share of nodes up
    ("g_queue", 0, 1),         # mean queue fill
    ("g_backlog", 0, 10),      # mean backlog
    ("g_harvest", 0, 10),      # total last harvest / total full load
    ("g_clear", 0, 10),        # total clear-sky harvest of this epoch / total full load
    ("g_slack", 0, 1),         # lowest slack
)
NAMES = tuple(f[0] for f in FEATURES)
LOW = np.array([f[1] for f in FEATURES], np.float32)
HIGH = np.array([f[2] for f in FEATURES], np.float32)
COL = {name: i for i, name in enumerate(NAMES)}
#: per-node columns of the global state (then tod_sin, tod_cos, progress once)
STATE_NODE = ("soc", "up", "harvest_last", "harvest_clear", "queue", "backlog", "slack",
              "energy_price", "task_price")
STATE_GLOBAL = ("tod_sin", "tod_cos", "progress")
#: features whose distribution moves by construction (clock), left out of drift detection
CLOCK = ("tod_sin", "tod_cos", "progress")
#: static features (set once per world) and global means: (feature, source, weight)
STATIC = ("cap_rel", "load_rel", "compute_rel", "degree")
GLOBAL_MEAN = (("g_soc", "soc", "capacity"), ("g_up", "up", "one"), ("g_queue", "queue", "one"),
               ("g_backlog", "backlog", "one"), ("g_harvest", "harvest_last", "full_load"),
               ("g_clear", "harvest_clear", "full_load"))
GLOBAL_MIN = (("g_soc_min", "soc"), ("g_slack", "slack"))


def neighbours(info: WorldInfo) -> tuple[list[np.ndarray], np.ndarray]:
    """Sorted graph neighbours of every node, and the link index of each (node, neighbour) pair
    as a padded (n, max degree) array (-1 where a node has fewer neighbours)."""
    n = info.n_nodes
    u, v = np.asarray(info.link_u, np.int64), np.asarray(info.link_v, np.int64)
    src, dst = np.concatenate([u, v]), np.concatenate([v, u])
    link = np.concatenate([np.arange(len(u)), np.arange(len(u))])
    order = np.lexsort((dst, src))
    src, dst, link = src[order], dst[order], link[order]
    ptr = np.searchsorted(src, np.arange(n + 1))
    nbrs = [dst[ptr[i]:ptr[i + 1]] for i in range(n)]
    width = max((len(x) for x in nbrs), default=0)
    links = np.full((n, max(width, 1)), -1, np.int64)
    for i in range(n):
        links[i, :ptr[i + 1] - ptr[i]] = link[ptr[i]:ptr[i + 1]]
    return nbrs, links


class FeatureBuilder:
    """Builds the (n, len(FEATURES)) float32 observation array and the global state."""

    def __init__(self, info: WorldInfo):
        self.info, self.tod_offset_s = info, float(info.start_s_of_day)
        n, dt = info.n_nodes, info.dt_s
        full_w = info.idle_power_w + info.active_power_w * info.servers
        self.full_load_wh = np.where(full_w > 0, full_w * dt / 3600.0, info.capacity_wh)
        self.inv_cap = 1.0 / info.capacity_wh
        self.inv_qcap = 1.0 / np.maximum(info.queue_capacity, 1)
        self.inv_capacity_s = 1.0 / (info.speed * info.servers * dt)   # work-s per epoch
        self.mean_work_s = max(info.mean_task_work_s, 1e-9)
        nbrs, _ = neighbours(info)
        deg = np.array([len(x) for x in nbrs], float)
        rows = np.repeat(np.arange(n), deg.astype(np.int64))
        cols = np.concatenate(nbrs) if n else np.zeros(0, np.int64)
        w = 1.0 / np.maximum(deg, 1.0)
        # transposed, so that the (3, n) rows of soc, queue fill and up multiply it on the left
        if n <= 512:      # a dense product is faster than scipy's sparse overhead at this size
            self.mean_nbr_t = np.zeros((n, n))
            self.mean_nbr_t[cols, rows] = w[rows]
        else:
            self.mean_nbr_t = csr_matrix((w[rows], (cols, rows)), shape=(n, n))
        self.nbr_of = np.array([COL["soc"], COL["queue"], COL["up"]])
        self.nbr_rows = slice(COL["nbr_soc"], COL["nbr_up"] + 1)
        assert (COL["nbr_queue"], COL["nbr_up"]) == (COL["nbr_soc"] + 1, COL["nbr_soc"] + 2)
        self.dense = isinstance(self.mean_nbr_t, np.ndarray)
        self.inv_full = 1.0 / self.full_load_wh
        self.arrival_work = self.mean_work_s * self.inv_capacity_s
        # observe() copies the raw arrays into rows of ``buf`` and multiplies by ``scale`` once
        # (at a few dozen nodes numpy's per-call cost dominates: one product, not eleven)
        self.buf = np.zeros((len(FEATURES), n))
        self.scale = np.ones((len(FEATURES), n))
        for name, x in (("soc", self.inv_cap), ("sendable", self.inv_cap), ("headroom", self.inv_cap),
                        ("budget", self.inv_full), ("harvest_last", self.inv_full),
                        ("harvest_clear", self.inv_full), ("queue", self.inv_qcap),
                        ("backlog", self.inv_capacity_s), ("busy", 1.0 / dt),
                        ("arrivals", self.arrival_work), ("slack", 0.1 / dt)):
            self.scale[COL[name]] = x
        self.raw_cols = [COL[c] for c in ("soc", "up", "failed", "sendable", "headroom", "budget",
                                          "harvest_last", "harvest_clear", "queue", "backlog",
                                          "busy", "arrivals", "slack", "energy_price", "task_price")]
        self.clock_cols = slice(COL["tod_sin"], COL["progress"] + 1)
        self.low, self.high = LOW[:, None].astype(float), HIGH[:, None].astype(float)
        self.state_cols = np.array([COL[c] for c in STATE_NODE])
        self.global_cols = np.array([COL[c] for c in STATE_GLOBAL])
        self.state_dim = n * len(STATE_NODE) + len(STATE_GLOBAL)
        self._context(deg)

    def _context(self, deg: np.ndarray) -> None:
        """The static rows of ``buf`` (never overwritten) and the weights of the global means."""
        info, n = self.info, self.info.n_nodes

        def rel(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, float)
            return x / max(float(x.mean()), 1e-12)
        static = {"cap_rel": rel(info.capacity_wh), "load_rel": rel(self.full_load_wh),
                  "compute_rel": rel(info.servers * info.speed), "degree": deg / max(deg.max(initial=0), 1.0)}
        for name in STATIC:
            self.buf[COL[name]] = static[name]
        weight = {"one": np.ones(n), "capacity": np.asarray(info.capacity_wh, float),
                  "full_load": self.full_load_wh}
        self.g_rows = np.array([COL[g] for g, _, _ in GLOBAL_MEAN])
        self.g_src = np.array([COL[s] for _, s, _ in GLOBAL_MEAN])
        self.g_w = np.stack([weight[w] / weight[w].sum() for _, _, w in GLOBAL_MEAN])
        self.gmin_rows = np.array([COL[g] for g, _ in GLOBAL_MIN])
        self.gmin_src = np.array([COL[s] for _, s in GLOBAL_MIN])

    def observe(self, obs: Observation, energy_price: np.ndarray, task_price: np.ndarray) -> np.ndarray:
        """The feature array of this epoch (a new array)."""
        angle = 2.0 * np.pi * ((obs.time_s + self.tod_offset_s) % 86400.0) / 86400.0
        raw = (obs.stored_wh, obs.up, obs.failed, obs.sendable_wh, obs.headroom_wh, obs.budget_wh,
               obs.harvest_last_wh, obs.harvest_clear_wh, obs.queue_len, obs.queue_work_s,
               obs.busy_s, obs.arrivals_last, obs.slack_s, energy_price, task_price)
        f = self.buf
        for i, r in zip(self.raw_cols, raw):
            f[i] = r
        f[self.clock_cols] = np.array([math.sin(angle), math.cos(angle),
                                       obs.epoch / max(self.info.n_epochs, 1)])[:, None]
        f *= self.scale          # the ratios (slack past 10 epochs is clipped to 1 below)
        if self.dense:             # neighbour means (before clipping), into rows nbr_soc..nbr_up
            np.dot(f[self.nbr_of], self.mean_nbr_t, out=f[self.nbr_rows])
        else:
            f[self.nbr_rows] = f[self.nbr_of] @ self.mean_nbr_t
        f[self.g_rows] = (f[self.g_src] * self.g_w).sum(1)[:, None]      # global context
        f[self.gmin_rows] = f[self.gmin_src].min(1)[:, None]
        np.clip(f, self.low, self.high, out=f)
        return np.ascontiguousarray(f.T, np.float32)

    def state(self, feats: np.ndarray) -> np.ndarray:
        """The global state for centralised critics: STATE_NODE of every node, then the clock."""
        return np.concatenate([feats[:, self.state_cols].ravel(), feats[0, self.global_cols]])

    def state_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.info.n_nodes
        lo = np.concatenate([np.tile(LOW[self.state_cols], n), LOW[self.global_cols]])
        hi = np.concatenate([np.tile(HIGH[self.state_cols], n), HIGH[self.global_cols]])
        return lo, hi
