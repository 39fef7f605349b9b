"""Experience for PPO from the MARL env core, shared by MAPPO and IPPO.

This module owns one update's worth of experience: stepping every parallel ``MarlCore`` with the
shared actor (``Collector``), the bootstrap at a truncation, the rollout buffer, generalised
advantage estimation (``gae``) with the paired-env baseline (``paired_baseline``), reward
normalisation, correlated exploration draws, and the flat batch with its minibatch order
(``Batch``). The algorithm files choose what the critic sees by passing a ``CriticInput``
function; nothing here names an algorithm. Torch randomness (action sampling, minibatch order) comes from the run's
``torch.Generator``; episode seeds from a numpy generator seeded by the run seed.

It relies only on the env core's public surface: ``reset``, ``step``, ``state``, ``masks``,
the observation ``cur`` (its ``up`` and ``failed`` flags count brownout) and ``info.dt_s``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from . import deps
from .core import MarlCore
from .drift import drift_row
from .nets import Actor, Critic, RunningNorm

torch = deps.torch()

CriticInput = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(normalised obs (E, n, d), normalised state (E, S)) -> critic input (E, n, C)."""

SEED_MAX = 2**31 - 1


def with_state(obs: np.ndarray, state: np.ndarray) -> np.ndarray:
    """(E, n, S + d): the global state (E, S) broadcast to every agent, then the agent's own
    observation (E, n, d)."""
    e, n = obs.shape[:2]
    return np.concatenate([np.broadcast_to(state[:, None, :], (e, n, state.shape[1])), obs], -1)


@dataclass
class Buffer:
    """One rollout: T epochs x E envs x n agents (rewards after any truncation bootstrap)."""

    obs: np.ndarray           # (T, E, n, d) normalised observations
    critic_in: np.ndarray     # (T, E, n, C)
    mask: np.ndarray          # (T, E, n, sum nvec) int8
    action: np.ndarray        # (T, E, n, K)
    logp: np.ndarray          # (T, E, n)
    value: np.ndarray         # (T, E, n)
    reward: np.ndarray        # (T, E, n)
    truncated: np.ndarray     # (T, E) 1.0 where the episode ended after this epoch

    @classmethod
    def zeros(cls, T: int, E: int, n: int, d: int, C: int, m: int, K: int) -> "Buffer":
        f = np.float32
        return cls(np.zeros((T, E, n, d), f), np.zeros((T, E, n, C), f), np.zeros((T, E, n, m), np.int8),
                   np.zeros((T, E, n, K), np.int64), np.zeros((T, E, n), f), np.zeros((T, E, n), f),
                   np.zeros((T, E, n), f), np.zeros((T, E), f))


@dataclass
class Rollout:
    """A filled buffer and what the log wants from it."""

    buf: Buffer
    next_value: np.ndarray            # (E, n) V of the observations after the last epoch
    terms: list[dict]                 # the env's reward terms, every env-step
    team_reward: np.ndarray           # (T,) mean team reward of each epoch over the envs
    drift_rows: np.ndarray            # (T, f + 1) per epoch: mean non-clock features, team reward
    finished: list[dict]              # stats of the episodes that ended in this rollout


