"""MAPPO: PPO with a shared actor (parameter sharing) and a centralised critic V(state, o_i).

The critic sees the env's global ``state()`` (every node's charge, harvest, queue, slack and
prices, and the clock) next to the agent's own observation; the actor sees only its own
observation, so the trained policy runs decentralised. The loop is ``common.train``.

    python -m otmarl.policies.marl.mappo        # or: otmarl train microgrid-solar --algo mappo
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .common import PPOArgs, train as _train

ALGO = "mappo"


@dataclass
class Args(PPOArgs):
    """MAPPO options: every field of PPOArgs (documented there)."""

    out: str = "runs/mappo"
    """Checkpoint folder."""


def train(args: Args, progress: Callable[[dict], None] | None = None) -> Path:
    # ALGO LOGIC: centralised critic on [state, o_i]
    return _train(args, ALGO, progress)


if __name__ == "__main__":
    print(train(Args()))
