"""A large energy market kept sparse (``market.Pairs``: only the pairs efficient enough to pay) and
its exact solve on those pairs (``transport.solve_pairs``) give what the dense market gives."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from otmarl.policies import make_controller
from otmarl.policies import market as M
from otmarl.policies import ot as O
from otmarl.policies.transport import TransportInputError, solve, solve_pairs
from otmarl.scenarios import load
from otmarl.simulator import simulate
from otmarl.simulator.network import Links, NetworkState


def _network(n: int = 600, seed: int = 2) -> NetworkState:
    g = nx.random_geometric_graph(n, 0.08, seed=seed)
    e = np.array(sorted((min(a, b), max(a, b)) for a, b in g.edges), np.int64)
    rng = np.random.default_rng(seed)
    one = np.ones(len(e))
    return NetworkState(n, Links(e[:, 0], e[:, 1], one, one, one, rng.uniform(0.9, 0.99, len(e)), one), 1.0)


@pytest.mark.parametrize("n_src,n_dst", [(300, 40), (40, 300)])
def test_energy_pairs_are_the_reachable_entries_of_the_dense_matrix(n_src, n_dst):
    net = _network()
    rng = np.random.default_rng(n_src)
    nodes = rng.permutation(600)
    src, dst = np.sort(nodes[:n_src]), np.sort(nodes[n_src:n_src + n_dst])
    least = 0.8
    dense = _network().energy_efficiency(src, dst, least)      # a fresh network: no shared cache
    i, j, eff = net.energy_pairs(src, dst, least)
    want_i, want_j = np.nonzero(dense > 0)
    assert len(i) > 0 and (dense == 0).any()
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(j, want_j)
    np.testing.assert_array_equal(eff, dense[want_i, want_j])
    assert eff.min() >= least


@pytest.mark.parametrize("seed", range(6))
def test_solve_pairs_equals_the_dense_exact_solve(seed):
    rng = np.random.default_rng(seed)
    n_s, n_d = rng.integers(1, 80, 2)
    cost = rng.random((n_s, n_d))
    cost[rng.random(cost.shape) < 0.8] = np.inf
    a, b = rng.random(n_s), rng.random(n_d)
    pen = (np.zeros(n_s), 2 * rng.random(n_d))
    i, j = np.nonzero(np.isfinite(cost))
    exact = solve(a, b, cost, "exact", penalty=pen)
    order = rng.permutation(len(i))                       # the pairs in any order
    res = solve_pairs(a, b, i[order], j[order], cost[i, j][order], penalty=pen)
    assert res.status == "optimal" and res.plan is None
    np.testing.assert_allclose(res.total_cost, exact.total_cost, rtol=1e-9, atol=1e-12)
    assert res.lower_bound == res.objective
    plan = res.plan_coo.dense()
    assert np.all(plan[~np.isfinite(cost)] == 0)
    np.testing.assert_allclose(plan.sum(1) + res.unserved_supply, a, atol=1e-12)
    np.testing.assert_allclose(plan.sum(0) + res.unserved_demand, b, atol=1e-12)
    # the duals are feasible on every pair and priced within the penalties
    assert (cost[i, j] - res.u[i] - res.v[j]).min() >= -1e-9
    assert np.all(res.u <= pen[0] + 1e-12) and np.all(res.v <= pen[1] + 1e-12)


def test_solve_pairs_without_pairs_leaves_everything_unserved():
    res = solve_pairs([1.0, 2.0], [3.0], np.zeros(0, int), np.zeros(0, int), np.zeros(0), penalty=(0.0, 0.5))
    assert res.value == 0 and res.unserved_cost == pytest.approx(1.5) and res.lower_bound == pytest.approx(1.5)


@pytest.mark.parametrize("rows,cols,cost,match", [
    ([0, 0], [1, 1], [1.0, 2.0], "a pair is given twice"),
    ([0, 2], [0, 0], [1.0, 1.0], "indices below"),
    ([0], [0], [-1.0], "finite and >= 0"),
    ([0], [0], [np.inf], "finite and >= 0"),
    ([0, 1], [0], [1.0], "one length"),
])
def test_solve_pairs_refuses_bad_pairs(rows, cols, cost, match):
    with pytest.raises(TransportInputError, match=match):
        solve_pairs([1.0, 1.0], [1.0, 1.0], np.array(rows), np.array(cols), np.array(cost))


class TwinOT(O.OTController):
    """ot that also clears each epoch's energy market built sparse, for the same observation."""

    def decide(self, obs):
        least = self.least_efficiency()
        dense = M.build_markets(obs, self.info, self.p, least).energy
        above, M.SPARSE_ABOVE = M.SPARSE_ABOVE, 0
        try:
            sparse = M.build_markets(obs, self.info, self.p, least, sparse=self.solver.pairs).energy
        finally:
            M.SPARSE_ABOVE = above
        if dense is not None and dense.can_pair():
            assert sparse.pairs is not None
            self.seen.append((self.clear_energy(dense, obs), self.clear_energy(sparse, obs), dense, sparse))
        return super().decide(obs)


