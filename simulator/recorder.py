"""Recording a run: per-epoch arrays, the flows of every decision, the summary and the invariants.

The summary is an API (later tools read its keys) and holds nothing that changes between two runs
with the same seed. The invariants of the model are checked at the end of every run; a violation
raises ``InvariantError`` with the numbers.

The summary is computed from the exact (float64) arrays. Tables come exact (float64, int32) from
``finish``, and narrowed for disk with ``narrow=True`` (as ``otmarl run`` writes them): energy
and per-task quantities as float32 (7 significant digits), ids and counts as the narrowest integer
their bound allows (node ids by the node count, epochs by the epoch count), task times as float32
up to a horizon of ``FLOAT32_TIME_MAX_S`` (resolution under 4 ms at a day, 31 ms at a week) and
float64 beyond, names and reasons dictionary-encoded. The exact ledger stays in summary.json.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from otmarl.scenarios.errors import InvariantError
from otmarl.scenarios.schema import RUN_TABLES

from .world import (DONE_LATE, DONE_ON_TIME, DROP_REASONS, DROPPED, PENDING, RUNNING, STATUS_NAMES,
                    TRANSIT, WAITING, World)

LEDGER_OUT = ("curtailed_wh", "consumed_idle_wh", "consumed_tasks_wh", "consumed_tx_wh",
              "self_discharge_wh", "conversion_loss_wh")
# unserved_wh (idle demand of nodes that have not failed, less the idle energy drawn) is no
# ledger term: it is demand that went without energy
PER_EPOCH = ("harvested_wh",) + LEDGER_OUT + ("unserved_wh", "sent_wh", "delivered_wh", "stored_wh")
#: Task times are written as float32 up to this horizon (its spacing there: 2**-24 of it).
FLOAT32_TIME_MAX_S = 7 * 86400.0


def int_for(bound: int) -> type[np.signedinteger]:
    """The narrowest signed integer type holding every value in [-bound, bound]: a column's width
    follows from the scenario (node count, epochs, tasks), never from one seed's data."""
    for t in (np.int8, np.int16, np.int32):
        if bound <= np.iinfo(t).max:
            return t
    return np.int64


def categorical(codes: np.ndarray, names: tuple[str, ...]) -> pd.Categorical:
    """Codes into ``names`` as a categorical column (Parquet writes it dictionary-encoded)."""
    return pd.Categorical.from_codes(np.asarray(codes), categories=list(names))


