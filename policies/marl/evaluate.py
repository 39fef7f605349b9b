"""Evaluating policies on the env's reward and the run's metrics, across seeds, with 95% CIs.

This module owns ``otmarl evaluate``'s numbers: one row per (policy, seed) and the tables of
means and paired differences. Every policy (a trained MARL policy, any registered Controller,
or a control of ``controls.py``) drives the same ``MarlCore``, so the team reward is computed
identically for all, and the summary is the one ``otmarl run`` writes for that scenario, policy
and seed. ``compare`` puts a trained policy (one or several training runs) against the controls:
CIs across training runs, and paired differences on the shared evaluation seeds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd

from otmarl.analysis import stats
from otmarl.scenarios import Scenario
from otmarl.simulator.control import Controller

from .controls import Driver, as_driver, play
from .core import EnvOptions, MarlCore

METRICS = {
    "team_return": "sum of the team reward over the run",
    "on_time_ratio": "share of generated tasks completed on time",
    "dropped": "tasks dropped (all reasons)",
    "brownout_node_hours": "node-hours in brownout",
    "delivered_wh": "energy delivered by sharing, Wh",
    "transport_loss_wh": "energy lost in transport, Wh",
    "offloaded": "tasks offloaded at least once",
}


def run_policy(scenario: Scenario, make: Callable[[], "Controller | Driver"], seed: int,
               options: EnvOptions = EnvOptions()) -> dict:
    """One run of a controller or a driver (``controls.py``): the env's team return and the
    summary's metrics."""
    core = play(MarlCore(scenario, options), as_driver(make()), seed)
    s = core.sim.finish({"seed": seed}).summary
    t, e = s["tasks"], s["energy"]
    return {"team_return": core.team_return,
            "on_time_ratio": t["completed_on_time"] / max(t["generated"], 1),
            "dropped": sum(t["dropped"].values()),
            "brownout_node_hours": s["nodes"]["brownout_node_hours"],
            "delivered_wh": e["delivered_wh"], "transport_loss_wh": e["transport_loss_wh"],
            "offloaded": t["offloaded"]}


