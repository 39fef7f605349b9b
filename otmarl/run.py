"""Running one experiment and writing its run folder."""
from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from otmarl.policies import make_controller
from otmarl.scenarios import Scenario, dump_yaml, load
from otmarl.scenarios.errors import UserError
from otmarl.simulator import RunResult, simulate

OUTPUT_FILES = ("metadata.json", "summary.json", "timeseries.parquet", "tasks.parquet",
                "flows.parquet", "nodes.parquet", "links.parquet")


def resolve_seed(seed: int | None) -> int:
    """``None`` means fresh entropy; the seed used is returned (and written to metadata)."""
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2**63))
    if seed < 0:
        raise UserError(f"--seed: value {seed} must be >= 0")
    return int(seed)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": platform.python_version()}
    for pkg in ("otmarl", "numpy", "scipy", "simpy", "pot", "networkx", "pandas", "pyarrow",
                "pydantic", "pvlib"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def policy_slug(policy: str) -> str:
    """A policy name fit for a folder name: 'marl:runs/mappo' -> 'marl-runs-mappo'."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", policy).strip("-") or "policy"


def run(scenario: str | os.PathLike | Scenario, *, policy: str | None = None, seed: int | None = 0,
        out: str | os.PathLike | None = None, overrides: Sequence[str] = (), engine: str = "fast",
        progress: Callable[[int, int], None] | None = None) -> Path:
    """Simulate a scenario (file, built-in name or Scenario) and write its run folder; return it."""
    sc = scenario if isinstance(scenario, Scenario) else load(scenario, overrides)
    if policy is not None:
        sc = sc.model_copy(update={"controller": sc.controller.model_copy(update={"policy": policy})})
    seed = resolve_seed(seed)
    controller = make_controller(sc.controller.policy)
    if out is None:
        out = Path("runs") / f"{sc.name}-{policy_slug(sc.controller.policy)}-s{seed}"
    out = Path(out)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    result = simulate(sc, controller, seed, engine=engine, progress=progress)
    wall = time.perf_counter() - t0
    meta = {"scenario": json.loads(sc.model_dump_json()), "scenario_yaml": dump_yaml(sc),
            "seed": seed, "policy": sc.controller.policy, "engine": engine,
            "versions": versions(), "argv": sys.argv[1:],
            "started_utc": started.isoformat(), "ended_utc": datetime.now(timezone.utc).isoformat(),
            "wall_s": wall}
    write_run(out, result, meta)
    return out


def write_run(out: Path, result: RunResult, meta: dict) -> None:
    """Write every file of a run; summary.json holds only seed-determined numbers."""
    out.mkdir(parents=True, exist_ok=True)
    for name, df in (("timeseries", result.timeseries), ("tasks", result.tasks),
                     ("flows", result.flows), ("nodes", result.nodes), ("links", result.links)):
        df.to_parquet(out / f"{name}.parquet", index=False, compression="zstd")
    (out / "summary.json").write_text(json.dumps(result.summary, indent=2, sort_keys=False) + "\n")
    (out / "metadata.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