@dataclass
class RunResult:
    """Everything a run produced, before it is written to a folder."""

    summary: dict
    timeseries: pd.DataFrame | None
    tasks: pd.DataFrame | None
    flows: pd.DataFrame | None
    nodes: pd.DataFrame | None
    links: pd.DataFrame | None
    epochs: pd.DataFrame | None = None
    link_events: pd.DataFrame | None = None
    extra: dict = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables this result holds, by name, in ``RUN_TABLES`` order."""
        return {t: getattr(self, t) for t in RUN_TABLES if getattr(self, t) is not None}


class Recorder:
    """Per-epoch series and flags of one run; with ``record_flows`` also the flow table.

    With ``narrow`` (a run that will only write narrowed tables) the per-epoch series but the
    stored energy are kept as float32, what the timeseries table holds, and their float64 sums
    over epochs (the ledger and the summary) accumulate as the run goes: at 100,000 nodes that
    halves the recorder's 0.9 GB. The sums are those of the float64 series, epoch by epoch."""

    def __init__(self, world: World, record_flows: bool = True, narrow: bool = False):
        E, n = world.n_epochs, world.n
        self.w = world
        self.narrow_series = narrow
        self.series = {f: np.zeros((E, n), np.float32 if narrow and f != "stored_wh" else float)
                       for f in PER_EPOCH}
        self.sums = {f: np.zeros(n) for f in PER_EPOCH if f != "stored_wh"}
        self.flags = {f: np.zeros((E, n), bool) for f in ("up", "failed", "browned")}
        self.queue_len = np.zeros((E, n), np.int32)
        self.flows: list[pd.DataFrame] = []
        self.record_flows = record_flows
        self.initial = world.stored.copy()
        self.narrow = False
        self.link_was_up = np.ones(len(world.links), bool)
        self.link_changes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def epoch(self, k: int, energy: dict, flags: dict, flows: dict) -> None:
        w = self.w
        for f, v in (*energy.items(), ("sent_wh", w.sent), ("delivered_wh", w.received)):
            self.series[f][k] = v
            if self.narrow_series:
                self.sums[f] += v
        self.series["stored_wh"][k] = w.stored
        for f, v in flags.items():
            self.flags[f][k] = v
        self.queue_len[k] = np.bincount(w.node[w.with_status(WAITING)], minlength=w.n)
        changed = np.flatnonzero(w.link_up != self.link_was_up)
        if len(changed):
            self.link_changes.append((np.full(len(changed), k), changed, w.link_up[changed].copy()))
            self.link_was_up = w.link_up.copy()
        if self.record_flows:
            self._flows(k, flows)

    def _int(self, bound: int) -> type[np.signedinteger]:
        """Integer type of a column whose values lie in [-bound, bound]."""
        return int_for(bound) if self.narrow else int_for(max(bound, np.iinfo(np.int32).max))

    def _float(self, x: np.ndarray, time: bool = False) -> np.ndarray:
        """``x`` as float32 when narrowing (a time only up to ``FLOAT32_TIME_MAX_S``)."""
        short = self.w.n_epochs * self.w.dt <= FLOAT32_TIME_MAX_S
        return np.asarray(x, np.float32 if self.narrow and (short or not time) else np.float64)

    def brownout_node_hours(self, epochs: int) -> float:
        """Node-hours browned out over the first ``epochs`` epochs."""
        return float(self.flags["browned"][:epochs].sum() * self.w.dt / 3600.0)

    def _flows(self, k: int, flows: dict) -> None:
        e, t, audit = flows["energy"], flows["tasks"], flows.get("audit") or {}
        parts = []
        for kind, src, dst, amount, delivered in (
                ("energy", e["src"], e["dst"], e["wh"], e["delivered"]),
                ("task", t["src"], t["dst"], t["count"].astype(float), np.full(len(t["src"]), np.nan))):
            if not len(src):
                continue
            df = pd.DataFrame({"epoch": np.int32(k), "time_s": k * self.w.dt, "kind": kind,
                               "src": np.asarray(src, np.int32), "dst": np.asarray(dst, np.int32),
                               "amount": amount, "delivered_wh": delivered})
            for col, vals in (audit.get(kind) or {}).items():
                df[col] = vals
            for col, val in (audit.get("epoch") or {}).items():
                df[col] = val
            parts.append(df)
        for row in audit.get("rows") or ():
            if len(row["src"]):
                parts.append(pd.DataFrame({"epoch": np.int32(k), "time_s": k * self.w.dt, **self._lean(row)}))
        # kept apart, not as one frame per epoch: a frame of both would give every offer and
        # request row the transfers' audit columns (NaN), ~120 bytes a row instead of ~40 (at
        # 100,000 nodes about 200,000 such rows an epoch)
        self.flows.extend(parts)

    def _lean(self, row: dict) -> dict:
        """An offer and request block of the flow table in the types its table will have: node
        ids as int32, and amounts and prices as float32 for a recorder made ``narrow``."""
        out = {}
        for c, v in row.items():
            if c in ("src", "dst"):
                v = np.asarray(v, np.int32)
            elif self.narrow_series and isinstance(v, np.ndarray) and v.dtype == np.float64:
                v = v.astype(np.float32)
            out[c] = v
        return out

    # --------------------------------------------------------------------------------- end
    def finish(self, meta: dict, tables: Collection[str] = RUN_TABLES, narrow: bool = False) -> RunResult:
        """Check the invariants; the summary and the ``tables`` named (the others are None),
        narrowed for disk if ``narrow`` (see the module docstring)."""
        summary = self.checked_summary(meta)
        return RunResult(summary=summary, **{t: self.table(t, narrow) if t in tables else None
                                             for t in RUN_TABLES})

    def checked_summary(self, meta: dict) -> dict:
        """Check the invariants, then the summary."""
        self.check_invariants()
        return self.summary(meta)

    def table(self, name: str, narrow: bool = False, release: bool = False) -> pd.DataFrame:
        """One table of ``RUN_TABLES``, exact or narrowed (a recorder made ``narrow`` gives
        narrowed tables only). A caller that writes tables one at a time and drops each keeps
        one in memory, not all (at 100,000 nodes: 0.7 GB, not 1.6 GB). ``release``: the caller
        is done with the recorder but for the tables still to make; making the timeseries then
        lets go of the per-epoch series it alone reads (they go with the table, 0.5 GB at
        100,000 nodes, before the task table is made)."""
        if self.narrow_series and not narrow:
            raise ValueError("this recorder keeps float32 series (narrow=True): exact tables are gone")
        self.narrow = narrow
        makers = {"timeseries": self.timeseries, "tasks": self.task_table, "flows": self.flow_table,
                  "nodes": self.node_table, "links": self.link_table, "epochs": self.epoch_table,
                  "link_events": self.link_event_table}
        df = makers[name]()
        if release and name == "timeseries":
            self.series, self.flags, self.queue_len = {}, {}, np.zeros((0, self.w.n), np.int32)
        return df

    def totals(self) -> dict:
        s = dict(self.sums) if self.narrow_series else {f: self.series[f].sum(0) for f in self.sums}
        s["initial_stored_wh"] = self.initial
        s["final_stored_wh"] = self.w.stored.copy()
        s["ledger_error_wh"] = (self.initial + s["harvested_wh"] - sum(s[f] for f in LEDGER_OUT)
                                - s["sent_wh"] + s["delivered_wh"] - s["final_stored_wh"])
        s["transport_loss_wh"] = s["sent_wh"] - s["delivered_wh"]
        return s

    def check_invariants(self) -> None:
        w, tot = self.w, self.totals()
        scale = self.initial + tot["harvested_wh"] + tot["delivered_wh"] + tot["sent_wh"] + w.p.capacity_wh
        bad = np.flatnonzero(np.abs(tot["ledger_error_wh"]) > 1e-9 * scale)
        if len(bad):
            i = bad[0]
            raise InvariantError(f"energy ledger of node {w.names[i]} does not close: error "
                                 f"{tot['ledger_error_wh'][i]:.3e} Wh on a scale of {scale[i]:.6g} Wh")
        st, cap = self.series["stored_wh"], w.p.capacity_wh
        tol = 1e-9 * cap
        low, high = np.argwhere(st < -tol), np.argwhere(st > cap + tol)
        for (k, i), what in [(x, "below 0") for x in low[:1]] + [(x, "above capacity") for x in high[:1]]:
            raise InvariantError(f"stored energy of node {w.names[i]} is {what} at epoch {k}: "
                                 f"{st[k, i]:.9g} Wh (capacity {cap[i]:.9g} Wh)")
        counts = np.bincount(w.status, minlength=len(STATUS_NAMES))
        if counts[PENDING]:
            raise InvariantError(f"{counts[PENDING]} tasks were generated but never reached a queue")
        if counts.sum() != len(w.tasks):
            raise InvariantError("task accounting: statuses do not add up to generated tasks")
        dropped = w.status == DROPPED
        if np.any(w.reason[dropped] == 0) or np.any(w.reason[~dropped] != 0):
            raise InvariantError("task accounting: drop reasons and dropped tasks disagree")
        done = np.isin(w.status, (DONE_ON_TIME, DONE_LATE))
        if np.any(w.start_s[done] < w.tasks.gen_s[done]) or np.any(w.end_s[done] < w.start_s[done]):
            raise InvariantError("task accounting: a completed task started before it was generated "
                                 "or finished before it started")

    def summary(self, meta: dict) -> dict:
        w, tot = self.w, self.totals()
        energy = {k: float(np.sum(tot[k])) for k in (
            "initial_stored_wh", "final_stored_wh", "harvested_wh", "curtailed_wh", "consumed_idle_wh",
            "consumed_tasks_wh", "consumed_tx_wh", "self_discharge_wh", "conversion_loss_wh",
            "sent_wh", "unserved_wh")}
        energy["delivered_wh"] = float(np.sum(tot["delivered_wh"]))
        energy["transport_loss_wh"] = float(np.sum(tot["transport_loss_wh"]))
        energy["ledger_error_wh"] = float(np.sum(tot["ledger_error_wh"]))
        counts = np.bincount(w.status, minlength=len(STATUS_NAMES))
        reasons = np.bincount(w.reason, minlength=len(DROP_REASONS))
        done = np.isin(w.status, (DONE_ON_TIME, DONE_LATE))
        lat = w.end_s[done] - w.tasks.gen_s[done]
        p50, p95, p99 = np.percentile(lat, [50, 95, 99]).tolist() if len(lat) else (None,) * 3
        soc = self.series["stored_wh"] / w.p.capacity_wh
        return {
            **meta,
            "n_nodes": w.n, "n_epochs": w.n_epochs, "horizon_h": w.sc.horizon_h,
            "energy": energy,
            "tasks": {
                "generated": int(len(w.tasks)),
                "completed_on_time": int(counts[DONE_ON_TIME]),
                "completed_late": int(counts[DONE_LATE]),
                "dropped": {DROP_REASONS[r]: int(reasons[r]) for r in range(1, len(DROP_REASONS))},
                "in_system_at_end": int(counts[WAITING] + counts[RUNNING] + counts[TRANSIT]),
                "offloaded": int(np.count_nonzero(w.offloads)),
            },
            "latency_s": {"mean": float(lat.mean()) if len(lat) else None,
                          "p50": p50, "p95": p95, "p99": p99},
            "nodes": {
                "brownout_node_hours": self.brownout_node_hours(w.n_epochs),
                "down_node_hours": float((~self.flags["up"]).sum() * w.dt / 3600.0),
                "min_soc": float(soc.min()) if soc.size else None,
                "mean_soc": float(soc.mean()) if soc.size else None,
            },
        }

    # ------------------------------------------------------------------------------ tables
    def timeseries(self) -> pd.DataFrame:
        w = self.w
        E, n = w.n_epochs, w.n
        cols = {"epoch": np.repeat(np.arange(E, dtype=self._int(E)), n),
                "time_s": np.repeat(np.arange(E) * w.dt, n),
                "node": np.tile(np.arange(n, dtype=self._int(n)), E)}
        cols["stored_wh"] = self._float(self.series["stored_wh"].ravel())
        cols["soc"] = self._float((self.series["stored_wh"] / w.p.capacity_wh).ravel())
        for f in PER_EPOCH[:-1]:
            cols[f] = self._float(self.series[f].ravel())
        for f, v in self.flags.items():
            cols[f] = v.ravel()
        cols["queue_len"] = self.queue_len.ravel()
        return pd.DataFrame(cols, copy=False)     # not copied into blocks (2 GB at 100,000 nodes)

    def epoch_table(self) -> pd.DataFrame:
        """One row per epoch: tasks generated, completed (on time, late) and dropped by reason in
        it, over the fleet (an event at the horizon's end counts in the last epoch). The per-epoch
        charts need only this, not the task table."""
        w, t = self.w, self.w.tasks
        E = w.n_epochs
        epoch_of = lambda s: np.minimum(s[~np.isnan(s)] // w.dt, E - 1).astype(np.int64)  # noqa: E731
        count = lambda s: np.bincount(epoch_of(s), minlength=E)[:E].astype(np.int32)  # noqa: E731
        cols = {"epoch": np.arange(E, dtype=self._int(E)), "time_s": np.arange(E) * w.dt,
                "generated": count(t.gen_s)}
        for name, status in (("completed_on_time", DONE_ON_TIME), ("completed_late", DONE_LATE)):
            cols[name] = count(w.end_s[w.status == status])
        for r in range(1, len(DROP_REASONS)):
            cols[f"dropped_{DROP_REASONS[r]}"] = count(w.end_s[w.reason == r])
        return pd.DataFrame(cols)

    def origin_counts(self) -> dict[str, np.ndarray]:
        """Per node, tasks it originated and how they ended (wherever they ran)."""
        w, n = self.w, self.w.n
        origin = self.w.tasks.origin
        by = lambda mask: np.bincount(origin[mask], minlength=n).astype(np.int32)  # noqa: E731
        return {"originated": np.bincount(origin, minlength=n).astype(np.int32),
                "completed_on_time": by(w.status == DONE_ON_TIME),
                "completed_late": by(w.status == DONE_LATE), "dropped": by(w.status == DROPPED)}

    def task_table(self) -> pd.DataFrame:
        w, t = self.w, self.w.tasks
        node_t = self._int(w.n)
        times = {"generated_s": t.gen_s, "deadline_s": t.deadline_s}
        later = {"arrived_s": w.arrive_s, "start_s": w.start_s, "finish_s": w.finish_s,
                 "end_s": w.end_s}
        return pd.DataFrame({
            "task": np.arange(len(t), dtype=self._int(len(t))), "origin": t.origin.astype(node_t),
            "node": w.node.astype(node_t), **{k: self._float(v, time=True) for k, v in times.items()},
            "work_s": self._float(t.work_s), "data_kb": self._float(t.data_kb),
            "priority": self._float(t.priority), "offloads": w.offloads,
            **{k: self._float(v, time=True) for k, v in later.items()},
            "status": categorical(w.status, STATUS_NAMES),
            "drop_reason": categorical(w.reason, DROP_REASONS)}, copy=False)

    def flow_table(self) -> pd.DataFrame:
        """Every flow row, narrowed: node ids and epochs by their bound, floats (but the time)
        as float32, text columns (kind, solver, status) dictionary-encoded."""
        if self.flows:
            df = pd.concat(self.flows, ignore_index=True)
        else:
            df = pd.DataFrame({"epoch": np.zeros(0, np.int32), "time_s": np.zeros(0), "kind": [],
                               "src": np.zeros(0, np.int32), "dst": np.zeros(0, np.int32),
                               "amount": np.zeros(0), "delivered_wh": np.zeros(0)})
        ints = {"epoch": self._int(self.w.n_epochs), "src": self._int(self.w.n), "dst": self._int(self.w.n)}
        out = {}
        for c in df.columns:
            v = df[c]
            if c in ints:
                out[c] = v.to_numpy().astype(ints[c])
            elif c == "time_s":
                out[c] = v.to_numpy(np.float64)
            elif not (pd.api.types.is_numeric_dtype(v) or pd.api.types.is_bool_dtype(v)):
                out[c] = pd.Categorical(v)                  # text: kind, solver, status
            elif v.dtype == np.float64:
                out[c] = self._float(v.to_numpy())
            else:
                out[c] = v.to_numpy()
        return pd.DataFrame(out)

    def node_table(self) -> pd.DataFrame:
        w, p = self.w, self.w.p
        classes = tuple(w.sc.nodes)
        return pd.DataFrame({
            "node": np.arange(w.n, dtype=self._int(w.n)), "name": w.names,
            "class": categorical(p.class_idx, classes),
            "x": w.positions[:, 0], "y": w.positions[:, 1], "capacity_wh": p.capacity_wh,
            "initial_wh": self.initial, "min_wh": p.min_wh, "resume_wh": p.resume_wh,
            "idle_power_w": p.idle_w, "active_power_w": p.active_w, "speed": p.speed,
            "servers": p.servers.astype(np.int32), **self.origin_counts()})

    def link_event_table(self) -> pd.DataFrame:
        """Every change of a link's up/down state (by a fault event or a random fault), at the
        epoch from which it holds; every link is up before its first row. ``link`` is the row of
        links.parquet. With timeseries' ``failed`` flags this gives the network of every epoch."""
        ch = self.link_changes

        def column(i: int, dtype) -> np.ndarray:
            return np.concatenate([c[i] for c in ch]).astype(dtype) if ch else np.zeros(0, dtype)
        return pd.DataFrame({"epoch": column(0, self._int(self.w.n_epochs)),
                             "link": column(1, self._int(max(len(self.w.links), 1))),
                             "up": column(2, bool)})

    def link_table(self) -> pd.DataFrame:
        L, node_t = self.w.links, self._int(self.w.n)
        return pd.DataFrame({"u": L.u.astype(node_t), "v": L.v.astype(node_t),
                             "latency_s": L.latency_s, "bandwidth_kbps": L.bandwidth_kbps,
                             "tx_energy_wh_per_kb": L.tx_energy_wh_per_kb,
                             "transfer_efficiency": L.transfer_efficiency,
                             "power_limit_w": L.power_limit_w})
