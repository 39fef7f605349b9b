"""Combine runs of benchmarks/marl_learn.py made with several training seeds.

    python benchmarks/marl_learn_combine.py runs/learn/regime-shift-market-s*-40000

Reads each run folder's ``eval.csv`` (team return per policy and evaluation seed; every run on
the same evaluation seeds) and prints, for the trained policy (``mappo-deployed``: as its
checkpoint says to deploy it, which checkpoint selection chooses; ``mappo-sample`` and
``mappo-mode``) against each control, and against ``last-update`` (the last update of a run made
with checkpoint selection, when ``RUN/last/eval.csv`` exists: selection's paired effect):

- across training seeds: each run's mean difference over the evaluation seeds, then the mean
  and 95 % Student-t CI across the runs (training-seed variation);
- on the shared evaluation seeds: the trained value of a seed averaged over the runs, then the
  paired difference's mean and CI across the evaluation seeds (evaluation-seed variation).

"beats" only when the whole interval is above 0.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from otmarl.analysis.stats import mean_ci


def verdict(low: float, high: float) -> str:
    return "beats" if low > 0 else "loses" if high < 0 else "ties"


def deployed(rows: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """``rows`` with ``mappo-deployed``: the rows of the deployment the checkpoint says
    (``deploy`` of its policy.json: what checkpoint selection chose, or the option given)."""
    deploy = json.loads((folder / "policy.json").read_text())["args"].get("deploy", "mode")
    parts = [rows, rows[rows.policy == f"mappo-{deploy}"].assign(policy="mappo-deployed")]
    last = folder / "last"
    if (last / "eval.csv").is_file():       # checkpoint selection's last update, evaluated alone
        lrows = deployed(pd.read_csv(last / "eval.csv"), last)
        parts.append(lrows[lrows.policy == "mappo-deployed"].assign(policy="last-update"))
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders of benchmarks/marl_learn.py")
    a = ap.parse_args()
    frames = [deployed(pd.read_csv(Path(r) / "eval.csv"), Path(r)).assign(run=str(r)) for r in a.runs]
    rows = pd.concat(frames, ignore_index=True)
    wide = rows.pivot_table(index=["run", "seed"], columns="policy", values="team_return")
    controls = [c for c in wide.columns if not c.startswith("mappo")]   # last-update: a control too
    print(f"{len(a.runs)} training runs, {wide.index.get_level_values('seed').nunique()} evaluation seeds")
    print("team return: " + ", ".join(f"{c} {wide[c].mean():.2f}" for c in wide.columns))
    for trained in ("mappo-deployed", "mappo-sample", "mappo-mode"):
        for c in controls:
            d = wide[trained] - wide[c]
            across = mean_ci(d.groupby(level="run").mean().to_numpy())
            shared = mean_ci(d.groupby(level="seed").mean().to_numpy())
            print(f"{trained} - {c:15s} across runs {across.mean:+7.2f} [{across.low:+.2f}, {across.high:+.2f}] "
                  f"{verdict(across.low, across.high):5s}  on shared seeds {shared.mean:+7.2f} "
                  f"[{shared.low:+.2f}, {shared.high:+.2f}] {verdict(shared.low, shared.high)}")


if __name__ == "__main__":
    main()
