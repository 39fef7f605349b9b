"""Experiments with the MARL policies (the numbers of the closing note; outputs are not committed).

    python benchmarks/marl_experiments.py all --out runs/marl-exp      # everything
    python benchmarks/marl_experiments.py learning --steps 20000 --seeds 5 --eval-seeds 10 \
        --scenarios microgrid-solar,edge-offload,regime-shift --out runs/marl-exp

learning  MAPPO (market mode) trained with --seeds training seeds on each of --scenarios, evaluated
          against the controls (random-actions, best-fixed, local, ot, mpc when registered) on
          --eval-seeds evaluation seeds (``policies/marl/evaluate.py`` ``compare``): mean and 95% CI
          (across training runs for MAPPO), paired differences on the shared evaluation seeds
          (evaluation-seed variation) and differences per training run (training-seed variation).
modes     the same with the direct action mode (no OT), and IPPO in market mode.
align     MAPPO with barycenter consensus lambda in {-0.1, 0, 0.1}: reward, on-time ratio and
          coordination metrics (dispersion of the agents' action distributions around their
          barycenter, policy entropy, energy shared, tasks offloaded), and the team return's and
          on-time ratio's difference to lambda 0 paired by training seed.
credit    MAPPO with the transport credit (half of the team reward split by the nodes' marginals
          in each epoch's plan) against the plain team reward.
drift     regime-shift: MAPPO pre-trained on the two sunny days (with the drift detector on, so
          its history travels with the checkpoint), then trained online through the
          eight days once (the overcast starts on day 3) with a frozen policy (lr 0), a constant
          learning rate, and the drift-adaptive one; reward per epoch after the shift, relative
          to the frozen policy on the same worlds.
Training runs are cached in --out (a folder with policy.json is not retrained; align and credit
reuse learning's plain MAPPO runs on microgrid-solar), and so are evaluations (by policy set and
seed counts). Every experiment writes its table as CSV and JSON;
summary.html collects the tables of the experiments run.
"""
from __future__ import annotations

import argparse
import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from otmarl.analysis.stats import mean_ci
from otmarl.policies import make_controller
from otmarl.policies.marl import mappo, ippo
from otmarl.policies.marl.alignment import barycenter, ground_cost, sinkhorn_divergence
from otmarl.policies.marl.controller import MarlController
from otmarl.policies.marl.core import EnvOptions, MarlCore, resolve_scenario
from otmarl.policies import REGISTRY
from otmarl.policies.marl.controls import control_policies, eval_seeds
from otmarl.policies.marl.evaluate import compare, evaluate, evaluate_runs, format_comparison, summary_frame


