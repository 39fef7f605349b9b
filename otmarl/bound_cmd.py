"""``otmarl bound``: the hindsight bound of one run (``policies/hindsight.py``), printed and written
as bound.json.

The bound is what no controller can beat on the same scenario and seed: the least unserved idle
energy and the most tasks completed on time, each from one linear program over the whole horizon
with perfect knowledge of harvest, failures and arrivals (docs/model.md, "The hindsight bound").
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from otmarl.scenarios.errors import UserError

METHODS = ("ipm", "simplex", "highs")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``bound`` subcommand to the CLI's subparsers."""
    p = subparsers.add_parser(
        "bound", help="the hindsight bound of a run: least unserved Wh, most tasks on time",
        description="Solve the horizon linear program with perfect knowledge of the run's harvest, "
                    "failures and task arrivals: no controller does better on the same scenario "
                    "and seed. Writes bound.json into --out when given.")
    p.add_argument("scenario", help="a scenario file or a built-in name")
    p.add_argument("--seed", default="0", help="root seed (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="override a scenario field, e.g. --set horizon_h=6")
    p.add_argument("--out", metavar="DIR", help="folder for bound.json")
    p.add_argument("--method", default="simplex", help="HiGHS method: simplex (default, dual "
                   "simplex), ipm (interior point without crossover) or highs (HiGHS chooses)")
    p.add_argument("--network", default="links", help="transfers: links (default, a flow per link "
                   "with its loss) or pool (each connected part one pool: smaller, looser)")
    p.add_argument("--no-tasks", action="store_true", help="only the energy program")
    return p


def cmd(args: argparse.Namespace) -> int:
    """Run ``otmarl bound``; user errors propagate as UserError (exit code 2 in the CLI)."""
    from otmarl.policies.hindsight import hindsight_bound
    from otmarl.scenarios import load
    try:
        seed = int(args.seed)
    except ValueError:
        raise UserError(f"--seed: '{args.seed}' is not an integer") from None
    if args.network not in ("links", "pool"):
        raise UserError(f"--network: unknown value '{args.network}' (known: links, pool)")
    if args.method not in METHODS:
        raise UserError(f"--method: unknown method '{args.method}' (known: {', '.join(METHODS)})")
    sc = load(args.scenario, args.set)
    b = hindsight_bound(sc, seed, tasks=not args.no_tasks, method=args.method, network=args.network)
    share = b.unserved_wh / b.idle_demand_wh if b.idle_demand_wh else 0.0
    print(f"{sc.name} seed {seed}: unserved idle energy >= {b.unserved_wh:.6g} Wh "
          f"({share:.3%} of {b.idle_demand_wh:.6g} Wh demanded)")
    if not args.no_tasks:
        print(f"tasks completed on time <= {b.on_time_tasks:.6g} of {b.generated_tasks} generated")
    secs = ", ".join(f"{k} {v:.3g} s" for k, v in b.seconds.items())
    print(f"solved in {secs}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bound.json").write_text(json.dumps(
            {"scenario": sc.name, "seed": seed, "method": args.method, "network": args.network,
             **b.as_dict()}, indent=2) + "\n")
        print(f"written: {out / 'bound.json'}")
    return 0
