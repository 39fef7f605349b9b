"""Metrics, fairness and reports computed from run folders (never from the simulator itself).

Layering: this package reads run outputs and scenario types only; it never imports
``otmarl.policies``.
"""
from __future__ import annotations

from .fairness import (equality_gap_w1, fairness_summary, gini, jain, lorenz, min_max_ratio,
                       worst_decile_mean)
from .metrics import (KPI_BETTER, Run, class_fairness_table, fleet_table, load_run, metrics,
                      node_table, normalise_to_baseline)
from .report import comparison_report, report

__all__ = ["Run", "load_run", "metrics", "node_table", "fleet_table", "class_fairness_table",
           "normalise_to_baseline", "KPI_BETTER", "jain", "gini", "lorenz", "equality_gap_w1",
           "worst_decile_mean", "min_max_ratio", "fairness_summary", "report", "comparison_report"]