@pytest.mark.parametrize("name,solver", [("sensor-field", "exact"), ("sensor-field", "hierarchical"),
                                         ("edge-offload", "hierarchical"), ("microgrid-solar", "exact")])
def test_a_sparse_market_clears_at_the_dense_markets_optimum(name, solver):
    """Each epoch's energy market built both ways from the same observation: the same pairs, and
    clearings of the same total cost (plans may differ where optima tie), also when the store
    value splits each offer into two tiers; the sparse plan stays on the market's pairs."""
    ctl = TwinOT()
    ctl.seen = []
    sc = load(name, [f"controller.params.solver={solver}", "horizon_h=12"], "ot")
    simulate(sc, ctl, 5)
    assert len(ctl.seen) > 3
    for dc, sc_, dm, sm in ctl.seen:
        i, j = np.nonzero(np.isfinite(dm.cost))
        np.testing.assert_array_equal(sm.pairs.i, i)
        np.testing.assert_array_equal(sm.pairs.j, j)
        np.testing.assert_array_equal(sm.pairs.cost, dm.cost[i, j])
        np.testing.assert_array_equal(sm.demand_sent, dm.demand_sent)
        assert sc_.total_cost == pytest.approx(dc.total_cost, rel=1e-9, abs=1e-12)
        assert sc_.status == "optimal" and sc_.bound == pytest.approx(sc_.total_cost, rel=1e-12)
        on = set(zip(i.tolist(), j.tolist()))
        assert set(zip(sc_.plan.rows.tolist(), sc_.plan.cols.tolist())) <= on


class TwinTasksOT(O.OTController):
    """ot that also builds each epoch's task market cut to the requests an optimal plan needs."""

    def decide(self, obs):
        full = M.build_markets(obs, self.info, self.p, sparse=True).tasks
        at, M.FEW_REQUESTS_FROM = M.FEW_REQUESTS_FROM, 0
        try:
            near = M.build_markets(obs, self.info, self.p, sparse=True).tasks
            # a rule that is not least-cost (greedy, proportional, ...) always sees every request
            whole = M.build_markets(obs, self.info, self.p).tasks
        finally:
            M.FEW_REQUESTS_FROM = at
        if full is not None:
            np.testing.assert_array_equal(whole.requests.nodes, full.requests.nodes)
            np.testing.assert_array_equal(whole.cost, full.cost)
        if full is not None and len(full.offers.nodes) and np.isfinite(full.cost).any():
            self.seen.append((full, near, self.clear_tasks(full, obs), self.clear_tasks(near, obs)))
        return super().decide(obs)


def _moved(m, c):
    plan = np.asarray(c.plan.toarray() if hasattr(c.plan, "toarray") else c.plan)
    on = plan > 1e-12
    return float(plan.sum()), float((plan[on] * m.cost[on]).sum())


@pytest.mark.parametrize("name,solver,slow", [("sensor-field", "exact", 0.02), ("sensor-field", "hierarchical", 0.02),
                                              ("edge-offload", "exact", 5)])
