"""A trained MARL policy behind the Controller seam (``--policy marl:DIR``).

Each epoch: the same features as the env (``features.py``), normalised with the statistics
saved at training time, through the shared actor; a draw from the policy (seeded by the world's
policy stream) or the most likely option per component, as the checkpoint's ``deploy`` says
(``sample=`` overrides it), among the options the mask allows; then the env's own action mapping turns
the actions into a valid decision (market mode clears them by OT).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from otmarl.scenarios.errors import UserError
from otmarl.simulator.control import Decision, Observation, WorldInfo

from . import deps
from .actions import DirectActions, MarketActions
from .core import EnvOptions
from .features import NAMES, FeatureBuilder


class MarlController:
    """``MarlController(folder)``: the policy trained into ``folder`` by ``otmarl train``."""

    def __init__(self, folder: str | Path, sample: bool | None = None):
        from .common import load_meta
        torch = deps.torch()
        from .nets import Actor, RunningNorm
        from .rollout import with_state
        self._with_state = with_state
        self.folder = Path(folder)
        self.meta = meta = load_meta(folder)
        self.name = f"marl:{folder}"
        if list(meta["features"]) != list(NAMES):
            raise UserError(f"{folder}: trained on features {meta['features']}, this version has "
                            f"{list(NAMES)}; retrain the policy")
        self.options = EnvOptions.from_dict(meta["env"])
        self.actor = Actor(meta.get("actor_dim", meta["obs_dim"]), meta["action"]["nvec"], meta["hidden"])
        self.actor.load_state_dict(torch.load(self.folder / "actor.pt"))
        self.actor.eval()
        self.norm = RunningNorm.from_dict(meta["obs_norm"])
        self.state_norm = RunningNorm.from_dict(meta["state_norm"]) if meta.get("actor_state") else None
        # how it was trained to be deployed (checkpoints from before the option: the mode)
        self.sample = meta["args"].get("deploy", "mode") == "sample" if sample is None else sample
        self.torch = torch

    def reset(self, world_info: WorldInfo, rng: np.random.Generator) -> None:
        self.info, self.rng = world_info, rng
        self.features = FeatureBuilder(world_info)     # the clock of the scenario it runs in
        o = self.options
        trained = tuple(self.meta["action"]["nvec"])
        if o.mode == "market":
            self.actions = MarketActions(world_info, rng)
        else:    # the trained slot count: a node with more neighbours reaches its first ones
            self.actions = DirectActions(world_info, o.direct_energy_share, o.direct_spare_soc,
                                         o.direct_task_share, slots=trained[0] - 1)
        if tuple(self.actions.spec.nvec) != trained:
            raise UserError(f"{self.folder}: the policy acts on {trained} options per component, "
                            f"the {o.mode} mode here has {tuple(self.actions.spec.nvec)}")
        self.gen = self.torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))

    def act(self, obs: Observation) -> np.ndarray:
        """Actions (n, components) for this epoch."""
        torch = self.torch
        f = self.features.observe(obs, self.actions.energy_price, self.actions.task_price)
        x = self.norm(f)
        if self.state_norm is not None:     # the actor also sees the global state
            x = self._with_state(x[None], self.state_norm(self.features.state(f))[None])[0]
        x = torch.as_tensor(x)
        mask = torch.as_tensor(self.actions.masks(obs))
        with torch.no_grad():
            logits = self.actor.logits(x, mask)
            if self.sample:
                a = [torch.multinomial(torch.softmax(z, -1), 1, generator=self.gen)[:, 0] for z in logits]
            else:
                a = [z.argmax(-1) for z in logits]
        return torch.stack(a, -1).numpy()

    def decide(self, obs: Observation) -> Decision:
        return self.actions.decide(obs, self.act(obs))


def make(name: str) -> MarlController:
    """The controller for ``marl:DIR``."""
    folder = name.split(":", 1)[1]
    if not folder:
        raise UserError("--policy marl:DIR: name the checkpoint folder, e.g. marl:runs/mappo")
    return MarlController(folder)
