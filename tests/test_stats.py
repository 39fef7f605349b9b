"""The one statistics module: hand-computed confidence intervals, the documented edge cases of every
statistic, and properties (hypothesis) that hold for any input: Jain in [1/n, 1], Gini in [0, 1),
invariance under permutation and scaling, the interval around its mean."""
from __future__ import annotations

import math
from dataclasses import astuple

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otmarl.analysis.stats import (StatisticsError, ci_table, equality_gap_w1, fairness_summary,
                                   format_ci_table, gini, jain, lorenz, mean_ci, min_max_ratio,
                                   worst_decile_mean)
from otmarl.analysis import stats
from otmarl.scenarios.errors import UserError

# Student t quantiles at 97.5 % from any printed table, for 1, 2 and 3 degrees of freedom
T1, T2, T3 = 12.7062047362, 4.30265272975, 3.18244630528
FAIRNESS = (jain, gini, equality_gap_w1, worst_decile_mean, min_max_ratio)


# ----------------------------------------------------------------------------- by hand
def test_mean_ci_by_hand():
    c = mean_ci([2, 4])                                   # mean 3, s = sqrt(2), half = t1 s / sqrt(2)
    assert (c.mean, c.n) == (3.0, 2)
    np.testing.assert_allclose([c.low, c.high, c.half_width], [3 - T1, 3 + T1, T1], rtol=1e-10)
    c = mean_ci([1, 2, 3])                                # s = 1
    np.testing.assert_allclose(c.half_width, T2 / math.sqrt(3), rtol=1e-10)
    c = mean_ci([6, 1, 3, 2])                             # squares about 3: 9 + 4 + 0 + 1 = 14
    np.testing.assert_allclose(c.half_width, T3 * math.sqrt(14 / 3) / 2, rtol=1e-10)
    c = mean_ci([1, 2, 3], level=0.5)                     # the t(0.75, 2) quantile: 0.8165 = sqrt(2/3)
    np.testing.assert_allclose(c.half_width, math.sqrt(2 / 3) / math.sqrt(3), rtol=1e-10)


def test_mean_ci_edge_cases():
    empty = mean_ci([])
    assert empty.n == 0 and all(math.isnan(v) for v in (empty.mean, empty.low, empty.high))
    assert mean_ci([np.nan, np.nan]).n == 0
    one = mean_ci([7.5, np.nan])                          # n = 1: a mean, no interval
    assert (one.mean, one.n) == (7.5, 1) and math.isnan(one.low) and math.isnan(one.half_width)
    same = mean_ci([4, 4, 4])                             # no spread: a zero-width interval
    assert (same.low, same.mean, same.high) == (4.0, 4.0, 4.0)
    v = 3111 * 899.4625346755138                          # their float mean is an ulp off: still exact
    assert astuple(mean_ci([v, v, v])) == (v, v, v, 3)
    assert (gini([v, v, v]), equality_gap_w1([v, v, v]), jain([v, v, v])) == (0.0, 0.0, 1.0)
    assert mean_ci([-3, -1]).mean == -2.0                 # negative values are fine for a mean
    with pytest.raises(StatisticsError, match="finite; got inf"):
        mean_ci([1, math.inf])
    with pytest.raises(UserError, match="level=1.5 must be in"):
        mean_ci([1, 2], level=1.5)


def test_ci_table_groups_metrics_and_leaves_nan_cells_out():
    rows = pd.DataFrame({"policy": ["a", "a", "b", "b", "a"], "x": [2, 4, 1, 1, np.nan],
                         "y": [1.0, np.nan, 5.0, 7.0, 3.0]})
    t = ci_table(rows, ["x", "y"]).set_index(["policy", "metric"])
    assert list(t.columns) == ["mean", "ci_low", "ci_high", "n"]
    assert list(t.index) == [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]
    assert t.loc[("a", "x"), "n"] == 2 and t.loc[("a", "y"), "n"] == 2   # one NaN left out each
    np.testing.assert_allclose(t.loc[("a", "x"), "ci_high"], 3 + T1, rtol=1e-10)
    assert t.loc[("b", "x"), "ci_low"] == t.loc[("b", "x"), "ci_high"] == 1.0
    assert ci_table(rows.iloc[:0], ["x"]).empty


def test_ci_table_as_text_by_hand():
    rows = pd.DataFrame({"policy": ["a", "a", "marl:runs/a-long-name", "b"], "x": [2, 4, 7, np.nan]})
    text = format_ci_table(ci_table(rows, ["x"]), ["x"]).splitlines()
    assert text[0].split() == ["metric", "a", "marl:runs/a-long-name", "b"]
    assert text[1].split() == ["x", "3", "±", "12.71", "7", "n/a"]   # n = 2, n = 1, n = 0
    assert len(text[0]) == len(text[1]) == 22 + 3 * 24                 # the long name fits in 24


def test_fairness_edge_cases_are_the_documented_ones():
    for f in FAIRNESS:
        assert math.isnan(f([])) and math.isnan(f([np.nan])), f.__name__
        with pytest.raises(StatisticsError, match=">= 0"):
            f([1, -0.5])
        with pytest.raises(StatisticsError, match="finite"):
            f([1, math.inf])
    assert [f([0, 0, 0]) for f in FAIRNESS] == [1.0, 0.0, 0.0, 0.0, 1.0]   # all zero: equal
    assert [f([3.0]) for f in FAIRNESS] == [1.0, 0.0, 0.0, 3.0, 1.0]        # one value
    p, L = lorenz([])
    assert p.tolist() == [0.0] and L.tolist() == [0.0]
    assert fairness_summary([])["n"] == 0
    # tiny values: their squares underflow to 0, Jain must not call them equal
    assert jain([1e-200, 0.0]) == 0.5 and jain([1e200, 1e200]) == 1.0


