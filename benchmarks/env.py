"""MARL env speed: agent-steps per second with random actions through the PettingZoo dict API,
at 17 and 100 agents (microgrid-solar with more homes), in direct and market mode.

    python benchmarks/env.py                    # the table
    python benchmarks/env.py --steps 2000 --repeats 3 --profile

Rows: 'dict API' is the steady-state rate (the episode is made long enough that no reset
happens while timing); 'with resets' includes building a new world every 72 epochs (the
built-in's 3-day episode). The reference rows time the simulator alone (no decisions) and the
env's numpy core without the dict layer, so the env's own overhead can be read off ('x sim' is
each row's time over the simulator's). Times are process CPU time (``time.process_time``): the
median of the repeats (run round robin) and the best one; on a shared machine wall time mostly
measures the other jobs.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from otmarl.policies.marl import EnvOptions, MarlCore, parallel_env
from otmarl.policies.marl.core import resolve_scenario
from otmarl.simulator import Simulation
from otmarl.simulator.control import Decision


def scenario(n: int, horizon_h: float):
    return resolve_scenario("microgrid-solar", [f"nodes.home.count={n}"], horizon_h)


def dict_api(n: int, mode: str, steps: int, horizon_h: float) -> float:
    """Seconds per env step through reset/step dicts (resets included when the horizon is short)."""
    env = parallel_env(scenario(n, horizon_h), mode=mode)
    rng = np.random.default_rng(0)
    nvec = np.array(env.action_space(env.possible_agents[0]).nvec)
    acts = rng.integers(0, nvec, (steps, n, len(nvec)))
    env.reset(seed=0)
    t = time.process_time()
    for k in range(steps):
        if not env.agents:
            env.reset()
        env.step(dict(zip(env.agents, acts[k])))
    return (time.process_time() - t) / steps


def core_api(n: int, mode: str, steps: int) -> float:
    core = MarlCore(scenario(n, steps + 1), EnvOptions(mode=mode))
    core.reset(0)
    acts = np.random.default_rng(0).integers(0, np.array(core.spec.nvec), (steps, n, len(core.spec.nvec)))
    t = time.process_time()
    for k in range(steps):
        core.masks()
        core.step(acts[k])
    return (time.process_time() - t) / steps


def simulator_only(n: int, steps: int) -> float:
    sim = Simulation(scenario(n, steps + 1), 0)
    t = time.process_time()
    for _ in range(steps):
        sim.observe()
        sim.step(Decision())
    return (time.process_time() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--agents", default="17,100")
    ap.add_argument("--profile", action="store_true", help="cProfile the direct-mode dict API at 17 agents")
    a = ap.parse_args()
    if a.profile:
        prof = Path(tempfile.mkdtemp()) / "env.prof"
        cProfile.runctx("dict_api(17, 'direct', a.steps, a.steps + 1)", globals(), {"a": a}, str(prof))
        pstats.Stats(str(prof)).sort_stats("tottime").print_stats(20)
        return
    print(f"{'agents':>6s} {'what':34s} {'ms/step':>8s} {'agent-steps/s':>14s} {'best':>10s} "
          f"{'x sim':>6s}")
    for n in (int(x) for x in a.agents.split(",")):
        cases = {"simulator only (no decisions)": lambda: simulator_only(n, a.steps)}
        for mode in ("direct", "market"):
            cases[f"{mode}: core arrays"] = lambda mode=mode: core_api(n, mode, a.steps)
            cases[f"{mode}: dict API"] = lambda mode=mode: dict_api(n, mode, a.steps, a.steps + 1)
            cases[f"{mode}: dict API with resets (72 h)"] = lambda mode=mode: dict_api(n, mode, a.steps, 72)
        times = {what: [] for what in cases}
        for _ in range(a.repeats):          # round robin, so that noise hits every row alike
            for what, f in cases.items():
                times[what].append(f())
        sim = statistics.median(times["simulator only (no decisions)"])
        for what, t in times.items():
            s = statistics.median(t)
            print(f"{n:6d} {what:34s} {s * 1e3:8.3f} {n / s:14,.0f} {n / min(t):10,.0f} {s / sim:6.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
