"""Running a built-in end to end: the run folder, determinism, the CLI's exit codes."""
from __future__ import annotations

import json

import pytest

from otmarl.run import OUTPUT_FILES, run

SHORT = ["horizon_h=24"]


def _bytes(folder) -> dict[str, bytes]:
    return {f: (folder / f).read_bytes() for f in OUTPUT_FILES if f != "metadata.json"}


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    a = run("microgrid-solar", policy="random", seed=3, out=base / "a", overrides=SHORT)
    b = run("microgrid-solar", policy="random", seed=3, out=base / "b", overrides=SHORT)
    c = run("microgrid-solar", policy="random", seed=4, out=base / "c", overrides=SHORT)
    return a, b, c


def test_run_folder_has_every_file_and_summary_keys(twin_runs):
    a = twin_runs[0]
    for f in OUTPUT_FILES:
        assert (a / f).stat().st_size > 0, f
    s = json.loads((a / "summary.json").read_text())
    assert set(s["energy"]) >= {"initial_stored_wh", "final_stored_wh", "harvested_wh", "curtailed_wh",
                                "consumed_idle_wh", "consumed_tasks_wh", "consumed_tx_wh",
                                "self_discharge_wh", "conversion_loss_wh", "sent_wh", "delivered_wh",
                                "transport_loss_wh", "ledger_error_wh"}
    assert set(s["tasks"]) >= {"generated", "completed_on_time", "completed_late", "dropped",
                               "in_system_at_end", "offloaded"}
    assert set(s["latency_s"]) == {"mean", "p50", "p95", "p99"}
    assert set(s["nodes"]) >= {"brownout_node_hours", "min_soc", "mean_soc"}
    meta = json.loads((a / "metadata.json").read_text())
    assert meta["seed"] == 3 and meta["scenario"]["horizon_h"] == 24 and meta["versions"]["numpy"]


def test_same_seed_same_bytes(twin_runs):
    a, b, _ = twin_runs
    assert _bytes(a) == _bytes(b)


def test_other_seed_other_results(twin_runs):
    a, _, c = twin_runs
    da, dc = _bytes(a), _bytes(c)
    for f in ("summary.json", "timeseries.parquet", "tasks.parquet", "flows.parquet"):
        assert da[f] != dc[f], f


def test_cli_run_and_bad_input_exit_codes(tmp_path, cli):
    ok = cli("run", "microgrid-solar", "--set", "horizon_h=6", "--out", str(tmp_path / "r"), "--quiet")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "r" / "summary.json").exists()
    for args, needle in ((["run", "microgrid-solar", "--policy", "nope"], "unknown policy 'nope'"),
                         (["run", "no-such-scenario"], "no-such-scenario"),
                         (["run", "microgrid-solar", "--seed", "x"], "--seed"),
                         (["run", "microgrid-solar", "--engine", "warp"], "unknown engine 'warp'"),
                         (["run", "microgrid-solar", "--set", "horizon_h=-1"], "horizon_h")):
        r = cli(*args, "--out", str(tmp_path / "bad"))
        assert r.returncode == 2, (args, r.stderr)
        assert needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_end_to_end_bad_input_exits_2_without_a_traceback(tmp_path, cli_process):
    """The same contract through a real process: the exit code the shell sees, no traceback."""
    r = cli_process("run", "microgrid-solar", "--policy", "nope", "--out", str(tmp_path / "bad"))
    assert r.returncode == 2 and "unknown policy 'nope'" in r.stderr
    assert "Traceback" not in r.stderr, r.stderr


def test_reference_engine_from_the_cli(tmp_path, cli):
    r = cli("run", "microgrid-solar", "--engine", "reference", "--set", "horizon_h=12", "--seed", "9",
             "--out", str(tmp_path / "ref"), "--quiet")
    f = cli("run", "microgrid-solar", "--set", "horizon_h=12", "--seed", "9",
             "--out", str(tmp_path / "fast"), "--quiet")
    assert r.returncode == 0 and f.returncode == 0, r.stderr + f.stderr
    sr = json.loads((tmp_path / "ref" / "summary.json").read_text())
    sf = json.loads((tmp_path / "fast" / "summary.json").read_text())
    assert sr["tasks"] == sf["tasks"]
    for k, v in sf["energy"].items():
        assert abs(sr["energy"][k] - v) <= 1e-9 * max(1.0, abs(v)), k