def gae(buf: Buffer, next_value: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns (T, E, n). A truncation is not a terminal state: its reward
    already holds gamma V(s_T), so the recursion only stops there."""
    adv = np.zeros_like(buf.reward)
    last = np.zeros_like(next_value)
    T = len(buf.reward)
    for t in reversed(range(T)):
        nv = next_value if t == T - 1 else buf.value[t + 1]
        live = 1.0 - buf.truncated[t][:, None]
        delta = buf.reward[t] + gamma * nv * live - buf.value[t]
        last = delta + gamma * lam * live * last
        adv[t] = last
    return adv, adv + buf.value


def paired_baseline(adv: np.ndarray) -> np.ndarray:
    """Advantages (T, E, n) minus their mean over the envs at the same epoch and agent. With
    paired envs (one world, one weather, one task stream) that mean carries what the critic could
    not foresee of the exogenous noise; what is left differs between the envs only by what the
    agents sampled."""
    return adv - adv.mean(1, keepdims=True)


@dataclass(frozen=True)
class Batch:
    """A rollout flattened over epochs, envs and agents (N = T E n rows), as tensors."""

    obs: "torch.Tensor"
    critic_in: "torch.Tensor"
    mask: "torch.Tensor"
    action: "torch.Tensor"
    logp: "torch.Tensor"
    value: "torch.Tensor"
    adv: "torch.Tensor"
    ret: "torch.Tensor"
    group: "torch.Tensor"     # consensus group of each row's agent

    @classmethod
    def of(cls, buf: Buffer, adv: np.ndarray, ret: np.ndarray, groups: np.ndarray) -> "Batch":
        T, E, n = buf.reward.shape
        N = T * E * n

        def flat(x: np.ndarray, *tail: int) -> "torch.Tensor":
            return torch.as_tensor(x.reshape(N, *tail))
        return cls(flat(buf.obs, -1), flat(buf.critic_in, -1), flat(buf.mask, -1), flat(buf.action, -1),
                   flat(buf.logp), flat(buf.value), flat(adv), flat(ret),
                   torch.as_tensor(np.tile(groups, T * E)))

    @property
    def size(self) -> int:
        return len(self.logp)

    def minibatches(self, count: int, gen: "torch.Generator") -> Iterator["torch.Tensor"]:
        """Row indices of ``count`` minibatches in an order drawn from ``gen`` (the last may
        be shorter)."""
        size = max(1, self.size // count)
        perm = torch.randperm(self.size, generator=gen)
        for s in range(0, self.size, size):
            yield perm[s:s + size]

    def explained_variance(self) -> float:
        """1 - Var(returns - values) / Var(returns): how much of the returns the critic
        predicted before the update (NaN when the returns are constant)."""
        var = float(self.ret.var())
        return float("nan") if var == 0.0 else 1.0 - float((self.ret - self.value).var()) / var


@dataclass
class _Episode:
    """Running sums of one env's current episode (from the env's public outputs)."""

    on_time: float = 0.0
    resolved: float = 0.0
    browned_epochs: int = 0

    def add(self, terms: dict) -> None:
        # on_time, late and dropped share one scale (tasks per epoch), so their ratio is exact
        self.on_time += terms["on_time"]
        self.resolved += terms["on_time"] + terms["late"] + terms["dropped"]

    def stats(self, core: MarlCore) -> dict:
        return {"episode_return": core.team_return,
                "on_time_ratio": self.on_time / self.resolved if self.resolved > 0 else float("nan"),
                "brownout_node_h": self.browned_epochs * core.info.dt_s / 3600.0}


def browned(core: MarlCore) -> int:
    """Nodes browned out in the current epoch: down, and not by a fault."""
    cur = core.cur
    return int(np.count_nonzero(~cur.up & ~cur.failed))


@dataclass
class Collector:
    """Steps E envs with the shared actor, ``num_steps`` epochs per rollout, resetting each env
    with a fresh episode seed when it truncates."""

    cores: list[MarlCore]
    obs_norm: RunningNorm
    state_norm: RunningNorm
    critic_input: CriticInput
    num_steps: int
    gamma: float
    gen: "torch.Generator"
    seeder: np.random.Generator
    paired: bool = False
    """Every env runs the same episode seed (they start and truncate together), so that
    ``paired_baseline`` can take the exogenous part out of the advantages."""
    joint_explore: float = 0.0
    """Share of the agents (drawn anew each epoch) whose action draws use their env's common
    uniforms instead of their own (0: independent draws)."""
    actor_state: bool = False
    """The actor sees the global state next to its own observation (``with_state``)."""
    reward_norm: RunningNorm | None = None
    """Scale the rewards by the running standard deviation of the discounted return (None: off)."""
    joint_hold: int = 1
    """Epochs each env keeps its common uniforms (1: fresh ones every epoch)."""
    obs: np.ndarray = field(init=False)
    episodes: list[_Episode] = field(init=False)

    def __post_init__(self) -> None:
        self.obs = np.stack([c.reset(self._episode_seed(e)) for e, c in enumerate(self.cores)])
        self.episodes = [_Episode() for _ in self.cores]
        self.disc_return = np.zeros(self.obs.shape[:2])       # (E, n) discounted return so far
        self.epochs = 0                                       # epochs stepped (joint_hold's clock)
        self.returns_seen: list[np.ndarray] = []

    def _uniforms(self, shape: tuple[int, int], mask: np.ndarray) -> "torch.Tensor | None":
        """(E, n, K) uniforms for the action draws: each agent's own, or with probability
        ``joint_explore`` its env's common ones (agents that see alike then act alike), which
        the env keeps for ``joint_hold`` epochs."""
        if self.joint_explore <= 0.0:
            return None
        E, n = shape
        K = len(self.cores[0].spec.nvec)
        own = torch.rand((E, n, K), generator=self.gen)
        if self.epochs % self.joint_hold == 0:
            self.common = torch.rand((E, 1, K), generator=self.gen)
        self.epochs += 1
        joint = torch.rand((E, n, 1), generator=self.gen) < self.joint_explore
        return torch.where(joint, self.common.expand(E, n, K), own)

    def _episode_seed(self, e: int) -> int:
        """A fresh seed per env, or (paired) one per episode that env 0 draws and the others
        reuse (the envs are stepped in order and truncate at the same epoch)."""
        if e == 0 or not self.paired:
            self._seed = int(self.seeder.integers(SEED_MAX))
        return self._seed

    def reward_scale(self) -> float:
        """What the rewards are divided by: the running std of the discounted return (1 when off)."""
        if self.reward_norm is None:
            return 1.0
        return float(np.sqrt(self.reward_norm.var[0] + 1e-8))

    def _update_reward_norm(self) -> None:
        if self.reward_norm is not None and self.returns_seen:
            self.reward_norm.update(np.concatenate(self.returns_seen))
        self.returns_seen = []

    def normalised(self, obs: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(actor input, critic input) from raw observations (E, n, d) and states (E, S)."""
        on, sn = self.obs_norm(obs), self.state_norm(state)
        return (with_state(on, sn) if self.actor_state else on), self.critic_input(on, sn)

    def collect(self, actor: Actor, critic: Critic) -> Rollout:
        E, n = self.obs.shape[:2]
        K, m = len(self.cores[0].spec.nvec), int(sum(self.cores[0].spec.nvec))
        state = np.stack([c.state() for c in self.cores])
        ai, ci = self.normalised(self.obs, state)
        buf = Buffer.zeros(self.num_steps, E, n, ai.shape[-1], ci.shape[-1], m, K)
        terms, team, rows, finished = [], [], [], []
        for t in range(self.num_steps):
            a = self._act(actor, critic, buf, t)
            step_terms = [self._step(e, a[e], critic, buf, t, finished) for e in range(E)]
            terms += step_terms
            team.append(float(np.mean([tm["team"] for tm in step_terms])))
            rows.append(drift_row(self.obs, team[-1]))
            self._update_reward_norm()
        with torch.no_grad():
            _, ci = self.normalised(self.obs, np.stack([c.state() for c in self.cores]))
            next_value = critic(torch.as_tensor(ci)).numpy()
        return Rollout(buf, next_value, terms, np.array(team), np.array(rows), finished)

    def _act(self, actor: Actor, critic: Critic, buf: Buffer, t: int) -> np.ndarray:
        """Record epoch t's inputs, sample the actions (E, n, K) and their values."""
        state = np.stack([c.state() for c in self.cores])
        self.obs_norm.update(self.obs.reshape(-1, self.obs.shape[-1]))
        self.state_norm.update(state)
        o, ci = self.normalised(self.obs, state)
        mask = np.stack([c.masks() for c in self.cores])
        with torch.no_grad():
            a, logp, _, _ = actor.act(torch.as_tensor(o), torch.as_tensor(mask), generator=self.gen,
                                      uniforms=self._uniforms(o.shape[:2], mask))
            v = critic(torch.as_tensor(ci))
        buf.obs[t], buf.critic_in[t], buf.mask[t], buf.action[t] = o, ci, mask, a.numpy()
        buf.logp[t], buf.value[t] = logp.numpy(), v.numpy()
        return a.numpy()

    def _step(self, e: int, action: np.ndarray, critic: Critic, buf: Buffer, t: int,
              finished: list[dict]) -> dict:
        """Step env e one epoch; at the horizon bootstrap from V(s_T) and start a new episode."""
        core, ep = self.cores[e], self.episodes[e]
        ep.browned_epochs += browned(core)
        nxt, r, truncated, terms = core.step(action)
        ep.add(terms)
        if self.reward_norm is not None:
            self.disc_return[e] = self.disc_return[e] * self.gamma + r
            self.returns_seen.append(self.disc_return[e].copy())
            r = r / self.reward_scale()
        if truncated:
            self.disc_return[e] = 0.0
            _, ci_end = self.normalised(nxt[None], core.state()[None])
            with torch.no_grad():
                r = r + self.gamma * critic(torch.as_tensor(ci_end))[0].numpy()
            finished.append(ep.stats(core))
            self.episodes[e] = _Episode()
            nxt = core.reset(self._episode_seed(e))
        buf.reward[t, e], buf.truncated[t, e] = r, float(truncated)
        self.obs[e] = nxt
        return terms
