"""The MARL env: PettingZoo's own conformance tests, rendering, determinism, masks, valid
decisions from any action, and the reward cross-checked against the run's summary."""
from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

pytest.importorskip("pettingzoo")

from pettingzoo.test import api_test, parallel_api_test, render_test, seed_test  # noqa: E402

from otmarl.policies.marl import EnvOptions, MarlCore, parallel_env  # noqa: E402
from otmarl.policies.marl.actions import direct_slots  # noqa: E402
from otmarl.policies.marl.env import OTMarlEnv  # noqa: E402
from otmarl.policies.marl.core import jain, resolve_scenario  # noqa: E402
from otmarl.policies.marl.features import COL, NAMES  # noqa: E402
from otmarl.scenarios import Scenario, builtin_names  # noqa: E402
from otmarl.scenarios.errors import UserError  # noqa: E402

DAY = dict(horizon_h=24)


BUILTINS = tuple(builtin_names())
MODES = ("market", "direct")
SEEDS = (0, 1, 2)


class SeedShifted(OTMarlEnv):
    """The env with every reset seed moved by ``shift``: PettingZoo's tests reset with fixed
    seeds (0, 42, then seeds drawn from them), so this is how they see other worlds, and so
    other graphs."""

    def __init__(self, scenario: Scenario, shift: int, **options):
        super().__init__(scenario, **options)
        self.shift = shift

    def reset(self, seed=None, options=None):
        return super().reset(None if seed is None else seed + self.shift, options)


@functools.lru_cache(maxsize=None)
def _short(name: str) -> Scenario:
    """The built-in cut to two control epochs (loaded once)."""
    sc = resolve_scenario(name)
    return resolve_scenario(sc, horizon_h=2 * sc.control_interval_s / 3600.0)


def _env(name: str, mode: str, seed: int, **options) -> SeedShifted:
    """A reset with seed k starts world k + seed; the first reset without one, world seed."""
    return SeedShifted(_short(name), seed, mode=mode, seed=seed, **options)


def _aec(name: str, mode: str, seed: int, **options):
    from pettingzoo.utils.conversions import parallel_to_aec
    return parallel_to_aec(_env(name, mode, seed, **options))


MATRIX = pytest.mark.parametrize("name, mode, seed", list(itertools.product(BUILTINS, MODES, SEEDS)))


def test_the_matrix_covers_every_builtin():
    assert set(BUILTINS) >= {"edge-offload", "microgrid-solar", "regime-shift", "sensor-field"}


@MATRIX
def test_parallel_api(name, mode, seed):
    parallel_api_test(_env(name, mode, seed), num_cycles=2)


@pytest.mark.filterwarnings("ignore:Action space for each agent probably")   # MultiDiscrete is fine
@MATRIX
def test_aec_api(name, mode, seed):
    api_test(_aec(name, mode, seed), num_cycles=1)      # and 2 more cycles after a reset: truncated


@MATRIX
def test_seed(name, mode, seed):
    seed_test(lambda: _aec(name, mode, seed), num_cycles=1)


@MATRIX
def test_render(name, mode, seed, capsys):
    render_test(lambda render_mode: _aec(name, mode, seed, render_mode=render_mode))
    frames = capsys.readouterr().out
    assert frames.count("team return") == 5 and "epoch 0/2" in frames      # 'human' printed 5 frames


@pytest.mark.parametrize("name", BUILTINS)
def test_spaces_are_fixed_per_scenario_whatever_the_seed(name):
    """Direct mode pads to the scenario's slots: every seed's world gives the same spaces and
    mask lengths; slots past a node's degree are masked; every neighbour has a slot when the
    degree is within the cap."""
    env = _env(name, "direct", 0)
    a0 = env.possible_agents[0]
    nvec = tuple(env.action_space(a0).nvec)
    slots = env.core.slots
    assert nvec == (slots + 1, slots + 1)
    for s in (0, 7, 123):
        _, infos = env.reset(seed=s)
        core = env.core
        assert tuple(core.spec.nvec) == nvec
        assert all(len(m) == slots + 1 for i in infos.values() for m in i["action_mask"])
        deg = np.bincount(np.concatenate([core.info.link_u, core.info.link_v]), minlength=core.n)
        reach = (core.actions.slot_node[:, 1:] >= 0).sum(1)
        np.testing.assert_array_equal(reach, np.minimum(deg, slots))
        masks = core.masks()
        assert not masks[:, 1:slots + 1][reach[:, None] <= np.arange(slots)].any()