def test_a_task_market_cut_to_its_cheapest_requests_clears_as_the_whole_one(name, solver, slow):
    """Each epoch's task market built whole and cut to each offer's cheapest requests
    (``market.cheapest``): the kept pairs cost the same to the bit, and an exact clearing moves as
    many tasks at the same total cost."""
    ctl = TwinTasksOT()
    ctl.seen = []
    # slow links: some requests are too far to meet any offered task's deadline
    sc = load(name, [f"controller.params.solver={solver}", "horizon_h=12", f"network.link.bandwidth_kbps={slow}"],
              "ot")
    simulate(sc, ctl, 7)
    assert len(ctl.seen) > 3
    fewer = 0
    for full, near, fc, nc in ctl.seen:
        np.testing.assert_array_equal(near.offers.nodes, full.offers.nodes)
        cols = np.searchsorted(full.requests.nodes, near.requests.nodes)
        np.testing.assert_array_equal(full.requests.nodes[cols], near.requests.nodes)
        np.testing.assert_array_equal(near.requests.amount, full.requests.amount[cols])
        kept = np.isfinite(near.cost)
        np.testing.assert_array_equal(near.cost[kept], full.cost[:, cols][kept])
        fewer += len(near.requests.nodes) < len(full.requests.nodes)
        if solver == "exact":
            (fm, fv), (nm, nv) = _moved(full, fc), _moved(near, nc)
            assert nm == pytest.approx(fm, rel=1e-9, abs=1e-9)
            assert nv == pytest.approx(fv, rel=1e-9, abs=1e-9)
    assert fewer > 0


def test_solve_pairs_leaves_nodes_without_a_pair_out_of_the_simplex():
    """Supplies and demands without a pair stay unserved at their penalty (their duals), and the
    rest is solved as the dense exact solve does; pairs that join only empty nodes keep the duals
    feasible."""
    rng = np.random.default_rng(11)
    a, b = rng.uniform(0.5, 2, 7), rng.uniform(0.5, 2, 6)
    cost = np.full((7, 6), np.inf)
    cost[:4, :3] = rng.uniform(0, 1, (4, 3))      # rows 4-6 and columns 3-5 have no pair
    i, j = np.nonzero(np.isfinite(cost))
    pen = (np.full(7, 0.1), np.full(6, 1.5))
    res = solve_pairs(a, b, i, j, cost[i, j], pen)
    dense = solve(a, b, cost, "exact", penalty=pen)
    assert res.objective == pytest.approx(dense.objective, rel=1e-9)
    np.testing.assert_array_equal(res.u[4:], 0.1)
    np.testing.assert_array_equal(res.v[3:], 1.5)
    np.testing.assert_allclose(res.unserved_supply[4:], a[4:])
    assert (cost[i, j] - res.u[i] - res.v[j]).min() >= -1e-9
    empty = solve_pairs([0.0, 1.0], [0.0, 2.0], np.array([0]), np.array([0]), np.array([0.5]), (0.0, 1.0))
    assert empty.value == 0 and empty.u[0] + empty.v[0] <= 0.5 and empty.status == "optimal"


@pytest.mark.parametrize("seed", range(6))
def test_solve_pairs_with_empty_supplies_and_demands(seed):
    """Empty supplies and demands (ot's two-tier clearing gives every offer a row of each tier)
    stay out of the simplex: the optimum is the dense solve's, the duals stay feasible on every
    pair, and a supply or demand left unserved is priced at its penalty."""
    rng = np.random.default_rng(seed)
    n_s, n_d = 9, 7
    a, b = rng.uniform(0.5, 2, n_s), rng.uniform(0.5, 2, n_d)
    a[rng.choice(n_s, 4, replace=False)] = 0.0
    b[rng.choice(n_d, 3, replace=False)] = 0.0
    cost = np.where(rng.uniform(size=(n_s, n_d)) < 0.5, rng.uniform(0, 1, (n_s, n_d)), np.inf)
    i, j = np.nonzero(np.isfinite(cost))
    pen = (rng.uniform(0, 0.3, n_s), rng.uniform(0.5, 1.5, n_d))
    res = solve_pairs(a, b, i, j, cost[i, j], pen)
    dense = solve(a, b, cost, "exact", penalty=pen)
    assert res.objective == pytest.approx(dense.objective, rel=1e-9, abs=1e-12)
    assert res.status == "optimal" and res.lower_bound == pytest.approx(res.objective)
    assert (cost[i, j] - res.u[i] - res.v[j]).min() >= -1e-9
    assert np.all(res.u <= pen[0] + 1e-12) and np.all(res.v <= pen[1] + 1e-12)
    # complementary slackness: what stays home or unmet is priced at its penalty
    np.testing.assert_allclose(res.u[res.unserved_supply > 1e-9], pen[0][res.unserved_supply > 1e-9], atol=1e-9)
    np.testing.assert_allclose(res.v[res.unserved_demand > 1e-9], pen[1][res.unserved_demand > 1e-9], atol=1e-9)
