"""Benchmark: build the reports of the built-in scenarios; print build time, peak memory and size.

    python benchmarks/report.py --run            # simulate the built-ins first, then report
    python benchmarks/report.py --run --big      # also the 10,000-node sensor-field day
    python benchmarks/report.py --only sensor-field-100k --processes 1 --repeat 1   # 100,000 nodes
    python benchmarks/report.py --against main   # and the same builds by the code of a git ref

Run folders live under --runs (default runs/bench-report); a missing one is simulated. Every
build runs in a fresh Python process (``--worker``): the modules a report needs are imported
first, then one build's peak memory is measured (peak MB: the process's peak resident set size
minus its size before the build, the lazy imports of a first build included), then --repeat
more builds give the median build time (every format: html, md, csv, json, into a scratch
folder), then one more build's peak of traced allocations (heap MB: Python objects and numpy
arrays) and the peak of Arrow's buffers (Arrow MB, the tables read from Parquet: counted by a
proxy of Arrow's memory pool); data MB is their sum, the memory the build's data takes (peak MB
also counts the code and caches a first build loads). Sizes are those of report.html and of
all files written.

With ``--against REF`` the code of that git ref (``git archive``, laid out as the installed
package) builds the same run folders in the same run, its processes alternating with this
tree's, and the table gains its median and the ratio. Targets: sensor-field in at most 2 s and
10 MB (data MB); the 10,000-node day under 20 MB of files; the 100,000-node day (written with --tables
no-tasks) in at most 30 s.
"""
from __future__ import annotations

import argparse
import configparser
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

CASES = {   # name: scenario, overrides, --tables of the run
    "microgrid-solar": ("microgrid-solar", [], "all"),
    "edge-offload": ("edge-offload", [], "all"),
    "sensor-field": ("sensor-field", [], "all"),
    "sensor-field-10k": ("sensor-field", ["nodes.sensor.count=10000", "network.topology.radius=0.017"], "all"),
    # the same density at 100,000 nodes, written without tasks.parquet (minutes to simulate)
    "sensor-field-100k": ("sensor-field", ["nodes.sensor.count=100000", "network.topology.radius=0.0054"],
                          "no-tasks"),
}
BIG = "sensor-field-10k"
HUGE = "sensor-field-100k"
ROOT = Path(__file__).resolve().parents[1]


def ensure_run(name: str, runs: Path, policy: str, force: bool) -> Path:
    from otmarl.run import run
    scenario, overrides, tables = CASES[name]
    folder = runs / f"{name}-{policy}"
    if force or not (folder / "summary.json").exists():
        t0 = time.perf_counter()
        run(scenario, policy=policy, out=folder, overrides=overrides, tables=tables)
        print(f"simulated {name} ({policy}) in {time.perf_counter() - t0:.1f} s", flush=True)
    return folder


# ------------------------------------------------------------------- one process, one folder
def _status_mb(field: str) -> float:
    """A memory line of /proc/self/status in MB: VmRSS (now) or VmHWM (the peak). Unlike
    ``ru_maxrss``, which a process inherits across exec from its parent (here: a parent that may
    have simulated a 10,000-node run), VmHWM belongs to this process's memory alone."""
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith(field + ":"))
    return int(line.split()[1]) / 1e3


def worker(folder: Path, repeat: int) -> dict:
    """In this process: one build's peak memory above the process before it, then the median
    time of ``repeat`` builds, and the sizes of the files written."""
    import tracemalloc

    import otmarl
    from otmarl.analysis import report
    import scipy.stats  # noqa: F401  (the CI's t quantile, imported lazily)
    with tempfile.TemporaryDirectory() as tmp:
        before = _status_mb("VmRSS")
        paths = report(folder, out=Path(tmp) / "first")
        peak = _status_mb("VmHWM") - before
        times = []
        for k in range(repeat):
            t0 = time.perf_counter()
            paths = report(folder, out=Path(tmp) / str(k))
            times.append(time.perf_counter() - t0)
        sizes = {"html_mb": paths["html"].stat().st_size / 1e6,
                 "all_mb": sum(p.stat().st_size for p in paths.values()) / 1e6}
        # last: tracing slows the build down. Arrow's buffers (the tables read from Parquet) are
        # counted by a pool of their own that passes every allocation on to the default one
        import pyarrow as pa
        default = pa.default_memory_pool()
        pool = pa.proxy_memory_pool(default)
        pa.set_memory_pool(pool)
        tracemalloc.start()
        report(folder, out=Path(tmp) / "traced")
        heap = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        pa.set_memory_pool(default)
        arrow = pool.max_memory() / 1e6
    return {"build_s": statistics.median(times), "peak_mb": peak, "heap_mb": heap, "arrow_mb": arrow,
            "data_mb": heap + arrow, "tree": otmarl.__file__, **sizes}


