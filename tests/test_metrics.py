"""Metrics and fairness: pure functions on hand-computed inputs, a hand-made run folder, and a
real tiny simulation checked against its own summary.json."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wasserstein_distance

from otmarl.analysis import (equality_gap_w1, gini, jain, load_run, lorenz, metrics,
                             min_max_ratio, normalise_to_baseline, worst_decile_mean)
from otmarl.analysis.stats import fairness_summary
from otmarl.analysis.metrics import class_fairness_table, fleet_table, node_table
from otmarl.scenarios.errors import UserError


# ------------------------------------------------------------------- fairness, by hand
def test_jain_by_hand():
    assert jain([1, 1, 1, 1]) == 1.0
    assert jain([1, 0, 0, 0]) == 0.25
    assert jain([1, 2, 3, 4]) == pytest.approx(100 / (4 * 30))   # (sum)^2 / (n sum of squares)
    assert jain([0, 0, 0]) == 1.0                                 # all zero: equal


def test_gini_by_hand():
    assert gini([5, 5, 5, 5]) == 0.0
    assert gini([0, 0, 0, 1]) == pytest.approx(0.75)              # (n - 1) / n, population form
    # sum over ordered pairs of |xi - xj| = 20; 20 / (2 * 4^2 * 2.5) = 0.25
    assert gini([1, 2, 3, 4]) == pytest.approx(0.25)
    assert gini([4, 1, 3, 2]) == pytest.approx(0.25)              # order does not matter


def test_gini_agrees_with_pairwise_definition_and_lorenz_area():
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 50):
        x = rng.exponential(size=n)
        pairwise = np.abs(x[:, None] - x[None, :]).sum() / (2 * n * n * x.mean())
        p, L = lorenz(x)
        area = np.sum(np.diff(p) * (L[1:] + L[:-1]))              # 2 x trapezoid area
        np.testing.assert_allclose(gini(x), pairwise, rtol=1e-12)
        np.testing.assert_allclose(gini(x), 1 - area, rtol=1e-12, atol=1e-15)


def test_lorenz_points_by_hand():
    p, L = lorenz([3, 1, 4, 2])
    np.testing.assert_allclose(p, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(L, [0, 0.1, 0.3, 0.6, 1])
    p, L = lorenz([0, 0])                                         # all zero: equality line
    np.testing.assert_allclose(L, p)


def test_equality_gap_w1_by_hand_and_against_scipy():
    # mean 0.25; three nodes 0.25 below it and one 0.75 above: (3 * 0.25 + 0.75) / 4
    assert equality_gap_w1([0, 0, 0, 1]) == pytest.approx(0.375)
    assert equality_gap_w1([2, 2, 2]) == 0.0
    x = np.random.default_rng(1).uniform(size=101)
    np.testing.assert_allclose(equality_gap_w1(x), wasserstein_distance(x, [x.mean()]), rtol=1e-12)


def test_worst_decile_and_min_max_by_hand():
    assert worst_decile_mean(np.arange(20, 0, -1)) == 1.5          # ceil(20/10) = 2: mean(1, 2)
    assert worst_decile_mean([5, 3, 9, 7, 4]) == 3.0                # ceil(5/10) = 1: the minimum
    assert worst_decile_mean(np.arange(1, 12)) == 1.5               # ceil(11/10) = 2
    assert min_max_ratio([2, 4, 8]) == 0.25
    assert min_max_ratio([0, 0]) == 1.0
    assert min_max_ratio([0, 3]) == 0.0


def test_nan_is_ignored_negative_rejected_empty_is_nan():
    assert jain([1, np.nan, 1]) == 1.0
    assert fairness_summary([np.nan, 0.5, 1.0])["n"] == 2
    with pytest.raises(ValueError, match=">= 0"):
        gini([1, -1])
    assert math.isnan(jain([np.nan]))
    assert math.isnan(worst_decile_mean([]))


def test_normalise_to_baseline():
    kpis = {"a": 2.0, "b": {"c": 3}, "d": 1.0, "e": None, "only_here": 5}
    base = {"a": 4.0, "b": {"c": 1.5}, "d": 0.0, "e": 1.0}
    assert normalise_to_baseline(kpis, base) == {"a": 0.5, "b": {"c": 2.0}, "d": None, "e": None}


# ------------------------------------------------------------ a hand-made run folder
def write_hand_run(path):
    """2 nodes, 2 epochs of one hour; every number below is checked by hand in the test."""
    path.mkdir()
    ts = pd.DataFrame({
        "epoch": [0, 0, 1, 1], "time_s": [0.0, 0.0, 3600.0, 3600.0], "node": [0, 1, 0, 1],
        "stored_wh": [6.0, 5.0, 1.0, 5.0], "soc": [0.6, 0.5, 0.1, 0.5],
        "harvested_wh": [10.0, 0.0, 0.0, 0.0], "curtailed_wh": [2.0, 0.0, 0.0, 0.0],
        "consumed_idle_wh": [3.0, 0.0, 3.0, 0.0], "consumed_tasks_wh": [1.0, 0.0, 1.0, 0.0],
        "consumed_tx_wh": 0.0, "self_discharge_wh": 0.0, "conversion_loss_wh": 0.0, "unserved_wh": 0.0,
        "sent_wh": [0.0, 0.0, 1.0, 0.0], "delivered_wh": [0.0, 0.0, 0.0, 0.0],
        "up": [True, True, True, False], "failed": False, "browned": [False, False, False, True],
        "queue_len": [2, 0, 1, 0]})
    ts.to_parquet(path / "timeseries.parquet")
    status = ["completed_on_time"] * 3 + ["dropped", "completed_on_time", "completed_late"]
    pd.DataFrame({
        "task": range(6), "origin": [0, 0, 0, 0, 1, 1], "node": [0, 0, 1, 0, 1, 1],
        "generated_s": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        "end_s": [110.0, 220.0, 430.0, 4000.0, 350.0, 3700.0],
        "status": pd.Categorical(status), "drop_reason": pd.Categorical(["", "", "", "expired", "", ""]),
        "offloads": [0, 0, 1, 0, 0, 0]}).to_parquet(path / "tasks.parquet")
    pd.DataFrame({"node": [0, 1], "name": ["a", "b"], "class": ["sun", "shade"], "x": [0.0, 1.0],
                  "y": [0.0, 1.0], "capacity_wh": [10.0, 10.0], "initial_wh": [2.0, 5.0]}
                 ).to_parquet(path / "nodes.parquet")
    pd.DataFrame({"epoch": [1], "time_s": [3600.0], "kind": ["energy"], "src": [0], "dst": [1],
                  "amount": [1.0], "delivered_wh": [0.0]}).to_parquet(path / "flows.parquet")
    (path / "summary.json").write_text(json.dumps({
        "scenario": "hand", "policy": "none", "seed": 0, "n_nodes": 2, "n_epochs": 2, "horizon_h": 2.0,
        "tasks": {"completed_on_time": 4, "completed_late": 1}}))
    return path


def test_metrics_of_a_hand_made_run(tmp_path):
    run = load_run(write_hand_run(tmp_path / "hand"))
    nt = node_table(run)
    np.testing.assert_allclose(nt["service_ratio"], [0.75, 0.5])          # 3/4 and 1/2 on time
    np.testing.assert_allclose(nt["uptime"], [1.0, 0.5])
    np.testing.assert_allclose(nt["brownout_h"], [0.0, 1.0])
    np.testing.assert_allclose(nt["final_soc"], [0.1, 0.5])
    # bus net: epoch 0: 10 - 2 - 3 - 1 = +4, epoch 1: -4; plus 1 Wh sent: 4 + 4 + 1
    np.testing.assert_allclose(nt["throughput_wh"], [9.0, 0.0])
    np.testing.assert_allclose(nt["equivalent_full_cycles"], [0.45, 0.0])
    m = metrics(run)
    led = m["energy"]["ledger"]
    assert led["initial_stored_wh"] == 7.0 and led["final_stored_wh"] == 6.0
    assert led["ledger_error_wh"] == pytest.approx(0.0)   # 7 + 10 - 2 - 6 - 2 - 1 + 0 - 6
    assert m["energy"]["wh_per_completed_task"] == pytest.approx(8.0 / 5)
    assert m["energy"]["curtailed_share"] == pytest.approx(0.2)
    assert m["energy"]["transport_loss_share"] == pytest.approx(1.0)
    s = m["service"]
    assert (s["generated"], s["completed_on_time"], s["completed_late"]) == (6, 4, 1)
    assert s["dropped"]["expired"] == 1 and s["offloaded"] == 1
    lat = np.array([100.0, 200.0, 400.0, 300.0, 3640.0])
    assert s["latency_s"]["p50"] == pytest.approx(300.0)
    assert s["latency_s"]["p95"] == pytest.approx(np.percentile(lat, 95))
    assert s["latency_s"]["mean"] == pytest.approx(lat.mean())
    f = m["fairness"]["nodes"]["service_ratio"]
    assert f["jain"] == pytest.approx(1.5625 / 1.625)                      # 1.25^2 / (2 * 0.8125)
    assert f["gini"] == pytest.approx(0.25 / (2 * 4 * 0.625) * 2)          # pairs |0.75-0.5| twice
    assert f["min_max_ratio"] == pytest.approx(0.5 / 0.75)
    assert f["equality_gap_w1"] == pytest.approx(0.125)
    assert m["fairness"]["classes"]["shade"]["uptime"]["mean"] == 0.5
    fl = fleet_table(run)
    assert fl["dropped_expired"].tolist() == [0, 1]                       # dropped at 4000 s
    assert fl["completed_late"].tolist() == [0, 1] and fl["completed_on_time"].tolist() == [4, 0]
    np.testing.assert_allclose(fl["soc_min"], [0.5, 0.1])
    np.testing.assert_allclose(fl["soc_p50"], [0.55, 0.3])
    assert fl["energy_transfers"].tolist() == [0, 1]


def test_load_run_rejects_what_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a run folder: missing summary.json"):
        load_run(tmp_path / "empty")


# ------------------------------------------------------------------ a real tiny run
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from otmarl.run import run
    return run("microgrid-solar", policy="random", out=tmp_path_factory.mktemp("runs") / "mg",
               overrides=["horizon_h=24"])


def test_ledger_and_counts_match_summary(tiny_run):
    m = metrics(tiny_run)
    s = json.loads((tiny_run / "summary.json").read_text())
    led = m["energy"]["ledger"]
    for k, v in s["energy"].items():
        if k != "ledger_error_wh":
            np.testing.assert_allclose(led[k], v, rtol=1e-9, atol=1e-9, err_msg=k)
    scale = led["initial_stored_wh"] + led["harvested_wh"] + led["delivered_wh"]
    assert abs(led["ledger_error_wh"]) < 1e-9 * scale
    t, sv = s["tasks"], m["service"]
    for k in ("generated", "completed_on_time", "completed_late", "in_system_at_end", "offloaded"):
        assert sv[k] == t[k], k
    assert sv["dropped"] == t["dropped"]
    for q in ("mean", "p50", "p95", "p99"):
        np.testing.assert_allclose(sv["latency_s"][q], s["latency_s"][q], rtol=1e-12)
    # p90 and max (not in the summary) from a two-column filtered read, against every task
    tasks = pd.read_parquet(tiny_run / "tasks.parquet")
    done = tasks["status"].isin(["completed_on_time", "completed_late"]).to_numpy()
    lat = (tasks["end_s"].to_numpy(float) - tasks["generated_s"].to_numpy(float))[done]
    assert done.sum() > 10 and sv["latency_s"]["p90"] == np.percentile(lat, 90)
    assert sv["latency_s"]["max"] == lat.max()
    b = m["batteries"]
    np.testing.assert_allclose(b["brownout_node_hours"], s["nodes"]["brownout_node_hours"])
    np.testing.assert_allclose(b["down_node_hours"], s["nodes"]["down_node_hours"])
    np.testing.assert_allclose(b["min_soc"], s["nodes"]["min_soc"])
    np.testing.assert_allclose(b["mean_soc"], s["nodes"]["mean_soc"])
    json.dumps(m, allow_nan=False)                                       # JSON-able, no NaN


def test_per_node_tables_of_a_real_run(tiny_run):
    run = load_run(tiny_run)
    nt = node_table(run)
    assert len(nt) == run.n_nodes
    sr = nt["service_ratio"].dropna()
    assert len(sr) > 0 and sr.between(0, 1).all()
    assert nt["uptime"].between(0, 1).all() and nt["final_soc"].between(0, 1).all()
    assert nt["originated"].sum() == run.summary["tasks"]["generated"]
    assert nt["completed_on_time"].sum() == run.summary["tasks"]["completed_on_time"]
    # throughput a second way: pandas groupby over the long table
    ts = run.timeseries
    bus = ts["harvested_wh"] - ts["curtailed_wh"] - ts["consumed_idle_wh"] - ts["consumed_tasks_wh"] \
        - ts["consumed_tx_wh"]
    other = (bus.abs() + ts["sent_wh"] + ts["delivered_wh"]).groupby(ts["node"]).sum()
    np.testing.assert_allclose(nt["throughput_wh"], other.sort_index().to_numpy(), rtol=1e-12)
    fl = fleet_table(run)
    assert len(fl) == run.n_epochs
    assert (fl["soc_min"] <= fl["soc_p10"] + 1e-12).all() and (fl["soc_p10"] <= fl["soc_p50"]).all()
    assert (fl["soc_p50"] <= fl["soc_p90"]).all() and (fl["soc_p90"] <= fl["soc_max"] + 1e-12).all()
    soc = run.grid("soc")
    np.testing.assert_allclose(fl["soc_p90"], np.percentile(soc, 90, axis=1))
    dropped = sum(fl[f"dropped_{r}"].sum() for r in ("queue_full", "expired", "node_down"))
    assert dropped == sum(run.summary["tasks"]["dropped"].values())
    m = metrics(run)
    f = m["fairness"]["nodes"]["final_soc"]
    np.testing.assert_allclose(f["gini"], gini(nt["final_soc"]))
    np.testing.assert_allclose(f["jain"], jain(nt["final_soc"]))
    tab = class_fairness_table(run)
    assert set(tab["scope"]) == {"fleet", "class", "between_classes"}


def test_baseline_normalisation_on_real_runs(tiny_run, tmp_path):
    from otmarl.run import run
    other = run("microgrid-solar", policy="local", out=tmp_path / "local", overrides=["horizon_h=24"])
    m = metrics(tiny_run, baseline=other)
    base = metrics(other)
    norm = m["baseline"]["normalised"]
    assert set(norm) == set(m["kpis"])
    for k, v in norm.items():
        b = base["kpis"][k]
        if v is None:
            assert not b
        else:
            np.testing.assert_allclose(v, m["kpis"][k] / b, rtol=1e-12)
    self_norm = metrics(tiny_run, baseline=tiny_run)["baseline"]["normalised"]
    assert all(v is None or v == pytest.approx(1.0) for v in self_norm.values())


def test_unreadable_tables_are_user_errors(tmp_path):
    run_dir = write_hand_run(tmp_path / "hand")
    (run_dir / "timeseries.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="timeseries.parquet: cannot read"):
        metrics(run_dir)
    other = write_hand_run(tmp_path / "hand2")
    pd.read_parquet(other / "tasks.parquet").drop(columns="offloads").to_parquet(other / "tasks.parquet")
    with pytest.raises(UserError, match="tasks.parquet: cannot read"):
        metrics(other)


def test_analysis_never_imports_policies():
    import subprocess
    import sys
    code = ("import sys, otmarl.analysis, otmarl.report_cmd; "
            "print(sorted(m for m in sys.modules if m.startswith('otmarl.policies')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_market_rows_are_not_flows(tmp_path):
    """The OT allocator's offer/request audit rows (dst = -1) must not be drawn or counted as
    transfers."""
    from otmarl.analysis import load_run
    from otmarl.run import run
    out = run("microgrid-solar", policy="ot", seed=1, out=tmp_path / "ot", overrides=["horizon_h=24"])
    r = load_run(out)
    assert set(r.flows["kind"]) <= {"energy", "task"} and (r.flows["dst"] >= 0).all()
    assert set(r.market["kind"]) >= {"energy_offer", "energy_request"}
    assert (r.market["dst"] == -1).all()


def test_registry_metrics_of_a_hand_made_summary():
    from otmarl.analysis.registry import BETTER, METRICS, run_metrics
    s = {"tasks": {"generated": 8, "completed_on_time": 6, "offloaded": 3,
                   "dropped": {"expired": 1, "queue_full": 1}},
         "latency_s": {"p95": None}, "nodes": {"brownout_node_hours": 2.5},
         "energy": {"delivered_wh": 0.0, "transport_loss_wh": 0.0, "curtailed_wh": 4.0, "unserved_wh": 1.5}}
    m = run_metrics(s)
    assert list(m) == list(METRICS)
    assert m["unserved_wh"] == 1.5
    assert (m["on_time_ratio"], m["dropped"], m["offloaded"]) == (0.75, 2, 3)
    assert math.isnan(m["latency_p95_s"]) and math.isnan(m["loss_per_delivered"])  # no value: NaN
    s["energy"].update(delivered_wh=8.0, transport_loss_wh=2.0)
    s["tasks"].update(generated=0, completed_on_time=0)          # no task: ratio 0, not a 0/0
    assert (run_metrics(s)["loss_per_delivered"], run_metrics(s)["on_time_ratio"]) == (0.25, 0.0)
    assert BETTER["on_time_ratio"] == "higher" and BETTER["dropped"] == "lower"
    assert "delivered_wh" not in BETTER                           # a volume, neither way better


def test_registry_labels_ranges_and_clipped_intervals():
    from otmarl.analysis.registry import LABELS, REGISTRY, clip_intervals
    assert LABELS["transport_loss_wh"] == "transport loss (Wh)" and LABELS["on_time_ratio"] == "on-time share"
    assert all(m.low == 0 for m in REGISTRY.values())              # no metric can be negative
    t = pd.DataFrame({"metric": ["dropped", "on_time_ratio", "gap_x", "dropped"],
                      "ci_low": [-1.5, 0.5, -3.0, np.nan], "ci_high": [3.0, 1.25, 4.0, np.nan]})
    out, moved = clip_intervals(t)
    assert moved == ["dropped", "on_time_ratio"]
    np.testing.assert_array_equal(out["ci_low"], [0.0, 0.5, -3.0, np.nan])   # not in the registry:
    np.testing.assert_array_equal(out["ci_high"], [3.0, 1.0, 4.0, np.nan])   # left alone
    assert clip_intervals(out)[1] == [] and t["ci_low"][0] == -1.5            # a copy, idempotent


def test_the_drop_reasons_a_report_knows_are_the_ones_a_run_records():
    from otmarl.analysis.metrics import DROP_REASONS as READ
    from otmarl.simulator.world import DROP_REASONS as RECORDED
    assert RECORDED == ("",) + READ


def test_tables_read_column_by_column_match_the_whole_frame(tiny_run):
    """The node and fleet tables (each timeseries column read alone, reduced and let go) against
    sums over the whole timeseries frame; the latency tail read from three task columns against
    the task frame."""
    from otmarl.analysis.metrics import CONSUMED, ENERGY_COLS, _latency_tail
    run = load_run(tiny_run)
    nt, fl, ts = node_table(run), fleet_table(run), run.timeseries
    by_node, by_epoch = ts.groupby("node"), ts.groupby("epoch")
    for c in ENERGY_COLS:
        if c in nt:
            np.testing.assert_allclose(nt[c], by_node[c].sum().sort_index(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fl[c], by_epoch[c].sum().sort_index(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(nt["consumed_wh"], sum(by_node[c].sum().sort_index() for c in CONSUMED),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(nt["min_soc"], by_node["soc"].min().sort_index())
    np.testing.assert_allclose(nt["mean_soc"], by_node["soc"].mean().sort_index(), rtol=1e-12)
    np.testing.assert_allclose(nt["uptime"], by_node["up"].mean().sort_index())
    np.testing.assert_allclose(fl["soc_mean"], by_epoch["soc"].mean().sort_index(), rtol=1e-12)
    np.testing.assert_allclose(fl["stored_wh"], by_epoch["stored_wh"].sum().sort_index(), rtol=1e-12)
    assert fl["nodes_browned"].tolist() == by_epoch["browned"].sum().sort_index().tolist()
    assert fl["queue_len"].tolist() == by_epoch["queue_len"].sum().sort_index().tolist()
    t = run.tasks                                  # the task frame, read whole
    done = t["status"].isin(["completed_on_time", "completed_late"]).to_numpy()
    lat = (t["end_s"].to_numpy() - t["generated_s"].to_numpy())[done]
    assert lat.size
    assert _latency_tail(run) == {"p90": float(np.percentile(lat, 90)), "max": float(lat.max())}


def test_a_timeseries_without_a_column_is_named(tmp_path, tiny_run):
    """A timeseries.parquet that lacks a column the tables read: a UserError naming the file and
    the column, not a traceback from Arrow."""
    import shutil
    folder = tmp_path / "cut"
    shutil.copytree(tiny_run, folder)
    ts = pd.read_parquet(folder / "timeseries.parquet")
    ts.drop(columns=["curtailed_wh"]).to_parquet(folder / "timeseries.parquet")
    with pytest.raises(UserError, match=r"timeseries\.parquet: column 'curtailed_wh' is missing"):
        node_table(load_run(folder))