def test_report_flags_on_run_and_compare(tmp_path, cli):
    r = cli("run", "microgrid-solar", "--set", "horizon_h=6", "--out", str(tmp_path / "r"), "--quiet",
             "--report")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r" / "report.html").stat().st_size > 10_000
    c = cli("compare", "microgrid-solar", "--set", "horizon_h=6", "--seeds", "2", "--policies",
             "local,ot", "--out", str(tmp_path / "c"), "--quiet", "--report")
    assert c.returncode == 0, c.stderr
    html = (tmp_path / "c" / "comparison.html").read_text()
    assert "on_time_ratio" in html and 'data-chart' in html
    table = (tmp_path / "c" / "comparison.csv").read_text()
    assert table.count("\n") == 1 + 2 * 11          # header + 2 policies x 11 metrics


# ------------------------------------------------------------------------- run folders never mix
def test_the_same_run_again_is_kept_and_said(tmp_path):
    said = []
    first = run("microgrid-solar", seed=2, out=tmp_path / "r", overrides=["horizon_h=3"])
    stamp = (first / "metadata.json").read_text()
    again = run("microgrid-solar", seed=2, out=tmp_path / "r", overrides=["horizon_h=3"], notice=said.append)
    assert again == first and (first / "metadata.json").read_text() == stamp   # not recomputed
    assert len(said) == 1 and "already holds this run" in said[0]


def test_a_different_run_is_refused_naming_the_difference_unless_overwrite(tmp_path):
    from otmarl.scenarios.errors import UserError
    out = run("microgrid-solar", seed=2, out=tmp_path / "r", overrides=["horizon_h=3"])
    (out / "report.html").write_text("from the earlier run")
    with pytest.raises(UserError, match=r"holds a different run \(scenario\.horizon_h: 3\.0 -> 4\.0\)"):
        run("microgrid-solar", seed=2, out=out, overrides=["horizon_h=4"])
    with pytest.raises(UserError, match=r"seed: 2 -> 3"):
        run("microgrid-solar", seed=3, out=out, overrides=["horizon_h=3"])
    run("microgrid-solar", seed=2, out=out, overrides=["horizon_h=4"], overwrite=True)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["scenario"]["horizon_h"] == 4
    assert not (out / "report.html").exists()                # no stale file of the earlier run
    assert [p.name for p in tmp_path.iterdir()] == ["r"]     # no hidden leftovers


