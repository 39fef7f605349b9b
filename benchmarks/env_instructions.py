"""MARL env cost in CPU instructions per step (callgrind): a number a noisy shared machine does
not move, for comparing two versions of the code.

    python benchmarks/env_instructions.py                   # direct mode, 17 agents
    python benchmarks/env_instructions.py --mode market --agents 100 --steps 100

Needs valgrind. The script re-runs itself under ``valgrind --tool=callgrind`` with
instrumentation off, warms the env up (imports, the first epochs, route caches), switches
instrumentation on with ``callgrind_control`` for the measured steps only, and reads the total
from the callgrind output. Two workloads: steady state (one long episode, the ``dict API`` row of
benchmarks/env.py) and 72-hour episodes with a reset before each (the ``with resets`` row). Wall
time under valgrind is about 50 times the native time; the counts are deterministic for a given
build of Python and numpy (same seed, same actions).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _toggle(on: bool) -> None:
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
                   check=True, stdout=subprocess.DEVNULL)
    time.sleep(0.5)          # valgrind takes the command at its next poll


def child(a: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from env import scenario
    from otmarl.policies.marl import parallel_env

    episodes = a.workload == "episodes"
    env = parallel_env(scenario(a.agents, 72 if episodes else a.steps + 200), mode=a.mode)
    nvec = np.array(env.action_space(env.possible_agents[0]).nvec)
    acts = np.random.default_rng(0).integers(0, nvec, (a.steps + 200, a.agents, len(nvec)))
    env.reset(seed=0)
    warm = 72 if episodes else 100
    for k in range(warm):
        env.step(dict(zip(env.agents, acts[k])))
    _toggle(True)
    if episodes:
        for e in range(max(a.steps // 72, 1)):
            env.reset(seed=100 + e)
            for k in range(72):
                env.step(dict(zip(env.agents, acts[k])))
    else:
        for k in range(warm, warm + a.steps):
            env.step(dict(zip(env.agents, acts[k])))
    _toggle(False)


def measure(a: argparse.Namespace, workload: str) -> float:
    out = Path(tempfile.mkdtemp()) / "callgrind.out"
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
           sys.executable, __file__, "--child", "--workload", workload, "--mode", a.mode,
           "--agents", str(a.agents), "--steps", str(a.steps)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    total = 0
    for line in out.read_text().splitlines():
        m = re.match(r"(?:summary|totals):\s+(\d+)", line)
        if m:
            total = int(m.group(1))
    shutil.rmtree(out.parent)
    steps = a.steps if workload == "steady" else max(a.steps // 72, 1) * 72
    return total / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", default="direct", choices=("direct", "market"))
    ap.add_argument("--agents", type=int, default=17)
    ap.add_argument("--steps", type=int, default=288, help="measured steps (whole 72-h episodes "
                    "for the reset workload)")
    ap.add_argument("--workload", default="both", choices=("steady", "episodes", "both"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a)
        return
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        sys.exit("env_instructions.py needs valgrind (callgrind) on the PATH")
    print(f"{'agents':>6} {'mode':7} {'workload':28} {'instructions/step':>18}")
    for w in (("steady", "episodes") if a.workload == "both" else (a.workload,)):
        label = "steady state" if w == "steady" else "72-h episodes with resets"
        print(f"{a.agents:>6} {a.mode:7} {label:28} {measure(a, w):>18,.0f}", flush=True)


if __name__ == "__main__":
    main()
