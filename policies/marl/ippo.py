"""IPPO: PPO with a shared actor and a decentralised critic V(o_i) (each agent's own observation).

This file owns the IPPO training loop, read top to bottom: the ablation of MAPPO's centralised
critic, with the same actor and the same steps, but the critic sees no global state. Shared
pieces: ``rollout.py`` (experience, GAE, minibatches) and ``common.py`` (options, set-up, the
clipped loss, log and checkpoint).

    python -m otmarl.policies.marl.ippo         # or: otmarl train microgrid-solar --algo ippo
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import Means, PPOArgs, PPORun, Progress, ppo_loss
from .rollout import Batch, gae, paired_baseline

ALGO = "ippo"


@dataclass(frozen=True)
class Args(PPOArgs):
    """IPPO options: every field of PPOArgs (documented there)."""

    out: str = "runs/ippo"
    """Checkpoint folder."""


def critic_input(obs: np.ndarray, state: np.ndarray) -> np.ndarray:
    """(E, n, d): the agent's own observation only; the global state is ignored."""
    return obs


def train(args: Args, progress: Progress | None = None) -> Path:
    """Train, write the checkpoint and train.csv into ``args.out``; return that folder."""
    run = PPORun(args, ALGO, critic_input)
    run.select(None)      # ALGO LOGIC: checkpoint selection on tuning seeds (select_every)
    for update in range(run.num_updates):
        # ALGO LOGIC: learning rate = lr0 x annealing x drift factor
        lr = run.set_lr(update)

        # ALGO LOGIC: rollout, every env and agent acting with the shared actor
        roll = run.collect()

        # ALGO LOGIC: generalised advantage estimation with each agent's own V(o_i)
        adv, ret = gae(roll.buf, roll.next_value, args.gamma, args.gae_lambda)
        if run.paired:    # ALGO LOGIC: the envs' mean advantage (same world) as a baseline
            adv = paired_baseline(adv)
        run.critic.update_norm(ret)      # ALGO LOGIC: value normalisation (running return stats)
        batch = Batch.of(roll.buf, adv, ret, run.groups)

        # ALGO LOGIC: clipped PPO update (+ lambda x Sinkhorn divergence to the barycenter)
        run.refresh_consensus(batch, update)
        losses = Means()
        for _ in range(args.update_epochs):
            for idx in batch.minibatches(args.num_minibatches, run.gen):
                loss, stats = ppo_loss(run.actor, run.critic, batch, idx, args, run.consensus)
                run.optimise(loss)
                losses.add(stats)

        # ALGO LOGIC: drift check on the windows of observations and rewards
        run.check_drift()
        run.record(update, lr, roll, batch, losses, progress)
        run.select(update)
    return run.save()


if __name__ == "__main__":
    print(train(Args()))
