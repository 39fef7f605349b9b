"""The epoch loop that drives a world with a controller and an engine.

``Simulation`` exposes the loop one epoch at a time (``observe`` then ``step``) for environments
that decide from outside (the MARL env); ``simulate`` runs it to the end with a Controller.
"""
from __future__ import annotations

from typing import Callable

from otmarl.scenarios import schema as S
from otmarl.scenarios.errors import UserError

from .control import Controller, Decision, Observation
from .engine_fast import FastEngine
from .engine_reference import ReferenceEngine
from .recorder import Recorder, RunResult
from .world import World

ENGINES = {"fast": FastEngine, "reference": ReferenceEngine}


def make_engine(name: str, world: World):
    if name not in ENGINES:
        raise UserError(f"--engine: unknown engine '{name}'; choose one of {', '.join(ENGINES)}")
    return ENGINES[name](world)


class Simulation:
    """One run, stepped epoch by epoch: ``obs = sim.observe()``; ``sim.step(decision)``."""

    def __init__(self, scenario: S.Scenario, seed: int, engine: str = "fast"):
        self.world = World(scenario, seed)
        self.engine = make_engine(engine, self.world)
        self.recorder = Recorder(self.world)
        self.k = 0
        self._obs: Observation | None = None
        self.last_energy: dict = {}
        self.last_flows: dict = {}

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

    def step(self, decision: Decision) -> None:
        """Apply a decision and simulate the current epoch."""
        w = self.world
        obs = self.observe()
        t0, t1 = self.k * w.dt, (self.k + 1) * w.dt
        flows = w.apply(decision, obs, t0, self.engine)
        w.harvest_now = w.harvest.step()
        # the epoch's flags (the world replaces these arrays, never changes them in place)
        flags = {"up": w.up, "failed": w.failed, "browned": w.browned}
        energy = self.engine.run_epoch(t0, t1)
        w.close_finished()
        w.harvest_last = w.harvest_now
        self.recorder.epoch(self.k, energy, flags, flows)
        self.last_energy, self.last_flows = energy, flows
        self.k += 1
        self._obs = None

    def finish(self, meta: dict) -> RunResult:
        return self.recorder.finish(meta)


def simulate(scenario: S.Scenario, controller: Controller, seed: int, engine: str = "fast",
             progress: Callable[[int, int], None] | None = None) -> RunResult:
    """Run ``scenario`` under ``controller`` and return what it produced (nothing is written)."""
    sim = Simulation(scenario, seed, engine)
    controller.reset(sim.world.info(), sim.world.rng["policy"])
    while not sim.done:
        sim.step(controller.decide(sim.observe()))
        if progress is not None:
            progress(sim.k, sim.world.n_epochs)
    meta = {"scenario": scenario.name, "policy": getattr(controller, "name", type(controller).__name__),
            "seed": seed}
    return sim.finish(meta)
