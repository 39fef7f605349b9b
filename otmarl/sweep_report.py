"""A sweep's summary: grouped means with 95 % confidence intervals, ``summary.csv`` and a
self-contained ``report.html`` of what-if charts.

The rows are read with DuckDB straight from the run folders
(``read_parquet('DIR/runs/*/row.parquet')``, only the keys of DIR/sweep.json); the intervals are
``otmarl.compare.confidence_table`` over the successful runs, grouped by policy and the swept
parameters. The report charts each metric against each swept parameter, one line per policy with
its confidence band, averaged over the other parameters (a parameter with more than
``MAX_POINTS`` distinct values, as from a random design, is binned into quantiles).

The charts are drawn by a small inline SVG renderer below (the run report's chart kit in
``analysis/templates/report.js`` has no line-with-band kind for arbitrary data yet); like it, each
``[data-chart]`` element gets ``data-rendered="1"`` once drawn.
"""
from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from otmarl.analysis.report_assets import dumps_for_html, quantise
from otmarl.compare import METRICS, confidence_table
from otmarl.scenarios.errors import UserError

__all__ = ["read_rows", "summarize", "format_table", "SweepSummary"]

MAX_POINTS = 12
BINS = 8
#: The metrics printed by default (summary.csv and the report have all of them).
SHOWN = ("on_time_ratio", "dropped", "brownout_node_hours", "transport_loss_wh")


@dataclass
class SweepSummary:
    out: Path
    manifest: dict
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
    table = confidence_table(ok, by=by) if len(ok) else pd.DataFrame(columns=cols)
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
    t = confidence_table(df, by=["policy", col])
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
                         f'<div class="chart" data-chart="{html.escape(name)}"></div></figure>')
        parts.append("</div>")
    parts += [_table_html(s), _failures_html(s), "</main>"]
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{CSS}</style></head>"
            f"<body>{''.join(parts)}<script type=application/json id=sweep-data>{dumps_for_html(data)}"
            f"</script><script>{JS}</script></body></html>\n")


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


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:16px 24px;background:#1f4e79;color:#fff}header h1{margin:0 0 4px;font-size:20px}
header p{margin:2px 0;opacity:.9}main{padding:8px 24px 32px}h2{font-size:17px;margin:24px 0 4px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
figcaption{font-weight:600;margin-bottom:4px}.note{color:#666;margin:2px 0 8px}
.legend span{margin-right:12px;white-space:nowrap}.legend i{display:inline-block;width:10px;height:10px;
margin-right:4px;border-radius:2px}svg text{font-size:11px;fill:#444}svg .grid{stroke:#eee}
pre{background:#fff;border:1px solid #ddd;padding:8px;overflow:auto;font-size:12px}
"""

# A line per policy with its 95 % band, against one parameter (numeric or categorical x).
JS = r"""
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("sweep-data").textContent);
  const NS = "http://www.w3.org/2000/svg";  // an XML namespace name, never fetched
  const PAL = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f"];
  const W = 420, H = 250, M = { l: 54, r: 12, t: 10, b: 40 };
  function el(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    parent.appendChild(e);
    return e;
  }
  function fmt(v) {
    if (v == null || !isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e4) return (v / 1e3).toPrecision(3) + "k";
    return a >= 100 || Number.isInteger(v) ? v.toFixed(0) : String(+v.toPrecision(3));
  }
  function ticks(lo, hi, n) {
    const s0 = (hi - lo || 1) / n, mag = Math.pow(10, Math.floor(Math.log10(s0))), e = s0 / mag;
    const step = mag * (e >= 7.5 ? 10 : e >= 3.5 ? 5 : e >= 1.5 ? 2 : 1), out = [];
    for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }
  function extent(vals, pad) {
    let lo = Math.min(...vals), hi = Math.max(...vals);
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    const p = (hi - lo) * pad || Math.abs(hi) * 0.1 || 1;
    return [lo - p, hi + p];
  }
  function draw(host) {
    const c = D[host.dataset.chart], xs = c.x, n = xs.length;
    const ys = [].concat(...c.series.map(s => s.y.concat(s.lo, s.hi))).filter(v => v != null);
    const [x0, x1] = c.categorical || n < 2 ? [-0.5, Math.max(n - 0.5, 0.5)] : extent(xs, 0.04);
    const [y0, y1] = extent(ys, 0.06);
    const X = v => M.l + (v - x0) / (x1 - x0) * (W - M.l - M.r), Y = v => H - M.b - (v - y0) / (y1 - y0) * (H - M.t - M.b);
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img" }, host);
    ticks(y0, y1, 5).forEach(v => {
      el("line", { x1: M.l, x2: W - M.r, y1: Y(v), y2: Y(v), class: "grid" }, svg);
      el("text", { x: M.l - 5, y: Y(v) + 4, "text-anchor": "end" }, svg).textContent = fmt(v);
    });
    const xt = c.categorical || n <= 6 ? xs.map((v, i) => [v, c.labels[i]]) : ticks(x0, x1, 6).map(v => [v, fmt(v)]);
    xt.forEach(([v, label]) => {
      el("text", { x: X(v), y: H - M.b + 15, "text-anchor": "middle" }, svg).textContent = label;
    });
    el("line", { x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b, stroke: "#888" }, svg);
    el("text", { x: (M.l + W - M.r) / 2, y: H - 4, "text-anchor": "middle" }, svg).textContent = c.xlabel;
    c.series.forEach((s, k) => {
      const col = PAL[k % PAL.length], ok = xs.map((_, i) => s.y[i] != null);
      const band = xs.map((_, i) => i).filter(i => s.lo[i] != null && s.hi[i] != null);
      if (band.length > 1) {
        const pts = band.map(i => `${X(xs[i])},${Y(s.hi[i])}`).concat(band.slice().reverse().map(i => `${X(xs[i])},${Y(s.lo[i])}`));
        el("polygon", { points: pts.join(" "), fill: col, "fill-opacity": 0.18, stroke: "none" }, svg);
      }
      band.forEach(i => el("line", { x1: X(xs[i]), x2: X(xs[i]), y1: Y(s.lo[i]), y2: Y(s.hi[i]), stroke: col, "stroke-opacity": 0.5 }, svg));
      const line = xs.map((v, i) => [X(v), Y(s.y[i])]).filter((_, i) => ok[i]);
      if (line.length > 1) el("polyline", { points: line.map(p => p.join(",")).join(" "), fill: "none", stroke: col, "stroke-width": 2 }, svg);
      xs.forEach((v, i) => {
        if (!ok[i]) return;
        const dot = el("circle", { cx: X(v), cy: Y(s.y[i]), r: 3.5, fill: col }, svg);
        el("title", {}, dot).textContent = `${s.name}, ${c.xlabel} = ${c.labels[i]}: ${fmt(s.y[i])} ` +
          `[${fmt(s.lo[i])}, ${fmt(s.hi[i])}], n = ${s.n[i]}`;
      });
    });
    const lg = document.createElement("div");
    lg.className = "legend";
    lg.innerHTML = c.series.map((s, k) => `<span><i style="background:${PAL[k % PAL.length]}"></i>${s.name.replace(/[&<>]/g, "")}</span>`).join("");
    host.appendChild(lg);
  }
  document.querySelectorAll("[data-chart]").forEach(host => {
    try {
      draw(host);
      host.setAttribute("data-rendered", "1");
    } catch (err) {
      host.setAttribute("data-error", String(err));
    }
  });
})();
"""
