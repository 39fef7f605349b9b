"""The PettingZoo ParallelEnv over the simulator (and its AEC conversion).

Agents are the nodes (``home_0``, ``edge_12``, ... as in the scenario); one step is one control
epoch; nobody terminates early (a node that is down gets an action mask instead); every agent is
truncated at the horizon. Observations are flat float32 Boxes (``features.FEATURES``), actions
MultiDiscrete (``actions.py``), masks in ``infos[agent]["action_mask"]`` as a tuple of int8 arrays
(one per component: what ``MultiDiscrete.sample(mask=...)`` takes); with ``numeric_infos=True``
every info holds numbers and one mask array instead, the same keys and shapes from reset on (for
wrappers that stack infos into tensors, e.g. TorchRL's). ``state()`` is the global
state for centralised critics. The numpy core is ``env.core``. The spaces are fixed per scenario
(direct mode pads to ``core.slots`` neighbour slots), whatever the seed of an episode; an episode
is truncated at the horizon or after ``max_cycles`` steps, whichever comes first.
"""
from __future__ import annotations

import os

import numpy as np

from otmarl.scenarios import Scenario
from otmarl.scenarios.errors import UserError

from . import deps
from .actions import plan_totals
from .core import EnvOptions, MarlCore, RewardWeights, resolve_scenario
from .features import HIGH, LOW, NAMES
from .render import render_ansi, render_rgb

gym = deps.require("gymnasium", "the MARL env")
pz = deps.require("pettingzoo", "the MARL env")

REWARD_TERMS = ("on_time", "dropped", "unserved", "loss", "fairness", "team", "late")
"""The reward terms of an epoch (``core.terms`` less ``plan``), as ``numeric_infos`` lists them."""
PLAN_TOTALS = tuple(plan_totals([], None, []))
"""The decision's totals (``core.actions.plan``), as ``numeric_infos`` lists them."""