@dataclass(frozen=True)
class Config:
    """The budget of the experiments (command-line options)."""

    steps: int = 20_000
    """Control epochs per training run."""
    train_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Training seeds (one run each)."""
    eval_seeds: int = 10
    """Evaluation seeds (``controls.eval_seeds``: disjoint from training's)."""
    tune_seeds: int = 3
    """Tuning seeds of best-fixed."""
    scenarios: tuple[str, ...] = ("microgrid-solar",)
    """Scenarios of the learning and modes experiments."""

    @property
    def seeds(self) -> list[int]:
        return eval_seeds(self.eval_seeds)


def ci(x) -> str:
    """'mean ± half-width' of the 95 % CI (``analysis.stats.mean_ci``); the mean alone for n < 2."""
    c = mean_ci(x)
    return f"{c.mean:.4g}" if c.n < 2 else f"{c.mean:.4g} ± {c.half_width:.2g}"


def trained(out: Path, name: str, algo=mappo, **kw) -> Path:
    folder = out / name
    if not (folder / "policy.json").is_file():
        args = algo.Args(out=str(folder), **kw)
        print(f"training {name} ...", flush=True)
        algo.train(args)
    return folder


def eval_rows(out: Path, folders: dict[str, Path], sc, mode: str, cfg: Config, baselines=("local", "ot")):
    """Rows per (policy, seed) of trained folders (each its own policy) and baselines; cached as CSV."""
    f = out / f"eval-{'-'.join(folders)}-e{cfg.eval_seeds}.csv"
    if f.is_file():
        return pd.read_csv(f)
    pols = {k: (lambda v=v: make_controller(f"marl:{v}")) for k, v in folders.items()}
    pols.update({b: (lambda b=b: make_controller(b)) for b in baselines})
    rows = evaluate(sc, pols, cfg.seeds, EnvOptions(mode=mode))
    rows.to_csv(f, index=False)
    return rows


# ---------------------------------------------------------------------------------- learning
def learning(out: Path, cfg: Config, mode: str = "market", algo=mappo, tag: str = "mappo") -> dict:
    """{scenario: (Comparison, text)} of ``tag`` trained in ``mode`` against the controls."""
    res = {}
    for name in cfg.scenarios:
        sc = resolve_scenario(name)
        runs = {f"seed{s}": str(trained(out, f"{tag}-{mode}-{name}-s{s}-n{cfg.steps}", algo, seed=s,
                                        mode=mode, scenario=name, total_steps=cfg.steps))
                for s in cfg.train_seeds}
        f = out / f"learning-{tag}-{mode}-{name}-n{cfg.steps}-t{len(runs)}-e{cfg.eval_seeds}-u{cfg.tune_seeds}.csv"
        if f.is_file():
            rows = pd.read_csv(f, keep_default_na=False, na_values=[""])
            rows["run"] = rows["run"].fillna("")
        else:
            base = [b for b in ("local", "ot", "mpc") if b in REGISTRY]
            controls, best = control_policies(sc, EnvOptions(mode=mode), cfg.tune_seeds, base)
            print(f"{name} {mode}: best-fixed {list(best.action)} ({best.score:.4g} on tuning seeds)", flush=True)
            rows = evaluate_runs(sc, tag, runs, controls, cfg.seeds, EnvOptions(mode=mode))
            rows.to_csv(f, index=False)
        c = compare(rows, tag)
        summary_frame(c).assign(scenario=name, mode=mode).to_csv(f.with_name(f.stem + "-summary.csv"), index=False)
        res[name] = (c, format_comparison(c, tag, len(runs), cfg.eval_seeds))
    return res


def modes(out: Path, cfg: Config) -> dict:
    """Direct mode (no OT) and IPPO, next to learning's MAPPO in market mode."""
    res = {f"{k} (mappo, market)": v for k, v in learning(out, cfg).items()}
    res.update({f"{k} (mappo, direct)": v for k, v in learning(out, cfg, "direct").items()})
    res.update({f"{k} (ippo, market)": v for k, v in learning(out, cfg, "market", ippo, "ippo").items()})
    return res


# ------------------------------------------------------------------------------------- align
PLAIN = "mappo-market-microgrid-solar"
"""The folder prefix of plain MAPPO on microgrid-solar in market mode: the learning experiment's
runs, so that align and credit reuse them instead of training the same runs again."""

def coordination(folder: Path, sc, seeds) -> dict:
    """Dispersion of the agents' mean action distributions around their barycenter (mean
    Sinkhorn divergence over agents and components, eps 0.1) and mean policy entropy, on
    evaluation runs of the greedy policy."""
    import torch
    disp, ent = [], []
    for seed in seeds:
        ctl = MarlController(folder)
        core = MarlCore(sc, ctl.options)
        core.reset(seed)
        ctl.reset(core.sim.world.info(), core.sim.world.rng["policy"])
        acc = None
        done, steps = False, 0
        while not done:
            f = ctl.features.observe(core.cur, ctl.actions.energy_price, ctl.actions.task_price)
            mask = torch.as_tensor(ctl.actions.masks(core.cur))
            with torch.no_grad():
                probs = ctl.actor.probs(torch.as_tensor(ctl.norm(f)), mask)
            acc = [p.numpy() for p in probs] if acc is None else [a + p.numpy() for a, p in zip(acc, probs)]
            ent.append(float(sum(-(p * torch.log(p + 1e-12)).sum(-1).mean() for p in probs)))
            _, _, done, _ = core.step_decision(ctl.decide(core.cur))
            steps += 1
        spec = ctl.actions.spec
        for a, k, o in zip(acc, spec.nvec, spec.ordinal):
            p = a / steps
            c = ground_cost(k, o)
            b = barycenter(p, c)
            s = sinkhorn_divergence(torch.as_tensor(p), torch.as_tensor(b)[None, :], torch.as_tensor(c))
            disp.append(float(s.mean()))
    return {"dispersion": float(np.mean(disp)), "entropy": float(np.mean(ent))}


def align(out: Path, cfg: Config) -> pd.DataFrame:
    """Per consensus weight: each metric's mean ± 95 % CI across the training runs (each run
    averaged over the evaluation seeds), and the team return's and on-time ratio's difference to
    lambda 0 paired by training seed (the same seed draws the same training worlds)."""
    sc = resolve_scenario("microgrid-solar")
    lines, pers = [], {}
    for lam in (-0.1, 0.0, 0.1):
        tag = PLAIN if lam == 0 else f"mappo-align{lam:+g}"
        folders = {f"{tag}-s{s}-n{cfg.steps}": trained(out, f"{tag}-s{s}-n{cfg.steps}", seed=s,
                                                        total_steps=cfg.steps, align_lambda=lam)
                   for s in cfg.train_seeds}
        rows = eval_rows(out, folders, sc, "market", cfg, baselines=())
        rows = rows[rows.policy.isin(list(folders))]
        per = rows.groupby("policy")[["team_return", "on_time_ratio", "delivered_wh", "offloaded"]].mean()
        pers[lam] = per.loc[list(folders)].to_numpy()[:, :2]          # in training-seed order
        co = pd.DataFrame([coordination(f, sc, cfg.seeds[:2]) for f in folders.values()], index=list(folders))
        lines.append({"lambda": lam, **{c: ci(per[c]) for c in per.columns},
                      **{c: ci(co[c]) for c in co.columns}})
    for line in lines:
        d = pers[line["lambda"]] - pers[0.0]
        line["team_return - lambda 0 (paired)"] = ci(d[:, 0])
        line["on_time_ratio - lambda 0 (paired)"] = ci(d[:, 1])
    return pd.DataFrame(lines)


# ------------------------------------------------------------------------------------ credit
def credit(out: Path, cfg: Config) -> pd.DataFrame:
    """MAPPO (market mode) with the team reward (credit 0) and with half of it split by the
    nodes' marginals in each epoch's transport plan (credit 0.5); evaluated on the team return."""
    sc = resolve_scenario("microgrid-solar")
    lines = []
    for c in (0.0, 0.5):
        tag = PLAIN if c == 0 else f"mappo-credit{c:g}"
        folders = {f"{tag}-s{s}-n{cfg.steps}": trained(out, f"{tag}-s{s}-n{cfg.steps}", seed=s,
                                                        total_steps=cfg.steps,
                                                        reward={} if c == 0 else {"credit": c})
                   for s in cfg.train_seeds}
        rows = eval_rows(out, folders, sc, "market", cfg, baselines=())
        rows = rows[rows.policy.isin(list(folders))]       # a cached file may hold baselines too
        per = rows.groupby("policy")[["team_return", "on_time_ratio", "brownout_node_hours",
                                      "delivered_wh", "transport_loss_wh", "offloaded"]].mean()
        lines.append({"credit": c, **{k: ci(per[k]) for k in per.columns}})
    return pd.DataFrame(lines)


# ------------------------------------------------------------------------------------- drift
def drift(out: Path, cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Phase A: pre-train on days 1-2 (sunny). Phase B: one online pass through the 8 days, the
    weights frozen (lr 0), at a constant lr, or at the drift-adaptive lr; the same worlds (seeds)
    in every arm, so rewards are compared day by day against the frozen policy."""
    sc = resolve_scenario("regime-shift")
    per_day = int(24 * 3600 / sc.control_interval_s)
    shift_day = 2                                                     # day 3 starts (0-based 2)
    n_envs, num_steps = 4, 6
    lines, curves = [], []
    for s in cfg.train_seeds:
        # the pre-training runs the detector too, so that its history of distances (the
        # threshold) travels with the checkpoint into the drift arm
        pre = trained(out, f"rs-pre-s{s}-n{cfg.steps}", seed=s, scenario="regime-shift", horizon_h=48,
                      total_steps=cfg.steps, drift=True)
        arms = {"frozen": dict(lr=0.0), "constant": dict(lr=3e-4), "drift": dict(lr=3e-4, drift=True)}
        res = {}
        for arm, kw in arms.items():
            f = trained(out, f"rs-{arm}-s{s}-n{cfg.steps}", seed=100 + s, scenario="regime-shift", init=str(pre),
                        total_steps=sc.n_epochs * n_envs, n_envs=n_envs, num_steps=num_steps,
                        anneal_lr=False, **kw)
            d = pd.read_csv(f / "train.csv")
            d["day"] = (d["update"] - 1) * num_steps // per_day
            res[arm] = d
        base = res["frozen"].groupby("day").reward_mean.mean()
        for arm, d in res.items():
            daily = d.groupby("day").reward_mean.mean()
            gain = d.reward_mean - res["frozen"].reward_mean
            post = d.day >= shift_day
            roll = gain[post].rolling(8, min_periods=1).mean().reset_index(drop=True)
            stay = next((i for i in range(len(roll)) if (roll[i:] > 0).all()), None)
            flags = d[(d.drift_distance > d.drift_threshold)] if arm == "drift" else d.iloc[:0]
            first = flags[flags.day >= shift_day]["update"].min()
            lines.append({"seed": s, "arm": arm,
                          **{f"day{k + 1}": daily[k] for k in daily.index},
                          "gain_days3-8": float((daily - base)[daily.index >= shift_day].mean()),
                          "gain_days6-8": float((daily - base)[daily.index >= 5].mean()),
                          "updates_until_gain_stays_>0": stay,
                          "mean_lr_factor_post": float(d.lr_factor[post].mean()),
                          "detect_delay_h": (float(first * num_steps - shift_day * per_day)
                                             * sc.control_interval_s / 3600 if arm == "drift" and
                                             first == first else np.nan),
                          "flags_days1-2": len(flags[flags.day < shift_day]) if arm == "drift" else np.nan})
            curves.append(d.assign(seed=s, arm=arm))
    per = pd.DataFrame(lines)
    table = per.drop(columns="seed").groupby("arm", sort=False).agg(
        lambda x: ci(x.dropna()) if x.notna().any() else "n/a")
    pd.concat(curves).to_csv(out / "drift-curves.csv", index=False)
    return table, per


def _html_section(what: str, result) -> str:
    """One experiment's tables as HTML: text tables of comparisons, DataFrames as tables."""
    if isinstance(result, dict):
        return "".join(f"<h3>{html.escape(k)}</h3><pre>{html.escape(text)}</pre>"
                       for k, (_, text) in result.items())
    return result.to_html(index=what == "drift", border=0)


def run(what: str, out: Path, cfg: Config):
    """One experiment: its result (a dict of comparisons or a DataFrame), printed and saved."""
    if what in ("learning", "modes"):
        res = learning(out, cfg) if what == "learning" else modes(out, cfg)
        for k, (c, text) in res.items():
            print(f"\n== {what}: {k} ==\n{text}\n", flush=True)
        pd.concat([summary_frame(c).assign(case=k) for k, (c, _) in res.items()]).to_csv(
            out / f"{what}.csv", index=False)
        return res
    t = align(out, cfg) if what == "align" else credit(out, cfg) if what == "credit" else None
    if what == "drift":
        t, per = drift(out, cfg)
        print(per.round(4).to_string(index=False))
    print(f"\n== {what} ==\n{t.to_string()}\n", flush=True)
    t.to_csv(out / f"{what}.csv")
    (out / f"{what}.json").write_text(json.dumps(json.loads(t.to_json(orient="table")), indent=1))
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["learning", "modes", "align", "credit", "drift", "all"])
    ap.add_argument("--out", default="runs/marl-exp")
    ap.add_argument("--steps", type=int, default=Config.steps, help="control epochs per training run")
    ap.add_argument("--seeds", type=int, default=len(Config.train_seeds), help="training seeds 0..N-1")
    ap.add_argument("--eval-seeds", type=int, default=Config.eval_seeds, help="evaluation seeds")
    ap.add_argument("--tune-seeds", type=int, default=Config.tune_seeds, help="tuning seeds of best-fixed")
    ap.add_argument("--scenarios", default=",".join(Config.scenarios),
                    help="comma-separated scenarios of learning and modes")
    a = ap.parse_args()
    for flag, v in (("--steps", a.steps), ("--seeds", a.seeds), ("--eval-seeds", a.eval_seeds),
                    ("--tune-seeds", a.tune_seeds)):
        if v < 1:
            ap.error(f"{flag}: value {v} must be >= 1")
    cfg = Config(a.steps, tuple(range(a.seeds)), a.eval_seeds, a.tune_seeds,
                 tuple(x.strip() for x in a.scenarios.split(",") if x.strip()))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.width", 200)
    todo = ["learning", "modes", "align", "credit", "drift"] if a.what == "all" else [a.what]
    sections = [f"<h2>{w}</h2>" + _html_section(w, run(w, out, cfg)) for w in todo]
    head = (f"<h1>MARL experiments</h1><p>{cfg.steps} steps per training run, training seeds "
            f"{list(cfg.train_seeds)}, {cfg.eval_seeds} evaluation seeds (from {cfg.seeds[0]}), "
            f"{cfg.tune_seeds} tuning seeds for best-fixed, scenarios {', '.join(cfg.scenarios)}. "
            "Intervals: 95 % Student t; trained policies across training runs, controls and paired "
            "differences across evaluation seeds.</p>")
    (out / "summary.html").write_text(f"<!doctype html><meta charset='utf-8'><title>MARL experiments"
                                      f"</title><body>{head}{''.join(sections)}</body>")
    print(f"written: {out / 'summary.html'}")


if __name__ == "__main__":
    main()
