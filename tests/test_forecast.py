"""The market's forecast: the expected harvest a controller may use, and the projection of each
node's store over the window (levels 'forecast'), each checked against an independent computation."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy.stats import norm

from otmarl import scenarios
from otmarl.policies import market as M
from otmarl.scenarios.controllers import MarketParams
from otmarl.simulator.harvest import clipped_normal_mean
from otmarl.simulator.world import World


@pytest.mark.parametrize("mu,s", [(0.75, 0.2), (0.5, 0.5), (0.0, 1.0), (1.0, 0.01), (0.3, 0.0)])
def test_the_mean_clearness_is_the_integral_of_the_clipped_normal(mu, s):
    if s == 0:
        want = mu
    else:
        want = integrate.quad(lambda z: min(max(mu + s * z, 0.0), 1.0) * norm.pdf(z), -12, 12,
                              points=[(0 - mu) / s, (1 - mu) / s], limit=200)[0]
    assert clipped_normal_mean(mu, s) == pytest.approx(want, abs=1e-9)


def test_the_solar_forecast_is_the_mean_of_what_is_harvested():
    """Over 20 seeds of 30 days at 100 nodes, the realised solar harvest averages to the forecast
    (the weather is drawn, and shared by a class: one seed alone can be 5 % off)."""
    sc = scenarios.load("microgrid-solar", ["horizon_h=720", "nodes.home.count=100"])
    ratios = []
    for seed in range(20):
        world = World(sc, seed=seed)
        fc = world.harvest.forecast(0, sc.n_epochs)
        got = np.array([world.harvest.step() for _ in range(sc.n_epochs)])
        solar = fc.sum(0) > 0
        assert solar.sum() == 100
        ratios.append(got[:, solar].sum() / fc[:, solar].sum())
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.025)


def test_constant_and_trace_forecasts_are_exact():
    sc = scenarios.load("regime-shift", ["horizon_h=12"])
    world = World(sc, seed=1)
    fc = world.harvest.forecast(0, sc.n_epochs)
    got = np.array([world.harvest.step() for _ in range(sc.n_epochs)])
    known = np.concatenate([idx for kind, idx, _, _ in world.harvest.parts if kind in ("constant", "trace")])
    assert len(known)
    np.testing.assert_allclose(got[:, known], fc[:, known], rtol=1e-12, atol=1e-12)


def test_the_window_is_cut_at_the_end_of_the_run():
    sc = scenarios.load("microgrid-solar", ["horizon_h=6"])
    world = World(sc, seed=0)
    assert world.harvest.forecast(sc.n_epochs - 2, 10).shape == (2, world.n)


def _walk(stored, cap, net, eta_c, pc, eta_d):
    """The store at the start and at the end of each epoch, one epoch at a time (h + 1, n)."""
    s, out = stored.copy(), [stored.copy()]
    for t in range(len(net)):
        s = np.minimum(s + np.where(net[t] > 0, eta_c * np.minimum(net[t], pc), net[t] / eta_d), cap)
        out.append(s)
    return np.array(out)


def _loop_low(stored, cap, net, eta_c, eta_d, pc, floor):
    """The projected lowest store, the share of the window before the store first falls below
    ``floor``, and what the full battery spills before the first epoch that draws on it, one
    epoch at a time (the reference for the closed form)."""
    s, low = stored.copy(), stored.copy()
    due = np.where(stored < floor, 0.0, np.nan)
    spill, drawn = np.zeros_like(stored), np.zeros(len(stored), bool)
    for t in range(len(net)):
        x = np.where(net[t] > 0, eta_c * np.minimum(net[t], pc), net[t] / eta_d)
        drawn |= x < 0
        spill += np.where(drawn, 0.0, np.maximum(s + x - cap, 0.0))
        s = np.minimum(s + x, cap)
        low = np.minimum(low, s)
        due = np.where(np.isnan(due) & (s < floor), (t + 1) / len(net), due)
    return low, np.where(np.isnan(due), 1.0, due), spill


def _plain(f, need, stored, cap, eta_c, eta_d, charge, floor):
    """``projected``'s walk written as whole-array expressions, each on a fresh array (the
    reference its in-place passes must equal to the bit): (low, due, room, spill, path)."""
    net = f - need
    x = eta_c * np.minimum(np.maximum(net, 0.0), charge) + np.minimum(net, 0.0) / eta_d
    X = np.cumsum(x, axis=0)
    M = np.maximum.accumulate(np.maximum(X, 0.0), axis=0)
    S = X + np.minimum(stored, cap - M)
    walk = np.vstack([stored[None, :], S])
    M0 = np.vstack([np.zeros((1, len(stored))), M])
    cols = np.arange(len(stored))
    at = walk.argmin(axis=0)
    short = walk < floor[None, :]
    due = np.where(short.any(0), short.argmax(0) / max(len(S), 1), 1.0)
    first = np.argmax(np.vstack([x < 0, np.ones((1, len(stored)), bool)]), axis=0)
    return (walk[at, cols], due, np.maximum(cap - stored - M0[at, cols], 0.0),
            np.maximum(stored + M0[first, cols] - cap, 0.0), S)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(0, 30), st.integers(0, 2**31 - 1))
def test_the_projected_low_is_the_epoch_by_epoch_walk(n, h, seed):
    rng = np.random.default_rng(seed)
    cap = rng.uniform(1, 10, n)
    stored = cap * rng.uniform(0, 1, n)
    harvest = rng.uniform(0, 3, (h, n)) * (rng.uniform(size=(h, n)) < 0.6)
    idle = rng.uniform(0, 2, n)
    info = SimpleNamespace(
        harvest_forecast=lambda k, w: harvest[k:k + w], dt_s=3600.0, mean_task_work_s=1.0,
        speed=np.ones(n), idle_power_w=idle, active_power_w=np.zeros(n), servers=np.ones(n),
        charge_efficiency=rng.uniform(0.8, 1, n), discharge_efficiency=rng.uniform(0.8, 1, n),
        max_charge_w=rng.uniform(0.5, 5, n), min_wh=cap * rng.uniform(0, 0.3, n))
    obs = SimpleNamespace(epoch=0, stored_wh=stored, capacity_wh=cap, arrivals_last=np.zeros(n),
                          idle_need_wh=idle, queue_work_s=np.zeros(n), busy_s=np.zeros(n))
    p = MarketParams(lookahead_epochs=h or None)
    pr = M.projected(obs, info, p)
    low, need = pr.low, pr.need
    window = harvest[:M.lookahead(info, p)]
    want, due, spill = _loop_low(stored, cap, window - idle[None, :], info.charge_efficiency,
                                 info.discharge_efficiency, info.max_charge_w, pr.floor)
    np.testing.assert_allclose(low, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pr.spill, spill, rtol=1e-12, atol=1e-12)
    # a delivery now raises the lowest point by itself up to ``room``, and by ``room`` beyond it
    net = window - idle[None, :]
    args = (cap, net, info.charge_efficiency, info.max_charge_w, info.discharge_efficiency)
    base = _walk(stored, *args)
    at = np.argmin(base, axis=0)
    cols = np.arange(n)
    for extra, gain in ((pr.room / 2, pr.room / 2), (pr.room + 1.0, pr.room)):
        more = _walk(np.minimum(stored + extra, cap), *args)
        ok = stored + extra <= cap
        np.testing.assert_allclose((more - base)[at, cols][ok], gain[ok], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pr.due, due)
    np.testing.assert_allclose(pr.floor, info.min_wh + idle / info.discharge_efficiency)
    np.testing.assert_allclose(need, idle)
    window_need = np.broadcast_to(pr.need, window.shape).copy()
    if len(window_need):
        window_need[0] = M.need_now(obs, info)
    plain = _plain(window, window_need, stored, cap, info.charge_efficiency, info.discharge_efficiency,
                   info.max_charge_w * (info.dt_s / 3600.0), pr.floor)
    for name, want in zip(("low", "due", "room", "spill", "path"), plain):
        np.testing.assert_array_equal(getattr(pr, name), want)
