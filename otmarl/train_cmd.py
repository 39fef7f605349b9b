"""``otmarl train SCENARIO --algo mappo|ippo ...`` and ``otmarl evaluate DIR ...``.

This module owns the two MARL commands' arguments and output: ``train`` picks the algorithm's
module once, by name, and hands it a typed ``Args``; ``evaluate`` scores a checkpoint against
baselines. Torch, gymnasium and pettingzoo are imported only when these commands run; a
missing one is a user error naming the extra to install.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from otmarl.scenarios.errors import UserError

ALGOS = ("mappo", "ippo")


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    t = subparsers.add_parser("train", help="train a MARL policy (MAPPO or IPPO) against a scenario",
                              description="Train a shared-actor PPO policy on the MARL env of a "
                              "scenario; writes actor.pt, critic.pt, policy.json and train.csv to --out. "
                              "Use it with --policy marl:DIR in run and compare.")
    t.add_argument("scenario", help="a scenario file or a built-in name")
    t.add_argument("--algo", choices=ALGOS, default="mappo", help="mappo (centralised critic, default) "
                   "or ippo (decentralised critic)")
    t.add_argument("--steps", type=int, default=50_000, help="control epochs to simulate in total, "
                   "summed over the parallel envs (default 50000)")
    t.add_argument("--out", help="checkpoint folder (default runs/<algo>-<scenario>-s<seed>)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--mode", choices=("market", "direct"), default="market",
                   help="market: agents set offers that OT clears (default); direct: no OT")
    t.add_argument("--align-lambda", type=float, default=0.0, metavar="L",
                   help="Wasserstein-barycenter consensus weight (> 0 aligns, < 0 diversifies)")
    t.add_argument("--align-every", type=int, default=5, metavar="K", help="updates between barycenters")
    t.add_argument("--drift", action="store_true", help="drift-adaptive learning rate")
    t.add_argument("--n-envs", type=int, default=8, help="parallel envs (default 8)")
    t.add_argument("--num-steps", type=int, default=48, help="epochs per env per update (default 48)")
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--horizon-h", type=float, help="episode length in hours (default: the scenario's)")
    t.add_argument("--init", metavar="DIR", help="start from this checkpoint")
    t.add_argument("--warm-start", choices=("none", "best-fixed"), default="none",
                   help="best-fixed: start the actor at the best constant action, searched on the "
                   "tuning seeds (docs/marl.md); none: a near-uniform start (default)")
    t.add_argument("--ent-coef", type=float, default=0.01, help="entropy bonus (default 0.01; the "
                   "warm-start recipe of docs/marl.md uses 0)")
    t.add_argument("--joint-explore", type=float, default=0.0, metavar="P",
                   help="share of actions drawn from the env's common uniforms (default 0)")
    t.add_argument("--joint-hold", type=int, default=1, metavar="H",
                   help="epochs each env keeps those common draws (default 1)")
    t.add_argument("--select-every", type=int, default=0, metavar="U",
                   help="checkpoint selection: play the actor on tuning seeds before the first "
                   "update and every U updates, by sampling and by its mode, and keep the best "
                   "(default 0: off, the last update)")
    t.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="override a scenario field, e.g. --set nodes.home.count=17")
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a folder that holds a different training (else: exit 2 naming the difference)")
    return t


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    e = subparsers.add_parser("evaluate", help="a trained policy against the controls across seeds",
                              description="Run trained policies (one or several training runs of one "
                              "algorithm) and the controls on the evaluation seeds: random-actions, "
                              "best-fixed (searched on tuning seeds) and the controllers local, ot and mpc "
                              "(when registered). Print mean ± 95 % CI per policy and the paired "
                              "differences trained - control; write the rows and the tables as CSV.")
    e.add_argument("dirs", nargs="+", metavar="DIR", help="checkpoint folders written by 'otmarl train' "
                   "(several: training runs of the same scenario, mode and algorithm)")
    e.add_argument("--scenario", help="scenario to evaluate on (default: the training scenario)")
    e.add_argument("--seeds", type=int, default=10, help="evaluation seeds (default 10)")
    e.add_argument("--tune-seeds", type=int, default=3, help="tuning seeds of best-fixed (default 3)")
    e.add_argument("--baselines", help="comma-separated controllers next to the controls (default: "
                   "local,ot and mpc if registered)")
    e.add_argument("--out", help="CSV of the rows (default DIR/evaluation.csv of the first DIR; the "
                   "tables go next to it as evaluation-summary.csv)")
    e.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    e.add_argument("--horizon-h", type=float)
    e.add_argument("--quiet", action="store_true")
    return e


def add_parser(subparsers) -> None:
    """Add ``train`` and ``evaluate`` to the CLI's subparsers."""
    add_train_parser(subparsers)
    add_evaluate_parser(subparsers)


