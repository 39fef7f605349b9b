"""Baseline controllers. Each is one sentence in docs/policies.md."""
from __future__ import annotations

import numpy as np

from otmarl.simulator.control import Decision, Observation, WorldInfo


class LocalController:
    """No sharing, no offloading: every node lives on its own harvest and serves its own tasks."""

    name = "local"

    def reset(self, world_info: WorldInfo, rng: np.random.Generator) -> None:
        self.info = world_info

    def decide(self, obs: Observation) -> Decision:
        return Decision()
