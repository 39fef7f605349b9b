"""The world: network, energy, workload and queues, the two engines, the control seam, recording."""
from .control import Controller, Decision, Observation, WorldInfo
from .recorder import RunResult
from .simulate import ENGINES, Simulation, simulate
from .world import World

__all__ = ["Controller", "Decision", "Observation", "WorldInfo", "RunResult", "ENGINES",
           "simulate", "Simulation", "World"]
