"""Does ot work with its defaults? Tune its parameters on tuning seeds, then evaluate the default,
the tuned ot and the other market controllers on separate evaluation seeds, paired by seed.

    python benchmarks/tune_ot.py                       # the built-ins and benchmarks/scenarios/
    python benchmarks/tune_ot.py --scenarios edge-offload --configs 12 --eval-seeds 10 --jobs 2
    python benchmarks/tune_ot.py --variant 'store 0={"store_value": 0}'   # one more ot row

Score of a run (higher is better, both terms in [0, 1]): on-time ratio minus the share of
node-time spent in brownout. The search draws ``--configs`` parameter sets at random from the grid
below (the default set always included), scores each on the tuning seeds (1000, 1001, ...), and
keeps the best mean. Evaluation seeds (2000, 2001, ...) are disjoint from them and from the seeds
the tests use (0-9). Writes ``--out``/tuning.csv, runs.csv and a Markdown table (tuned-against-
default and ot against each controller, paired 95 % CIs) to stdout and ``--out``/table.md.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from otmarl.analysis.stats import paired_table
from otmarl.policies import make_controller
from otmarl.scenarios import builtin_names, load
from otmarl.simulator.simulate import simulate

HERE = Path(__file__).parent
GRID = {
    "reserve_epochs": [0.0, 1.0, 2.0, 4.0, 8.0],
    "lookahead_epochs": [None, 4.0, 16.0, 48.0],
    "max_loss": [0.2, 0.5, 0.8, 1.0],
    "backlog_epochs": [None, 0.5, 1.0, 2.0],
    "energy_weight": [0.0, 1.0, 4.0],
    "low_soc": [0.1, 0.3],
    "urgency": [0.0, 1.0, 4.0],
    "store_value": [None, 0.0, 0.1, 0.25],
}
BASELINES = ("local", "greedy", "proportional", "threshold")


def scenario_paths(names: list[str] | None) -> list[str]:
    every = [n for n in builtin_names() if n != "regime-shift"] + sorted(
        str(p) for p in (HERE / "scenarios").glob("*.yaml"))
    if not names:
        return every
    return [n if n in builtin_names() or Path(n).exists() else str(HERE / "scenarios" / f"{n}.yaml")
            for n in names]


def score(summary: dict, n_nodes: int, horizon_h: float) -> float:
    t = summary["tasks"]
    done = t["generated"] or 1
    return t["completed_on_time"] / done - summary["nodes"]["brownout_node_hours"] / (n_nodes * horizon_h)


def one_run(source: str, policy: str, params: dict, seed: int) -> dict:
    sets = [f"controller.params.{k}={'null' if v is None else v}" for k, v in params.items()]
    sc = load(source, sets + [f"controller.policy={policy}"])
    t0 = time.perf_counter()
    s = simulate(sc, make_controller(policy), seed).summary
    return {"scenario": sc.name, "policy": policy, "params": json.dumps(params, sort_keys=True),
            "seed": seed, "score": score(s, sc.n_nodes, sc.horizon_h),
            "on_time_ratio": s["tasks"]["completed_on_time"] / max(s["tasks"]["generated"], 1),
            "brownout_node_hours": s["nodes"]["brownout_node_hours"], "wall_s": time.perf_counter() - t0}


def configs(n: int, rng: np.random.Generator) -> list[dict]:
    every = [dict(zip(GRID, vals)) for vals in itertools.product(*GRID.values())]
    picks = rng.choice(len(every), size=min(n, len(every)), replace=False)
    return [{}] + [every[i] for i in picks]


def paired(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """ot default minus every other label, paired by seed (``stats.paired_table``, signs flipped
    so that a positive number favours the default)."""
    t = paired_table(runs, metrics, "ot default", by="label")
    t[["mean_diff", "ci_low", "ci_high"]] = -t[["mean_diff", "ci_high", "ci_low"]].to_numpy()
    return t


def cell(t: pd.DataFrame, other: str, metric: str) -> str:
    r = t[(t.label == other) & (t.metric == metric)].iloc[0]
    return (f"{r.mean_diff:+.4g} [{r.ci_low:+.4g}, {r.ci_high:+.4g}]" + ("*" if r.significant else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", nargs="*")
    ap.add_argument("--configs", type=int, default=12)
    ap.add_argument("--tune-seeds", type=int, default=2)
    ap.add_argument("--eval-seeds", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/tune_ot")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=JSON",
                    help='also evaluate ot with these parameters, e.g. \'store 0={"store_value": 0}\'')
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    par = Parallel(n_jobs=a.jobs)
    lines, tuning_rows, eval_rows = [], [], []
    for source in scenario_paths(a.scenarios):
        cands = configs(a.configs, np.random.default_rng(0))
        tuned = par(delayed(one_run)(source, "ot", c, 1000 + s) for c in cands for s in range(a.tune_seeds))
        tdf = pd.DataFrame(tuned)
        tuning_rows.append(tdf)
        best = json.loads(tdf.groupby("params").score.mean().idxmax())
        variants = [(lab, "ot", json.loads(js)) for lab, js in (v.split("=", 1) for v in a.variant)]
        jobs = [("ot default", "ot", {}), ("ot tuned", "ot", best), *variants] + [(b, b, {}) for b in BASELINES]
        res = par(delayed(one_run)(source, pol, prm, 2000 + s) for _, pol, prm in jobs
                  for s in range(a.eval_seeds))
        edf = pd.DataFrame(res)
        edf["label"] = [lab for lab, _, _ in jobs for _ in range(a.eval_seeds)]
        eval_rows.append(edf)
        name = edf.scenario.iloc[0]
        lines += [f"### {name}", "", f"tuned parameters: `{json.dumps(best, sort_keys=True)}`", "",
                  "| controller | score | on-time ratio | brownout node-h |", "|---|---|---|---|"]
        for lab, _, _ in jobs:
            r = edf[edf.label == lab]
            lines.append(f"| {lab} | {r.score.mean():.4f} | {r.on_time_ratio.mean():.4f} | "
                         f"{r.brownout_node_hours.mean():.2f} |")
        lines += ["", "| ot default minus | score | on-time ratio | brownout node-h |", "|---|---|---|---|"]
        metrics = ["score", "on_time_ratio", "brownout_node_hours"]
        diffs = paired(edf, metrics)
        for other in ["ot tuned", *(v[0] for v in variants), *BASELINES]:
            lines.append(f"| {other} | " + " | ".join(cell(diffs, other, m) for m in metrics) + " |")
        lines.append("")
        print("\n".join(lines[-(2 * len(jobs) + 8):]), flush=True)
    pd.concat(tuning_rows).to_csv(out / "tuning.csv", index=False)
    pd.concat(eval_rows).to_csv(out / "runs.csv", index=False)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
