"""The hindsight bound: its program against an independent one, hand-checked cases, and no
controller beating it on the built-ins."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from scipy.optimize import linprog

from otmarl.policies import make_controller
from otmarl.policies.hindsight import hindsight_bound
from otmarl.policies.horizon_lp import (HorizonInputs, Program, energy_program, solve, solve_without_presolve,
                                        task_program)
from otmarl.scenarios.loader import load
from otmarl.simulator import simulate

LINKS = (np.array([0, 0, 1]), np.array([1, 2, 2]))     # a triangle on 3 nodes


def tiny_inputs(seed: int, K: int = 4) -> HorizonInputs:
    """3 nodes, 4 epochs, random batteries, harvest, failures and link limits."""
    r = np.random.default_rng(seed)
    n = 3
    alive = r.uniform(size=(K, n)) > 0.15
    usable = (r.uniform(size=(K, 3)) > 0.25) & alive[:, LINKS[0]] & alive[:, LINKS[1]]
    room = r.uniform(0.5, 3.0, n)
    return HorizonInputs(
        harvest_wh=r.uniform(0, 1.5, (K, n)) * (r.uniform(size=(K, n)) > 0.4), alive=alive,
        link_usable=usable, usable0_wh=room * r.uniform(0, 1, n), room_wh=room,
        eta_c=r.uniform(0.7, 1.0, n), eta_d=r.uniform(0.7, 1.0, n),
        charge_cap_wh=r.uniform(0.3, 2.0, n), discharge_cap_wh=r.uniform(0.3, 2.0, n),
        sd_share=r.choice([0.0, 0.05], n), idle_wh=r.uniform(0.2, 1.2, n), link_u=LINKS[0],
        link_v=LINKS[1], link_eff=r.uniform(0.6, 1.0, 3), link_cap_wh=r.choice([0.2, 0.8, np.inf], 3),
        dt_s=300.0, speed=np.ones(n), servers=np.ones(n, np.int64), active_w=np.ones(n))


def path_program_unserved(x: HorizonInputs) -> float:
    """The least unserved idle energy, formulated independently: scalar variables named one by one,
    transfers along every simple path of each epoch's usable graph (each hop carrying what is left
    of the amount after the hops before it), sent and received kept apart, a dense matrix, and the
    dual simplex."""
    K, n = x.shape
    names: dict = {}

    def v(*key) -> int:
        return names.setdefault(key, len(names))

    rows_ub: list[tuple[dict, float]] = []
    rows_eq: list[tuple[dict, float]] = []
    for k in range(K):
        g = nx.Graph()
        g.add_nodes_from(range(n))
        for e in np.flatnonzero(x.link_usable[k]):
            g.add_edge(int(x.link_u[e]), int(x.link_v[e]), e=int(e))
        paths = [p for a in range(n) for b in range(n) if a != b for p in nx.all_simple_paths(g, a, b)]
        arc_load: dict = {}
        sent = {i: {} for i in range(n)}
        recv = {i: {} for i in range(n)}
        for pi, p in enumerate(paths):
            share = 1.0
            for a, b in zip(p[:-1], p[1:]):
                arc_load.setdefault((g[a][b]["e"], a), {})[v("x", k, pi)] = share
                share *= x.link_eff[g[a][b]["e"]]
            sent[p[0]][v("x", k, pi)] = 1.0
            recv[p[-1]][v("x", k, pi)] = share
        for (e, _), row in arc_load.items():
            if np.isfinite(x.link_cap_wh[e]):
                rows_ub.append((row, x.link_cap_wh[e]))
        for i in range(n):
            keep = 1 - x.sd_share[i]
            rows_eq.append(({**{c: -a for c, a in sent[i].items()}, v("s", k, i): 1.0}, 0.0))
            rows_eq.append(({**{c: -a for c, a in recv[i].items()}, v("r", k, i): 1.0}, 0.0))
            before = {v("U", k - 1, i): 1.0} if k else {}
            u0 = 0.0 if k else x.usable0_wh[i]
            rows_ub.append(({v("s", k, i): 1.0, **{c: -a for c, a in before.items()}}, u0))
            avail = {v("s", k, i): keep, v("r", k, i): -keep, **{c: -keep for c in before}}
            rows_ub.append(({v("d", k, i): 1 / x.eta_d[i], **avail}, keep * u0))
            rows_ub.append(({v("U", k, i): 1.0, v("c", k, i): -x.eta_c[i], v("d", k, i): 1 / x.eta_d[i],
                             **avail}, keep * u0))
            rows_ub.append(({v("l", k, i): 1.0, v("c", k, i): 1.0, v("d", k, i): -1.0}, x.harvest_wh[k, i]))
    bounds = [_bound(x, key) for key in names]

    def dense(rows):
        a = np.zeros((len(rows), len(names)))
        for j, (row, _) in enumerate(rows):
            for c, val in row.items():
                a[j, c] += val
        return a, np.array([b for _, b in rows])

    cost = np.array([-1.0 if key[0] == "l" else 0.0 for key in names])
    (aub, bub), (aeq, beq) = dense(rows_ub), dense(rows_eq)
    res = linprog(cost, A_ub=aub, b_ub=bub, A_eq=aeq, b_eq=beq, bounds=bounds, method="highs-ds")
    assert res.status == 0, res.message
    return float((x.idle_wh * x.alive).sum() + res.fun)


def _bound(x: HorizonInputs, key: tuple) -> tuple[float, float]:
    """(lower, upper) of a variable of the path formulation."""
    kind, k, i = key
    if kind == "x":
        return 0.0, np.inf
    al = float(x.alive[k, i])
    top = {"U": x.room_wh[i], "s": np.inf if al else 0.0, "r": x.charge_cap_wh[i] * al,
           "d": x.discharge_cap_wh[i] * al, "c": x.charge_cap_wh[i], "l": x.idle_wh[i] * al}[kind]
    return 0.0, top


def program_unserved(x: HorizonInputs, method: str, network: str = "links") -> float:
    """'ipm', 'simplex' (through scipy) or 'no-presolve' (HiGHS's own dual simplex, the bound's)."""
    lp = Program()
    energy_program(lp, x, network=network)
    sol = solve_without_presolve(lp) if method == "no-presolve" else solve(lp, method)
    return float((x.idle_wh * x.alive).sum() + sol.objective)


@pytest.mark.parametrize("seed", range(12))
def test_energy_program_matches_a_path_formulation(seed):
    x = tiny_inputs(seed)
    want = path_program_unserved(x)
    for method in ("ipm", "simplex", "no-presolve"):
        np.testing.assert_allclose(program_unserved(x, method), want, rtol=1e-7, atol=1e-7)
    # the pooled transfers relax the links: never a higher least unserved energy
    assert program_unserved(x, "simplex", "pool") <= want + 1e-7


@pytest.mark.parametrize("seed", range(6))
def test_block_start_reaches_the_cold_optimum(seed, monkeypatch):
    """The dual simplex started from the parts' bases (link flows held at 0, the rest solved in
    groups, here of a few columns so that several groups are built) ends at the optimum of a cold
    solve, on the energy program and on the task program with its moves priced in."""
    from otmarl.policies import horizon_lp
    from otmarl.policies.hindsight import most_on_time
    monkeypatch.setattr(horizon_lp, "BLOCK_COLUMNS", 7)
    x = tiny_inputs(seed)
    lp = Program()
    ev = energy_program(lp, x)
    started = solve_without_presolve(lp, coupling=ev.flow.ravel())
    np.testing.assert_allclose(started.objective, solve_without_presolve(lp).objective, rtol=1e-9, atol=1e-9)
    xt = tiny_task_inputs(seed)
    np.testing.assert_allclose(most_on_time(xt, "simplex")[0], most_on_time(xt, "highs")[0],
                               rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("seed", range(6))
def test_basis_codes_read_what_highs_says(seed):
    """The statuses the block start reads from a solve's basic variables and values are HiGHS's
    own basis, entry by entry, on task programs (energy included)."""
    from otmarl.policies.horizon_lp import _bounds, _highs_model, _run, _stacked, basis_codes
    x = tiny_task_inputs(seed)
    lp = Program()
    task_program(lp, x, energy_program(lp, x, idle_cost=0.0))
    a, cost, (row_lo, row_hi, lb, ub) = _stacked(lp), np.concatenate(lp.cost), _bounds(lp)
    h = _highs_model(a, cost, row_lo, row_hi, lb, ub)
    _run(h)
    col, row = basis_codes(h, lb, ub, row_lo, row_hi)
    basis = h.getBasis()
    want_col, want_row = np.array([int(v) for v in basis.col_status]), np.array([int(v) for v in basis.row_status])
    # at a fixed column or an equality row, "at the lower bound" and "at the upper" are one point
    lower_upper = {0, 2}
    for got, want, fixed in ((col, want_col, lb == ub), (row, want_row, row_lo == row_hi)):
        same = (got == want) | (fixed & np.isin(got, list(lower_upper)) & np.isin(want, list(lower_upper)))
        assert same.all(), np.flatnonzero(~same)
        assert np.array_equal(got == 1, want == 1)            # the same basic variables
    assert (want_col == 2).any() or (want_row == 2).any()     # both sides occur


def test_block_start_needs_coupling_columns_at_zero():
    from otmarl.policies.horizon_lp import _bounds, _highs_model, _stacked, start_from_blocks
    lp = Program()
    energy_program(lp, tiny_inputs(0))
    a, cost, (row_lo, row_hi, lb, ub) = _stacked(lp), np.concatenate(lp.cost), _bounds(lp)
    lb = lb.copy()
    lb[0] = 0.5
    with pytest.raises(ValueError, match="lower bound of 0"):
        start_from_blocks(_highs_model(a, cost, row_lo, row_hi, lb, ub), a, cost, row_lo, row_hi, lb, ub,
                          np.array([0]))


def test_random_tiny_programs_are_not_trivial():
    """The cross-check above must compare optima where sharing and storage matter."""
    values = [path_program_unserved(tiny_inputs(s)) for s in range(12)]
    alone = []
    for s in range(12):
        x = tiny_inputs(s)
        alone.append(program_unserved(HorizonInputs(**{**x.__dict__, "link_usable": x.link_usable & False}),
                                      "simplex"))
    assert min(values) >= 0 and max(values) > 0.5
    assert sum(a > v + 1e-6 for a, v in zip(alone, values)) >= 4      # sharing lowers it


def one_node(**kw) -> HorizonInputs:
    base = dict(harvest_wh=np.zeros((2, 1)), alive=np.ones((2, 1), bool), link_usable=np.zeros((2, 0), bool),
                usable0_wh=np.array([1.0]), room_wh=np.array([5.0]), eta_c=np.array([1.0]),
                eta_d=np.array([0.5]), charge_cap_wh=np.array([10.0]), discharge_cap_wh=np.array([10.0]),
                sd_share=np.array([0.0]), idle_wh=np.array([0.4]), link_u=np.zeros(0, np.int64),
                link_v=np.zeros(0, np.int64), link_eff=np.zeros(0), link_cap_wh=np.zeros(0), dt_s=50.0,
                speed=np.array([1.0]), servers=np.array([1]), active_w=np.array([1.0]))
    return HorizonInputs(**{**base, **kw})


def test_one_node_by_hand():
    # 1 Wh above the brownout level, drawn at 50 %: 0.5 Wh for 2 x 0.4 Wh of idle load
    np.testing.assert_allclose(program_unserved(one_node(), "simplex"), 0.3, atol=1e-9)
    # a discharge limit of 0.2 Wh per epoch: 0.2 Wh short in each epoch
    np.testing.assert_allclose(program_unserved(one_node(discharge_cap_wh=np.array([0.2])), "simplex"),
                               0.4, atol=1e-9)


def test_fluid_tasks_by_hand():
    """Three tasks of 30, 30 and 60 s due in the first epoch of 50 s: the servers' time is
    50 s plus the longest task (60 s), so the two short ones and 50/60 of the long one fit."""
    x = one_node(usable0_wh=np.array([4.0]), eta_d=np.array([1.0]), task_node=np.zeros(3, np.int64),
                 task_first=np.zeros(3, np.int64), task_last=np.zeros(3, np.int64),
                 task_work_s=np.array([30.0, 60.0, 30.0]))
    lp = Program()
    ev = energy_program(lp, x, idle_cost=0.0)
    task_program(lp, x, ev)
    np.testing.assert_allclose(-solve(lp, "simplex").objective, 2 + 50 / 60, rtol=1e-9)
    # energy-bound: 0.4 Wh of idle load and 1/120 Wh more (one 30 s task at 1 W). Starting tasks
    # needs the idle load served in full; the program holds the convex hull of that rule (task
    # energy at most cap_e * idle / 0.4, cap_e = (50 + 60) / 3600 Wh: the servers' time at 1 W),
    # so with a = cap_e / 0.4 it serves idle = E / (1 + a) and starts a * idle of task energy
    tasks = {k: getattr(x, k) for k in ("task_node", "task_first", "task_last", "task_work_s")}
    energy = 0.4 + 1 / 120
    y = one_node(usable0_wh=np.array([energy]), eta_d=np.array([1.0]), **tasks)
    lp = Program()
    task_program(lp, y, energy_program(lp, y, idle_cost=0.0))
    a = 110 / 3600 / 0.4
    work_s = a * energy / (1 + a) * 3600
    np.testing.assert_allclose(-solve(lp, "simplex").objective, 2 + (work_s - 60) / 60, rtol=1e-9)


CONTROLLERS = ("local", "greedy", "proportional", "threshold", "random", "ot")
SHORT = {"microgrid-solar": ["horizon_h=12"], "edge-offload": ["horizon_h=0.5"],
         "sensor-field": ["horizon_h=0.5"]}
RUNS = [("microgrid-solar", 3), ("microgrid-solar", 4), ("microgrid-solar", 5), ("edge-offload", 3),
        ("edge-offload", 4), ("sensor-field", 3), ("sensor-field", 4)]


@pytest.mark.parametrize("name,seed", RUNS)
def test_no_controller_beats_the_bound(name, seed):
    """Every controller on a built-in over a short horizon: unserved idle energy at least the
    bound's (to 1e-6 of the idle demand) and on-time tasks at most the bound's (to 1e-6 of the
    tasks generated): the solver's tolerance."""
    sc = load(name, SHORT[name])
    b = hindsight_bound(sc, seed, method="simplex")
    assert 0 <= b.unserved_wh <= b.idle_demand_wh and b.on_time_tasks <= b.generated_tasks + 1e-6
    for policy in CONTROLLERS + ("mpc",):
        s = simulate(sc, make_controller(policy), seed).summary
        assert s["energy"]["unserved_wh"] >= b.unserved_wh - 1e-6 * b.idle_demand_wh, policy
        assert s["tasks"]["completed_on_time"] <= b.on_time_tasks + 1e-6 * b.generated_tasks, policy


