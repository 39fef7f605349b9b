"""Small torch networks and observation normalisation shared by the trainers and the trained
Controller: a shared actor with one masked categorical head per action component, a critic, and
running normalisers.

Every random draw here (orthogonal initialisation, action sampling) takes an explicit
``torch.Generator``, so a run seeded once reproduces its weights exactly and nothing touches
torch's global random state; layers are built with ``skip_init`` for the same reason.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import deps

torch = deps.torch()
nn = torch.nn

MASKED = -1e8      # logit of a masked option: exp underflows to exactly 0


def _layer(i: int, o: int, gen: "torch.Generator | None", std: float = float(np.sqrt(2))) -> "nn.Linear":
    lin = nn.utils.skip_init(nn.Linear, i, o)     # the default init would draw from the global RNG
    nn.init.orthogonal_(lin.weight, std, generator=gen)
    nn.init.constant_(lin.bias, 0.0)
    return lin


def mlp(i: int, hidden: int, o: int, out_std: float, gen: "torch.Generator | None" = None) -> "nn.Sequential":
    """Two tanh hidden layers; orthogonal weights (gain sqrt 2, ``out_std`` on the last layer)."""
    return nn.Sequential(_layer(i, hidden, gen), nn.Tanh(), _layer(hidden, hidden, gen), nn.Tanh(),
                         _layer(hidden, o, gen, out_std))


def sample(probs: "torch.Tensor", gen: "torch.Generator | None",
           u: "torch.Tensor | None" = None) -> "torch.Tensor":
    """One draw per row of ``probs`` (..., k) from the categorical it gives; with uniforms ``u``
    (...,) given, by the inverse distribution function (never an option of probability 0)."""
    if u is None:
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, 1, generator=gen).reshape(probs.shape[:-1])
    k = probs.shape[-1]
    a = (u[..., None] >= probs.cumsum(-1)).sum(-1)
    last = k - 1 - (probs > 0).flip(-1).to(torch.int64).argmax(-1)     # last allowed option
    return torch.minimum(a, last)


class Actor(nn.Module):
    """pi(a | o): independent categoricals over the components of a MultiDiscrete action."""

    def __init__(self, obs_dim: int, nvec: Sequence[int], hidden: int = 64,
                 generator: "torch.Generator | None" = None):
        super().__init__()
        self.nvec = [int(k) for k in nvec]
        self.net = mlp(obs_dim, hidden, sum(self.nvec), 0.01, generator)

    def logits(self, obs: "torch.Tensor", mask: "torch.Tensor | None" = None) -> list:
        z = self.net(obs)
        if mask is not None:
            z = torch.where(mask.bool(), z, torch.full_like(z, MASKED))
        return list(torch.split(z, self.nvec, dim=-1))

    def probs(self, obs: "torch.Tensor", mask: "torch.Tensor | None" = None) -> list:
        return [torch.softmax(z, -1) for z in self.logits(obs, mask)]

    def act(self, obs: "torch.Tensor", mask: "torch.Tensor", action: "torch.Tensor | None" = None,
            greedy: bool = False, generator: "torch.Generator | None" = None,
            uniforms: "torch.Tensor | None" = None) -> tuple:
        """(action (B, K), log-prob (B,), entropy (B,), per-component probabilities).

        Without ``action``, draws one (from ``generator``, or by inverse CDF from given
        ``uniforms`` (B, K)), or takes the most likely option when ``greedy``; with it, scores
        the given action (the PPO update)."""
        logits = self.logits(obs, mask)
        dists = [torch.distributions.Categorical(logits=z) for z in logits]
        if action is None:
            action = torch.stack([z.argmax(-1) if greedy else
                                  sample(d.probs, generator, None if uniforms is None else uniforms[..., k])
                                  for k, (z, d) in enumerate(zip(logits, dists))], -1)
        logp = torch.stack([d.log_prob(action[..., k]) for k, d in enumerate(dists)], -1).sum(-1)
        ent = torch.stack([d.entropy() for d in dists], -1).sum(-1)
        return action, logp, ent, [d.probs for d in dists]


class Critic(nn.Module):
    """V(x): MAPPO feeds it [state, o_i], IPPO o_i alone.

    Value normalisation: the network fits returns standardised by a running mean and standard
    deviation (``update_norm``, buffers saved with the weights); ``forward`` gives values in
    the returns' own units, ``normalised`` the network's output and ``standardise`` the target
    it is fitted to."""

    def __init__(self, in_dim: int, hidden: int = 64, generator: "torch.Generator | None" = None):
        super().__init__()
        self.net = mlp(in_dim, hidden, 1, 1.0, generator)
        self.register_buffer("ret_mean", torch.zeros(()))
        self.register_buffer("ret_std", torch.ones(()))
        self.ret_norm = RunningNorm(1)

    def normalised(self, x: "torch.Tensor") -> "torch.Tensor":
        return self.net(x).squeeze(-1)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        return self.normalised(x) * self.ret_std + self.ret_mean

    def standardise(self, ret: "torch.Tensor") -> "torch.Tensor":
        return (ret - self.ret_mean) / self.ret_std

    def update_norm(self, ret: np.ndarray) -> None:
        """Fold a rollout's returns into the running statistics."""
        self.ret_norm.update(ret.reshape(-1, 1))
        self.ret_mean.fill_(float(self.ret_norm.mean[0]))
        self.ret_std.fill_(float(np.sqrt(self.ret_norm.var[0] + 1e-8)))


class RunningNorm:
    """Running mean and variance (parallel algorithm); ``__call__`` standardises and clips."""

    def __init__(self, dim: int, clip: float = 5.0):
        self.mean, self.var, self.count, self.clip = np.zeros(dim), np.ones(dim), 1e-4, clip

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, float).reshape(-1, len(self.mean))
        m, v, c = x.mean(0), x.var(0), len(x)
        delta, tot = m - self.mean, self.count + c
        self.mean = self.mean + delta * c / tot
        self.var = (self.var * self.count + v * c + delta ** 2 * self.count * c / tot) / tot
        self.count = tot

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / np.sqrt(self.var + 1e-8), -self.clip, self.clip).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": float(self.count),
                "clip": self.clip}

    @classmethod
    def from_dict(cls, d: dict) -> "RunningNorm":
        r = cls(len(d["mean"]), d["clip"])
        r.mean, r.var, r.count = np.array(d["mean"]), np.array(d["var"]), d["count"]
        return r