def test_slots_are_the_largest_degree_of_a_fixed_graph_else_n_minus_1_capped():
    assert direct_slots(resolve_scenario("microgrid-solar"), 32) == 4          # tree, branching 3
    assert direct_slots(resolve_scenario("edge-offload"), 32) == 32            # random geometric
    assert direct_slots(resolve_scenario("edge-offload", ["nodes.edge.count=5", "nodes.hot.count=3",
                                                          "nodes.gateway.count=2"]), 32) == 9
    assert direct_slots(resolve_scenario("microgrid-solar"), 2) == 2
    with pytest.raises(UserError, match=r"direct_max_slots: value 0 must be a whole number >= 1"):
        EnvOptions(mode="direct", direct_max_slots=0)


def test_max_cycles_truncates_every_agent():
    env = parallel_env("microgrid-solar", mode="market", max_cycles=3, horizon_h=24)
    env.reset(seed=1)
    steps = 0
    while env.agents:
        _, _, term, trunc, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
        steps += 1
        assert not any(term.values()) and all(trunc.values()) == (steps == 3)
    assert steps == 3
    env.reset(seed=1)
    assert env.agents and env.core.sim.k == 0
    with pytest.raises(UserError, match=r"max_cycles: value 0 must be a whole number >= 1"):
        parallel_env("microgrid-solar", max_cycles=0)


def test_render_modes():
    env = parallel_env("microgrid-solar", render_mode="ansi", **DAY)
    env.reset(seed=1)
    text = env.render()
    assert isinstance(text, str) and "home_9" in text and len(text.splitlines()) == 12
    env = parallel_env("microgrid-solar", render_mode="rgb_array", **DAY)
    env.reset(seed=1)
    img = env.render()
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[0] > 10 and img.shape[1] > 10
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 3      # links, nodes, background


def test_spaces_are_cached_and_state_matches():
    env = parallel_env("microgrid-solar", **DAY)
    a = env.possible_agents[0]
    assert env.observation_space(a) is env.observation_space(a)
    assert env.action_space(a) is env.action_space(a)
    assert env.observation_space(a) is not env.observation_space(env.possible_agents[1])
    obs, _ = env.reset(seed=0)
    assert env.possible_agents == [f"home_{i}" for i in range(10)]
    assert obs[a].shape == (len(NAMES),) and obs[a].dtype == np.float32
    assert env.state_space.contains(env.state())


@pytest.mark.parametrize("mode", MODES)
def test_numeric_infos_are_the_nested_ones_as_numbers_with_fixed_keys(mode):
    """numeric_infos=True: the same masks (one row per component), prices, reward terms and plan
    totals as the nested infos, every value a float or an int8 array, the same keys and shapes
    from reset on (what a wrapper stacking infos into tensors needs); the parallel API test
    still passes."""
    from otmarl.policies.marl.env import PLAN_TOTALS, REWARD_TERMS
    nested, flat = (parallel_env("microgrid-solar", mode=mode, numeric_infos=f, **DAY) for f in (False, True))
    (_, i_n), (_, i_f) = nested.reset(seed=4), flat.reset(seed=4)
    layout = {k: np.shape(v) for k, v in i_f["home_0"].items()}
    assert layout["action_mask"] == (len(nested.action_space("home_0").nvec), 4 if mode == "market" else 5)
    rng, nvec, moved = np.random.default_rng(0), nested.action_space("home_0").nvec, 0.0
    for step in range(12):
        for a in nested.possible_agents:
            n, f = i_n[a], i_f[a]
            assert {k: np.shape(v) for k, v in f.items()} == layout
            assert f["action_mask"].dtype == np.int8
            np.testing.assert_array_equal(f["action_mask"], np.stack(n["action_mask"]))
            assert (f["energy_price"], f["task_price"]) == (n["energy_price"], n["task_price"])
            if step:
                assert set(n["reward_terms"]) == set(REWARD_TERMS) and set(n["plan"]) == set(PLAN_TOTALS)
                assert all(f[f"reward_{k}"] == v for k, v in n["reward_terms"].items())
                assert all(f[f"plan_{k}"] == v for k, v in n["plan"].items())
            assert all(isinstance(v, float) for k, v in f.items() if k != "action_mask")
        acts = dict(zip(nested.agents, rng.integers(0, nvec, (len(nested.agents), len(nvec)))))
        i_n, i_f = nested.step(acts)[4], flat.step(acts)[4]
        moved += i_f["home_0"]["plan_energy_sent_wh"] + i_f["home_0"]["plan_tasks_routed"]
    assert moved > 0 and any(i_f["home_0"][f"reward_{k}"] != 0 for k in REWARD_TERMS)
    parallel_api_test(_env("microgrid-solar", mode, 0, numeric_infos=True), num_cycles=2)


