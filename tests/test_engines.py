"""The fast engine must equal the reference engine (SimPy process per task) exactly."""
from __future__ import annotations

import numpy as np
import pytest

from otmarl.policies import make_controller
from otmarl.scenarios.schema import Scenario
from otmarl.simulator import engine_fast, simulate

N_SCENARIOS = 200


def random_scenario(seed: int) -> Scenario:
    """A small scenario drawn to hit every branch: queues that fill, deadlines that expire,
    batteries that brown out and block tasks, EDF and FIFO, several servers, faults, routing."""
    r = np.random.default_rng(seed)
    n_classes = int(r.integers(1, 3))
    nodes = {}
    for c in range(n_classes):
        light = bool(r.uniform() < 0.5)
        cap = float(r.uniform(0.5, 20))
        nodes[f"c{c}"] = {
            "count": int(r.integers(1, 4)),
            "battery": {"capacity_wh": {"uniform": [cap, cap * 1.5]},
                        "initial_soc": {"uniform": [0.0, 1.0]},
                        "min_soc": float(r.choice([0.0, 0.05, 0.1])), "resume_soc": 0.2,
                        "charge_efficiency": float(r.uniform(0.8, 1.0)),
                        "discharge_efficiency": float(r.uniform(0.8, 1.0)),
                        "max_charge_w": float(r.choice([1e9, 20.0])),
                        "max_discharge_w": float(r.choice([1e9, 30.0])),
                        "self_discharge_per_day": float(r.choice([0.0, 0.05]))},
            "harvest": {"kind": "constant", "power_w": {"uniform": [0.0, float(r.uniform(0, 40))]}},
            "idle_power_w": {"uniform": [0.0, float(r.uniform(0, 10))]},
            "active_power_w": float(r.uniform(0, 60)),
            "speed": {"uniform": [0.5, 2.0]},
            # half the classes in the regime of the vectorised paths (one server, roomy queue,
            # light load), half in the event kernel's (several servers, tiny queues, bursts)
            "servers": 1 if light else int(r.integers(1, 4)),
            "queue": {"capacity": int(r.integers(20, 40)) if light else int(r.integers(1, 8)),
                      "discipline": str(r.choice(["fifo", "edf"]))},
            "on_down": str(r.choice(["hold", "drop"])),
            "workload": {"arrival": {"kind": "poisson",
                                     "rate_per_h": float(r.uniform(5, 60) if light else r.uniform(20, 400))},
                         # light classes: some long tasks with loose deadlines, so that tasks
                         # still wait at a boundary on one server
                         "work_s": {"exponential": {"mean": float(r.uniform(5, 200 if light else 60))}},
                         "data_kb": {"uniform": [0, 50]},
                         "deadline_s": {"uniform": [10, float(r.uniform(20, 2400 if light else 900))]}},
        }
    n = sum(c["count"] for c in nodes.values())
    topo = r.choice(["complete", "star", "tree"]) if n > 1 else "complete"
    faults = {"random": {"node_mtbf_h": 0.5, "node_mttr_h": 0.1, "link_mtbf_h": 0.3,
                         "link_mttr_h": 0.1}} if r.uniform() < 0.4 else {}
    return Scenario.model_validate({
        "name": f"rand{seed}", "horizon_h": 1.0, "control_interval_s": float(r.choice([300, 600, 900])),
        "network": {"topology": {"kind": str(topo)},
                    "link": {"latency_s": {"uniform": [0.001, 5]}, "bandwidth_kbps": {"uniform": [1, 100]},
                             "tx_energy_wh_per_kb": {"uniform": [0, 0.001]},
                             "transfer_efficiency": {"uniform": [0.7, 1.0]}}},
        "nodes": nodes, "faults": faults,
        "controller": {"policy": "random", "params": {"p_act": float(r.uniform(0, 0.8))}}})


def _run(sc: Scenario, engine: str, seed: int):
    return simulate(sc, make_controller(sc.controller.policy), seed, engine=engine)


@pytest.mark.parametrize("seed", range(N_SCENARIOS))
def test_fast_equals_reference(seed, monkeypatch):
    sc = random_scenario(seed)
    ref = _run(sc, "reference", seed)
    _assert_same(_run(sc, "fast", seed), ref)      # these small epochs: the event walk
    monkeypatch.setattr(engine_fast, "SMALL_EPOCH", 0)
    _assert_same(_run(sc, "fast", seed), ref)      # the vectorised paths where they apply


def _assert_same(fast, ref):
    tf, tr = fast.tasks, ref.tasks
    assert len(tf) == len(tr)
    for col in ("status", "drop_reason", "node", "offloads"):
        np.testing.assert_array_equal(tf[col].to_numpy(), tr[col].to_numpy(), err_msg=col)
    for col in ("start_s", "finish_s", "end_s", "arrived_s"):
        np.testing.assert_allclose(tf[col].to_numpy(), tr[col].to_numpy(), rtol=1e-12, atol=1e-9,
                                   err_msg=col)
    for col in ("stored_wh", "harvested_wh", "curtailed_wh", "consumed_idle_wh", "consumed_tasks_wh",
                "consumed_tx_wh", "self_discharge_wh", "conversion_loss_wh", "unserved_wh", "sent_wh",
                "delivered_wh"):
        np.testing.assert_allclose(fast.timeseries[col].to_numpy(), ref.timeseries[col].to_numpy(),
                                   rtol=1e-12, atol=1e-12, err_msg=col)
    np.testing.assert_array_equal(fast.timeseries["browned"], ref.timeseries["browned"])
    assert fast.summary["tasks"] == ref.summary["tasks"]
    np.testing.assert_allclose(fast.summary["energy"]["unserved_wh"], ref.summary["energy"]["unserved_wh"],
                               rtol=1e-12, atol=1e-12)


