"""Running one experiment and writing its run folder.

A run folder holds metadata.json, summary.json and the tables its ``tables`` choice names
(``TABLE_CHOICES``: all, no-tasks, summary). The choice is part of what the folder holds: a
folder with more tables than asked for serves (and says so); one with fewer is a different run.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from otmarl.policies import make_controller
from otmarl.scenarios import Scenario, dump_yaml, load
from otmarl.scenarios.controllers import with_policy
from otmarl.scenarios.errors import UserError
from otmarl.scenarios.schema import RUN_DEFAULT_TABLES, RUN_TABLES, TABLE_CHOICES, check_tables
from otmarl.simulator.simulate import Simulation, run_meta, run_to_end

if TYPE_CHECKING:
    import pandas as pd

OUTPUT_FILES = ("metadata.json", "summary.json") + tuple(f"{t}.parquet" for t in RUN_TABLES)


def output_files(tables: str) -> tuple[str, ...]:
    """The files of a run folder written with ``--tables tables``."""
    return ("metadata.json", "summary.json") + tuple(f"{t}.parquet" for t in TABLE_CHOICES[tables])


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


def small_pages() -> None:
    """Ask numpy not to request transparent huge pages for its large arrays (``madvise``), unless
    ``NUMPY_MADVISE_HUGEPAGE`` says otherwise; the process keeps the setting. A run makes and
    drops arrays of tens of MB every epoch at scale, and where the kernel compacts memory to find
    huge pages on demand (``defrag`` set to ``madvise``) each one stalls: a day at 100,000 nodes
    under ot spent a third of its time there (docs/performance.md, "Memory")."""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:       # pragma: no cover - a numpy without the switch
        return
    _set_madvise_hugepage(False)


def run(scenario: str | os.PathLike | Scenario, *, policy: str | None = None, seed: int | None = 0,
        out: str | os.PathLike | None = None, overrides: Sequence[str] = (), engine: str = "fast",
        progress: Callable[[int, int], None] | None = None, overwrite: bool = False,
        notice: Callable[[str], None] | None = None, tables: str = RUN_DEFAULT_TABLES) -> Path:
    """Simulate a scenario (file, built-in name or Scenario) and write its run folder; return it.

    ``tables``: which tables to write (a key of ``TABLE_CHOICES``). The folder is written whole
    or not at all (into a hidden sibling, renamed on success). A folder that already holds this
    very run (same resolved scenario, policy, seed and engine) with at least these tables is kept
    as it is and ``notice`` is told; one that holds a different run, the run with fewer tables,
    or files that are not a run, is a UserError naming the difference, unless ``overwrite``.
    """
    check_tables(tables)
    small_pages()
    sc = scenario if isinstance(scenario, Scenario) else load(scenario, overrides, policy)
    if policy is not None and policy != sc.controller.policy:
        sc = sc.model_copy(update={"controller": with_policy(sc.controller, policy)})
    seed = resolve_seed(seed)
    controller = make_controller(sc.controller.policy)
    identity = run_identity(sc, seed, engine, tables)
    out = Path(out) if out is not None else default_folder(sc, seed, engine, bool(overrides))
    held = None if overwrite else folder_holds(out, identity)
    if held is not None:
        if notice:
            more = "" if held == tables else f" with --tables {held}, which holds every table of {tables}"
            notice(f"{out}: already holds this run (same scenario, policy, seed and engine){more}; "
                   "nothing recomputed (--overwrite runs it again)")
        return out
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    # the flow rows (every offer and request of every epoch) are kept only for a folder that
    # writes them: at 100,000 nodes about 200,000 rows an epoch
    record_flows = "flows" in TABLE_CHOICES[tables]
    sim = run_to_end(Simulation(sc, seed, engine, record_flows=record_flows, narrow=True), controller, progress)
    summary = sim.recorder.checked_summary(run_meta(sim, controller))
    wall = time.perf_counter() - t0
    meta = {**identity, "scenario_yaml": dump_yaml(sc), "versions": versions(), "argv": sys.argv[1:],
            "started_utc": started.isoformat(), "ended_utc": datetime.now(timezone.utc).isoformat(),
            "wall_s": wall}
    # each table is made when written and dropped after: one in memory at a time
    write_run(out, summary, {t: partial(sim.recorder.table, t, True, True) for t in TABLE_CHOICES[tables]},
              meta)
    return out


def run_identity(sc: Scenario, seed: int, engine: str, tables: str = RUN_DEFAULT_TABLES) -> dict:
    """What makes two runs the same run: the resolved scenario, the policy, the seed, the engine;
    and what the folder holds of it: its ``tables`` choice."""
    return {"scenario": json.loads(sc.model_dump_json()), "seed": seed,
            "policy": sc.controller.policy, "engine": engine, "tables": tables}


def default_folder(sc: Scenario, seed: int, engine: str, overridden: bool) -> Path:
    """runs/<scenario>-<policy>-s<seed>, then -<engine> for an engine other than fast and
    -<6 hex digits of the resolved scenario> when ``--set`` changed it: two what-ifs never share a
    default folder."""
    name = f"{sc.name}-{policy_slug(sc.controller.policy)}-s{seed}"
    if engine != "fast":
        name += f"-{engine}"
    if overridden:
        name += "-" + hashlib.sha256(sc.model_dump_json().encode()).hexdigest()[:6]
    return Path("runs") / name


def folder_holds(out: Path, identity: dict) -> str | None:
    """The ``--tables`` choice ``out`` was written with if it holds the run ``identity`` describes
    with at least its tables; None if it is absent, empty (hidden files aside) or incomplete; a
    UserError if it holds anything else (another run, the run with fewer tables, not a run)."""
    if not holds_kind(out, "metadata.json", "run"):
        return None
    meta_file = out / "metadata.json"
    try:
        meta = json.loads(meta_file.read_text())
        # a folder from before --tables existed holds every table it knew
        old = {k: meta.get(k, "all") if k == "tables" else meta[k] for k in identity}
    except (ValueError, KeyError, TypeError):
        raise UserError(f"--out: '{out}' holds a run folder whose metadata.json cannot be read; "
                        "pass --overwrite to replace it") from None
    held, wanted = old.pop("tables"), identity["tables"]
    refuse_other(out, old, {k: v for k, v in identity.items() if k != "tables"}, "run")
    lacking = [t for t in TABLE_CHOICES[wanted] if t not in TABLE_CHOICES.get(held, RUN_TABLES)]
    if lacking:
        raise UserError(f"--out: '{out}' holds this run written with --tables {held}, without "
                        f"{', '.join(t + '.parquet' for t in lacking)} that --tables {wanted} "
                        "writes; choose another folder, or pass --overwrite to write it again")
    return held if all((out / f).is_file() for f in output_files(wanted)) else None


def holds_kind(out: Path, marker: str, what: str, hint: str = "pass --overwrite to replace them") -> bool:
    """True if the folder ``out`` holds the file ``marker`` (an otmarl ``what``: run, sweep,
    training); False if it is absent or empty (hidden files aside); a UserError if it is a file
    or holds something else."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise UserError(f"--out: '{out}' is a file, not a folder")
    if (out / marker).is_file():
        return True
    if any(not p.name.startswith(".") for p in out.iterdir()):
        raise UserError(f"--out: '{out}' holds files that are not an otmarl {what}; choose another "
                        f"folder, or {hint}")
    return False