def _rollout(seed: int, mode: str, steps: int = 200):
    env = parallel_env("microgrid-solar", mode=mode, horizon_h=240)
    for k, a in enumerate(env.possible_agents):
        env.action_space(a).seed(1000 * seed + k)
    out = [env.reset(seed=seed)]
    for _ in range(steps):
        acts = {a: env.action_space(a).sample() for a in env.agents}
        out.append(env.step(acts))
    return out


def _same(x, y) -> bool:
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (tuple, list)):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    return np.array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("mode", ["market", "direct"])
def test_same_seed_same_trajectory_other_seed_differs(mode):
    a, b, c = _rollout(3, mode), _rollout(3, mode), _rollout(4, mode)
    assert len(a) == 201
    assert _same(a, b)
    assert not _same([s[0] for s in a], [s[0] for s in c])       # observations differ
    moved = sum(s[4]["home_0"]["plan"]["energy_sent_wh"] for s in a[1:])
    assert moved > 0                                               # random actions do act


def test_reward_terms_add_up_to_the_run_summary():
    sc = resolve_scenario("microgrid-solar", horizon_h=48)
    core = MarlCore(sc, EnvOptions(mode="direct"))
    core.reset(5)
    lam = core.per_epoch_tasks
    tot = {"on_time": 0.0, "dropped": 0.0, "fairness": 0.0, "team": 0.0}
    done = False
    while not done:
        _, r, done, terms = core.step(np.zeros((core.n, 2), np.int64))   # nobody moves anything
        for k in tot:
            tot[k] += terms[k]
        assert terms["loss"] == 0.0 and np.all(r == terms["team"])
    s = core.sim.finish({}).summary
    assert round(tot["on_time"] * lam) == s["tasks"]["completed_on_time"]
    assert round(tot["dropped"] * lam) == sum(s["tasks"]["dropped"].values())
    t = core.sim.recorder.task_table()
    res = t[t.status.isin(["completed_on_time", "completed_late", "dropped"])]
    ratio = res.groupby("origin").status.apply(lambda x: (x == "completed_on_time").mean()).to_numpy()
    np.testing.assert_allclose(1.0 + tot["fairness"], jain(ratio), rtol=0, atol=1e-12)
    np.testing.assert_allclose(tot["team"], core.team_return, rtol=1e-12)


def test_direct_action_sends_the_documented_share_to_the_chosen_neighbour():
    sc = resolve_scenario("microgrid-solar", horizon_h=24)
    core = MarlCore(sc, EnvOptions(mode="direct", direct_energy_share=0.5, direct_spare_soc=0.3))
    core.reset(0)
    obs = core.cur
    a = np.zeros((core.n, 2), np.int64)
    giver = int(np.argmax(obs.stored_wh / obs.capacity_wh))
    a[giver, 0] = 1                                  # first neighbour by index
    to = int(core.actions.slot_node[giver, 1])
    expect = 0.5 * (obs.stored_wh[giver] - 0.3 * obs.capacity_wh[giver])
    assert expect > 0
    core.step(a)
    f = core.last_step.flows["energy"]
    assert list(f["src"]) == [giver] and list(f["dst"]) == [to]
    np.testing.assert_allclose(f["wh"], [expect], rtol=1e-9)
    np.testing.assert_allclose(f["delivered"], [expect * 0.97], rtol=1e-9)   # one hop at 0.97


