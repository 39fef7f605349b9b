"""Cost per node: sensor-field at 1,000, 10,000 and 100,000 nodes (every class count times 1,
10, 100; the radius shrunk to keep the mean degree), one day, end to end in fresh processes.

    python benchmarks/scale.py                          # local, 1k-100k
    python benchmarks/scale.py --policies "ot (hierarchical)" --factors 1,10,100   # 100k: ~10 min
    python benchmarks/scale.py --factors 1,10 --repeats 3
    python benchmarks/scale.py --policies local --factors 1000 --hours 1 --repeats 1   # 1M nodes
    python benchmarks/scale.py --out benchmarks/results/scale.md
    python benchmarks/scale.py --before OLD/.venv/bin/python --policies local --factors 10 --repeats 3

Prints a Markdown table: nodes, wall seconds (from after ``import otmarl.run``) and CPU seconds
(the whole process, imports included; medians of the repeats), CPU per node-day
(milliseconds of CPU per simulated node-day, the cost per node), peak resident memory and its
share per node, and the run folder's size (every table, per-task rows included). With
``--before``, each row is measured under that install too, the two alternating run by run (so
that other work on the machine falls on both alike), followed by a row of ratios after / before.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

from engine import once, scaled, summarise

POLICIES = {"local": ("local", []),
            "ot (hierarchical)": ("ot", ["controller.policy=ot", "controller.params.solver=hierarchical"])}
HEAD = ("| policy | nodes | node-days | wall s | CPU s | CPU ms per node-day | peak MB "
        "| peak kB per node | folder MB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def row(label: str, r: dict) -> str:
    """One Markdown row of a measurement."""
    node_days = r["n"] * r["days"]
    return (f"| {label} | {r['n']:,} | {node_days:,.0f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} "
            f"| {1e3 * r['cpu_s'] / node_days:.2f} | {r['peak_mb']:,.0f} "
            f"| {1e3 * r['peak_mb'] / r['n']:.1f} | {r['folder_mb']:.1f} |")


def ratios(before: dict, after: dict) -> str:
    """A Markdown row of after / before for time, memory and folder size."""
    r = {k: after[k] / before[k] for k in ("wall_s", "cpu_s", "peak_mb", "folder_mb")}
    return (f"| after / before | | | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['cpu_s']:.2f} "
            f"| {r['peak_mb']:.2f} | {r['peak_mb']:.2f} | {r['folder_mb']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factors", default="1,10,100", help="class count multipliers")
    ap.add_argument("--policies", default="local", help=f"comma-separated, of: {', '.join(POLICIES)}")
    ap.add_argument("--hours", type=float, default=24.0, help="horizon")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--before", help="python of another install to measure alongside")
    ap.add_argument("--out", type=Path, help="also write the table here")
    a = ap.parse_args()
    lines = [f"sensor-field scaled, {a.hours:g} h, seed 1, fast engine, {platform.machine()} "
             f"({a.repeats} run(s) per row, medians)", "", HEAD]
    print("\n".join(lines), flush=True)
    for label in a.policies.split(","):
        policy, sets = POLICIES[label]
        for f in (int(x) for x in a.factors.split(",")):
            sets_f = scaled("sensor-field", f) + sets + [f"horizon_h={a.hours:g}"]
            runs: dict[str, list[dict]] = {"before": [], "after": []}
            for _ in range(a.repeats):
                for which, python in (("before", a.before), ("after", sys.executable)):
                    if python:
                        runs[which].append(once("sensor-field", sets_f, "fast", policy, python))
            after = summarise(runs["after"])
            if a.before:
                before = summarise(runs["before"])
                lines += [row(f"{label} (before)", before), row(label, after), ratios(before, after)]
            else:
                lines.append(row(label, after))
            print("\n".join(lines[-3 if a.before else -1:]), flush=True)
    if a.out:
        a.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