def test_bound_command_and_compare_gaps(cli, tmp_path):
    c = cli("bound", "microgrid-solar", "--seed", "1", "--set", "horizon_h=12", "--out", str(tmp_path / "b"))
    assert c.returncode == 0, c.stderr
    import json
    import pandas as pd
    got = json.loads((tmp_path / "b" / "bound.json").read_text())
    assert got["seed"] == 1 and got["generated_tasks"] >= got["on_time_tasks"] - 1e-6
    c = cli("compare", "microgrid-solar", "--policies", "local,greedy", "--seeds", "2", "--set",
            "horizon_h=12", "--bound", "--quiet", "--out", str(tmp_path / "c"))
    assert c.returncode == 0, c.stderr
    assert "gap_unserved_wh" in c.stdout
    runs = pd.read_csv(tmp_path / "c" / "runs.csv")
    bounds = pd.read_csv(tmp_path / "c" / "bound.csv").set_index("seed")
    gaps = pd.read_csv(tmp_path / "c" / "comparison.csv").query("metric == 'gap_unserved_wh'")
    for policy, g in runs.groupby("policy"):
        want = (g["unserved_wh"] - g["seed"].map(bounds["unserved_wh"])).mean()
        np.testing.assert_allclose(gaps.set_index("policy").loc[policy, "mean"], want, rtol=1e-12)
    np.testing.assert_allclose(bounds.loc[1, "unserved_wh"], got["unserved_wh"], rtol=1e-9, atol=1e-9)
    assert cli("bound", "microgrid-solar", "--seed", "x").returncode == 2


