"""The analysis room: metrics, statistics, fairness and reports, computed from run folders and
sweep folders (never from the simulator itself).

Layering: this package reads run outputs and scenario types only; it never imports
``otmarl.policies``, ``otmarl.simulator`` or the front door ``otmarl``. (``policies`` may import
it, for the one definition of each statistic in ``stats``.)
"""
from __future__ import annotations

from .metrics import (KPI_BETTER, Run, class_fairness_table, fleet_table, load_run, metrics,
                      node_table, normalise_to_baseline)
from .report import comparison_report, report
from .stats import (MeanCI, StatisticsError, ci_table, equality_gap_w1, fairness_summary,
                    format_ci_table, gini, jain, lorenz, mean_ci, min_max_ratio, worst_decile_mean)

__all__ = ["Run", "load_run", "metrics", "node_table", "fleet_table", "class_fairness_table",
           "normalise_to_baseline", "KPI_BETTER", "jain", "gini", "lorenz", "equality_gap_w1",
           "worst_decile_mean", "min_max_ratio", "fairness_summary", "mean_ci", "MeanCI",
           "ci_table", "format_ci_table", "StatisticsError", "report", "comparison_report"]
