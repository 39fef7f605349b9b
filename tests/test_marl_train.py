"""MARL training: MAPPO and IPPO smoke runs end to end (checkpoint, curves, --policy marl:DIR),
seeded torch randomness, the rollout pieces (GAE, minibatches, explained variance), the CLI
train and evaluate commands, the Sinkhorn divergence and barycenter of the consensus penalty,
and the drift detector."""
from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pettingzoo")

from otmarl.policies import make_controller  # noqa: E402
from otmarl.policies.marl import ippo, mappo  # noqa: E402
from otmarl.policies.marl.alignment import barycenter, ground_cost, sinkhorn_divergence  # noqa: E402
from otmarl.policies.marl.core import EnvOptions, resolve_scenario  # noqa: E402
from otmarl.policies.marl.deps import require  # noqa: E402
from otmarl.policies.marl.drift import DriftDetector, DriftSignal, lr_factor  # noqa: E402
from otmarl.policies.marl.evaluate import run_policy  # noqa: E402
from otmarl.policies.marl.common import PPORun  # noqa: E402
from otmarl.policies.marl.nets import Critic, sample  # noqa: E402
from otmarl.policies.marl.rollout import Batch, Buffer, gae, paired_baseline  # noqa: E402
from otmarl.run import run  # noqa: E402
from otmarl.scenarios.errors import UserError  # noqa: E402

SMALL = dict(scenario="microgrid-solar", horizon_h=12, n_envs=2, num_steps=6, total_steps=48)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("marl")
    m = mappo.train(mappo.Args(**SMALL, out=str(base / "mappo")))
    # IPPO in direct mode, with both OT hooks on, so that every path of the loop runs
    i = ippo.train(ippo.Args(**SMALL, mode="direct", align_lambda=0.1, align_every=1, drift=True,
                             drift_window_h=3, out=str(base / "ippo")))
    return m, i


