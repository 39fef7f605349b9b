"""Sweep files: the pydantic model of a sweep and its design (``sweep_loader`` reads the file).

A sweep runs a base scenario, with fixed overrides, over a design of parameter values, for every
policy and seed::

    base: microgrid-solar            # a built-in name, or a scenario file relative to this file
    overrides: {horizon_h: 24}       # fixed, like --set
    policies: [local, ot]
    seeds: 3                         # or a list of seeds: [0, 7, 42]
    root_seed: 1
    grid:                            # cartesian product of the lists
      nodes.home.battery.capacity_wh: [5000, 10000]
    zip:                             # lists walked together (equal lengths)
      nodes.home.harvest.panel_area_m2: [15, 30]
      nodes.home.idle_power_w: [300, 500]
    random:                          # samples drawn from the root seed
      samples: 4
      params:
        nodes.home.harvest.efficiency: {uniform: [0.15, 0.22]}

The design is the product of the blocks present (grid points x zip points x random samples).
Validators raise located errors (``fields.located_error``) so that the loader reports each problem
at its item; the model base, dotted paths and did-you-mean are the scenario schema's own
(``fields``). This module and ``sweep_loader`` pair up as ``schema`` and ``loader`` do for a
scenario.
"""
from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from .fields import Model, located_error, split_path
from .schema import Scenario
from .yamlpos import Path, describe, dotted

RANDOM_SPAWN_KEY = 2**32
BLOCKS = ("overrides", "grid", "zip", "random")
DIST_KINDS = ("uniform", "loguniform", "choice")


# ------------------------------------------------------------------------------ the model
class Dist(Model):
    """How a random parameter is drawn: exactly one of the keys."""

    uniform: tuple[float, float] | None = None
    """[low, high]: uniform between the bounds."""
    loguniform: tuple[float, float] | None = None
    """[low, high], low > 0: uniform in log space (for scales: rates, capacities)."""
    choice: tuple[Any, ...] | None = Field(None, min_length=1)
    """One of these values, equally likely (any YAML value)."""

    @model_validator(mode="after")
    def _one(self) -> "Dist":
        given = [k for k in DIST_KINDS if getattr(self, k) is not None]
        found: list[tuple[Path, str, str]] = []
        if not given:
            found.append(((), "expected one of uniform: [low, high], loguniform: [low, high] or "
                              "choice: [values]", "value"))
        found += [((k,), f"give one of uniform, loguniform, choice (this one also has '{given[0]}')",
                   "key") for k in given[1:]]
        for k in ("uniform", "loguniform"):
            if getattr(self, k) is None:
                continue
            lo, hi = getattr(self, k)
            if k == "loguniform" and lo <= 0:
                found.append(((k, 0), f"value {lo:g} must be > 0 (a log scale)", "value"))
            if not lo < hi:
                found.append(((k, 1), f"value {hi:g} must be > low={lo:g}", "value"))
        if found:
            raise located_error(found)
        return self

    def sample(self, rng: np.random.Generator) -> Any:
        if self.uniform is not None:
            return float(rng.uniform(*self.uniform))
        if self.loguniform is not None:
            lo, hi = self.loguniform
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        return copy.deepcopy(self.choice[int(rng.integers(len(self.choice)))])


class RandomDesign(Model):
    samples: int = Field(ge=1)
    """Number of random points."""
    params: dict[str, Dist] = Field(min_length=1)
    """Dotted scenario path -> its distribution."""


Values = tuple[Any, ...]


