"""mpc against itself without its tasks or with its end reserve, and against ot, paired on seeds.

For each scenario and seed: one run under ``ot``, one under ``mpc`` with ``mpc_task_weight=0``
(energy only: no task moves), one with ``mpc_end_reserve=true`` (energy a node needs after the
window valued at the unserved weight), one under ``mpc`` with its defaults, the same world for
all four. Prints each policy's mean ± 95 % CI and the paired differences of mpc to the three
others (Student t over the seeds, ``analysis.stats``), with the wall time of a run.

    python benchmarks/mpc_tasks.py --scenarios microgrid-solar --seeds 11-15
    python benchmarks/mpc_tasks.py --scenarios edge-offload --seeds 11-15 --set horizon_h=12
"""
from __future__ import annotations

import argparse
import time

import pandas as pd

from otmarl.analysis.stats import ci_table, format_ci_table, format_paired_table, paired_table
from otmarl.policies import make_controller
from otmarl.scenarios import load
from otmarl.simulator import simulate

RUNS = {"ot": ("ot", []), "mpc-energy": ("mpc", ["controller.params.mpc_task_weight=0"]),
        "mpc-end-reserve": ("mpc", ["controller.params.mpc_end_reserve=true"]), "mpc": ("mpc", [])}
METRICS = ["unserved_wh", "brownout_node_hours", "on_time_ratio", "offloaded", "wall_s"]


def one(name: str, sets: list[str], label: str, seed: int) -> dict:
    policy, extra = RUNS[label]
    t = time.perf_counter()
    s = simulate(load(name, sets + extra, policy), make_controller(policy), seed).summary
    return {"scenario": name, "policy": label, "seed": seed, "unserved_wh": s["energy"]["unserved_wh"],
            "brownout_node_hours": s["nodes"]["brownout_node_hours"],
            "on_time_ratio": s["tasks"]["completed_on_time"] / max(s["tasks"]["generated"], 1),
            "offloaded": s["tasks"]["offloaded"], "wall_s": time.perf_counter() - t}


def seeds_of(text: str) -> list[int]:
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default="microgrid-solar,edge-offload")
    ap.add_argument("--seeds", default="11-15", help="e.g. 11-15 or 3,5,8 (not the tests' seeds)")
    ap.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    a = ap.parse_args()
    for name in a.scenarios.split(","):
        rows = pd.DataFrame([one(name, a.set, label, seed) for seed in seeds_of(a.seeds) for label in RUNS])
        print(f"## {name} {' '.join(a.set)} (seeds {a.seeds})")
        print(format_ci_table(ci_table(rows, METRICS), METRICS))
        for base in ("mpc-energy", "mpc-end-reserve", "ot"):
            table = paired_table(rows[rows.policy.isin(["mpc", base])], METRICS, base)
            print(f"mpc - {base} (paired, 95 % CI, * significant)")
            print(format_paired_table(table, METRICS))
        print(flush=True)


if __name__ == "__main__":
    main()
