"""How far above the optimum does the entropic solver clear the allocator's own markets?

    python benchmarks/entropic_gap.py [--epochs 48] [--regs 1e-2,3e-3,1e-3]

Runs each built-in under ot (exact solver) and, at every epoch up to ``--epochs``, solves the
epoch's energy market again with sinkhorn at each ``reg``: the gap is the transport cost plus
unserved penalties of the sinkhorn plan over the exact one's, relative to the exact one. Prints the
median, 90th percentile and maximum over the markets that trade, and the mean time per solve.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from otmarl.policies import market as M
from otmarl.policies.clearing import can_trade
from otmarl.policies.ot import OTController
from otmarl.policies.transport import SinkhornOptions, solve
from otmarl.scenarios import load
from otmarl.simulator.simulate import Simulation


def markets(name: str, epochs: int, seed: int = 0):
    """(kind, supply, demand, cost, penalty) of each epoch's energy and task markets that trade."""
    sc = load(name)
    sim = Simulation(sc, seed, record_flows=False)
    ctl = OTController()
    ctl.reset(sim.world.info(), sim.world.rng["policy"])
    out = []
    while not sim.done and sim.k < epochs:
        obs = sim.observe()
        mk = M.build_markets(obs, ctl.info, ctl.p)
        em, tm = mk.energy, mk.tasks
        if can_trade(em):
            pen = (np.zeros(len(em.offers.nodes)), ctl.p.max_loss * np.ones(len(em.requests.nodes)))
            out.append(("energy", em.offers.amount, em.demand_sent, em.cost, pen))
        if can_trade(tm):
            out.append(("tasks", tm.offers.amount.astype(float), tm.requests.amount.astype(float),
                         tm.cost, None))
        sim.step(ctl.clear(obs, mk).decision)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=48)
    ap.add_argument("--regs", default="1e-2,3e-3,1e-3")
    ap.add_argument("--scenarios", default="microgrid-solar,edge-offload,sensor-field")
    a = ap.parse_args(argv)
    regs = [float(r) for r in a.regs.split(",")]
    print(f"{'scenario/market':22s} {'reg':>7s} {'markets':>7s} {'median':>8s} {'p90':>8s} {'max':>8s} {'ms/solve':>9s}")
    for name in a.scenarios.split(","):
        every = markets(name, a.epochs)
        for kind, reg in ((k, r) for k in ("energy", "tasks") for r in regs):
            ms = [m[1:] for m in every if m[0] == kind]
            exact = [solve(s, d, c, "exact", penalty=p) for s, d, c, p in ms]
            gaps, loss, t0 = [0.0], [0.0], time.perf_counter()
            for (s, d, c, p), opt in zip(ms, exact):
                r = solve(s, d, c, "sinkhorn", penalty=p, options=SinkhornOptions(reg=reg))
                gaps.append((r.total_cost - opt.total_cost) / max(abs(opt.total_cost), 1e-12))
                if opt.value > 1e-9:
                    loss.append((r.value - opt.value) / opt.value)
            ms_per = (time.perf_counter() - t0) / max(len(ms), 1) * 1e3
            g, v = np.array(gaps) * 100, np.array(loss) * 100
            print(f"{name + '/' + kind:22s} {reg:7.0e} {len(ms):7d} {np.median(g):7.3f}% "
                  f"{np.percentile(g, 90):7.3f}% {g.max():7.3f}% {ms_per:9.2f}   transport cost "
                  f"alone: median {np.median(v):+.2f}%, max {v.max():+.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
