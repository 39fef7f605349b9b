"""What a run folder holds: --tables (all, no-tasks, summary), narrow column types, reports from
reduced folders, and baselines that must match the run."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from otmarl.analysis import metrics
from otmarl.analysis.metrics import epoch_counts, load_run, node_table, origin_counts
from otmarl.analysis.report import report
from otmarl.run import output_files, run
from otmarl.scenarios.errors import UserError

SHORT = ["horizon_h=24"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    """The same run (microgrid-solar, greedy, seed 5, one day) under each --tables choice."""
    base = tmp_path_factory.mktemp("tables")
    return {t: run("microgrid-solar", policy="greedy", seed=5, out=base / t, overrides=SHORT, tables=t)
            for t in ("all", "no-tasks", "summary")}


def test_each_choice_writes_its_files_and_the_same_summary(folders):
    for t, folder in folders.items():
        held = sorted(p.name for p in folder.iterdir())
        assert held == sorted(output_files(t)), t
        assert json.loads((folder / "metadata.json").read_text())["tables"] == t
    assert "tasks.parquet" not in output_files("no-tasks") and "epochs.parquet" in output_files("no-tasks")
    summaries = {(f / "summary.json").read_bytes() for f in folders.values()}
    assert len(summaries) == 1                                   # the summary never depends on it
    for name in ("timeseries", "flows", "nodes", "links", "epochs"):
        a = (folders["all"] / f"{name}.parquet").read_bytes()
        assert a == (folders["no-tasks"] / f"{name}.parquet").read_bytes(), name


def test_columns_are_narrow(folders):
    schema = lambda name: {f.name: str(f.type) for f in pq.read_schema(folders["all"] / f"{name}.parquet")}  # noqa: E731
    tasks, ts, flows = schema("tasks"), schema("timeseries"), schema("flows")
    assert tasks["origin"] == tasks["node"] == "int8"             # 10 nodes
    assert {tasks[c] for c in ("generated_s", "end_s", "work_s", "data_kb")} == {"float"}
    assert tasks["status"].startswith("dictionary") and tasks["drop_reason"].startswith("dictionary")
    assert ts["node"] == "int8" and ts["epoch"] == "int8" and ts["stored_wh"] == "float"   # 24 epochs
    assert ts["time_s"] == "double"
    assert flows["kind"].startswith("dictionary") and flows["src"] == "int8"
    assert schema("nodes")["class"].startswith("dictionary")


def test_float32_tables_stay_within_their_precision_of_the_exact_ledger(folders):
    s = json.loads((folders["all"] / "summary.json").read_text())
    ts = pd.read_parquet(folders["all"] / "timeseries.parquet")
    for col in ("harvested_wh", "consumed_idle_wh", "sent_wh"):
        np.testing.assert_allclose(ts[col].astype(float).sum(), s["energy"][col], rtol=1e-6, atol=1e-6)
    m = metrics(folders["no-tasks"])
    assert m["energy"]["ledger"] == {k: s["energy"][k] for k in m["energy"]["ledger"]}   # exact


def test_task_counts_without_the_task_table_equal_those_counted_in_it(folders, tmp_path):
    full = load_run(folders["all"])
    # the same folder without the aggregates: every count now comes from tasks.parquet
    bare = tmp_path / "bare"
    shutil.copytree(folders["all"], bare)
    (bare / "epochs.parquet").unlink()
    nodes = pd.read_parquet(bare / "nodes.parquet")
    nodes.drop(columns=["originated", "completed_on_time", "completed_late", "dropped"]).to_parquet(
        bare / "nodes.parquet")
    counted = load_run(bare)
    a, b = epoch_counts(full), epoch_counts(counted)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    na, nb = origin_counts(full, full.nodes), origin_counts(counted, counted.nodes)
    assert all(np.array_equal(na[k], nb[k]) for k in na)
    assert na["originated"].sum() == full.summary["tasks"]["generated"]
    pd.testing.assert_frame_equal(node_table(load_run(folders["no-tasks"])), node_table(full))


def test_metrics_of_reduced_folders(folders):
    full, no_tasks, summ = (metrics(folders[t]) for t in ("all", "no-tasks", "summary"))
    assert full["service"]["latency_s"]["p90"] is not None
    assert no_tasks["service"]["latency_s"]["p90"] is None            # only tasks.parquet has it
    no_tasks["service"]["latency_s"].update(p90=full["service"]["latency_s"]["p90"],
                                            max=full["service"]["latency_s"]["max"])
    for part in ("energy", "service", "batteries", "fairness", "kpis"):
        assert no_tasks[part] == full[part], part
    # summary only: what summary.json says, and None for what needs a table
    for k in ("on_time_ratio", "drop_ratio", "latency_p95_s", "brownout_node_hours", "mean_soc",
              "wh_per_completed_task", "curtailed_share"):
        assert summ["kpis"][k] == full["kpis"][k], k
    assert summ["kpis"]["service_jain"] is None and summ["kpis"]["throughput_wh"] is None
    assert summ["run"]["tables"] == [] and "tasks" not in no_tasks["run"]["tables"]


def test_reports_of_reduced_folders_draw_or_explain_each_chart(folders, tmp_path):
    nt = report(folders["no-tasks"], out=tmp_path / "nt")
    page = nt["html"].read_text()
    assert page.count('data-chart="') == 10 and "Not drawn" not in page
    su = report(folders["summary"], out=tmp_path / "su")
    assert set(su) == {"html", "md", "json", "kpis_csv"}
    page = su["html"].read_text()
    assert 'data-chart="' not in page and page.count("Not drawn: this chart is made from") == 10
    assert "written with --tables summary" in page and "--tables all or no-tasks" in page
    md = su["md"].read_text()
    assert "## Charts and the tables they are drawn from" in md
    assert "| Network map | timeseries, nodes | all or no-tasks | no |" in md


def test_a_folder_with_more_tables_serves_and_one_with_fewer_is_refused(folders):
    said = []
    kept = run("microgrid-solar", policy="greedy", seed=5, out=folders["all"], overrides=SHORT,
               tables="no-tasks", notice=said.append)
    assert kept == folders["all"] and "with --tables all, which holds every table of no-tasks" in said[0]
    with pytest.raises(UserError, match=r"written with --tables no-tasks, without tasks.parquet"):
        run("microgrid-solar", policy="greedy", seed=5, out=folders["no-tasks"], overrides=SHORT)
    with pytest.raises(UserError, match=r"--tables: unknown choice 'some' \(choose from all, no-tasks, summary\)"):
        run("microgrid-solar", out=folders["all"], tables="some")


def test_a_baseline_of_another_scenario_or_horizon_is_refused_unless_allowed(folders, tmp_path, cli):
    other = run("microgrid-solar", policy="local", seed=5, out=tmp_path / "h6", overrides=["horizon_h=6"],
                tables="summary")
    with pytest.raises(UserError, match=r"horizon_h: 24.0 in the run, 6.0 in the baseline"):
        report(folders["no-tasks"], baseline=other, out=tmp_path / "r")
    r = cli("report", str(folders["no-tasks"]), "--baseline", str(other), "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "n_epochs: 24 in the run, 6 in the baseline" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "r" / "report.html").exists()
    ok = cli("report", str(folders["no-tasks"]), "--baseline", str(other), "--out", str(tmp_path / "r"),
             "--allow-baseline-mismatch", "--format", "md")
    assert ok.returncode == 0, ok.stderr
    assert "not a run of the same scenario and horizon:** horizon_h" in (tmp_path / "r" / "report.md").read_text()
    same = run("microgrid-solar", policy="local", seed=5, out=tmp_path / "loc", overrides=SHORT, tables="summary")
    assert report(folders["no-tasks"], baseline=same, out=tmp_path / "ok", formats="json")["json"].is_file()


def test_compare_runs_hold_no_task_rows_by_default(tmp_path, cli):
    r = cli("compare", "microgrid-solar", "--set", "horizon_h=6", "--seeds", "1", "--policies",
            "local", "--out", str(tmp_path / "c"), "--quiet")
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "c" / "local-s0"
    assert (folder / "epochs.parquet").is_file() and not (folder / "tasks.parquet").exists()
    assert json.loads((tmp_path / "c" / "comparison.json").read_text())["tables"] == "no-tasks"
    r = cli("compare", "microgrid-solar", "--set", "horizon_h=6", "--seeds", "1", "--policies",
            "local", "--out", str(tmp_path / "c"), "--quiet", "--tables", "all")
    assert r.returncode == 2 and "written with --tables no-tasks, without tasks.parquet" in r.stderr


def test_a_sweep_folder_keeps_its_tables_choice(tmp_path):
    from otmarl.sweep import design, load_sweep, write_manifest
    f = tmp_path / "s.yaml"
    f.write_text("base: microgrid-solar\noverrides: {horizon_h: 3}\npolicies: [local]\nseeds: [0]\n"
                 "grid:\n  nodes.home.battery.capacity_wh: [5000, 10000]\n")
    sw, out = load_sweep(f), tmp_path / "out"
    jobs = design(sw, out, "summary")
    assert {j.tables for j in jobs} == {"summary"}
    write_manifest(out, sw, jobs, "summary")
    assert json.loads((out / "sweep.json").read_text())["tables"] == "summary"
    write_manifest(out, sw, jobs, "summary")                              # resuming: the same choice
    with pytest.raises(UserError, match="holds this sweep written with --tables summary, not no-tasks; "
                                        "pass --tables summary to resume it"):
        write_manifest(out, sw, design(sw, out), "no-tasks")


def test_chart_colours_are_okabe_ito_and_down_has_its_own():
    import re
    from otmarl.analysis.report_assets import template
    okabe_ito = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"}
    js, css = template("report.js"), template("report.css")
    oi = dict(re.findall(r'(\w+): "(#[0-9A-Fa-f]{6})"', js.split("const OI = {")[1].split("};")[0]))
    pal = re.search(r"const PAL = \[([^\]]*)\]", js).group(1)
    ring_colours = {oi[name.strip().removeprefix("OI.")].upper() for name in pal.split(",")}
    assert ring_colours <= okabe_ito and len(ring_colours) >= 6
    var = lambda name: re.search(rf"--{name}: (#[0-9A-Fa-f]+);", css).group(1).upper()  # noqa: E731
    down = var("down")
    assert down in ("#000", "#000000") and "#000000" not in ring_colours
    assert {var("good"), var("bad")} <= okabe_ito and var("good") != var("bad")
    assert re.search(r"circle\.down \{ stroke: var\(--down\);[^}]*stroke-dasharray", css)
    for old in ("#e15759", "#59a14f", "#c62828", "#2e7d32"):              # red/green pairs gone
        assert old not in js.lower() + css.lower()
