"""Reports of a real tiny run: every file, the Markdown and CSV contents, and report.html opened in
a real headless Chromium (every chart drawn, no request leaving the file, a screenshot).

Chromium is a system prerequisite (Debian: ``apt-get install chromium``); without it these tests
fail and say so.
"""
from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from otmarl.analysis import comparison_report, load_run, metrics, report
from otmarl.scenarios.errors import UserError

CHARTS = {"soc_band", "energy", "queue", "drops", "energy_flows", "task_flows", "map", "lorenz",
          "sorted", "classes"}


# -------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    from otmarl.run import run
    base = tmp_path_factory.mktemp("runs")
    return {p: run("microgrid-solar", policy=p, out=base / p, overrides=["horizon_h=24"])
            for p in ("random", "local")}


@pytest.fixture(scope="module")
def built(runs, tmp_path_factory) -> dict[str, Path]:
    return report(runs["random"], baseline=runs["local"], out=tmp_path_factory.mktemp("report"))


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is needed to test report.html and was not found on PATH; "
                    "install it with: apt-get update && apt-get install -y chromium")
    return exe


def browse(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    """Open ``page`` in headless Chromium with every host unresolvable; return the process."""
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp / 'chromium-profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000", *extra,
            page.resolve().as_uri()]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def page_requests(net_log: Path) -> list[str]:
    """URLs a web page asked for, from a Chromium net log.

    Chromium itself phones home (updates, accounts) even headless; those requests carry
    ``initiator: 'not an origin'``. Requests made by a page carry its origin ('null' for file://).
    """
    text = net_log.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:            # a log cut short lacks its closing brackets
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    kinds = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    return [ev["params"]["url"] for ev in log["events"]
            if kinds.get(ev["type"]) == "URL_REQUEST_START_JOB" and "url" in ev.get("params", {})
            and ev["params"].get("initiator") != "not an origin"]


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", png[16:24])


# ------------------------------------------------------------------------------ the files
def test_every_file_is_written(built, runs):
    assert set(built) == {"html", "md", "json", "nodes_csv", "fleet_csv", "fairness_csv", "kpis_csv"}
    for p in built.values():
        assert p.is_file() and p.stat().st_size > 0
    m = json.loads(built["json"].read_text())
    assert m == json.loads(json.dumps(metrics(runs["random"], baseline=runs["local"])))
    run = load_run(runs["random"])
    nodes = pd.read_csv(built["nodes_csv"])
    assert len(nodes) == run.n_nodes and {"service_ratio", "uptime", "final_soc", "throughput_wh"} <= set(nodes)
    fleet = pd.read_csv(built["fleet_csv"])
    assert len(fleet) == run.n_epochs == 24
    # the per-epoch tables are float32 on disk (7 digits); the exact ledger is the summary's
    np.testing.assert_allclose(fleet["harvested_wh"].sum(), run.summary["energy"]["harvested_wh"], rtol=1e-6)
    assert m["energy"]["ledger"]["harvested_wh"] == run.summary["energy"]["harvested_wh"]
    fair = pd.read_csv(built["fairness_csv"])
    assert set(fair["outcome"]) == {"service_ratio", "uptime", "final_soc"}
    kpis = pd.read_csv(built["kpis_csv"])
    assert {"kpi", "value", "baseline", "normalised"} <= set(kpis)
    on_time = kpis.set_index("kpi").loc["on_time_ratio"]
    np.testing.assert_allclose(on_time["normalised"], on_time["value"] / on_time["baseline"], rtol=1e-9)


def test_markdown_holds_the_summary_tables(built, runs):
    md = built["md"].read_text()
    s = json.loads((runs["random"] / "summary.json").read_text())
    assert md.startswith("# otmarl report: microgrid-solar / random / seed 0")
    for title in ("## Headline KPIs", "## Energy ledger (Wh)", "## Drops by reason",
                  "## Fairness across nodes", "## Fairness within each class"):
        assert title in md
    assert f"| generated | {s['tasks']['generated']:,} |" in md
    assert "| KPI | value | baseline | run / baseline |" in md


def test_a_report_names_the_run_it_was_made_from(built, runs):
    """The run's identity digest (resolved scenario, policy, seed, engine) and its summary's
    digest are in metrics.json and printed in both reports; another run gives other digests."""
    import hashlib
    m = json.loads(built["json"].read_text())
    meta = json.loads((runs["random"] / "metadata.json").read_text())
    ident = {k: meta[k] for k in ("scenario", "seed", "policy", "engine")}
    want = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert m["run"]["identity_sha256"] == want and m["run"]["engine"] == "fast"
    assert m["run"]["summary_sha256"] == hashlib.sha256(
        (runs["random"] / "summary.json").read_bytes()).hexdigest()[:16]
    assert m["baseline"]["run"]["identity_sha256"] != want
    for text in (built["md"].read_text(), built["html"].read_text()):
        assert f"run identity sha256 {want}" in text


