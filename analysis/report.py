"""Reports of a run: one self-contained HTML file, Markdown tables, CSV and JSON exports.

``report(run_dir)`` writes, into the run folder by default:

* ``report.html``: every script, style and number inline; charts drawn by a small hand-written
  SVG kit (``templates/report.js``); nothing is fetched, so it opens offline from a file or mail.
* ``report.md``: the summary tables in Markdown.
* ``metrics.json``: ``metrics(run, baseline)``.
* ``report_nodes.csv`` (per node), ``report_fleet.csv`` (per epoch), ``report_fairness.csv`` (per
  class and outcome), ``report_kpis.csv`` (headline KPIs, with the baseline if given).

A run folder written with ``--tables no-tasks`` draws every chart (per-node and per-epoch task
counts come from nodes.parquet and epochs.parquet); one written with ``--tables summary`` gives
the summary's numbers, and in place of each chart a note naming the tables it is drawn from and
the ``--tables`` choice that writes them (``CHART_TABLES``).

A baseline must come from the same scenario, node count and horizon (``baseline_mismatch``);
another one is a UserError naming the difference unless ``allow_baseline_mismatch``.

``comparison_report(table, out)`` renders a table of metrics per policy (columns policy, metric,
mean, ci_low, ci_high, n; the long table of ``otmarl compare``) side by side with 95 % CI error
bars, into comparison.html and comparison.md.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from otmarl.scenarios.errors import UserError

from .stats import FAIRNESS_FIELDS
from .metrics import (DROP_REASONS, KPI_BETTER, OUTCOMES, Run, class_fairness_table, fleet_table,
                      load_run, metrics, node_table)
from .registry import BETTER, REGISTRY, clip_intervals
from .report_assets import (CHART_TABLES, choices_writing, html_page, missing_tables, need_text,
                            payload, payload_json, quantise)
from .report_assets import fmt_value as _fmt

__all__ = ["report", "comparison_report", "summary_tables", "FORMATS", "KPI_LABELS"]

FORMATS = ("html", "md", "csv", "json")
COMPARISON_COLUMNS = ("policy", "metric", "mean", "ci_low", "ci_high", "n")

KPI_LABELS = {
    "energy_consumed_wh": "energy consumed (Wh)", "wh_per_completed_task": "Wh per completed task",
    "curtailed_share": "curtailed share of harvest", "transport_loss_share": "transport-loss share of sent",
    "on_time_ratio": "on-time completion ratio", "drop_ratio": "drop ratio",
    "latency_p50_s": "latency p50 (s)", "latency_p95_s": "latency p95 (s)",
    "brownout_node_hours": "brownout (node-hours)", "mean_soc": "mean SoC",
    "final_soc_mean": "final SoC (mean over nodes)", "throughput_wh": "battery throughput (Wh)",
    "service_jain": "service ratio: Jain", "service_gini": "service ratio: Gini",
    "service_worst_decile_mean": "service ratio: worst-decile mean", "uptime_jain": "up-time: Jain",
    "uptime_worst_decile_mean": "up-time: worst-decile mean", "final_soc_gini": "final SoC: Gini",
    "final_soc_equality_gap_w1": "final SoC: equality gap (W1)",
}
CARDS = ("on_time_ratio", "wh_per_completed_task", "brownout_node_hours", "latency_p95_s",
         "service_jain", "service_worst_decile_mean", "curtailed_share", "transport_loss_share")
OUTCOME_LABELS = {"service_ratio": "service ratio", "uptime": "up-time", "final_soc": "final SoC"}

Table = tuple[str, list[str], list[list]]   # title, header, rows


# ------------------------------------------------------------------------------- entry point
def report(run_dir: str | os.PathLike, baseline: str | os.PathLike | None = None,
           formats: str | Iterable[str] = FORMATS, out: str | os.PathLike | None = None,
           allow_baseline_mismatch: bool = False) -> dict[str, Path]:
    """Write the report files of a run; return ``{kind: path}`` (kinds: html, md, json, and
    with the tables they come from nodes_csv, fleet_csv, fairness_csv; kpis_csv)."""
    fmts = parse_formats(formats)
    run = load_run(run_dir)
    base = load_run(baseline) if baseline is not None else None
    if base is not None:
        check_baseline(run, base, allow_baseline_mismatch)
    m = metrics(run, base)
    out_dir = Path(out) if out is not None else run.path
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out: '{out_dir}' is a file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if "json" in fmts:
        paths["json"] = _write(out_dir / "metrics.json", json.dumps(m, indent=2) + "\n")
    if "csv" in fmts:
        paths.update(_write_csvs(run, m, out_dir))
    if "md" in fmts:
        paths["md"] = _write(out_dir / "report.md", markdown(run, m))
    if "html" in fmts:
        paths["html"] = _write(out_dir / "report.html", html_report(run, m, base))
    return paths


#: What a baseline run must share with the run (summary.json keys) to be compared with it.
BASELINE_MUST_MATCH = ("scenario", "n_nodes", "horizon_h", "n_epochs")


def baseline_mismatch(a: dict, b: dict) -> list[str]:
    """Each way a baseline differs from the run in ``BASELINE_MUST_MATCH``, as 'key: run value,
    baseline value'; ``a`` and ``b`` are their summaries (or the "run" part of their metrics)."""
    return [f"{k}: {a.get(k)!r} in the run, {b.get(k)!r} in the baseline"
            for k in BASELINE_MUST_MATCH if a.get(k) != b.get(k)]


