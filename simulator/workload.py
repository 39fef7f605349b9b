"""Task generation: every task of the horizon is drawn up front from the workload stream.

Tasks are numbered in order of generation time (ties by origin node), so a task's id is stable
whatever the engine or the controller. Arrivals are drawn for all nodes of a class at once (a
Poisson count per segment, then uniform times within it; bursty on/off segments one round of all
nodes at a time), so the cost grows with the number of tasks, not with Python calls per node.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from otmarl.scenarios import schema as S


@dataclass
class TaskTable:
    """Static attributes of every generated task, one entry per task id."""

    origin: np.ndarray       # int64 node index
    gen_s: np.ndarray        # generation time, s since start
    work_s: np.ndarray       # work at speed 1, s
    data_kb: np.ndarray      # data moved when offloaded, kB
    deadline_s: np.ndarray   # absolute deadline, s since start
    priority: np.ndarray     # float

    def __len__(self) -> int:
        return len(self.origin)


def _in_segments(rng: np.random.Generator, node: np.ndarray, t0: np.ndarray, t1: np.ndarray,
                 rate_per_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poisson arrivals in segments [t0, t1) of the given nodes at the given rates, all at once:
    a count per segment, then the times uniform within it. Returns (node, time) in segment order
    (``generate`` sorts all tasks by time once)."""
    k = rng.poisson(rate_per_s * (t1 - t0))
    seg = np.repeat(np.arange(len(k)), k)
    t = rng.uniform(t0[seg], t1[seg]) if len(seg) else np.zeros(0)
    return node[seg], t


def _bursty_segments(rng: np.random.Generator, a: S.BurstyArrivals, m: int,
                     horizon_s: float) -> tuple[np.ndarray, ...]:
    """The on/off segments of ``m`` independent two-state processes over the horizon, drawn one
    round (one segment of every node still before the horizon) at a time: (node, start, end,
    rate per second) of every segment with a positive rate."""
    on = rng.uniform(size=m) < a.mean_on_h / (a.mean_on_h + a.mean_off_h)
    t, alive = np.zeros(m), np.arange(m)
    parts = []
    while len(alive):
        mean_s = np.where(on[alive], a.mean_on_h, a.mean_off_h) * 3600.0
        end = np.minimum(t[alive] + rng.exponential(mean_s), horizon_s)
        rate = np.where(on[alive], a.on_rate_per_h, a.off_rate_per_h) / 3600.0
        parts.append((alive, t[alive], end, rate))
        t[alive], on[alive] = end, ~on[alive]
        alive = alive[end < horizon_s]
    node, t0, t1, rate = (np.concatenate(c) for c in zip(*parts)) if parts else (np.zeros(0),) * 4
    keep = rate > 0
    return node[keep].astype(np.int64), t0[keep], t1[keep], rate[keep]


def _arrival_times(rng: np.random.Generator, a, m: int, horizon_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Arrivals of ``m`` nodes of one class: (node 0..m-1, time)."""
    if isinstance(a, S.PoissonArrivals):
        idx = np.arange(m)
        return _in_segments(rng, idx, np.zeros(m), np.full(m, horizon_s), np.full(m, a.rate_per_h / 3600.0))
    if isinstance(a, S.BurstyArrivals):
        return _in_segments(rng, *_bursty_segments(rng, a, m, horizon_s))
    df = pd.read_csv(a.file)
    t = df[a.time_column].to_numpy(float) * 3600.0
    node = df[a.node_column].to_numpy(np.int64)
    keep = (node >= 0) & (node < m) & (t >= 0) & (t < horizon_s)
    node, t = node[keep], t[keep]
    order = np.lexsort((t, node))
    return node[order], t[order]


def generate(sc: S.Scenario, class_idx: np.ndarray, rng: np.random.Generator) -> TaskTable:
    horizon_s = sc.horizon_h * 3600.0
    parts: list[tuple] = []
    for ci, nc in enumerate(sc.nodes.values()):
        w = nc.workload
        nodes = np.flatnonzero(class_idx == ci)
        if w is None:
            continue
        local, gen = _arrival_times(rng, w.arrival, len(nodes), horizon_s)
        origin = nodes[local].astype(np.int64)
        k = len(gen)
        parts.append((origin, gen, w.work_s.sample(rng, k), w.data_kb.sample(rng, k),
                      gen + w.deadline_s.sample(rng, k), w.priority.sample(rng, k)))
    if not parts:
        z = np.zeros(0)
        return TaskTable(np.zeros(0, np.int64), z, z, z, z, z)
    cols = [np.concatenate(c) for c in zip(*parts)]
    del parts
    order = _time_order(cols[1], cols[0])
    # one column at a time, each dropped once reordered: at 15 million tasks a column is 120 MB
    return TaskTable(*[cols.pop(0)[order] for _ in range(len(cols))])


def _time_order(gen_s: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """The order of tasks by generation time, ties by origin node (then by position): one sort by
    time (distinct times leave it one answer), and the two-key sort only when two times are equal
    (trace workloads)."""
    order = np.argsort(gen_s)
    g = gen_s[order]
    if np.any(g[1:] == g[:-1]):
        return np.lexsort((origin, gen_s))
    return order