def test_mpc_shares_energy_and_its_params_are_checked(cli, tmp_path):
    """mpc (both forecasts) moves energy on the microgrid and leaves less idle load unserved than
    no sharing at all on this seed; a window of 0 epochs is refused with the field's location."""
    sc = load("microgrid-solar", ["horizon_h=24"])
    for seed in (5,):
        local = simulate(sc, make_controller("local"), seed).summary["energy"]
        for forecast in ("market", "perfect"):
            s = simulate(load("microgrid-solar", ["horizon_h=24", f"controller.params.mpc_forecast={forecast}"],
                              policy="mpc"), make_controller("mpc"), seed).summary["energy"]
            assert s["delivered_wh"] > 0 and s["unserved_wh"] < local["unserved_wh"], (seed, forecast)
    c = cli("run", "microgrid-solar", "--policy", "mpc", "--set", "controller.params.mpc_horizon=0",
            "--out", str(tmp_path / "r"))
    assert c.returncode == 2 and "mpc_horizon" in c.stderr and "Traceback" not in c.stderr


@pytest.mark.parametrize("forecast", ["market", "perfect"])
def test_mpc_moves_tasks_and_keeps_its_matrix(forecast, monkeypatch):
    """mpc with tasks in its window routes tasks (every route checked by the world), completes more
    of them on time than mpc planning energy alone on this busy edge (seed 3), and the window's
    matrix stays the same all run long (one HiGHS model, then warm solves)."""
    from otmarl.policies import horizon_lp
    built = []
    real = horizon_lp._highs_model
    monkeypatch.setattr(horizon_lp, "_highs_model", lambda *a: built.append(1) or real(*a))
    sets = ["horizon_h=3", f"controller.params.mpc_forecast={forecast}"]
    with_tasks = simulate(load("edge-offload", sets, policy="mpc"), make_controller("mpc"), 3).summary
    assert len(built) == 1
    energy_only = simulate(load("edge-offload", sets + ["controller.params.mpc_task_weight=0"], policy="mpc"),
                           make_controller("mpc"), 3).summary
    assert with_tasks["tasks"]["offloaded"] > 0 and energy_only["tasks"]["offloaded"] == 0
    assert with_tasks["tasks"]["completed_on_time"] > energy_only["tasks"]["completed_on_time"]


