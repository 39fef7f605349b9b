"""Progress lines: the right units, 'resumed' only for work an earlier invocation did, a first
line at once and a heartbeat while nothing finishes (compare and sweep)."""
from __future__ import annotations

import io
import time

from otmarl.progress import Progress


class Log(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_a_run_counts_epochs_and_never_says_resumed():
    log = Log()
    p = Progress("run x", quiet_s=0.0, stream=log)
    p(1, 10)
    p(10, 10)
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("run x: 1/10 epochs, ") and "resumed" not in log.getvalue()
    assert lines[-1].startswith("run x: 10/10 epochs") and "epochs/s" in lines[-1]


def test_resumed_runs_are_shown_and_left_out_of_the_rate():
    log = Log()
    p = Progress("sweep s", unit="runs", quiet_s=0.0, stream=log)
    p(4, 10, 0, resumed=4)
    assert log.getvalue().startswith("sweep s: 4/10 runs (4 resumed), 0 runs/min")
    assert "ETA -" in log.getvalue()          # nothing run yet in this invocation


def test_runs_show_a_first_line_at_once_and_a_heartbeat_while_nothing_finishes():
    log = Log()
    with Progress("compare c", unit="runs", every_s=0.05, quiet_s=0.0, stream=log) as p:
        p(0, 6)
        assert log.getvalue().splitlines() == [log.getvalue().splitlines()[0]]
        assert log.getvalue().startswith("compare c: 0/6 runs, ")
        for _ in range(200):                  # wait for two heartbeats (no time limit asserted)
            if len(log.getvalue().splitlines()) >= 3:
                break
            time.sleep(0.02)
        p(6, 6)
    lines = log.getvalue().splitlines()
    assert len(lines) >= 4 and all(ln.startswith("compare c: ") for ln in lines)
    assert lines[-1].startswith("compare c: 6/6 runs") and "runs/min" in lines[-1]
    assert "resumed" not in log.getvalue()


def test_compare_progress_counts_runs(cli, tmp_path, capsys):
    r = cli("compare", "microgrid-solar", "--set", "horizon_h=3", "--seeds", "2", "--policies",
            "local,greedy", "--out", str(tmp_path / "c"))
    assert r.returncode == 0, r.stderr
    progress = [ln for ln in r.stderr.splitlines() if ln.startswith("compare microgrid-solar:")]
    assert progress[0].startswith("compare microgrid-solar: 0/4 runs")
    assert progress[-1].startswith("compare microgrid-solar: 4/4 runs")
    assert "epochs" not in r.stderr and "resumed" not in r.stderr