def test_transport_credit_splits_the_team_reward_by_plan_marginals():
    """credit = 1: a lone energy transfer gives the whole team reward (n times over, averaged
    back to r) to its two ends, in proportion to Wh sent and Wh received; credit = 0.5 mixes."""
    sc = resolve_scenario("microgrid-solar", horizon_h=24)
    out = {}
    for credit in (0.0, 0.5, 1.0):
        core = MarlCore(sc, EnvOptions(mode="direct", direct_spare_soc=0.3,
                                       reward={"credit": credit}))
        core.reset(0)
        a = np.zeros((core.n, 2), np.int64)
        giver = int(np.argmax(core.cur.stored_wh / core.cur.capacity_wh))
        a[giver, 0] = 1
        to = int(core.actions.slot_node[giver, 1])
        _, r, _, terms = core.step(a)
        out[credit] = r
        np.testing.assert_allclose(r.mean(), terms["team"], rtol=1e-12)
    team = out[0.0][0]
    assert np.all(out[0.0] == team) and team != 0
    f = core.last_step.flows["energy"]
    sent, got = float(f["wh"][0]), float(f["delivered"][0])
    expect = np.zeros(core.n)
    expect[giver], expect[to] = sent / (sent + got), got / (sent + got)
    np.testing.assert_allclose(out[1.0], core.n * expect * team, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out[0.5], 0.5 * team + 0.5 * out[1.0], rtol=1e-12)
    with pytest.raises(UserError, match=r"reward: credit: .* less than or equal to 1 \(value 2\)"):
        EnvOptions(reward={"credit": 2})
    with pytest.raises(UserError, match="reward: credits: Extra inputs are not permitted"):
        EnvOptions(reward={"credits": 0.5})


def test_reward_weights_come_from_the_scenario_and_options_override_them():
    sc = resolve_scenario("microgrid-solar", ["marl.reward.credit=0.25", "marl.reward.loss=0"], 24)
    assert MarlCore(sc).weights.credit == 0.25 and MarlCore(sc).weights.loss == 0.0
    w = MarlCore(sc, EnvOptions(reward={"loss": 2.0})).weights
    assert (w.credit, w.loss, w.on_time) == (0.25, 2.0, 1.0)


def test_browned_out_node_is_masked_and_its_actions_do_nothing():
    env = parallel_env("microgrid-solar", mode="market", horizon_h=24,
                       overrides=["nodes.home.battery.initial_soc=0.05"])
    obs, infos = env.reset(seed=0)
    a = env.possible_agents[0]
    assert obs[a][COL["up"]] == 0.0
    mask = infos[a]["action_mask"]
    assert [m.tolist() for m in mask] == [[1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 0, 0],
                                          [1, 0, 0, 0]]
    full = np.array([3, 0, 0, 3, 3])                 # masked: offer all energy and tasks
    _, _, _, _, infos = env.step({x: full for x in env.agents})
    assert infos[a]["plan"]["energy_transfers"] == 0 and infos[a]["plan"]["task_routes"] == 0


@pytest.mark.parametrize("mode", ["market", "direct"])
def test_any_action_is_a_valid_decision_under_limits_and_faults(mode):
    # edge-offload: 60 W per hop, random link and node faults, overloaded nodes; masks ignored
    sc = resolve_scenario("edge-offload", ["faults.random.link_mtbf_h=2", "faults.random.node_mtbf_h=20"],
                          horizon_h=1)
    core = MarlCore(sc, EnvOptions(mode=mode))
    core.reset(1)
    rng = np.random.default_rng(0)
    nvec = np.array(core.spec.nvec)
    moved = 0.0
    done = False
    while not done:                                   # the world raises on any invalid decision
        _, _, done, terms = core.step(rng.integers(0, nvec, (core.n, len(nvec))))
        moved += terms["plan"]["energy_sent_wh"] + terms["plan"]["tasks_routed"]
    assert moved > 0
    core.sim.finish({})                               # and the run's invariants hold


