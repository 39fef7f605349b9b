"""The chart kit's Python side: the page shell every otmarl HTML page is made of
(``html_page``: ``templates/report.html`` with its one CSS and one JavaScript chart kit inlined),
and the data behind the run report's charts: decimated, quantised, JSON-ready.

Budgets keep a 10,000-node day under a few MB of JSON: fleet series have at most
``MAX_POINTS`` points (epochs are merged into buckets beyond that), the network map shows at most
``MAX_MAP_NODES`` nodes (a class-stratified, evenly spread sample) over at most ``MAX_FRAMES``
time frames, and every float keeps ``SIG_DIGITS`` significant digits.
"""
from __future__ import annotations

import html
import json
import math
import re
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from .jsonable import dumps_for_html, jsonable, q
from .stats import lorenz
from .metrics import DROP_REASONS, OUTCOMES, Run, class_fairness_table, fleet_table, node_table

__all__ = ["html_page", "payload", "payload_json", "quantise", "q", "fmt_value", "template", "dumps_for_html", "MAX_POINTS", "MAX_FRAMES",
           "MAX_MAP_NODES", "CHART_TABLES", "missing_tables", "choices_writing", "need_text"]

MAX_POINTS = 1500
MAX_FRAMES = 200
MAX_MAP_NODES = 2000
MAX_LINKS = 6000
MAX_FLOWS_PER_FRAME = 150
MAX_BARS = 300
LORENZ_POINTS = 201
SIG_DIGITS = 4

# fleet columns: summed over an epoch bucket (extensive) or averaged (intensive)
SUMMED = ("harvested_wh", "curtailed_wh", "consumed_wh", "consumed_idle_wh", "consumed_tasks_wh",
          "consumed_tx_wh", "sent_wh", "delivered_wh", "generated", "completed_on_time",
          "completed_late", "tasks_routed", "energy_transfers") + tuple(f"dropped_{r}" for r in DROP_REASONS)
AVERAGED = ("soc_p10", "soc_p50", "soc_p90", "soc_mean", "stored_wh", "queue_len", "nodes_up",
            "nodes_browned")


#: The tables each chart of the run report is drawn from; a tuple inside names alternatives
#: (per-epoch task counts come from epochs.parquet, or from tasks.parquet in older folders).
FLEET_TABLES = ("timeseries", ("epochs", "tasks"))
NODE_TABLES = ("timeseries", "nodes")
CHART_TABLES: dict[str, tuple] = {
    "soc_band": FLEET_TABLES, "energy": FLEET_TABLES, "queue": FLEET_TABLES, "drops": FLEET_TABLES,
    "energy_flows": FLEET_TABLES, "task_flows": FLEET_TABLES + ("flows",), "map": NODE_TABLES,
    "lorenz": NODE_TABLES, "sorted": NODE_TABLES, "classes": NODE_TABLES}


def need_text(need: str | tuple[str, ...], suffix: str = "") -> str:
    """A table a chart needs, in words: 'epochs.parquet (or tasks.parquet)'."""
    alts = need if isinstance(need, tuple) else (need,)
    return f"{alts[0]}{suffix}" + "".join(f" (or {t}{suffix})" for t in alts[1:])


def missing_tables(run: Run, needs: tuple) -> list[str]:
    """Each table of ``needs`` the run folder lacks, in words (``need_text``)."""
    return [need_text(n, ".parquet") for n in needs
            if not any(run.has(t) for t in (n if isinstance(n, tuple) else (n,)))]


def choices_writing(needs: tuple) -> list[str]:
    """The ``--tables`` choices whose folders hold every table of ``needs``."""
    from otmarl.scenarios.schema import TABLE_CHOICES
    return [c for c, held in TABLE_CHOICES.items()
            if all(any(t in held for t in (n if isinstance(n, tuple) else (n,))) for n in needs)]


def template(name: str) -> str:
    """A file of ``analysis/templates`` (the HTML shell, its CSS and its JavaScript)."""
    return resources.files("otmarl.analysis").joinpath("templates", name).read_text("utf-8")


