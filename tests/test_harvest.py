"""Harvest models against hand computations, and Little's law on a built-in."""
from __future__ import annotations

import math

import numpy as np

from otmarl.policies import make_controller
from otmarl.scenarios import load, loads
from otmarl.scenarios.schema import Scenario
from otmarl.simulator import simulate
from otmarl.simulator.harvest import HarvestModel, solar_poa_wh_per_m2


def one_node(harvest: dict, hours: float = 48, dt: float = 900, **top) -> Scenario:
    return Scenario.model_validate({
        "horizon_h": hours, "control_interval_s": dt, "network": {"topology": {"kind": "complete"}},
        "nodes": {"n": {"count": 1, "battery": {"capacity_wh": 100}, "harvest": harvest}}, **top})


def _series(sc: Scenario, seed: int = 0) -> np.ndarray:
    hm = HarvestModel(sc, np.zeros(sc.n_nodes, np.int64), np.random.default_rng(seed))
    return np.array([hm.step() for _ in range(sc.n_epochs)])


def test_clear_sky_day_matches_solar_geometry():
    """A horizontal panel on 21 June at 52.5 N gets ~7-8.5 kWh/m^2 of clear-sky irradiance, and
    none at night; a south-facing tilted one more than a north-facing one."""
    sc = one_node({"kind": "solar", "panel_area_m2": 1.0, "tilt_deg": 0},
                  start="2024-06-21T00:00:00", location={"latitude_deg": 52.5, "longitude_deg": 13.4,
                                                          "timezone": "Europe/Berlin"})
    clear, used = solar_poa_wh_per_m2(sc, sc.nodes["n"].harvest)
    day = clear[:96].sum() / 1000
    assert 7.0 < day < 8.5, day
    np.testing.assert_array_equal(clear, used)
    assert clear[:8].max() == 0.0                     # 00:00-02:00 local: dark
    south = solar_poa_wh_per_m2(sc, sc.nodes["n"].harvest.model_copy(update={"tilt_deg": 60.0}))[0]
    north = solar_poa_wh_per_m2(sc, sc.nodes["n"].harvest.model_copy(
        update={"tilt_deg": 60.0, "azimuth_deg": 0.0}))[0]
    assert south.sum() > north.sum()


def test_solar_harvest_is_area_times_efficiency_times_clearness():
    h = {"kind": "solar", "panel_area_m2": 2.0, "efficiency": 0.2,
         "cloud": {"mean_clearness": 0.8, "variability": 0.0}}
    sc = one_node(h)
    clear, _ = solar_poa_wh_per_m2(sc, sc.nodes["n"].harvest)
    np.testing.assert_allclose(_series(sc)[:, 0], 2.0 * 0.2 * 0.8 * clear, rtol=1e-12)


def test_cloud_process_mean_and_spread():
    h = {"kind": "solar", "panel_area_m2": 1.0, "efficiency": 1.0,
         "cloud": {"mean_clearness": 0.6, "variability": 0.15, "correlation_h": 1, "shared": 0.0}}
    sc = one_node(h, hours=24 * 60)
    clear, _ = solar_poa_wh_per_m2(sc, sc.nodes["n"].harvest)
    k = _series(sc)[:, 0][clear > 50] / clear[clear > 50]
    assert abs(k.mean() - 0.6) < 0.02 and 0.1 < k.std() < 0.2


def test_tmy_file_shipped_with_pvlib_works_offline():
    sc = one_node({"kind": "solar", "panel_area_m2": 1.0, "efficiency": 1.0, "irradiance": "tmy"},
                  hours=24 * 7, start="2024-07-01T00:00:00")
    e = _series(sc)[:, 0]
    assert e.sum() > 1000 and e.max() < 1100 * 0.25     # Wh per 15-minute epoch on 1 m^2
    assert (e[:4] == 0).all()                            # midnight


def test_wind_power_curve():
    """A calm site gives nothing; a constant storm above cut-out gives nothing; in between the
    curve is followed, and the long-run mean matches a Weibull expectation."""
    base = {"kind": "wind", "power_curve_speed_m_s": [0, 3, 12, 25, 25.01],
            "power_curve_w": [0, 0, 1000, 1000, 0], "weibull_k": 2.0, "correlation_h": 2}
    sc = one_node({**base, "mean_speed_m_s": 7.0}, hours=24 * 200, dt=3600)
    e = _series(sc)[:, 0]
    assert e.min() >= 0 and e.max() <= 1000
    from scipy.integrate import quad
    lam = 7.0 / math.gamma(1.5)
    pdf = lambda v: 2 / lam * (v / lam) * math.exp(-(v / lam) ** 2)
    curve = lambda v: np.interp(v, base["power_curve_speed_m_s"], base["power_curve_w"], left=0, right=0)
    expected = quad(lambda v: curve(v) * pdf(v), 0, 40, limit=200)[0]
    assert abs(e.mean() - expected) / expected < 0.05, (e.mean(), expected)


def test_trace_harvest_is_integrated_exactly(tmp_path):
    (tmp_path / "t.csv").write_text("hour,power_w\n0,10\n0.5,30\n1.0,0\n")
    text = f"""
horizon_h: 3
control_interval_s: 1200
network: {{topology: {{kind: complete}}}}
nodes:
  n: {{count: 1, battery: {{capacity_wh: 100}},
       harvest: {{kind: trace, file: t.csv}}}}
"""
    (tmp_path / "s.yaml").write_text(text)
    sc = load(tmp_path / "s.yaml")
    e = _series(sc)[:, 0]
    # period 1.5 h (last step repeats the previous 0.5 h); 20-minute epochs
    # epoch 0: 0-20 min at 10 W = 3.333 Wh; epoch 1: 20-30 at 10 + 30-40 at 30 = 1.667 + 5 Wh
    np.testing.assert_allclose(e[:3], [10 / 3, 10 / 6 + 5.0, 10.0], rtol=1e-12)
    np.testing.assert_allclose(e.sum(), 2 * (5 + 15 + 0), rtol=1e-12)


def test_constant_harvest_and_loads_from_string():
    sc = loads("""
horizon_h: 2
control_interval_s: 600
network: {topology: {kind: complete}}
nodes:
  n: {count: 3, battery: {capacity_wh: 10}, harvest: {kind: constant, power_w: {uniform: [1, 2]}}}
""")
    e = _series(sc)
    assert e.shape == (12, 3)
    np.testing.assert_allclose(e, e[0][None, :].repeat(12, 0))
    assert ((e[0] >= 1 / 6) & (e[0] <= 2 / 6)).all()


def test_littles_law_on_a_built_in():
    """Summed over the 1000 sensors, the waiting count sampled at the 96 epoch ends estimates the
    time-average waiting count, which must equal (total waiting time) / horizon."""
    sc = load("sensor-field")
    res = simulate(sc, make_controller("local"), seed=1)
    T = sc.horizon_h * 3600
    t = res.tasks
    started = t["start_s"].to_numpy()
    leave = np.where(np.isnan(started), np.minimum(t["end_s"].fillna(T).to_numpy(), T), started)
    arrived = t["arrived_s"].to_numpy()
    waiting_time = np.clip(leave - arrived, 0, None).sum()
    lam_w = waiting_time / T
    L = res.timeseries.groupby("epoch")["queue_len"].sum().mean()
    assert abs(L - lam_w) / lam_w < 0.05, (L, lam_w)        # measured 1.2 % with seed 1
