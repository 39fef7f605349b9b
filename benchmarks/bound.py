"""Speed of the hindsight bound and of the MPC controller.

For each scenario: the median wall time over ``--repeats`` of building and solving the
energy program (least unserved Wh) and the task program (most tasks on time) of seed 0, with the
program's size, against a baseline measured in the same run: one simulation of the scenario under
``local`` (building the world included). With ``--mpc``: the median time of a whole run under
``mpc`` (horizon ``--mpc-h``) against a whole run under ``ot``, and their ratio.

    python benchmarks/bound.py --scenarios edge-offload,sensor-field --repeats 1
    python benchmarks/bound.py --scenarios sensor-field --programs energy --repeats 3
    python benchmarks/bound.py --scenarios edge-offload --paired --repeats 3
    python benchmarks/bound.py --scenarios sensor-field --mpc --skip-bound --repeats 1
    python benchmarks/bound.py --scenarios sensor-field --mpc --skip-bound --mpc-set controller.params.mpc_task_weight=0
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

from otmarl.policies import make_controller
from otmarl.policies.hindsight import inputs_from_foresight, least_unserved, most_on_time
from otmarl.scenarios import load
from otmarl.simulator import simulate
from otmarl.simulator.foresight import foresee


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """(median wall s, median CPU s, last result) of ``fn`` over ``repeats`` calls."""
    wall, cpu, out = [], [], None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu), out


def run_time(name: str, sets: list[str], policy: str, repeats: int) -> tuple[float, float, object]:
    sc = load(name, sets, policy)
    return timed(lambda: simulate(sc, make_controller(policy), 0).summary, repeats)


PAIRED = {"energy": ("no-presolve", "no-presolve-cold"), "tasks": ("price", "price-cold")}
"""With --paired, each program solved the default way and the way it was solved before (the same
dual simplex from a cold start instead of the parts' bases), alternating repeat by repeat. Earlier
baselines: ("no-presolve", "scipy") and ("price", "scipy") (scipy's HiGHS with presolve; for tasks
every move open at once)."""


def bench_bound(name: str, sets: list[str], repeats: int, method: str, network: str,
                programs: tuple[str, ...] = ("energy", "tasks"), paired: bool = False) -> None:
    sc = load(name, sets)
    base_w, base_c, _ = run_time(name, sets, "local", repeats)
    x = inputs_from_foresight(foresee(sc, 0))
    K, n = x.shape
    for what, fn in (("energy", least_unserved), ("tasks", most_on_time)):
        if what not in programs:
            continue
        hows = PAIRED[what] if paired else PAIRED[what][:1]
        walls: dict[str, list[float]] = {h: [] for h in hows}
        found: dict[str, tuple[float, dict]] = {}
        for _ in range(repeats):
            for how in hows:
                w, _, found[how] = timed(lambda: fn(x, method, network, how), 1)
                walls[how].append(w)
        for how in hows:
            w, (value, size) = statistics.median(walls[how]), found[how]
            print(f"{name:16s} {n:5d} x {K:4d} {what:7s} {how:16s} {size['variables']:9d} {size['rows']:9d} "
                  f"{w:9.2f} {value:14.6g} {base_w:9.2f} {w / base_w:8.2f}", flush=True)
        size = found[hows[0]][1]
        if "moves" in size:
            print(f"{name:16s} {what}: {size['pricing_rounds']} solves, {size['moves_added']:,} of "
                  f"{size['moves']:,} moves added", flush=True)
        if paired:
            ratio = statistics.median(b / a for a, b in zip(*walls.values()))
            print(f"{name:16s} {what}: {hows[1]} / {hows[0]} wall time, median of paired ratios: {ratio:.2f}")


def bench_mpc(name: str, sets: list[str], repeats: int, horizon: int, mpc_sets: list[str]) -> None:
    mpc_sets = sets + [f"controller.params.mpc_horizon={horizon}"] + mpc_sets
    ow, oc, os_ = run_time(name, sets, "ot", repeats)
    mw, mc, ms = run_time(name, mpc_sets, "mpc", repeats)
    for pol, w, c, s in (("ot", ow, oc, os_), (f"mpc H={horizon}", mw, mc, ms)):
        print(f"{name:16s} {pol:10s} {w:9.2f} {c:9.2f} {s['energy']['unserved_wh']:12.6g} "
              f"{s['tasks']['completed_on_time']:9d} {s['nodes']['brownout_node_hours']:9.4g}", flush=True)
    print(f"{name:16s} mpc / ot wall time: {mw / ow:.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default="edge-offload,sensor-field")
    ap.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--method", default="simplex")
    ap.add_argument("--network", default="links", help="links or pool")
    ap.add_argument("--mpc", action="store_true", help="also time mpc against ot")
    ap.add_argument("--mpc-h", type=int, default=8)
    ap.add_argument("--mpc-set", action="append", default=[], metavar="PATH=VALUE",
                    help="for the mpc run only, e.g. controller.params.mpc_task_weight=0")
    ap.add_argument("--skip-bound", action="store_true")
    ap.add_argument("--programs", default="energy,tasks", help="which of the bound's programs to time")
    ap.add_argument("--paired", action="store_true", help="also time the former solve of each program")
    a = ap.parse_args()
    names = [s for s in a.scenarios.split(",") if s]
    if not a.skip_bound:
        print(f"{'scenario':16s} {'nodes x epochs':14s} {'program':7s} {'solve':16s} {'variables':>9s} "
              f"{'rows':>9s} {'wall s':>9s} {'optimum':>14s} {'local s':>9s} {'ratio':>8s}")
        for name in names:
            bench_bound(name, a.set, a.repeats, a.method, a.network, tuple(a.programs.split(",")), a.paired)
    if a.mpc:
        print(f"{'scenario':16s} {'policy':10s} {'wall s':>9s} {'cpu s':>9s} {'unserved Wh':>12s} "
              f"{'on time':>9s} {'brown n-h':>9s}")
        for name in names:
            bench_mpc(name, a.set, a.repeats, a.mpc_h, a.mpc_set)


if __name__ == "__main__":
    main()
