"""The worker side of a sweep, and the backends that run many runs.

``execute(job)`` is all a worker does: run one scenario into ``DIR/runs/<key>`` with
``otmarl.run.run``, then write the run's summary row there as ``row.parquet`` (atomically: a
temporary name, then ``os.replace``) as the very last step. A run that raises is recorded, not
lost: ``DIR/failures/<key>.json`` holds the error and the traceback, and the row has
``status='failed'``. The parent process keeps only the rows.

Backends yield ``(job, row, error)`` as runs finish, in any order: ``sequential`` (in this
process), ``joblib_runs`` (loky worker processes) and ``dask_runs`` (a Dask distributed cluster,
which must see DIR at the same path).
"""
from __future__ import annotations

import json
import math
import os
import socket
import time
import traceback
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from otmarl.analysis.registry import METRICS, run_metrics
from otmarl.scenarios import Scenario
from otmarl.scenarios.errors import OtmarlError, UserError
from otmarl.scenarios.schema import MANY_RUNS_DEFAULT_TABLES

#: Restarts of the joblib pool after a worker process died (killed, out of memory, crashed).
POOL_RESTARTS = 2
ROW = "row.parquet"


class SweepError(OtmarlError):
    """A sweep could not go on (its finished runs are kept; run it again to resume)."""


class RunFailed(Exception):
    """Raised by a Dask worker after recording a failed run, so that Dask retries it."""


@dataclass(frozen=True)
class Job:
    """One run of a sweep: everything a worker needs, and the row's identifying columns."""

    key: str
    """Hash of (resolved scenario, policy, seed): the run's folder name."""
    run: int
    """Position in the design (point, seed, policy order)."""
    point: int
    seed_index: int
    seed: int
    policy: str
    params: dict[str, Any]
    """Swept path -> the value as stored in the row (see ``kinds``)."""
    kinds: dict[str, str]
    """Swept path -> column type: int, float, bool, str or json."""
    scenario: Scenario
    out: str
    """The sweep's output folder."""
    tables: str = MANY_RUNS_DEFAULT_TABLES
    """What the run folder holds (``otmarl.run.TABLE_CHOICES``)."""

    @property
    def folder(self) -> Path:
        return Path(self.out) / "runs" / self.key

    @property
    def failure_file(self) -> Path:
        return Path(self.out) / "failures" / f"{self.key}.json"


Outcome = tuple[Job, "dict | None", "str | None"]
"""A finished run: (job, its row or None, an error or None)."""


# ------------------------------------------------------------------------------ the worker
def execute(job: Job, reraise: bool = False) -> dict:
    """Run ``job`` and write its folder and row; return the row. ``reraise``: raise RunFailed
    after recording a failure (Dask then retries the run)."""
    from otmarl.run import run
    t0 = time.perf_counter()
    error = ""
    for stale in job.folder.glob(f".{ROW}.*.tmp"):  # left by a worker killed while writing
        stale.unlink(missing_ok=True)
    try:
        # the key hashes the resolved scenario, policy and seed, so whatever the folder holds (a
        # failed attempt's row) belongs to this run: replace it
        run(job.scenario, policy=job.policy, seed=job.seed, out=job.folder, overwrite=True,
            tables=job.tables)
        summary = json.loads((job.folder / "summary.json").read_text())
        simulate_s = float(json.loads((job.folder / "metadata.json").read_text())["wall_s"])
        metrics = run_metrics(summary)
        job.failure_file.unlink(missing_ok=True)  # an earlier attempt failed
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        record_failure(job, error, traceback.format_exc())
        metrics, simulate_s = {}, math.nan
    row = make_row(job, metrics, simulate_s, time.perf_counter() - t0, error)
    write_row(job, row)
    if error and reraise:
        raise RunFailed(f"run {job.key}: {error}")
    return row


