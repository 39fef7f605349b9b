"""What-if sweeps: a base scenario over a design of parameter values, policies and seeds, run
locally (joblib) or on a Dask cluster, resumable.

>>> from otmarl.sweep import sweep
>>> result = sweep("my-sweep.yaml", "runs/my-sweep", jobs=2)       # doctest: +SKIP
>>> result = sweep("my-sweep.yaml", "runs/my-sweep", backend="dask",
...                address="tcp://scheduler:8786")                  # doctest: +SKIP

The output folder::

    DIR/sweep.json              the design: every run's key, point, seed, policy and parameters
    DIR/sweep.yaml              a copy of the sweep file
    DIR/runs/<key>/             a run folder (summary.json, the tables of --tables) and its row.parquet
    DIR/failures/<key>.json     error and traceback of a failed run
    DIR/summary.csv, report.html   written by ``otmarl.analysis.sweep_report.summarize``

Seeds: with ``seeds: N``, the run at point p and seed index s (of N) gets
``SeedSequence(root_seed).spawn(P * N)[p * N + s]`` (P points), reduced to an int; with a list,
the listed seeds themselves at every point. Every policy at (p, s) gets the same seed, so policies
are compared on the same random draws. Runs are keyed by the sha256 of the canonical JSON of
(resolved scenario, policy, seed): results are the same on every backend and in every order, and a
second invocation on DIR skips every run whose row says 'ok' (failed runs are run again). Rows of
runs no longer in the design (after editing the sweep file) stay on disk, out of the summary.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from otmarl.run import holds_kind, refuse_other
from otmarl.scenarios.controllers import with_policy
from otmarl.scenarios.errors import UserError
from otmarl.scenarios.schema import MANY_RUNS_DEFAULT_TABLES, check_tables
from otmarl.scenarios.sweep_loader import load_sweep as _load_sweep
from otmarl.scenarios.sweep_schema import Sweep
from otmarl.sweep_backends import ROW, Job, dask_runs, joblib_runs, read_status, sequential

__all__ = ["sweep", "load_sweep", "design", "run_key", "run_seeds", "SweepResult"]

BACKENDS = ("local", "dask")
MANIFEST = "sweep.json"
#: progress(done, total, failed, resumed=k): done counts the k runs finished before this
#: invocation too.
ProgressFn = Callable[..., None]


def load_sweep(source: str | os.PathLike, policies: Collection[str] | None = None) -> Sweep:
    """Load a sweep file, checking policy names against the registered controllers."""
    if policies is None:
        from otmarl.policies import REGISTRY
        policies = REGISTRY
    return _load_sweep(source, policies)


# --------------------------------------------------------------------------------- design
def run_seeds(root_seed: int, n_points: int, seeds: int | tuple[int, ...]) -> list[list[int]]:
    """[point][seed index] -> the run seed (see the module docstring)."""
    if not isinstance(seeds, int):
        return [list(seeds) for _ in range(n_points)]
    kids = np.random.SeedSequence(root_seed).spawn(n_points * seeds)
    # one 64-bit word, shifted to fit a non-negative int64 (Parquet, JSON, otmarl run --seed)
    return [[int(kids[p * seeds + s].generate_state(1, np.uint64)[0] >> np.uint64(1))
             for s in range(seeds)] for p in range(n_points)]


def run_key(scenario_json: dict, policy: str, seed: int) -> str:
    """First 16 hex digits of the sha256 of the canonical JSON of (scenario, policy, seed)."""
    doc = json.dumps({"scenario": scenario_json, "policy": policy, "seed": seed}, sort_keys=True,
                     separators=(",", ":"), default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def param_kinds(sw: Sweep) -> dict[str, str]:
    """Column type of each swept path, the same for every row (DuckDB reads them as one table)."""
    out = {}
    for p in sw.params:
        vals = [pt.params[p] for pt in sw.points]
        if all(isinstance(v, bool) for v in vals):
            out[p] = "bool"
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            out[p] = "int"
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[p] = "float"
        elif not any(isinstance(v, (dict, list, tuple)) for v in vals):
            out[p] = "str"
        else:
            out[p] = "json"
    return out


def column_value(v: Any, kind: str) -> Any:
    if kind == "json":
        return json.dumps(v, sort_keys=True, default=str)
    return {"int": int, "float": float, "bool": bool, "str": str}[kind](v)


def design(sw: Sweep, out: str | os.PathLike, tables: str = MANY_RUNS_DEFAULT_TABLES) -> list[Job]:
    """Every run of the sweep in design order (point, seed, policy); a run that repeats an earlier
    one (same scenario, policy and seed) is left out. ``tables``: what each run folder holds."""
    kinds = param_kinds(sw)
    seeds = run_seeds(sw.spec.root_seed, len(sw.points), sw.spec.seeds)
    jobs, seen = [], set()
    for p, pt in enumerate(sw.points):
        params = {k: column_value(v, kinds[k]) for k, v in pt.params.items()}
        by_policy = {}
        for pol in sw.policies:
            sc = pt.scenario.model_copy(update={"controller": with_policy(pt.scenario.controller, pol)})
            by_policy[pol] = (sc, json.loads(sc.model_dump_json()))
        for s, seed in enumerate(seeds[p]):
            for pol in sw.policies:
                sc, js = by_policy[pol]
                key = run_key(js, pol, seed)
                if key not in seen:
                    seen.add(key)
                    jobs.append(Job(key, len(jobs), p, s, seed, pol, params, kinds, sc, os.fspath(out),
                                    check_tables(tables)))
    return jobs


def write_manifest(out: Path, sw: Sweep, jobs: list[Job], tables: str = MANY_RUNS_DEFAULT_TABLES,
                   overwrite: bool = False) -> None:
    """sweep.json and sweep.yaml. A folder that holds this very sweep is kept (its finished runs
    are resumed); one that holds another sweep (other parameters, policies, seeds, design points,
    base scenario or tables) or files that are not a sweep is a UserError naming the difference,
    unless ``overwrite``, which empties it first."""
    if overwrite:
        _empty_sweep_folder(out)
    else:
        _refuse_other_sweep(out, sweep_identity(sw, jobs, tables))
    out.mkdir(parents=True, exist_ok=True)
    doc = {"name": sw.spec.name or Path(sw.source).stem, "description": sw.spec.description,
           "source": sw.source, "base": sw.base, "params": list(sw.params),
           "kinds": jobs[0].kinds if jobs else {}, "policies": list(sw.policies),
           "root_seed": sw.spec.root_seed, "n_points": len(sw.points), "tables": tables,
           "runs": [{"key": j.key, "run": j.run, "point": j.point, "seed_index": j.seed_index,
                     "seed": j.seed, "policy": j.policy, "params": j.params} for j in jobs]}
    _atomic_text(out / MANIFEST, json.dumps(doc, indent=1) + "\n")
    _atomic_text(out / "sweep.yaml", sw.text)


def sweep_identity(sw: Sweep, jobs: list[Job], tables: str) -> dict:
    """What makes two sweeps the same sweep, in the terms of sweep.json: parameters, policies,
    root seed, tables, each run's point, seed, policy and parameters, and the run keys (which
    also carry the resolved scenario of every run)."""
    return _identity({"params": list(sw.params), "policies": list(sw.policies),
                      "root_seed": sw.spec.root_seed, "tables": tables,
                      "runs": [{"key": j.key, "point": j.point, "seed": j.seed, "policy": j.policy,
                                "params": j.params} for j in jobs]})


def _identity(doc: dict) -> dict:
    """The identity of a sweep.json document (see ``sweep_identity``); runs listed by point."""
    runs = doc["runs"]
    points: dict[int, dict] = {}
    for r in runs:
        points.setdefault(r["point"], r["params"])
    return {"params": doc["params"], "policies": doc["policies"], "root_seed": doc["root_seed"],
            "tables": doc.get("tables", "all"),        # before --tables: every table
            "points": [points[k] for k in sorted(points)],
            "seeds": sorted({r["seed"] for r in runs}),
            "keys": sorted(r["key"] for r in runs)}


def _refuse_other_sweep(out: Path, new: dict) -> None:
    if not holds_kind(out, MANIFEST, "sweep"):
        return
    try:
        old = _identity(json.loads((out / MANIFEST).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"--out: '{out}' holds a sweep whose {MANIFEST} cannot be read; pass "
                        "--overwrite to replace it") from None
    old_keys, new_keys = set(old.pop("keys")), set(new.pop("keys"))
    held, tables = old.pop("tables"), new.pop("tables")
    if old == new and old_keys == new_keys and held != tables:
        raise UserError(f"--out {out}: holds this sweep written with --tables {held}, not {tables}; "
                        f"pass --tables {held} to resume it, or --overwrite to run it again")
    if old == new and old_keys != new_keys:      # same design: the base scenario differs
        gone = len(old_keys - new_keys)
        old, new = {"base scenario": f"{gone} of its {len(old_keys)} runs"}, {"base scenario": "differs"}
    refuse_other(out, old, new, "sweep")


def _empty_sweep_folder(out: Path) -> None:
    """Remove ``out`` for --overwrite, if it holds a sweep, nothing, or only hidden files (never a
    folder of something else)."""
    if holds_kind(out, MANIFEST, "sweep", "remove them yourself: --overwrite "
                  "replaces only sweep folders"):
        shutil.rmtree(out)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def finished(jobs: list[Job]) -> set[str]:
    """Keys of the runs whose row says 'ok'."""
    rows = [j.folder / ROW for j in jobs if (j.folder / ROW).exists()]
    return {k for k, status in read_status(rows).items() if status == "ok"}


# ---------------------------------------------------------------------------------- sweep
@dataclass
class SweepResult:
    out: Path
    total: int
    """Runs in the design."""
    skipped: list[str] = field(default_factory=list)
    """Keys already done before this invocation."""
    ran: list[str] = field(default_factory=list)
    """Keys run by this invocation (finished or failed)."""
    failed: list[str] = field(default_factory=list)
    """Keys that failed in this invocation."""
    rows: list[dict] = field(default_factory=list)
    """The rows of this invocation's runs."""
    wall_s: float = 0.0


