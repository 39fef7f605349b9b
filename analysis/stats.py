"""Every statistic otmarl reports, defined once: the mean with its 95 % confidence interval
(Student t) and the fairness of an outcome spread over nodes (Jain, Gini, Lorenz points,
Wasserstein-1 distance to equality, worst decile, min/max ratio).

Compare tables, sweep summaries, run reports, the MARL reward and evaluation, and the benchmark
scripts all call these functions; nobody else computes a CI or a fairness index.

Conventions, the same for every function (each docstring adds its own edge cases):

* Input is any 1-D array-like of floats. NaN entries are missing values and are left out (a node
  that originated no task has no service ratio; a run without completed tasks has no p95
  latency). ``n`` always counts the values kept.
* No value left (empty input, or NaN only): the statistic is NaN (never an exception).
* ``inf`` raises :class:`StatisticsError` (a ``UserError`` and a ``ValueError``): no finite
  statistic describes it. The fairness indices also raise for a negative value: they are defined
  on shares, ratios and energies only.
* Values are sorted before any sum, so every statistic is exactly (to the bit) invariant under
  a permutation of its input.
* All-zero input is perfectly equal: Jain 1, Gini 0, min/max ratio 1, W1 gap 0, Lorenz curve on
  the diagonal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from otmarl.scenarios.errors import UserError

__all__ = ["MeanCI", "StatisticsError", "mean_ci", "ci_table", "format_ci_table", "paired_table",
           "format_paired_table", "PAIRED_COLUMNS", "jain", "gini", "lorenz",
           "equality_gap_w1", "worst_decile_mean", "min_max_ratio", "fairness_summary",
           "FAIRNESS_FIELDS", "CI_COLUMNS"]

FAIRNESS_FIELDS = ("n", "mean", "min", "max", "jain", "gini", "min_max_ratio", "worst_decile_mean",
                   "equality_gap_w1")
#: The columns of a CI table after its group columns.
CI_COLUMNS = ("metric", "mean", "ci_low", "ci_high", "n")


class StatisticsError(UserError, ValueError):
    """Values no statistic here is defined for (inf anywhere; a negative share for fairness)."""


def _finite(x: ArrayLike, name: str) -> np.ndarray:
    """The non-NaN values of ``x``, sorted ascending; inf raises."""
    a = np.asarray(x, dtype=float).ravel()
    a = a[~np.isnan(a)]
    if np.isinf(a).any():
        raise StatisticsError(f"{name}: values must be finite; got {a[np.isinf(a)][0]}")
    return np.sort(a)


def _shares(x: ArrayLike, name: str) -> np.ndarray:
    """As ``_finite``, and every value must be >= 0 (fairness is defined on shares)."""
    a = _finite(x, name)
    if a.size and a[0] < 0:
        raise StatisticsError(f"{name}: values must be >= 0; got minimum {a[0]:.6g}")
    return a


# ------------------------------------------------------------------- mean and its interval
@dataclass(frozen=True)
class MeanCI:
    """A sample mean and the two-sided confidence interval around it."""

    mean: float
    """Mean of the finite values (NaN when there is none)."""
    low: float
    """Lower bound (NaN when n < 2: one value says nothing about the spread)."""
    high: float
    """Upper bound (NaN when n < 2)."""
    n: int
    """Values used (NaN entries left out)."""

    @property
    def half_width(self) -> float:
        """``(high - low) / 2``: NaN when the interval is undefined."""
        return (self.high - self.low) / 2


def mean_ci(x: ArrayLike, level: float = 0.95) -> MeanCI:
    """Mean and Student-t confidence interval ``mean ± t(level, n-1) s / sqrt(n)``.

    ``s`` is the sample standard deviation (``ddof=1``). Edge cases: no value gives NaN
    everywhere and n = 0; one value gives its mean and NaN bounds; equal values give exactly that
    value as mean and both bounds. The interval always contains the mean. Scaling the values by ``c > 0`` scales mean
    and bounds by ``c``.
    """
    if not 0 < level < 1:
        raise StatisticsError(f"mean_ci: level={level} must be in (0, 1)")
    a = _finite(x, "mean_ci")
    n = int(a.size)
    if n == 0:
        return MeanCI(math.nan, math.nan, math.nan, 0)
    if n == 1:
        return MeanCI(float(a[0]), math.nan, math.nan, 1)
    if a[0] == a[-1]:  # exactly, not to rounding: the mean of equal values may miss them by an ulp
        return MeanCI(float(a[0]), float(a[0]), float(a[0]), n)
    mean = float(a.mean())
    from scipy.stats import t as student
    half = float(student.ppf(0.5 + level / 2, n - 1) * a.std(ddof=1) / math.sqrt(n))
    return MeanCI(mean, mean - half, mean + half, n)


def ci_table(rows: pd.DataFrame, metrics: Iterable[str], by: Sequence[str] = ("policy",),
             level: float = 0.95) -> pd.DataFrame:
    """Long table of :func:`mean_ci` per group and metric.

    Columns: ``*by, metric, mean, ci_low, ci_high, n``; one row per group of ``rows`` (in order
    of first appearance) and metric (in the order given). NaN cells are left out per metric, so
    ``n`` may differ between the metrics of one group.
    """
    metrics = list(metrics)
    by = list(by)
    out = []
    for key, g in rows.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for m in metrics:
            c = mean_ci(g[m].to_numpy(float), level)
            out.append({**dict(zip(by, key)), "metric": m, "mean": c.mean, "ci_low": c.low,
                        "ci_high": c.high, "n": c.n})
    return pd.DataFrame(out, columns=[*by, *CI_COLUMNS])


#: The columns of a paired table after its group column.
PAIRED_COLUMNS = ("metric", "baseline", "mean_diff", "ci_low", "ci_high", "n", "significant")


def paired_table(rows: pd.DataFrame, metrics: Iterable[str], baseline: str, by: str = "policy",
                 pair_on: str = "seed", level: float = 0.95) -> pd.DataFrame:
    """Paired differences against ``baseline``: for every other group and metric, the mean of
    ``value - baseline value`` over the ``pair_on`` keys both have (seeds: the same world, the
    same harvest, the same tasks), with its :func:`mean_ci`.

    ``significant`` is True when the interval excludes 0 (needs n >= 2; equal nonzero differences
    give a zero-width interval, which excludes 0). A pair with a NaN on either side is left out.
    Columns: ``by, metric, baseline, mean_diff, ci_low, ci_high, n, significant``.
    """
    base = rows[rows[by] == baseline].set_index(pair_on)
    out = []
    for key, g in rows[rows[by] != baseline].groupby(by, sort=False):
        g = g.set_index(pair_on)
        common = g.index.intersection(base.index)
        for m in metrics:
            c = mean_ci(g.loc[common, m].to_numpy(float) - base.loc[common, m].to_numpy(float), level)
            sig = c.n >= 2 and (c.low > 0 or c.high < 0)
            out.append({by: key, "metric": m, "baseline": baseline, "mean_diff": c.mean,
                        "ci_low": c.low, "ci_high": c.high, "n": c.n, "significant": bool(sig)})
    return pd.DataFrame(out, columns=[by, *PAIRED_COLUMNS])


def format_paired_table(table: pd.DataFrame, metrics: Iterable[str], width: int = 24) -> str:
    """A ``paired_table`` as text: one row per metric, one column per policy, each cell
    'difference ± half-width', marked '*' when significant."""
    cells = {(r.policy, r.metric): _ci_text(r.mean_diff, (r.ci_high - r.ci_low) / 2)
             + ("*" if r.significant else " ") for r in table.itertuples(index=False)}
    return _wide_text(list(dict.fromkeys(table["policy"])), metrics, cells, width)


def format_ci_table(table: pd.DataFrame, metrics: Iterable[str], width: int = 24) -> str:
    """A ``ci_table`` by policy as text: one row per metric, one column per policy (at least
    ``width`` wide), each cell 'mean ± half-width', the mean alone when the interval is undefined
    and 'n/a' when there is no value."""
    cells = {(r.policy, r.metric): _ci_text(r.mean, (r.ci_high - r.ci_low) / 2)
             for r in table.itertuples(index=False)}
    return _wide_text(list(dict.fromkeys(table["policy"])), metrics, cells, width)


def _wide_text(pols: list, metrics: Iterable[str], cells: dict, width: int) -> str:
    w = max([width] + [len(str(p)) + 2 for p in pols])
    lines = [f"{'metric':22s}" + "".join(f"{p:>{w}s}" for p in pols)]
    lines += [f"{m:22s}" + "".join(f"{cells.get((p, m), 'n/a'):>{w}s}" for p in pols) for m in metrics]
    return "\n".join(lines)


def _ci_text(mean: float, half: float) -> str:
    num = lambda x: f"{x:.4g}" if math.isfinite(x) else "n/a"  # noqa: E731
    return f"{num(mean)} ± {num(half)}" if math.isfinite(half) else num(mean)


# ------------------------------------------------------------------------------- fairness
def jain(x: ArrayLike) -> float:
    """Jain's index ``(sum x)^2 / (n sum x^2)``: 1 when equal, ``1/n`` when one node has it all.

    Always in ``[1/n, 1]`` (to rounding) and invariant under scaling by ``c > 0``. Values are
    divided by their maximum first, so that neither huge nor tiny values overflow or underflow
    the sum of squares. All zero gives 1; no value gives NaN.
    """
    a = _shares(x, "jain")
    if not a.size:
        return math.nan
    if a[-1] == 0:
        return 1.0
    a = a / a[-1]
    return float(a.sum() ** 2 / (a.size * np.dot(a, a)))


def gini(x: ArrayLike) -> float:
    """Gini coefficient, population form ``sum_i sum_j |x_i - x_j| / (2 n^2 mean)``.

    0 for equal shares, ``(n - 1) / n`` when one node holds everything (0.75 for
    ``[0, 0, 0, 1]``), so always in ``[0, 1)``; invariant under scaling by ``c > 0``. All zero
    gives 0; no value gives NaN.
    """
    a = _shares(x, "gini")
    n = a.size
    if not n:
        return math.nan
    total = a.sum()
    if a[0] == a[-1]:  # equal (or all zero): exactly 0, not a rounding residue
        return 0.0
    # sum_i sum_j |x_i - x_j| = 2 sum_i (2i - n - 1) x_(i) over sorted x, i = 1..n
    ranks = np.arange(1, n + 1)
    return max(0.0, float(np.dot(2 * ranks - n - 1, a) / (n * total)))


def lorenz(x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Lorenz curve: ``(share of nodes, share of the total)``, n + 1 points from (0, 0) to (1, 1).

    Nodes are sorted from the worst off; point k holds the k worst-off nodes. All zero gives the
    equality line; no value gives the single point ``([0], [0])``.
    """
    a = _shares(x, "lorenz")
    n = a.size
    p = np.arange(n + 1) / n if n else np.zeros(1)
    total = a.sum()
    if total == 0:
        return p, p.copy()
    return p, np.concatenate([[0.0], np.cumsum(a) / total])