def evaluate(scenario: Scenario, policies: dict[str, Callable[[], "Controller | Driver"]],
             seeds: Sequence[int], options: EnvOptions = EnvOptions(),
             progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per (policy, seed)."""
    rows, jobs = [], [(p, s) for p in policies for s in seeds]
    for k, (p, s) in enumerate(jobs):
        rows.append({"policy": p, "seed": s, **run_policy(scenario, policies[p], s, options)})
        if progress:
            progress(k + 1, len(jobs))
    return pd.DataFrame(rows)


def evaluate_runs(scenario: Scenario, algo: str, runs: dict[str, str], controls: dict[str, Callable],
                  seeds: Sequence[int], options: EnvOptions = EnvOptions(),
                  progress: Callable[[str, int, int], None] | None = None) -> pd.DataFrame:
    """Rows (policy, run, seed, metrics) of trained runs ({label: checkpoint folder}, all
    ``policy = algo``) and of the controls (``run`` empty), on the same seeds."""
    from otmarl.policies import make_controller

    def say(what: str):
        return None if progress is None else (lambda k, n: progress(what, k, n))

    parts = [evaluate(scenario, {algo: lambda d=d: make_controller(f"marl:{d}")}, seeds, options,
                      say(label)).assign(run=label) for label, d in runs.items()]
    parts.append(evaluate(scenario, controls, seeds, options, say("controls")).assign(run=""))
    rows = pd.concat(parts, ignore_index=True)
    return rows[["policy", "run", "seed", *METRICS]]


def ci_table(rows: pd.DataFrame) -> pd.DataFrame:
    """policy, metric, mean, ci_low, ci_high, n (``analysis.stats``: Student t, 95 %)."""
    return stats.ci_table(rows, METRICS, by=("policy",))


def format_ci(table: pd.DataFrame) -> str:
    """A text table: metrics as rows, policies as columns, 'mean ± half-width'."""
    return stats.format_ci_table(table, METRICS)


# -------------------------------------------------------------- a trained policy vs the controls
@dataclass(frozen=True)
class Comparison:
    """``compare``'s tables (long DataFrames of ``analysis.stats``)."""

    means: pd.DataFrame
    """ci_table: the trained policy over its training runs (each run's mean over the evaluation
    seeds; over the evaluation seeds when there is one run), every control over the seeds."""
    paired: pd.DataFrame
    """paired_table of trained - control on the shared evaluation seeds (the trained value of a
    seed: its mean over the runs); policy is 'TRAINED - CONTROL'."""
    across_runs: pd.DataFrame | None
    """With two runs or more: per run, its mean minus the control's mean over the same seeds,
    CI across the runs (training-seed variation); None with one run."""


def _against(frame: pd.DataFrame, trained: str, controls: Sequence[str], pair_on: str) -> pd.DataFrame:
    """trained - control for every control (paired on ``pair_on``), one paired_table."""
    parts = []
    for c in controls:
        t = stats.paired_table(frame[frame.policy.isin([trained, c])], METRICS, baseline=c, pair_on=pair_on)
        parts.append(t.assign(policy=f"{trained} - {c}"))
    return pd.concat(parts, ignore_index=True)


def compare(rows: pd.DataFrame, trained: str) -> Comparison:
    """The trained policy's rows (column ``run``: one value per training run) against every other
    policy in ``rows`` (the controls), on the evaluation seeds they share."""
    mine, ctl = rows[rows.policy == trained], rows[rows.policy != trained]
    controls = list(dict.fromkeys(ctl.policy))
    per_run = mine.groupby("run", sort=False)[list(METRICS)].mean().reset_index()
    runs = len(per_run)
    head = per_run.assign(policy=trained) if runs > 1 else mine
    means = stats.ci_table(pd.concat([head, ctl], ignore_index=True), METRICS, by=("policy",))
    per_seed = mine.groupby("seed", sort=False)[list(METRICS)].mean().reset_index().assign(policy=trained)
    paired = _against(pd.concat([per_seed, ctl], ignore_index=True), trained, controls, "seed")
    across = None
    if runs > 1:
        seeds = set(mine.seed) & set(ctl.seed)
        ctl_means = ctl[ctl.seed.isin(seeds)].groupby("policy", sort=False)[list(METRICS)].mean()
        copies = [ctl_means.reset_index().assign(run=r) for r in per_run.run]
        mine_means = mine[mine.seed.isin(seeds)].groupby("run", sort=False)[list(METRICS)].mean()
        frame = pd.concat([mine_means.reset_index().assign(policy=trained), *copies], ignore_index=True)
        across = _against(frame, trained, controls, "run")
    return Comparison(means, paired, across)


def format_comparison(c: Comparison, trained: str, runs: int, seeds: int) -> str:
    """The three tables as text, each under a line saying what its intervals are over."""
    over = f"{runs} training runs (each the mean over {seeds} evaluation seeds)" if runs > 1 \
        else f"{seeds} evaluation seeds"
    parts = [f"mean ± 95% CI ({trained}: over {over}; controls: over {seeds} evaluation seeds)",
             format_ci(c.means), "",
             f"paired differences {trained} - control on the {seeds} shared evaluation seeds "
             "(mean ± 95% CI, * = CI excludes 0)", stats.format_paired_table(c.paired, METRICS)]
    if c.across_runs is not None:
        parts += ["", f"{trained} - control across the {runs} training runs (each run's mean minus the "
                  "control's mean on the same seeds; mean ± 95% CI)",
                  stats.format_paired_table(c.across_runs, METRICS)]
    return "\n".join(parts)


def summary_frame(c: Comparison) -> pd.DataFrame:
    """The tables of a Comparison in one long frame (column ``table``), for a CSV."""
    parts = [c.means.assign(table="means"), c.paired.assign(table="paired")]
    if c.across_runs is not None:
        parts.append(c.across_runs.assign(table="across_runs"))
    return pd.concat(parts, ignore_index=True)