def check_baseline(run: Run, base: Run, allow: bool) -> None:
    """A UserError naming every difference of a baseline from another scenario, node count or
    horizon, unless ``allow`` (then the report says the baseline does not match)."""
    diff = baseline_mismatch(run.summary, base.summary)
    if diff and not allow:
        raise UserError(f"--baseline: '{base.path}' is not a run of the same scenario and horizon "
                        f"as '{run.path}' ({'; '.join(diff)}); its ratios would compare unlike "
                        "things. Pass --allow-baseline-mismatch to compare them anyway")


def parse_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    items = [f.strip().lower() for f in items if f.strip()]
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise UserError(f"--format: {', '.join(map(repr, bad)) or 'nothing given'}: choose from "
                        f"{', '.join(FORMATS)} (comma-separated)")
    return tuple(dict.fromkeys(items))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _write_csvs(run: Run, m: dict, out: Path) -> dict[str, Path]:
    kpis = pd.DataFrame({"kpi": list(m["kpis"]), "value": list(m["kpis"].values()),
                         "better": [KPI_BETTER.get(k, "") for k in m["kpis"]]})
    if "baseline" in m:
        kpis["baseline"] = [m["baseline"]["kpis"].get(k) for k in kpis["kpi"]]
        kpis["normalised"] = [m["baseline"]["normalised"].get(k) for k in kpis["kpi"]]
    tables = {"kpis_csv": ("report_kpis.csv", kpis)}
    if run.has("timeseries", "nodes"):
        tables.update({"nodes_csv": ("report_nodes.csv", node_table(run)),
                       "fleet_csv": ("report_fleet.csv", fleet_table(run)),
                       "fairness_csv": ("report_fairness.csv", class_fairness_table(run))})
    paths = {}
    for key, (name, df) in tables.items():
        df.to_csv(out / name, index=False)
        paths[key] = out / name
    return paths


# ----------------------------------------------------------------------------- the tables
#: What the run report says about its baseline comparison (one run against one run).
UNTESTED = ("Against the baseline run: one run against one run, so no difference is tested for "
            "significance and none is coloured. `otmarl compare` runs both on several seeds and "
            "colours the differences whose 95 % interval excludes 0.")


def _better_mark(kpi: str, ratio) -> str:
    """'higher' or 'lower' than the baseline in the KPI's better direction, as plain words: one
    run against one run tests nothing, so the mark is never coloured."""
    if ratio is None or kpi not in KPI_BETTER or abs(ratio - 1) < 1e-3:
        return ""
    good = (ratio < 1) == (KPI_BETTER[kpi] == "lower")
    return "better (untested)" if good else "worse (untested)"


