"""The epoch loop that drives a world with a controller and an engine.

``Simulation`` exposes the loop one epoch at a time (``observe`` then ``step``) for environments
that decide from outside (the MARL env); ``simulate`` runs it to the end with a Controller. Each
step returns a ``StepResult`` (what the epoch did: energy terms, flows, tasks finished), so that a
caller never needs to look inside the world.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Callable

import numpy as np

from otmarl.scenarios import schema as S
from otmarl.scenarios.errors import UserError
from otmarl.scenarios.schema import RUN_TABLES

from .control import Controller, Decision, Observation
from .engine_fast import FastEngine
from .engine_reference import ReferenceEngine
from .recorder import Recorder, RunResult
from .world import Finished, World

ENGINES = {"fast": FastEngine, "reference": ReferenceEngine}


def make_engine(name: str, world: World):
    if name not in ENGINES:
        raise UserError(f"--engine: unknown engine '{name}'; choose one of {', '.join(ENGINES)}")
    return ENGINES[name](world)


@dataclass(slots=True)
class StepResult:
    """What one epoch did: the energy ledger terms per node (Wh), the decision's flow records,
    energy sent and delivered per node by transfers, and the tasks that finished."""

    energy: dict[str, np.ndarray]
    flows: dict
    sent_wh: np.ndarray
    delivered_wh: np.ndarray
    finished: Finished


class Simulation:
    """One run, stepped epoch by epoch: ``obs = sim.observe()``; ``sim.step(decision)``.

    ``record_flows=False`` keeps every per-epoch series (the summary and the invariants use them)
    but no flow table: its per-epoch DataFrames cost more than the rest of a small MARL step.
    ``narrow=True``: only narrowed tables will be asked for (``Recorder``)."""

    def __init__(self, scenario: S.Scenario, seed: int, engine: str = "fast", record_flows: bool = True,
                 narrow: bool = False):
        self.world = World(scenario, seed)
        self.engine = make_engine(engine, self.world)
        self.recorder = Recorder(self.world, record_flows, narrow)
        self.k = 0
        self._obs: Observation | None = None

    @property
    def done(self) -> bool:
        return self.k >= self.world.n_epochs

    def observe(self) -> Observation:
        """The observation at the start of the current epoch (boundary steps applied once)."""
        if self._obs is None:
            w, t0 = self.world, self.k * self.world.dt
            w.apply_faults(self.k)
            w.update_status(t0, self.engine)
            self._obs = w.observe(self.k, t0)
        return self._obs

    def step(self, decision: Decision) -> StepResult:
        """Apply a decision and simulate the current epoch."""
        w = self.world
        obs = self.observe()
        t0, t1 = self.k * w.dt, (self.k + 1) * w.dt
        flows = w.apply(decision, obs, t0, self.engine)
        w.draw_harvest()
        # the epoch's flags (the world replaces these arrays, never changes them in place)
        flags = {"up": w.up, "failed": w.failed, "browned": w.browned}
        sent, delivered = w.sent, w.received
        out = self.engine.run_epoch(t0, t1)
        w.settle(out)
        finished = w.close_finished()
        self.recorder.epoch(self.k, out.energy, flags, flows)
        self.k += 1
        self._obs = None
        return StepResult(out.energy, flows, sent, delivered, finished)

    def peek(self) -> Observation:
        """The observation at the current boundary without applying its faults or recoveries
        (for a look after the last epoch)."""
        return self.world.observe(self.k, self.k * self.world.dt)

    def brownout_node_hours(self) -> float:
        """Node-hours spent browned out over the epochs simulated so far."""
        return self.recorder.brownout_node_hours(self.k)

    def finish(self, meta: dict, tables: Collection[str] = RUN_TABLES, narrow: bool = False) -> RunResult:
        return self.recorder.finish(meta, tables, narrow)


def simulate(scenario: S.Scenario, controller: Controller, seed: int, engine: str = "fast",
             progress: Callable[[int, int], None] | None = None,
             tables: Collection[str] = RUN_TABLES, narrow: bool = False) -> RunResult:
    """Run ``scenario`` under ``controller`` and return what it produced (nothing is written):
    the summary and the ``tables`` named (the others are None), exact or, with ``narrow``, in the
    narrow column types of a run folder (``recorder`` says which)."""
    sim = run_to_end(Simulation(scenario, seed, engine, narrow=narrow), controller, progress)
    return sim.finish(run_meta(sim, controller), tables, narrow)


def run_to_end(sim: Simulation, controller: Controller,
               progress: Callable[[int, int], None] | None = None) -> Simulation:
    """Step ``sim`` with ``controller`` (reset here) through its last epoch; returns ``sim``."""
    controller.reset(sim.world.info(), sim.world.rng["policy"])
    while not sim.done:
        sim.step(controller.decide(sim.observe()))
        if progress is not None:
            progress(sim.k, sim.world.n_epochs)
    return sim


def run_meta(sim: Simulation, controller: Controller) -> dict:
    """The keys a run's summary opens with: scenario, policy and seed."""
    return {"scenario": sim.world.sc.name,
            "policy": getattr(controller, "name", type(controller).__name__), "seed": sim.world.seed}
