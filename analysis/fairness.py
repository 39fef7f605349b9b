"""Fairness of an outcome spread over nodes: pure functions of a 1-D array of non-negative values.

Conventions (each function states its own too):

* NaN entries are ignored (a node with no tasks has no service ratio); an array with no finite
  value gives NaN.
* Values must be >= 0 (ratios, fractions, energies); a negative value raises ``ValueError``.
* All-zero arrays are perfectly equal: Jain 1, Gini 0, min/max ratio 1, equality gap 0.
* Gini is the population (biased) form ``sum_i sum_j |x_i - x_j| / (2 n^2 mean)``: 0 for equal
  shares, ``(n - 1) / n`` when one node holds everything (0.75 for ``[0, 0, 0, 1]``).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["jain", "gini", "lorenz", "equality_gap_w1", "worst_decile_mean", "min_max_ratio",
           "fairness_summary", "FAIRNESS_FIELDS"]

FAIRNESS_FIELDS = ("n", "mean", "min", "max", "jain", "gini", "min_max_ratio", "worst_decile_mean",
                   "equality_gap_w1")


def _values(x) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    a = a[~np.isnan(a)]
    if np.any(a < 0):
        raise ValueError(f"fairness indices need values >= 0; got minimum {a.min():.6g}")
    if np.any(np.isinf(a)):
        raise ValueError("fairness indices need finite values; got inf")
    return a


def jain(x) -> float:
    """Jain's index ``(sum x)^2 / (n sum x^2)``: 1 when equal, ``1/n`` when one node has it all."""
    a = _values(x)
    if not a.size:
        return math.nan
    sq = float(np.dot(a, a))
    return 1.0 if sq == 0 else float(a.sum() ** 2 / (a.size * sq))


def gini(x) -> float:
    """Gini coefficient, population form (see the module docstring): 0 equal, (n-1)/n maximal."""
    a = np.sort(_values(x))
    n = a.size
    if not n:
        return math.nan
    total = a.sum()
    if total == 0:
        return 0.0
    # sum_i sum_j |x_i - x_j| = 2 sum_i (2i - n - 1) x_(i) over sorted x, i = 1..n
    ranks = np.arange(1, n + 1)
    return float(np.dot(2 * ranks - n - 1, a) / (n * total))


def lorenz(x) -> tuple[np.ndarray, np.ndarray]:
    """Lorenz curve: ``(share of nodes, share of the total)``, n + 1 points from (0, 0) to (1, 1).

    Nodes are sorted from the worst off; point k holds the k worst-off nodes. An all-zero array
    gives the equality line.
    """
    a = np.sort(_values(x))
    n = a.size
    p = np.arange(n + 1) / n if n else np.zeros(1)
    total = a.sum()
    if total == 0:
        return p, p.copy()
    return p, np.concatenate([[0.0], np.cumsum(a) / total])


def equality_gap_w1(x) -> float:
    """Wasserstein-1 distance between the outcome distribution and the perfectly equal one.

    The equal distribution puts every node at the mean ``m``, a point mass, so the optimal
    transport plan is forced and W1 is exactly the mean absolute deviation ``mean |x - m|``
    (in the outcome's unit; ``scipy.stats.wasserstein_distance(x, [m])`` gives the same number).
    """
    a = _values(x)
    if not a.size:
        return math.nan
    return float(np.mean(np.abs(a - a.mean())))


def worst_decile_mean(x) -> float:
    """Mean of the worst-off tenth of the nodes: the ``ceil(n / 10)`` smallest values (at least 1)."""
    a = _values(x)
    if not a.size:
        return math.nan
    k = max(1, math.ceil(a.size / 10))
    return float(np.partition(a, k - 1)[:k].mean())


def min_max_ratio(x) -> float:
    """``min / max``: 1 when equal (also when all are zero), 0 when some node gets nothing."""
    a = _values(x)
    if not a.size:
        return math.nan
    hi = a.max()
    return 1.0 if hi == 0 else float(a.min() / hi)


def fairness_summary(x) -> dict[str, float]:
    """Every index above for one outcome, plus n, mean, min and max (NaN entries ignored)."""
    a = _values(x)
    empty = not a.size
    return {"n": int(a.size),
            "mean": math.nan if empty else float(a.mean()),
            "min": math.nan if empty else float(a.min()),
            "max": math.nan if empty else float(a.max()),
            "jain": jain(a), "gini": gini(a), "min_max_ratio": min_max_ratio(a),
            "worst_decile_mean": worst_decile_mean(a), "equality_gap_w1": equality_gap_w1(a)}
