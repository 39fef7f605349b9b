"""Task generation: every task of the horizon is drawn up front from the workload stream.

Tasks are numbered in order of generation time (ties by origin node), so a task's id is stable
whatever the engine or the controller.
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


def _poisson_times(rng: np.random.Generator, rate_per_s: float, t0: float, t1: float) -> np.ndarray:
    k = rng.poisson(rate_per_s * (t1 - t0))
    return np.sort(rng.uniform(t0, t1, k))


def _bursty_times(rng: np.random.Generator, a: S.BurstyArrivals, horizon_s: float) -> np.ndarray:
    on_frac = a.mean_on_h / (a.mean_on_h + a.mean_off_h)
    on, t, out = rng.uniform() < on_frac, 0.0, []
    while t < horizon_s:
        mean_h = a.mean_on_h if on else a.mean_off_h
        end = min(t + rng.exponential(mean_h * 3600.0), horizon_s)
        rate = (a.on_rate_per_h if on else a.off_rate_per_h) / 3600.0
        if rate > 0:
            out.append(_poisson_times(rng, rate, t, end))
        t, on = end, not on
    return np.concatenate(out) if out else np.zeros(0)


def _arrival_times(rng: np.random.Generator, a, m: int, horizon_s: float) -> list[np.ndarray]:
    if isinstance(a, S.PoissonArrivals):
        return [_poisson_times(rng, a.rate_per_h / 3600.0, 0.0, horizon_s) for _ in range(m)]
    if isinstance(a, S.BurstyArrivals):
        return [_bursty_times(rng, a, horizon_s) for _ in range(m)]
    df = pd.read_csv(a.file)
    t = df[a.time_column].to_numpy(float) * 3600.0
    node = df[a.node_column].to_numpy(np.int64)
    return [np.sort(t[(node == i) & (t >= 0) & (t < horizon_s)]) for i in range(m)]


def generate(sc: S.Scenario, class_idx: np.ndarray, rng: np.random.Generator) -> TaskTable:
    horizon_s = sc.horizon_h * 3600.0
    parts: list[tuple] = []
    for ci, nc in enumerate(sc.nodes.values()):
        w = nc.workload
        nodes = np.flatnonzero(class_idx == ci)
        if w is None:
            continue
        times = _arrival_times(rng, w.arrival, len(nodes), horizon_s)
        origin = np.concatenate([np.full(len(t), n, np.int64) for n, t in zip(nodes, times)])
        gen = np.concatenate(times) if times else np.zeros(0)
        k = len(gen)
        parts.append((origin, gen, w.work_s.sample(rng, k), w.data_kb.sample(rng, k),
                      gen + w.deadline_s.sample(rng, k), w.priority.sample(rng, k)))
    if not parts:
        z = np.zeros(0)
        return TaskTable(np.zeros(0, np.int64), z, z, z, z, z)
    cols = [np.concatenate(c) for c in zip(*parts)]
    order = np.lexsort((cols[0], cols[1]))
    return TaskTable(*[c[order] for c in cols])
