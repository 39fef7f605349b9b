"""The market's levels rules compared on evaluation seeds: ot with levels 'forecast' (the default)
against levels 'soc' (the earlier default), paired by seed.

    python benchmarks/levels_compare.py [--scenarios edge-offload,microgrid-solar] [--seeds 10]
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd

from otmarl.analysis.stats import paired_table

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from tune_ot import one_run  # noqa: E402  (the tuning script's scored run)

METRICS = ["score", "on_time_ratio", "brownout_node_hours"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default="edge-offload,microgrid-solar")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--policy", default="ot")
    a = ap.parse_args(argv)
    for name in a.scenarios.split(","):
        rows = [{**one_run(name, a.policy, {"levels": lv}, 2000 + s), "levels": lv}
                for lv in ("soc", "forecast") for s in range(a.seeds)]
        t = paired_table(pd.DataFrame(rows), METRICS, "soc", by="levels")
        print(f"{name}, {a.policy}, forecast minus soc over seeds 2000-{1999 + a.seeds} (mean [95 % CI]):")
        for r in t.itertuples():
            print(f"  {r.metric:20s} {r.mean_diff:+.4g} [{r.ci_low:+.4g}, {r.ci_high:+.4g}]"
                  + (" *" if r.significant else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
