"""Sweeps: the same rows on every backend (in this process, joblib processes, a Dask cluster),
resuming after a kill without touching finished runs, failed runs recorded, sweep file errors at
their exact FILE:LINE:COL, the example, the summary (cross-checked in SQL) and the report.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from otmarl.cli import main
from otmarl.analysis.registry import METRICS
from otmarl.policies import REGISTRY
from otmarl.run import run
from otmarl.scenarios import ScenarioError, builtin_names, builtin_path, load
from otmarl.sweep import load_sweep, run_key, sweep
from otmarl.analysis.sweep_report import read_rows, summarize

# 3 capacities x 2 policies x 2 seeds = 12 runs of 6 simulated hours
SWEEP = """\
name: tiny
base: microgrid-solar
overrides: {horizon_h: 6}
policies: [local, ot]
seeds: 2
root_seed: 11
grid:
  nodes.home.battery.capacity_wh: [5000, 10000, 15000]
"""
TIMING = ["wall_s", "simulate_s", "worker"]


@pytest.fixture(scope="module", autouse=True)
def lighter_workers():
    """Worker processes import POT, which imports torch when it is installed (seconds per process
    on a busy machine); the runs never use it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POT_BACKEND_DISABLE_PYTORCH", "1")
        yield


def write(folder: Path, text: str, name: str = "s.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def outcome(out: Path) -> tuple[pd.DataFrame, dict[str, bytes]]:
    """The rows without timings, by key, and every run's summary.json."""
    rows, _ = read_rows(out)
    rows = rows.drop(columns=TIMING).sort_values("key").reset_index(drop=True)
    return rows, {k: (out / "runs" / k / "summary.json").read_bytes() for k in rows["key"]}


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("sweep")
    f = write(base, SWEEP)
    res = sweep(f, base / "seq", jobs=1)
    assert (res.total, len(res.ran), res.failed) == (12, 12, [])
    return f, base / "seq"


# ------------------------------------------------------------------------------ the design
def test_rows_seeds_and_keys(sequential):
    _, out = sequential
    rows, _ = read_rows(out)
    assert len(rows) == 12 and set(rows["status"]) == {"ok"}
    assert list(rows["run"]) == list(range(12))
    # seed of (point p, seed index s) is child p * 2 + s of the root; both policies share it
    kids = np.random.SeedSequence(11).spawn(6)
    for _, r in rows.iterrows():
        want = int(kids[r["point"] * 2 + r["seed_index"]].generate_state(1, np.uint64)[0]) >> 1
        assert r["seed"] == want
    assert rows.groupby(["point", "seed_index"])["seed"].nunique().eq(1).all()
    assert rows["seed"].nunique() == 6
    assert list(rows["nodes.home.battery.capacity_wh"]) == [5000] * 4 + [10000] * 4 + [15000] * 4
    # the key is the hash of the scenario the run recorded, its policy and seed
    for _, r in rows.iterrows():
        meta = json.loads((out / "runs" / r["key"] / "metadata.json").read_text())
        assert run_key(meta["scenario"], r["policy"], int(r["seed"])) == r["key"]


def test_a_row_is_reproduced_by_a_plain_run(sequential, tmp_path):
    _, out = sequential
    rows, _ = read_rows(out)
    r = rows[(rows["policy"] == "ot") & (rows["nodes.home.battery.capacity_wh"] == 10000)].iloc[0]
    sc = load("microgrid-solar", ["horizon_h=6", "nodes.home.battery.capacity_wh=10000"])
    folder = run(sc, policy="ot", seed=int(r["seed"]), out=tmp_path / "again")
    assert (folder / "summary.json").read_bytes() == (out / "runs" / r["key"] / "summary.json").read_bytes()


# ------------------------------------------------------------------------------ backends
def test_joblib_two_processes_same_results_even_when_a_worker_is_killed(sequential, tmp_path):
    f, seq = sequential
    out, killed, stop = tmp_path / "jl", [], threading.Event()

    def kill_the_first_worker():  # the one that wrote the first row, busy with its next run
        while not (killed or stop.is_set()):
            rows = list(out.glob("runs/*/row.parquet"))
            if rows:
                pid = int(pd.read_parquet(rows[0])["worker"][0].rsplit(":", 1)[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.005)

    killer = threading.Thread(target=kill_the_first_worker)
    killer.start()
    try:
        res = sweep(f, out, jobs=2)
    finally:
        stop.set()
        killer.join()
    assert killed and (res.total, len(res.ran), res.failed) == (12, 12, [])
    workers = set(read_rows(out)[0]["worker"])
    assert len(workers) >= 3                                   # two processes, then a new pool
    a, b = outcome(seq), outcome(out)
    pd.testing.assert_frame_equal(a[0], b[0])
    assert a[1] == b[1]


@pytest.fixture
def dask_cluster():
    from distributed import LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


def test_dask_cluster_gives_the_same_results(sequential, tmp_path, dask_cluster, monkeypatch):
    f, seq = sequential
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_cluster.scheduler_address)
    res = sweep(f, tmp_path / "dk", backend="dask")            # the address from the environment
    assert (res.total, len(res.ran), res.failed) == (12, 12, [])
    a, b = outcome(seq), outcome(tmp_path / "dk")
    pd.testing.assert_frame_equal(a[0], b[0])
    assert a[1] == b[1]
    again = sweep(f, tmp_path / "dk", backend="dask", address=dask_cluster.scheduler_address)
    assert (len(again.skipped), again.ran) == (12, [])


# -------------------------------------------------------------------------------- resume
def test_killed_sweep_resumes_with_only_the_missing_runs(tmp_path):
    f = write(tmp_path, SWEEP.replace("horizon_h: 6", "horizon_h: 24"))  # ~0.2 s a run
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "otmarl", "sweep", str(f), "--out", str(out),
                             "--jobs", "1", "--quiet"], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rows = lambda: sorted((out / "runs").glob("*/row.parquet"))  # noqa: E731
    while len(rows()) < 3 and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    before = {p.parent.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in rows()}
    assert 3 <= len(before) < 12

    res = sweep(f, out, jobs=1)
    assert sorted(res.skipped) == sorted(before)
    assert len(res.ran) == 12 - len(before) and not set(res.ran) & set(before)
    after = {p.parent.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in rows()}
    assert {k: after[k] for k in before} == before               # finished rows never rewritten
    assert len(after) == 12 and not list(out.glob("runs/*/.row.parquet.*.tmp"))


