"""``otmarl compare``: run policies on one scenario across seeds and tabulate each metric's mean
and 95 % confidence interval.

This module only runs things; the metrics (``METRICS``, ``run_metrics``) live in the analysis
room's registry and the intervals in ``otmarl.analysis.stats``, re-exported here for callers of
the old names.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from otmarl.analysis.registry import METRICS, run_metrics
from otmarl.analysis.stats import ci_table, format_ci_table, paired_table
from otmarl.policies import REGISTRY
from otmarl.scenarios import Scenario, load
from otmarl.scenarios.controllers import PARAMS, policy_tag, readers
from otmarl.scenarios.errors import UserError
from otmarl.scenarios.fields import split_path
from otmarl.scenarios.schema import MANY_RUNS_DEFAULT_TABLES, check_tables

__all__ = ["compare", "confidence_table", "format_table", "read_paired", "run_metrics", "METRICS", "GAPS"]


def confidence_table(rows: pd.DataFrame, by: Sequence[str] = ("policy",)) -> pd.DataFrame:
    """Long table: by..., metric, mean, ci_low, ci_high, n, over every registered metric
    (``stats.ci_table``: Student t, 95 %, NaN cells left out)."""
    return ci_table(rows, METRICS, by)


def _one(scenario: Scenario, policy: str, seed: int, out: str, tables: str,
         overwrite: bool = False) -> dict:
    from otmarl.run import run
    folder = run(scenario, policy=policy, seed=seed, out=out, tables=tables, overwrite=overwrite)
    return json.loads((folder / "summary.json").read_text())


def _one_indexed(k: int, scenario: Scenario, policy: str, seed: int, out: str,
                 tables: str, overwrite: bool = False) -> tuple[int, dict]:
    return k, _one(scenario, policy, seed, out, tables, overwrite)


def _run_all(scs: dict[str, Scenario], jobs_list: list[tuple[str, int]], out: Path, jobs: int,
             progress: Callable[[int, int], None] | None, tables: str,
             overwrite: bool = False) -> list[dict]:
    """Every (policy, seed) run's summary, in the order of ``jobs_list``; ``progress`` hears of
    each run as it finishes (in any order, with ``jobs`` > 1 processes)."""
    from otmarl.run import policy_slug
    folders = [str(out / f"{policy_slug(p)}-s{s}") for p, s in jobs_list]
    total = len(jobs_list)
    if progress:
        progress(0, total)
    if jobs > 1:
        from joblib import Parallel, delayed
        done_iter = Parallel(n_jobs=jobs, return_as="generator_unordered")(
            delayed(_one_indexed)(k, scs[p], p, s, folders[k], tables, overwrite)
            for k, (p, s) in enumerate(jobs_list))
    else:
        done_iter = (_one_indexed(k, scs[p], p, s, folders[k], tables, overwrite)
                     for k, (p, s) in enumerate(jobs_list))
    summaries: list[dict | None] = [None] * total
    for n_done, (k, summary) in enumerate(done_iter, start=1):
        summaries[k] = summary
        if progress:
            progress(n_done, total)
    return summaries


#: the gap of a run to the hindsight bound of its seed (``compare(..., bound=True)``)
GAPS: dict[str, str] = {
    "gap_unserved_wh": "unserved idle energy above the hindsight bound, Wh",
    "gap_on_time": "tasks on time below the hindsight bound",
}


def _per_policy(scenario: str | os.PathLike | Scenario, policies: Sequence[str],
                overrides: Sequence[str]) -> dict[str, Scenario]:
    """The scenario for each policy: each keeps the controller parameters it reads (a parameter
    set with --set must be read by at least one of the policies)."""
    if isinstance(scenario, Scenario):
        return {p: scenario for p in policies}
    models = {p: PARAMS[policy_tag(p) or "local"] for p in policies}
    for ov in overrides:
        key = split_path(ov.partition("=")[0].strip()) or ()
        if key[:2] == ("controller", "params") and len(key) == 3:
            if not any(key[2] in m.model_fields for m in models.values()):
                who = readers(key[2])
                raise UserError(f"--set {ov}: none of --policies ({', '.join(policies)}) reads "
                                f"'{key[2]}'" + (f" (read by {', '.join(who)})" if who else ""))
    # one load per parameter model: policies that read the same parameters share it (``run``
    # switches the policy itself)
    loaded: dict[type, Scenario] = {}
    for p, m in models.items():
        if m not in loaded:
            loaded[m] = load(scenario, overrides, p)
    return {p: loaded[m] for p, m in models.items()}


def _bound_gaps(sc: Scenario, rows: pd.DataFrame, seeds: Sequence[int], out: Path) -> pd.DataFrame:
    """The hindsight bound of every seed (written as bound.csv) and each run's gap to it."""
    from otmarl.policies.hindsight import hindsight_bound
    bounds = pd.DataFrame([{"seed": s, **{k: v for k, v in hindsight_bound(sc, s).as_dict().items()
                                           if not isinstance(v, dict)}} for s in seeds])
    out.mkdir(parents=True, exist_ok=True)
    bounds.to_csv(out / "bound.csv", index=False)
    b = bounds.set_index("seed")
    rows = rows.copy()
    rows["gap_unserved_wh"] = rows["unserved_wh"] - rows["seed"].map(b["unserved_wh"])
    rows["gap_on_time"] = rows["seed"].map(b["on_time_tasks"]) - rows["completed_on_time"]
    return rows