def test_mpc_end_reserve_changes_the_plan_within_limits(monkeypatch):
    """mpc_end_reserve: each node's terminal target lies between 0 and its room above the brownout
    level (checked at every epoch), the run's decisions pass the world's checks, and the option
    changes what is shared on the microgrid."""
    from otmarl.policies.mpc import MPCController
    targets = []
    real = MPCController._end_reserve
    monkeypatch.setattr(MPCController, "_end_reserve",
                        lambda self, obs, K: targets.append((real(self, obs, K), obs.capacity_wh - self.min_wh))
                        or targets[-1][0])
    runs = {flag: simulate(load("microgrid-solar", ["horizon_h=24", f"controller.params.mpc_end_reserve={flag}"],
                                policy="mpc"), make_controller("mpc"), 6).summary for flag in ("true", "false")}
    assert targets
    for got, room in targets:
        assert np.all(got >= 0) and np.all(got <= room + 1e-9) and np.any(got > 0)
    assert runs["true"]["energy"]["delivered_wh"] != runs["false"]["energy"]["delivered_wh"]


def test_warm_solver_matches_cold_solves_along_a_rolling_sequence():
    """mpc's warm start: a sequence of programs with one matrix and changing bounds and right-hand
    sides (harvest, stored energy, failures, link limits), each solved from the last basis, reaches
    the optimum a cold solve finds, and the same sequence gives the same points; a program with
    other coefficients in between is solved as itself, not as the last one warm."""
    from otmarl.policies.horizon_lp import WarmSolver

    def sequence(solver: WarmSolver | None) -> list[tuple[float, np.ndarray]]:
        out = []
        base = tiny_inputs(100)
        for s in range(8):
            y = tiny_inputs(101 + s)      # the data that changes from one window to the next
            if s == 4:                    # other efficiencies and losses: another matrix
                base = HorizonInputs(**{**base.__dict__, "eta_d": y.eta_d, "link_eff": y.link_eff})
            x = HorizonInputs(**{**base.__dict__, "link_usable": np.ones_like(y.link_usable),
                                 "link_cap_wh": np.where(y.link_usable[0], y.link_cap_wh, 0.0),
                                 "harvest_wh": y.harvest_wh, "alive": y.alive,
                                 "usable0_wh": np.minimum(y.usable0_wh, base.room_wh)})
            lp = Program()
            energy_program(lp, x, idle_cost=-1.0, store_value=0.5, flow_cost=0.01)
            cost = np.concatenate(lp.cost)
            point = solver.solve(lp) if solver else solve(lp, "simplex").x
            out.append((float(cost @ point), point))
        return out

    warm, cold, again = sequence(WarmSolver()), sequence(None), sequence(WarmSolver())
    for (w, pw), (c, _), (_, pa) in zip(warm, cold, again):
        np.testing.assert_allclose(w, c, rtol=1e-9, atol=1e-9)
        assert np.array_equal(pw, pa)


