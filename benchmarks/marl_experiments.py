"""Experiments with the MARL policies (the numbers of the closing note; outputs are not committed).

    python benchmarks/marl_experiments.py all --out runs/marl-exp      # everything (about an hour)
    python benchmarks/marl_experiments.py learning|modes|align|drift --out runs/marl-exp

learning  MAPPO (market mode) trained on microgrid-solar with 3 training seeds, evaluated on
          seeds 0..4 against local, random and ot: team return and on-time ratio, mean and 95% CI
          over the 3 training seeds (each seed's value is its mean over the 5 evaluation seeds).
modes     the same with the direct action mode (no OT), and IPPO in market mode.
align     MAPPO with barycenter consensus lambda in {-0.1, 0, 0.1}: reward, on-time ratio and
          coordination metrics (dispersion of the agents' action distributions around their
          barycenter, policy entropy, energy shared, tasks offloaded).
credit    MAPPO with the transport credit (half of the team reward split by the nodes' marginals
          in each epoch's plan) against the plain team reward.
drift     regime-shift: MAPPO pre-trained on the two sunny days, then trained online through the
          eight days once (the overcast starts on day 3) with a frozen policy (lr 0), a constant
          learning rate, and the drift-adaptive one; reward per epoch after the shift, relative
          to the frozen policy on the same worlds.
Training runs are cached in --out (a folder with policy.json is not retrained).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from otmarl.analysis.stats import mean_ci
from otmarl.policies import make_controller
from otmarl.policies.marl import mappo, ippo
from otmarl.policies.marl.alignment import barycenter, ground_cost, sinkhorn_divergence
from otmarl.policies.marl.controller import MarlController
from otmarl.policies.marl.core import EnvOptions, MarlCore, resolve_scenario
from otmarl.policies.marl.evaluate import evaluate

TRAIN_SEEDS = (0, 1, 2)
EVAL_SEEDS = range(5)
STEPS = 20_000


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


def eval_rows(out: Path, folders: dict[str, Path], sc, mode: str, baselines=("local", "random", "ot")):
    """Rows per (policy, seed); cached as CSV."""
    f = out / f"eval-{'-'.join(folders)}.csv"
    if f.is_file():
        return pd.read_csv(f)
    pols = {k: (lambda v=v: make_controller(f"marl:{v}")) for k, v in folders.items()}
    pols.update({b: (lambda b=b: make_controller(b)) for b in baselines})
    rows = evaluate(sc, pols, EVAL_SEEDS, EnvOptions(mode=mode))
    rows.to_csv(f, index=False)
    return rows


def summarise(rows: pd.DataFrame, groups: dict[str, list[str]]) -> pd.DataFrame:
    """One line per group of policies. A trained policy: mean and 95% CI over its training seeds
    (each the mean over the evaluation seeds); a baseline: over the evaluation seeds. 'vs local'
    is the paired difference of the team return to local on the same evaluation seeds."""
    cols = ["team_return", "on_time_ratio", "brownout_node_hours", "delivered_wh", "offloaded"]
    local = rows[rows.policy == "local"].set_index("seed").team_return
    out = []
    for g, members in groups.items():
        sub = rows[rows.policy.isin(members)]
        per = sub.groupby("policy")[cols].mean() if len(members) > 1 else sub[cols]
        diff = sub.groupby("seed").team_return.mean() - local if len(local) else pd.Series(dtype=float)
        out.append({"policy": g, "n": len(per), **{c: ci(per[c]) for c in cols},
                    "vs local": ci(diff) if len(diff) else ""})
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------- learning
def learning(out: Path, mode: str = "market", algo=mappo, tag: str = "mappo") -> pd.DataFrame:
    sc = resolve_scenario("microgrid-solar")
    folders = {f"{tag}-{mode}-s{s}": trained(out, f"{tag}-{mode}-s{s}", algo, seed=s, mode=mode,
                                             total_steps=STEPS) for s in TRAIN_SEEDS}
    rows = eval_rows(out, folders, sc, mode)
    groups = {f"{tag} ({mode})": list(folders)} | {b: [b] for b in ("local", "random", "ot")}
    return summarise(rows, groups)


def modes(out: Path) -> pd.DataFrame:
    market = learning(out, "market")
    direct = learning(out, "direct")
    ip = learning(out, "market", ippo, "ippo")
    return pd.concat([market.iloc[:1], ip.iloc[:1], direct.iloc[:1], market.iloc[1:]], ignore_index=True)


# ------------------------------------------------------------------------------------- align
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


def align(out: Path) -> pd.DataFrame:
    sc = resolve_scenario("microgrid-solar")
    lines = []
    for lam in (-0.1, 0.0, 0.1):
        tag = "mappo-market" if lam == 0 else f"mappo-align{lam:+g}"
        folders = {f"{tag}-s{s}": trained(out, f"{tag}-s{s}", seed=s, total_steps=STEPS, align_lambda=lam)
                   for s in TRAIN_SEEDS}
        rows = eval_rows(out, folders, sc, "market", baselines=())
        rows = rows[rows.policy.isin(list(folders))]
        per = rows.groupby("policy")[["team_return", "on_time_ratio", "delivered_wh", "offloaded"]].mean()
        co = pd.DataFrame([coordination(f, sc, range(2)) for f in folders.values()], index=list(folders))
        lines.append({"lambda": lam, **{c: ci(per[c]) for c in per.columns},
                      **{c: ci(co[c]) for c in co.columns}})
    return pd.DataFrame(lines)


# ------------------------------------------------------------------------------------ credit
def credit(out: Path) -> pd.DataFrame:
    """MAPPO (market mode) with the team reward (credit 0) and with half of it split by the
    nodes' marginals in each epoch's transport plan (credit 0.5); evaluated on the team return."""
    sc = resolve_scenario("microgrid-solar")
    lines = []
    for c in (0.0, 0.5):
        tag = "mappo-market" if c == 0 else f"mappo-credit{c:g}"
        folders = {f"{tag}-s{s}": trained(out, f"{tag}-s{s}", seed=s, total_steps=STEPS,
                                          reward={} if c == 0 else {"credit": c})
                   for s in TRAIN_SEEDS}
        rows = eval_rows(out, folders, sc, "market", baselines=())
        rows = rows[rows.policy.isin(list(folders))]       # a cached file may hold baselines too
        per = rows.groupby("policy")[["team_return", "on_time_ratio", "brownout_node_hours",
                                      "delivered_wh", "offloaded"]].mean()
        lines.append({"credit": c, **{k: ci(per[k]) for k in per.columns}})
    return pd.DataFrame(lines)


# ------------------------------------------------------------------------------------- drift
def drift(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Phase A: pre-train on days 1-2 (sunny). Phase B: one online pass through the 8 days, the
    weights frozen (lr 0), at a constant lr, or at the drift-adaptive lr; the same worlds (seeds)
    in every arm, so rewards are compared day by day against the frozen policy."""
    sc = resolve_scenario("regime-shift")
    per_day = int(24 * 3600 / sc.control_interval_s)
    shift_day = 2                                                     # day 3 starts (0-based 2)
    n_envs, num_steps = 4, 6
    lines, curves = [], []
    for s in TRAIN_SEEDS:
        pre = trained(out, f"rs-pre-s{s}", seed=s, scenario="regime-shift", horizon_h=48,
                      total_steps=12_000)
        arms = {"frozen": dict(lr=0.0), "constant": dict(lr=3e-4), "drift": dict(lr=3e-4, drift=True)}
        res = {}
        for arm, kw in arms.items():
            f = trained(out, f"rs-{arm}-s{s}", seed=100 + s, scenario="regime-shift", init=str(pre),
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["learning", "modes", "align", "credit", "drift", "all"])
    ap.add_argument("--out", default="runs/marl-exp")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.width", 200)
    todo = ["learning", "modes", "align", "credit", "drift"] if a.what == "all" else [a.what]
    for what in todo:
        if what == "learning":
            t = learning(out)
        elif what == "modes":
            t = modes(out)
        elif what == "align":
            t = align(out)
        elif what == "credit":
            t = credit(out)
        else:
            t, per = drift(out)
            print(per.round(4).to_string(index=False))
        print(f"\n== {what} ==\n{t.to_string()}\n", flush=True)
        (out / f"{what}.json").write_text(json.dumps(json.loads(t.to_json(orient="table")), indent=1))


if __name__ == "__main__":
    main()
