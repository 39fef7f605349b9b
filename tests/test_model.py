"""The model against theory: queues vs M/M/1 and M/M/c, Little's law, the energy ledger,
decision validation and the invariant checks."""
from __future__ import annotations

import math

import networkx as nx

import numpy as np
import pytest

from otmarl.policies import make_controller
from otmarl.scenarios.errors import DecisionError, InvariantError
from otmarl.scenarios.schema import Link, Scenario
from otmarl.simulator import Decision, Simulation, World, simulate
from otmarl.simulator.engine_fast import FastEngine
from otmarl.simulator.recorder import Recorder


def queue_scenario(rate_per_h: float, mean_work_s: float, servers: int, hours: float) -> Scenario:
    """One node with unlimited energy, Poisson arrivals, exponential work, FIFO, no deadlines."""
    return Scenario.model_validate({
        "name": "mmc", "horizon_h": hours, "control_interval_s": 3600,
        "network": {"topology": {"kind": "complete"}},
        "nodes": {"server": {
            "count": 1, "servers": servers,
            "battery": {"capacity_wh": 1e9, "initial_soc": 1.0, "min_soc": 0.0, "resume_soc": 0.0},
            "queue": {"capacity": 1_000_000, "discipline": "fifo"},
            "workload": {"arrival": {"kind": "poisson", "rate_per_h": rate_per_h},
                         "work_s": {"exponential": {"mean": mean_work_s}},
                         "deadline_s": 1e9}}}})


def erlang_c_wait(lam: float, mu: float, c: int) -> float:
    """Mean waiting time in queue of M/M/c (Erlang C)."""
    a = lam / mu
    rho = a / c
    s = sum(a**k / math.factorial(k) for k in range(c))
    top = a**c / math.factorial(c) / (1 - rho)
    return top / (s + top) / (c * mu - lam)


def batch_means(x: np.ndarray, batches: int = 30) -> tuple[float, float]:
    """Mean and its standard error from batch means (waits are autocorrelated)."""
    b = np.array_split(x, batches)
    m = np.array([v.mean() for v in b])
    return float(x.mean()), float(m.std(ddof=1) / math.sqrt(batches))