def compare(scenario: str | os.PathLike | Scenario, policies: Sequence[str], seeds: int | Sequence[int],
            out: str | os.PathLike, overrides: Sequence[str] = (), jobs: int = 1,
            progress: Callable[[int, int], None] | None = None,
            baseline: str | None = None, tables: str = MANY_RUNS_DEFAULT_TABLES,
            overwrite: bool = False, bound: bool = False) -> pd.DataFrame:
    """Run every (policy, seed), write runs under ``out`` and the table as CSV and JSON.

    ``tables``: what each run folder holds (``otmarl.run.TABLE_CHOICES``; by default no per-task
    rows: the table only needs the summaries, and a run's report works without them).
    ``overwrite``: replace run folders under ``out`` that hold other runs (else a UserError).

    Every policy runs on the same seeds, so each other policy is also compared with ``baseline``
    (default: local if it is among the policies, else the first) by paired differences per seed:
    ``paired.csv`` and the "paired" table of comparison.json (``stats.paired_table``). With
    ``bound``, the hindsight bound of each seed is solved too (bound.csv) and the table gains each
    policy's gap to it (``GAPS``)."""
    check_tables(tables)
    if baseline is not None and baseline not in policies:
        raise UserError(f"--baseline: '{baseline}' is not one of --policies ({', '.join(policies)})")
    baseline = baseline or ("local" if "local" in policies else policies[0])
    unknown = [p for p in policies if p not in REGISTRY and not p.startswith("marl:")]
    if unknown:
        raise UserError(f"--policies: unknown policy '{unknown[0]}' (known: {', '.join(sorted(REGISTRY))})")
    scs = _per_policy(scenario, policies, overrides)
    sc = scs[policies[0]]
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise UserError("--seeds: value 0 must be >= 1")
    out = Path(out)
    jobs_list = [(p, s) for p in policies for s in seed_list]
    summaries = _run_all(scs, jobs_list, out, jobs, progress, tables, overwrite)
    rows = pd.DataFrame([{"policy": p, "seed": s, **run_metrics(m)}
                         for (p, s), m in zip(jobs_list, summaries)])
    table = confidence_table(rows)
    if bound:
        rows = _bound_gaps(sc, rows, seed_list, out)
        table = pd.concat([table, ci_table(rows, GAPS)], ignore_index=True)
    paired = paired_table(rows, METRICS, baseline)
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / "runs.csv", index=False)
    table.to_csv(out / "comparison.csv", index=False)
    paired.to_csv(out / "paired.csv", index=False)
    (out / "comparison.json").write_text(json.dumps(
        {"scenario": sc.name, "seeds": seed_list, "metrics": {**METRICS, **(GAPS if bound else {})},
         "baseline": baseline, "tables": tables,
         "table": json.loads(table.to_json(orient="records")),
         "paired": json.loads(paired.to_json(orient="records"))}, indent=2) + "\n")
    return table


def read_paired(out: str | os.PathLike) -> pd.DataFrame:
    """The paired differences a compare wrote into ``out``."""
    return pd.read_csv(Path(out) / "paired.csv")


def format_table(table: pd.DataFrame) -> str:
    """A wide text table: one row per metric, one column per policy, 'mean ± half-width' (the
    gaps to the bound as well when the table has them)."""
    return format_ci_table(table, [*METRICS, *(g for g in GAPS if g in set(table["metric"]))])