# ------------------------------------------------------------------------------ failures
FAILING = """\
base: microgrid-solar
overrides: {horizon_h: 6}
policies: [random, "marl:no-such-folder"]     # the second fails when the run starts
seeds: [0]
"""


def test_a_failing_run_is_recorded_and_the_sweep_completes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = write(tmp_path, FAILING)
    res = sweep(f, tmp_path / "out", jobs=1)
    assert res.total == 2 and len(res.ran) == 2 and len(res.failed) == 1
    bad = res.failed[0]
    doc = json.loads((tmp_path / "out" / "failures" / f"{bad}.json").read_text())
    assert doc["error"] == ("UserError: no-such-folder: not a checkpoint folder (no policy.json; "
                            "train one with 'otmarl train')")
    assert doc["traceback"].startswith("Traceback (most recent call last)")
    rows, _ = read_rows(tmp_path / "out")
    by = rows.set_index("policy")
    assert by.loc["marl:no-such-folder", "status"] == "failed"
    assert by.loc["marl:no-such-folder", "error"] == doc["error"]
    assert all(math.isnan(by.loc["marl:no-such-folder", m]) for m in METRICS)
    assert by.loc["random", "status"] == "ok" and by.loc["random", "on_time_ratio"] > 0
    s = summarize(tmp_path / "out")
    assert set(s.table["n"]) == {1} and len(s.failed) == 1
    # the next invocation runs the failed run again, and only it; the CLI exits with 1
    assert main(["sweep", str(f), "--out", str(tmp_path / "out"), "--jobs", "1", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "2 runs: 1 already done, 1 run now, 1 failed" in captured.out
    assert "1 run(s) failed" in captured.err


# --------------------------------------------------------------------------- file errors
def first_lines(text: str, tmp_path: Path, monkeypatch, files: dict[str, str] | None = None) -> list[str]:
    """First lines of the problems of the sweep file ``s.yaml`` holding ``text``."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, text)
    for name, body in (files or {}).items():
        write(tmp_path, body, name)
    with pytest.raises(ScenarioError) as info:
        load_sweep("s.yaml")
    return [m.splitlines()[0] for m in info.value.messages]


KNOWN = ", ".join(sorted(REGISTRY))


def test_errors_structure_policies_and_paths_at_once(tmp_path, monkeypatch):
    got = first_lines("""\
base: microgrid-solar
policies: [local, otx]
seeds: 0
grdi:
  horizon_h: [1]
zip:
  nodes.home.batery.capacity_wh: [5000, 10000]
  nodes.hom.speed: [1, 2]
""", tmp_path, monkeypatch)
    assert got == [
        f"s.yaml:2:19: policies.1: unknown policy 'otx'; did you mean 'ot'? (known: {KNOWN})",
        "s.yaml:3:8: seeds: value 0 must be >= 1",
        "s.yaml:4:1: grdi: unknown key 'grdi'; did you mean 'grid'?",
        "s.yaml:7:14: unknown key 'batery'; did you mean 'battery'?",
        "s.yaml:8:9: nodes has no 'hom'; did you mean 'home'? (it has: home)",
    ]


def test_errors_values_at_the_item_that_gave_them(tmp_path, monkeypatch):
    got = first_lines("""\
base: microgrid-solar
overrides:
  horizon_h: 6
grid:
  nodes.home.battery.capacity_wh: [5000, -1]
  'nodes.home.battery.min_soc':
    - 0.05
    - 0.5
random:
  samples: 4
  params:
    nodes.home.harvest.efficiency: {uniform: [1.5, 2.0]}
""", tmp_path, monkeypatch)
    assert got[:2] == ["s.yaml:5:42: nodes.home.battery.capacity_wh: value -1 must be > 0",
                       "s.yaml:8:7: nodes.home.battery.min_soc: value 0.5 must be <= resume_soc=0.1"]
    assert re.fullmatch(r"s\.yaml:12:36: nodes\.home\.harvest\.efficiency: value 1\.\d+ must be <= 1 "
                        r"\(and 3 more like it\)", got[2]) and len(got) == 3


def test_errors_of_the_design(tmp_path, monkeypatch):
    got = first_lines("""\
base: microgrid-solr
grid:
  controller.policy: [local, ot]
  nodes.home.battery: [{capacity_wh: 5}]
zip:
  nodes.home.battery.capacity_wh: [1, 2]
  nodes.home.speed: [1]
random:
  samples: 0
  params:
    location.latitude_deg: {loguniform: [0, 10], choice: [1]}
""", tmp_path, monkeypatch)
    assert got == [
        "s.yaml:1:7: base: 'microgrid-solr': no such file (relative to the sweep file's folder) and "
        f"no built-in scenario; did you mean 'microgrid-solar'? (built-ins: {', '.join(builtin_names())})",
        "s.yaml:3:3: grid.controller.policy: the policy is swept by 'policies: [...]', not by a parameter",
        "s.yaml:6:3: zip.nodes.home.battery.capacity_wh: overlaps 'nodes.home.battery' (under grid)",
        "s.yaml:7:21: zip.nodes.home.speed: has 1 value, but 'nodes.home.battery.capacity_wh' has 2; "
        "zip walks its lists together",
        "s.yaml:9:12: random.samples: value 0 must be >= 1",
        "s.yaml:11:42: random.params.location.latitude_deg.loguniform.0: value 0 must be > 0 (a log scale)",
        "s.yaml:11:50: random.params.location.latitude_deg.choice: give one of uniform, loguniform, "
        "choice (this one also has 'loguniform')",
    ]


def test_errors_of_a_base_file_are_reported_at_the_base(tmp_path, monkeypatch):
    text = builtin_path("microgrid-solar").read_text().replace("horizon_h: 72", "horizon_h: -72")
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("horizon_h:"))
    got = first_lines("base: home.yaml\ngrid: {nodes.home.count: [1, 2]}\n", tmp_path, monkeypatch,
                      {"home.yaml": text})
    assert got == [f"home.yaml:{line}:12: horizon_h: value -72 must be > 0"]
    assert first_lines("# nothing\n", tmp_path, monkeypatch) == [
        "s.yaml:1:1: the file is empty; a sweep needs at least 'base' (see 'otmarl sweep example')"]


# ------------------------------------------------------------------------------- the CLI
def test_example_is_a_valid_documented_sweep(tmp_path, capsys, monkeypatch):
    assert main(["sweep", "example"]) == 0
    text = capsys.readouterr().out
    assert text.count("\n#") >= 10                              # documented
    f = write(tmp_path, text)
    sw = load_sweep(f)
    assert (len(sw.points), sw.policies, sw.spec.seed_count) == (6, ("local", "proportional", "ot"), 3)
    assert main(["sweep", str(f), "--dry-run"]) == 0
    assert "6 points x 3 policies x 3 seeds = 54 runs" in capsys.readouterr().out


def test_cli_bad_input_exits_with_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    f = write(tmp_path, SWEEP)
    for args, needle in ((["summary"], "name the sweep's output folder"),
                         (["summary", str(tmp_path)], "not a sweep folder"),
                         ([str(f), "--backend", "dask"], "--address tcp://HOST:8786"),
                         ([str(f), "--jobs", "0"], "--jobs: value 0 must be >= 1"),
                         ([str(f), "extra"], "goes with --out"),
                         ([str(tmp_path / "nope.yaml")], "cannot read the file")):
        assert main(["sweep", *args]) == 2, args
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err


# ----------------------------------------------------------------------- summary, report
def test_summary_matches_sql_and_is_written(sequential, capsys):
    f, out = sequential
    assert main(["sweep", "summary", str(out), "--metrics", "on_time_ratio,dropped"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == ["policy", "capacity_wh", "on_time_ratio", "dropped", "n"]
    table = pd.read_csv(out / "summary.csv")
    assert len(table) == 3 * 2 * len(METRICS)
    assert set(table[table["metric"] == "on_time_ratio"]["n"]) == {2}
    sql = duckdb.connect().execute(
        'SELECT policy, "nodes.home.battery.capacity_wh" AS cap, avg(on_time_ratio), '
        "stddev_samp(on_time_ratio), count(*) FROM read_parquet($1) GROUP BY ALL",
        [str(out / "runs" / "*" / "row.parquet")]).fetchall()
    t = table[table["metric"] == "on_time_ratio"].set_index(["policy", "nodes.home.battery.capacity_wh"])
    for pol, cap, mean, sd, n in sql:
        half = 12.706204736174707 * sd / math.sqrt(n)            # Student t, 1 dof, 97.5 %
        r = t.loc[(pol, cap)]
        np.testing.assert_allclose([r["mean"], r["ci_high"] - r["mean"]], [mean, half], rtol=1e-12, atol=1e-15)


# In the page: click the head of the on-time column twice; the column's values after each click.
SORT_TWICE = """(() => {
  const t = document.querySelector("table.sortable"), heads = Array.from(t.tHead.rows[0].cells);
  const col = heads.findIndex(th => th.textContent === "on-time share");
  const values = () => Array.from(t.tBodies[0].rows, r => +r.cells[col].dataset.v);
  heads[col].click(); const up = values(); heads[col].click();
  return [up, values()];
})()"""


def test_report_is_self_contained_and_every_chart_renders(sequential, browser, pictures):
    _, out = sequential
    table = summarize(out).table
    page = (out / "report.html").read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)|<link\b|@import|<img\b""", page, re.I)
    for api in ("fetch(", "XMLHttpRequest", "WebSocket", "import("):
        assert api not in page
    names = re.findall(r'data-chart="([^"]+)"', page)
    assert len(names) == len(METRICS) and page.count("<script") == 2
    check = browser.check(out / "report.html", count=("polyline", "table.sortable tbody tr"),
                          script=SORT_TWICE)
    assert check.errors == [], check.errors
    assert check.page_width <= 1280 and check.too_wide == [], (check.page_width, check.too_wide)
    assert check.charts == dict.fromkeys(names, "ok"), check.charts
    # a line per policy and metric with two points or more (local delivers no energy: no loss per
    # Wh delivered), and a table row per design point and policy
    lines = (table.dropna(subset=["mean"]).groupby(["metric", "policy"]).size() >= 2).sum()
    assert 2 * len(METRICS) - 3 <= lines < 2 * len(METRICS)
    assert check.counts == {"polyline": lines, "table.sortable tbody tr": 3 * 2}
    # a click on the on-time column sorts the rows by it, a second click reverses them
    up, down = check.result
    want = sorted(table[table["metric"] == "on_time_ratio"]["mean"])
    np.testing.assert_allclose(up, want, rtol=1e-12)
    np.testing.assert_allclose(down, want[::-1], rtol=1e-12)
    if pictures is not None:
        (pictures / "sweep-report.png").write_bytes(check.png)


def test_report_labels_styles_and_clipped_bands(sequential):
    """Axis labels with units from the registry, one style per policy on every chart, no band
    below a metric's range (and the chart says it was clipped), the table in HTML."""
    from otmarl.analysis.registry import REGISTRY
    from otmarl.analysis.sweep_report import chart_data, html_report
    _, out = sequential
    s = summarize(out, write=False)
    ok = s.rows[s.rows["status"] == "ok"]
    charts = chart_data(ok, s.params[0], "float", {"local": 0, "ot": 1})
    raw = s.table.set_index(["policy", s.params[0], "metric"])
    for m, c in charts.items():
        metric = REGISTRY[m]
        assert c["ylabel"] == metric.label and c["ymin"] == metric.low
        assert [(x["name"], x["k"]) for x in c["series"]] == [("local", 0), ("ot", 1)]
        lows = [v for x in c["series"] for v in x["lo"] if v is not None]
        assert all(v >= metric.low for v in lows), (m, lows)
        below = [(p, cap) for p in ("local", "ot") for cap in (5000, 10000, 15000)
                 if raw.loc[(p, cap, m), "ci_low"] < metric.low]
        assert c["clipped"] == bool(below), m
    assert any(c["clipped"] for c in charts.values())     # this sweep has bands to clip
    page = html_report(s)
    assert "<pre>" not in page and '<table class="sortable">' in page
    assert "Bands clipped to [0, 1]" in page or "Bands clipped to 0 and above" in page
    assert "<th>transport loss (Wh)</th>" in page and "over 2 seeds" in page


def test_a_marginal_chart_says_what_it_averages_over():
    from otmarl.analysis.sweep_report import averaged_over
    rows = pd.DataFrame([{"policy": p, "a.cap_wh": c, "b.area_m2": a, "seed": s}
                         for p in ("local", "ot") for c in (1, 2) for a in (3, 4, 5) for s in (0, 1)])
    text = averaged_over(rows, "a.cap_wh", ["a.cap_wh", "b.area_m2"], binned=False)
    assert text.startswith("Each point: the mean of the runs of a policy at that cap_wh, over 2 seeds "
                           "and averaged over area_m2 (3 values): a marginal, not one design point")
    alone = averaged_over(rows[rows["b.area_m2"] == 3], "a.cap_wh", ["a.cap_wh"], binned=True)
    assert "averaged over" not in alone and "quantile bins" in alone


def test_one_chart_kit_draws_the_run_and_the_sweep_reports(sequential):
    """The sweep page embeds the very same chart kit as the run report (no second copy)."""
    from otmarl.analysis.report_assets import template
    _, out = sequential
    summarize(out)
    page = (out / "report.html").read_text()
    kit = template("report.js")
    assert "function bandChart" in kit and page.count(kit.strip()) == 1
    # no JavaScript chart code anywhere in the Python sources (it lives in templates/ only)
    root = Path(__file__).resolve().parents[1]
    copies = [str(p.relative_to(root)) for d in ("analysis", "otmarl") for p in (root / d).rglob("*.py")
              if "createElementNS" in p.read_text()]
    assert copies == []


# ------------------------------------------------------------------ folders never mix
SMALL = """\
base: microgrid-solar
overrides: {horizon_h: 1}
policies: [local]
seeds: [0]
grid:
  nodes.home.battery.capacity_wh: [5000, 10000]
"""


def test_a_sweep_folder_holding_another_sweep_is_refused_unless_overwritten(tmp_path):
    from otmarl.scenarios.errors import UserError
    out = tmp_path / "out"
    first = sweep(write(tmp_path, SMALL, "a.yaml"), out, jobs=1)
    assert len(first.ran) == 2
    again = sweep(write(tmp_path, SMALL, "a2.yaml"), out, jobs=1)    # the same sweep: resumed
    assert (len(again.skipped), again.ran) == (2, [])
    with pytest.raises(UserError, match=r"holds a different sweep \(policies: \['local'\] -> "
                                        r"\['local', 'greedy'\]\)"):
        sweep(write(tmp_path, SMALL.replace("[local]", "[local, greedy]"), "b.yaml"), out, jobs=1)
    other_base = write(tmp_path, SMALL.replace("horizon_h: 1", "horizon_h: 2"), "c.yaml")
    with pytest.raises(UserError, match=r"holds a different sweep \(base scenario: '2 of its 2 "
                                        r"runs' -> 'differs'\); .* --overwrite"):
        sweep(other_base, out, jobs=1)
    res = sweep(other_base, out, jobs=1, overwrite=True)
    assert (res.skipped, len(res.ran)) == ([], 2)
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(res.ran)  # nothing stale


def test_a_folder_of_something_else_is_never_swept_into_nor_removed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = write(tmp_path, SMALL)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        assert main(["sweep", str(f), "--out", "mine", "--quiet", *extra]) == 2
        assert "holds files that are not an otmarl sweep" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
