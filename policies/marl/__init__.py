"""MARL against the simulator: a PettingZoo env, MAPPO/IPPO trainers (torch), Wasserstein
barycenter consensus and drift detection, and trained policies as Controllers.

Nothing here imports torch, gymnasium or pettingzoo until it is used; a missing one raises a
UserError saying how to install the extra. docs/marl.md has the details.
"""
from __future__ import annotations

from .core import EnvOptions, MarlCore, RewardWeights

__all__ = ["EnvOptions", "MarlCore", "RewardWeights", "parallel_env", "aec_env", "OTMarlEnv"]


def __getattr__(name: str):
    if name in ("parallel_env", "aec_env", "OTMarlEnv"):
        from . import env
        return getattr(env, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
