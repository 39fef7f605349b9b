"""Size of the code: modules and lines per room, and function length (median, p90, max).

    python benchmarks/code_stats.py                 # this tree
    python benchmarks/code_stats.py --root OTHER    # another checkout, for a before/after table
    python benchmarks/code_stats.py --longest 10    # also list the longest functions

A function's length is its lines from ``def`` to its last line (docstring and comments included),
for every function and method, nested ones too. Only the five rooms count (otmarl, scenarios,
simulator, policies, analysis); tests and benchmarks do not.
"""
from __future__ import annotations

import argparse
import ast
import statistics
from pathlib import Path

ROOMS = ("otmarl", "scenarios", "simulator", "policies", "analysis")


def functions(path: Path) -> list[tuple[str, int]]:
    """(qualified name, lines) of every function defined in a module."""
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[str, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out.append((name, child.end_lineno - child.lineno + 1))
                walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return out


def stats(root: Path) -> dict:
    rows, fns = {}, []
    for room in ROOMS:
        files = sorted((root / room).rglob("*.py"))
        rows[room] = (len(files), sum(len(f.read_text().splitlines()) for f in files))
        for f in files:
            fns += [(f"{f.relative_to(root)}:{name}", n) for name, n in functions(f)]
    lengths = sorted(n for _, n in fns)
    p90 = lengths[min(len(lengths) - 1, int(0.9 * len(lengths)))]
    return {"rooms": rows, "functions": fns, "median": statistics.median(lengths), "p90": p90,
            "max": lengths[-1]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--longest", type=int, default=0, help="list the N longest functions")
    a = ap.parse_args(argv)
    s = stats(a.root)
    print("| room | modules | lines |\n|---|---|---|")
    for room, (m, lines) in s["rooms"].items():
        print(f"| {room} | {m} | {lines:,} |")
    total_m = sum(m for m, _ in s["rooms"].values())
    total_l = sum(n for _, n in s["rooms"].values())
    print(f"| all | {total_m} | {total_l:,} |\n")
    print(f"functions: {len(s['functions'])}; lines per function: median {s['median']:g}, "
          f"p90 {s['p90']}, max {s['max']}")
    for name, n in sorted(s["functions"], key=lambda x: -x[1])[:a.longest]:
        print(f"  {n:4d}  {name}")


if __name__ == "__main__":
    main()
