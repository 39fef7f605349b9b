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
    t.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="override a scenario field, e.g. --set nodes.home.count=17")
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    return t


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    e = subparsers.add_parser("evaluate", help="a trained policy against baselines across seeds",
                              description="Run a trained policy and baselines on seeds 0..N-1; print "
                              "team return, on-time ratio and energy metrics as mean ± 95 % CI; write "
                              "DIR/evaluation.csv (one row per run).")
    e.add_argument("dir", metavar="DIR", help="a checkpoint folder written by 'otmarl train'")
    e.add_argument("--scenario", help="scenario to evaluate on (default: the training scenario)")
    e.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    e.add_argument("--baselines", default="local,random,ot",
                   help="comma-separated controllers to compare with (default local,random,ot)")
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


def cmd_train(args) -> int:
    mod = trainers()[args.algo]
    name = Path(args.scenario).stem if args.scenario.endswith((".yaml", ".yml")) else args.scenario
    out = args.out or f"runs/{args.algo}-{name}-s{args.seed}"
    a = mod.Args(scenario=args.scenario, overrides=tuple(args.set), horizon_h=args.horizon_h,
                 mode=args.mode, seed=args.seed, total_steps=args.steps, n_envs=args.n_envs,
                 num_steps=args.num_steps, lr=args.lr, align_lambda=args.align_lambda,
                 align_every=args.align_every, drift=args.drift, init=args.init, out=out)
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

    folder = mod.train(a, progress)
    print(f"{folder}: actor.pt, critic.pt, policy.json, train.csv (use --policy marl:{folder})")
    return 0


def cmd_evaluate(args) -> int:
    from otmarl.policies import make_controller
    from otmarl.policies.marl.common import load_meta
    from otmarl.policies.marl.core import EnvOptions, resolve_scenario
    from otmarl.policies.marl.evaluate import ci_table, evaluate, format_ci
    meta = load_meta(args.dir)
    ta = meta["args"]
    if args.scenario:
        sc = resolve_scenario(args.scenario, args.set, args.horizon_h)
    else:
        sc = resolve_scenario(ta["scenario"], list(ta["overrides"]) + list(args.set),
                              args.horizon_h or ta["horizon_h"])
    if args.seeds < 1:
        raise UserError(f"--seeds: value {args.seeds} must be >= 1")
    marl = f"marl:{args.dir}"
    names = [b.strip() for b in args.baselines.split(",") if b.strip()]
    for b in names:
        make_controller(b)                       # unknown names fail before any run
    policies = {f"{meta['algo']}": lambda: make_controller(marl),
                **{b: (lambda b=b: make_controller(b)) for b in names}}
    every = _Every()

    def progress(done: int, total: int) -> None:
        if not args.quiet and every.due(done == total):
            print(f"evaluate: {done}/{total} runs", file=sys.stderr, flush=True)

    rows = evaluate(sc, policies, range(args.seeds), EnvOptions.from_dict(meta["env"]), progress)
    rows.to_csv(Path(args.dir) / "evaluation.csv", index=False)
    print(f"{sc.name}, seeds 0..{args.seeds - 1} (mean ± 95% CI):")
    print(format_ci(ci_table(rows)))
    print(f"written: {Path(args.dir) / 'evaluation.csv'}")
    return 0