class OTMarlEnv(pz.ParallelEnv):
    """``parallel_env(scenario, mode=..., seed=..., reward=..., horizon_h=..., overrides=...)``."""

    metadata = {"name": "otmarl_v0", "render_modes": ["human", "ansi", "rgb_array"], "render_fps": 4,
                "is_parallelizable": True}

    def __init__(self, scenario: "str | os.PathLike | Scenario" = "microgrid-solar", *,
                 mode: str = "market", seed: int | None = None,
                 reward: "RewardWeights | dict | None" = None, horizon_h: float | None = None,
                 overrides: tuple[str, ...] | list[str] = (), render_mode: str | None = None,
                 engine: str = "fast", direct_energy_share: float = 0.5,
                 direct_spare_soc: float = 0.5, direct_task_share: float = 0.5,
                 direct_max_slots: int = 32, max_cycles: int | None = None,
                 numeric_infos: bool = False):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise UserError(f"render_mode: unknown mode '{render_mode}' (choose human, ansi or rgb_array)")
        if max_cycles is not None and (int(max_cycles) != max_cycles or max_cycles < 1):
            raise UserError(f"max_cycles: value {max_cycles!r} must be a whole number >= 1")
        self.options = EnvOptions(mode=mode, reward=reward, engine=engine,
                                  direct_energy_share=direct_energy_share,
                                  direct_spare_soc=direct_spare_soc, direct_task_share=direct_task_share,
                                  direct_max_slots=direct_max_slots)
        self.max_cycles = max_cycles
        """Steps after which every agent is truncated (None: the horizon only)."""
        self.numeric_infos = bool(numeric_infos)
        """Infos as numbers and one int8 mask array (``_numeric_infos``), not tuples and dicts."""
        self.cycles = 0
        self.scenario = resolve_scenario(scenario, overrides, horizon_h)
        self.core = MarlCore(self.scenario, self.options)
        self.render_mode = render_mode
        self.possible_agents = list(self.core.names)
        self.agents: list[str] = []
        self._index = {a: i for i, a in enumerate(self.possible_agents)}
        self._seed = seed
        self._seeder: np.random.Generator | None = None
        nvec = np.asarray(self.core.spec.nvec, np.int64)
        # one space object per agent, created once (seeding one agent's space leaves others alone)
        self.observation_spaces = {a: gym.spaces.Box(LOW, HIGH, dtype=np.float32)
                                   for a in self.possible_agents}
        self.action_spaces = {a: gym.spaces.MultiDiscrete(nvec) for a in self.possible_agents}
        lo, hi = self.core.features.state_bounds()
        self.state_space = gym.spaces.Box(lo.astype(np.float32), hi.astype(np.float32), dtype=np.float32)
        self.feature_names = NAMES

    def observation_space(self, agent: str):
        return self.observation_spaces[agent]

    def action_space(self, agent: str):
        return self.action_spaces[agent]

    # ------------------------------------------------------------------------------ episode
    def _next_seed(self, seed: int | None) -> int:
        """``reset(seed=s)`` starts from s; later ``reset()`` calls draw their seeds from s."""
        if seed is not None:
            self._seeder = np.random.default_rng(seed)
            return int(seed)
        if self._seeder is None:
            if self._seed is not None:
                return self._next_seed(self._seed)
            self._seeder = np.random.default_rng()
        return int(self._seeder.integers(2**31 - 1))

    def reset(self, seed: int | None = None, options: dict | None = None):
        obs = self.core.reset(self._next_seed(seed))
        self.agents = list(self.possible_agents)
        self.cycles = 0
        return self._obs_dict(obs), self._infos(reset=True)

    def step(self, actions: dict):
        if not self.agents:
            raise UserError("step() after the episode ended: call reset()")
        if len(actions) == len(self.agents) and list(actions) == self.agents:   # the usual case
            a = np.concatenate(list(actions.values()))
        else:       # some agents missing (they do nothing) or in another order
            a = np.zeros((self.core.n, len(self.core.spec.nvec)), np.int64)
            for agent, act in actions.items():
                a[self._index[agent]] = act
        obs, rew, truncated, _ = self.core.step(a)
        self.cycles += 1
        truncated = truncated or (self.max_cycles is not None and self.cycles >= self.max_cycles)
        names = self.agents
        obs_d = self._obs_dict(obs)
        rewards = dict(zip(names, rew.tolist()))
        terminations = dict.fromkeys(names, False)
        truncations = dict.fromkeys(names, bool(truncated))
        infos = self._infos()
        if truncated:
            self.agents = []
        return obs_d, rewards, terminations, truncations, infos

    def _obs_dict(self, obs: np.ndarray) -> dict:
        return dict(zip(self.possible_agents, obs))

    def _infos(self, reset: bool = False) -> dict:
        if self.numeric_infos:
            return self._numeric_infos(reset)
        core = self.core
        off = core.spec.offsets
        m = core.masks()
        masks = zip(*(m[:, off[k]:off[k + 1]] for k in range(len(off) - 1)))   # per agent
        ep, tp = core.actions.energy_price.tolist(), core.actions.task_price.tolist()
        # the epoch's plan summary and team reward terms, one dict shared by all agents
        plan = {} if reset else dict(core.actions.plan)
        terms = {} if reset else {k: v for k, v in core.terms.items() if k != "plan"}
        return {a: {"action_mask": mk, "energy_price": e, "task_price": t, "plan": plan,
                    "reward_terms": terms}
                for a, mk, e, t in zip(self.possible_agents, masks, ep, tp)}

    def _numeric_infos(self, reset: bool) -> dict:
        """Per agent: ``action_mask`` as one int8 array (components, choices) (every component of
        either mode has the same number of choices), ``energy_price``, ``task_price``, then
        ``reward_<term>`` and ``plan_<total>`` as floats, 0 at reset: the same keys and shapes at
        every step."""
        core = self.core
        terms = {} if reset else core.terms
        plan = {} if reset else core.actions.plan
        shared = {f"reward_{k}": float(terms.get(k, 0.0)) for k in REWARD_TERMS}
        shared.update({f"plan_{k}": float(plan.get(k, 0.0)) for k in PLAN_TOTALS})
        ep, tp = core.actions.energy_price.tolist(), core.actions.task_price.tolist()
        nvec = core.spec.nvec
        masks = core.masks().reshape(core.n, len(nvec), nvec[0])
        return {a: {"action_mask": mk, "energy_price": e, "task_price": t, **shared}
                for a, mk, e, t in zip(self.possible_agents, masks, ep, tp)}

    def state(self) -> np.ndarray:
        return self.core.state().astype(np.float32)

    # ------------------------------------------------------------------------------ render
    def render(self):
        """'human' prints the text frame (and returns None), 'ansi' returns it, 'rgb_array' returns
        an image."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode (human, ansi or rgb_array)")
            return None
        if self.render_mode == "rgb_array":
            return render_rgb(self.core)
        text = render_ansi(self.core)
        if self.render_mode == "human":
            print(text, flush=True)
            return None
        return text

    def close(self) -> None:
        pass


def parallel_env(scenario: "str | os.PathLike | Scenario" = "microgrid-solar", **options) -> OTMarlEnv:
    """The PettingZoo ParallelEnv (options: see ``OTMarlEnv`` and docs/marl.md)."""
    return OTMarlEnv(scenario, **options)


def aec_env(scenario: "str | os.PathLike | Scenario" = "microgrid-solar", **options):
    """The same env as an AEC env, through PettingZoo's ``parallel_to_aec`` converter."""
    from pettingzoo.utils.conversions import parallel_to_aec
    return parallel_to_aec(parallel_env(scenario, **options))
