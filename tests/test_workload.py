"""Task generation (simulator/workload.py) against the arrival processes it draws: counts and
their spread over many nodes, the on/off structure of bursty arrivals, and the task order."""
from __future__ import annotations

import numpy as np

from otmarl.scenarios.schema import Scenario
from otmarl.simulator.workload import generate


def scenario(arrival: dict, count: int, hours: float) -> Scenario:
    return Scenario.model_validate({
        "name": "load", "horizon_h": hours, "control_interval_s": 3600,
        "network": {"topology": {"kind": "star"}},
        "nodes": {"a": {"count": count, "battery": {"capacity_wh": 1.0}, "workload": {
            "arrival": arrival, "work_s": 1.0, "deadline_s": {"uniform": [10, 20]}}}}})


def per_node(sc: Scenario, seed: int) -> tuple[np.ndarray, object]:
    t = generate(sc, np.zeros(sc.n_nodes, np.int64), np.random.default_rng(seed))
    return np.bincount(t.origin, minlength=sc.n_nodes), t


def test_poisson_counts_have_the_mean_and_variance_of_a_poisson_process():
    """2000 nodes at 6 per hour for 10 hours: each count is Poisson(60), so the total is within
    4 standard deviations of 120,000 and the counts' variance over mean is 1 +- 0.15."""
    counts, t = per_node(scenario({"kind": "poisson", "rate_per_h": 6}, 2000, 10), 3)
    assert abs(counts.sum() - 120_000) < 4 * np.sqrt(120_000)
    assert abs(counts.var(ddof=1) / counts.mean() - 1) < 0.15
    assert np.all(np.diff(t.gen_s) >= 0) and t.gen_s.min() >= 0 and t.gen_s.max() < 36_000
    assert np.all((t.deadline_s - t.gen_s >= 10) & (t.deadline_s - t.gen_s <= 20))


def test_bursty_arrivals_come_in_on_periods():
    """On 1 h at 12 per hour, off 2 h at none: the long-run rate is 12 / 3 = 4 per hour; counts
    over a day spread far more than Poisson's (the on time varies); gaps of an off period
    (mean 2 h) appear, which a Poisson process at 4 per hour would almost never leave."""
    arrival = {"kind": "bursty", "on_rate_per_h": 12, "off_rate_per_h": 0, "mean_on_h": 1, "mean_off_h": 2}
    counts, _ = per_node(scenario(arrival, 400, 300), 5)
    assert abs(counts.sum() / (400 * 300) - 4) < 0.12
    day, t = per_node(scenario(arrival, 2000, 24), 6)
    assert day.var(ddof=1) / day.mean() > 3
    node0 = np.sort(t.gen_s[t.origin == int(np.argmax(day))])
    assert np.diff(node0).max() > 3600


def test_tasks_are_numbered_by_time_then_origin():
    """By time, and equal times (trace workloads can have them) by origin node."""
    from otmarl.simulator.workload import _time_order
    gen = np.array([3.0, 1.0, 3.0, 2.0, 1.0])
    origin = np.array([4, 2, 0, 1, 1])
    assert _time_order(gen, origin).tolist() == [4, 1, 3, 2, 0]
    assert _time_order(np.array([2.0, 0.5, 1.0]), np.array([0, 1, 2])).tolist() == [1, 2, 0]