@pytest.mark.parametrize("servers,rho", [(1, 0.5), (1, 0.7), (3, 0.6)])
def test_waiting_time_matches_mmc(servers, rho):
    mean_work = 2.0
    lam = rho * servers / mean_work                        # per second
    res = simulate(queue_scenario(lam * 3600, mean_work, servers, 60.0),
                   make_controller("local"), seed=7)
    t = res.tasks[res.tasks["status"] == "completed_on_time"]
    wait = (t["start_s"] - t["generated_s"]).to_numpy()
    warm = wait[len(wait) // 20:]                          # drop the empty-queue start
    mean, se = batch_means(warm)
    theory = erlang_c_wait(lam, 1 / mean_work, servers)
    assert len(wait) > 100_000 * rho * servers / 2
    assert abs(mean - theory) < 4 * se, (mean, theory, se)
    assert abs(mean - theory) / theory < 0.1


def test_service_times_follow_the_work_distribution():
    res = simulate(queue_scenario(900, 2.0, 1, 20.0), make_controller("local"), seed=3)
    t = res.tasks[res.tasks["status"] == "completed_on_time"]
    np.testing.assert_allclose((t["finish_s"] - t["start_s"]).to_numpy(), t["work_s"].to_numpy(),
                               rtol=1e-9, atol=1e-9)   # absolute: times of order 1e5 s


def test_littles_law_on_queue_samples():
    """Time-average waiting count sampled at epoch ends equals lambda x mean wait (L = lambda W)."""
    sc = queue_scenario(0.8 * 3600, 1.0, 1, 200.0).model_copy(update={"control_interval_s": 60.0})
    res = simulate(Scenario.model_validate(sc.model_dump()), make_controller("local"), seed=11)
    T = 200 * 3600.0
    t = res.tasks
    start = t["start_s"].fillna(T).clip(upper=T).to_numpy()
    total_wait = (start - t["generated_s"].to_numpy()).sum()
    lam_w = total_wait / T                                 # lambda x W over the horizon
    sampled = res.timeseries["queue_len"].mean()           # L from 12,000 snapshots
    assert abs(sampled - lam_w) / lam_w < 0.1, (sampled, lam_w)


def solar_sharing() -> Scenario:
    return Scenario.model_validate({
        "name": "ledger", "horizon_h": 24, "control_interval_s": 900,
        "network": {"topology": {"kind": "star"}, "link": {"transfer_efficiency": 0.9}},
        "nodes": {"home": {
            "count": 5,
            "battery": {"capacity_wh": {"uniform": [500, 2000]}, "initial_soc": {"uniform": [0.1, 0.9]},
                        "charge_efficiency": 0.93, "discharge_efficiency": 0.91,
                        "max_charge_w": 800, "self_discharge_per_day": 0.02},
            "harvest": {"kind": "solar", "panel_area_m2": {"uniform": [1, 6]}},
            "idle_power_w": {"uniform": [10, 60]}, "active_power_w": 100,
            "workload": {"arrival": {"kind": "poisson", "rate_per_h": 20},
                         "work_s": {"uniform": [10, 120]}, "data_kb": 100, "deadline_s": 600}}},
        "controller": {"policy": "random", "params": {"p_act": 0.5}}})


def test_energy_ledger_closes_per_node_and_in_total():
    res = simulate(solar_sharing(), make_controller("random"), seed=5)
    ts = res.timeseries
    g = ts.groupby("node")
    init = res.nodes["initial_wh"].to_numpy()
    flows_in = g["harvested_wh"].sum() + g["delivered_wh"].sum()
    flows_out = sum(g[c].sum() for c in ("curtailed_wh", "consumed_idle_wh", "consumed_tasks_wh",
                                         "consumed_tx_wh", "self_discharge_wh", "conversion_loss_wh",
                                         "sent_wh"))
    final = ts[ts["epoch"] == ts["epoch"].max()].set_index("node")["stored_wh"]
    err = (init + flows_in - flows_out - final).to_numpy()
    scale = (init + flows_in).to_numpy()
    assert np.all(np.abs(err) <= 1e-9 * scale)
    e = res.summary["energy"]
    assert e["sent_wh"] > 0 and e["harvested_wh"] > 0 and e["curtailed_wh"] >= 0
    assert abs(e["transport_loss_wh"] - (e["sent_wh"] - e["delivered_wh"])) < 1e-9 * e["sent_wh"]
    assert e["delivered_wh"] < e["sent_wh"]                 # 90 % per hop
    stored = ts["stored_wh"].to_numpy()
    cap = np.repeat(res.nodes["capacity_wh"].to_numpy()[None, :], 96, 0).ravel()
    assert stored.min() >= 0 and np.all(stored <= cap * (1 + 1e-12))


def test_task_accounting_adds_up():
    res = simulate(solar_sharing(), make_controller("random"), seed=6)
    t = res.summary["tasks"]
    assert t["generated"] == (t["completed_on_time"] + t["completed_late"] + sum(t["dropped"].values())
                              + t["in_system_at_end"])
    assert t["offloaded"] > 0


def _world_at_first_epoch(sc: Scenario, seed: int = 1):
    w = World(sc, seed)
    eng = FastEngine(w)
    w.apply_faults(0)
    w.update_status(0.0, eng)
    return w, eng, w.observe(0, 0.0)


@pytest.mark.parametrize("decision,message", [
    (Decision(energy_src=[0], energy_dst=[1], energy_wh=[1e9]), "may send at most"),
    (Decision(energy_src=[0], energy_dst=[0], energy_wh=[1.0]), "between two nodes"),
    (Decision(energy_src=[0], energy_dst=[7], energy_wh=[1.0]), "is not a node index"),
    (Decision(energy_src=[0], energy_dst=[1], energy_wh=[-1.0]), "must be finite, > 0"),
    (Decision(task_src=[0], task_dst=[1], task_count=[10_000]), "tasks but has"),
])
def test_impossible_decisions_are_refused(decision, message):
    w, eng, obs = _world_at_first_epoch(solar_sharing())
    with pytest.raises(DecisionError, match=message):
        w.apply(decision, obs, 0.0, eng)


def test_receiver_headroom_and_link_limits_are_enforced():
    sc = solar_sharing()
    w, eng, obs = _world_at_first_epoch(sc)
    w.stored = np.where(np.arange(w.n) == 1, w.p.capacity_wh, w.stored)   # node 1 full
    obs = w.observe(0, 0.0)
    with pytest.raises(DecisionError, match="has room"):
        w.apply(Decision(energy_src=[0], energy_dst=[1], energy_wh=[obs.sendable_wh[0]]), obs, 0.0, eng)
    limited = Scenario.model_validate({**sc.model_dump(), "network": {
        "topology": {"kind": "star"}, "link": {"power_limit_w": 1.0}}})
    w, eng, obs = _world_at_first_epoch(limited)
    with pytest.raises(DecisionError, match="power limit"):
        w.apply(Decision(energy_src=[1], energy_dst=[2], energy_wh=[0.5]), obs, 0.0, eng)


def test_invariant_violation_is_reported_with_numbers():
    sc = solar_sharing()
    w = World(sc, 2)
    rec = Recorder(w)
    w.stored = w.stored + 1.0                               # energy from nowhere
    with pytest.raises(InvariantError, match=r"does not close: error .* Wh"):
        rec.check_invariants()


def test_positions_do_not_depend_on_when_they_are_read():
    """The spring layout is computed on first use from a seed drawn with the graph: reading the
    positions before or after a run gives the same map, and the run is the same either way."""
    sc = solar_sharing()

    def run(read_first: bool):
        sim = Simulation(sc, 4)
        xy = sim.world.info().positions.copy() if read_first else None
        assert (sim.world._positions._xy is None) != read_first
        ctl = make_controller("ot")
        ctl.reset(sim.world.info(), sim.world.rng["policy"])
        for _ in range(20):
            sim.step(ctl.decide(sim.observe()))
        return xy, sim.world.positions, sim.world.stored

    xy_first, xy_a, stored_a = run(True)
    _, xy_b, stored_b = run(False)
    assert xy_first.shape == (sc.n_nodes, 2) and np.isfinite(xy_first).all()
    assert np.array_equal(xy_first, xy_a) and np.array_equal(xy_a, xy_b)
    assert np.array_equal(stored_a, stored_b)
    assert not np.array_equal(World(sc, 5).positions, xy_b)       # the seed matters


@pytest.mark.parametrize("n", [30, 120])
def test_paths_from_every_source_at_once_match_one_source_at_a_time(n, monkeypatch):
    """Small networks compute paths from every source in one call (network.ALL_SOURCES_*): the
    distances, paths and routes are those of single-source calls, on a graph with failures."""
    from otmarl.simulator import network as N
    rng = np.random.default_rng(n)
    g = nx.connected_watts_strogatz_graph(n, 4, 0.3, seed=n)
    link = Link.model_validate({"transfer_efficiency": {"uniform": [0.8, 1.0]},
                                "latency_s": {"uniform": [0.01, 0.2]}})
    links = N.make_links(g, link, rng)
    up = rng.random(len(links)) > 0.1
    failed = rng.random(n) < 0.05

    def state():
        s = N.NetworkState(n, links, 200.0)
        s.set_state(up, failed)
        return s

    def routes(s: N.NetworkState) -> list:
        out = []
        for a in rng_q.permutation(n)[:40].tolist():
            for b in rng_q.permutation(n)[:10].tolist():
                try:
                    out.append((s.energy_route(a, b), s.task_route(a, b)))
                except KeyError:
                    out.append((s.energy_route(a, b), None))
        return out

    rng_q = np.random.default_rng(1)
    batch = state()
    got = routes(batch)
    with monkeypatch.context() as m:
        m.setattr(N, "ALL_SOURCES_MAX", 0)
        m.setattr(N, "ALL_SOURCES_LATER", (0, 0))
        rng_q = np.random.default_rng(1)
        single = state()
        assert routes(single) == got
        assert len(batch.energy._dist) == n and len(single.energy._dist) == min(40, n)
        assert np.array_equal(batch.energy.rows(range(n)), single.energy.rows(range(n)))


def test_paths_to_neighbours_in_large_networks_are_found_without_full_rows():
    """From network.NEAR_MIN nodes on, a path between linked nodes comes from a search bounded by
    the link's weight: the same cost and links as a full row (weights here have no ties), and no
    row is kept."""
    from otmarl.simulator import network as N
    n = N.NEAR_MIN + 43
    rng = np.random.default_rng(7)
    g = nx.connected_watts_strogatz_graph(n, 6, 0.3, seed=7)
    link = Link.model_validate({"transfer_efficiency": {"uniform": [0.5, 1.0]},
                                "latency_s": {"uniform": [0.01, 0.2]}})
    links = N.make_links(g, link, rng)
    up, failed = rng.random(len(links)) > 0.1, rng.random(n) < 0.05
    near, full = (N.NetworkState(n, links, 100.0) for _ in range(2))
    for s in (near, full):
        s.set_state(up, failed)
    pairs = [(int(a), int(b)) for a, b in zip(links.u, links.v)][::3]
    pairs += [(b, a) for a, b in pairs]
    usable = up & ~failed[links.u] & ~failed[links.v]
    linked = {(int(a), int(b)) for a, b in zip(links.u[usable], links.v[usable])}
    cut = {a for a, b in pairs if (min(a, b), max(a, b)) not in linked}    # these need rows
    full.energy.ensure(range(n))
    full.task.ensure(range(n))
    shorter = 0
    for a, b in pairs:
        assert near.energy_route(a, b) == full.energy_route(a, b)
        try:
            assert near.task_route(a, b) == full.task_route(a, b)
        except KeyError:
            with pytest.raises(KeyError):
                near.task_route(a, b)
        shorter += len(full.energy.edges(a, b)) > 1 if full.energy_route(a, b)[1] > 0 else 0
    assert shorter > 10                 # some best paths are not the direct link
    assert len(cut) > 5 and set(near.energy._dist) <= cut and set(near.task._dist) <= cut
