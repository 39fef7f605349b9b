"""The metric registry: the per-run metrics that compare tables and sweep summaries are made of.

Each metric has a name, a one-line description with its unit, the direction that is better, and
a function of a run's ``summary.json``. ``otmarl compare``, the sweep rows, the sweep report and
the comparison report all read this one table. To add a metric, add a ``Metric`` here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

__all__ = ["Metric", "REGISTRY", "METRICS", "BETTER", "run_metrics"]


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
    Metric("on_time_ratio", "share of generated tasks completed on time", "higher", _on_time_ratio),
    Metric("completed_on_time", "tasks completed on time", "higher",
           lambda s: s["tasks"]["completed_on_time"]),
    Metric("dropped", "tasks dropped (all reasons)", "lower", _dropped),
    Metric("latency_p95_s", "95th percentile completion latency, s", "lower", _p95),
    Metric("brownout_node_hours", "node-hours in brownout", "lower",
           lambda s: s["nodes"]["brownout_node_hours"]),
    Metric("unserved_wh", "idle load left without energy, Wh", "lower",
           lambda s: s["energy"].get("unserved_wh", math.nan)),     # NaN: a summary from before it
    Metric("delivered_wh", "energy delivered by sharing, Wh", None,
           lambda s: s["energy"]["delivered_wh"]),
    Metric("transport_loss_wh", "energy lost in transport, Wh", "lower",
           lambda s: s["energy"]["transport_loss_wh"]),
    Metric("loss_per_delivered", "transport loss per Wh delivered", "lower", _loss_per_delivered),
    Metric("curtailed_wh", "harvest curtailed, Wh", "lower", lambda s: s["energy"]["curtailed_wh"]),
    Metric("offloaded", "tasks offloaded at least once", None, lambda s: s["tasks"]["offloaded"]),
)}

#: name -> description, in the registry's order (the columns of every comparison).
METRICS: dict[str, str] = {k: m.description for k, m in REGISTRY.items()}
#: name -> "higher" | "lower" for the metrics that have a better direction.
BETTER: dict[str, str] = {k: m.better for k, m in REGISTRY.items() if m.better}


def run_metrics(summary: dict) -> dict[str, float]:
    """Every registered metric of one run, from its summary.json."""
    return {k: m.of(summary) for k, m in REGISTRY.items()}