def make_row(job: Job, metrics: dict, simulate_s: float, wall_s: float, error: str) -> dict:
    return {"key": job.key, "status": "failed" if error else "ok", "run": job.run, "point": job.point,
            "seed_index": job.seed_index, "seed": job.seed, "policy": job.policy, **job.params,
            **{m: float(metrics.get(m, math.nan)) for m in METRICS},
            "simulate_s": simulate_s, "wall_s": wall_s, "error": error,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


def write_row(job: Job, row: dict) -> None:
    """``row.parquet`` of the run, atomically: a reader sees the whole row or none."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    kinds = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string(),
             "json": pa.string()}
    schema = pa.schema(
        [("key", pa.string()), ("status", pa.string())]
        + [(c, pa.int64()) for c in ("run", "point", "seed_index", "seed")] + [("policy", pa.string())]
        + [(p, kinds[k]) for p, k in job.kinds.items()]
        + [(c, pa.float64()) for c in (*METRICS, "simulate_s", "wall_s")]
        + [("error", pa.string()), ("worker", pa.string())])
    job.folder.mkdir(parents=True, exist_ok=True)
    tmp = job.folder / f".{ROW}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    pq.write_table(pa.Table.from_pylist([row], schema=schema), tmp)
    os.replace(tmp, job.folder / ROW)


def record_failure(job: Job, error: str, tb: str) -> None:
    """``failures/<key>.json``: what failed, the error and the traceback (atomically)."""
    job.failure_file.parent.mkdir(parents=True, exist_ok=True)
    doc = {"key": job.key, "policy": job.policy, "seed": job.seed, "params": job.params,
           "error": error, "traceback": tb, "worker": f"{socket.gethostname()}:{os.getpid()}",
           "time_utc": datetime.now(timezone.utc).isoformat()}
    tmp = job.failure_file.with_name(f".{job.key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    os.replace(tmp, job.failure_file)


def read_status(files: Sequence[Path]) -> dict[str, str]:
    """key -> status of existing row files (one DuckDB query; a file it cannot read is skipped)."""
    if not files:
        return {}
    import duckdb
    try:
        return dict(duckdb.connect().execute(
            "SELECT key, status FROM read_parquet($1, union_by_name = true)", [[str(f) for f in files]]
        ).fetchall())
    except duckdb.Error:  # one unreadable file (a full disk, say): read the others one by one
        out = {}
        for f in files:
            row = read_row(f)
            if row is not None:
                out[row["key"]] = row["status"]
        return out


def read_row(file: Path) -> dict | None:
    import pyarrow.parquet as pq
    try:
        return pq.read_table(file).to_pylist()[0]
    except (OSError, IndexError, ValueError):
        return None


# ------------------------------------------------------------------------------- backends
def sequential(jobs: Sequence[Job]) -> Iterator[Outcome]:
    for job in jobs:
        yield job, execute(job), None


def joblib_runs(jobs: Sequence[Job], n_jobs: int) -> Iterator[Outcome]:
    """Loky worker processes. If a worker dies, the pool is restarted for the runs not done."""
    from joblib import Parallel, delayed
    from joblib.externals.loky.process_executor import TerminatedWorkerError
    pending = {j.key: j for j in jobs}
    for _ in range(POOL_RESTARTS + 1):
        try:
            par = Parallel(n_jobs=min(n_jobs, len(pending)), return_as="generator_unordered")
            for row in par(delayed(execute)(j) for j in list(pending.values())):
                yield pending.pop(row["key"]), row, None
            return
        except TerminatedWorkerError:
            for key, job in list(pending.items()):  # finished, but the result went with the pool
                row = read_row(job.folder / ROW) if (job.folder / ROW).exists() else None
                if row is not None and row["status"] == "ok":
                    yield pending.pop(key), row, None
        if not pending:
            return
    raise SweepError(f"worker processes kept dying; {len(pending)} run(s) not done. The finished "
                     f"runs are kept: run the sweep again to resume")


def dask_runs(jobs: Sequence[Job], address: str, retries: int) -> Iterator[Outcome]:
    """Runs on the Dask cluster at ``address``; a failed run is retried ``retries`` times."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise UserError("--backend dask needs Dask distributed: pip install 'otmarl[dask]'") from None
    try:
        client = Client(address, timeout=10, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise UserError(f"--address: cannot reach a Dask scheduler at '{address}': {e}") from None
    token = uuid.uuid4().hex[:8]  # our keys: never shared with another client's identical run
    futures = []
    try:
        futures = client.map(execute, list(jobs), reraise=True, key=[f"otmarl-run-{j.key}-{token}" for j in jobs],
                             retries=retries, pure=False)
        by_key = {f.key: j for f, j in zip(futures, jobs)}
        for f in as_completed(futures, loop=client.loop):  # not the default client's loop
            job = by_key[f.key]
            if f.status == "finished":
                yield job, f.result(), None
            else:
                exc = f.exception()
                if not isinstance(exc, RunFailed):  # the worker could not record it (it died)
                    error = f"{type(exc).__name__}: {exc}"
                    record_failure(job, error, "".join(traceback.format_exception(exc)))
                    write_row(job, make_row(job, {}, math.nan, math.nan, error))
                yield job, None, str(exc)
            f.release()
    finally:
        if futures:
            client.cancel(futures)
        client.close()
