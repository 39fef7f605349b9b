"""Warm start of the shared actor from the best constant action (``--warm-start best-fixed``).

A near-uniform policy is a poor place to start on these scenarios: the team gains come from all
nodes acting alike, and one node's draw barely moves the team reward, so PPO from uniform stays
near uniform (docs/marl.md, "Does it learn?"). The warm start clones the best-fixed control
into the actor before training: ``controls.search_fixed`` finds the best constant action shared
by every agent on the tuning seeds (never the evaluation seeds), and the actor's output bias is
set so that its policy puts probability ``prob`` on that action's option in every component and
shares the rest equally among the other options. The output weights keep their small
initialisation (gain 0.01), so the policy starts nearly independent of the observation and PPO
makes it depend on the time of day, the charge and the global context where that pays.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from otmarl.scenarios import Scenario

from . import deps
from .controls import FixedSearch, search_fixed, tune_seeds
from .core import EnvOptions
from .nets import Actor

torch = deps.torch()

WARM_STARTS = ("none", "best-fixed")
"""Values of ``PPOArgs.warm_start``."""


def constant_logits(nvec: Sequence[int], action: Sequence[int], prob: float) -> np.ndarray:
    """Concatenated per-component logits (sum nvec,) of the policy that picks ``action[c]`` with
    probability ``prob`` in component c and each other option with (1 - prob) / (k - 1)."""
    parts = []
    for k, a in zip(nvec, action):
        z = np.full(int(k), math.log((1.0 - prob) / (k - 1)) if k > 1 else 0.0)
        z[int(a)] = math.log(prob) if k > 1 else 0.0
        parts.append(z)
    return np.concatenate(parts).astype(np.float32)


def clone_constant(actor: Actor, action: Sequence[int], prob: float) -> None:
    """Set the actor's output bias to ``constant_logits`` (its weights are left as they are)."""
    out = actor.net[-1]
    with torch.no_grad():
        out.bias.copy_(torch.as_tensor(constant_logits(actor.nvec, action, prob)))


def warm_start(actor: Actor, scenario: Scenario, options: EnvOptions, n_tune: int,
               prob: float) -> FixedSearch:
    """Search best-fixed on the first ``n_tune`` tuning seeds and clone it into ``actor``."""
    found = search_fixed(scenario, options, tune_seeds(n_tune))
    clone_constant(actor, found.action, prob)
    return found
