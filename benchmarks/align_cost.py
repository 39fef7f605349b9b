"""What the Wasserstein-barycenter consensus costs in training time.

    python benchmarks/align_cost.py                  # microgrid-solar, 4 updates, 3 repeats
    python benchmarks/align_cost.py --updates 8 --repeats 5 --align-every 1

Trains MAPPO with ``align_lambda`` 0 and 0.1 (``--align-every``, default 1: a refresh every
update, the most expensive setting), alternating, each in this process with one torch thread.
Prints the median process CPU time of each and the ratio (the target is at most 1.5); CPU time,
because wall time on a shared machine mostly measures the other jobs.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def train_cpu_s(scenario: str, updates: int, lam: float, every: int) -> float:
    from otmarl.policies.marl import mappo
    args = mappo.Args(scenario=scenario, total_steps=8 * 48 * updates, n_envs=8, num_steps=48,
                      horizon_h=72, align_lambda=lam, align_every=every, out=tempfile.mkdtemp())
    t = time.process_time()
    mappo.train(args)
    return time.process_time() - t


def main() -> None:
    import torch
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="microgrid-solar")
    ap.add_argument("--updates", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--align-every", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(1)
    times: dict[float, list[float]] = {0.0: [], 0.1: []}
    for _ in range(a.repeats):
        for lam in times:
            times[lam].append(train_cpu_s(a.scenario, a.updates, lam, a.align_every))
    base, aligned = statistics.median(times[0.0]), statistics.median(times[0.1])
    print(f"{a.scenario}, {a.updates} updates of 8 envs x 48 epochs, align_every {a.align_every}: "
          f"without consensus {base:.2f} s CPU, with {aligned:.2f} s (median of {a.repeats}); "
          f"ratio {aligned / base:.2f}")


if __name__ == "__main__":
    main()
