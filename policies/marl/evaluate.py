"""Evaluating policies on the env's reward and the run's metrics, across seeds, with 95% CIs.

This module owns ``otmarl evaluate``'s numbers: one row per (policy, seed) and the table of
means with their intervals. Every policy (a trained MARL policy or any registered Controller) drives the same ``MarlCore``
through ``step_decision``, so the team reward is computed identically for all, and the summary is
the one ``otmarl run`` writes for that scenario, policy and seed.
"""
from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd

from otmarl.analysis import stats
from otmarl.scenarios import Scenario
from otmarl.simulator.control import Controller

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


def run_policy(scenario: Scenario, make: Callable[[], Controller], seed: int,
               options: EnvOptions = EnvOptions()) -> dict:
    """One run of a controller: the env's team return and the summary's metrics."""
    core = MarlCore(scenario, options)
    core.reset(seed)
    ctl = make()
    ctl.reset(core.info, core.sim.world.rng["policy"])
    done = False
    while not done:
        _, _, done, _ = core.step_decision(ctl.decide(core.cur))
    s = core.sim.finish({"seed": seed}).summary
    t, e = s["tasks"], s["energy"]
    return {"team_return": core.team_return,
            "on_time_ratio": t["completed_on_time"] / max(t["generated"], 1),
            "dropped": sum(t["dropped"].values()),
            "brownout_node_hours": s["nodes"]["brownout_node_hours"],
            "delivered_wh": e["delivered_wh"], "transport_loss_wh": e["transport_loss_wh"],
            "offloaded": t["offloaded"]}


def evaluate(scenario: Scenario, policies: dict[str, Callable[[], Controller]], seeds: Sequence[int],
             options: EnvOptions = EnvOptions(), progress: Callable[[int, int], None] | None = None
             ) -> pd.DataFrame:
    """One row per (policy, seed)."""
    rows, jobs = [], [(p, s) for p in policies for s in seeds]
    for k, (p, s) in enumerate(jobs):
        rows.append({"policy": p, "seed": s, **run_policy(scenario, policies[p], s, options)})
        if progress:
            progress(k + 1, len(jobs))
    return pd.DataFrame(rows)


def ci_table(rows: pd.DataFrame) -> pd.DataFrame:
    """policy, metric, mean, ci_low, ci_high, n (``analysis.stats``: Student t, 95 %)."""
    return stats.ci_table(rows, METRICS, by=("policy",))


def format_ci(table: pd.DataFrame) -> str:
    """A text table: metrics as rows, policies as columns, 'mean ± half-width'."""
    return stats.format_ci_table(table, METRICS)