def _rows(folder):
    with (folder / "train.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("which", [0, 1])
def test_training_writes_checkpoint_and_curves(trained, which):
    folder = trained[which]
    for f in ("actor.pt", "critic.pt", "policy.json", "train.csv"):
        assert (folder / f).stat().st_size > 0, f
    meta = json.loads((folder / "policy.json").read_text())
    assert meta["algo"] == ("mappo", "ippo")[which] and meta["steps"] == 48
    assert meta["critic_dim"] == meta["obs_dim"] + (meta["state_dim"] if which == 0 else 0)
    rows = _rows(folder)
    assert len(rows) == 4 and [int(r["global_step"]) for r in rows] == [12, 24, 36, 48]
    assert int(rows[-1]["episodes"]) == 2             # both envs finished a 12-epoch episode
    assert all(np.isfinite(float(r["pg_loss"])) for r in rows)
    assert all(float(r["explained_variance"]) <= 1.0 for r in rows)
    # each 12-epoch episode of microgrid-solar resolves tasks, so the ratio is a number in [0, 1]
    done = [r for r in rows if int(r["episodes"])]
    assert done and all(0.0 <= float(r["on_time_ratio"]) <= 1.0 for r in done)


def test_hooks_are_logged(trained):
    rows = _rows(trained[1])
    assert all(np.isfinite(float(r["align_dispersion"])) for r in rows)
    # the 3 h windows (2 x 3 epochs) fill after 6 epochs = the first update
    assert all(np.isfinite(float(r["drift_distance"])) for r in rows)
    assert all(1.0 <= float(r["lr_factor"]) <= 3.0 for r in rows)


@pytest.mark.parametrize("which", [0, 1])
def test_trained_policy_runs_through_otmarl_run(trained, which, tmp_path):
    folder = trained[which]
    out = run("microgrid-solar", policy=f"marl:{folder}", seed=2, out=tmp_path / "run",
              overrides=["horizon_h=12"])
    s = json.loads((out / "summary.json").read_text())
    assert s["policy"] == f"marl:{folder}" and s["n_epochs"] == 12
    # the same controller driven through the env core gives the same run
    sc = resolve_scenario("microgrid-solar", ["horizon_h=12"])
    r = run_policy(sc, lambda: make_controller(f"marl:{folder}"), 2,
                   EnvOptions(mode=("market", "direct")[which]))
    assert r["on_time_ratio"] == s["tasks"]["completed_on_time"] / s["tasks"]["generated"]
    assert r["delivered_wh"] == s["energy"]["delivered_wh"]


def test_trained_policy_compares_in_a_flat_folder(trained, tmp_path):
    from otmarl.compare import compare
    from otmarl.run import policy_slug
    policy = f"marl:{trained[0]}"
    table = compare("microgrid-solar", ["local", policy], 1, tmp_path / "cmp", overrides=["horizon_h=12"])
    assert set(table["policy"]) == {"local", policy}
    runs = sorted(p.name for p in (tmp_path / "cmp").iterdir() if p.is_dir())
    assert runs == sorted(["local-s0", f"{policy_slug(policy)}-s0"]) and "/" not in policy_slug(policy)


def test_policy_slug():
    from otmarl.run import policy_slug
    assert policy_slug("ot") == "ot"
    assert policy_slug("marl:runs/mappo-s0") == "marl-runs-mappo-s0"
    assert policy_slug("marl:../a b/c") == "marl-a-b-c"


def test_marl_policy_names_fail_clearly(tmp_path):
    with pytest.raises(UserError, match="name the checkpoint folder"):
        make_controller("marl:")
    with pytest.raises(UserError, match="not a checkpoint folder"):
        make_controller(f"marl:{tmp_path}")
    with pytest.raises(UserError, match=r"pip install -c constraints.txt -e '\.\[marl\]'"):
        require("otmarl_no_such_module")


# ---------------------------------------------------------------------------- seeded torch
TINY = dict(scenario="microgrid-solar", horizon_h=6, n_envs=1, num_steps=3, total_steps=9,
            update_epochs=2, num_minibatches=2, hidden=8)


def _weights(folder, stats: bool = True) -> dict:
    """Actor and critic tensors; ``stats=False`` leaves out the critic's running return
    statistics (value normalisation), which move with every rollout even at lr 0."""
    critic = torch.load(folder / "critic.pt")
    return {**torch.load(folder / "actor.pt"),
            **{f"critic.{k}": v for k, v in critic.items() if stats or not k.startswith("ret_")}}


def test_same_seed_same_weights_and_the_global_rng_is_untouched(tmp_path):
    before = torch.get_rng_state()
    a = _weights(mappo.train(mappo.Args(**TINY, seed=3, out=str(tmp_path / "a"))))
    assert torch.equal(torch.get_rng_state(), before)      # only the run's Generator was drawn
    b = _weights(mappo.train(mappo.Args(**TINY, seed=3, out=str(tmp_path / "b"))))
    c = _weights(mappo.train(mappo.Args(**TINY, seed=4, out=str(tmp_path / "c"))))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)           # 3 updates later, bit for bit
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_init_starts_from_a_checkpoint(tmp_path):
    first = mappo.train(mappo.Args(**TINY, out=str(tmp_path / "first")))
    # with lr 0 Adam moves nothing: the weights stay those of the checkpoint, bit for bit
    again = mappo.train(mappo.Args(**TINY, lr=0.0, seed=9, init=str(first), out=str(tmp_path / "again")))
    w0, w1 = _weights(first, stats=False), _weights(again, stats=False)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    # the normalisers go on counting: 9 epochs x 10 agents of observations per run, on top of 1e-4
    metas = [json.loads((f / "policy.json").read_text()) for f in (first, again)]
    assert [m["obs_norm"]["count"] for m in metas] == [pytest.approx(90 + 1e-4), pytest.approx(180 + 1e-4)]
    # and so do the value normaliser's return statistics (3 updates of 3 epochs x 10 agents each)
    assert [m["value_norm"]["count"] for m in metas] == [pytest.approx(90 + 1e-4), pytest.approx(180 + 1e-4)]