def test_random_scenarios_exercise_every_branch():
    """The cross-check above is only as good as its coverage: every outcome must occur."""
    seen_reason, seen_status, brown, offl = set(), set(), 0, 0
    for seed in range(40):
        res = _run(random_scenario(seed), "fast", seed)
        seen_reason |= set(res.tasks["drop_reason"].astype(str))
        seen_status |= set(res.tasks["status"].astype(str))
        brown += int(res.timeseries["browned"].sum())
        offl += int((res.tasks["offloads"] > 0).sum())
    assert {"queue_full", "expired", "node_down"} <= seen_reason
    assert {"completed_on_time", "completed_late", "dropped"} <= seen_status
    assert brown > 0 and offl > 0


def test_cross_check_covers_every_fast_path(monkeypatch):
    """The random scenarios above must send node-epochs through each vectorised path (idle
    nodes; one server under FIFO and EDF, with and without tasks waiting at the boundary; several
    servers under FIFO and EDF), through
    the event walk's one-server shortcut (taken and refused) and through the full event walk, or
    the equality test would not cover them all."""
    FastEngine = engine_fast.FastEngine
    seen = dict.fromkeys(("idle", "fifo", "edf", "waiting", "several_fifo", "several_edf", "kernel",
                          "one_server", "refused"), 0)
    original = FastEngine._vectorised
    one_server = engine_fast._one_server

    def counting_one(*args):
        out = one_server(*args)
        seen["one_server" if out is not None else "refused"] += 1
        return out

    def counting(self, t0, t1, ids, is_arrival, service, energy, nodes, first, last, budget, serve):
        out = original(self, t0, t1, ids, is_arrival, service, energy, nodes, first, last, budget, serve)
        fast = out[0]
        served = fast & serve[nodes]
        waiting = np.add.reduceat((~is_arrival).astype(int), first) > 0
        seen["idle"] += int((fast & ~serve[nodes]).sum())
        seen["fifo"] += int((served & ~self.w.p.edf[nodes]).sum())
        seen["edf"] += int((served & self.w.p.edf[nodes]).sum())
        seen["waiting"] += int((served & waiting).sum())
        several = served & (self.w.p.servers[nodes] > 1)
        seen["several_fifo"] += int((several & ~self.w.p.edf[nodes]).sum())
        seen["several_edf"] += int((several & self.w.p.edf[nodes]).sum())
        seen["kernel"] += int((~fast).sum())
        return out

    monkeypatch.setattr(FastEngine, "_vectorised", counting)
    monkeypatch.setattr(engine_fast, "_one_server", counting_one)
    for small in (engine_fast.SMALL_EPOCH, 0):
        monkeypatch.setattr(engine_fast, "SMALL_EPOCH", small)
        for seed in range(N_SCENARIOS):
            _run(random_scenario(seed), "fast", seed)
    assert min(seen.values()) > 50, seen


def test_tasks_held_at_a_browned_out_node(monkeypatch):
    """Nodes without harvest brown out and hold their queues (on_down: hold) while tasks keep
    arriving some epochs and not others: the event walk's shortcut for a node that serves nothing
    and gets nothing must expire held tasks exactly as the reference engine does."""
    sc = Scenario.model_validate({
        "name": "held", "horizon_h": 3.0, "control_interval_s": 300.0,
        "network": {"topology": {"kind": "complete"}},
        "nodes": {"n": {"count": 3,
                        "battery": {"capacity_wh": 2.0, "initial_soc": {"uniform": [0.3, 0.6]},
                                    "min_soc": 0.1, "resume_soc": 0.5},
                        "harvest": {"kind": "constant", "power_w": 0.0},
                        "idle_power_w": 2.0, "active_power_w": 5.0, "servers": 1,
                        "queue": {"capacity": 50, "discipline": "edf"}, "on_down": "hold",
                        "workload": {"arrival": {"kind": "poisson", "rate_per_h": 6.0},
                                     "work_s": {"exponential": {"mean": 200.0}},
                                     "deadline_s": {"uniform": [600, 5400]}}}},
        "controller": {"policy": "local"}})
    held = engine_fast._held
    calls = []
    monkeypatch.setattr(engine_fast, "_held", lambda *a: calls.append(1) or held(*a))
    fast, ref = _run(sc, "fast", 3), _run(sc, "reference", 3)
    _assert_same(fast, ref)
    assert len(calls) > 5 and (fast.tasks["drop_reason"] == "expired").sum() > 5