def equality_gap_w1(x: ArrayLike) -> float:
    """Wasserstein-1 distance between the outcome distribution and the perfectly equal one.

    The equal distribution puts every node at the mean ``m``, a point mass, so the optimal
    transport plan is forced and W1 is exactly the mean absolute deviation ``mean |x - m|``
    (in the outcome's unit; ``scipy.stats.wasserstein_distance(x, [m])`` gives the same number).
    Scales with the values (W1 of ``c x`` is ``c`` W1 of ``x``); 0 when equal or all zero; NaN
    for no value.
    """
    a = _shares(x, "equality_gap_w1")
    if not a.size:
        return math.nan
    if a[0] == a[-1]:  # equal: exactly 0, not a rounding residue of the mean
        return 0.0
    return float(np.mean(np.abs(a - a.mean())))


def worst_decile_mean(x: ArrayLike) -> float:
    """Mean of the worst-off tenth of the nodes: the ``ceil(n / 10)`` smallest values (at least 1).

    NaN for no value.
    """
    a = _shares(x, "worst_decile_mean")
    if not a.size:
        return math.nan
    return float(a[:max(1, math.ceil(a.size / 10))].mean())


def min_max_ratio(x: ArrayLike) -> float:
    """``min / max``: 1 when equal (also when all are zero), 0 when some node gets nothing.

    NaN for no value.
    """
    a = _shares(x, "min_max_ratio")
    if not a.size:
        return math.nan
    return 1.0 if a[-1] == 0 else float(a[0] / a[-1])


def fairness_summary(x: ArrayLike) -> dict[str, float]:
    """Every index above for one outcome, plus n, mean, min and max (NaN entries ignored)."""
    a = _shares(x, "fairness_summary")
    empty = not a.size
    return {"n": int(a.size),
            "mean": math.nan if empty else float(a.mean()),
            "min": math.nan if empty else float(a[0]),
            "max": math.nan if empty else float(a[-1]),
            "jain": jain(a), "gini": gini(a), "min_max_ratio": min_max_ratio(a),
            "worst_decile_mean": worst_decile_mean(a), "equality_gap_w1": equality_gap_w1(a)}

