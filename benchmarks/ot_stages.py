"""Where a run under ot spends its time, stage by stage: sensor-field scaled (every class count
times ``--factor``, the radius shrunk to keep the mean degree), one run, no profiler.

    python benchmarks/ot_stages.py --factor 100                  # 100,000 nodes, one day: ~4 min
    python benchmarks/ot_stages.py --factor 10 --hours 6 --set controller.params.solver=exact

Each stage's functions are wrapped with a timer (a few microseconds a call, against seconds an
epoch at this scale), so the times are those of an ordinary run. A stage nested in another is
counted in both (the table says which); ``rest of decide`` is ot's time outside the stages named.
No run folder is written: the time is the simulation's, from the world's set-up to the last
epoch (``otmarl run`` adds the imports and the tables). Huge pages are off, as in ``otmarl run``.
"""
from __future__ import annotations

import argparse
import functools
import time
from collections import defaultdict

from engine import scaled

# (stage, module, object, attribute): every call of object.attribute counts to the stage
STAGES = [
    ("projection (market.projected)", "otmarl.policies.market", None, "projected"),
    ("energy pairs (bounded searches)", "otmarl.simulator.network", "NetworkState", "energy_pairs"),
    ("energy matrix (dense market)", "otmarl.simulator.network", "NetworkState", "energy_efficiency"),
    ("energy clearing (solve)", "otmarl.policies.ot", "OTController", "clear_energy"),
    ("transfers' paths (bounded searches)", "otmarl.simulator.network", "Paths", "prefetch_within"),
    ("task market (all of it)", "otmarl.policies.market", None, "task_market"),
    ("  of which full path rows", "otmarl.simulator.network", "PathView", "rows"),
    ("task clearing", "otmarl.policies.ot", "OTController", "clear_tasks"),
    ("ot decide (all of it)", "otmarl.policies.ot", "OTController", "decide"),
    ("world step (engine, settlement)", "otmarl.simulator.simulate", "Simulation", "step"),
    ("world set-up", "otmarl.simulator.simulate", "Simulation", "__init__"),
]


def wrap(totals: dict, calls: dict) -> None:
    import importlib
    for stage, module, owner, attr in STAGES:
        mod = importlib.import_module(module)
        host = mod if owner is None else getattr(mod, owner)
        fn = getattr(host, attr)

        def timed(*a, _fn=fn, _stage=stage, **k):
            t = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                totals[_stage] += time.perf_counter() - t
                calls[_stage] += 1
        setattr(host, attr, functools.wraps(fn)(timed))     # callers look the name up at each call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factor", type=int, default=100)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], dest="sets", help="another scenario override")
    a = ap.parse_args()
    totals: dict = defaultdict(float)
    calls: dict = defaultdict(int)
    wrap(totals, calls)
    from otmarl.policies import make_controller
    from otmarl.run import small_pages
    from otmarl.scenarios import load
    from otmarl.simulator.simulate import Simulation, run_to_end
    sets = scaled("sensor-field", a.factor) + ["controller.params.solver=hierarchical", f"horizon_h={a.hours:g}"]
    sc = load("sensor-field", sets + a.sets, "ot")
    small_pages()           # as ``otmarl.run.run`` does
    t0 = time.perf_counter()
    sim = Simulation(sc, a.seed, record_flows=False, narrow=True)
    run_to_end(sim, make_controller("ot"))
    wall = time.perf_counter() - t0
    n = sum(c.count for c in sc.nodes.values())
    print(f"sensor-field x{a.factor} ({n:,} nodes), {a.hours:g} h, seed {a.seed}, ot: {wall:.1f} s from set-up to "
          f"the last epoch\n\n| stage | seconds | calls | share |\n|---|---:|---:|---:|")
    named = 0.0
    for stage, *_ in STAGES:
        print(f"| {stage} | {totals[stage]:.1f} | {calls[stage]} | {totals[stage] / wall:.0%} |")
        if stage not in ("ot decide (all of it)", "world step (engine, settlement)", "world set-up",
                         "  of which full path rows"):
            named += totals[stage]
    rest = totals["ot decide (all of it)"] - named
    print(f"| rest of decide | {rest:.1f} | | {rest / wall:.0%} |")


if __name__ == "__main__":
    main()
