"""Comparing policies on one scenario across seeds: mean and 95% confidence interval per metric."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from otmarl.policies import REGISTRY
from otmarl.scenarios import Scenario, load
from otmarl.scenarios.errors import UserError

METRICS = {
    "on_time_ratio": "share of generated tasks completed on time",
    "completed_on_time": "tasks completed on time",
    "dropped": "tasks dropped (all reasons)",
    "latency_p95_s": "95th percentile completion latency, s",
    "brownout_node_hours": "node-hours in brownout",
    "delivered_wh": "energy delivered by sharing, Wh",
    "transport_loss_wh": "energy lost in transport, Wh",
    "loss_per_delivered": "transport loss per Wh delivered",
    "curtailed_wh": "harvest curtailed, Wh",
    "offloaded": "tasks offloaded at least once",
}


def run_metrics(summary: dict) -> dict:
    """The comparison metrics of one run, from its summary.json."""
    t, e = summary["tasks"], summary["energy"]
    gen = max(t["generated"], 1)
    return {
        "on_time_ratio": t["completed_on_time"] / gen,
        "completed_on_time": t["completed_on_time"],
        "dropped": sum(t["dropped"].values()),
        "latency_p95_s": summary["latency_s"]["p95"] if summary["latency_s"]["p95"] is not None else math.nan,
        "brownout_node_hours": summary["nodes"]["brownout_node_hours"],
        "delivered_wh": e["delivered_wh"],
        "transport_loss_wh": e["transport_loss_wh"],
        "loss_per_delivered": e["transport_loss_wh"] / e["delivered_wh"] if e["delivered_wh"] > 0 else math.nan,
        "curtailed_wh": e["curtailed_wh"],
        "offloaded": t["offloaded"],
    }


def confidence_table(rows: pd.DataFrame, by: Sequence[str] = ("policy",)) -> pd.DataFrame:
    """Long table: by..., metric, mean, ci_low, ci_high, n (Student t, 95%)."""
    from scipy.stats import t as student
    out = []
    for key, g in rows.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for m in METRICS:
            x = g[m].to_numpy(float)
            x = x[np.isfinite(x)]
            n = len(x)
            mean = float(x.mean()) if n else math.nan
            half = float(student.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
            out.append({**dict(zip(by, key)), "metric": m, "mean": mean, "ci_low": mean - half,
                        "ci_high": mean + half, "n": n})
    return pd.DataFrame(out)


def _one(scenario: Scenario, policy: str, seed: int, out: str) -> dict:
    from otmarl.run import run
    folder = run(scenario, policy=policy, seed=seed, out=out)
    return json.loads((folder / "summary.json").read_text())


def compare(scenario: str | os.PathLike | Scenario, policies: Sequence[str], seeds: int | Sequence[int],
            out: str | os.PathLike, overrides: Sequence[str] = (), jobs: int = 1,
            progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Run every (policy, seed), write runs under ``out`` and the table as CSV and JSON."""
    sc = scenario if isinstance(scenario, Scenario) else load(scenario, overrides)
    unknown = [p for p in policies if p not in REGISTRY and not p.startswith("marl:")]
    if unknown:
        raise UserError(f"--policies: unknown policy '{unknown[0]}' (known: {', '.join(sorted(REGISTRY))})")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise UserError("--seeds: value 0 must be >= 1")
    from otmarl.run import policy_slug
    out = Path(out)
    jobs_list = [(p, s) for p in policies for s in seed_list]
    if jobs > 1:
        from joblib import Parallel, delayed
        summaries = Parallel(n_jobs=jobs)(delayed(_one)(sc, p, s, str(out / f"{policy_slug(p)}-s{s}"))
                                          for p, s in jobs_list)
    else:
        summaries = []
        for k, (p, s) in enumerate(jobs_list):
            summaries.append(_one(sc, p, s, str(out / f"{policy_slug(p)}-s{s}")))
            if progress:
                progress(k + 1, len(jobs_list))
    rows = pd.DataFrame([{"policy": p, "seed": s, **run_metrics(m)}
                         for (p, s), m in zip(jobs_list, summaries)])
    table = confidence_table(rows)
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / "runs.csv", index=False)
    table.to_csv(out / "comparison.csv", index=False)
    (out / "comparison.json").write_text(json.dumps(
        {"scenario": sc.name, "seeds": seed_list, "metrics": METRICS,
         "table": json.loads(table.to_json(orient="records"))}, indent=2) + "\n")
    return table


def format_table(table: pd.DataFrame) -> str:
    """A wide text table: one row per metric, one column per policy, 'mean ± half-width'."""
    pols = list(dict.fromkeys(table["policy"]))
    lines = [f"{'metric':22s}" + "".join(f"{p:>24s}" for p in pols)]
    for m in METRICS:
        cells = []
        for p in pols:
            r = table[(table["policy"] == p) & (table["metric"] == m)].iloc[0]
            half = (r["ci_high"] - r["ci_low"]) / 2
            cells.append(f"{_fmt(r['mean'])} ± {_fmt(half)}" if np.isfinite(half) else _fmt(r["mean"]))
        lines.append(f"{m:22s}" + "".join(f"{c:>24s}" for c in cells))
    return "\n".join(lines)


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    return f"{x:.4g}"