def sweep(source: str | os.PathLike | Sweep, out: str | os.PathLike, *, backend: str = "local",
          address: str | None = None, jobs: int | None = None, retries: int = 1,
          progress: ProgressFn | None = None, tables: str = MANY_RUNS_DEFAULT_TABLES,
          overwrite: bool = False) -> SweepResult:
    """Run (or resume) a sweep into the folder ``out``.

    backend: 'local' runs ``jobs`` processes with joblib (default: one per CPU; 1 runs in this
    process); 'dask' runs on the Dask cluster at ``address`` (default: the environment variable
    DASK_SCHEDULER_ADDRESS), retrying a failed run ``retries`` times; ``out`` must then be a folder
    every worker sees at the same path. A failed run does not stop the others. ``tables``: what
    each run folder holds (``otmarl.run.TABLE_CHOICES``; by default no per-task rows). A folder
    holding another sweep (or this one with other tables) is refused unless ``overwrite``.
    """
    t0 = time.perf_counter()
    sw = source if isinstance(source, Sweep) else load_sweep(source)
    runner = _backend(backend, address, jobs, retries)
    out = Path(out)
    all_jobs = design(sw, out, tables)
    write_manifest(out, sw, all_jobs, tables, overwrite)
    done = finished(all_jobs)
    todo = [j for j in all_jobs if j.key not in done]
    res = SweepResult(out, len(all_jobs), skipped=[j.key for j in all_jobs if j.key in done])
    if progress:
        progress(len(done), len(all_jobs), 0, resumed=len(done))
    for job, row, error in runner(todo) if todo else ():
        res.ran.append(job.key)
        if row is not None:
            res.rows.append(row)
        if error is not None or (row is not None and row["status"] != "ok"):
            res.failed.append(job.key)
        if progress:
            progress(len(done) + len(res.ran), len(all_jobs), len(res.failed), resumed=len(done))
    res.wall_s = time.perf_counter() - t0
    if res.rows and not any((out / "runs" / r["key"] / ROW).exists() for r in res.rows):
        raise UserError(f"--out {out}: the workers wrote their runs where this machine cannot see "
                        f"them; use a folder that every worker sees at the same path")
    return res


def _backend(backend: str, address: str | None, jobs: int | None, retries: int):
    if backend not in BACKENDS:
        raise UserError(f"--backend: unknown backend '{backend}' (known: {', '.join(BACKENDS)})")
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs: value {jobs} must be >= 1")
    if retries < 0:
        raise UserError(f"--retries: value {retries} must be >= 0")
    if backend == "dask":
        address = address or os.environ.get("DASK_SCHEDULER_ADDRESS")
        if not address:
            raise UserError("--backend dask: give the scheduler with --address tcp://HOST:8786 "
                            "or the environment variable DASK_SCHEDULER_ADDRESS")
        return lambda todo: dask_runs(todo, address, retries)
    if address:
        raise UserError("--address: only with --backend dask")
    n = jobs or os.cpu_count() or 1
    return sequential if n == 1 else (lambda todo: joblib_runs(todo, n))
