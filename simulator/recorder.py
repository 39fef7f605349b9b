"""Recording a run: per-epoch arrays, the flows of every decision, the summary and the invariants.

The summary is an API (later tools read its keys) and holds nothing that changes between two runs
with the same seed. The invariants of the model are checked at the end of every run; a violation
raises ``InvariantError`` with the numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from otmarl.scenarios.errors import InvariantError

from .world import (DONE_LATE, DONE_ON_TIME, DROP_REASONS, DROPPED, PENDING, RUNNING, STATUS_NAMES,
                    TRANSIT, WAITING, World)

LEDGER_OUT = ("curtailed_wh", "consumed_idle_wh", "consumed_tasks_wh", "consumed_tx_wh",
              "self_discharge_wh", "conversion_loss_wh")
# unserved_wh (idle demand of nodes that have not failed, less the idle energy drawn) is no
# ledger term: it is demand that went without energy
PER_EPOCH = ("harvested_wh",) + LEDGER_OUT + ("unserved_wh", "sent_wh", "delivered_wh", "stored_wh")


@dataclass
class RunResult:
    """Everything a run produced, before it is written to a folder."""

    summary: dict
    timeseries: pd.DataFrame
    tasks: pd.DataFrame
    flows: pd.DataFrame
    nodes: pd.DataFrame
    links: pd.DataFrame
    extra: dict = field(default_factory=dict)


class Recorder:
    """Per-epoch series and flags of one run; with ``record_flows`` also the flow table."""

    def __init__(self, world: World, record_flows: bool = True):
        E, n = world.n_epochs, world.n
        self.w = world
        self.series = {f: np.zeros((E, n)) for f in PER_EPOCH}
        self.flags = {f: np.zeros((E, n), bool) for f in ("up", "failed", "browned")}
        self.queue_len = np.zeros((E, n), np.int32)
        self.flows: list[pd.DataFrame] = []
        self.record_flows = record_flows
        self.initial = world.stored.copy()

    def epoch(self, k: int, energy: dict, flags: dict, flows: dict) -> None:
        w = self.w
        for f, v in energy.items():
            self.series[f][k] = v
        self.series["sent_wh"][k] = w.sent
        self.series["delivered_wh"][k] = w.received
        self.series["stored_wh"][k] = w.stored
        for f, v in flags.items():
            self.flags[f][k] = v
        self.queue_len[k] = np.bincount(w.node[w.with_status(WAITING)], minlength=w.n)
        if self.record_flows:
            self._flows(k, flows)

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
                parts.append(pd.DataFrame({"epoch": np.int32(k), "time_s": k * self.w.dt, **row}))
        if parts:
            self.flows.append(pd.concat(parts, ignore_index=True))

    # --------------------------------------------------------------------------------- end
    def finish(self, meta: dict) -> RunResult:
        self.check_invariants()
        return RunResult(summary=self.summary(meta), timeseries=self.timeseries(),
                         tasks=self.task_table(), flows=self.flow_table(),
                         nodes=self.node_table(), links=self.link_table())

    def totals(self) -> dict:
        s = {f: self.series[f].sum(0) for f in PER_EPOCH if f != "stored_wh"}
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
        pct = (lambda q: float(np.percentile(lat, q))) if len(lat) else (lambda q: None)
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
                          "p50": pct(50), "p95": pct(95), "p99": pct(99)},
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
        cols = {"epoch": np.repeat(np.arange(E, dtype=np.int32), n),
                "time_s": np.repeat(np.arange(E) * w.dt, n),
                "node": np.tile(np.arange(n, dtype=np.int32), E)}
        cols["stored_wh"] = self.series["stored_wh"].ravel()
        cols["soc"] = (self.series["stored_wh"] / w.p.capacity_wh).ravel()
        for f in PER_EPOCH[:-1]:
            cols[f] = self.series[f].ravel()
        for f, v in self.flags.items():
            cols[f] = v.ravel()
        cols["queue_len"] = self.queue_len.ravel()
        return pd.DataFrame(cols)

    def task_table(self) -> pd.DataFrame:
        w, t = self.w, self.w.tasks
        status = np.asarray(STATUS_NAMES, dtype=object)[w.status]
        return pd.DataFrame({
            "task": np.arange(len(t), dtype=np.int64), "origin": t.origin.astype(np.int32),
            "node": w.node.astype(np.int32), "generated_s": t.gen_s, "deadline_s": t.deadline_s,
            "work_s": t.work_s, "data_kb": t.data_kb, "priority": t.priority,
            "offloads": w.offloads, "arrived_s": w.arrive_s, "start_s": w.start_s,
            "finish_s": w.finish_s, "end_s": w.end_s,
            "status": pd.Categorical(status, categories=STATUS_NAMES),
            "drop_reason": pd.Categorical(np.asarray(DROP_REASONS, dtype=object)[w.reason],
                                          categories=DROP_REASONS)})

    def flow_table(self) -> pd.DataFrame:
        if self.flows:
            return pd.concat(self.flows, ignore_index=True)
        return pd.DataFrame({"epoch": np.zeros(0, np.int32), "time_s": np.zeros(0), "kind": [],
                             "src": np.zeros(0, np.int32), "dst": np.zeros(0, np.int32),
                             "amount": np.zeros(0), "delivered_wh": np.zeros(0)})

    def node_table(self) -> pd.DataFrame:
        w, p = self.w, self.w.p
        classes = np.asarray(list(w.sc.nodes), dtype=object)
        return pd.DataFrame({
            "node": np.arange(w.n, dtype=np.int32), "name": w.names, "class": classes[p.class_idx],
            "x": w.positions[:, 0], "y": w.positions[:, 1], "capacity_wh": p.capacity_wh,
            "initial_wh": self.initial, "min_wh": p.min_wh, "resume_wh": p.resume_wh,
            "idle_power_w": p.idle_w, "active_power_w": p.active_w, "speed": p.speed,
            "servers": p.servers.astype(np.int32)})

    def link_table(self) -> pd.DataFrame:
        L = self.w.links
        return pd.DataFrame({"u": L.u.astype(np.int32), "v": L.v.astype(np.int32),
                             "latency_s": L.latency_s, "bandwidth_kbps": L.bandwidth_kbps,
                             "tx_energy_wh_per_kb": L.tx_energy_wh_per_kb,
                             "transfer_efficiency": L.transfer_efficiency,
                             "power_limit_w": L.power_limit_w})