def refuse_other(out: Path, old: dict, new: dict, what: str) -> None:
    """A UserError naming the differences if the folder ``out`` holds another ``what`` (run,
    training) than ``new`` describes."""
    changed = differences(old, new)
    if changed:
        shown = "; ".join(changed[:5]) + (f"; and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise UserError(f"--out: '{out}' holds a different {what} ({shown}); choose another folder, "
                        "or pass --overwrite to replace it")


def differences(old, new, path: str = "") -> list[str]:
    """Every leaf where two JSON-like trees differ, as 'path: old -> new'."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in old or k not in new:
                out.append(f"{sub}: {'absent' if k not in old else old[k]!r} -> "
                           f"{'absent' if k not in new else new[k]!r}")
            else:
                out += differences(old[k], new[k], sub)
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


def write_run(out: Path, summary: dict, tables: dict[str, Callable[[], pd.DataFrame]], meta: dict) -> None:
    """Write every file of a run into a hidden sibling, then put it in place: an interrupted run
    leaves no half folder under the final name. summary.json holds only seed-determined numbers.
    ``tables``: a maker of each table to write, called when it is written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name in RUN_TABLES:
            if name in tables:
                write_table(tables[name](), tmp / f"{name}.parquet")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    except BaseException:          # interrupted or failed: leave nothing behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _put_in_place(tmp, out)


def write_table(df, path: Path) -> None:
    """One table as Parquet with zstd, each column encoded for what it holds: a dictionary for
    text and for columns with few distinct values (node ids, priorities, flags; judged on a
    sample of rows of a long column, ``_few_distinct``), byte-stream
    split for other floats (their exponent bytes compress apart from the mantissas), deltas for
    integers that count up (the task number, node ids in epoch-major order) or have many
    values. The choice depends on the data only, so the same run gives the same bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.Table.from_pandas(df, preserve_index=False)
    dictionary, encoding = [], {}
    for f in table.schema:
        col = table.column(f.name)
        counts_up = pa.types.is_integer(f.type) and _counts_up(df[f.name].to_numpy())
        if pa.types.is_dictionary(f.type) or (not counts_up and _few_distinct(col)):
            dictionary.append(f.name)
        elif pa.types.is_floating(f.type):
            encoding[f.name] = "BYTE_STREAM_SPLIT"
        elif pa.types.is_integer(f.type):
            encoding[f.name] = "DELTA_BINARY_PACKED"
    pq.write_table(table, path, compression="zstd", use_dictionary=dictionary or False,
                   column_encoding=encoding or None)


DISTINCT_SAMPLE = 1 << 16
"""Rows of a column whose distinct values decide on a dictionary (evenly spaced, all of a
shorter column): counting distinct values costs a hash per value, ~0.3 s per float column of
1.5 million rows, and the tables of 100,000 nodes have 15 million."""


def _few_distinct(col) -> bool:
    """Whether at most a sixteenth of the values of ``col`` (a pyarrow array) are distinct, on
    ``DISTINCT_SAMPLE`` evenly spaced rows of it (exact for shorter columns)."""
    import pyarrow.compute as pc
    if len(col) > DISTINCT_SAMPLE:
        col = col.take(_spaced(len(col)))
    return pc.count_distinct(col).as_py() <= len(col) // 16


def _counts_up(x: np.ndarray) -> bool:
    """Whether most steps of an integer column are +1 (then deltas encode it in a few bytes),
    on ``DISTINCT_SAMPLE`` evenly spaced steps of a long column."""
    if len(x) < 2:
        return False
    i = _spaced(len(x) - 1)
    return float(np.mean(x[i + 1].astype(np.int64) - x[i] == 1)) > 0.5


def _spaced(n: int) -> np.ndarray:
    """``DISTINCT_SAMPLE`` evenly spaced positions in range(n), or all of them."""
    k = min(n, DISTINCT_SAMPLE)
    return np.arange(k, dtype=np.int64) * n // k


def _put_in_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` (checked by the caller) is moved aside
    first and removed after, so ``out`` is always either the old folder or the new one."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
