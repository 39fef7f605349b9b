"""The metric registry: the per-run metrics that compare tables and sweep summaries are made of.

Each metric has a name, a one-line description with its unit, a short axis label and its unit,
the direction that is better, the range its values can take (a count is never negative, a share
lies in [0, 1]), and a function of a run's ``summary.json``. ``otmarl compare``, the sweep rows, the sweep report and
the comparison report all read this one table. To add a metric, add a ``Metric`` here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import pandas as pd

__all__ = ["Metric", "REGISTRY", "METRICS", "BETTER", "LABELS", "run_metrics", "clip_intervals"]


@dataclass(frozen=True)
class Metric:
    """One number per run, read from its summary.json."""

    name: str
    description: str
    """What it counts, with its unit: a chart caption."""
    better: Literal["higher", "lower"] | None
    """Which way is an improvement (None: neither, e.g. a volume of activity)."""
    of: Callable[[dict], float]
    """The value from a run's summary (NaN when the run has none, e.g. no completed task)."""
    short: str
    """A few words for an axis or a table column, without the unit."""
    unit: str
    """The unit of the values ('' for a share or a ratio of like quantities)."""
    low: float | None = 0.0
    """The smallest value the metric can take (None: unbounded below)."""
    high: float | None = None
    """The largest value the metric can take (None: unbounded above)."""

    @property
    def label(self) -> str:
        """The axis label: 'transport loss (Wh)', or the short name alone without a unit."""
        return f"{self.short} ({self.unit})" if self.unit else self.short

    def clip(self, value: float) -> float:
        """``value`` moved into the metric's range (a confidence bound beyond it says nothing
        more than the bound itself); NaN stays NaN."""
        lo = -math.inf if self.low is None else self.low
        hi = math.inf if self.high is None else self.high
        return min(max(value, lo), hi) if value == value else value


def _dropped(s: dict) -> float:
    return sum(s["tasks"]["dropped"].values())


def _p95(s: dict) -> float:
    p95 = s["latency_s"]["p95"]
    return math.nan if p95 is None else p95


def _loss_per_delivered(s: dict) -> float:
    e = s["energy"]
    return e["transport_loss_wh"] / e["delivered_wh"] if e["delivered_wh"] > 0 else math.nan


def _on_time_ratio(s: dict) -> float:
    t = s["tasks"]
    return t["completed_on_time"] / max(t["generated"], 1)


REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("on_time_ratio", "share of generated tasks completed on time", "higher", _on_time_ratio,
           "on-time share", "", high=1.0),
    Metric("completed_on_time", "tasks completed on time", "higher",
           lambda s: s["tasks"]["completed_on_time"], "completed on time", "tasks"),
    Metric("dropped", "tasks dropped (all reasons)", "lower", _dropped, "dropped", "tasks"),
    Metric("latency_p95_s", "95th percentile completion latency, s", "lower", _p95,
           "latency p95", "s"),
    Metric("brownout_node_hours", "node-hours in brownout", "lower",
           lambda s: s["nodes"]["brownout_node_hours"], "brownout", "node-h"),
    Metric("unserved_wh", "idle load left without energy, Wh", "lower",
           lambda s: s["energy"].get("unserved_wh", math.nan),      # NaN: a summary from before it
           "unserved idle load", "Wh"),
    Metric("delivered_wh", "energy delivered by sharing, Wh", None,
           lambda s: s["energy"]["delivered_wh"], "delivered by sharing", "Wh"),
    Metric("transport_loss_wh", "energy lost in transport, Wh", "lower",
           lambda s: s["energy"]["transport_loss_wh"], "transport loss", "Wh"),
    Metric("loss_per_delivered", "transport loss per Wh delivered", "lower", _loss_per_delivered,
           "loss per delivered", "Wh/Wh"),
    Metric("curtailed_wh", "harvest curtailed, Wh", "lower", lambda s: s["energy"]["curtailed_wh"],
           "curtailed", "Wh"),
    Metric("offloaded", "tasks offloaded at least once", None, lambda s: s["tasks"]["offloaded"],
           "offloaded", "tasks"),
)}

#: name -> description, in the registry's order (the columns of every comparison).
METRICS: dict[str, str] = {k: m.description for k, m in REGISTRY.items()}
#: name -> axis label with its unit ('transport loss (Wh)'): every chart axis and table column.
LABELS: dict[str, str] = {k: m.label for k, m in REGISTRY.items()}
#: name -> "higher" | "lower" for the metrics that have a better direction.
BETTER: dict[str, str] = {k: m.better for k, m in REGISTRY.items() if m.better}


def run_metrics(summary: dict) -> dict[str, float]:
    """Every registered metric of one run, from its summary.json."""
    return {k: m.of(summary) for k, m in REGISTRY.items()}


def clip_intervals(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """A CI table (columns metric, ci_low, ci_high, ...) with every registered metric's bounds
    moved into its range (``Metric.clip``: no negative count, no share above 1), and the metrics
    whose bounds moved. Metrics not in the registry are left alone."""
    out = table.copy()
    moved = []
    for name, g in table.groupby("metric", sort=False):
        m = REGISTRY.get(name)
        if m is None:
            continue
        for col in ("ci_low", "ci_high"):
            out.loc[g.index, col] = [m.clip(v) for v in g[col]]
        before, after = g[["ci_low", "ci_high"]].to_numpy(), out.loc[g.index, ["ci_low", "ci_high"]].to_numpy()
        if not ((before == after) | (before != before)).all():
            moved.append(name)
    return out, moved
