"""Does MAPPO learn? Train once, then compare on fresh evaluation seeds with paired 95 % CIs.

    python benchmarks/marl_learn.py microgrid-solar --steps 20000 --seed 0 --eval-seeds 10
    python benchmarks/marl_learn.py edge-offload --steps 30000 --set lr=1e-3 --out runs/learn

One training run (seed ``--seed``; its episodes draw their seeds from that seed's generator,
below 2**31), then every policy runs on the evaluation seeds 1000, 1001, ... (disjoint from the
tuning seeds 500, 501, ... and, with overwhelming probability, from the training episodes):

- ``mappo-sample``: the trained actor through ``--policy marl:DIR`` sampling its actions (the
  policy PPO optimised, and how a trained policy is deployed by default, ``deploy='sample'``);
- ``mappo-mode``: the same actor taking the most likely allowed option per component (a
  near-uniform policy's argmax can be far worse than its samples);
- ``random-actions``: every agent draws each component uniformly among its allowed options;
- ``best-fixed``: one constant action shared by every agent, found by coordinate ascent over
  the components on the tuning seeds (start: every level at its top, lowest reserve; each pass
  tries every option of each component in turn, keeping the best mean team return; until a pass
  changes nothing, at most ``--fixed-passes`` passes); cached per scenario and mode in ``--out``;
- ``ot``: the OT controller (market mode only needs no actions).

(``otmarl evaluate`` is the general comparison, with its own controls in
``policies/marl/controls.py``; this script is the quick train-then-check loop whose numbers
docs/marl.md quotes, and keeps its own mask-respecting random draws and search so that they
stay reproducible.) It prints the team return of each (mean and 95 % CI over the evaluation
seeds) and the paired differences of the trained policy against every control
(``analysis.stats.paired_table``), the training throughput (agent-steps/s) and the last
updates' approx_kl, entropy, clipfrac and explained variance from train.csv; it writes
``--out/NAME/eval.csv``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from otmarl.analysis.stats import ci_table, paired_table
from otmarl.policies import make_controller
from otmarl.policies.marl import mappo
from otmarl.policies.marl.controller import MarlController
from otmarl.policies.marl.core import EnvOptions, MarlCore, resolve_scenario
from otmarl.policies.marl.evaluate import run_policy

EVAL_BASE, TUNE_BASE = 1000, 500
Act = Callable[[MarlCore], np.ndarray]


def run_actions(core: MarlCore, seed: int, act: Act) -> float:
    """Team return of one episode where ``act(core)`` gives every epoch's actions."""
    core.reset(seed)
    done = False
    while not done:
        _, _, done, _ = core.step(act(core))
    return core.team_return


def random_actions(seed: int) -> Act:
    """Uniform over each component's allowed options (a seeded generator per episode)."""
    rng = np.random.default_rng(seed)

    def act(core: MarlCore) -> np.ndarray:
        m, off = core.masks().astype(float), core.spec.offsets
        cols = []
        for k in range(len(core.spec.nvec)):
            p = m[:, off[k]:off[k + 1]]
            c = np.cumsum(p / p.sum(1, keepdims=True), 1)
            cols.append(np.minimum((rng.random((core.n, 1)) > c).sum(1), p.shape[1] - 1))
        return np.stack(cols, 1)
    return act


def fixed(action: tuple[int, ...]) -> Act:
    return lambda core: np.tile(np.asarray(action, np.int64), (core.n, 1))


def best_fixed(sc, opts: EnvOptions, seeds: list[int], passes: int, cache: Path) -> tuple[int, ...]:
    """Coordinate ascent over a constant shared action on the tuning seeds (cached)."""
    if cache.is_file():
        return tuple(json.loads(cache.read_text())["action"])
    core = MarlCore(sc, opts)
    nvec, names = core.spec.nvec, core.spec.names
    best = tuple(int(k) - 1 for k in nvec)
    if "reserve_soc" in names:
        best = tuple(0 if n == "reserve_soc" else b for n, b in zip(names, best))
    score = {}

    def value(a: tuple[int, ...]) -> float:
        if a not in score:
            score[a] = float(np.mean([run_actions(core, s, fixed(a)) for s in seeds]))
        return score[a]
    for _ in range(passes):
        start = best
        for k, size in enumerate(nvec):
            cands = [best[:k] + (v,) + best[k + 1:] for v in range(size)]
            best = max(cands, key=value)
        if best == start:
            break
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"action": list(best), "names": list(names), "tuning_seeds": seeds,
                                 "mean_return": value(best), "evaluated": len(score)}) + "\n")
    return best


