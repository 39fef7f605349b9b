"""Benchmark: build the reports of the built-in scenarios; print size and build time.

    python benchmarks/report.py --run            # simulate the built-ins first, then report
    python benchmarks/report.py --run --big      # also the 10,000-node sensor-field day

Run folders live under --runs (default runs/bench-report); a missing one is simulated. Build
time is the median of --repeat builds of every format (html, md, csv, json) into a scratch
folder; sizes are those of report.html and of all files written. Targets: sensor-field under 5 s
and under 20 MB, and the 10,000-node day under 20 MB.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

CASES = {
    "microgrid-solar": ("microgrid-solar", []),
    "edge-offload": ("edge-offload", []),
    "sensor-field": ("sensor-field", []),
    "sensor-field-10k": ("sensor-field", ["nodes.sensor.count=10000", "network.topology.radius=0.017"]),
}
BIG = "sensor-field-10k"


def ensure_run(name: str, runs: Path, policy: str, force: bool) -> Path:
    from otmarl.run import run
    scenario, overrides = CASES[name]
    folder = runs / f"{name}-{policy}"
    if force or not (folder / "summary.json").exists():
        t0 = time.perf_counter()
        run(scenario, policy=policy, out=folder, overrides=overrides)
        print(f"simulated {name} ({policy}) in {time.perf_counter() - t0:.1f} s", flush=True)
    return folder


def build(folder: Path, repeat: int) -> tuple[float, float, float, float]:
    """(median build s, metrics s, report.html MB, all files MB) over ``repeat`` fresh builds."""
    from otmarl.analysis import load_run, metrics, report
    times, metric_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeat):
            t0 = time.perf_counter()
            metrics(load_run(folder))
            metric_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            paths = report(folder, out=Path(tmp) / str(k))
            times.append(time.perf_counter() - t0)
        html_mb = paths["html"].stat().st_size / 1e6
        all_mb = sum(p.stat().st_size for p in paths.values()) / 1e6
    return statistics.median(times), statistics.median(metric_times), html_mb, all_mb


def main() -> None:
    from otmarl.analysis import load_run
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="store_true", help="simulate the scenarios again first")
    ap.add_argument("--big", action="store_true", help="include the 10,000-node sensor-field day")
    ap.add_argument("--runs", default="runs/bench-report", help="folder of the run folders")
    ap.add_argument("--policy", default="random", help="controller of the runs (default random)")
    ap.add_argument("--big-policy", default="local",
                    help="controller of the 10,000-node run (default local: the random baseline "
                         "takes many minutes to simulate at that size)")
    ap.add_argument("--repeat", type=int, default=3, help="builds per report (median)")
    a = ap.parse_args()
    names = [n for n in CASES if a.big or n != BIG]
    rows = []
    for name in names:
        folder = ensure_run(name, Path(a.runs), a.big_policy if name == BIG else a.policy, a.run)
        r = load_run(folder)
        rows.append((name, r.n_nodes, r.n_epochs, r.summary["tasks"]["generated"],
                     *build(folder, a.repeat)))
    print(f"\n{'report':18s} {'nodes':>7s} {'epochs':>6s} {'tasks':>9s} {'build s':>8s} "
          f"{'metrics s':>9s} {'html MB':>8s} {'all MB':>7s}")
    for name, n, e, tasks, t, tm, h, al in rows:
        print(f"{name:18s} {n:7d} {e:6d} {tasks:9d} {t:8.2f} {tm:9.2f} {h:8.2f} {al:7.2f}")


if __name__ == "__main__":
    main()
