"""The epoch loop that drives a world with a controller and an engine."""
from __future__ import annotations

from typing import Callable

from otmarl.scenarios import schema as S
from otmarl.scenarios.errors import UserError

from .control import Controller
from .engine_fast import FastEngine
from .engine_reference import ReferenceEngine
from .recorder import Recorder, RunResult
from .world import World

ENGINES = {"fast": FastEngine, "reference": ReferenceEngine}


def make_engine(name: str, world: World):
    if name not in ENGINES:
        raise UserError(f"--engine: unknown engine '{name}'; choose one of {', '.join(ENGINES)}")
    return ENGINES[name](world)


def simulate(scenario: S.Scenario, controller: Controller, seed: int, engine: str = "fast",
             progress: Callable[[int, int], None] | None = None) -> RunResult:
    """Run ``scenario`` under ``controller`` and return what it produced (nothing is written)."""
    world = World(scenario, seed)
    eng = make_engine(engine, world)
    rec = Recorder(world)
    controller.reset(world.info(), world.rng["policy"])
    for k in range(world.n_epochs):
        t0, t1 = k * world.dt, (k + 1) * world.dt
        world.apply_faults(k)
        world.update_status(t0, eng)
        obs = world.observe(k, t0)
        flows = world.apply(controller.decide(obs), obs, t0, eng)
        world.harvest_now = world.harvest.step()
        flags = {"up": world.up.copy(), "failed": world.failed.copy(), "browned": world.browned.copy()}
        energy = eng.run_epoch(t0, t1)
        world.harvest_last = world.harvest_now
        rec.epoch(k, energy, flags, flows)
        if progress is not None:
            progress(k + 1, world.n_epochs)
    meta = {"scenario": scenario.name, "policy": getattr(controller, "name", type(controller).__name__),
            "seed": seed}
    return rec.finish(meta)
