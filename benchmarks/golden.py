"""Golden summaries: the summary.json of every built-in under every controller and several seeds,
recorded before a change and compared after it ("nothing changes for users").

    python benchmarks/golden.py record            # write tests/golden/summaries.json
    python benchmarks/golden.py check             # compare; list every number that changed
    python benchmarks/golden.py check --quick     # only the short-horizon set the tests use

Two sets: ``full`` (each built-in's own horizon, seeds 0-2) and ``quick`` (3-hour horizon, seeds
0-1, the set ``tests/test_golden.py`` checks). Summaries are compared key by key, so a key added
later (a new metric) is reported as new, not as a change.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "summaries.json"
SCENARIOS = ("microgrid-solar", "edge-offload", "sensor-field")
POLICIES = ("local", "random", "greedy", "proportional", "threshold", "ot")
SETS = {"full": ((), (0, 1, 2)), "quick": (("horizon_h=3",), (0, 1))}


def summaries(which: str, scenarios: tuple[str, ...] = SCENARIOS) -> dict[str, dict]:
    """{"scenario/policy/seed": summary} for one set, computed now."""
    from otmarl.policies import make_controller
    from otmarl.scenarios import load
    from otmarl.simulator import simulate

    overrides, seeds = SETS[which]
    out = {}
    for name in scenarios:
        for policy in POLICIES:
            sc = load(name, overrides=list(overrides))
            for seed in seeds:
                res = simulate(sc, make_controller(policy), seed)
                out[f"{name}/{policy}/{seed}"] = json.loads(json.dumps(res.summary))
    return out


def digest(summary: dict) -> str:
    return hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()[:16]


def diff(old, new, path: str = "") -> list[str]:
    """Every leaf that differs, as 'path: old -> new'."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in old:
            out += diff(old[k], new[k], f"{path}.{k}") if k in new else [f"{path}.{k}: removed"]
        out += [f"{path}.{k}: new" for k in new if k not in old]
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


def check(which: str, golden: dict) -> list[str]:
    now = summaries(which)
    out = []
    for key, old in golden[which].items():
        out += [f"{key}{line}" for line in diff(old["summary"], now[key])]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("record", "check"))
    ap.add_argument("--quick", action="store_true", help="only the short-horizon set")
    a = ap.parse_args(argv)
    sets = ("quick",) if a.quick else tuple(SETS)
    if a.action == "record":
        data = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        data.update({w: {k: {"sha256_16": digest(s), "summary": s} for k, s in summaries(w).items()}
                     for w in sets})
        GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"recorded {sum(len(data[w]) for w in sets)} summaries ({', '.join(sets)}) in {GOLDEN.name}")
        return 0
    golden = json.loads(GOLDEN.read_text())
    changed = [line for w in sets for line in check(w, golden)]
    print("\n".join(changed) if changed else "every summary is unchanged")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
