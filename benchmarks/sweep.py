"""Sweep throughput: runs per minute of a 100-run sweep of edge-offload with a one-hour horizon, on
joblib (2 processes), on a Dask LocalCluster (2 worker processes, 1 thread each) and, as the
reference without any backend, in this process.

    python benchmarks/sweep.py                   # all three
    python benchmarks/sweep.py --backends joblib,dask --runs 40

Each backend is warmed up first (a 2-run sweep: worker processes started, otmarl imported), so the
numbers are steady-state. Per-run overhead, two ways:

* amortised: wall time x workers / runs, minus the median in-worker simulate time: everything a
  run costs beyond simulating (scheduling, pickling, writing the run folder and row, idle workers);
* in-worker: the median of (a run's wall time in its worker - its simulate time): writing the
  Parquet tables, the summary and the row.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

SWEEP = """\
name: bench
base: edge-offload
overrides: {{horizon_h: 1}}
policies: [local, greedy]
seeds: {seeds}
root_seed: 1
grid:
  nodes.edge.battery.capacity_wh: [30, 40, 60, 80, 100]
"""


def timed(sweep_file: Path, out: Path, workers: int, **kw) -> dict:
    from otmarl.sweep import sweep
    t0 = time.perf_counter()
    res = sweep(sweep_file, out, **kw)
    wall = time.perf_counter() - t0
    assert not res.failed, res.failed
    sim = statistics.median(r["simulate_s"] for r in res.rows)
    n = len(res.rows)
    return {"runs": n, "wall_s": wall, "runs_per_min": n / wall * 60, "simulate_s": sim,
            "amortised_overhead_s": wall * workers / n - sim,
            "in_worker_overhead_s": statistics.median(r["wall_s"] - r["simulate_s"] for r in res.rows),
            "workers_seen": len({r["worker"] for r in res.rows})}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="sequential,joblib,dask")
    ap.add_argument("--runs", type=int, default=100, help="a multiple of 10")
    a = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "s.yaml").write_text(SWEEP.format(seeds=a.runs // 10))
        (d / "warm.yaml").write_text(SWEEP.format(seeds=1).replace("[30, 40, 60, 80, 100]", "[50]"))
        for backend in a.backends.split(","):
            if backend == "sequential":
                timed(d / "warm.yaml", d / "w-seq", 1, jobs=1)
                results[backend] = timed(d / "s.yaml", d / "seq", 1, jobs=1)
            elif backend == "joblib":
                timed(d / "warm.yaml", d / "w-jl", 2, jobs=2)
                results[backend] = timed(d / "s.yaml", d / "jl", 2, jobs=2)
            elif backend == "dask":
                from distributed import LocalCluster
                cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
                try:
                    kw = {"backend": "dask", "address": cluster.scheduler_address}
                    timed(d / "warm.yaml", d / "w-dk", 2, **kw)
                    results[backend] = timed(d / "s.yaml", d / "dk", 2, **kw)
                finally:
                    cluster.close()
            else:
                raise SystemExit(f"unknown backend {backend!r}")
    print(f"{'backend':12s}{'runs':>6s}{'wall s':>9s}{'runs/min':>10s}{'simulate s':>12s}"
          f"{'overhead/run s':>16s}{'in-worker s':>13s}{'workers':>9s}")
    for name, r in results.items():
        print(f"{name:12s}{r['runs']:6d}{r['wall_s']:9.1f}{r['runs_per_min']:10.0f}{r['simulate_s']:12.3f}"
              f"{r['amortised_overhead_s']:16.3f}{r['in_worker_overhead_s']:13.3f}{r['workers_seen']:9d}")


if __name__ == "__main__":
    main()
