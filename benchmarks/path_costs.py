"""Energy-aware path costs against latency-only costs: what the allocator's pair costs buy.

    python benchmarks/path_costs.py                          # 3 built-ins x ot, greedy x 5 seeds
    python benchmarks/path_costs.py --scenarios edge-offload --policies ot --seeds 10 --jobs 2

Every run is one scenario, one policy and one seed under ``controller.params.path_costs`` =
``energy`` (the design: a transfer costs its path loss plus wear; a task move its time plus the
processing energy at the target) or ``latency`` (the path's transit time only). Both variants
meet the same worlds (seeds 3000, 3001, ...: disjoint from the tests' and the tuning scripts'),
so the differences are paired by seed. Per run:

- ``loss_per_delivered``: Wh lost in transport per Wh delivered (0 when nothing was delivered);
- ``wh_per_task``: task energy (processing and transmission, Wh) per completed task;
- ``on_time_ratio``: tasks completed on time / tasks generated (the "equal on-time ratio" check);
- ``brownout_node_hours``.

Prints the Markdown table (means, and latency minus energy with its 95 % CI, ``*`` where the
interval excludes 0) and writes it with an SVG chart of the two efficiency metrics to ``--out``
(default benchmarks/results/path_costs.md and docs/img/path-costs.svg).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
from joblib import Parallel, delayed

from otmarl.analysis.stats import paired_table
from otmarl.policies import make_controller
from otmarl.scenarios import load
from otmarl.simulator.simulate import simulate

HERE = Path(__file__).parent
METRICS = {"loss_per_delivered": "Wh lost per Wh delivered", "wh_per_task": "Wh per completed task",
           "on_time_ratio": "on-time ratio", "brownout_node_hours": "brownout node-h"}
VARIANTS = ("energy", "latency")


def one_run(scenario: str, policy: str, variant: str, seed: int) -> dict:
    sc = load(scenario, [f"controller.params.path_costs={variant}"], policy=policy)
    s = simulate(sc, make_controller(policy), seed).summary
    e, t = s["energy"], s["tasks"]
    done = t["completed_on_time"] + t["completed_late"]
    return {"scenario": scenario, "policy": policy, "variant": variant, "seed": seed,
            "loss_per_delivered": e["transport_loss_wh"] / e["delivered_wh"] if e["delivered_wh"] > 0 else 0.0,
            "wh_per_task": (e["consumed_tasks_wh"] + e["consumed_tx_wh"]) / max(done, 1),
            "on_time_ratio": t["completed_on_time"] / max(t["generated"], 1),
            "brownout_node_hours": s["nodes"]["brownout_node_hours"],
            "delivered_wh": e["delivered_wh"], "transport_loss_wh": e["transport_loss_wh"]}


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per scenario, policy and metric: both means and the paired difference."""
    out = []
    for (sc, pol), g in rows.groupby(["scenario", "policy"], sort=False):
        means = g.groupby("variant")[list(METRICS)].mean()
        paired = paired_table(g, METRICS, baseline="energy", by="variant").set_index("metric")
        for m in METRICS:
            d = paired.loc[m]
            out.append({"scenario": sc, "policy": pol, "metric": m, "energy": means.loc["energy", m],
                        "latency": means.loc["latency", m], "diff": d.mean_diff, "low": d.ci_low,
                        "high": d.ci_high, "significant": bool(d.significant), "n": int(d.n)})
    return pd.DataFrame(out)


def markdown(t: pd.DataFrame) -> str:
    lines = ["| scenario | policy | metric | energy-aware | latency-only | latency - energy [95 % CI] |",
             "|---|---|---|---|---|---|"]
    for r in t.itertuples():
        star = "*" if r.significant else ""
        lines.append(f"| {r.scenario} | {r.policy} | {METRICS[r.metric]} | {r.energy:.4g} | "
                     f"{r.latency:.4g} | {r.diff:+.3g} [{r.low:+.3g}, {r.high:+.3g}]{star} |")
    return "\n".join(lines) + "\n"


def svg(t: pd.DataFrame) -> str:
    """Grouped bars, one panel per efficiency metric: each scenario and policy, energy-aware
    (blue) and latency-only (orange), heights relative to the larger of the two."""
    panels = ["loss_per_delivered", "wh_per_task"]
    groups = t[["scenario", "policy"]].drop_duplicates().apply(lambda r: f"{r.scenario} {r.policy}", axis=1)
    gw, pw, h, top = 70, 40 + 70 * len(groups), 200, 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{pw * len(panels) + 20}" height="{h + 110}" '
             'font-family="sans-serif" font-size="11">']
    for k, m in enumerate(panels):
        x0 = 20 + k * pw
        parts.append(f'<text x="{x0}" y="20" font-size="13">{METRICS[m]} (bar = mean; '
                     'relative to the larger)</text>')
        sub = t[t.metric == m].reset_index(drop=True)
        for i, r in sub.iterrows():
            big = max(r.energy, r.latency, 1e-12)
            for j, (val, colour) in enumerate(((r.energy, "#0072B2"), (r.latency, "#E69F00"))):
                bh = h * val / big
                x = x0 + i * gw + j * 24
                parts.append(f'<rect x="{x}" y="{top + h - bh:.1f}" width="22" height="{bh:.1f}" fill="{colour}"/>')
                parts.append(f'<text x="{x + 11}" y="{top + h - bh - 3:.1f}" text-anchor="middle" '
                             f'font-size="9">{val:.3g}</text>')
            parts.append(f'<text x="{x0 + i * gw + 23}" y="{top + h + 14}" text-anchor="middle" '
                         f'font-size="9">{groups.iloc[i]}</text>')
    parts.append(f'<rect x="20" y="{h + 80}" width="12" height="12" fill="#0072B2"/>'
                 f'<text x="36" y="{h + 90}">energy-aware costs</text>'
                 f'<rect x="180" y="{h + 80}" width="12" height="12" fill="#E69F00"/>'
                 f'<text x="196" y="{h + 90}">latency-only costs</text></svg>')
    return "\n".join(parts) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="microgrid-solar,edge-offload,sensor-field")
    ap.add_argument("--policies", default="ot,greedy")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=3000)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results" / "path_costs.md"))
    ap.add_argument("--chart", default=str(HERE.parent / "docs" / "img" / "path-costs.svg"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    todo = [(sc, pol, v, a.first_seed + s) for sc in a.scenarios.split(",") for pol in a.policies.split(",")
            for s in range(a.seeds) for v in VARIANTS]
    rows = pd.DataFrame(Parallel(n_jobs=a.jobs)(delayed(one_run)(*job) for job in todo))
    t = table(rows)
    text = markdown(t)
    print(text, end="")
    print(f"{len(todo)} runs in {time.perf_counter() - t0:.0f} s")
    out, chart = Path(a.out), Path(a.chart)
    out.parent.mkdir(parents=True, exist_ok=True)
    chart.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"`python benchmarks/path_costs.py --scenarios {a.scenarios} --policies {a.policies} "
                   f"--seeds {a.seeds}` (seeds {a.first_seed}-{a.first_seed + a.seeds - 1})\n\n" + text)
    rows.to_csv(out.with_suffix(".csv"), index=False)
    chart.write_text(svg(t))


if __name__ == "__main__":
    main()