@pytest.mark.parametrize("start, hour", [("2024-06-21T06:00:00", 6.0),
                                         ("2024-06-21T06:30:00+00:00", None)])
def test_time_of_day_features_read_the_scenarios_own_clock(start, hour):
    """tod_sin/tod_cos come from WorldInfo.start_s_of_day: local time at the scenario's place
    (a tz-aware start is converted), so a policy deployed elsewhere reads that scenario's clock."""
    import pandas as pd
    sc = resolve_scenario("microgrid-solar", [f"start={start}"], 24)
    if hour is None:     # 06:30 UTC in the scenario's zone
        t = pd.Timestamp(start).tz_convert(sc.location.timezone)
        hour = t.hour + t.minute / 60
    core = MarlCore(sc)
    obs = core.reset(0)
    angle = 2 * np.pi * hour / 24
    np.testing.assert_allclose(obs[0, [COL["tod_sin"], COL["tod_cos"]]], [np.sin(angle), np.cos(angle)],
                               atol=1e-6)
    assert core.info.start_s_of_day == pytest.approx(hour * 3600)


# ------------------------------------------------------------------------------ the controls
def test_control_seeds_are_disjoint_from_training_and_from_each_other():
    from otmarl.policies.marl.controls import EVAL_SEED0, TUNE_SEED0, eval_seeds, tune_seeds
    SEED_MAX = 2**31 - 1       # training draws its episode seeds from [0, SEED_MAX) (rollout.py)
    assert eval_seeds(3) == [EVAL_SEED0, EVAL_SEED0 + 1, EVAL_SEED0 + 2]
    assert min(eval_seeds(10**4)) >= SEED_MAX and min(tune_seeds(10**4)) >= SEED_MAX
    assert not set(eval_seeds(10**4)) & set(tune_seeds(10**4))
    assert TUNE_SEED0 > EVAL_SEED0 + 10**4


def test_random_actions_are_seeded_by_the_episode_and_use_every_option():
    from otmarl.policies.marl.controls import RandomActions, play
    sc = resolve_scenario("microgrid-solar", horizon_h=24)
    core = MarlCore(sc)
    seen = []

    class Recording(RandomActions):
        def step(self, core):
            a = self.rng.integers(0, self.nvec, (core.n, len(self.nvec)))
            seen.append(a)
            return core.step(a)[2]

    ret = [play(core, d, s).team_return for d, s in ((RandomActions(), 7), (RandomActions(), 7),
                                                      (RandomActions(), 8), (Recording(), 7))]
    assert ret[0] == ret[1] == ret[3] and ret[0] != ret[2]
    counts = np.bincount(np.stack(seen).reshape(-1, 5)[:, 2], minlength=4)   # 24 x 10 draws
    assert counts.sum() == 240 and counts.min() >= 40                          # each near 60


