"""Cost per node: sensor-field at 1,000, 10,000 and 100,000 nodes (every class count times 1,
10, 100; the radius shrunk to keep the mean degree), one day, end to end in fresh processes.

    python benchmarks/scale.py                          # local and ot (hierarchical), 1k-100k
    python benchmarks/scale.py --factors 1,10 --repeats 3
    python benchmarks/scale.py --policies local --factors 1000 --hours 1 --repeats 1   # 1M nodes
    python benchmarks/scale.py --out benchmarks/results/scale.md

Prints a Markdown table: nodes, wall and CPU seconds (medians of the repeats), CPU per node-day
(microseconds of CPU per simulated node-day, the cost per node), peak resident memory and its
share per node, and the run folder's size (every table, per-task rows included).
"""
from __future__ import annotations

import argparse
import platform
from pathlib import Path

from engine import measure, scaled

POLICIES = {"local": ("local", []), "ot (hierarchical)": ("ot", ["controller.params.solver=hierarchical"])}
HEAD = ("| policy | nodes | node-days | wall s | CPU s | CPU ms per node-day | peak MB "
        "| peak kB per node | folder MB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def row(label: str, r: dict) -> str:
    """One Markdown row of a measurement."""
    node_days = r["n"] * r["days"]
    return (f"| {label} | {r['n']:,} | {node_days:,.0f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} "
            f"| {1e3 * r["cpu_s"] / node_days:.2f} | {r['peak_mb']:,.0f} "
            f"| {1e3 * r['peak_mb'] / r['n']:.1f} | {r['folder_mb']:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factors", default="1,10,100", help="class count multipliers")
    ap.add_argument("--policies", default=",".join(POLICIES), help=f"of {', '.join(POLICIES)}")
    ap.add_argument("--hours", type=float, default=24.0, help="horizon")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, help="also write the table here")
    a = ap.parse_args()
    lines = [f"sensor-field scaled, {a.hours:g} h, seed 1, fast engine, {platform.machine()} "
             f"({a.repeats} run(s) per row, medians)", "", HEAD]
    print("\n".join(lines), flush=True)
    for label in a.policies.split(","):
        policy, sets = POLICIES[label]
        for f in (int(x) for x in a.factors.split(",")):
            r = measure("sensor-field", scaled("sensor-field", f) + sets + [f"horizon_h={a.hours:g}"],
                        "fast", a.repeats, policy)
            lines.append(row(label, r))
            print(lines[-1], flush=True)
    if a.out:
        a.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
