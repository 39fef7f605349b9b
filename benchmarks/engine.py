"""Engine speed and memory, end to end (run folder written), for the built-ins and sensor-field
scaled to 10,000 and 100,000 nodes, with both engines.

    python benchmarks/engine.py                 # the full table (reference engine skipped at 10k)
    python benchmarks/engine.py --repeats 3 --only sensor-field
    python benchmarks/engine.py --only "sensor-field x10" --policy random --repeats 1
    python benchmarks/engine.py --only "sensor-field x100" --repeats 1

Each measurement runs in a fresh process and reports the median wall time of the repeats (from
after ``import otmarl.run``: loading the scenario, the run, writing its folder), agent-days
simulated per wall-minute, the process's CPU time (user + system of the whole process, imports
included; less sensitive than wall time to other work on the machine), its peak resident memory
and the size of the run folder.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from otmarl.run import run
from otmarl.scenarios import load
t0 = time.perf_counter()
sc = load(sys.argv[1], overrides=json.loads(sys.argv[2]))
out = run(sc, policy=sys.argv[5], seed=1, out=Path(sys.argv[3]) / "run", engine=sys.argv[4])
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "n": sc.n_nodes,
                  "days": sc.horizon_h / 24, "peak_mb": ru.ru_maxrss / 1024,
                  "folder_mb": sum(f.stat().st_size for f in out.iterdir()) / 1e6}))
"""


def scaled(name: str, factor: int) -> list[str]:
    """Overrides that multiply every class count and keep the mean degree of a geometric graph."""
    from otmarl.scenarios import load
    sc = load(name)
    sets = [f"nodes.{c}.count={nc.count * factor}" for c, nc in sc.nodes.items()]
    topo = sc.network.topology
    if topo.kind == "random_geometric":
        sets.append(f"network.topology.radius={topo.radius / math.sqrt(factor):.6g}")
    return sets


def once(name: str, sets: list[str], engine: str, policy: str = "local", python: str = sys.executable) -> dict:
    """One fresh run under ``python`` (in an empty folder: ``python -c`` puts the working folder
    first on sys.path, and a checkout there would shadow the install being measured)."""
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([python, "-c", CHILD, name, json.dumps(sets), d, engine, policy],
                           capture_output=True, text=True, check=True, cwd=d)
    return json.loads(p.stdout.strip().splitlines()[-1])


def measure(name: str, sets: list[str], engine: str, repeats: int, policy: str = "local") -> dict:
    """Median wall and CPU time of ``repeats`` fresh runs (peak memory and folder of the last)."""
    return summarise([once(name, sets, engine, policy) for _ in range(repeats)])


def summarise(runs: list[dict]) -> dict:
    """Medians of wall and CPU time over runs of one case; the rest from the last run."""
    wall = statistics.median(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    return {**runs[-1], "wall_s": wall, "cpu_s": cpu, "repeats": len(runs),
            "agent_days_per_min": runs[-1]["n"] * runs[-1]["days"] / (wall / 60)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", help="one case label")
    ap.add_argument("--policy", default="local", help="the controller (default local: the engine's "
                    "cost with the cheapest decisions)")
    ap.add_argument("--reference-max-nodes", type=int, default=1000,
                    help="skip the reference engine above this many nodes (it is the slow yardstick)")
    a = ap.parse_args()
    cases = [("microgrid-solar", "microgrid-solar", []), ("edge-offload", "edge-offload", []),
             ("sensor-field", "sensor-field", []),
             ("sensor-field x10", "sensor-field", scaled("sensor-field", 10)),
             ("sensor-field x100", "sensor-field", scaled("sensor-field", 100))]
    print(f"{'case':18s} {'engine':9s} {'nodes':>6s} {'days':>5s} {'wall s':>8s} {'CPU s':>7s} "
          f"{'agent-days/min':>15s} {'peak MB':>8s} {'folder MB':>9s}")
    for label, name, sets in cases:
        if a.only and a.only != label:
            continue
        for engine in ("fast", "reference"):
            from otmarl.scenarios import load
            n = load(name, overrides=sets).n_nodes
            if engine == "reference" and n > a.reference_max_nodes:
                print(f"{label:18s} {engine:9s} {n:6d}  skipped (over --reference-max-nodes)")
                continue
            r = measure(name, sets, engine, a.repeats if engine == "fast" else 1, a.policy)
            print(f"{label:18s} {engine:9s} {r['n']:6d} {r['days']:5.2g} {r['wall_s']:8.2f} {r['cpu_s']:7.2f} "
                  f"{r['agent_days_per_min']:15.0f} {r['peak_mb']:8.0f} {r['folder_mb']:9.1f}", flush=True)


if __name__ == "__main__":
    main()
