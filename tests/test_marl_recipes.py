"""The recipes of docs/marl.md ("Training with an external trainer") are the code that
benchmarks/marl_recipes.py runs: each recipe function's lines (less its clock and step count,
with ``seed`` read as 0) appear in order in the snippet, and the snippet adds at most a few
lines (the import of the env, the budget). The trainers are not dependencies of otmarl, so this
reads the code; ``python benchmarks/marl_recipes.py`` (in an environment with the ``recipes``
extra) runs it."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("sb3", "rllib", "torchrl")
SKIP = re.compile(r"agent_steps|perf_counter|^(return|done|took)\b")


def _code_lines(lines: list[str]) -> list[str]:
    """Stripped code lines, comments and the benchmark's own bookkeeping left out."""
    out = []
    for line in lines:
        code = line.split("  #")[0].strip()
        if code and not code.startswith("#") and not SKIP.search(code):
            out.append(re.sub(r"\bseed\b", "0", code))
    return out


def _function(name: str) -> list[str]:
    src = (ROOT / "benchmarks" / "marl_recipes.py").read_text()
    fn = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name == name)
    first = fn.body[1]          # after the docstring
    return _code_lines(src.splitlines()[first.lineno - 1:fn.end_lineno])


def _snippets() -> dict[str, list[str]]:
    doc = (ROOT / "docs" / "marl.md").read_text()
    section = doc[doc.index("## Training with an external trainer"):]
    section = section[:section.index("\n## ", 5)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == len(RECIPES)
    return {name: _code_lines(b.splitlines()) for name, b in zip(RECIPES, blocks)}


@pytest.mark.parametrize("name", RECIPES)
def test_the_doc_snippet_is_what_the_benchmark_runs(name):
    fn, doc = _function(name), _snippets()[name]
    assert len(fn) >= 10
    at = 0
    for line in fn:
        assert line in doc[at:], f"docs/marl.md {name} snippet lacks (or reorders): {line}"
        at = doc.index(line, at) + 1
    extra = [line for line in doc if line not in fn]
    assert len(extra) <= 3, f"docs/marl.md {name} snippet has lines the benchmark does not run: {extra}"
