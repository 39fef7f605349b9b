"""The field machinery the scenario schema and the sweep schema share: the frozen model base,
dotted paths, did-you-mean suggestions, and located problems raised by model validators.

Both schemas are pydantic models read from YAML by a loader that reports every problem at its
``FILE:LINE:COL``. A model validator that finds a problem below its own level (one list item,
one key of a nested mapping) raises :func:`located_error`; the loaders turn each problem back
into a place in the file with :func:`located_problems`. This module imports nothing else of
otmarl, so that every module of ``scenarios`` may import it.
"""
from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

__all__ = ["Model", "Path", "LocatedProblem", "split_path", "dotted_path", "closest",
           "did_you_mean", "located_error", "located_problems", "LOCATED"]

Path = tuple[str | int, ...]
#: (path relative to the model that raised it, message, where to point: the value, the key
#: itself, or the parent mapping of a missing key)
LocatedProblem = tuple[Path, str, Literal["value", "key", "parent"]]
#: The pydantic error type of a located problem (the name the scenario loader reads).
LOCATED = "cross_field"


class Model(BaseModel):
    """Base of every scenario and sweep model: unknown keys are errors, values are frozen, each
    field's docstring is its description, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True,
                              validate_default=True)


# ------------------------------------------------------------------------------ paths, names
def split_path(text: str) -> Path | None:
    """'nodes.home.battery.capacity_wh' -> its components, list indices as ints ('events.0'
    -> ('events', 0)); None for a malformed path (an empty or space-padded component)."""
    parts = text.split(".")
    if not all(p and p == p.strip() for p in parts):
        return None
    return tuple(int(p) if p.isdigit() else p for p in parts)


def dotted_path(path: Path) -> str:
    """The inverse of ``split_path``."""
    return ".".join(str(p) for p in path)


def closest(word: Any, choices: list[str]) -> str | None:
    """The choice ``word`` was most likely meant to be: a near spelling, else the one choice it
    abbreviates ('rate' -> 'rate_per_h')."""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word), choices, n=1)
    if close:
        return close[0]
    starts = [c for c in choices if str(word) and c.startswith(str(word))]
    return starts[0] if len(starts) == 1 else None


def did_you_mean(word: Any, choices: list[str]) -> str:
    """``"; did you mean 'x'?"`` when a choice is close to ``word``, else ``""``."""
    close = closest(word, choices)
    return f"; did you mean '{close}'?" if close else ""


# --------------------------------------------------------------------------- located problems
def located_error(problems: list[LocatedProblem]) -> PydanticCustomError:
    """The error a model validator raises for problems at paths below the model.

    Python users read the problems joined in the message; a loader reads them one by one with
    ``located_problems``. ``field`` and ``message`` in the context repeat the first problem (its
    path dotted) for readers of a single problem.
    """
    if not problems:
        raise ValueError("located_error needs at least one problem")
    text = "; ".join(f"{dotted_path(p)}: {m}" if p else m for p, m, _ in problems)
    path, message, _ = problems[0]
    return PydanticCustomError(LOCATED, "{text}", {"text": text, "problems": list(problems),
                                                   "field": dotted_path(path), "message": message})


def located_problems(loc: tuple, ctx: dict) -> list[LocatedProblem]:
    """Each problem of a ``located_error`` whose pydantic ``loc`` is ``loc``, with its path made
    relative to the root model."""
    loc = tuple(loc)
    if "problems" in ctx:
        return [(loc + tuple(p), m, at) for p, m, at in ctx["problems"]]
    return [(loc + (split_path(ctx["field"]) or ()), ctx["message"], "value")]
