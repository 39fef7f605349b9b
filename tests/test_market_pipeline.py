"""The one market pipeline (policies/clearing.py) and the solver registry, in real simulations."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otmarl.policies import make_controller
from otmarl.policies import market as M
from otmarl.policies.clearing import Clearing, clear_markets
from otmarl.policies.transport import SOLVERS
from otmarl.scenarios import load
from otmarl.scenarios.errors import ScenarioError, UserError
from otmarl.simulator import simulate
from otmarl.simulator.control import Decision, Observation, WorldInfo


def _short(name: str, hours: float, **params):
    sc = load(name, overrides=[f"horizon_h={hours}"])
    ctl = sc.controller.model_copy(update={"params": params})
    return sc.model_copy(update={"controller": ctl})


class FloodRule:
    """A clearing rule that asks for far more than anyone may send or take: every pair 1e6."""

    name = "flood"

    def reset(self, world_info: WorldInfo, rng: np.random.Generator) -> None:
        self.info, self.p = world_info, M.parse_params(world_info, M.MarketParams)

    def decide(self, obs: Observation) -> Decision:
        return clear_markets(self, M.build_markets(obs, self.info, self.p), obs, self.info).decision

    def clear_energy(self, m: M.EnergyMarket, obs: Observation) -> Clearing:
        return Clearing(np.full(m.cost.shape, 1e6), "flood", "heuristic", 0.0)

    def clear_tasks(self, m: M.TaskMarket, obs: Observation) -> Clearing:
        return Clearing(np.full(m.cost.shape, 1e6), "flood", "heuristic", 0.0)


def test_the_pipeline_fits_any_plan_into_the_worlds_limits():
    # the world rejects an impossible decision (DecisionError), so finishing the run is the check
    res = simulate(_short("microgrid-solar", 24), FloodRule(), seed=2)
    f = res.flows
    energy, tasks = f[f["kind"] == "energy"], f[f["kind"] == "task"]
    assert len(energy) > 0 and set(energy["solver"]) == {"flood"}
    assert np.isfinite(energy["cost"]).all()
    offers = f[f["kind"] == "energy_offer"]
    sent = energy.groupby(["epoch", "src"])["amount"].sum()
    assert (sent <= offers.groupby(["epoch", "src"])["amount"].sum().reindex(sent.index) * (1 + 1e-9)).all()
    assert abs(res.summary["energy"]["ledger_error_wh"]) < 1e-6
    assert len(tasks) == 0 or (tasks["amount"] == tasks["amount"].round()).all()


@pytest.mark.parametrize("policy", ["greedy", "proportional", "threshold"])
def test_baseline_clearings_are_audited_like_ot(policy):
    f = simulate(_short("microgrid-solar", 24), make_controller(policy), seed=2).flows
    energy = f[f["kind"] == "energy"]
    assert len(energy) > 0
    assert set(energy["solver"]) == {policy} and set(energy["status"]) == {"heuristic"}
    assert (energy["objective"] >= 0).all()


def test_unknown_solver_is_refused_by_the_loader_with_did_you_mean():
    with pytest.raises(ScenarioError, match=r"controller\.params\.solver=exakt: expected 'exact', "
                                            r"'network', .*got the string 'exakt'; did you mean 'exact'\?"):
        load("microgrid-solar", overrides=["controller.params.solver=exakt"], policy="ot")
    # parameters that did not come through a scenario file are checked when the controller starts
    with pytest.raises(UserError, match=r"controller.params.solver: Input should be 'exact'"):
        simulate(_short("microgrid-solar", 6, solver="magic"), make_controller("ot"), seed=1)


def test_the_scenarios_solver_and_controller_names_are_the_registries():
    from otmarl.policies import REGISTRY
    from otmarl.scenarios.controllers import CONTROLLERS, OTParams, SOLVERS as SCENARIO_SOLVERS
    assert tuple(SOLVERS) == SCENARIO_SOLVERS
    assert set(REGISTRY) == set(CONTROLLERS)
    assert [OTParams(solver=name).solver for name in SOLVERS] == list(SOLVERS)


def test_hierarchical_draws_from_the_runs_seed():
    sc = _short("microgrid-solar", 12, solver="hierarchical")
    first = simulate(sc, make_controller("ot"), seed=5).flows
    again = simulate(sc, make_controller("ot"), seed=5).flows
    assert len(first) > 0
    assert first.equals(again)


@given(st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=40))
def test_median_of_sorted_deadlines_equals_np_median_bit_for_bit(xs):
    x = np.sort(np.array(xs))
    assert M.median_sorted(x) == float(np.median(x))


def test_latency_only_path_costs_order_pairs_by_transit_and_stay_worth_trading():
    from otmarl.scenarios.controllers import OTParams
    p = OTParams(path_costs="latency")
    transit = np.array([[1.0, 4.0, np.inf], [2.0, 8.0, 3.0]])
    reachable = np.array([[True, True, False], [True, True, True]])
    cost = M._latency_cost(transit, reachable, p)
    ok = np.isfinite(cost)
    assert (ok == reachable).all() and (cost[ok] < p.max_loss).all() and (cost[ok] >= p.wear_cost).all()
    order = np.argsort(transit[ok])
    assert (np.diff(cost[ok][order]) > 0).all()               # the faster pair is the cheaper


def test_path_costs_latency_runs_and_refuses_the_graph_solver(cli):
    sc = load("edge-offload", ["horizon_h=2", "controller.params.path_costs=latency"], policy="ot")
    s = simulate(sc, make_controller("ot"), seed=3).summary
    assert abs(s["energy"]["ledger_error_wh"]) < 1e-9
    bad = cli("validate", "edge-offload", "--set", "controller.policy=ot", "--set",
              "controller.params.solver=network", "--set", "controller.params.path_costs=latency")
    assert bad.returncode == 2 and "path_costs=latency: 'latency' needs a solver of cost matrices" in bad.stderr


def test_the_backlog_target_comes_from_the_shortest_deadline_unless_set():
    from otmarl.simulator import Simulation
    sc = load("edge-offload", ["horizon_h=1"])
    info = Simulation(sc, 0).world.info()
    b = M.backlog_epochs(info, M.MarketParams())
    for c, name in enumerate(info.class_names):
        wl = sc.nodes[name].workload
        want = 1.0 if wl is None else min(wl.deadline_s.support()[0] / sc.control_interval_s, 1.0)
        np.testing.assert_allclose(b[info.node_class == c], want)
    assert 0 < b.min() < 1                            # edge-offload: 30 s deadlines, 5-minute epochs
    assert M.backlog_epochs(info, M.MarketParams(backlog_epochs=2.0)) == 2.0