def test_deployment_samples_by_default_and_mode_on_request(trained, tmp_path):
    from otmarl.policies.marl.controller import MarlController
    assert MarlController(trained[0]).sample            # deploy='sample', the default
    assert not MarlController(trained[0], sample=False).sample
    folder = mappo.train(mappo.Args(**TINY, deploy="mode", out=str(tmp_path / "mode")))
    assert not MarlController(folder).sample
    with pytest.raises(UserError, match="deploy: unknown value 'argmax'"):
        mappo.Args(deploy="argmax")
    with pytest.raises(UserError, match="joint_explore: value 2 must be between 0 and 1"):
        mappo.Args(joint_explore=2.0)


def test_bad_training_options_name_the_field():
    with pytest.raises(UserError, match="num_minibatches: value 0 must be >= 1"):
        mappo.Args(num_minibatches=0)
    with pytest.raises(UserError, match="total_steps: value -5 must be >= 1"):
        ippo.Args(total_steps=-5)


# ------------------------------------------------------------------------------- warm start
def test_constant_logits_put_the_warm_probability_on_the_action():
    from otmarl.policies.marl.warmstart import constant_logits
    z = torch.as_tensor(constant_logits([4, 2, 1], [2, 0, 0], 0.7))
    parts = [torch.softmax(p, -1).numpy() for p in torch.split(z, [4, 2, 1])]
    np.testing.assert_allclose(parts[0], [0.1, 0.1, 0.7, 0.1], rtol=1e-6)
    np.testing.assert_allclose(parts[1], [0.7, 0.3], rtol=1e-6)
    np.testing.assert_allclose(parts[2], [1.0])


def test_warm_start_clones_best_fixed_of_the_tuning_seeds(tmp_path):
    from otmarl.policies.marl.controller import MarlController
    from otmarl.policies.marl.controls import FixedAction, search_fixed, tune_seeds
    # lr 0: the checkpoint holds the warm-started actor as it was before any update
    folder = mappo.train(mappo.Args(**TINY, warm_start="best-fixed", warm_tune_seeds=1, warm_prob=0.8,
                                    lr=0.0, out=str(tmp_path / "warm")))
    sc, opts = resolve_scenario("microgrid-solar", (), 6), EnvOptions()
    found = search_fixed(sc, opts, tune_seeds(1))
    warm = json.loads((folder / "policy.json").read_text())["warm_start"]
    assert warm["action"] == list(found.action) and warm["seeds"] == [2**32]
    assert warm["score"] == found.score
    actor = MarlController(folder).actor
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(50, actor.net[0].in_features)), dtype=torch.float32)
    with torch.no_grad():
        probs = actor.probs(obs)
    chosen = torch.stack([p[:, a] for p, a in zip(probs, found.action)])
    assert float(chosen.min()) > 0.75 and float(chosen.max()) < 0.85       # 0.8, whatever it sees
    # deployed by its mode it plays best-fixed: the same runs on a fresh seed
    mode = run_policy(sc, lambda: MarlController(folder, sample=False), 7, opts)
    assert mode == run_policy(sc, lambda: FixedAction(found.action), 7, opts)


def test_bad_warm_start_options_name_the_field():
    with pytest.raises(UserError, match="warm_start: unknown value 'best' \\(choose none or best-fixed\\)"):
        mappo.Args(warm_start="best")
    with pytest.raises(UserError, match="warm_prob: value 1 must be > 0 and < 1"):
        mappo.Args(warm_start="best-fixed", warm_prob=1.0)
    with pytest.raises(UserError, match="warm_start: 'best-fixed' and init 'runs/x' both set"):
        mappo.Args(warm_start="best-fixed", init="runs/x")