# --------------------------------------------------------------------------- properties
share = st.one_of(st.just(0.0), st.floats(1e-6, 1e6))
shares = st.lists(share, min_size=1, max_size=40)
reals = st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=40)
factor = st.floats(1e-3, 1e3)


@given(shares)
def test_jain_lies_in_one_over_n_to_one(x):
    j = jain(x)
    assert 1 / len(x) - 1e-12 <= j <= 1 + 1e-12


@given(shares)
def test_gini_lies_in_zero_to_one_and_matches_pairs(x):
    g, n = gini(x), len(x)
    assert 0 <= g <= (n - 1) / n + 1e-12 < 1
    a = np.asarray(x)
    if a.sum() > 0:
        pairs = np.abs(a[:, None] - a[None, :]).sum() / (2 * n * n * a.mean())
        np.testing.assert_allclose(g, pairs, rtol=1e-9, atol=1e-12)


@given(shares, st.randoms(use_true_random=False))
def test_every_statistic_ignores_the_order_of_its_input(x, rnd):
    y = list(x)
    rnd.shuffle(y)
    for f in FAIRNESS:
        assert f(y) == f(x), f.__name__                       # to the bit: values are sorted first
    np.testing.assert_array_equal(astuple(mean_ci(y)), astuple(mean_ci(x)))   # NaN equals NaN here
    np.testing.assert_array_equal(lorenz(y)[1], lorenz(x)[1])


@given(shares, factor)
def test_scaling_leaves_jain_and_gini_and_scales_w1_and_the_ci(x, c):
    y = [c * v for v in x]
    np.testing.assert_allclose([jain(y), gini(y)], [jain(x), gini(x)], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(equality_gap_w1(y), c * equality_gap_w1(x), rtol=1e-9, atol=1e-9)
    cx, cy = mean_ci(x), mean_ci(y)
    np.testing.assert_allclose([cy.mean, cy.half_width], [c * cx.mean, c * cx.half_width],
                               rtol=1e-9, atol=1e-12 * max(y))


@given(reals)
def test_the_interval_contains_the_mean(x):
    c = mean_ci(x)
    assert c.n == len(x) and c.low <= c.mean <= c.high
    assert math.isclose(c.high - c.mean, c.mean - c.low, rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=50)
@given(shares)
def test_w1_gap_is_zero_only_when_equal_and_lorenz_stays_below_the_diagonal(x):
    w = equality_gap_w1(x)
    assert 0 <= w <= max(x) - min(x) + 1e-9
    assert (w == 0) == (max(x) == min(x))
    p, L = lorenz(x)
    assert L[0] == 0 and math.isclose(L[-1], 1) and np.all(L <= p + 1e-12)
    assert np.all(np.diff(L) >= -1e-15)


# --------------------------------------------------------------------- paired differences
def test_paired_table_by_hand():
    rows = pd.DataFrame({"policy": ["local"] * 3 + ["ot"] * 3 + ["greedy"] * 3,
                         "seed": [0, 1, 2] * 3,
                         "x": [1.0, 2.0, 3.0, 2.0, 3.0, 4.0, 1.0, 3.0, 2.0]})
    t = stats.paired_table(rows, ["x"], "local").set_index("policy")
    ot, greedy = t.loc["ot"], t.loc["greedy"]
    # ot is exactly 1 above local on every seed: a zero-width interval that excludes 0
    assert (ot["mean_diff"], ot["ci_low"], ot["ci_high"], ot["n"]) == (1.0, 1.0, 1.0, 3)
    assert bool(ot["significant"])
    # greedy - local = (0, 1, -1): mean 0, t(0.975, 2) * 1 / sqrt(3) = 2.4841 either side
    assert greedy["mean_diff"] == 0 and not bool(greedy["significant"])
    assert greedy["ci_high"] == pytest.approx(4.302652729749464 / 3 ** 0.5, rel=1e-12)


def test_paired_table_pairs_by_seed_and_leaves_out_missing():
    rows = pd.DataFrame({"policy": ["local", "local", "ot", "ot", "ot"], "seed": [0, 1, 1, 0, 2],
                         "x": [1.0, np.nan, 5.0, 3.0, 9.0]})
    t = stats.paired_table(rows, ["x"], "local").iloc[0]
    assert (t["mean_diff"], t["n"]) == (2.0, 1) and not t["significant"]   # only seed 0 pairs


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=20), st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=20))
def test_paired_difference_changes_sign_with_the_baseline(a, b):
    n = min(len(a), len(b))
    rows = pd.DataFrame({"policy": ["p"] * n + ["q"] * n, "seed": list(range(n)) * 2, "x": a[:n] + b[:n]})
    pq = stats.paired_table(rows, ["x"], "p").iloc[0]
    qp = stats.paired_table(rows, ["x"], "q").iloc[0]
    assert pq["mean_diff"] == pytest.approx(-qp["mean_diff"], abs=1e-6)
    assert pq["significant"] == qp["significant"]
    if pq["n"] >= 2 and np.isfinite(pq["ci_low"]):
        assert pq["ci_low"] <= pq["mean_diff"] <= pq["ci_high"]
