"""Mutated built-ins: the loader raises nothing but the project's user error, and a mutant that
validates runs (one hour) without any error: validate is a promise that run keeps.

Mutations: a field deleted, a value's type swapped, a number pushed out of range, a junk string,
the whole file replaced by random bytes. CI runs a fixed number of examples; for a longer search:
``OTMARL_MUTANTS=5000 python -m pytest tests/test_mutations.py``.
"""
from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otmarl import scenarios
from otmarl.policies import make_controller
from otmarl.scenarios.errors import UserError
from otmarl.simulator import simulate

BUILTIN = Path(str(resources.files("otmarl.scenarios") / "builtin"))
NAMES = scenarios.builtin_names()
TEXTS = {n: (BUILTIN / f"{n}.yaml").read_text() for n in NAMES}
EXAMPLES = int(os.environ.get("OTMARL_MUTANTS", "300"))
RUN_EXAMPLES = max(EXAMPLES // 5, 20)
VALIDATED: list[str] = []       # mutants that validated (to see the search reaches runs)
JUNK = st.one_of(st.sampled_from(["", "nan", "inf", "-1", "1e400", "None", "[]", "{}", "🙂", "a" * 300,
                                  "../../etc/passwd", "Europe/Nowhere", "2024-02-30"]),
                 st.text(max_size=20))
NUMBER = st.one_of(st.sampled_from([-1, 0, -1e9, 1e12, 1e308, float("nan"), float("inf"), 0.5, 2, 10**7]),
                   st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**9, 10**9))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _get(root, path):
    for k in path:
        root = root[k]
    return root


def _set(root, path, value, delete=False):
    parent = root
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


@st.composite
def mutants(draw) -> tuple[str, str]:
    """(built-in name, mutated YAML text); sometimes not YAML at all."""
    name = draw(st.sampled_from(NAMES))
    if draw(st.integers(0, 9)) == 0:
        return name, draw(st.binary(max_size=200)).decode("latin-1")
    data = yaml.safe_load(TEXTS[name])
    for _ in range(draw(st.integers(1, 2))):
        paths = [p for p in _paths(data) if p]
        numbers = [p for p in paths if isinstance(_get(data, p), (int, float))
                   and not isinstance(_get(data, p), bool)]
        op = draw(st.sampled_from(["delete", "swap", "number", "scale", "scale", "junk"]))
        path = draw(st.sampled_from(numbers if op in ("number", "scale") and numbers else paths))
        old = _get(data, path)
        value = {"delete": None, "swap": draw(st.sampled_from([[1, 2], {"a": 1}, "text", True, 3])),
                 "number": draw(NUMBER), "junk": draw(JUNK),
                 "scale": old * draw(st.sampled_from([0, 0.01, 0.5, 0.9, 1.1, 2, 100]))
                 if isinstance(old, (int, float)) else old}[op]
        _set(data, path, value, delete=op == "delete")
    return name, yaml.safe_dump(data, allow_unicode=True)


def _load(name: str, text: str, folder: Path):
    if not (folder / "data").exists():       # the built-ins name their data files relative to it
        (folder / "data").symlink_to(BUILTIN / "data")
    f = folder / f"{name}-mutant.yaml"
    f.write_text(text, encoding="utf-8", errors="surrogateescape")
    return scenarios.load(f)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(m=mutants())
def test_the_loader_raises_only_user_errors(m, tmp_path_factory):
    try:
        _load(*m, tmp_path_factory.mktemp("m"))
    except UserError:
        pass


@settings(max_examples=RUN_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(m=mutants())
def test_a_mutant_that_validates_runs_an_hour(m, tmp_path_factory):
    try:
        sc = _load(*m, tmp_path_factory.mktemp("m"))
    except UserError:
        return
    VALIDATED.append(m[0])
    hour = math.ceil(3600 / sc.control_interval_s) * sc.control_interval_s / 3600
    sc = sc.model_copy(update={"horizon_h": hour})
    simulate(sc, make_controller(sc.controller.policy), seed=0)


def test_the_search_reached_runs():
    """Some mutants validated and ran (else the run test above checked nothing)."""
    assert len(VALIDATED) >= RUN_EXAMPLES // 10, VALIDATED
    print(f"{len(VALIDATED)} mutants validated and ran")
