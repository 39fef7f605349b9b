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

import numpy as np
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
    """One panel per efficiency metric: for each scenario and policy, latency-only minus
    energy-aware as a percentage of energy-aware (dot) with its 95 % CI (line); right of the zero
    line, latency-only costs spend more."""
    panels, row_h, left, width = ["loss_per_delivered", "wh_per_task"], 22, 170, 300
    pairs = t[["scenario", "policy"]].drop_duplicates().to_numpy().tolist()
    height = 60 + row_h * len(pairs)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{(left + width + 40) * len(panels)}" '
             f'height="{height + 30}" font-family="sans-serif" font-size="11">']
    for k, m in enumerate(panels):
        x0 = k * (left + width + 40)
        sub = t[t.metric == m].set_index(["scenario", "policy"])
        rel = {tuple(key): 100.0 * np.array([r["diff"], r["low"], r["high"]]) / max(abs(r["energy"]), 1e-300)
               for key, r in sub.iterrows()}
        span = max(max(abs(v).max() for v in rel.values()), 1e-9) * 1.1
        mid = x0 + left + width / 2
        to_x = lambda v: mid + v / span * width / 2  # noqa: E731
        parts.append(f'<text x="{x0 + 10}" y="18" font-size="13">{METRICS[m]}: latency-only minus '
                     'energy-aware, % (95 % CI)</text>')
        parts.append(f'<line x1="{mid}" y1="30" x2="{mid}" y2="{height - 10}" stroke="#999"/>')
        for side in (-1, 1):
            parts.append(f'<text x="{to_x(side * span / 1.1):.1f}" y="{height + 5}" text-anchor="middle" '
                         f'font-size="9">{side * span / 1.1:+.2g} %</text>')
        for i, (sc, pol) in enumerate(pairs):
            y = 40 + i * row_h
            d, lo, hi = rel[(sc, pol)]
            parts.append(f'<text x="{x0 + left - 8}" y="{y + 4}" text-anchor="end">{sc} / {pol}</text>')
            parts.append(f'<line x1="{to_x(lo):.1f}" y1="{y}" x2="{to_x(hi):.1f}" y2="{y}" '
                         'stroke="#0072B2" stroke-width="2"/>')
            parts.append(f'<circle cx="{to_x(d):.1f}" cy="{y}" r="4" fill="#D55E00"/>')
    parts.append("</svg>")
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
    ap.add_argument("--redraw", action="store_true", help="only draw the chart from --out's CSV")
    a = ap.parse_args()
    if a.redraw:
        return redraw(Path(a.out).with_suffix(".csv"), Path(a.chart))
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


def redraw(csv: Path, chart: Path) -> None:
    """The chart again from the rows a run wrote (``--redraw``)."""
    chart.write_text(svg(table(pd.read_csv(csv))))


if __name__ == "__main__":
    main()
