"""What a run of a scenario will hold: expected tasks and a memory estimate, so that a run too
large for this machine is refused before it starts rather than dying of MemoryError midway.

The estimate is deliberately coarse and on the high side. Its coefficients come from measured
peak memory of sensor-field runs (policy local, one day): 1,000 nodes and 150k tasks took 359 MB;
10,000 nodes and 1.5M tasks 844 MB; 100,000 nodes and 15.1M tasks 6.3 GB. The model below gives
375 MB, 1.05 GB and 7.7 GB for them.
"""
from __future__ import annotations

import csv
import os

from . import schema as S

BASE_BYTES = 300e6           # interpreter, numpy, pandas, pvlib, ...
PER_TASK_BYTES = 400.0       # the task table, its lifecycle columns and tasks.parquet in memory
PER_NODE_EPOCH_BYTES = 100.0  # the per-node time series
PER_NODE_BYTES = 5e3         # graph, paths, node parameters


def expected_tasks(sc: S.Scenario) -> float:
    """Expected number of tasks generated over the horizon (a trace counts its rows)."""
    total = 0.0
    for nc in sc.nodes.values():
        a = nc.workload.arrival if nc.workload is not None else None
        if isinstance(a, S.PoissonArrivals):
            total += nc.count * a.rate_per_h * sc.horizon_h
        elif isinstance(a, S.BurstyArrivals):
            on = a.mean_on_h / (a.mean_on_h + a.mean_off_h)
            total += nc.count * (on * a.on_rate_per_h + (1 - on) * a.off_rate_per_h) * sc.horizon_h
        elif isinstance(a, S.TraceArrivals):
            total += _rows(a.file)
    return total


def _rows(path: str) -> int:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return max(sum(1 for _ in csv.reader(f)) - 1, 0)
    except OSError:
        return 0


def memory_estimate_bytes(sc: S.Scenario) -> float:
    """Peak memory a run of ``sc`` is expected to need (an estimate on the high side)."""
    n, epochs = sc.n_nodes, sc.n_epochs
    return (BASE_BYTES + PER_TASK_BYTES * expected_tasks(sc) + PER_NODE_EPOCH_BYTES * n * epochs
            + PER_NODE_BYTES * n)


def available_memory_bytes() -> float | None:
    """Memory available to a new run on this machine (Linux: MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_problem(sc: S.Scenario, available: float | None = None) -> str | None:
    """Why a run of ``sc`` would not fit in memory, with the estimate and ways out; or None."""
    available = available_memory_bytes() if available is None else available
    need = memory_estimate_bytes(sc)
    if available is None or need <= available:
        return None
    return (f"a run of {sc.n_nodes:,} nodes x {sc.n_epochs:,} epochs with about "
            f"{expected_tasks(sc):,.0f} tasks needs about {_gb(need)} of memory, and this machine "
            f"has {_gb(available)} available; shorten horizon_h, or lower the node counts or the "
            "arrival rates")


def _gb(x: float) -> str:
    return f"{x / 1e9:,.1f} GB" if x >= 1e9 else f"{x / 1e6:,.0f} MB"
