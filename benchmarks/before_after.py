"""End-to-end time of the built-ins under two installs of otmarl, measured in one run.

    python benchmarks/before_after.py --before OLD/.venv/bin/python --after .venv/bin/python
    python benchmarks/before_after.py ... --policies local,ot --repeats 5

Each measurement is a fresh process (imports included) that writes a run folder with
``otmarl.run.run``; the two installs alternate round-robin, so host noise falls on both alike.
Prints the median wall time of each and the ratio after / before.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from otmarl.run import run
run(sys.argv[1], policy=sys.argv[2], seed=1, out=sys.argv[3])
print(json.dumps({"wall_s": time.perf_counter() - t0}))
"""
BUILTINS = ("microgrid-solar", "edge-offload", "sensor-field")


def once(python: str, scenario: str, policy: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        # run in the empty folder: ``python -c`` puts the working folder first on sys.path, and
        # a checkout there would shadow the install being measured
        p = subprocess.run([python, "-c", CHILD, scenario, policy, str(Path(d) / "run")],
                           capture_output=True, text=True, check=True, cwd=d)
    return json.loads(p.stdout.strip().splitlines()[-1])["wall_s"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="python of the install measured first")
    ap.add_argument("--after", required=True, help="python of the install compared with it")
    ap.add_argument("--policies", default="local,ot")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    print("| built-in | policy | before s (median) | after s (median) | after / before |")
    print("|---|---|---|---|---|")
    for scenario in BUILTINS:
        for policy in a.policies.split(","):
            walls: dict[str, list[float]] = {"before": [], "after": []}
            for _ in range(a.repeats):
                for which in ("before", "after"):
                    walls[which].append(once(getattr(a, which), scenario, policy))
            b, f = statistics.median(walls["before"]), statistics.median(walls["after"])
            print(f"| {scenario} | {policy} | {b:.2f} | {f:.2f} | {f / b:.2f} |", flush=True)


if __name__ == "__main__":
    main()