def test_coarse_grid_takes_the_ends_of_levels_and_none_or_first_of_choices():
    from otmarl.policies.marl.controls import coarse_grid
    market = MarlCore(resolve_scenario("microgrid-solar", horizon_h=3)).spec
    grid = coarse_grid(market)
    assert len(grid) == 32 and set(np.ravel(grid)) == {0, 3} and grid[0] == (0,) * 5
    direct = MarlCore(resolve_scenario("microgrid-solar", horizon_h=3), EnvOptions(mode="direct")).spec
    assert coarse_grid(direct) == [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.mark.parametrize("mode", MODES)
def test_best_fixed_is_a_local_optimum_at_least_as_good_as_the_grid(mode):
    from otmarl.policies.marl.controls import FixedAction, coarse_grid, play, search_fixed
    sc = resolve_scenario("microgrid-solar", horizon_h=6)
    opt = EnvOptions(mode=mode)
    res = search_fixed(sc, opt, [11, 12])
    best, core = res.action, MarlCore(sc, opt)
    assert res.score == max(res.scores.values()) == res.scores[best]
    assert all(g in res.scores for g in coarse_grid(core.spec))
    for c, k in enumerate(core.spec.nvec):        # no single component changed does better
        for v in range(k):
            assert res.scores[best[:c] + (v,) + best[c + 1:]] <= res.score
    again = np.mean([play(core, FixedAction(best), s).team_return for s in (11, 12)])
    np.testing.assert_allclose(again, res.score, rtol=1e-12)     # the score replays


def test_compare_gives_cis_across_runs_and_paired_differences_on_seeds():
    """Runs A (1, 2, 3) and B (3, 4, 5) on seeds 0-2 against a control (0, 1, 2): runs' means 2
    and 4; per seed the trained mean is 2, 3, 4, i.e. control + 2 on every seed; across runs
    A - 1 = 1 and B - 1 = 3."""
    import pandas as pd
    from otmarl.analysis.stats import mean_ci
    from otmarl.policies.marl.evaluate import METRICS, compare, format_comparison
    rows = []
    for pol, run, vals in (("ppo", "A", (1, 2, 3)), ("ppo", "B", (3, 4, 5)), ("ctl", "", (0, 1, 2))):
        rows += [{"policy": pol, "run": run, "seed": s, **dict.fromkeys(METRICS, float(v))}
                 for s, v in enumerate(vals)]
    c = compare(pd.DataFrame(rows), "ppo")
    m = c.means.set_index(["policy", "metric"])
    want = mean_ci([2.0, 4.0])
    assert m.loc[("ppo", "team_return"), "n"] == 2
    np.testing.assert_allclose(m.loc[("ppo", "team_return"), ["mean", "ci_low", "ci_high"]].to_numpy(float),
                               [want.mean, want.low, want.high])
    assert m.loc[("ctl", "team_return"), "n"] == 3 and m.loc[("ctl", "team_return"), "mean"] == 1.0
    p = c.paired.set_index("metric").loc["team_return"]
    assert (p.policy, p.mean_diff, p.ci_low, p.ci_high, p.n, p.significant) == ("ppo - ctl", 2, 2, 2, 3, True)
    a = c.across_runs.set_index("metric").loc["team_return"]
    want = mean_ci([1.0, 3.0])
    assert (a.mean_diff, a.n, a.significant) == (2.0, 2, False)
    np.testing.assert_allclose([a.ci_low, a.ci_high], [want.low, want.high])
    text = format_comparison(c, "ppo", 2, 3)
    assert "over 2 training runs" in text and "ppo - ctl" in text and "2 ± 0*" in text


def test_cli_evaluate_two_training_runs_against_the_controls(tmp_path, capsys):
    pytest.importorskip("torch")
    import csv
    from otmarl.cli import main
    tiny = ["--steps", "6", "--n-envs", "1", "--num-steps", "3", "--horizon-h", "3", "--quiet"]
    for seed in (0, 1):
        assert main(["train", "microgrid-solar", "--seed", str(seed), "--out", str(tmp_path / f"r{seed}"),
                     *tiny]) == 0
    capsys.readouterr()
    out = tmp_path / "eval" / "rows.csv"
    assert main(["evaluate", str(tmp_path / "r0"), str(tmp_path / "r1"), "--seeds", "2",
                 "--tune-seeds", "1", "--baselines", "local", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "mappo: over 2 training runs" in text and "across the 2 training runs" in text
    rows = list(csv.DictReader(out.open()))
    assert sorted({(r["policy"], r["run"]) for r in rows}) == [
        ("best-fixed", ""), ("local", ""), ("mappo", "seed0"), ("mappo", "seed1"), ("random-actions", "")]
    assert len(rows) == 10 and (tmp_path / "eval" / "rows-summary.csv").is_file()
    import json
    import shutil
    shutil.copytree(tmp_path / "r1", tmp_path / "r2")          # the same run, said to be direct mode
    meta = json.loads((tmp_path / "r2" / "policy.json").read_text())
    meta["env"]["mode"] = "direct"
    (tmp_path / "r2" / "policy.json").write_text(json.dumps(meta))
    assert main(["evaluate", str(tmp_path / "r0"), str(tmp_path / "r2"), "--quiet"]) == 2
    assert "(direct mode)" in capsys.readouterr().err