def summary_tables(m: dict) -> list[Table]:
    """The report's tables as (title, header, rows of values), shared by Markdown and HTML."""
    base = m.get("baseline")
    head = ["KPI", "value"] + (["baseline", "run / baseline", "vs baseline"] if base else []) \
        + ["better when"]
    kpi_rows = []
    for k, v in m["kpis"].items():
        row = [KPI_LABELS.get(k, k), v]
        if base:
            r = base["normalised"].get(k)
            row += [base["kpis"].get(k), r, _better_mark(k, r)]
        kpi_rows.append(row + [KPI_BETTER.get(k, "")])
    e, s, b = m["energy"], m["service"], m["batteries"]
    ledger = [[k.removesuffix("_wh").replace("_", " "), v] for k, v in e["ledger"].items()]
    service = [[k.replace("_", " "), s[k]] for k in (
        "generated", "completed_on_time", "completed_late", "on_time_ratio", "completion_ratio",
        "dropped_total", "drop_ratio", "in_system_at_end", "offloaded")]
    drops = [[r.replace("_", " "), s["dropped"][r]] for r in DROP_REASONS]
    latency = [[k, v] for k, v in s["latency_s"].items()]
    batt = [[k.replace("_", " "), b[k]] for k in (
        "min_soc", "mean_soc", "final_soc_mean", "brownout_node_hours", "down_node_hours",
        "nodes_ever_browned")] + [["throughput (Wh)", b["throughput_wh"]]]
    batt += [["equivalent full cycles (mean)", b["equivalent_full_cycles"]["mean"]],
             ["equivalent full cycles (max)", b["equivalent_full_cycles"]["max"]]]
    fields = [f for f in FAIRNESS_FIELDS if f not in ("min", "max")]
    fhead = [f.replace("_", " ") for f in fields]
    fair = m["fairness"]
    nodes_rows = [[OUTCOME_LABELS[o]] + [fair["nodes"][o][f] for f in fields]
                  for o in OUTCOMES if o in fair["nodes"]]
    class_rows = [[c, OUTCOME_LABELS[o]] + [fair["classes"][c][o][f] for f in fields]
                  for c in fair["classes"] for o in OUTCOMES]
    between = [[OUTCOME_LABELS[o]] + [fair["between_classes"][o][f] for f in fields]
               for o in OUTCOMES if o in fair["between_classes"]]
    return [("Headline KPIs", head, kpi_rows),
            ("Energy ledger (Wh)", ["item", "Wh"], ledger),
            ("Service", ["item", "value"], service),
            ("Drops by reason", ["reason", "tasks"], drops),
            ("Latency of completed tasks (s)", ["statistic", "s"], latency),
            ("Batteries", ["item", "value"], batt),
            ("Fairness across nodes", ["outcome"] + fhead, nodes_rows),
            ("Fairness within each class", ["class", "outcome"] + fhead, class_rows),
            ("Fairness between class means", ["outcome"] + fhead, between)]


DEFINITIONS = (
    "Service ratio of a node: tasks it originated that completed on time / tasks it originated "
    "(nodes that originated none are left out). Up-time: share of epochs neither failed nor "
    "browned out. Jain: (Σx)² / (n Σx²). Gini: Σᵢ Σⱼ |xᵢ − xⱼ| / (2 n² mean), 0 = equal. "
    "Worst decile: mean of the ⌈n/10⌉ smallest values. Equality gap (W1): Wasserstein-1 distance "
    "to every node at the mean = mean |x − mean|. Battery throughput: Σ |harvested − curtailed − "
    "consumed| over epochs + sent + delivered; equivalent full cycles = throughput / (2 capacity). "
    "Normalised KPIs: run / baseline (1 = as the baseline).")


def made_from_line(r: dict) -> str:
    """The sentence naming the run a report was made from (folder, engine and digests)."""
    return (f"Made by otmarl report from the run folder '{r['path_name']}' (engine "
            f"{r.get('engine') or 'unknown'}; run identity sha256 {r.get('identity_sha256') or 'unknown'}, "
            f"summary.json sha256 {r['summary_sha256']}).")


def markdown(run: Run, m: dict) -> str:
    r = m["run"]
    lines = [f"# otmarl report: {r['scenario']} / {r['policy']} / seed {r['seed']}", "",
             f"{r['n_nodes']} nodes, {r['horizon_h']:g} h in {r['n_epochs']} epochs of "
             f"{r['epoch_s']:g} s." + (f" Baseline: {m['baseline']['run']['scenario']} / "
                                       f"{m['baseline']['run']['policy']} / seed "
                                       f"{m['baseline']['run']['seed']}." if "baseline" in m else "")]
    mismatch = baseline_mismatch(r, m["baseline"]["run"]) if "baseline" in m else []
    if mismatch:
        lines.append("**The baseline is not a run of the same scenario and horizon:** "
                     + "; ".join(mismatch) + ".")
    lines.append("")
    for title, head, rows in summary_tables(m):
        lines += [f"## {title}", "", _md_table(head, rows), ""]
    lines += ["## Charts and the tables they are drawn from", "",
              _md_table(CHART_TABLES_HEAD, chart_tables_rows(run)), ""]
    lines += ["## Definitions", "", DEFINITIONS, "", made_from_line(m["run"]), ""]
    return "\n".join(lines)