def parse_set(items: list[str]) -> dict:
    """'field=value' overrides of mappo.Args, typed like the field's default."""
    fields = {f.name: f for f in dataclasses.fields(mappo.Args)}
    out = {}
    for it in items:
        k, v = it.split("=", 1)
        if k.startswith("reward."):          # a reward weight: reward.local=0.5
            out.setdefault("reward", {})[k.split(".", 1)[1]] = float(v)
            continue
        default = fields[k].default
        out[k] = (v.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)(v)
    return out


def train(a: argparse.Namespace, folder: Path) -> Path:
    if a.reuse and (folder / "policy.json").is_file():
        return folder
    args = mappo.Args(scenario=a.scenario, mode=a.mode, seed=a.seed, total_steps=a.steps,
                      out=str(folder), **parse_set(a.set))
    t = time.perf_counter()
    mappo.train(args)
    print(f"trained {a.steps} steps in {time.perf_counter() - t:.0f} s", flush=True)
    return folder


def evaluate(a: argparse.Namespace, folder: Path, fixed_action: tuple[int, ...]) -> pd.DataFrame:
    sc = resolve_scenario(a.scenario)
    opts = EnvOptions(mode=a.mode)
    core = MarlCore(sc, opts)
    rows = []
    for s in range(EVAL_BASE, EVAL_BASE + a.eval_seeds):
        row = {"mappo-mode": run_policy(sc, lambda: MarlController(folder, sample=False), s, opts)["team_return"],
               "mappo-sample": run_policy(sc, lambda: MarlController(folder, sample=True), s, opts)["team_return"],
               "random-actions": run_actions(core, s, random_actions(s)),
               "best-fixed": run_actions(core, s, fixed(fixed_action))}
        if a.mode == "market":
            row["ot"] = run_policy(sc, lambda: make_controller("ot"), s, opts)["team_return"]
        rows += [{"policy": p, "seed": s, "team_return": v} for p, v in row.items()]
    return pd.DataFrame(rows)


def report(rows: pd.DataFrame, folder: Path) -> None:
    ci = ci_table(rows, ["team_return"])
    print("\nteam return on evaluation seeds (mean [95 % CI])")
    for _, r in ci.iterrows():
        print(f"  {r['policy']:<15} {r['mean']:9.2f}  [{r['ci_low']:.2f}, {r['ci_high']:.2f}]  n={r['n']}")
    for pol in ("mappo-sample", "mappo-mode"):
        print(f"\npaired difference {pol} - control")
        for base in [p for p in rows.policy.unique() if not p.startswith("mappo")]:
            t = paired_table(rows[rows.policy.isin([pol, base])], ["team_return"], base)
            r = t.iloc[0]
            print(f"  vs {base:<15} {r['mean_diff']:+8.2f}  [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
                  f"  {'beats' if r['ci_low'] > 0 else ('loses' if r['ci_high'] < 0 else 'ties')}")
    log = pd.read_csv(folder / "train.csv")
    tail = log.tail(max(1, len(log) // 10))
    print(f"\ntraining: {int(log.agent_steps.iloc[-1])} agent-steps, "
          f"{log.agent_steps.iloc[-1] / log.wall_s.iloc[-1]:.0f} agent-steps/s; last 10 % of updates: "
          + ", ".join(f"{k} {tail[k].mean():.4g}" for k in
                      ("approx_kl", "entropy", "clipfrac", "explained_variance", "reward_mean")))
    head = log.head(max(1, len(log) // 10))
    print(f"reward_mean first 10 % {head.reward_mean.mean():.4g}, last 10 % {tail.reward_mean.mean():.4g}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario")
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--mode", default="market")
    p.add_argument("--eval-seeds", type=int, default=10)
    p.add_argument("--tune-seeds", type=int, default=2)
    p.add_argument("--fixed-passes", type=int, default=2)
    p.add_argument("--set", action="append", default=[], help="mappo.Args field=value")
    p.add_argument("--name", default=None, help="run folder name under --out")
    p.add_argument("--out", default="runs/learn")
    p.add_argument("--reuse", action="store_true", help="do not retrain a folder with policy.json")
    a = p.parse_args()
    out = Path(a.out)
    folder = out / (a.name or f"{a.scenario}-{a.mode}-s{a.seed}-{a.steps}")
    sc = resolve_scenario(a.scenario)
    tune = list(range(TUNE_BASE, TUNE_BASE + a.tune_seeds))
    train(a, folder)
    action = best_fixed(sc, EnvOptions(mode=a.mode), tune, a.fixed_passes,
                        out / f"best-fixed-{a.scenario}-{a.mode}.json")
    print(f"best-fixed action {action} (tuning seeds {tune})", flush=True)
    rows = evaluate(a, folder, action)
    rows.to_csv(folder / "eval.csv", index=False)
    report(rows, folder)


if __name__ == "__main__":
    main()