def measure(folder: Path, repeat: int, pythonpath: str | None) -> dict:
    """``worker`` in a fresh process: this tree's code, or the one laid out at ``pythonpath``."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(folder),
                          "--repeat", str(repeat)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def checkout(ref: str, dest: Path) -> Path:
    """The code of git ``ref`` laid out as the installed package (setup.cfg ``package_dir``:
    ``otmarl.analysis`` is the folder ``analysis/``...); returns the folder for PYTHONPATH."""
    src = dest / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
    tar_path = dest / "ref.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(src, filter="data")
    cfg = configparser.ConfigParser()
    cfg.read(src / "setup.cfg")
    mapping = dict(line.split("=") for line in cfg["options"]["package_dir"].split("\n") if "=" in line)
    view = dest / "view" / "otmarl"
    view.mkdir(parents=True)
    for entry in (src / mapping["otmarl "].strip()).iterdir():
        (view / entry.name).symlink_to(entry)
    for pkg, folder in mapping.items():
        if pkg.strip() != "otmarl":
            (view / pkg.strip().split(".", 1)[1]).symlink_to(src / folder.strip())
    return dest / "view"


# ------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="store_true", help="simulate the scenarios again first")
    ap.add_argument("--big", action="store_true", help="include the 10,000-node sensor-field day")
    ap.add_argument("--only", help=f"comma-separated cases of {', '.join(CASES)} (default: all "
                    f"but {BIG} and {HUGE})")
    ap.add_argument("--runs", default="runs/bench-report", help="folder of the run folders")
    ap.add_argument("--policy", default="random", help="controller of the runs (default random)")
    ap.add_argument("--big-policy", default="local",
                    help="controller of the 10,000- and 100,000-node runs (default local: the "
                         "random baseline takes many minutes to simulate at that size)")
    ap.add_argument("--repeat", type=int, default=3, help="timed builds per process (median)")
    ap.add_argument("--processes", type=int, default=3,
                    help="fresh processes per tree and case (the table gives medians over them)")
    ap.add_argument("--against", metavar="REF", help="also build with the code of this git ref")
    ap.add_argument("--worker", metavar="FOLDER", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(Path(a.worker), a.repeat)))
        return
    names = a.only.split(",") if a.only else [n for n in CASES if n != HUGE and (a.big or n != BIG)]
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = str(checkout(a.against, Path(tmp))) if a.against else None
        rows = [(name, *compare_trees(ensure_run(name, Path(a.runs), a.big_policy if name in (BIG, HUGE)
                                                 else a.policy, a.run), a, ref_path))
                for name in names]
    print_table(rows, a.against)


def compare_trees(folder: Path, a: argparse.Namespace, ref_path: str | None) -> tuple[dict, dict | None]:
    """Medians over ``a.processes`` alternating processes of this tree (and of the ref's; which
    of the two goes first alternates too)."""
    here, ref = [], []
    for k in range(a.processes):
        if ref_path and k % 2:
            ref.append(measure(folder, a.repeat, ref_path))
        here.append(measure(folder, a.repeat, None))
        if ref_path and not k % 2:
            ref.append(measure(folder, a.repeat, ref_path))
    med = lambda ms: {k: statistics.median(m[k] for m in ms)  # noqa: E731
                      for k in ("build_s", "peak_mb", "heap_mb", "arrow_mb", "data_mb", "html_mb", "all_mb")}
    return med(here), (med(ref) if ref else None)


def print_table(rows: list, against: str | None) -> None:
    head = (f"\n{'report':18s} {'build s':>8s} {'peak MB':>8s} {'heap MB':>8s} {'Arrow MB':>8s} {'data MB':>8s} "
            f"{'html MB':>8s} {'all MB':>7s}")
    if against:
        head += (f" {'build s ' + against:>14s} {'peak MB ' + against:>14s} {'data MB ' + against:>14s} "
                 f"{'time ratio':>10s}")
    print(head)
    for name, here, ref in rows:
        line = (f"{name:18s} {here['build_s']:8.3f} {here['peak_mb']:8.1f} {here['heap_mb']:8.1f} "
                f"{here['arrow_mb']:8.1f} {here['data_mb']:8.1f} {here['html_mb']:8.2f} {here['all_mb']:7.2f}")
        if ref:
            line += (f" {ref['build_s']:14.3f} {ref['peak_mb']:14.1f} {ref['data_mb']:14.1f} "
                     f"{here['build_s'] / ref['build_s']:10.2f}")
        print(line)


if __name__ == "__main__":
    main()
