"""Wall time of ot with the market's two levels rules, alternating, medians of --repeats.

    python benchmarks/levels_speed.py [--scenarios edge-offload,sensor-field] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from otmarl import scenarios
from otmarl.policies import make_controller
from otmarl.simulator.simulate import simulate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default="edge-offload,sensor-field")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    for name in a.scenarios.split(","):
        t = {"soc": [], "forecast": []}
        for _ in range(a.repeats):
            for levels in t:
                sc = scenarios.load(name, [f"controller.params.levels={levels}"], policy="ot")
                t0 = time.perf_counter()
                simulate(sc, make_controller("ot"), 0)
                t[levels].append(time.perf_counter() - t0)
        m = {k: statistics.median(v) for k, v in t.items()}
        print(f"{name}: soc {m['soc']:.2f} s, forecast {m['forecast']:.2f} s, "
              f"forecast/soc {m['forecast'] / m['soc']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