# ---------------------------------------------------------------------------------- rollout
def _buffer(rewards, values, truncated) -> Buffer:
    T = len(rewards)
    buf = Buffer.zeros(T, 1, 1, 1, 1, 1, 1)
    buf.reward[:, 0, 0], buf.value[:, 0, 0], buf.truncated[:, 0] = rewards, values, truncated
    return buf


def test_gae_by_hand():
    # gamma = lambda = 0.5; V after the last epoch = 3
    buf = _buffer([1.0, 2.0], [0.5, 1.0], [0.0, 0.0])
    adv, ret = gae(buf, np.array([[3.0]], np.float32), 0.5, 0.5)
    # delta_1 = 2 + 0.5 * 3 - 1 = 2.5; delta_0 = 1 + 0.5 * 1 - 0.5 = 1; A_0 = 1 + 0.25 * 2.5
    np.testing.assert_allclose(adv[:, 0, 0], [1.625, 2.5])
    np.testing.assert_allclose(ret[:, 0, 0], [2.125, 3.5])
    # a truncation after epoch 0 cuts the recursion there (its reward holds the bootstrap)
    adv, _ = gae(_buffer([1.0, 2.0], [0.5, 1.0], [1.0, 0.0]), np.array([[3.0]], np.float32), 0.5, 0.5)
    np.testing.assert_allclose(adv[:, 0, 0], [0.5, 2.5])


def test_minibatches_cover_every_row_once_in_a_seeded_order():
    buf = Buffer.zeros(5, 2, 1, 1, 1, 1, 1)                 # N = 10 rows
    z = np.zeros((5, 2, 1), np.float32)
    batch = Batch.of(buf, z, z, np.array([0]))
    order = [torch.cat(list(batch.minibatches(3, torch.Generator().manual_seed(s)))) for s in (1, 1, 2)]
    assert [len(i) for i in batch.minibatches(3, torch.Generator())] == [3, 3, 3, 1]
    assert sorted(order[0].tolist()) == list(range(10))
    assert torch.equal(order[0], order[1]) and not torch.equal(order[0], order[2])


def test_explained_variance_by_hand():
    buf = _buffer([0.0] * 4, [1.0, 2.0, 3.0, 5.0], [0.0] * 4)
    ret = np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape(4, 1, 1)
    batch = Batch.of(buf, ret - buf.value, ret, np.array([0]))
    # residuals (0, 0, 0, -1): unbiased variance 0.25; returns 1..4: 5/3
    assert batch.explained_variance() == pytest.approx(1 - 0.25 / (5 / 3), rel=1e-6)
    z = np.zeros((4, 1, 1), np.float32)
    const = Batch.of(buf, z, z + 2, np.array([0]))          # every return is 2
    assert np.isnan(const.explained_variance())


def test_paired_baseline_takes_out_the_mean_over_the_envs():
    adv = np.arange(12, dtype=np.float32).reshape(2, 3, 2)        # (T, E, n)
    out = paired_baseline(adv)
    # for each epoch and agent: the envs' values minus their mean (the middle env's value)
    np.testing.assert_allclose(out[0, :, 0], [-2.0, 0.0, 2.0])
    np.testing.assert_allclose(out.mean(1), 0.0, atol=1e-6)


@pytest.mark.parametrize("paired", [True, False])
def test_paired_envs_run_the_same_episode_seeds(tmp_path, paired):
    run = PPORun(mappo.Args(**SMALL, paired_envs=paired, out=str(tmp_path)), "mappo", mappo.critic_input)
    seeds = [c.seed for c in run.cores]
    run.collect(), run.collect()        # 12 epochs: every env truncates and resets once
    again = [c.seed for c in run.cores]
    assert (seeds[0] == seeds[1]) == paired and (again[0] == again[1]) == paired
    assert again[0] != seeds[0]
    assert run.paired == paired