class _Every:
    """A progress line every few seconds (and the last one)."""

    def __init__(self, every_s: float = 5.0):
        self.every_s, self.last = every_s, 0.0

    def due(self, final: bool) -> bool:
        now = time.monotonic()
        if final or now - self.last >= self.every_s:
            self.last = now
            return True
        return False


def trainers() -> dict:
    """Algorithm name -> its module (``Args`` and ``train``), picked once at the door.
    Importing them imports torch, or raises a UserError saying how to install it."""
    from otmarl.policies.marl import ippo, mappo
    return {"mappo": mappo, "ippo": ippo}


def training_identity(a) -> dict:
    """What makes two trainings the same: the algorithm's arguments (the folder aside) and the
    resolved scenario they train on."""
    import json
    from dataclasses import asdict

    from otmarl.policies.marl.core import resolve_scenario
    sc = resolve_scenario(a.scenario, a.overrides, a.horizon_h)
    ident = {"args": {k: v for k, v in asdict(a).items() if k != "out"},
             "scenario": json.loads(sc.model_dump_json())}
    return json.loads(json.dumps(ident))          # as it reads back from training.json


def default_train_folder(args, identity: dict) -> str:
    """runs/<algo>-<scenario>-s<seed>, then -direct for direct mode and a short hash of the
    arguments when any differs from the defaults of a plain 'otmarl train SCENARIO'."""
    import hashlib
    import json
    name = Path(args.scenario).stem if args.scenario.endswith((".yaml", ".yml")) else args.scenario
    folder = f"runs/{args.algo}-{name}-s{args.seed}" + ("-direct" if args.mode == "direct" else "")
    plain = add_train_parser(argparse.ArgumentParser().add_subparsers()).parse_args([args.scenario])
    if any(getattr(args, k) != getattr(plain, k) for k in vars(plain)
           if k not in ("scenario", "algo", "seed", "mode", "out", "quiet", "overwrite")):
        folder += "-" + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:6]
    return folder