def html_page(title: str, body: str, data: dict | str) -> str:
    """A self-contained HTML page: ``body`` in the shared shell, ``data`` as the JSON the chart
    kit draws from (a dict, or its JSON already made: ``payload_json``); each ``[data-chart]``
    element of ``body`` names its renderer (``data-kind``). The shell's placeholders are filled
    in one pass (text put in is never searched for placeholders)."""
    values = {"TITLE": html.escape(title), "CSS": template("report.css"), "BODY": body,
              "JS": template("report.js"), "DATA": data if isinstance(data, str) else dumps_for_html(data)}
    return re.sub(r"\{\{(TITLE|CSS|BODY|JS|DATA)\}\}", lambda m: values[m.group(1)], template("report.html"))


def fmt_value(v: Any) -> str:
    """A table cell's text: '–' for None or NaN, thousands separators for Python ints and for
    floats from 10,000 on, else four significant digits."""
    if v is None:
        return "–"
    if isinstance(v, (bool, str)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    v = float(v)
    if v != v:
        return "–"
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


def quantise(x: Any, sig: int = SIG_DIGITS) -> Any:
    """``x`` ready for JSON with every float rounded to ``sig`` significant digits (see
    ``jsonable.jsonable``): the payload budget of the charts."""
    return jsonable(x, sig)


def payload(run: Run, metrics: dict, baseline: Run | None = None) -> dict:
    """Everything the report's JavaScript draws, as one JSON-able dict (already quantised)."""
    return {key: make() for key, make in _payload_parts(run, baseline)}


def payload_json(run: Run, baseline: Run | None = None) -> str:
    """``dumps_for_html(payload(...))``, the same text, made one part at a time: each part's
    lists are let go once written (a map of thousands of nodes and frames is millions of
    numbers as Python objects, a few characters each as JSON)."""
    return "{" + ",".join(f"{json.dumps(key)}:{dumps_for_html(make())}"
                          for key, make in _payload_parts(run, baseline)) + "}"


def _payload_parts(run: Run, baseline: Run | None):
    """(key, maker) of each part of the payload, in order."""
    s = run.summary
    has = lambda r, needs: not missing_tables(r, needs)  # noqa: E731

    def base() -> dict | None:
        if baseline is None or not has(baseline, FLEET_TABLES):
            return None
        b = fleet_series(baseline)
        return {"label": baseline.label, **{k: b[k] for k in ("t", "soc_p50", "queue_len", "harvested_wh",
                                                               "consumed_wh")}}
    return (("meta", lambda: quantise({"label": run.label, "scenario": s.get("scenario"),
                                       "policy": s.get("policy"), "seed": s.get("seed"),
                                       "n_nodes": run.n_nodes, "n_epochs": run.n_epochs,
                                       "horizon_h": s.get("horizon_h"), "epoch_s": run.epoch_s})),
            ("fleet", lambda: fleet_series(run) if has(run, FLEET_TABLES) else None),
            ("map", lambda: map_data(run) if has(run, NODE_TABLES) else None),
            ("fair", lambda: fairness_data(run) if has(run, NODE_TABLES) else None),
            ("baseline", base))


# ------------------------------------------------------------------------------ fleet series
def _buckets(n: int, max_n: int) -> np.ndarray:
    """Start index of each bucket when ``n`` items are merged into at most ``max_n`` buckets."""
    k = math.ceil(n / max_n) if n > max_n else 1
    return np.arange(0, n, k)


def fleet_series(run: Run) -> dict:
    """Per-epoch fleet aggregates as lists, merged into buckets beyond ``MAX_POINTS`` epochs."""
    f = fleet_table(run)
    if not len(f):
        return {"t": [], "bucket_epochs": 1, "reasons": [],
                **{c: [] for c in SUMMED + AVERAGED + ("soc_min", "soc_max")}}
    starts = _buckets(len(f), MAX_POINTS)
    counts = np.diff(np.append(starts, len(f)))
    col = lambda c: f[c].to_numpy(float)  # noqa: E731
    out = {"t": q(col("time_h")[starts])}
    out.update({c: q(np.add.reduceat(col(c), starts)) for c in SUMMED})
    out.update({c: q(np.add.reduceat(col(c), starts) / counts) for c in AVERAGED})
    out["soc_min"] = q(np.minimum.reduceat(col("soc_min"), starts))
    out["soc_max"] = q(np.maximum.reduceat(col("soc_max"), starts))
    out["bucket_epochs"] = int(counts.max())
    out["reasons"] = [r for r in DROP_REASONS if any(out[f"dropped_{r}"])]
    return out


# --------------------------------------------------------------------------------- the map
def map_nodes(nodes: pd.DataFrame, limit: int = MAX_MAP_NODES) -> np.ndarray:
    """Node ids to draw: all if few, else a class-stratified evenly spread sample of ``limit``.

    Each class gets its share of ``limit`` but at least ``min(count, 20)`` nodes, so a small
    class (cluster heads) stays visible on a 10,000-node map.
    """
    if len(nodes) <= limit:
        return nodes["node"].to_numpy()
    picked = []
    for _, g in nodes.groupby("class", sort=True):
        ids = g["node"].to_numpy()
        k = min(len(ids), max(20, round(limit * len(ids) / len(nodes))))
        picked.append(ids[np.linspace(0, len(ids) - 1, k).round().astype(int)])
    return np.unique(np.concatenate(picked))


def map_data(run: Run) -> dict:
    nodes = run.nodes.sort_values("node").reset_index(drop=True)
    shown = map_nodes(nodes)
    frames = _buckets(run.n_epochs, MAX_FRAMES)
    flows = _frame_flows(run, frames)
    ends = np.concatenate([fl[0] for fl in flows] + [fl[1] for fl in flows]) if flows else []
    pts = np.union1d(shown, np.asarray(ends, np.int64))
    pos = np.searchsorted(pts, shown)
    soc, up = run.grid("soc"), run.grid("up")
    last = np.append(frames[1:], run.n_epochs) - 1          # state at each frame's last epoch
    classes = sorted(nodes["class"].unique().tolist())
    cls_idx = {c: i for i, c in enumerate(classes)}
    return {
        "n_total": run.n_nodes, "classes": classes, "pts": len(pts),
        "x": q(nodes["x"].to_numpy()[pts]), "y": q(nodes["y"].to_numpy()[pts]),
        "cls": [cls_idx[c] for c in nodes["class"].to_numpy()[pts]],
        "name": nodes["name"].to_numpy()[pts].tolist() if len(pts) <= MAX_MAP_NODES else None,
        "shown": pos.tolist(), "shown_ids": shown.tolist(),
        "links": _links(run, pts),
        "t": q(frames * run.epoch_s / 3600.0),
        # SoC in thousandths packed in a string per frame (``pack_thousandths``), down nodes as a
        # string of 0/1 per frame: compact JSON, and no Python number per node and frame
        "soc": [pack_thousandths(soc[k, shown]) for k in last],
        "down": ["".join(np.where(up[k, shown], "0", "1")) for k in last] if run.n_epochs else [],
        # per frame, the columns (src, dst, amount, kind) of its largest flows
        "flows": [[np.searchsorted(pts, a).tolist(), np.searchsorted(pts, b).tolist(), q(v), k.tolist()]
                  for a, b, v, k in flows],
    }


PACK_DIGITS = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", np.uint8)
"""The 64 digits of ``pack_thousandths`` (base64url's, safe in JSON; report.js ``unpack``)."""


def pack_thousandths(x: np.ndarray) -> str:
    """Values of 0..1 (NaN as 0) as thousandths, two base-64 digits each (high, low): 0.5 is
    ``"H0"`` (500 = 7 x 64 + 52)."""
    v = np.clip(np.rint(np.nan_to_num(np.asarray(x, float)) * 1000), 0, 4095).astype(np.int64)
    out = np.empty(2 * len(v), np.uint8)
    out[0::2], out[1::2] = PACK_DIGITS[v >> 6], PACK_DIGITS[v & 63]
    return out.tobytes().decode("ascii")


def _links(run: Run, pts: np.ndarray) -> list[list[int]]:
    """Links whose both ends are drawn, as index pairs into ``pts`` (at most ``MAX_LINKS``)."""
    lk = run.links
    if not len(lk) or not len(pts):
        return []
    u, v = lk["u"].to_numpy(np.int64), lk["v"].to_numpy(np.int64)
    iu, iv = np.searchsorted(pts, u).clip(0, len(pts) - 1), np.searchsorted(pts, v).clip(0, len(pts) - 1)
    keep = np.flatnonzero((pts[iu] == u) & (pts[iv] == v))
    keep = keep[::math.ceil(len(keep) / MAX_LINKS)] if len(keep) > MAX_LINKS else keep
    return np.stack([iu[keep], iv[keep]], axis=1).tolist()


def _frame_flows(run: Run, frames: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """Per frame, the largest flows: arrays (src, dst, amount, kind 0 energy / 1 task)."""
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    f = run.flows
    if not len(f) or not len(frames):
        return [empty for _ in frames]
    g = pd.DataFrame({"frame": np.searchsorted(frames, f["epoch"].to_numpy(), side="right") - 1,
                      "kind": (f["kind"] == "task").to_numpy().astype(np.int64),
                      "src": f["src"].to_numpy(np.int64), "dst": f["dst"].to_numpy(np.int64),
                      "amount": f["amount"].to_numpy(float)})
    g = g.groupby(["frame", "kind", "src", "dst"], sort=False)["amount"].sum().reset_index()
    fr, amt = g["frame"].to_numpy(), g["amount"].to_numpy()
    order = np.lexsort((-amt, fr))                          # by frame, largest flow first
    fr = fr[order]
    first = np.searchsorted(fr, np.arange(len(frames)))     # where each frame starts
    rank = np.arange(len(fr)) - first[fr]
    keep = order[rank < MAX_FLOWS_PER_FRAME]
    cols = [g[c].to_numpy()[keep] for c in ("src", "dst", "amount", "kind")]
    cut = np.searchsorted(g["frame"].to_numpy()[keep], np.arange(1, len(frames)))
    return [tuple(parts) for parts in zip(*(np.split(c, cut) for c in cols))]


# ---------------------------------------------------------------------------- fairness data
def fairness_data(run: Run) -> dict:
    nt = node_table(run)
    classes = sorted(nt["class"].unique().tolist())
    tab = class_fairness_table(run)
    out = {"classes": classes, "outcomes": {}}
    for o in OUTCOMES:
        ok = nt[~nt[o].isna()]
        order = np.argsort(ok[o].to_numpy(), kind="stable")
        vals = ok[o].to_numpy()[order]
        p, L = lorenz(vals)
        if len(p) > LORENZ_POINTS:
            grid = np.linspace(0, 1, LORENZ_POINTS)
            p, L = grid, np.interp(grid, p, L)
        rows = tab[tab["outcome"] == o]
        out["outcomes"][o] = {
            "lorenz": [q(p), q(L)],
            "sorted": _sorted_bars(vals, ok["class"].to_numpy()[order], ok["name"].to_numpy()[order],
                                   classes),
            "fleet": quantise(rows[rows["scope"] == "fleet"].iloc[0]
                              .drop(["scope", "class", "outcome"]).to_dict()),
            "by_class": quantise({r["class"]: {k: r[k] for k in ("n", "mean", "min", "max", "jain",
                                                                 "gini", "worst_decile_mean")}
                                  for r in rows[rows["scope"] == "class"].to_dict("records")})}
    return out


def _sorted_bars(vals: np.ndarray, cls: np.ndarray, names: np.ndarray, classes: list[str]) -> dict:
    """Sorted per-node values: one bar per node if few, else ``MAX_BARS`` rank bins (bin means)."""
    ci = {c: i for i, c in enumerate(classes)}
    if len(vals) <= MAX_BARS:
        return {"v": q(vals), "cls": [ci[c] for c in cls], "name": names.tolist(), "bins": None}
    edges = np.linspace(0, len(vals), MAX_BARS + 1).round().astype(int)
    means = np.add.reduceat(vals, edges[:-1]) / np.diff(edges)
    return {"v": q(means), "cls": None, "name": None, "bins": edges.tolist()}