def test_value_normalisation_fits_standardised_returns():
    critic = Critic(3, 8, torch.Generator().manual_seed(0))
    x = torch.ones((4, 3))
    raw = critic(x)                                   # before any statistics: mean 0, std 1
    assert torch.allclose(raw, critic.normalised(x))
    ret = np.array([10.0, 12.0, 14.0, 16.0])
    critic.update_norm(ret)
    z = critic.standardise(torch.as_tensor(ret, dtype=torch.float32))
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-3)     # the prior count 1e-4 weighs in
    assert float(z.std(unbiased=False)) == pytest.approx(1.0, rel=1e-3)
    assert torch.allclose(critic(x), critic.normalised(x) * critic.ret_std + critic.ret_mean)


def test_inverse_cdf_draws_never_pick_an_option_of_probability_zero():
    probs = torch.tensor([[0.0, 0.5, 0.5, 0.0], [0.25, 0.0, 0.75, 0.0]]).repeat(500, 1)
    u = torch.rand(1000, generator=torch.Generator().manual_seed(1))
    u[:4] = torch.tensor([0.0, 1.0 - 1e-7, 0.5, 0.9999999])     # the edges
    a = sample(probs, None, u)
    assert bool((probs.gather(1, a[:, None]) > 0).all())
    # the draws follow the probabilities: option 2 in 3/4 of the second kind of rows
    assert float((a[1::2] == 2).float().mean()) == pytest.approx(0.75, abs=0.06)


def test_joint_exploration_makes_agents_of_one_env_share_draws(tmp_path):
    run = PPORun(mappo.Args(**SMALL, joint_explore=1.0, out=str(tmp_path)), "mappo", mappo.critic_input)
    u = run.collector._uniforms((2, 10), None)
    assert torch.equal(u[0, 0], u[0, 9]) and not torch.equal(u[0, 0], u[1, 0])
    run = PPORun(mappo.Args(**SMALL, joint_explore=0.0, out=str(tmp_path / "b")), "mappo", mappo.critic_input)
    assert run.collector._uniforms((2, 10), None) is None


def test_joint_hold_keeps_an_envs_common_draws_for_that_many_epochs(tmp_path):
    run = PPORun(mappo.Args(**SMALL, joint_explore=1.0, joint_hold=3, out=str(tmp_path)), "mappo",
                 mappo.critic_input)
    u = [run.collector._uniforms((2, 10), None) for _ in range(7)]
    same = [torch.equal(u[t], u[t + 1]) for t in range(6)]
    assert same == [True, True, False, True, True, False]      # new draws at epochs 0, 3 and 6
    with pytest.raises(UserError, match="joint_hold: value 0 must be >= 1"):
        mappo.Args(joint_hold=0)


def test_rewards_are_scaled_by_the_running_return_std(tmp_path):
    on = _rows(mappo.train(mappo.Args(**TINY, out=str(tmp_path / "on"))))
    off = _rows(mappo.train(mappo.Args(**TINY, norm_reward=False, out=str(tmp_path / "off"))))
    assert all(float(r["reward_scale"]) == 1.0 for r in off)
    assert all(float(r["reward_scale"]) > 0.0 for r in on)
    assert float(on[-1]["reward_scale"]) != 1.0