class SweepFile(Model):
    name: str = ""
    """Short name of the sweep (report titles)."""
    description: str = ""
    """What the sweep asks."""
    base: str
    """A built-in scenario name, or a scenario file (relative to the sweep file's folder)."""
    overrides: dict[str, Any] = {}
    """Fixed overrides for every run: dotted path -> value, like ``--set path=value``."""
    policies: tuple[str, ...] | None = Field(None, min_length=1)
    """Controllers to run at every point (default: the base scenario's controller.policy); a
    trained policy is 'marl:DIR'."""
    seeds: int | tuple[int, ...] = 1
    """A number N of seeds (derived from root_seed per run), or a list of the seeds themselves."""
    root_seed: int = Field(0, ge=0)
    """Root of every run's seed and of the random design."""
    grid: dict[str, Values] = {}
    """Dotted path -> list of values; the cartesian product of the lists."""
    zip: dict[str, Values] = {}
    """Dotted path -> list of values; the lists (of equal length) walked together."""
    random: RandomDesign | None = None
    """Random points drawn from the root seed."""

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            if v < 1:
                raise located_error([((), f"value {v} must be >= 1", "value")])
            return v
        if not isinstance(v, (list, tuple)):
            raise located_error([((), "expected a number of seeds (e.g. 5) or a list of seeds "
                                       f"(e.g. [0, 7, 42]), got {describe(v)}", "value")])
        if not v:
            raise located_error([((), "expected at least 1 seed, got an empty list", "value")])
        first: dict[int, int] = {}
        for i, s in enumerate(v):
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**63:
                raise located_error([((i,), f"expected a whole number >= 0, got {describe(s)}", "value")])
            if s in first:
                raise located_error([((i,), f"seed {s} is listed twice (first as item {first[s]})", "value")])
            first[s] = i
        return tuple(v)

    @model_validator(mode="after")
    def _design(self) -> "SweepFile":
        found = design_problems(self)
        if found:
            raise located_error(found)
        return self

    def blocks(self) -> Iterator[tuple[Path, str, Any]]:
        """(location of the mapping, dotted path, value or list) of every override and parameter."""
        for block, entries in (("overrides",), self.overrides), (("grid",), self.grid), (("zip",), self.zip):
            yield from ((block, k, v) for k, v in entries.items())
        if self.random is not None:
            yield from ((("random", "params"), k, v) for k, v in self.random.params.items())

    @property
    def params(self) -> tuple[str, ...]:
        """The swept paths, in design order."""
        return tuple(k for block, k, _ in self.blocks() if block != ("overrides",))

    @property
    def seed_count(self) -> int:
        return self.seeds if isinstance(self.seeds, int) else len(self.seeds)


def design_problems(spec: SweepFile) -> list[tuple[Path, str, str]]:
    """Problems that involve more than one entry: malformed or overlapping paths, zip lengths."""
    found, seen = [], []
    for block, key, _ in spec.blocks():
        path = split_path(key)
        if path is None:
            found.append((block + (key,), "expected a dotted path like nodes.home.battery.capacity_wh",
                          "key"))
            continue
        if block != ("overrides",) and path[:2] in (("controller",), ("controller", "policy")):
            found.append((block + (key,), "the policy is swept by 'policies: [...]', not by a parameter",
                          "key"))
        for other_block, other_key, other in seen:
            if other[:len(path)] == path or path[:len(other)] == other:
                found.append((block + (key,), f"overlaps '{other_key}' (under {dotted(other_block)})",
                              "key"))
                break
        seen.append((block, key, path))
    lengths = {k: len(v) for k, v in spec.zip.items()}
    if lengths:
        first, n0 = next(iter(lengths.items()))
        found += [(("zip", k), f"has {n} value{'s' * (n != 1)}, but '{first}' has {n0}; zip walks its "
                              "lists together",
                   "value") for k, n in lengths.items() if n != n0]
    found += [((b, k), "expected at least 1 value", "value") for b in ("grid", "zip")
              for k, v in getattr(spec, b).items() if not v]
    return found


# --------------------------------------------------------------------------- the result
@dataclass(frozen=True)
class SweepPoint:
    params: dict[str, Any]
    """Swept dotted path -> value at this point."""
    scenario: Scenario
    """The base with the fixed overrides and this point's values applied."""


@dataclass(frozen=True)
class Sweep:
    source: str
    """The sweep file as given."""
    text: str
    """Its text (kept with the results)."""
    spec: SweepFile
    base: str
    """The base scenario file as shown in messages."""
    points: tuple[SweepPoint, ...]
    policies: tuple[str, ...]

    @property
    def params(self) -> tuple[str, ...]:
        return self.spec.params


def design_points(spec: SweepFile) -> list[dict[str, tuple[Any, Path]]]:
    """Every point of the design: swept path -> (value, where the value is in the sweep file).
    Grid points (the first path varying slowest) x zip points x random samples, in that order."""
    grid = [dict(zip(spec.grid, combo)) for combo in itertools.product(
        *[[(v, ("grid", k, i)) for i, v in enumerate(vals)] for k, vals in spec.grid.items()])]
    n_zip = len(next(iter(spec.zip.values()))) if spec.zip else 1
    zipped = [{k: (vals[i], ("zip", k, i)) for k, vals in spec.zip.items()} for i in range(n_zip)]
    rand: list[dict] = [{}]
    if spec.random is not None:
        rng = np.random.default_rng(np.random.SeedSequence(spec.root_seed, spawn_key=(RANDOM_SPAWN_KEY,)))
        rand = [{k: (d.sample(rng), ("random", "params", k)) for k, d in spec.random.params.items()}
                for _ in range(spec.random.samples)]
    return [{**g, **z, **r} for g in grid for z in zipped for r in rand]