def _holds_training(out: Path, identity: dict) -> bool:
    """True if ``out`` holds this very training; False if it is absent or empty; a UserError if
    it holds anything else (the run folders' rule)."""
    import json

    from otmarl.run import holds_kind, refuse_other
    if not holds_kind(out, "training.json", "training"):
        return False
    try:
        old = json.loads((out / "training.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"--out: '{out}' holds a training whose training.json cannot be read; "
                        "pass --overwrite to replace it") from None
    refuse_other(out, old, identity, "training")
    return (out / "policy.json").is_file()


def cmd_train(args) -> int:
    import json
    import os
    import shutil
    from dataclasses import replace

    from otmarl.run import _put_in_place
    mod = trainers()[args.algo]
    name = Path(args.scenario).stem if args.scenario.endswith((".yaml", ".yml")) else args.scenario
    a = mod.Args(scenario=args.scenario, overrides=tuple(args.set), horizon_h=args.horizon_h,
                 mode=args.mode, seed=args.seed, total_steps=args.steps, n_envs=args.n_envs,
                 num_steps=args.num_steps, lr=args.lr, align_lambda=args.align_lambda,
                 align_every=args.align_every, drift=args.drift, init=args.init,
                 warm_start=args.warm_start, ent_coef=args.ent_coef, joint_explore=args.joint_explore,
                 joint_hold=args.joint_hold, select_every=args.select_every, out="")
    identity = {"algo": args.algo, **training_identity(a)}
    out = Path(args.out or default_train_folder(args, identity))
    if not args.overwrite and _holds_training(out, identity):
        print(f"{out}: already holds this training (same algorithm, arguments and scenario); nothing "
              "recomputed (--overwrite trains again)", file=sys.stderr)
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    a = replace(a, out=str(tmp))
    every = _Every()

    def progress(row: dict) -> None:
        final = row["global_step"] >= row["total_steps"]
        if args.quiet or not every.due(final):
            return
        ret = row["episode_return"]
        ret = "-" if ret != ret else f"{ret:.2f}"          # NaN until an episode has finished
        eta = row["wall_s"] / row["global_step"] * (row["total_steps"] - row["global_step"])
        rate = row["agent_steps"] / row["wall_s"]
        print(f"train {args.algo} {name}: step {row['global_step']}/{row['total_steps']}, "
              f"reward/epoch {row['reward_mean']:.3f}, episode return {ret}, {rate:.0f} agent-steps/s, "
              f"lr {row['lr']:.2e}, ETA {eta:.0f} s", file=sys.stderr, flush=True)

    try:
        mod.train(a, progress)
        (tmp / "training.json").write_text(json.dumps(identity, indent=2) + "\n")
    except BaseException:          # interrupted or failed: no half folder under the final name
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _put_in_place(tmp, out)
    print(f"{out}: actor.pt, critic.pt, policy.json, train.csv (use --policy marl:{out})")
    return 0


DEFAULT_BASELINES = ("local", "ot", "mpc")


def _baselines(spec: str | None) -> list[str]:
    """Controller names: the given ones (each must exist) or the registered defaults."""
    from otmarl.policies import REGISTRY, make_controller
    if spec is None:
        return [b for b in DEFAULT_BASELINES if b in REGISTRY]
    names = [b.strip() for b in spec.split(",") if b.strip()]
    for b in names:
        make_controller(b)                       # unknown names fail before any run
    return names


def _runs(dirs: list[str]) -> tuple[dict, dict[str, str]]:
    """The first run's meta and {run label: folder}; every run must match the first's
    algorithm, scenario and env options."""
    from otmarl.policies.marl.common import load_meta
    metas = [load_meta(d) for d in dirs]
    first = metas[0]
    key = lambda m: (m["algo"], m["args"]["scenario"], list(m["args"]["overrides"]), m["env"])  # noqa: E731
    runs: dict[str, str] = {}
    for d, m in zip(dirs, metas):
        if key(m) != key(first):
            raise UserError(f"{d}: trained with {m['algo']} on {m['args']['scenario']} ({m['env']['mode']} "
                            f"mode); {dirs[0]} with {first['algo']} on {first['args']['scenario']} "
                            f"({first['env']['mode']} mode): evaluate runs of one set-up together")
        label = f"seed{m['args']['seed']}"
        runs[label if label not in runs else d] = d
    return first, runs


def cmd_evaluate(args) -> int:
    from otmarl.policies.marl.controls import control_policies, eval_seeds
    from otmarl.policies.marl.core import EnvOptions, resolve_scenario
    from otmarl.policies.marl.evaluate import compare, evaluate_runs, format_comparison, summary_frame
    for flag, v in (("--seeds", args.seeds), ("--tune-seeds", args.tune_seeds)):
        if v < 1:
            raise UserError(f"{flag}: value {v} must be >= 1")
    meta, runs = _runs(args.dirs)
    ta = meta["args"]
    if args.scenario:
        sc = resolve_scenario(args.scenario, args.set, args.horizon_h)
    else:
        sc = resolve_scenario(ta["scenario"], list(ta["overrides"]) + list(args.set),
                              args.horizon_h or ta["horizon_h"])
    names, options, algo = _baselines(args.baselines), EnvOptions.from_dict(meta["env"]), meta["algo"]
    every = _Every()

    def say(msg: str, final: bool) -> None:
        if not args.quiet and every.due(final):
            print(msg, file=sys.stderr, flush=True)

    controls, best = control_policies(sc, options, args.tune_seeds, names,
                                      lambda k: say(f"best-fixed: {k} actions tried", False))
    say(f"best-fixed: action {list(best.action)}, mean team return {best.score:.4g} on "
        f"{args.tune_seeds} tuning seeds ({len(best.scores)} actions tried)", True)
    seeds = eval_seeds(args.seeds)
    rows = evaluate_runs(sc, algo, runs, controls, seeds, options,
                         lambda what, k, n: say(f"evaluate {what}: {k}/{n} runs", k == n))
    out = Path(args.out) if args.out else Path(args.dirs[0]) / "evaluation.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out, index=False)
    cmp = compare(rows, algo)
    summary_frame(cmp).to_csv(out.with_name(out.stem + "-summary.csv"), index=False)
    print(f"{sc.name}, {algo} ({len(runs)} training run(s)), evaluation seeds {seeds[0]}..{seeds[-1]}; "
          f"best-fixed = {list(best.action)} ({'/'.join(meta['action']['names'])}), searched on "
          f"{args.tune_seeds} tuning seeds")
    print(format_comparison(cmp, algo, len(runs), args.seeds))
    print(f"written: {out}, {out.with_name(out.stem + '-summary.csv')}")
    return 0

