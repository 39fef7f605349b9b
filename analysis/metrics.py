"""Metrics of one run, computed from its run folder alone (nothing is simulated again).

``load_run(dir)`` gives a ``Run`` whose tables load on first use; ``metrics(run)`` gives a nested,
JSON-able dict: the energy ledger, service, batteries, fairness across nodes and node classes, a
flat ``kpis`` dict, and with a baseline run every KPI divided by the baseline's (CityLearn's
convention: 1 is "as good as the baseline"; see ``KPI_BETTER`` for which way is better).

Exact numbers come from summary.json (the ledger, task counts, latency percentiles, brownout and
SoC extremes); the tables (float32 on disk, read as float64) give what the summary lacks. A run
folder written with ``--tables no-tasks`` has no tasks.parquet: per-node task counts come from
nodes.parquet and per-epoch ones from epochs.parquet. One written with ``--tables summary`` has no
tables at all: the metrics that need one are None (``Run.has`` says which tables are there).

Definitions (the unit is in every name):

* ``wh_per_completed_task``: energy consumed by the fleet (idle + tasks + transmit) per task
  completed (on time or late); ``task_wh_per_completed_task`` counts the task energy only.
* ``curtailed_share`` = curtailed / harvested; ``transport_loss_share`` = (sent - delivered) / sent.
* Per-node ``service_ratio`` = tasks originated at the node and completed on time (wherever they
  ran) / tasks originated at the node; NaN (left out of fairness) for a node that originated none.
* ``uptime`` = share of epochs in which the node was up (neither failed nor browned out).
* Battery ``throughput_wh`` (a wear proxy): energy through the battery terminals in both
  directions. Within an epoch the model nets harvest and loads on the node's DC bus
  (docs/model.md), so the battery charges ``max(b, 0)`` and discharges ``max(-b, 0)`` with
  ``b = harvested - curtailed - consumed (idle + tasks + transmit)``; energy sharing adds ``sent``
  (out) and ``delivered`` (in). Thus ``throughput = sum_epochs |b| + sent + delivered``, and
  ``equivalent_full_cycles = throughput / (2 capacity)``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from otmarl.scenarios.errors import UserError

from .jsonable import jsonable
from .stats import FAIRNESS_FIELDS, fairness_summary

__all__ = ["Run", "load_run", "metrics", "node_table", "fleet_table", "class_fairness_table",
           "normalise_to_baseline", "KPI_BETTER", "OUTCOMES", "DROP_REASONS"]

REQUIRED_FILES = ("summary.json",)
#: Per-node task counts of nodes.parquet (by origin; written since --tables existed).
ORIGIN_COUNTS = ("originated", "completed_on_time", "completed_late", "dropped")
#: The drop reasons a run can record (the simulator's, read from run folders; a test keeps the
#: two lists equal).
DROP_REASONS = ("queue_full", "expired", "node_down")
OUTCOMES = ("service_ratio", "uptime", "final_soc")
CONSUMED = ("consumed_idle_wh", "consumed_tasks_wh", "consumed_tx_wh")
LEDGER_OUT = ("curtailed_wh",) + CONSUMED + ("self_discharge_wh", "conversion_loss_wh")
ENERGY_COLS = ("harvested_wh",) + LEDGER_OUT + ("unserved_wh", "sent_wh", "delivered_wh")
TASK_COLS = ["origin", "node", "generated_s", "end_s", "status", "drop_reason", "offloads"]

#: For each KPI, whether a lower or a higher value is better (a normalised value < 1 is an
#: improvement for "lower").
KPI_BETTER = {
    "energy_consumed_wh": "lower", "wh_per_completed_task": "lower", "curtailed_share": "lower",
    "transport_loss_share": "lower", "on_time_ratio": "higher", "drop_ratio": "lower",
    "latency_p50_s": "lower", "latency_p95_s": "lower", "brownout_node_hours": "lower",
    "mean_soc": "higher", "final_soc_mean": "higher", "throughput_wh": "lower",
    "service_jain": "higher", "service_gini": "lower", "service_worst_decile_mean": "higher",
    "uptime_jain": "higher", "uptime_worst_decile_mean": "higher", "final_soc_gini": "lower",
    "final_soc_equality_gap_w1": "lower",
}


@dataclass(eq=False)
class Run:
    """The files of one run folder; each table is read on first use and kept."""

    path: Path
    _cache: dict = field(default_factory=dict, repr=False)

    @cached_property
    def summary(self) -> dict:
        return self._json("summary.json")

    @cached_property
    def metadata(self) -> dict:
        return self._json("metadata.json") if (self.path / "metadata.json").exists() else {}

    def has(self, *names: str) -> bool:
        """Whether the folder holds every table named (``timeseries``, ``tasks``...)."""
        return all((self.path / f"{n}.parquet").is_file() for n in names)

    @property
    def has_task_counts(self) -> bool:
        """Whether per-epoch task counts can be had (epochs.parquet, or tasks.parquet)."""
        return self.has("epochs") or self.has("tasks")

    @cached_property
    def timeseries(self) -> pd.DataFrame:
        return _float64(self._timeseries_table.to_pandas())

    @cached_property
    def _timeseries_table(self) -> pa.Table:
        # kept as Arrow: the metrics take columns as numpy arrays, skipping a pandas frame
        return self._read("timeseries", pq.read_table)

    @cached_property
    def epochs(self) -> pd.DataFrame:
        """Fleet task counts per epoch (epochs.parquet)."""
        return self._parquet("epochs")

    @cached_property
    def tasks(self) -> pd.DataFrame:
        """The task columns the metrics need (read the Parquet file yourself for all of them)."""
        return _float64(self._parquet("tasks", TASK_COLS))

    @cached_property
    def _flow_rows(self) -> pd.DataFrame:
        return self._optional("flows", ["epoch", "time_s", "kind", "src", "dst", "amount",
                                        "delivered_wh"])

    @cached_property
    def flows(self) -> pd.DataFrame:
        """Energy transfers and task routes only (kind 'energy' or 'task')."""
        f = self._flow_rows
        return _float64(f[f["kind"].isin(("energy", "task"))].reset_index(drop=True))

    @cached_property
    def market(self) -> pd.DataFrame:
        """The allocator's offers and requests (kinds '<energy|task>_<offer|request>', dst -1)."""
        f = self._flow_rows
        return f[~f["kind"].isin(("energy", "task"))].reset_index(drop=True)

    @cached_property
    def nodes(self) -> pd.DataFrame:
        nodes = self._parquet("nodes")
        if "class" in nodes and isinstance(nodes["class"].dtype, pd.CategoricalDtype):
            nodes["class"] = nodes["class"].astype(str)
        return _float64(nodes)

    @cached_property
    def links(self) -> pd.DataFrame:
        return self._optional("links", ["u", "v"])

    def _optional(self, name: str, cols: list[str]) -> pd.DataFrame:
        p = self.path / f"{name}.parquet"
        return self._parquet(name) if p.exists() else pd.DataFrame({c: [] for c in cols})

    def _parquet(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        return self._read(name, lambda p: pd.read_parquet(p, columns=columns))

    def _read(self, name: str, reader):
        p = self.path / f"{name}.parquet"
        try:
            return reader(p)
        except (OSError, ValueError, KeyError) as e:   # pyarrow's errors derive from these
            raise UserError(f"{p}: cannot read this run table ({type(e).__name__}: {e}); "
                            "write the run folder again with 'otmarl run'") from None

    def _json(self, name: str) -> dict:
        p = self.path / name
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{p}: cannot read this file ({e})") from None

    @property
    def n_nodes(self) -> int:
        return int(self.summary["n_nodes"])

    @property
    def n_epochs(self) -> int:
        return int(self.summary["n_epochs"])

    @property
    def epoch_s(self) -> float:
        return float(self.summary["horizon_h"]) * 3600.0 / max(self.n_epochs, 1)

    @property
    def label(self) -> str:
        s = self.summary
        return f"{s.get('scenario', '?')} / {s.get('policy', '?')} / seed {s.get('seed', '?')}"

    def grid(self, col: str) -> np.ndarray:
        """A timeseries column as an (epochs, nodes) array (float columns as float64), read from
        the file on each call and not kept: the tables keep what they take of it
        (``_reduced``), so that a report never holds the whole timeseries."""
        E, n = self.n_epochs, self.n_nodes
        vals = self._ts_column(col)
        if vals.dtype.kind == "f":
            vals = vals.astype(np.float64)          # float32 on disk; sums in float64
        if self._dense():
            return vals.reshape(E, n)
        out = np.zeros((E, n), dtype=vals.dtype)
        ep, node = self._ts_index()
        out[ep, node] = vals
        return out

    def _ts_column(self, col: str) -> np.ndarray:
        """One column of timeseries.parquet (read alone)."""
        return self.column("timeseries", col).to_numpy()

    def column(self, table: str, col: str) -> pa.ChunkedArray:
        """One column of a table, read alone (one thread: the least memory; the file's footer
        is read once)."""
        key = ("file", table)
        if key not in self._cache:
            self._cache[key] = self._read(table, pq.ParquetFile)
        try:
            return self._read(table, lambda p: self._cache[key].read(columns=[col], use_threads=False)).column(col)
        except KeyError:
            raise UserError(f"{self.path / (table + '.parquet')}: column '{col}' is missing; "
                            "write the run folder again with 'otmarl run'") from None

    def _ts_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(epoch, node) of every timeseries row, kept only while the rows are not in the
        recorder's order (``_dense``)."""
        if "ts_index" not in self._cache:
            self._cache["ts_index"] = (self._ts_column("epoch"), self._ts_column("node"))
        return self._cache["ts_index"]

    def _dense(self) -> bool:
        """Whether the timeseries rows are exactly epoch-major, node-minor (as the recorder writes)."""
        if "dense" not in self._cache:
            E, n = self.n_epochs, self.n_nodes
            ep, node = self._ts_index()
            self._cache["dense"] = (len(ep) == E * n and np.array_equal(ep.reshape(E, n)[:, 0], np.arange(E))
                                    and np.array_equal(node.reshape(E, n), np.broadcast_to(np.arange(n), (E, n)))
                                    and np.all(ep.reshape(E, n) == ep.reshape(E, n)[:, :1]))
            if self._cache["dense"]:
                del self._cache["ts_index"]
        return self._cache["dense"]

    def epoch_of(self, t_s) -> np.ndarray:
        """The epoch holding each instant; -1 for NaN (the horizon's end is in the last epoch)."""
        t = np.asarray(t_s, dtype=float)
        k = np.minimum(t // self.epoch_s, self.n_epochs - 1)
        return np.where(np.isnan(t), -1, k).astype(np.int64)


def _float64(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its float32 columns (the narrow on-disk type) as float64."""
    narrow = [c for c in df.columns if df[c].dtype == np.float32]
    return df.astype({c: np.float64 for c in narrow}) if narrow else df


def _eq(col: pd.Series, value: str) -> np.ndarray:
    """``col == value`` as a boolean array; fast on categorical columns (compares codes)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = list(col.cat.categories)
        codes = col.cat.codes.to_numpy()
        return codes == cats.index(value) if value in cats else np.zeros(len(col), bool)
    return (col == value).to_numpy(bool)


def load_run(path: str | os.PathLike) -> Run:
    """Open a run folder written by ``otmarl run``; tables are read lazily."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"run folder '{p}' does not exist")
    if not p.is_dir():
        raise UserError(f"'{p}' is a file, not a run folder")
    missing = [f for f in REQUIRED_FILES if not (p / f).is_file()]
    if missing:
        raise UserError(f"'{p}' is not a run folder: missing {', '.join(missing)} "
                        "(make one with 'otmarl run SCENARIO --out DIR')")
    run = Run(p)
    for key in ("n_nodes", "n_epochs", "horizon_h"):
        if key not in run.summary:
            raise UserError(f"{p / 'summary.json'}: key '{key}' is missing; is this a run folder?")
    return run


def _as_run(run: Run | str | os.PathLike) -> Run:
    return run if isinstance(run, Run) else load_run(run)


# ------------------------------------------------------------------------------------ tables
def _cached(run: Run, name: str, make):
    if name not in run._cache:
        run._cache[name] = make(run)
    return run._cache[name]


def node_table(run: Run) -> pd.DataFrame:
    """One row per node: identity, service, up-time, SoC, energy and battery throughput."""
    return _cached(run, "node_table", _node_table)


def origin_counts(run: Run, nodes: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per node (in the order of ``nodes``), tasks originated and how they ended: from
    nodes.parquet, else counted in tasks.parquet, else NaN."""
    n = run.n_nodes
    if all(c in nodes for c in ORIGIN_COUNTS):
        return {c: nodes[c].to_numpy(np.int64) for c in ORIGIN_COUNTS}
    if not run.has("tasks"):
        return {c: np.full(n, np.nan) for c in ORIGIN_COUNTS}
    t = run.tasks
    origin = t["origin"].to_numpy(np.int64)
    by = lambda status: np.bincount(origin[_eq(t["status"], status)], minlength=n)  # noqa: E731
    return {"originated": np.bincount(origin, minlength=n), "completed_on_time": by("completed_on_time"),
            "completed_late": by("completed_late"), "dropped": by("dropped")}


def _reduced(run: Run) -> dict[str, np.ndarray]:
    """What the node and fleet tables take from the timeseries, each column read once and let go
    (at 100,000 nodes a column is 77 MB as float64): per node (``node_*``) and per epoch
    (``epoch_*``) sums, SoC statistics and the battery throughput's ``|bus|`` per node."""
    return _cached(run, "reduced", _reduce)


def _reduce(run: Run) -> dict[str, np.ndarray]:
    E, n = run.n_epochs, run.n_nodes
    out: dict[str, np.ndarray] = {}
    soc = run.grid("soc")
    out["node_final_soc"] = soc[-1] if E else np.full(n, np.nan)
    out["node_mean_soc"], out["node_min_soc"] = soc.mean(0), soc.min(0)
    pct = np.percentile(soc, [10, 50, 90], axis=1) if soc.size else np.zeros((3, E))
    out.update({"epoch_soc_min": soc.min(1), "epoch_soc_p10": pct[0], "epoch_soc_p50": pct[1],
                "epoch_soc_p90": pct[2], "epoch_soc_max": soc.max(1), "epoch_soc_mean": soc.mean(1)})
    del soc
    # the bus, (harvested - curtailed) - (idle + tasks + transmit), with at most three grids held
    net: dict[str, np.ndarray] = {}
    cons: np.ndarray | None = None
    for c in ENERGY_COLS:
        g = run.grid(c)
        out[f"node_{c}"], out[f"epoch_{c}"] = g.sum(0), g.sum(1)
        if c in ("harvested_wh", "curtailed_wh"):
            net[c] = g
            if len(net) == 2:
                net["bus"] = net.pop("harvested_wh") - net.pop("curtailed_wh")
        elif c in CONSUMED:
            cons = g if cons is None else np.add(cons, g, out=cons)
        del g
    bus = net["bus"]
    bus -= cons
    out["node_abs_bus_wh"] = np.abs(bus, out=bus).sum(0)
    del bus, net, cons
    out["epoch_stored_wh"] = run.grid("stored_wh").sum(1)
    out["epoch_queue_len"] = run.grid("queue_len").sum(1)
    up = run.grid("up")
    out["node_uptime"] = up.mean(0) if E else np.full(n, np.nan)
    out["node_down_epochs"], out["epoch_up"] = (~up).sum(0), up.sum(1)
    browned = run.grid("browned")
    out["node_browned_epochs"], out["epoch_browned"] = browned.sum(0), browned.sum(1)
    out["epoch_failed"] = run.grid("failed").sum(1)
    return out


def _node_table(run: Run) -> pd.DataFrame:
    nodes = run.nodes.sort_values("node")
    counts = origin_counts(run, nodes)
    originated, on_time, dropped = counts["originated"], counts["completed_on_time"], counts["dropped"]
    with np.errstate(invalid="ignore", divide="ignore"):
        service = np.where(originated > 0, on_time / originated, np.nan)
    hours = run.epoch_s / 3600.0
    r = _reduced(run)
    e = {c: r[f"node_{c}"] for c in ENERGY_COLS}
    throughput = r["node_abs_bus_wh"] + e["sent_wh"] + e["delivered_wh"]
    cap = nodes["capacity_wh"].to_numpy()
    return pd.DataFrame({
        "node": nodes["node"].to_numpy(), "name": nodes["name"].to_numpy(),
        "class": nodes["class"].to_numpy(), "x": nodes["x"].to_numpy(), "y": nodes["y"].to_numpy(),
        "capacity_wh": cap, "originated": originated, "completed_on_time": on_time,
        "dropped": dropped, "service_ratio": service,
        "uptime": r["node_uptime"],
        "brownout_h": r["node_browned_epochs"] * hours,
        "down_h": r["node_down_epochs"] * hours,
        "final_soc": r["node_final_soc"],
        "mean_soc": r["node_mean_soc"], "min_soc": r["node_min_soc"],
        "harvested_wh": e["harvested_wh"], "curtailed_wh": e["curtailed_wh"],
        "consumed_wh": sum(e[c] for c in CONSUMED), "sent_wh": e["sent_wh"],
        "delivered_wh": e["delivered_wh"], "throughput_wh": throughput,
        "equivalent_full_cycles": throughput / (2.0 * cap)})


def fleet_table(run: Run) -> pd.DataFrame:
    """One row per epoch: SoC percentile bands over nodes, fleet energy, queues, task events."""
    return _cached(run, "fleet_table", _fleet_table)


def _fleet_table(run: Run) -> pd.DataFrame:
    E = run.n_epochs
    r = _reduced(run)
    out = {"epoch": np.arange(E), "time_h": np.arange(E) * run.epoch_s / 3600.0}
    out.update({c: r[f"epoch_{c}"] for c in ("soc_min", "soc_p10", "soc_p50", "soc_p90", "soc_max",
                                             "soc_mean", "stored_wh")})
    for c in ENERGY_COLS:
        out[c] = r[f"epoch_{c}"]
    out["consumed_wh"] = sum(out[c] for c in CONSUMED)
    out["queue_len"] = r["epoch_queue_len"]
    out["nodes_up"] = r["epoch_up"]
    out["nodes_browned"] = r["epoch_browned"]
    out["nodes_failed"] = r["epoch_failed"]
    out.update(epoch_counts(run))
    f = run.flows
    tasks_f = f[f["kind"] == "task"]
    out["tasks_routed"] = np.bincount(tasks_f["epoch"].to_numpy(np.int64), minlength=E,
                                      weights=tasks_f["amount"].to_numpy(float))[:E]
    out["energy_transfers"] = np.bincount(f.loc[f["kind"] == "energy", "epoch"].to_numpy(np.int64),
                                          minlength=E)[:E]
    return pd.DataFrame(out)


EPOCH_COUNTS = ("generated", "completed_on_time", "completed_late") + tuple(
    f"dropped_{r}" for r in DROP_REASONS)


def epoch_counts(run: Run) -> dict[str, np.ndarray]:
    """Fleet task counts per epoch (``EPOCH_COUNTS``): from epochs.parquet, else counted in
    tasks.parquet (an event at the horizon's end counts in the last epoch), else NaN."""
    E = run.n_epochs
    if run.has("epochs"):
        ep = run.epochs.sort_values("epoch")
        return {c: ep[c].to_numpy(np.int64) if c in ep else np.zeros(E, np.int64) for c in EPOCH_COUNTS}
    if not run.has("tasks"):
        return {c: np.full(E, np.nan) for c in EPOCH_COUNTS}
    t = run.tasks
    end_k = run.epoch_of(t["end_s"].to_numpy())
    count = lambda k: np.bincount(k[k >= 0], minlength=E)[:E]  # noqa: E731
    out = {"generated": count(run.epoch_of(t["generated_s"].to_numpy())),
           "completed_on_time": count(end_k[_eq(t["status"], "completed_on_time")]),
           "completed_late": count(end_k[_eq(t["status"], "completed_late")])}
    for r in DROP_REASONS:
        out[f"dropped_{r}"] = count(end_k[_eq(t["drop_reason"], r)])
    return out


def class_fairness_table(run: Run) -> pd.DataFrame:
    """Fairness of each outcome over the whole fleet, within each class, and between class means.

    Columns: scope ('fleet' | 'class' | 'between_classes'), class, outcome, then FAIRNESS_FIELDS.
    """
    return _cached(run, "class_fairness_table", _class_fairness_table)


def _class_fairness_table(run: Run) -> pd.DataFrame:
    nt = node_table(run)
    rows = []
    for o in OUTCOMES:
        rows.append({"scope": "fleet", "class": "", "outcome": o, **fairness_summary(nt[o])})
        for cls, g in nt.groupby("class", sort=True):
            rows.append({"scope": "class", "class": cls, "outcome": o, **fairness_summary(g[o])})
        means = nt.groupby("class", sort=True)[o].mean()
        rows.append({"scope": "between_classes", "class": "", "outcome": o,
                     **fairness_summary(means.to_numpy())})
    return pd.DataFrame(rows, columns=["scope", "class", "outcome", *FAIRNESS_FIELDS])


# ----------------------------------------------------------------------------------- metrics
def metrics(run: Run | str | os.PathLike, baseline: Run | str | os.PathLike | None = None) -> dict:
    """Every metric of a run as a nested JSON-able dict (NaN becomes None)."""
    run = _as_run(run)
    tables = run.has("timeseries", "nodes")
    nodes, fleet = (node_table(run), fleet_table(run)) if tables else (None, None)
    s = run.summary
    out = {"run": {"path_name": run.path.name, "scenario": s.get("scenario"),
                   "policy": s.get("policy"), "seed": s.get("seed"), "n_nodes": run.n_nodes,
                   "n_epochs": run.n_epochs, "horizon_h": s.get("horizon_h"),
                   "epoch_s": run.epoch_s, "tables": tables_held(run), **made_from(run)},
           "energy": _energy(run, nodes, fleet), "service": _service(run),
           "batteries": _batteries(run, nodes, fleet),
           "fairness": _fairness(run) if tables else {"nodes": {}, "classes": {}, "between_classes": {}}}
    out["kpis"] = _kpis(out)
    if baseline is not None:
        base = metrics(baseline)
        out["baseline"] = {"run": base["run"], "kpis": base["kpis"],
                           "normalised": normalise_to_baseline(out["kpis"], base["kpis"])}
    return jsonable(out)


def made_from(run: Run) -> dict:
    """Which run a report was made from: its engine, and digests of what makes it that run (the
    resolved scenario, policy, seed and engine of metadata.json) and of its summary.json."""
    import hashlib
    import json
    meta = run.metadata
    ident = {k: meta.get(k) for k in ("scenario", "seed", "policy", "engine")}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()
    summary = hashlib.sha256((run.path / "summary.json").read_bytes()).hexdigest()
    return {"engine": meta.get("engine"), "identity_sha256": digest[:16] if meta else None,
            "summary_sha256": summary[:16]}


def _ratio(a: float, b: float) -> float | None:
    return float(a) / float(b) if b else None


def tables_held(run: Run) -> list[str]:
    """The tables the run folder holds, by name."""
    from otmarl.scenarios.schema import RUN_TABLES
    return [t for t in RUN_TABLES if run.has(t)]


LEDGER_KEYS = ("initial_stored_wh",) + ENERGY_COLS + ("final_stored_wh", "transport_loss_wh",
                                                      "ledger_error_wh")


def ledger(run: Run, fleet: pd.DataFrame | None) -> dict:
    """The energy ledger of the run: exact from summary.json; from the tables (float32 on disk)
    only for a summary without it."""
    exact = run.summary.get("energy") or {}
    if all(k in exact for k in LEDGER_KEYS) or fleet is None:
        return {k: exact.get(k) for k in LEDGER_KEYS}
    led = {"initial_stored_wh": float(run.nodes["initial_wh"].sum())}
    led.update({c: float(fleet[c].sum()) for c in ENERGY_COLS})
    led["final_stored_wh"] = float(fleet["stored_wh"].iloc[-1]) if len(fleet) else led["initial_stored_wh"]
    led["transport_loss_wh"] = led["sent_wh"] - led["delivered_wh"]
    led["ledger_error_wh"] = (led["initial_stored_wh"] + led["harvested_wh"]
                              - sum(led[c] for c in LEDGER_OUT) - led["sent_wh"]
                              + led["delivered_wh"] - led["final_stored_wh"])
    return led


def _energy(run: Run, nodes: pd.DataFrame | None, fleet: pd.DataFrame | None) -> dict:
    led = ledger(run, fleet)
    if any(led[c] is None for c in CONSUMED + ("curtailed_wh", "harvested_wh", "sent_wh")):
        return {"ledger": led, "consumed_wh": None, "wh_per_completed_task": None,
                "task_wh_per_completed_task": None, "curtailed_share": None,
                "transport_loss_share": None}
    t = run.summary["tasks"]
    done = t["completed_on_time"] + t["completed_late"]
    consumed = sum(led[c] for c in CONSUMED)
    return {"ledger": led, "consumed_wh": consumed,
            "wh_per_completed_task": _ratio(consumed, done),
            "task_wh_per_completed_task": _ratio(led["consumed_tasks_wh"], done),
            "curtailed_share": _ratio(led["curtailed_wh"], led["harvested_wh"]),
            "transport_loss_share": _ratio(led["transport_loss_wh"], led["sent_wh"])}


SUMMARY_TASK_KEYS = ("generated", "completed_on_time", "completed_late", "dropped",
                     "in_system_at_end", "offloaded")


def _service(run: Run) -> dict:
    """Task counts and latency: exact from summary.json when it has them (p90 and max, which it
    lacks, from tasks.parquet if present), else counted in tasks.parquet."""
    s = run.summary
    t, lat = s.get("tasks") or {}, s.get("latency_s") or {}
    if not (all(k in t for k in SUMMARY_TASK_KEYS) and lat):
        return _service_from_tasks(run)
    n, on_time, late = t["generated"], t["completed_on_time"], t["completed_late"]
    dropped = {r: int(t["dropped"].get(r, 0)) for r in DROP_REASONS}
    extra = _latency_tail(run) if run.has("tasks") else {}
    return {"generated": n, "completed_on_time": on_time, "completed_late": late,
            "on_time_ratio": _ratio(on_time, n), "completion_ratio": _ratio(on_time + late, n),
            "dropped": dropped, "dropped_total": sum(dropped.values()),
            "drop_ratio": _ratio(sum(dropped.values()), n),
            "in_system_at_end": t["in_system_at_end"], "offloaded": t["offloaded"],
            "latency_s": {"mean": lat.get("mean"), "p50": lat.get("p50"), "p90": extra.get("p90"),
                          "p95": lat.get("p95"), "p99": lat.get("p99"), "max": extra.get("max")}}


def _latency_tail(run: Run) -> dict:
    """p90 and max latency (s) of the completed tasks (``_latencies``)."""
    lat = _latencies(run)
    return {"p90": float(np.percentile(lat, 90)) if lat.size else None,
            "max": float(lat.max()) if lat.size else None}


def _latencies(run: Run) -> np.ndarray:
    """Latency (s, float64) of every completed task, from three columns of tasks.parquet read one
    at a time (not the task frame: at 15 million tasks it takes gigabytes)."""
    status = run.column("tasks", "status").combine_chunks()
    done_values = pa.array(["completed_on_time", "completed_late"])
    if pa.types.is_dictionary(status.type):
        done = np.isin(status.indices.to_numpy(zero_copy_only=False),
                       np.flatnonzero(pc.is_in(status.dictionary, value_set=done_values).to_numpy(zero_copy_only=False)))
    else:
        done = pc.is_in(status, value_set=done_values).to_numpy(zero_copy_only=False)
    del status
    lat = run.column("tasks", "end_s").to_numpy()[done].astype(np.float64)
    lat -= run.column("tasks", "generated_s").to_numpy()[done]
    return lat


def _service_from_tasks(run: Run) -> dict:
    t = run.tasks
    st = t["status"]
    n = len(t)
    on_time = int(np.count_nonzero(_eq(st, "completed_on_time")))
    late = int(np.count_nonzero(_eq(st, "completed_late")))
    dropped = {r: int(np.count_nonzero(_eq(t["drop_reason"], r))) for r in DROP_REASONS}
    lat = _latencies(run)
    qs = dict(zip(("p50", "p90", "p95", "p99"), np.percentile(lat, [50, 90, 95, 99]))) if lat.size else {}
    return {"generated": n, "completed_on_time": on_time, "completed_late": late,
            "on_time_ratio": _ratio(on_time, n), "completion_ratio": _ratio(on_time + late, n),
            "dropped": dropped, "dropped_total": sum(dropped.values()),
            "drop_ratio": _ratio(sum(dropped.values()), n),
            "in_system_at_end": int(sum(np.count_nonzero(_eq(st, x))
                                        for x in ("queued", "running", "in_transit"))),
            "offloaded": int(np.count_nonzero(t["offloads"].to_numpy() > 0)),
            "latency_s": {"mean": float(lat.mean()) if lat.size else None,
                          **{k: qs.get(k) for k in ("p50", "p90", "p95", "p99")},
                          "max": float(lat.max()) if lat.size else None}}


SUMMARY_NODE_KEYS = ("min_soc", "mean_soc", "brownout_node_hours", "down_node_hours")


def _batteries(run: Run, nodes: pd.DataFrame | None, fleet: pd.DataFrame | None) -> dict:
    """Battery metrics: SoC extremes and node-hours exact from summary.json when it has them,
    the rest from the tables (None without them)."""
    exact = {k: v for k, v in (run.summary.get("nodes") or {}).items() if k in SUMMARY_NODE_KEYS}
    if nodes is None or fleet is None:
        return {**{k: exact.get(k) for k in SUMMARY_NODE_KEYS}, "final_soc_mean": None,
                "nodes_ever_browned": None, "throughput_wh": None,
                "equivalent_full_cycles": {"mean": None, "max": None}, "soc_bands": None}
    r, some = _reduced(run), run.n_epochs * run.n_nodes > 0
    bands = {c[4:]: fleet[c].tolist() for c in ("soc_min", "soc_p10", "soc_p50", "soc_p90",
                                                 "soc_max", "soc_mean")}
    # (without the summary's: the mean over nodes of each node's mean over epochs)
    return {"min_soc": exact.get("min_soc", float(r["node_min_soc"].min()) if some else None),
            "mean_soc": exact.get("mean_soc", float(r["node_mean_soc"].mean()) if some else None),
            "final_soc_mean": float(nodes["final_soc"].mean()),
            "brownout_node_hours": exact.get("brownout_node_hours", float(nodes["brownout_h"].sum())),
            "down_node_hours": exact.get("down_node_hours", float(nodes["down_h"].sum())),
            "nodes_ever_browned": int((nodes["brownout_h"] > 0).sum()),
            "throughput_wh": float(nodes["throughput_wh"].sum()),
            "equivalent_full_cycles": {"mean": float(nodes["equivalent_full_cycles"].mean()),
                                       "max": float(nodes["equivalent_full_cycles"].max())},
            "soc_bands": {"time_h": fleet["time_h"].tolist(), **bands}}


def _fairness(run: Run) -> dict:
    tab = class_fairness_table(run)
    fields = list(FAIRNESS_FIELDS)
    pick = lambda df: {r.outcome: {f: getattr(r, f) for f in fields}  # noqa: E731
                       for r in df.itertuples(index=False)}
    classes = {cls: pick(g) for cls, g in tab[tab["scope"] == "class"].groupby("class", sort=True)}
    return {"nodes": pick(tab[tab["scope"] == "fleet"]), "classes": classes,
            "between_classes": pick(tab[tab["scope"] == "between_classes"])}


def _kpis(m: dict) -> dict:
    e, s, b = m["energy"], m["service"], m["batteries"]
    f = m["fairness"]["nodes"] or {o: {} for o in OUTCOMES}   # no tables: no fairness
    return {"energy_consumed_wh": e["consumed_wh"], "wh_per_completed_task": e["wh_per_completed_task"],
            "curtailed_share": e["curtailed_share"], "transport_loss_share": e["transport_loss_share"],
            "on_time_ratio": s["on_time_ratio"], "drop_ratio": s["drop_ratio"],
            "latency_p50_s": s["latency_s"]["p50"], "latency_p95_s": s["latency_s"]["p95"],
            "brownout_node_hours": b["brownout_node_hours"], "mean_soc": b["mean_soc"],
            "final_soc_mean": b["final_soc_mean"], "throughput_wh": b["throughput_wh"],
            "service_jain": f["service_ratio"].get("jain"), "service_gini": f["service_ratio"].get("gini"),
            "service_worst_decile_mean": f["service_ratio"].get("worst_decile_mean"),
            "uptime_jain": f["uptime"].get("jain"),
            "uptime_worst_decile_mean": f["uptime"].get("worst_decile_mean"),
            "final_soc_gini": f["final_soc"].get("gini"),
            "final_soc_equality_gap_w1": f["final_soc"].get("equality_gap_w1")}


def normalise_to_baseline(kpis: dict, base: dict) -> dict:
    """Each numeric KPI divided by the baseline's (nested dicts are followed).

    A KPI whose baseline is missing, zero or not a finite number gives None; keys missing from
    the baseline are left out.
    """
    out = {}
    for k, v in kpis.items():
        if k not in base:
            continue
        b = base[k]
        if isinstance(v, dict) and isinstance(b, dict):
            out[k] = normalise_to_baseline(v, b)
        elif _number(v) and _number(b) and b != 0:
            out[k] = float(v) / float(b)
        else:
            out[k] = None
    return out


def _number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) \
        and math.isfinite(float(x))
