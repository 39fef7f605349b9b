"""Does ot's urgency weight earn a default? ot with urgency 0 (the default), 1 and 4 against
greedy and proportional, paired by seed.

    python benchmarks/urgency_check.py microgrid-solar --first-seed 3000
    python benchmarks/urgency_check.py benchmarks/scenarios/desert-star.yaml --first-seed 2000

Prints, per controller, the mean brownout node-hours and on-time ratio over ``--seeds`` seeds
(from ``--first-seed``; 2000-2009 are tune_ot.py's evaluation seeds, 3000 on are fresh), and the
difference to greedy with its 95 % CI.
"""
from __future__ import annotations

import argparse

import numpy as np
from joblib import Parallel, delayed

from otmarl.analysis.stats import mean_ci

from tune_ot import one_run  # noqa: E402  (a sibling script: the same run and the same metrics)

VARIANTS = {"greedy": ("greedy", {}), "proportional": ("proportional", {}), "ot": ("ot", {}),
            "ot urgency 1": ("ot", {"urgency": 1.0}), "ot urgency 4": ("ot", {"urgency": 4.0})}


def one(scenario: str, policy: str, params: dict, seed: int) -> tuple[float, float]:
    r = one_run(scenario, policy, params, seed)
    return r["brownout_node_hours"], r["on_time_ratio"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario")
    ap.add_argument("--first-seed", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    seeds = range(a.first_seed, a.first_seed + a.seeds)
    res = {k: np.array(Parallel(n_jobs=a.jobs)(delayed(one)(a.scenario, p, s, sd) for sd in seeds))
           for k, (p, s) in VARIANTS.items()}
    base = res["greedy"]
    print(f"{a.scenario}, seeds {a.first_seed}-{a.first_seed + a.seeds - 1}; difference to greedy, 95 % CI")
    for k, v in res.items():
        b, o = mean_ci(v[:, 0] - base[:, 0]), mean_ci(v[:, 1] - base[:, 1])
        print(f"{k:14s} brownout {v[:, 0].mean():8.2f} ({b.mean:+.2f} [{b.low:+.2f}, {b.high:+.2f}])  "
              f"on-time {v[:, 1].mean():.4f} ({o.mean:+.4f} [{o.low:+.4f}, {o.high:+.4f}])")


if __name__ == "__main__":
    main()
