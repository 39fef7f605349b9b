"""Bytes on disk of run and compare folders, per table, under one or two installs of otmarl.

    python benchmarks/output_size.py --after .venv/bin/python
    python benchmarks/output_size.py --before OLD/.venv/bin/python --after .venv/bin/python
    python benchmarks/output_size.py --after .venv/bin/python --seeds 2 --policies local,ot
    python benchmarks/output_size.py --columns RUN_FOLDER      # bytes per row of each column

Each install writes, in a fresh temporary folder (so that a checkout cannot shadow the install):
one ``otmarl run`` of the scenario (seed 0, policy ot) with its default tables, and with
``--after`` also once per ``--tables`` choice; then one ``otmarl compare`` of the policies over
the seeds with its default tables. Prints one Markdown row per folder: bytes of each file kind
summed over the folder (all runs of a compare together) and the total, in MB (10^6 bytes).
``--columns`` reads the Parquet footers of one run folder instead: each column of tasks.parquet
and timeseries.parquet, its compressed bytes per row and its encodings (what a smaller folder
would have to give up).
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

KINDS = ("tasks", "timeseries", "flows", "epochs", "nodes", "links", "summary", "metadata")
TABLE_CHOICES = ("all", "no-tasks", "summary")


def sizes(folder: Path) -> dict[str, int]:
    """Bytes per file kind (file name without suffix; others under 'other'), and 'total'."""
    out: dict[str, int] = defaultdict(int)
    for f in folder.rglob("*"):
        if f.is_file():
            kind = f.name.split(".")[0]
            out[kind if kind in KINDS else "other"] += f.stat().st_size
            out["total"] += f.stat().st_size
    return out


def otmarl(python: str, args: list[str], cwd: Path) -> None:
    """Run the otmarl CLI of ``python`` in ``cwd`` (quiet, output discarded unless it fails)."""
    subprocess.run([python, "-m", "otmarl", *args, "--quiet"], cwd=cwd, check=True,
                   capture_output=True, text=True)


def row(label: str, what: str, s: dict[str, int]) -> str:
    mb = lambda k: f"{s.get(k, 0) / 1e6:.2f}"  # noqa: E731
    return "| " + " | ".join([label, what] + [mb(k) for k in KINDS + ("other", "total")]) + " |"


def measure(label: str, python: str, scenario: str, policies: str, seeds: int,
            tables: tuple[str | None, ...]) -> list[str]:
    """Rows of one install: a run per ``tables`` choice (None: the default), then the compare."""
    rows = []
    with tempfile.TemporaryDirectory() as d:
        cwd = Path(d)
        for t in tables:
            out = cwd / f"run-{t or 'default'}"
            otmarl(python, ["run", scenario, "--policy", "ot", "--seed", "0", "--out", str(out)]
                   + (["--tables", t] if t else []), cwd)
            rows.append(row(label, f"run ({'--tables ' + t if t else 'default'})", sizes(out)))
        out = cwd / "compare"
        otmarl(python, ["compare", scenario, "--policies", policies, "--seeds", str(seeds),
                        "--out", str(out)], cwd)
        n = len(policies.split(",")) * seeds
        rows.append(row(label, f"compare, {n} runs (default)", sizes(out)))
    return rows


def columns(folder: Path) -> None:
    """Compressed bytes per row of every column of the run folder's two long tables."""
    import pyarrow.parquet as pq
    for name in ("tasks", "timeseries"):
        path = folder / f"{name}.parquet"
        if not path.exists():
            continue
        meta = pq.ParquetFile(path).metadata
        size: dict[str, int] = defaultdict(int)
        enc: dict[str, set] = defaultdict(set)
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                col = group.column(c)
                size[col.path_in_schema] += col.total_compressed_size
                enc[col.path_in_schema] |= set(col.encodings)
        rows = max(meta.num_rows, 1)
        print(f"\n{name}.parquet: {meta.num_rows:,} rows, {path.stat().st_size / 1e6:.1f} MB, "
              f"{path.stat().st_size / rows:.2f} bytes per row\n\n| column | bytes per row | encodings |\n|---|---:|---|")
        for k in sorted(size, key=lambda k: -size[k]):
            print(f"| {k} | {size[k] / rows:.2f} | {', '.join(sorted(enc[k]))} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="python of an install without --tables (its defaults only)")
    ap.add_argument("--after", help="python of an install with --tables")
    ap.add_argument("--scenario", default="edge-offload")
    ap.add_argument("--policies", default="local,greedy,proportional,threshold,random,ot")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--columns", type=Path, metavar="RUN_FOLDER",
                    help="only print the bytes per row of each column of this run folder's tables")
    a = ap.parse_args(argv)
    if a.columns:
        columns(a.columns)
        return
    print(f"{a.scenario}; MB = 10^6 bytes per file kind, summed over the folder")
    print("| install | folder | " + " | ".join(KINDS + ("other", "total")) + " |")
    print("|---|---|" + "---:|" * (len(KINDS) + 2))
    for label, python, tables in (("before", a.before, (None,)),
                                  ("after", a.after, (None,) + TABLE_CHOICES)):
        if python:
            for line in measure(label, python, a.scenario, a.policies, a.seeds, tables):
                print(line, flush=True)


if __name__ == "__main__":
    main()
