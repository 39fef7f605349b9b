"""``otmarl sweep``: three forms on one positional.

    otmarl sweep SWEEP.yaml [--out DIR] [--backend local|dask] [--address tcp://HOST:8786] [--jobs N]
    otmarl sweep summary DIR          # table, DIR/summary.csv, DIR/report.html
    otmarl sweep example              # a documented example sweep file on stdout

(A sweep file literally named 'summary' or 'example' is given as ./summary.) Exit codes: 0 every
run finished; 1 some runs failed (recorded in DIR/failures) or an internal error; 2 bad input;
130 interrupted (finished runs are kept: the same command resumes).
"""
from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from otmarl.progress import Progress

USAGE = ("otmarl sweep SWEEP.yaml [--out DIR] [--backend local|dask] [--address ADDR] [--jobs N]\n"
         "                         [--tables all|no-tasks|summary]\n"
         "       otmarl sweep summary DIR [--metrics LIST]\n"
         "       otmarl sweep example")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``sweep`` subcommand to the CLI's subparsers."""
    p = subparsers.add_parser(
        "sweep", usage=USAGE, help="what-if sweeps over parameters, policies and seeds (resumable)",
        description="Run a sweep file (parameter grid, zip or random design x policies x seeds) "
                    "locally with joblib or on a Dask cluster; a second run on the same --out "
                    "resumes. 'summary DIR' tabulates means and 95% CIs and writes "
                    "summary.csv and report.html; 'example' prints a documented sweep file.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="SWEEP.yaml|summary|example",
                   help="a sweep file, 'summary' (then DIR) or 'example'")
    p.add_argument("dir", nargs="?", metavar="DIR", help="with 'summary': the sweep's output folder")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/sweep-<file name>)")
    p.add_argument("--backend", default="local", choices=["local", "dask"],
                   help="local: joblib processes (default); dask: an existing Dask cluster")
    p.add_argument("--address", metavar="tcp://HOST:PORT",
                   help="Dask scheduler (default: $DASK_SCHEDULER_ADDRESS)")
    p.add_argument("--jobs", type=int, help="local processes (default: one per CPU; 1: in this process)")
    p.add_argument("--retries", type=int, default=1, help="Dask retries of a failed run (default 1)")
    p.add_argument("--metrics", metavar="LIST", help="metrics of the printed table, comma-separated, or 'all'")
    p.add_argument("--dry-run", action="store_true", help="validate and show the design; run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a sweep folder that holds another sweep (or this one with other tables)")
    return p


def cmd(args: argparse.Namespace) -> int:
    from otmarl.scenarios.errors import UserError
    if args.target == "example":
        if args.dir:
            raise UserError("sweep example: takes no folder")
        print(example_text(), end="")
        return 0
    if args.target == "summary":
        folder = args.dir or args.out
        if not folder:
            raise UserError("sweep summary: name the sweep's output folder: otmarl sweep summary DIR")
        return _summary(folder, args.metrics)
    if args.dir:
        raise UserError(f"sweep: unexpected argument '{args.dir}' (the output folder goes with --out)")
    return _run(args)


def example_text() -> str:
    return (resources.files("otmarl.scenarios") / "builtin" / "sweeps" / "example.yaml").read_text("utf-8")


def _metrics(text: str | None) -> list[str] | None:
    from otmarl.analysis.registry import METRICS
    from otmarl.scenarios.errors import UserError
    from otmarl.scenarios.overrides import did_you_mean
    if not text:
        return None
    names = list(METRICS) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    for m in names:
        if m not in METRICS:
            raise UserError(f"--metrics: unknown metric '{m}'{did_you_mean(m, list(METRICS))} "
                            f"(known: {', '.join(METRICS)})")
    return names


def _summary(folder: str, metrics: str | None) -> int:
    from otmarl.analysis.sweep_report import format_table, summarize
    names = _metrics(metrics)
    s = summarize(folder)
    print(format_table(s, names))
    print(f"{len(s.rows) - len(s.failed)} ok, {len(s.failed)} failed, {s.missing} not run; "
          f"written: {Path(folder) / 'summary.csv'}, {Path(folder) / 'report.html'}")
    return 1 if len(s.failed) else 0


def _run(a: argparse.Namespace) -> int:
    from otmarl.sweep import design, finished, load_sweep, sweep
    names = _metrics(a.metrics)
    sw = load_sweep(a.target)
    out = Path(a.out or f"runs/sweep-{Path(a.target).stem}")
    if a.dry_run:
        jobs = design(sw, out, a.tables)
        print(f"{a.target}: ok: {len(sw.points)} points x {len(sw.policies)} policies x "
              f"{sw.spec.seed_count} seeds = {len(jobs)} runs into {out} "
              f"({len(finished(jobs))} already done)")
        return 0
    progress = Progress(f"sweep {a.target}", unit="runs", quiet_s=0.0)
    try:
        with progress:
            res = sweep(sw, out, backend=a.backend, address=a.address, jobs=a.jobs,
                        retries=a.retries, progress=None if a.quiet else progress, tables=a.tables,
                        overwrite=a.overwrite)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the finished runs are kept in {out}: run the same command to resume",
              file=sys.stderr)
        return 130
    print(f"{out}: {res.total} runs: {len(res.skipped)} already done, {len(res.ran)} run now, "
          f"{len(res.failed)} failed, in {res.wall_s:.1f} s")
    code = _summary(str(out), ",".join(names) if names else None)
    if res.failed:
        print(f"{len(res.failed)} run(s) failed: errors in {out / 'failures'}; the same command "
              f"runs them again", file=sys.stderr)
    return code
