"""Controllers behind the one Controller seam, chosen by name."""
from __future__ import annotations

from typing import Callable

from otmarl.scenarios.errors import UserError
from otmarl.simulator.control import Controller

from .baselines import (GreedyController, LocalController, ProportionalController, RandomController,
                        ThresholdController)
from .mpc import MPCController
from .ot import OTController

REGISTRY: dict[str, Callable[..., Controller]] = {
    c.name: c for c in (LocalController, RandomController, GreedyController, ProportionalController,
                        ThresholdController, OTController, MPCController)}


def make_controller(name: str) -> Controller:
    """The controller registered as ``name`` (it reads its parameters from WorldInfo.params),
    or ``marl:DIR``: the MARL policy trained into DIR (needs the marl extra)."""
    if name.startswith("marl:"):
        from .marl.controller import make     # lazily: torch only when a trained policy is asked for
        return make(name)
    if name not in REGISTRY:
        import difflib
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UserError(f"--policy: unknown policy '{name}'{hint} (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name]()


__all__ = ["REGISTRY", "make_controller", "LocalController", "RandomController", "GreedyController",
           "ProportionalController", "ThresholdController", "OTController", "MPCController"]
