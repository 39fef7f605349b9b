"""The sweep report: a sweep folder's grouped means with 95 % confidence intervals,
``summary.csv`` and a self-contained ``report.html`` of what-if charts.

It sits beside the run report: ``otmarl sweep`` runs the design, this module draws it. The rows
are read with DuckDB straight from the run folders (``read_parquet('DIR/runs/*/row.parquet')``,
only the keys of DIR/sweep.json); the intervals are ``stats.ci_table`` over the registered
metrics of the successful runs, grouped by policy and the swept parameters. The report charts
each metric against each swept parameter, one line per policy (its own colour and line style on
every chart) with its confidence band, averaged over the other parameters, as each chart's note
says (a parameter with more than ``MAX_POINTS`` distinct values, as from a random design, is
binned into quantiles). Axis labels, units and ranges come from the metric registry; a band is
clipped to its metric's range (no negative count) and the chart says so. A sortable HTML table
gives each design point alone. The charts are the shared chart kit's ``band`` kind
(``templates/report.js``), in the same page shell as the run report.
"""
from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from otmarl.scenarios.errors import UserError

from .registry import LABELS, METRICS, REGISTRY, clip_intervals
from .report_assets import fmt_value, html_page, quantise
from .stats import ci_table

__all__ = ["read_rows", "summarize", "format_table", "SweepSummary"]

MAX_POINTS = 12
BINS = 8
#: The metrics printed by default (summary.csv and the report have all of them).
SHOWN = ("on_time_ratio", "dropped", "brownout_node_hours", "transport_loss_wh")


@dataclass
class SweepSummary:
    """What ``summarize`` found in a sweep folder."""

    out: Path
    """The sweep folder."""
    manifest: dict
    """Its sweep.json: the design, parameters, kinds and policies."""
    rows: pd.DataFrame
    """Every row of the design found on disk (ok and failed), in design order."""
    table: pd.DataFrame
    """policy, swept parameters..., metric, mean, ci_low, ci_high, n (successful runs only)."""
    missing: int
    """Runs of the design without a row (not run yet, or interrupted)."""

    @property
    def params(self) -> list[str]:
        return list(self.manifest["params"])

    @property
    def failed(self) -> pd.DataFrame:
        return self.rows[self.rows["status"] != "ok"]