def tiny_task_inputs(seed: int) -> HorizonInputs:
    """``tiny_inputs`` with a dozen tasks: random nodes, epochs, slack and work, and task energy
    large enough that energy and servers both bind somewhere."""
    x = tiny_inputs(seed)
    r = np.random.default_rng(1000 + seed)
    m = 12
    first = r.integers(0, 4, m)
    return HorizonInputs(**{**x.__dict__, "active_w": r.uniform(2.0, 30.0, 3),
                            "task_node": r.integers(0, 3, m), "task_first": first,
                            "task_last": np.minimum(first + r.integers(0, 2, m), 3),
                            "task_work_s": r.uniform(20.0, 400.0, m)})


def pooled_on_time(x: HorizonInputs) -> float:
    """The most tasks on time with work pooled over each epoch's connected part written directly
    (one work balance per part, epoch and slack; the components from networkx), the energy part
    shared with the program under test."""
    K, n = x.shape
    lp = Program()
    ev = energy_program(lp, x, idle_cost=0.0)
    Q = int(np.max(x.task_last - x.task_first)) + 1
    y = lp.var((len(x.task_node),), 0.0, 1.0, cost=-1.0)
    # work of slack class q starts or waits in epoch k at a live node, only while k + q is within
    # the horizon; nothing waits in class 0 (its last start epoch)
    ok = x.alive[:, :, None] & ((np.arange(K)[:, None, None] + np.arange(Q)[None, None, :]) < K)
    z = lp.var((K, n, Q), 0.0, np.where(ok, np.inf, 0.0))
    b = lp.var((K, n, Q), 0.0, np.where(ok & (np.arange(Q) > 0)[None, None, :], np.inf, 0.0))
    part = np.zeros((K, n), np.int64)
    for k in range(K):
        g = nx.Graph()
        g.add_nodes_from(range(n))
        g.add_edges_from((int(x.link_u[e]), int(x.link_v[e])) for e in np.flatnonzero(x.link_usable[k]))
        for c, nodes in enumerate(nx.connected_components(g)):
            part[k, list(nodes)] = c
    for k in range(K):
        for c in np.unique(part[k]):
            at = np.flatnonzero(part[k] == c)
            for q in range(Q):
                row = lp.rows("ub", np.zeros(1))
                lp.add("ub", row, z[k, at, q], -1.0)
                lp.add("ub", row, b[k, at, q], -1.0)
                if k and q + 1 < Q:
                    lp.add("ub", row, b[k - 1, at, q + 1], 1.0)
                mine = np.flatnonzero((x.task_first == k) & (x.task_last - x.task_first == q)
                                      & np.isin(x.task_node, at))
                lp.add("ub", row, y[mine], x.task_work_s[mine])
    e = x.active_w / (3600.0 * x.speed)
    wmax = float(x.task_work_s.max())
    lp.add("ub", ev.bus[:, :, None], z, e[None, :, None])
    cap = e * x.servers * (x.speed * x.dt_s + wmax)
    rs = lp.rows("ub", np.zeros((K, n)))
    lp.add("ub", rs[:, :, None], z, e[None, :, None])
    lp.add("ub", rs, ev.idle, -cap / x.idle_wh)
    return -solve(lp, "simplex").objective