# -------------------------------------------------------------------------------------- CLI
def test_cli_train_and_evaluate_in_process(tmp_path, capsys):
    from otmarl.cli import main
    from otmarl.train_cmd import ALGOS, trainers
    assert {k: v.train for k, v in trainers().items()} == {"mappo": mappo.train, "ippo": ippo.train}
    assert tuple(trainers()) == ALGOS                 # --algo's choices are the trainers there are
    out = tmp_path / "ck"
    assert main(["train", "microgrid-solar", "--algo", "ippo", "--steps", "6", "--n-envs", "1",
                 "--num-steps", "3", "--horizon-h", "3", "--warm-start", "best-fixed", "--out", str(out),
                 "--ent-coef", "0", "--joint-explore", "1", "--joint-hold", "2", "--quiet"]) == 0
    meta = json.loads((out / "policy.json").read_text())
    assert (meta["args"]["ent_coef"], meta["args"]["joint_explore"], meta["args"]["joint_hold"]) == (0.0, 1.0, 2)
    assert meta["algo"] == "ippo" and meta["steps"] == 6 and meta["critic_dim"] == meta["obs_dim"]
    assert meta["args"]["warm_start"] == "best-fixed" and meta["warm_start"]["seeds"] == [2**32 + k for k in range(3)]
    assert len(_rows(out)) == 2
    assert main(["evaluate", str(out), "--seeds", "2", "--tune-seeds", "1", "--baselines", "local",
                 "--quiet"]) == 0
    rows = list(csv.DictReader((out / "evaluation.csv").open()))
    seeds = [str(2**31), str(2**31 + 1)]               # evaluation seeds: outside training's range
    assert sorted((r["policy"], r["seed"]) for r in rows) == sorted(
        (p, s) for p in ("ippo", "random-actions", "best-fixed", "local") for s in seeds)
    text = capsys.readouterr().out
    assert "ippo - best-fixed" in text and "ippo - random-actions" in text and "ippo - local" in text
    assert (out / "evaluation-summary.csv").is_file()
    from otmarl.policies.marl.warmstart import WARM_STARTS
    from otmarl.train_cmd import add_train_parser
    import argparse
    parser = add_train_parser(argparse.ArgumentParser().add_subparsers())
    assert tuple(next(a for a in parser._actions if a.dest == "warm_start").choices) == WARM_STARTS
    assert main(["train", "microgrid-solar", "--steps", "0", "--out", str(tmp_path / "x")]) == 2
    assert "total_steps: value 0 must be >= 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------ code shape
OWNED = ("common", "mappo", "ippo", "rollout", "nets", "alignment", "drift", "evaluate", "controller", "deps",
         "warmstart")


def test_trainer_functions_are_short_and_modules_say_what_they_own():
    import otmarl.policies.marl as pkg
    for name in OWNED:
        tree = ast.parse((Path(pkg.__file__).parent / f"{name}.py").read_text())
        assert ast.get_docstring(tree), name
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno + 1 <= 60, f"{name}.{node.name}"


# ------------------------------------------------------------------------ Sinkhorn, barycenter
C4 = ground_cost(4, ordinal=True)