def test_a_folder_of_other_files_is_refused(tmp_path):
    from otmarl.scenarios.errors import UserError
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an otmarl run"):
        run("microgrid-solar", out=tmp_path / "mine", overrides=["horizon_h=3"])
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_an_interrupted_write_leaves_no_folder_under_the_final_name(tmp_path, monkeypatch):
    import otmarl.run as run_module
    calls = []

    def dies_on_the_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    real = run_module.write_table
    monkeypatch.setattr(run_module, "write_table", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        run("microgrid-solar", out=tmp_path / "r", overrides=["horizon_h=3"])
    assert list(tmp_path.iterdir()) == []        # neither the folder nor a hidden partial one


def test_default_folders_differ_by_overrides_and_engine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plain = run("microgrid-solar", overrides=[])
    assert plain.as_posix() == "runs/microgrid-solar-local-s0"
    a = run("microgrid-solar", overrides=["horizon_h=3"])
    b = run("microgrid-solar", overrides=["horizon_h=4"])
    ref = run("microgrid-solar", overrides=["horizon_h=3"], engine="reference")
    assert len({plain, a, b, ref}) == 4 and ref.name.startswith("microgrid-solar-local-s0-reference-")


def test_version_and_help_list_the_controllers(cli):
    from otmarl import __version__
    from otmarl.policies import REGISTRY
    v = cli("--version")
    assert v.returncode == 0 and v.stdout.strip() == f"otmarl {__version__}"
    h = cli("--help")
    assert h.returncode == 0 and "%%" not in h.stdout
    for command in ("validate", "scenarios", "policies", "run", "compare", "report", "train", "evaluate", "sweep"):
        sub = cli(command, "--help")
        assert sub.returncode == 0 and "%%" not in sub.stdout, command
    for name in REGISTRY:
        assert f"\n  {name} " in h.stdout, name


def test_policies_lists_every_parameter_and_the_docs_hold_the_same_table(cli):
    from pathlib import Path
    from otmarl.scenarios.controllers import all_params
    out = cli("policies")
    assert out.returncode == 0
    for name, field in all_params().items():
        assert f"\n  {name} = " in out.stdout and field.description, name
    md = cli("policies", "--markdown").stdout
    assert md.count("\n| `") == len(all_params())
    one = cli("policies", "mpc")
    assert one.returncode == 0 and "\n  mpc_horizon = 8 " in one.stdout and "solver" not in one.stdout
    assert "no parameters" in cli("policies", "local").stdout
    bad = cli("policies", "oot")
    assert bad.returncode == 2 and "did you mean 'ot'?" in bad.stderr
    docs = (Path(__file__).parents[1] / "docs" / "policies.md").read_text()
    table = docs.split("-->\n", 1)[1].split("<!-- params: end -->")[0]
    assert table == md, "docs/policies.md: paste the output of 'otmarl policies --markdown'"


def test_compare_pairs_every_policy_with_the_baseline_on_the_same_seeds(tmp_path, cli):
    import pandas as pd
    out = tmp_path / "c"
    r = cli("compare", "microgrid-solar", "--set", "horizon_h=6", "--seeds", "3", "--policies",
            "greedy,local,ot", "--out", str(out), "--quiet", "--report")
    assert r.returncode == 0, r.stderr
    assert "paired difference from local on the same seeds" in r.stdout
    paired = pd.read_csv(out / "paired.csv")
    assert set(paired["policy"]) == {"greedy", "ot"} and set(paired["baseline"]) == {"local"}
    runs = pd.read_csv(out / "runs.csv").set_index(["policy", "seed"])
    want = (runs.loc["ot", "dropped"] - runs.loc["local", "dropped"]).mean()
    got = paired.set_index(["policy", "metric"]).loc[("ot", "dropped"), "mean_diff"]
    assert got == want
    html = (out / "comparison.html").read_text()
    coloured = html.count('<td class="good">') + html.count('<td class="bad">')
    assert coloured <= int(paired["significant"].sum()) and "Against local" in html
    bad = cli("compare", "microgrid-solar", "--policies", "ot,greedy", "--baseline", "local",
              "--out", str(tmp_path / "d"))
    assert bad.returncode == 2 and "--baseline: 'local' is not one of --policies" in bad.stderr


def test_train_folders_follow_the_run_folder_rules(cli, tmp_path, monkeypatch):
    """A training lands whole under its name, is not redone, and a different one is refused."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    tiny = ["train", "microgrid-solar", "--steps", "48", "--n-envs", "1", "--num-steps", "24",
            "--horizon-h", "24", "--quiet"]
    first = cli(*tiny)
    assert first.returncode == 0, first.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("mappo-microgrid-solar-s0-")       # non-default arguments: hashed
    assert {p.name for p in folder.iterdir()} >= {"policy.json", "training.json", "actor.pt"}
    again = cli(*tiny)
    assert again.returncode == 0 and "already holds this training" in again.stderr
    other = cli(*tiny[:3], "72", *tiny[4:], "--out", str(folder))
    assert other.returncode == 2 and "args.total_steps: 48 -> 72" in other.stderr
    assert cli(*tiny[:3], "72", *tiny[4:], "--out", str(folder), "--overwrite").returncode == 0
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [folder.name]   # no partial left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    foreign = cli(*tiny, "--out", "mine")
    assert foreign.returncode == 2 and "holds files that are not an otmarl training" in foreign.stderr


def test_compare_refuses_a_folder_of_other_runs_unless_overwrite(cli, tmp_path):
    base = ["compare", "microgrid-solar", "--policies", "local", "--seeds", "1", "--quiet",
            "--out", str(tmp_path / "c")]
    assert cli(*base, "--set", "horizon_h=2").returncode == 0
    other = cli(*base, "--set", "horizon_h=3")
    assert other.returncode == 2 and "scenario.horizon_h: 2.0 -> 3.0" in other.stderr
    assert "--overwrite" in other.stderr
    assert cli(*base, "--set", "horizon_h=3", "--overwrite").returncode == 0


def test_a_reader_that_goes_away_ends_the_output_quietly():
    """`otmarl policies | head -1`: no traceback when the pipe closes."""
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "otmarl", "policies"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    proc.stdout.close()                        # before it writes anything
    err = proc.stderr.read().decode()
    proc.wait()
    assert "Traceback" not in err and "BrokenPipe" not in err and proc.returncode == 141, (proc.returncode, err)


def test_a_run_asks_numpy_for_small_pages(monkeypatch):
    """``small_pages`` turns numpy's huge-page advice off, unless NUMPY_MADVISE_HUGEPAGE is set."""
    from numpy._core import multiarray as m

    from otmarl.run import small_pages
    was = m._set_madvise_hugepage(True)
    try:
        monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
        small_pages()
        assert not m._get_madvise_hugepage()
        m._set_madvise_hugepage(True)
        monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
        small_pages()
        assert m._get_madvise_hugepage()
    finally:
        m._set_madvise_hugepage(was)