@pytest.mark.parametrize("seed", range(8))
def test_priced_task_moves_reach_the_pooled_optimum(seed):
    """The task bound by column generation over the moves (each node serving its own tasks to
    start with) equals the program with every move open solved at once, and the pooling written
    per connected part; and it is not the per-node value where offloading helps (checked over the
    seeds)."""
    from otmarl.policies.hindsight import most_on_time
    x = tiny_task_inputs(seed)
    priced, _ = most_on_time(x, "simplex")
    at_once, _ = most_on_time(x, "highs")
    np.testing.assert_allclose(priced, at_once, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(priced, pooled_on_time(x), rtol=1e-7, atol=1e-7)


def test_task_moves_matter_on_the_tiny_programs():
    """The cross-check above must compare optima where handing work to a neighbour helps; where
    it does, the pricing took more than the first solve (moves were added)."""
    from otmarl.policies.hindsight import most_on_time
    gains = 0
    for seed in range(8):
        x = tiny_task_inputs(seed)
        lp = Program()
        task_program(lp, x, energy_program(lp, x, idle_cost=0.0), moves_open=False)
        alone = -solve(lp, "simplex").objective
        priced, size = most_on_time(x, "simplex")
        gain = priced > alone + 1e-6
        gains += gain
        if gain:
            assert size["pricing_rounds"] >= 2, seed
    assert gains >= 2