def test_formats_and_output_folder(runs, tmp_path):
    paths = report(runs["random"], formats="md, json", out=tmp_path / "only")
    assert set(paths) == {"md", "json"}
    assert sorted(p.name for p in (tmp_path / "only").iterdir()) == ["metrics.json", "report.md"]


@pytest.mark.parametrize("kwargs,match", [
    ({"formats": "html,pdf"}, "'pdf': choose from html, md, csv, json"),
    ({"formats": ""}, "nothing given"),
    ({"baseline": "no/such/run"}, "does not exist"),
])
def test_user_errors(runs, tmp_path, kwargs, match):
    with pytest.raises(UserError, match=match):
        report(runs["random"], out=tmp_path, **kwargs)


def test_cli_report_exit_codes(runs, tmp_path, capsys):
    from otmarl.cli import main
    assert main(["report", str(runs["random"]), "--format", "md", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "report.md").is_file()
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_html_is_self_contained(built):
    page = built["html"].read_text()
    # no external resource of any kind: src/href/url() with a scheme or protocol-relative
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//|ftp:)""", page, re.I)
    assert not re.search(r"""url\(\s*["']?\s*(?:https?:|//)""", page, re.I)
    assert not re.search(r"@import|<link\b|<iframe\b|<img\b", page, re.I)
    for api in ("fetch(", "XMLHttpRequest", "WebSocket", "EventSource", "import(", "sendBeacon"):
        assert api not in page, api
    assert page.count("<script") == 2                    # the data and the chart kit, both inline
    assert len(re.findall(r'data-chart="([^"]+)"', page)) == len(CHARTS)


# ---------------------------------------------------------------------------- in Chromium
def assert_page_ok(check, charts: set[str], name: str, pictures: Path | None) -> None:
    """The three checks of a report page at 1280 px (no console error, no horizontal overflow,
    every chart drawn), and its screenshot (into --pictures DIR too, when given)."""
    assert check.errors == [], f"console errors: {check.errors}"
    assert check.viewport_width == 1280
    assert check.page_width <= 1280 and check.too_wide == [], \
        f"overflow at 1280 px: page {check.page_width} px wide; {check.too_wide}"
    assert check.charts == dict.fromkeys(charts, "ok"), check.charts
    assert png_size(check.png) == (1280, 900)
    assert len(check.png) > 40_000, len(check.png)         # a drawn page, not a blank one
    if pictures is not None:
        (pictures / f"{name}.png").write_bytes(check.png)


def test_run_report_in_chromium(built, browser, pictures):
    assert_page_ok(browser.check(built["html"]), CHARTS, "run-report", pictures)


def test_compare_report_in_chromium(tmp_path, cli, browser, pictures):
    """A real ``otmarl compare --report``: every metric's chart drawn, axes from the registry."""
    from otmarl.analysis.registry import LABELS
    out = tmp_path / "cmp"
    res = cli("compare", "microgrid-solar", "--policies", "local,greedy,ot", "--seeds", "3",
              "--set", "horizon_h=24", "--out", str(out), "--report")
    assert res.returncode == 0, res.stderr
    page = out / "comparison.html"
    assert_page_ok(browser.check(page), {f"cmp-{m}" for m in LABELS}, "compare-report", pictures)
    text = page.read_text()
    assert all(f'data-label="{label}"' in text for label in LABELS.values())
    table = pd.read_csv(out / "comparison.csv")
    if (table["ci_low"] < 0).any():        # a count's interval reaching below 0 is clipped, and said
        assert "Intervals clipped to the metric" in text and "dropped" in text.split("Intervals clipped")[1][:300]


def test_the_page_checks_can_fail(browser, tmp_path):
    """Each check catches its fault: a console error, an uncaught exception, a page wider than
    the window, a chart never drawn."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><body><div style="width:1500px">wide</div>'
                    '<div data-chart="a"></div><script>console.error("boom"); null.x</script></body>')
    check = browser.check(page)
    assert check.errors[0] == "console.error: boom" and check.errors[1].startswith("uncaught: TypeError")
    assert check.page_width > 1280 and "div" in check.too_wide
    assert check.charts == {"a": "not rendered"}


def test_no_request_leaves_the_file(built, tmp_path):
    log = tmp_path / "net.json"
    browse(built["html"], tmp_path, f"--log-net-log={log}", "--dump-dom")
    urls = page_requests(log)
    assert all(u.startswith(("file:", "data:", "blob:")) for u in urls), urls


def test_the_network_check_catches_a_request(tmp_path):
    """The net-log check above must be able to fail: a page that fetches is caught."""
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><img src="https://example.invalid/pixel.png">'
                    '<script>fetch("http://example.invalid/data.json").catch(() => 0)</script>')
    log = tmp_path / "net.json"
    browse(page, tmp_path, f"--log-net-log={log}", "--dump-dom")
    urls = page_requests(log)
    assert "https://example.invalid/pixel.png" in urls and "http://example.invalid/data.json" in urls


def test_comparison_report_renders(tmp_path, browser):
    table = pd.DataFrame({"policy": ["random", "ot", "random", "ot"],
                          "metric": ["on_time_ratio", "on_time_ratio", "dropped", "dropped"],
                          "mean": [0.8, 0.9, 12.0, 7.0], "ci_low": [0.75, 0.88, 10.0, np.nan],
                          "ci_high": [0.85, 0.92, 14.0, np.nan], "n": [5, 5, 5, 5]})
    paths = comparison_report(table, tmp_path / "cmp")
    md = paths["md"].read_text()
    assert "| on-time completion ratio | 0.8 [0.75, 0.85] | **0.9 [0.88, 0.92]** |" in md
    assert "| dropped | 12 [10, 14] | **7 [–, –]** |" in md
    assert_page_ok(browser.check(paths["html"]), {"cmp-on_time_ratio", "cmp-dropped"}, "", None)
    with pytest.raises(UserError, match="missing column"):
        comparison_report(table.drop(columns="ci_low"), tmp_path / "bad")


# ----------------------------------------------------------------------- budgets, by hand
def test_quantiser_keeps_four_significant_digits():
    from otmarl.analysis.report_assets import dumps_for_html, q
    vals = [0.1 + 0.2, 12345.6, 3.14159e-7, 0.0, float("nan"), -2.71828, 999.96]
    assert q(vals) == [0.3, 12350.0, 3.142e-07, 0.0, None, -2.718, 1000.0]
    assert json.dumps(q([0.1 + 0.2])) == "[0.3]"
    assert dumps_for_html({"s": "</script><!--"}) == '{"s":"<\\/script><\\!--"}'


def test_map_sample_keeps_every_class_within_budget():
    from otmarl.analysis.report_assets import MAX_MAP_NODES, map_nodes
    classes = ["sensor"] * 10_000 + ["shaded"] * 150 + ["head"] * 50
    nodes = pd.DataFrame({"node": np.arange(len(classes)), "class": classes})
    shown = map_nodes(nodes)
    assert len(shown) <= MAX_MAP_NODES + 40 and len(np.unique(shown)) == len(shown)
    counts = nodes.set_index("node").loc[shown, "class"].value_counts()
    assert counts["head"] >= 20 and counts["shaded"] >= 20 and counts["sensor"] >= 1900
    assert map_nodes(nodes.iloc[:500]).tolist() == list(range(500))     # few nodes: all of them


# ------------------------------------------------------------------ the payload, compactly
def test_map_soc_frames_are_packed_thousandths(runs):
    """Each map frame's SoC string decodes (two base-64 digits a node, report.js ``unpack``) to the
    thousandths of the shown nodes' SoC at the frame's last epoch."""
    from otmarl.analysis.report_assets import MAX_FRAMES, PACK_DIGITS, _buckets, map_data, pack_thousandths
    digit = {c: i for i, c in enumerate(PACK_DIGITS.tobytes().decode())}
    unpack = lambda s: [digit[s[2 * j]] * 64 + digit[s[2 * j + 1]] for j in range(len(s) // 2)]  # noqa: E731
    assert unpack(pack_thousandths(np.array([0.0, 0.0004, 0.0006, 0.5, 1.0, np.nan]))) == [0, 0, 1, 500, 1000, 0]
    run = load_run(next(iter(runs.values())))
    m = map_data(run)
    soc = run.grid("soc")
    frames = _buckets(run.n_epochs, MAX_FRAMES)
    last = np.append(frames[1:], run.n_epochs) - 1
    assert len(m["soc"]) == len(last)
    for k, packed in zip(last, m["soc"]):
        assert unpack(packed) == np.rint(soc[k, m["shown_ids"]] * 1000).astype(int).tolist()


def test_payload_json_is_json_dumps_of_the_payload(runs):
    """The payload written part by part and item by item is the same text json.dumps gives."""
    from otmarl.analysis.jsonable import dumps_by_items
    from otmarl.analysis.report_assets import dumps_for_html, payload, payload_json
    for folder in runs.values():
        run = load_run(folder)
        m = metrics(run)
        data = payload(run, m)
        assert payload_json(run) == dumps_for_html(data)
        assert dumps_by_items(data) == json.dumps(data, separators=(",", ":"), allow_nan=False)
    nested = {"a": [1, [2.5, None, "x</y", True], {"b": {}, "c": [[[[0.1]]]]}], "é": [], "n": {"1": -0.0}}
    assert dumps_by_items(nested) == json.dumps(nested, separators=(",", ":"), allow_nan=False)
    with pytest.raises(ValueError):
        dumps_by_items({"a": [[float("nan")]]})
