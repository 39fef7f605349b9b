"""The sweep report: a sweep folder's grouped means with 95 % confidence intervals,
``summary.csv`` and a self-contained ``report.html`` of what-if charts.

It sits beside the run report: ``otmarl sweep`` runs the design, this module draws it. The rows
are read with DuckDB straight from the run folders (``read_parquet('DIR/runs/*/row.parquet')``,
only the keys of DIR/sweep.json); the intervals are ``stats.ci_table`` over the registered
metrics of the successful runs, grouped by policy and the swept parameters. The report charts
each metric against each swept parameter, one line per policy with its confidence band, averaged
over the other parameters (a parameter with more than ``MAX_POINTS`` distinct values, as from a
random design, is binned into quantiles). The charts are the shared chart kit's ``band`` kind
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

from .registry import METRICS
from .report_assets import html_page, quantise
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
def chart_data(ok: pd.DataFrame, param: str, kind: str) -> dict[str, dict]:
    """metric -> {x, labels, categorical, series: [{name, y, lo, hi, n}]} for one parameter."""
    numeric = kind in ("int", "float")
    df = ok.copy()
    col = param
    if numeric and df[param].nunique() > MAX_POINTS:  # a random design: quantile bins
        bins = pd.qcut(df[param], BINS, labels=False, duplicates="drop")
        df["__x"] = df.groupby(bins)[param].transform("mean")
        col = "__x"
    t = ci_table(df, METRICS, ["policy", col])
    xs = sorted(df[col].unique()) if numeric else list(dict.fromkeys(df[col]))
    out = {}
    for m in METRICS:
        tm = t[t["metric"] == m]
        series = []
        for pol, g in tm.groupby("policy", sort=False):
            g = g.set_index(col).reindex(xs)
            series.append({"name": pol, "y": g["mean"].tolist(), "lo": g["ci_low"].tolist(),
                           "hi": g["ci_high"].tolist(), "n": g["n"].fillna(0).astype(int).tolist()})
        out[m] = {"x": [float(x) for x in xs] if numeric else list(range(len(xs))),
                  "labels": [str(x) for x in xs], "categorical": not numeric, "series": series}
    return quantise(out)


def html_report(s: SweepSummary) -> str:
    """The self-contained report page: a chart per metric and swept parameter, the table, the
    failed runs."""
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
    for i, p in enumerate(s.params if not ok.empty else []):
        charts = chart_data(ok, p, man["kinds"][p])
        parts.append(f"<h2>{html.escape(p)}</h2><p class=note>Mean and 95 % confidence band over "
                     f"seeds{' and the other parameters' if len(s.params) > 1 else ''}.</p><div class=grid>")
        for m, c in charts.items():
            name = f"{m}@{i}"
            data[name] = {**c, "xlabel": short_names(s.params)[p], "ylabel": m}
            parts.append(f'<figure><figcaption>{html.escape(METRICS[m])}</figcaption>'
                         f'<div class="chart" data-chart="{html.escape(name)}" data-kind="band"></div>'
                         f'</figure>')
        parts.append("</div>")
    parts += [_table_html(s), _failures_html(s), "</main>"]
    return html_page(title, "".join(parts), {"charts": data})


def _table_html(s: SweepSummary, limit: int = 500) -> str:
    if s.table.empty:
        return ""
    text = format_table(s, list(METRICS)).splitlines()
    head, body = text[0].split(), [ln for ln in text[1:limit + 1]]
    more = f"<p class=note>{len(text) - 1 - limit} more lines in summary.csv</p>" if len(text) - 1 > limit else ""
    return (f"<h2>Table</h2><p class=note>mean ± half-width of the 95 % CI; columns: "
            f"{html.escape(', '.join(head))}</p><pre>{html.escape(chr(10).join([text[0], *body]))}</pre>{more}")


def _failures_html(s: SweepSummary) -> str:
    f = s.failed
    if f.empty:
        return ""
    items = "".join(f"<li><code>{html.escape(r['key'])}</code> {html.escape(r['policy'])} seed {r['seed']}: "
                    f"{html.escape(str(r['error']).splitlines()[0] if r['error'] else '')}</li>"
                    for _, r in f.head(100).iterrows())
    return f"<h2>Failed runs</h2><p class=note>Tracebacks in failures/&lt;key&gt;.json.</p><ul>{items}</ul>"
