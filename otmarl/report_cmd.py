"""``otmarl report RUN_DIR [--baseline RUN_DIR [--allow-baseline-mismatch]] [--format html,md,csv,json]
[--out DIR]``."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to the CLI's subparsers."""
    p = subparsers.add_parser(
        "report", help="energy and fairness report of a run folder (HTML, Markdown, CSV, JSON)",
        description="Write report.html (self-contained, opens offline), report.md, metrics.json "
                    "and CSV tables for a run folder written by 'otmarl run'.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by 'otmarl run'")
    p.add_argument("--baseline", metavar="RUN_DIR",
                   help="a baseline run folder: every KPI is also given as run / baseline")
    p.add_argument("--allow-baseline-mismatch", action="store_true",
                   help="accept a baseline from another scenario, node count or horizon (else: "
                        "exit 2 naming the difference); the report then says they differ")
    p.add_argument("--format", default="html,md,csv,json", metavar="LIST",
                   help="comma-separated subset of html,md,csv,json (default: all)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR)")
    return p


def cmd(args: argparse.Namespace) -> int:
    """Run ``otmarl report``; user errors propagate as UserError (exit code 2 in the CLI)."""
    from otmarl.analysis.report import report
    paths = report(args.run_dir, baseline=args.baseline, formats=args.format, out=args.out,
                   allow_baseline_mismatch=args.allow_baseline_mismatch)
    for kind, path in paths.items():
        print(f"{kind:13s} {path}")
    return 0