def read_rows(out: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """(rows of the sweep in DIR, its manifest), the rows read by one DuckDB query."""
    import duckdb
    out = Path(out)
    try:
        manifest = json.loads((out / "sweep.json").read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{out}: not a sweep folder (cannot read sweep.json: {e})") from None
    if not any((out / "runs").glob("*/row.parquet")):
        return pd.DataFrame(columns=["key", "status", "policy", *manifest["params"], *METRICS]), manifest
    con = duckdb.connect()
    con.register("design", pd.DataFrame({"key": [r["key"] for r in manifest["runs"]]}))
    glob = str(out / "runs" / "*" / "row.parquet")
    try:
        rows = con.execute("SELECT r.* FROM read_parquet($1, union_by_name = true) AS r "
                           "JOIN design USING (key) ORDER BY r.run", [glob]).df()
    except duckdb.Error as e:
        raise UserError(f"{out}: cannot read the run rows: {e}") from None
    return rows, manifest


def summarize(out: str | os.PathLike, write: bool = True) -> SweepSummary:
    """Means and 95 % CIs by policy and parameters; with ``write``, DIR/summary.csv and
    DIR/report.html."""
    out = Path(out)
    rows, manifest = read_rows(out)
    ok = rows[rows["status"] == "ok"]
    by = ["policy", *manifest["params"]]
    cols = [*by, "metric", "mean", "ci_low", "ci_high", "n"]
    table = ci_table(ok, METRICS, by) if len(ok) else pd.DataFrame(columns=cols)
    s = SweepSummary(out, manifest, rows, table, len(manifest["runs"]) - len(rows))
    if write:
        table.to_csv(out / "summary.csv", index=False)
        (out / "report.html").write_text(html_report(s), encoding="utf-8")
    return s


# ---------------------------------------------------------------------------------- text
def short_names(params: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each path that tells it from the others."""
    out = {}
    for p in params:
        parts = p.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if sum(q == tail or q.endswith("." + tail) for q in params) == 1:
                out[p] = tail
                break
        else:
            out[p] = p
    return out


def format_table(s: SweepSummary, metrics: list[str] | None = None) -> str:
    """One line per policy and point: the parameters, then 'mean ± half-width' per metric."""
    metrics = list(metrics or SHOWN)
    if s.table.empty:
        return "no finished runs yet"
    by = ["policy", *s.params]
    names = short_names(s.params)
    wide = s.table[s.table["metric"].isin(metrics)]
    group = [tuple(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r) for r in wide[by].to_numpy()]
    groups = list(dict.fromkeys(group))
    cells = {(g, m): _cell(r) for g, (_, r), m in zip(group, wide.iterrows(), wide["metric"])}
    n_of = {g: str(r["n"]) for g, (_, r) in zip(group, wide.iterrows())}
    head = ["policy", *(names[p] for p in s.params), *metrics, "n"]
    body = [[*g, *(cells.get((g, m), "") for m in metrics), n_of[g]] for g in groups]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    return "\n".join("  ".join(str(x).rjust(w) if i > len(by) - 1 else str(x).ljust(w)
                               for i, (x, w) in enumerate(zip(line, widths)))
                     for line in [head, *body])


def _cell(r: pd.Series) -> str:
    if not np.isfinite(r["mean"]):
        return "n/a"
    half = (r["ci_high"] - r["ci_low"]) / 2
    return f"{r['mean']:.4g} ± {half:.2g}" if np.isfinite(half) else f"{r['mean']:.4g}"


# ---------------------------------------------------------------------------------- charts
def policy_styles(policies: list[str]) -> dict[str, int]:
    """policy -> its style index: the colour and line style of that policy on every chart (the
    order of the sweep file's policies)."""
    return {p: k for k, p in enumerate(policies)}


def chart_data(ok: pd.DataFrame, param: str, kind: str, styles: dict[str, int] | None = None
               ) -> dict[str, dict]:
    """metric -> {x, labels, categorical, ylabel, ymin, ymax, clipped, series: [{name, k, y, lo,
    hi, n}]} for one parameter: per value of ``param`` and policy, the mean of its runs and the
    95 % CI of that mean, the bounds moved into the metric's range (``clipped`` says whether any
    was); ``k`` is the policy's style index."""
    numeric = kind in ("int", "float")
    df = ok.copy()
    col = param
    if numeric and df[param].nunique() > MAX_POINTS:  # a random design: quantile bins
        bins = pd.qcut(df[param], BINS, labels=False, duplicates="drop")
        df["__x"] = df.groupby(bins)[param].transform("mean")
        col = "__x"
    t, moved = clip_intervals(ci_table(df, METRICS, ["policy", col]))
    xs = sorted(df[col].unique()) if numeric else list(dict.fromkeys(df[col]))
    styles = styles or policy_styles(list(dict.fromkeys(df["policy"])))
    out = {}
    for m, metric in REGISTRY.items():
        series = []
        for pol, g in t[t["metric"] == m].groupby("policy", sort=False):
            g = g.set_index(col).reindex(xs)
            series.append({"name": pol, "k": styles.get(pol, len(styles)), "y": g["mean"].tolist(),
                           "lo": g["ci_low"].tolist(), "hi": g["ci_high"].tolist(),
                           "n": g["n"].fillna(0).astype(int).tolist()})
        out[m] = {"x": [float(x) for x in xs] if numeric else list(range(len(xs))),
                  "labels": [str(x) for x in xs], "categorical": not numeric,
                  "ylabel": metric.label, "ymin": metric.low, "ymax": metric.high,
                  "clipped": m in moved, "series": series}
    return quantise(out)


def averaged_over(ok: pd.DataFrame, param: str, params: list[str], binned: bool) -> str:
    """What each point of a marginal chart of ``param`` is the mean of, in words."""
    names = short_names(params)
    seeds = ok.groupby(["policy", *params], dropna=False)["seed"].nunique()
    n_seeds = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}–{seeds.max()}"
    others = [f"{names[q]} ({ok[q].nunique()} values)" for q in params if q != param]
    text = (f"Each point: the mean of the runs of a policy at that {names[param]}"
            + (" (grouped into quantile bins, placed at the bin mean)" if binned else "")
            + f", over {n_seeds} seeds")
    if others:
        text += (" and averaged over " + ", ".join(others) + ": a marginal, not one design point "
                 "(the table below has each point alone)")
    return text + "; band and whiskers: the 95 % confidence interval of that mean."


def _figure(name: str, metric: str, chart: dict) -> str:
    clip = REGISTRY[metric]
    bound = (f"[{clip.low:g}, {clip.high:g}]" if clip.high is not None else f"{clip.low:g} and above")
    note = (f"<p class=note>Bands clipped to {bound}, the metric's range; summary.csv has the "
            "unclipped bounds.</p>" if chart["clipped"] else "")
    better = f" ({REGISTRY[metric].better} is better)" if REGISTRY[metric].better else ""
    return (f'<figure><figcaption>{html.escape(METRICS[metric] + better)}</figcaption>'
            f'<div class="chart" data-chart="{html.escape(name)}" data-kind="band"></div>{note}'
            f'</figure>')


def html_report(s: SweepSummary) -> str:
    """The self-contained report page: a chart per metric and swept parameter, the table of every
    design point, the failed runs."""
    man, ok = s.manifest, s.rows[s.rows["status"] == "ok"]
    title = f"otmarl sweep: {man['name']}"
    sub = (f"base {man['base']} · {man['n_points']} points × {len(man['policies'])} policies · "
           f"{len(man['runs'])} runs: {len(ok)} ok, {len(s.failed)} failed, {s.missing} not run")
    data, parts = {}, [f"<header><h1>{html.escape(title)}</h1><p>{html.escape(sub)}</p>"
                       + (f"<p>{html.escape(man['description'])}</p>" if man.get("description") else "")
                       + "</header><main>"]
    if ok.empty or not s.params:
        parts.append("<p>No chart: " + ("no finished run yet." if ok.empty else
                     "the sweep has no swept parameter (see the table).") + "</p>")
    styles = policy_styles(list(man["policies"]))
    names = short_names(s.params)
    for i, p in enumerate(s.params if not ok.empty else []):
        charts = chart_data(ok, p, man["kinds"][p], styles)
        binned = man["kinds"][p] in ("int", "float") and ok[p].nunique() > MAX_POINTS
        parts.append(f"<h2>{html.escape(p)}</h2><p class=note>"
                     f"{html.escape(averaged_over(ok, p, s.params, binned))}</p><div class=grid>")
        for m, c in charts.items():
            name = f"{m}@{i}"
            data[name] = {**c, "xlabel": names[p]}
            parts.append(_figure(name, m, c))
        parts.append("</div>")
    parts += [_table_html(s), _failures_html(s), "</main>"]
    return html_page(title, "".join(parts), {"charts": data})


def _table_html(s: SweepSummary, limit: int = 500) -> str:
    """Every design point as a row of a sortable HTML table: the policy, the parameters, then per
    metric the mean over seeds and its 95 % CI (bounds clipped to the metric's range)."""
    if s.table.empty:
        return ""
    by = ["policy", *s.params]
    names = short_names(s.params)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in
                   ["policy", *(names[p] for p in s.params), *LABELS.values(), "runs"])
    groups = list(clip_intervals(s.table)[0].groupby(by, sort=False, dropna=False))
    body = []
    for key, g in groups[:limit]:
        cells = [f"<td>{html.escape(_param_text(v))}</td>" for v in key]
        cells += [_ci_cell(r) for _, r in g.set_index("metric").reindex(list(METRICS)).iterrows()]
        cells.append(f'<td data-v="{int(g["n"].max())}">{int(g["n"].max())}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = (f"<p class=note>{len(groups) - limit} more design points in summary.csv.</p>"
            if len(groups) > limit else "")
    return ("<h2>Every design point</h2><p class=note>Mean over the seeds of each point and "
            "policy, [95 % confidence interval] below it, clipped to the metric's range "
            "(summary.csv has the unclipped bounds); click a column head to sort.</p>"
            f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>{more}")


def _param_text(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _ci_cell(r: pd.Series) -> str:
    """A table cell: the mean (its sort key) and the interval below it."""
    if not np.isfinite(r["mean"]):
        return '<td data-v="">n/a</td>'
    ci = (f"<br><span class=ci>[{fmt_value(r['ci_low'])}, {fmt_value(r['ci_high'])}]</span>"
          if np.isfinite(r["ci_low"]) else "")
    return f'<td data-v="{r["mean"]:.17g}">{fmt_value(r["mean"])}{ci}</td>'


def _failures_html(s: SweepSummary) -> str:
    f = s.failed
    if f.empty:
        return ""
    items = "".join(f"<li><code>{html.escape(r['key'])}</code> {html.escape(r['policy'])} seed {r['seed']}: "
                    f"{html.escape(str(r['error']).splitlines()[0] if r['error'] else '')}</li>"
                    for _, r in f.head(100).iterrows())
    return f"<h2>Failed runs</h2><p class=note>Tracebacks in failures/&lt;key&gt;.json.</p><ul>{items}</ul>"
