"""The ``otmarl`` command line.

Exit codes: 0 success; 2 bad input (a message naming file:line:col, field, value and bound, and no
traceback); 1 an internal error.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import textwrap
from typing import Callable, Sequence

from otmarl import audit, bound_cmd, report_cmd, sweep_cmd, train_cmd
from otmarl.progress import Progress
from otmarl.scenarios.errors import InvariantError, OtmarlError, UserError
from otmarl.scenarios.schema import MANY_RUNS_DEFAULT_TABLES, RUN_DEFAULT_TABLES


def _cmd_validate(a) -> int:
    from otmarl.scenarios import load
    from otmarl.scenarios.errors import ScenarioError
    bad = 0
    for f in a.files:
        try:
            load(f, a.set)
            print(f"{f}: ok")
        except ScenarioError as e:
            bad += 1
            print(str(e), file=sys.stderr)
    return 2 if bad else 0


def _cmd_scenarios(a) -> int:
    from otmarl import scenarios as S
    if a.action == "list":
        for name in S.builtin_names():
            sc = S.load(name)
            first = " ".join(sc.description.split())[:90]
            print(f"{name:18s} {sc.n_nodes:6d} nodes {sc.horizon_h:6g} h  {first}")
    elif a.action == "show":
        if not a.name:
            raise UserError("scenarios show: name a built-in scenario (see 'otmarl scenarios list')")
        print(S.builtin_path(a.name).read_text() if a.name in S.builtin_names()
              else S.dump_yaml(S.load(a.name)), end="")
    else:
        print(json.dumps(S.json_schema(), indent=2))
    return 0


def _cmd_policies(a) -> int:
    from otmarl.scenarios.controllers import params_markdown, params_table, policy_problem, policy_tag
    if a.markdown:
        print(params_markdown(), end="")
        return 0
    if a.name is None:
        print("controllers (otmarl run SCENARIO --policy NAME; otmarl policies NAME: its parameters):")
        print(_controller_lines())
        print("\nparameters (the scenario's controller.params, or --set controller.params.NAME=VALUE):")
        rows = params_table()
    else:
        tag = policy_tag(a.name if a.name != "marl" else "marl:DIR")
        if tag is None:
            raise UserError(policy_problem(a.name))
        rows = params_table(tag)
        print(_controller_lines(tag))
        print(f"\nparameters ({len(rows)}; the scenario's controller.params, or --set "
              "controller.params.NAME=VALUE):" if rows else "\nno parameters")
    for name, readers, default, allowed, meaning in rows:
        print(f"  {name} = {default}   ({allowed}; read by {readers})")
        print(textwrap.fill(meaning, 100, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return 0


def _controller_lines(only: str | None = None) -> str:
    """One wrapped line per controller of the registry, then marl:DIR (``only``: that one)."""
    from otmarl.policies import REGISTRY
    lines = [textwrap.fill(_first_sentence(c.__doc__) or "-", 100, initial_indent=f"  {name:14s} ",
                           subsequent_indent=" " * 17) for name, c in REGISTRY.items()
             if only in (None, name)]
    if only in (None, "marl"):
        lines.append(f"  {'marl:DIR':14s} a MARL policy trained by 'otmarl train --out DIR'")
    return "\n".join(lines)


def _cmd_run(a) -> int:
    from otmarl.run import run
    seed = None if a.seed == "random" else _int(a.seed, "--seed")
    out = run(a.scenario, policy=a.policy, seed=seed, out=a.out, overrides=a.set, engine=a.engine,
              progress=None if a.quiet else Progress(f"run {a.scenario}"), overwrite=a.overwrite,
              notice=lambda msg: print(msg, file=sys.stderr), tables=a.tables)
    s = json.loads((out / "summary.json").read_text())
    t, e = s["tasks"], s["energy"]
    done = t["completed_on_time"] + t["completed_late"]
    print(f"{out}: {t['generated']} tasks, {t['completed_on_time']} on time, "
          f"{done - t['completed_on_time']} late, {sum(t['dropped'].values())} dropped; "
          f"harvested {e['harvested_wh'] / 1000:.3g} kWh, transport loss {e['transport_loss_wh']:.3g} Wh, "
          f"brownout {s['nodes']['brownout_node_hours']:.3g} node-h")
    if a.report:
        from otmarl.analysis import report
        written = report(out)
        print(f"report: {written['html']}")
    return 0


def _cmd_compare(a) -> int:
    from otmarl.analysis.stats import format_paired_table
    from otmarl.compare import GAPS, METRICS, compare, format_table, read_paired
    pols = [p.strip() for p in a.policies.split(",") if p.strip()]
    seeds = _int(a.seeds, "--seeds")
    out = a.out or _compare_folder(a.scenario, a.set)
    with Progress(f"compare {a.scenario}", unit="runs", quiet_s=0.0) as progress:
        table = compare(a.scenario, pols, seeds, out, overrides=a.set, jobs=a.jobs,
                        progress=None if a.quiet else progress, baseline=a.baseline, tables=a.tables,
                        overwrite=a.overwrite, bound=a.bound)
    print(format_table(table))
    paired = read_paired(out)
    if len(paired):
        base = paired["baseline"].iloc[0]
        print(f"\npaired difference from {base} on the same seeds (mean ± 95 % CI half-width; "
              "* the interval excludes 0)")
        print(format_paired_table(paired, METRICS))
    print(f"written: {out}/comparison.csv, {out}/paired.csv, {out}/comparison.json, {out}/runs.csv"
          + (f", {out}/bound.csv" if a.bound else ""))
    if a.report:
        from otmarl.analysis import comparison_report
        written = comparison_report(table, out, title=f"{a.scenario}: policies compared",
                                    labels={**METRICS, **GAPS}, paired=paired)
        print(f"report: {written['html']}")
    return 0


def _compare_folder(scenario: str, overrides: Sequence[str]) -> str:
    """runs/compare-<scenario>, with a short hash of the overrides when --set is given, so that
    two what-ifs never share a default folder (a run folder inside that holds a different run is
    refused anyway)."""
    name = f"runs/compare-{scenario.replace('/', '_')}"
    if overrides:
        name += "-" + hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:6]
    return name


TABLES_HELP = ("which tables each run folder holds besides summary.json and metadata.json: "
               "'all' (every table, with one row per task in tasks.parquet), 'no-tasks' (all "
               "but tasks.parquet; reports still draw every chart) or 'summary' (no tables; "
               "reports show the summary and say which --tables would draw each chart)")


def add_tables_option(p: argparse.ArgumentParser, default: str) -> None:
    """``--tables`` of run, compare and sweep (the choices: ``schema.TABLE_CHOICES``)."""
    from otmarl.scenarios.schema import TABLE_CHOICES
    p.add_argument("--tables", default=default, choices=list(TABLE_CHOICES),
                   help=f"{TABLES_HELP} (default: {default})")


def _int(v: str, what: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise UserError(f"{what}: value '{v}' must be a whole number >= 0 or 'random'") from None


COMMANDS: dict[str, Callable] = {
    "validate": _cmd_validate, "scenarios": _cmd_scenarios, "policies": _cmd_policies, "run": _cmd_run, "compare": _cmd_compare,
    "report": report_cmd.cmd, "train": train_cmd.cmd_train, "evaluate": train_cmd.cmd_evaluate,
    "sweep": sweep_cmd.cmd, "audit": audit.cmd, "bound": bound_cmd.cmd}


class _Parser(argparse.ArgumentParser):
    """The top-level parser; its --help also lists the controllers (read from the registry
    only when help is asked for, so that other commands do not import the policies)."""

    def format_help(self) -> str:
        return (super().format_help() + "\ncontrollers (run/compare --policy; their parameters: "
                "otmarl policies):\n" + _controller_lines() + "\n")


def _first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").split()).replace("``", "")
    return text.split(". ")[0].rstrip(".") if text else ""


def parser() -> argparse.ArgumentParser:
    from otmarl import __version__
    p = _Parser(prog="otmarl", description="Energy-aware resource allocation "
                "simulator: optimal transport and multi-agent RL.")
    p.add_argument("--version", action="version", version=f"otmarl {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check scenario files; report every problem at once")
    v.add_argument("files", nargs="+")
    v.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    s = sub.add_parser("scenarios", help="the built-in scenario library")
    s.add_argument("action", choices=["list", "show", "schema"])
    s.add_argument("name", nargs="?")
    pol = sub.add_parser("policies", help="the controllers and their parameters (defaults, bounds)")
    pol.add_argument("name", nargs="?", help="one controller (local, ..., ot, mpc, marl): its parameters")
    pol.add_argument("--markdown", action="store_true", help="the parameters as a Markdown table")
    r = sub.add_parser("run", help="simulate a scenario and write a run folder")
    r.add_argument("scenario", help="a scenario file or a built-in name")
    r.add_argument("--policy", help="controller (default: the scenario's controller.policy)")
    r.add_argument("--seed", default="0", help="root seed (default 0), or 'random'")
    r.add_argument("--out", help="run folder (default runs/<scenario>-<policy>-s<seed>, then "
                   "-<engine> for another engine and -<hash> of the scenario when --set changed it)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace a folder that holds a different run (else: exit 2 naming the difference)")
    r.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="override a scenario field, e.g. --set horizon_h=24")
    r.add_argument("--engine", default="fast", help="fast (default) or reference")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    r.add_argument("--report", action="store_true", help="also write report.html/md and CSV/JSON tables")
    add_tables_option(r, RUN_DEFAULT_TABLES)
    c = sub.add_parser("compare", help="policies side by side across seeds (mean and 95%% CI)")
    c.add_argument("scenario")
    c.add_argument("--policies", default="local,greedy,proportional,ot")
    c.add_argument("--seeds", default="5", help="number of seeds (0..N-1)")
    c.add_argument("--out", help="folder for the runs and the table")
    c.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    c.add_argument("--jobs", type=int, default=1, help="parallel runs (joblib processes)")
    c.add_argument("--baseline", help="the policy every other is compared with, seed by seed "
                   "(default: local if listed, else the first)")
    c.add_argument("--quiet", action="store_true")
    c.add_argument("--report", action="store_true", help="also write comparison.html/md")
    c.add_argument("--overwrite", action="store_true", help="replace run folders under --out that "
                   "hold other runs (else: exit 2 naming the difference)")
    c.add_argument("--bound", action="store_true", help="also solve the hindsight bound of each "
                   "seed and show every policy's gap to it (see 'otmarl bound')")
    add_tables_option(c, MANY_RUNS_DEFAULT_TABLES)
    report_cmd.add_parser(sub)
    train_cmd.add_parser(sub)
    add_tables_option(sweep_cmd.add_parser(sub), MANY_RUNS_DEFAULT_TABLES)
    audit.add_parser(sub)
    bound_cmd.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()          # a closed pipe shows here, not in the interpreter's last flush
        return code
    except UserError as e:
        print(f"otmarl {args.command}: error:\n{e}" if "\n" in str(e) else f"otmarl {args.command}: {e}",
              file=sys.stderr)
        return 2
    except InvariantError as e:
        print(f"otmarl {args.command}: internal error: invariant violated: {e}", file=sys.stderr)
        return 1
    except OtmarlError as e:
        print(f"otmarl {args.command}: internal error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (otmarl policies | head): stop quietly, as Unix tools do; point
        # stdout at nothing so that the interpreter's final flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
