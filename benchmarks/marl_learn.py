"""Does MAPPO learn? Train once, then compare on fresh evaluation seeds with paired 95 % CIs.

    python benchmarks/marl_learn.py microgrid-solar --steps 20000 --seed 0 --eval-seeds 10
    python benchmarks/marl_learn.py edge-offload --steps 30000 --set lr=1e-3 --out runs/learn
    python benchmarks/marl_learn.py microgrid-solar --steps 200000 --reuse --name RUN/last  # the last
        # update of a run made with checkpoint selection (RUN its folder name under --out)

One training run (seed ``--seed``; its episodes draw their seeds below 2**31 from that seed's
generator), then every policy runs on the evaluation seeds of ``otmarl evaluate``
(``controls.eval_seeds``: 2**31, 2**31 + 1, ...), disjoint from the training episodes and from
the tuning seeds of best-fixed (``controls.tune_seeds``: 2**32, ...). The controls are those of
``policies/marl/controls.py``, the same code ``otmarl evaluate`` runs:

- ``mappo-sample``: the trained actor through ``--policy marl:DIR`` sampling its actions (the
  policy PPO optimised, and how a trained policy is deployed by default, ``deploy='sample'``);
- ``mappo-mode``: the same actor taking the most likely allowed option per component (a
  near-uniform policy's argmax can be far worse than its samples);
- ``random-actions``: ``controls.RandomActions``, every component uniform over its options;
- ``best-fixed``: ``controls.search_fixed`` on ``--tune-seeds`` tuning seeds, one constant action
  shared by every agent; cached per scenario and mode in ``--out``;
- ``local``, ``ot`` (market mode) and ``mpc``: the controllers, run on the same worlds.

It prints the team return of each (mean and 95 % CI over the evaluation seeds) and the paired
differences of the trained policy against every control (``analysis.stats.paired_table``), the
training throughput (agent-steps/s) and the last updates' approx_kl, entropy, clipfrac and
explained variance from train.csv; it writes ``--out/NAME/eval.csv``. Training runs on one
torch thread (``torch_threads``, default 1).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import pandas as pd

from otmarl.analysis.stats import ci_table, paired_table
from otmarl.policies import REGISTRY, make_controller
from otmarl.policies.marl import controls, mappo
from otmarl.policies.marl.controller import MarlController
from otmarl.policies.marl.core import EnvOptions, resolve_scenario
from otmarl.policies.marl.evaluate import run_policy


def best_fixed(sc, opts: EnvOptions, n_tune: int, cache: Path, folder: Path) -> tuple[int, ...]:
    """``controls.search_fixed`` on the first ``n_tune`` tuning seeds: the search a warm-started
    training made on the same seeds (policy.json), else the cached one (JSON), else a new one."""
    seeds = controls.tune_seeds(n_tune)
    for f, key in ((folder / "policy.json", "warm_start"), (cache, None)):
        found = json.loads(f.read_text()) if f.is_file() else {}
        found = found.get(key) if key else found
        if found and found["seeds"] == seeds:
            return tuple(found["action"])
    found = controls.search_fixed(sc, opts, seeds)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(found.to_dict()) + "\n")
    return found.action


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
    """One row (policy, seed, team_return) per policy and evaluation seed. The controls' rows do
    not depend on the training: they are kept in ``--out`` per scenario, mode, best-fixed action
    and number of evaluation seeds, and read from there by the next run (delete that file, like
    the best-fixed one, after a change to the code the controls run)."""
    sc = resolve_scenario(a.scenario)
    opts = EnvOptions(mode=a.mode)
    seeds = controls.eval_seeds(a.eval_seeds)

    def rows(pols: dict) -> pd.DataFrame:
        return pd.DataFrame([{"policy": p, "seed": s, "team_return": run_policy(sc, make, s, opts)["team_return"]}
                             for s in seeds for p, make in pols.items()])
    cache = Path(a.out) / (f"controls-{a.scenario}-{a.mode}-{'-'.join(map(str, fixed_action))}"
                           f"-{a.eval_seeds}.csv")
    if cache.is_file():
        held = pd.read_csv(cache)
    else:
        pols = {"random-actions": controls.RandomActions, "best-fixed": lambda: controls.FixedAction(fixed_action)}
        for name in ("local", "ot", "mpc"):       # ot: the market's own clearing (market mode)
            if name in REGISTRY and (name != "ot" or a.mode == "market"):
                pols[name] = lambda name=name: make_controller(name)
        held = rows(pols)
        held.to_csv(cache, index=False)
    trained = rows({"mappo-mode": lambda: MarlController(folder, sample=False),
                    "mappo-sample": lambda: MarlController(folder, sample=True)})
    return pd.concat([trained, held], ignore_index=True)


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
    meta = json.loads((folder / "policy.json").read_text())
    chosen = (meta.get("selection") or {}).get("chosen")
    print(f"\nthe checkpoint deploys by {meta['args'].get('deploy', 'mode')}"
          + (f" (checkpoint selection: update {chosen['update']}, {chosen['team_return']:.2f} on the "
             "tuning seeds)" if chosen else ""))
    if not (folder / "train.csv").is_file():      # out/last of a run with checkpoint selection
        return
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
    p.add_argument("--tune-seeds", type=int, default=3, help="tuning seeds of best-fixed")
    p.add_argument("--set", action="append", default=[], help="mappo.Args field=value")
    p.add_argument("--name", default=None, help="run folder name under --out")
    p.add_argument("--out", default="runs/learn")
    p.add_argument("--reuse", action="store_true", help="do not retrain a folder with policy.json")
    a = p.parse_args()
    out = Path(a.out)
    folder = out / (a.name or f"{a.scenario}-{a.mode}-s{a.seed}-{a.steps}")
    sc = resolve_scenario(a.scenario)
    train(a, folder)
    action = best_fixed(sc, EnvOptions(mode=a.mode), a.tune_seeds, out / f"best-fixed-{a.scenario}-{a.mode}.json",
                        folder)
    print(f"best-fixed action {action} ({a.tune_seeds} tuning seeds)", flush=True)
    rows = evaluate(a, folder, action)
    rows.to_csv(folder / "eval.csv", index=False)
    report(rows, folder)


if __name__ == "__main__":
    main()