def _md_table(head: Sequence[str], rows: list[list]) -> str:
    cell = lambda v: _fmt(v).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


# ---------------------------------------------------------------------------------- HTML
def _html_table(title: str, head: Sequence[str], rows: list[list]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)

    def td(v) -> str:
        if isinstance(v, tuple):                 # (text, css class): a coloured cell
            text, css = v
            return f'<td class="{css}">{html.escape(text)}</td>' if css else f"<td>{html.escape(text)}</td>"
        text = _fmt(v)
        if text.startswith("**") and text.endswith("**"):   # the best of a comparison row
            return f"<td><b>{html.escape(text[2:-2])}</b></td>"
        return f"<td>{html.escape(text)}</td>"
    body = "".join("<tr>" + "".join(td(v) for v in row) + "</tr>" for row in rows)
    return (f"<div><h3>{html.escape(title)}</h3><table><thead><tr>{th}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def _cards(m: dict) -> str:
    base = m.get("baseline")
    out = []
    for k in CARDS:
        v = m["kpis"].get(k)
        badge = ""
        if base:
            r = base["normalised"].get(k)
            badge = f'<div class="b muted">× {_fmt(r)} of baseline</div>'
        out.append(f'<div class="card"><div class="k">{html.escape(KPI_LABELS[k])}</div>'
                   f'<div class="v">{html.escape(_fmt(v))}</div>{badge}</div>')
    note = f"<p class=note>{html.escape(UNTESTED)}</p>" if base else ""
    return '<div class="cards">' + "".join(out) + "</div>" + note


def _figure(name: str, caption: str, note: str = "", wide: bool = False, run: Run | None = None) -> str:
    """A chart of the run report; in its place a note when ``run`` lacks a table it needs."""
    missing = chart_missing_note(run, name) if run is not None else ""
    chart = (f'<p class="note missing">{html.escape(missing)}</p>' if missing
             else f'<div class="chart" data-chart="{name}"></div>')
    return (f'<figure{" class=wide" if wide else ""}><figcaption>{html.escape(caption)}</figcaption>'
            + chart + (f'<p class="note">{html.escape(note)}</p>' if note else "") + "</figure>")


def chart_missing_note(run: Run, chart: str) -> str:
    """'' if ``run`` holds the tables of ``chart``, else a note naming what is missing and the
    --tables choices that write it."""
    needs = CHART_TABLES[chart]
    missing = missing_tables(run, needs)
    if not missing:
        return ""
    held = run.metadata.get("tables")
    return (f"Not drawn: this chart is made from {' and '.join(missing)}, which this run folder does "
            f"not hold{f' (written with --tables {held})' if held else ''}. Run it with --tables "
            f"{' or '.join(choices_writing(needs))} to draw it.")


def chart_tables_rows(run: Run) -> list[list]:
    """One row per chart: its caption, the tables it is drawn from, and whether it is drawn."""
    captions = {name: cap for _, charts in CHARTS for name, cap, *_ in charts}
    captions.update({name: cap for name, cap, *_ in FAIRNESS_CHARTS}, map="Network map")
    return [[captions[c], ", ".join(need_text(n) for n in needs),
             " or ".join(choices_writing(needs)), "yes" if not missing_tables(run, needs) else "no"]
            for c, needs in CHART_TABLES.items()]


CHARTS = (
    ("Batteries and energy", [
        ("soc_band", "Fleet state of charge", "Bands: p10–p90 and min–max over nodes at each epoch end."),
        ("energy", "Harvest against consumption", "Fleet totals per epoch; click a legend key to hide a series.")]),
    ("Service", [
        ("queue", "Queue backlog", "Tasks waiting at each epoch end, summed over nodes."),
        ("drops", "Drops over time, by reason", "Tasks dropped in each epoch (stacked), and late completions.")]),
    ("Flows", [
        ("energy_flows", "Energy flows per epoch", "Energy sent between nodes and what arrived after transport losses."),
        ("task_flows", "Task flows per epoch", "Tasks routed to another node, against tasks generated and completed on time.")]),
)


FAIRNESS_CHARTS = (
    ("lorenz", "Lorenz curves", "The further below the diagonal, the less equal."),
    ("sorted", "Per-node outcome, sorted", "Worst-off nodes on the left."),
    ("classes", "By node class", "Mean per class; hover for Jain, Gini and the worst decile."))
MAP_NOTE = ("Nodes filled by state of charge at the chosen time; ring colour: class; a down node "
            "(failed or browned out) has a thick dashed black ring of its own; lines: the largest "
            "energy and task flows of that step, width by amount.")
CHART_TABLES_HEAD = ["chart", "drawn from", "--tables that write them", "drawn here"]


def _subtitle(r: dict, baseline: Run | None, mismatch: list[str]) -> str:
    sub = (f"{r['n_nodes']:,} nodes · {r['horizon_h']:g} h · {r['n_epochs']} epochs of "
           f"{r['epoch_s'] / 60:g} min")
    if baseline is not None:
        sub += f" · baseline: {baseline.label}"
        if mismatch:
            sub += " (NOT the same scenario and horizon: " + "; ".join(mismatch) + ")"
    return sub


def html_report(run: Run, m: dict, baseline: Run | None = None) -> str:
    r = m["run"]
    title = f"otmarl report: {r['scenario']} / {r['policy']} / seed {r['seed']}"
    sub = _subtitle(r, baseline, baseline_mismatch(r, m["baseline"]["run"]) if baseline else [])
    parts = [f"<header><h1>{html.escape(title)}</h1><p>{html.escape(sub)}</p></header><main>",
             "<h2>Headline</h2>", _cards(m)]
    for section, charts in CHARTS:
        parts.append(f"<h2 id={section.split()[0].lower()}>{section}</h2><div class=grid>")
        parts += [_figure(*c, run=run) for c in charts]
        parts.append("</div>")
    parts += ["<h2 id=network>Network</h2><div class=grid>",
              _figure("map", "Network map", MAP_NOTE, wide=True, run=run), "</div>",
              "<h2 id=fairness>Fairness across nodes</h2><div class=grid>"]
    parts += [_figure(*c, run=run) for c in FAIRNESS_CHARTS]
    parts += ["</div>", "<h2 id=tables>Tables</h2><div class=tables>"]
    parts += [_html_table(*t) for t in summary_tables(m)]
    parts.append(_html_table("Charts and the tables they are drawn from", CHART_TABLES_HEAD,
                             chart_tables_rows(run)))
    parts += ["</div>", f"<footer><p>{html.escape(DEFINITIONS)}</p>"
              f"<p>{html.escape(made_from_line(r))}</p>"
              "</footer></main>"]
    return html_page(title, "".join(parts), payload_json(run, baseline))


# ---------------------------------------------------------------------------- comparison
def comparison_report(table: pd.DataFrame, out: str | os.PathLike, title: str = "otmarl comparison",
                      labels: dict[str, str] | None = None,
                      paired: pd.DataFrame | None = None) -> dict[str, Path]:
    """Metrics per policy side by side with 95 % CI error bars.

    ``table`` has columns policy, metric, mean, ci_low, ci_high, n (one row per policy and metric,
    as ``stats.ci_table`` makes it; CI bounds may be NaN). ``labels`` maps a
    metric to a caption. Writes comparison.html and comparison.md into the folder ``out``
    (the table's own CSV is left alone); returns ``{"html", "md"}`` paths.
    """
    missing = [c for c in COMPARISON_COLUMNS if c not in table.columns]
    if missing:
        raise UserError(f"comparison table: missing column(s) {', '.join(missing)}; "
                        f"expected {', '.join(COMPARISON_COLUMNS)}")
    labels = {**KPI_LABELS, **(labels or {})}
    better = {**KPI_BETTER, **BETTER}
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t = table.loc[:, list(COMPARISON_COLUMNS)].copy()
    t, clipped = clip_intervals(t)
    metrics_ = list(dict.fromkeys(t["metric"]))
    data = {"cmp": {mt: quantise(g.drop(columns="metric").to_dict("records"))
                    for mt, g in t.groupby("metric", sort=False)}}
    figs = "".join(_cmp_figure(mt, labels.get(mt, mt), better.get(mt)) for mt in metrics_)
    policies = list(dict.fromkeys(t["policy"]))
    head, rows = _comparison_rows(t, metrics_, policies, labels, better)
    pair_html, pair_md = _paired_section(paired, metrics_, labels, better)
    body = (f"<header><h1>{html.escape(title)}</h1><p>{len(policies)} policies · "
            f"{len(metrics_)} metrics · mean and 95 % confidence interval; the best mean of a "
            f"row is in bold</p></header><main>{_clipped_note(clipped, labels)}"
            f"<h2>Metrics</h2><div class=grid>{figs}</div><h2>Table</h2>"
            f"<div class=tables>{_html_table('Mean [95 % CI]', head, rows)}</div>{pair_html}</main>")
    md = (f"# {title}\n\nMean [95 % CI]; the best mean of a row is in bold."
          f"{' ' + CLIPPED.format(', '.join(labels.get(m, m) for m in clipped)) if clipped else ''}\n\n"
          + _md_table(head, rows)
          + pair_md)
    return {"html": _write(out_dir / "comparison.html", html_page(title, body, data)),
            "md": _write(out_dir / "comparison.md", md + "\n")}


CLIPPED = ("Intervals clipped to the metric's range (no negative count, no share above 1): {}; "
           "the table's own CSV has the unclipped Student-t bounds.")


def _clipped_note(clipped: list[str], labels: dict[str, str]) -> str:
    return (f"<p class=note>{html.escape(CLIPPED.format(', '.join(labels.get(m, m) for m in clipped)))}</p>"
            if clipped else "")


def _cmp_figure(mt: str, caption: str, better: str | None) -> str:
    """The figure of one metric: its caption, and an axis with the registry's label, unit and
    range when the metric is registered."""
    m = REGISTRY.get(mt)
    attrs = ""
    if m is not None:
        attrs = f' data-label="{html.escape(m.label)}"' + "".join(
            f' data-{k}="{v:g}"' for k, v in (("min", m.low), ("max", m.high)) if v is not None)
    return (f'<figure><figcaption>{html.escape(caption)}{f" ({better} is better)" if better else ""}'
            f'</figcaption><div class="chart" data-chart="cmp-{html.escape(mt)}" data-kind="cmp" '
            f'data-metric="{html.escape(mt)}"{attrs}></div></figure>')


PAIRED_LEGEND = ("Paired difference from {base} on the same seeds, mean [95 % CI]. A cell is "
                 "coloured (and starred) only when its interval excludes 0: blue where the policy "
                 "is better, vermillion where it is worse; an uncoloured difference is not "
                 "significant.")


def _paired_section(paired: pd.DataFrame | None, metrics_: list[str], labels: dict[str, str],
                    better: dict[str, str]) -> tuple[str, str]:
    """(HTML, Markdown) of the paired differences, significant cells marked."""
    if paired is None or not len(paired):
        return "", ""
    base = str(paired["baseline"].iloc[0])

    def cell(mt: str, p: str, x: pd.Series, best) -> tuple[str, str]:
        sig = bool(x["significant"])
        css = ""
        if sig and mt in better:
            css = "good" if (x["mean_diff"] < 0) == (better[mt] == "lower") else "bad"
        return _interval(x["mean_diff"], x) + (" *" if sig else ""), css

    head, rows = _metric_rows(paired, "mean_diff", metrics_, labels, {}, cell)
    legend = PAIRED_LEGEND.format(base=base)
    html_part = (f"<h2>Against {html.escape(base)}</h2><p class=note>{html.escape(legend)}</p>"
                 f"<div class=tables>{_html_table(f'Difference from {base}', head, rows)}</div>")
    md_rows = [[c[0] if isinstance(c, tuple) else c for c in r] for r in rows]
    return html_part, f"\n\n## Against {base}\n\n{legend} (* significant)\n\n" + _md_table(head, md_rows)


def _interval(value: float, x: pd.Series) -> str:
    return f"{_fmt(value)} [{_fmt(x['ci_low'])}, {_fmt(x['ci_high'])}]"


def _metric_rows(t: pd.DataFrame, value: str, metrics_: list[str], labels: dict[str, str],
                 better: dict[str, str], cell):
    """(head, rows): one row per metric, one column per policy of ``t``; ``cell(metric, policy,
    row of t, the best policy of the metric or None)`` makes each cell."""
    policies = list(dict.fromkeys(t["policy"]))
    rows = []
    for mt in metrics_:
        g = t[t["metric"] == mt].set_index("policy")
        best = None
        if mt in better and g[value].notna().any():
            best = g[value].idxmin() if better[mt] == "lower" else g[value].idxmax()
        rows.append([labels.get(mt, mt)] + [cell(mt, p, g.loc[p], best) if p in g.index else "–"
                                            for p in policies])
    return ["metric"] + policies, rows


def _comparison_rows(t: pd.DataFrame, metrics_: list[str], policies: list[str],
                     labels: dict[str, str], better: dict[str, str]):
    def cell(mt: str, p: str, x: pd.Series, best) -> str:
        text = _interval(x["mean"], x)
        return f"**{text}**" if p == best else text

    return _metric_rows(t[t["policy"].isin(policies)], "mean", metrics_, labels, better, cell)
