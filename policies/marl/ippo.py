"""IPPO: PPO with a shared actor and a decentralised critic V(o_i) (each agent's own observation).

The ablation of MAPPO's centralised critic: same actor, same loop (``common.train``), the critic
sees no global state.

    python -m otmarl.policies.marl.ippo         # or: otmarl train microgrid-solar --algo ippo
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .common import PPOArgs, train as _train

ALGO = "ippo"


@dataclass
class Args(PPOArgs):
    """IPPO options: every field of PPOArgs (documented there)."""

    out: str = "runs/ippo"
    """Checkpoint folder."""


def train(args: Args, progress: Callable[[dict], None] | None = None) -> Path:
    # ALGO LOGIC: decentralised critic on o_i only
    return _train(args, ALGO, progress)


if __name__ == "__main__":
    print(train(Args()))