def test_ground_costs():
    np.testing.assert_allclose(C4[0], [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(ground_cost(3, ordinal=False), 1 - np.eye(3))


def test_sinkhorn_divergence_zero_iff_equal_and_differentiable():
    a = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    assert abs(float(sinkhorn_divergence(a.detach(), a.detach(), C4))) < 1e-7
    s = sinkhorn_divergence(a, b, C4)
    assert float(s.detach()) > 0.05
    near = sinkhorn_divergence(a.detach(), torch.tensor([0.1, 0.2, 0.31, 0.39], dtype=torch.float64), C4)
    assert 0 < float(near) < float(s.detach())
    s.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
    # the gradient agrees with central differences along directions in the simplex
    for d in ([1.0, -1.0, 0, 0], [0, 0.5, 0.5, -1.0]):
        d = torch.tensor(d, dtype=torch.float64)
        h = 1e-5
        fd = (sinkhorn_divergence(a.detach() + h * d, b, C4)
              - sinkhorn_divergence(a.detach() - h * d, b, C4)) / (2 * h)
        np.testing.assert_allclose(float((a.grad * d).sum()), float(fd), rtol=1e-5, atol=1e-8)


def test_sinkhorn_divergence_is_batched():
    a = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    b = torch.tensor([0.4, 0.3, 0.2, 0.1])
    batch = sinkhorn_divergence(a, b[None, :], C4)
    one = torch.stack([sinkhorn_divergence(a[k], b, C4) for k in range(2)])
    np.testing.assert_allclose(batch.numpy(), one.numpy(), rtol=1e-5)


def test_barycenter_of_identical_distributions_is_that_distribution():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(barycenter(np.stack([p, p, p]), C4, eps=0.1), p, atol=1e-4)
    # symmetric inputs give a symmetric barycenter
    b = barycenter(np.array([[0.7, 0.3, 0, 0], [0, 0, 0.3, 0.7]]), C4, eps=0.1)
    np.testing.assert_allclose(b, b[::-1], atol=1e-6)
    assert abs(b.sum() - 1) < 1e-12


# ------------------------------------------------------------------------------------ drift
def _run_detector(x: np.ndarray, window: int) -> list[DriftSignal]:
    det = DriftDetector(window, block=2, n_perm=200, seed=0, calibration="permutation")
    out = []
    for k, row in enumerate(x):
        det.push(row)
        if det.ready and k % window == window - 1:
            out.append(det.check())
    return out


def test_drift_detector_flags_a_shift_and_not_a_stationary_sequence():
    rng = np.random.default_rng(7)
    stationary = rng.normal(size=(400, 5))
    flags = [s.drift for s in _run_detector(stationary, 40)]
    assert len(flags) == 9 and sum(flags) <= 1         # 5% false alarms expected
    shifted = rng.normal(size=(120, 5))
    shifted[60:, :3] += 1.5                             # three of five columns move by 1.5 sd
    det = DriftDetector(60, block=2, n_perm=200, seed=0, calibration="permutation")
    for row in shifted:
        det.push(row)
    sig = det.check()
    assert sig.drift and sig.ratio > 2


def test_history_calibration_needs_a_calm_history_then_flags_a_shift():
    """The default threshold is the quantile of earlier distances: no alarm before 20 checks,
    about alpha of the checks of a stationary stream, and a step change flagged."""
    rng = np.random.default_rng(11)
    det = DriftDetector(20, seed=0)
    x = rng.normal(size=(2000, 4))
    x[1500:, :2] += 2.0                                 # a shift at row 1500
    signals = []
    for k, row in enumerate(x):
        det.push(row)
        if det.ready and k % 10 == 9:
            signals.append((k, det.check()))
    assert all(not s.drift and s.threshold == np.inf for _, s in signals[:20])
    calm = [s.drift for k, s in signals[20:] if k < 1500]
    assert sum(calm) <= 0.1 * len(calm)                 # ~5 % expected
    assert any(s.drift for k, s in signals if 1500 <= k < 1540)
    assert lr_factor(signals[0][1]) == 1.0              # no threshold yet: the base rate


def test_learning_rate_factor_is_bounded_and_follows_the_distance():
    assert lr_factor(None) == 1.0
    assert lr_factor(DriftSignal(0.5, 1.0)) == 1.0               # below the threshold: lr0
    assert lr_factor(DriftSignal(1.5, 1.0), beta=1.0) == 1.5
    assert lr_factor(DriftSignal(10.0, 1.0), beta=1.0, max_factor=3.0) == 3.0


def test_global_context_and_node_identity_features():
    from otmarl.policies.marl.core import MarlCore
    from otmarl.policies.marl.features import COL
    core = MarlCore(resolve_scenario("edge-offload"), EnvOptions())
    core.reset(3)
    for _ in range(3):
        obs, *_ = core.step(np.ones((core.n, 5), np.int64))
    cur, info = core.cur, core.info
    # the global columns are the same for every node and are the network's totals and extremes
    assert np.allclose(obs[:, COL["g_soc"]], cur.stored_wh.sum() / info.capacity_wh.sum(), atol=1e-6)
    assert np.allclose(obs[:, COL["g_soc_min"]], (cur.stored_wh / info.capacity_wh).min(), atol=1e-6)
    assert np.allclose(obs[:, COL["g_up"]], cur.up.mean(), atol=1e-6)
    # static columns: sizes against the mean node (mean 1 unless clipped), kept across steps
    assert obs[:, COL["cap_rel"]].mean() == pytest.approx(1.0, rel=1e-5)
    assert np.allclose(obs[:, COL["cap_rel"]], info.capacity_wh / info.capacity_wh.mean(), rtol=1e-5)
    assert len(np.unique(obs[:, COL["compute_rel"]])) > 1       # edge servers differ from sensors


def test_stacked_consensus_equals_the_per_component_one():
    """Market mode solves its components as one batch with the barycenters' own term cached:
    the same dispersion as component by component."""
    from otmarl.policies.marl.alignment import Consensus
    rng = np.random.default_rng(3)
    groups = np.array([0, 0, 1, 1, 2])
    probs = [torch.softmax(torch.tensor(rng.normal(size=(40, 4)), dtype=torch.float32), -1) for _ in range(5)]
    group = torch.as_tensor(np.tile(groups, 8))
    stacked = Consensus([4] * 5, [True] * 5, groups, 0.1)
    single = Consensus([4] * 5, [True] * 5, groups, 0.1)
    single.stacked = None
    for c in (stacked, single):
        c.refresh(probs, group)
    assert float(stacked.dispersion(probs, group)) == pytest.approx(float(single.dispersion(probs, group)),
                                                                     rel=1e-4, abs=1e-7)


def test_the_drift_history_travels_with_the_checkpoint(trained, tmp_path):
    """The detector's threshold is the history of its distances: a run continued with --init
    starts from that history instead of waiting 20 checks again."""
    meta = json.loads((trained[1] / "policy.json").read_text())
    checks = [r for r in _rows(trained[1]) if r["drift_distance"] not in ("", "nan")]
    assert len(meta["drift_history"]) == len(checks) > 0
    more = ippo.train(ippo.Args(**SMALL, mode="direct", drift=True, drift_window_h=3, init=str(trained[1]),
                                out=str(tmp_path / "more")))
    again = json.loads((more / "policy.json").read_text())["drift_history"]
    assert again[:len(checks)] == meta["drift_history"] and len(again) > len(checks)
    assert json.loads((trained[0] / "policy.json").read_text())["drift_history"] is None


def test_checkpoint_selection_keeps_the_best_candidate_and_it_plays_its_score(tmp_path):
    """select_every: candidates before the first update, every U updates and after the last, each
    deployed by sampling and by its mode on the selection seeds; the checkpoint written is the
    first of the highest mean team return, with that deployment, and played again on the same
    seeds it gives that score; the last update's checkpoint is kept in out/last."""
    from otmarl.policies.marl.controller import MarlController
    from otmarl.policies.marl.controls import tune_seeds
    from otmarl.policies.marl.evaluate import run_policy
    args = {**TINY, "horizon_h": 12, "total_steps": 27, "select_every": 2, "select_seeds": 2}
    folder = mappo.train(mappo.Args(**args, out=str(tmp_path / "sel")))
    meta = json.loads((folder / "policy.json").read_text())
    sel = meta["selection"]
    cands = sel["candidates"]
    n = 9                                       # updates: 27 steps, 1 env x 3 epochs each
    assert [(c["update"], c["deploy"]) for c in cands] == [
        (u, d) for u in (-1, 1, 3, 5, 7, n - 1) for d in ("sample", "mode")]   # before, every 2, last
    best = max(cands, key=lambda c: c["team_return"])
    assert sel["chosen"] == next(c for c in cands if c["team_return"] == best["team_return"])
    assert meta["args"]["deploy"] == sel["chosen"]["deploy"] and sel["seeds"] == tune_seeds(2)
    assert (folder / "last" / "actor.pt").is_file() and not (folder / "selection").exists()
    sc = resolve_scenario("microgrid-solar", [], 12)
    again = np.mean([run_policy(sc, lambda: MarlController(folder), s)["team_return"] for s in sel["seeds"]])
    assert again == pytest.approx(sel["chosen"]["team_return"], rel=1e-12)
    with pytest.raises(UserError, match="select_every: value -1 must be >= 0"):
        mappo.Args(select_every=-1)
