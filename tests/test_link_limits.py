"""The one link-limit algorithm (policies/link_limits.py): never above a limit, never more than
asked, exact on hand-checked cases."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from otmarl.policies.link_limits import SAFETY, fit_link_limits


@st.composite
def transfers(draw):
    """Random links (limits incl. 0), transfers with random paths over them, random amounts."""
    n_links = draw(st.integers(1, 8))
    # limits 0 or in the range the docstring's rounding argument covers
    limit = np.array(draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-9, 1e3)),
                                   min_size=n_links, max_size=n_links)))
    n = draw(st.integers(0, 12))
    paths = [draw(st.lists(st.integers(0, n_links - 1), max_size=n_links, unique=True)) for _ in range(n)]
    amount = np.array(draw(st.lists(st.floats(0.0, 1e4), min_size=n, max_size=n)), float)
    return amount, paths, limit


def _load(amount, paths, n_links):
    load = np.zeros(n_links)
    for x, p in zip(amount, paths):
        load[p] += x
    return load


@settings(max_examples=300, deadline=None)
@given(transfers())
def test_never_above_a_limit_never_more_than_asked(case):
    amount, paths, limit = case
    out = fit_link_limits(amount, paths, limit)
    assert out.shape == amount.shape
    assert np.all(out >= 0) and np.all(out <= amount)
    load = _load(out, paths, len(limit))
    assert np.all(load <= limit), (load - limit).max()
    if np.all(_load(amount, paths, len(limit)) <= limit):      # nothing overloaded: untouched
        np.testing.assert_array_equal(out, amount)


def test_one_overloaded_link_is_filled_exactly_and_proportionally():
    # link 0 (limit 3) carries 2 + 4; link 1 (limit 10) carries 4 + 1: only link 0 is overloaded
    out = fit_link_limits(np.array([2.0, 4.0, 1.0]), [[0], [0, 1], [1]], np.array([3.0, 10.0]))
    np.testing.assert_allclose(out, [1.0 * (1 - SAFETY), 2.0 * (1 - SAFETY), 1.0 * (1 - SAFETY)], rtol=0)
    assert out[0] + out[1] <= 3.0


def test_a_transfer_cut_by_another_link_leaves_capacity_unused():
    # the docstring's example: A (limit 1) carries x1 = 1 and x2 = 1; x2 also crosses B (limit 0)
    out = fit_link_limits(np.array([1.0, 1.0]), [[0], [0, 1]], np.array([1.0, 0.0]))
    np.testing.assert_allclose(out, [0.5 * (1 - SAFETY), 0.0], rtol=0)


def test_a_limit_of_zero_stops_every_transfer_across_it():
    out = fit_link_limits(np.array([5.0, 3.0, 2.0]), [[1], [0, 1], [0]], np.array([10.0, 0.0]))
    assert out[0] == 0.0 and out[1] == 0.0 and out[2] == 2.0 * (1 - SAFETY)
