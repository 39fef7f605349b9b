"""The controls of every MARL evaluation: uniformly random actions and the best fixed action.

A trained policy is worth something only if it beats acting at random and acting the same way
all the time. Both controls act through the env's own action mapping (``MarlCore.step``), so
they face exactly the action space a trained policy does:

- ``random-actions``: every component of every agent uniform over its options at every epoch
  (masks ignored: a masked option is valid and does nothing), from a generator seeded by the
  evaluation seed;
- ``best-fixed``: one action shared by all agents at every epoch, the best mean team return
  over tuning seeds found by ``search_fixed``: a coarse grid over the components, then
  coordinate sweeps over every option of one component at a time (docs/marl.md).

Seeds: training episodes draw their worlds from [0, 2^31 - 1) (``rollout.SEED_MAX``); evaluation
uses ``EVAL_SEED0 + k`` and the tuning of best-fixed ``TUNE_SEED0 + k``, disjoint by construction.
Controllers (local, ot, ...) drive the same core through ``step_decision`` (``ControllerDriver``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from otmarl.scenarios import Scenario
from otmarl.simulator.control import Controller

from .actions import ActionSpec
from .core import EnvOptions, MarlCore

EVAL_SEED0 = 2**31
"""First evaluation seed (training draws its episode seeds below 2^31 - 1)."""
TUNE_SEED0 = 2**32
"""First tuning seed of best-fixed (disjoint from training and evaluation seeds)."""
RANDOM_TAG = 0x7A11D
"""Mixed with the evaluation seed into the random-actions generator (not the world's streams)."""
MAX_SWEEPS = 3
"""Coordinate sweeps of the best-fixed refinement (it stops earlier when a sweep changes nothing)."""


def eval_seeds(n: int) -> list[int]:
    """The first ``n`` evaluation seeds."""
    return [EVAL_SEED0 + k for k in range(n)]


def tune_seeds(n: int) -> list[int]:
    """The first ``n`` tuning seeds."""
    return [TUNE_SEED0 + k for k in range(n)]


class Driver:
    """Acts in a ``MarlCore`` episode: ``reset(core, seed)`` once, then ``step(core)`` per epoch."""

    def reset(self, core: MarlCore, seed: int) -> None:
        """Prepare for the episode of ``seed`` that ``core`` has just reset to."""

    def step(self, core: MarlCore) -> bool:
        """Simulate one epoch; True when the episode is over."""
        raise NotImplementedError


class ControllerDriver(Driver):
    """A Controller (local, ot, marl:DIR ...) deciding through ``step_decision``."""

    def __init__(self, controller: Controller):
        self.controller = controller

    def reset(self, core: MarlCore, seed: int) -> None:
        self.controller.reset(core.info, core.sim.world.rng["policy"])

    def step(self, core: MarlCore) -> bool:
        return core.step_decision(self.controller.decide(core.cur))[2]


class RandomActions(Driver):
    """Uniform over the action space, a generator per episode seeded by the episode's seed."""

    def reset(self, core: MarlCore, seed: int) -> None:
        self.rng = np.random.default_rng([RANDOM_TAG, int(seed)])
        self.nvec = np.asarray(core.spec.nvec, np.int64)

    def step(self, core: MarlCore) -> bool:
        return core.step(self.rng.integers(0, self.nvec, (core.n, len(self.nvec))))[2]


class FixedAction(Driver):
    """The same action for every agent at every epoch."""

    def __init__(self, action: Sequence[int]):
        self.action = np.asarray(action, np.int64)

    def reset(self, core: MarlCore, seed: int) -> None:
        self.actions = np.tile(self.action, (core.n, 1))

    def step(self, core: MarlCore) -> bool:
        return core.step(self.actions)[2]


def as_driver(policy: "Driver | Controller") -> Driver:
    """A Driver as it is; a Controller wrapped in a ControllerDriver."""
    return policy if isinstance(policy, Driver) else ControllerDriver(policy)


def play(core: MarlCore, driver: Driver, seed: int) -> MarlCore:
    """One whole episode of ``seed`` on ``core``; the core holds the finished episode."""
    core.reset(seed)
    driver.reset(core, seed)
    while not driver.step(core):
        pass
    return core


# ------------------------------------------------------------------------------ best-fixed
@dataclass(frozen=True)
class FixedSearch:
    """The outcome of ``search_fixed``."""

    action: tuple[int, ...]
    """The best action found (one option per component)."""
    score: float
    """Its mean team return over the tuning seeds."""
    seeds: tuple[int, ...]
    """The tuning seeds."""
    scores: dict[tuple[int, ...], float] = field(default_factory=dict)
    """Every action tried and its mean team return, in the order tried."""

    def to_dict(self) -> dict:
        return {"action": list(self.action), "score": self.score, "seeds": list(self.seeds),
                "tried": [{"action": list(a), "score": s} for a, s in self.scores.items()]}


def coarse_grid(spec: ActionSpec) -> list[tuple[int, ...]]:
    """The grid the search starts from: per component its two ends for ordered levels (0 and
    the top) and 'none' and the first option for unordered choices (0 and 1)."""
    axes = [sorted({0, k - 1 if ordinal else min(1, k - 1)}) for k, ordinal in zip(spec.nvec, spec.ordinal)]
    return list(itertools.product(*axes))


def search_fixed(scenario: Scenario, options: EnvOptions, seeds: Sequence[int],
                 progress: Callable[[int], None] | None = None) -> FixedSearch:
    """The best constant action shared by all agents: the best of ``coarse_grid``, then up to
    ``MAX_SWEEPS`` sweeps that try every option of each component in turn with the others
    held, keeping any strict improvement of the mean team return over ``seeds``."""
    core, scores = MarlCore(scenario, options), {}

    def score(a: tuple[int, ...]) -> float:
        if a not in scores:
            scores[a] = float(np.mean([play(core, FixedAction(a), s).team_return for s in seeds]))
            if progress:
                progress(len(scores))
        return scores[a]

    best = max(coarse_grid(core.spec), key=score)      # the first of equals
    for _ in range(MAX_SWEEPS):
        start = best
        for c, k in enumerate(core.spec.nvec):
            for v in range(k):
                cand = best[:c] + (v,) + best[c + 1:]
                if score(cand) > score(best):
                    best = cand
        if best == start:
            break
    return FixedSearch(best, scores[best], tuple(int(s) for s in seeds), scores)


def control_policies(scenario: Scenario, options: EnvOptions, n_tune: int, baselines: Sequence[str],
                     progress: Callable[[int], None] | None = None) -> tuple[dict, FixedSearch]:
    """The controls of an evaluation, by name (random-actions, best-fixed, then ``baselines``:
    registered controller names), as factories for ``evaluate``; and the best-fixed search."""
    from otmarl.policies import make_controller
    best = search_fixed(scenario, options, tune_seeds(n_tune), progress)
    pols = {"random-actions": RandomActions, "best-fixed": lambda: FixedAction(best.action),
            **{b: (lambda b=b: make_controller(b)) for b in baselines}}
    return pols, best
