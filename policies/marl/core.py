"""The numpy core behind the PettingZoo env: arrays in, arrays out, one control epoch per step.

``MarlCore(scenario, options)``: ``reset(seed) -> obs (n, d)``; ``step(actions (n, k)) -> obs,
rewards (n,), truncated, info``; ``state()``; ``masks()``. Our trainers drive it directly; the
dict API (``env.py``) is a thin layer on top. The reward is defined here (docs/marl.md), from
what each step of the simulation reports (``StepResult``): the core reads observations and step
results, never the world's bookkeeping, and changes nothing on the simulation it drives.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from pydantic import ValidationError

from otmarl.analysis.stats import jain  # noqa: F401  (the reward's fairness term; re-exported)
from otmarl.scenarios import Scenario, load
from otmarl.scenarios.errors import UserError
from otmarl.scenarios.schema import RewardWeights
from otmarl.simulator import Simulation
from otmarl.simulator.control import Decision
from otmarl.simulator.simulate import StepResult
from otmarl.simulator.world import DONE_LATE, DONE_ON_TIME, DROPPED

from .actions import DirectActions, MarketActions, direct_slots, plan_summary
from .features import FeatureBuilder

MODES = ("market", "direct")


def parse_reward(value: "RewardWeights | dict | None",
                 base: RewardWeights | None = None) -> RewardWeights:
    """Reward weights: ``value`` itself, or a dict of weights over ``base`` (default: the
    defaults), or ``base`` when None. A bad weight is a UserError naming it."""
    base = base if base is not None else RewardWeights()
    if value is None or isinstance(value, RewardWeights):
        return value if value is not None else base
    try:
        return RewardWeights.model_validate({**base.model_dump(), **dict(value)})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise UserError(f"reward: {where}: {err['msg']} (value {err.get('input')!r})") from None


@dataclass(frozen=True)
class EnvOptions:
    """Options of the MARL env (all documented in docs/marl.md)."""

    mode: str = "market"
    """'market': actions set offers and requests that OT clears; 'direct': actions pick
    neighbours to send to (no OT, the ablation)."""
    reward: "RewardWeights | dict | None" = None
    """Team reward weights: None takes the scenario's ``marl.reward``; a dict overrides some of
    them."""
    engine: str = "fast"
    """Simulation engine."""
    direct_energy_share: float = 0.5
    """Direct mode: share of the spare energy (above ``direct_spare_soc``) sent per epoch."""
    direct_spare_soc: float = 0.5
    """Direct mode: energy above this state of charge counts as spare."""
    direct_task_share: float = 0.5
    """Direct mode: share of the waiting tasks (rounded up, most urgent first) sent."""
    direct_max_slots: int = 32
    """Direct mode: at most this many neighbour slots per component (``actions.direct_slots``:
    the scenario's largest degree when its graph is fixed, else n_nodes - 1, capped here)."""
    record_flows: bool = False
    """Keep the run's flow table (only needed to write a run folder; slow)."""

    def __post_init__(self):
        parse_reward(self.reward)           # a misspelt or out-of-range weight fails here
        if self.mode not in MODES:
            raise UserError(f"mode: unknown mode '{self.mode}' (choose market or direct)")
        for name in ("direct_energy_share", "direct_spare_soc", "direct_task_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise UserError(f"{name}: value {v:g} must be between 0 and 1")
        if int(self.direct_max_slots) != self.direct_max_slots or self.direct_max_slots < 1:
            raise UserError(f"direct_max_slots: value {self.direct_max_slots!r} must be a whole number >= 1")

    def to_dict(self) -> dict:
        r = self.reward
        return {**asdict(self), "reward": r.model_dump() if isinstance(r, RewardWeights) else r}

    @classmethod
    def from_dict(cls, d: dict) -> "EnvOptions":
        return cls(**d)


def resolve_scenario(scenario: "str | os.PathLike | Scenario", overrides=(),
                     horizon_h: float | None = None) -> Scenario:
    """A Scenario from a built-in name, a path or a Scenario, with overrides and horizon."""
    if isinstance(scenario, Scenario):
        if overrides:
            raise UserError("overrides apply to a scenario name or file, not to a Scenario object")
        sc = scenario
    else:
        sc = load(scenario, list(overrides))
    if horizon_h is not None:
        epochs = horizon_h * 3600.0 / sc.control_interval_s
        if horizon_h <= 0 or abs(epochs - round(epochs)) > 1e-9 * max(1.0, epochs):
            raise UserError(f"horizon_h: value {horizon_h:g} must be > 0 and a whole number of "
                            f"control epochs of {sc.control_interval_s:g} s")
        sc = sc.model_copy(update={"horizon_h": float(horizon_h)})
    return sc


class MarlCore:
    """One simulated run at a time; ``reset(seed)`` starts the next."""

    def __init__(self, scenario: Scenario, options: EnvOptions = EnvOptions()):
        self.sc, self.opt = scenario, options
        self.names = tuple(scenario.node_names())
        self.n = len(self.names)
        self.sim: Simulation | None = None
        self.weights = parse_reward(options.reward, scenario.marl.reward)
        self.seed: int | None = None
        self.slots = direct_slots(scenario, options.direct_max_slots) if options.mode == "direct" else 0
        # the spaces need the static world: until the first reset the core holds the episode of
        # seed 0, which reset(0) then takes over instead of building it again
        self._setup(self._simulation(0))

    # ------------------------------------------------------------------------------ set-up
    def _simulation(self, seed: int) -> Simulation:
        return Simulation(self.sc, seed, self.opt.engine, record_flows=self.opt.record_flows)

    def _setup(self, sim: Simulation) -> None:
        self.sim = sim
        info = self.info = sim.world.info()
        self.features = FeatureBuilder(info)
        if self.opt.mode == "market":
            self.actions = MarketActions(info, sim.world.rng["policy"])
        else:
            o = self.opt
            self.actions = DirectActions(info, o.direct_energy_share, o.direct_spare_soc,
                                         o.direct_task_share, self.slots)
        self.spec = self.actions.spec
        self.top = np.asarray(self.spec.nvec, np.int64) - 1
        self._ones = np.ones(self.n)
        w = sim.world
        self.on_time_by = np.zeros(self.n)        # per origin node, cumulative
        self.resolved_by = np.zeros(self.n)
        self.jain = 1.0
        self.per_epoch_tasks = max(len(w.tasks) / max(w.n_epochs, 1), 1.0)
        self.idle_full_wh = info.idle_power_w * info.dt_s / 3600.0
        self.total_idle_wh = max(float(self.idle_full_wh.sum()), 1e-12)
        self.team_return = 0.0
        self.terms: dict = {}
        self.last_step: StepResult | None = None     # what the last epoch did
        self._observe()

    @property
    def obs_dim(self) -> int:
        return self.obs.shape[1]

    @property
    def state_dim(self) -> int:
        return self.features.state_dim

    def reset(self, seed: int) -> np.ndarray:
        fresh = self.seed is None and self.sim.k == 0 and int(seed) == 0
        self.seed = int(seed)
        if not fresh:
            self._setup(self._simulation(self.seed))
        return self.obs

    def brownout_node_hours(self) -> float:
        """Node-hours browned out so far in this episode."""
        return self.sim.brownout_node_hours()

    # -------------------------------------------------------------------------------- step
    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, dict]:
        """Map actions (n, len(nvec)) ints to a valid decision and simulate one epoch."""
        a = np.asarray(actions, np.int64).reshape(self.n, len(self.spec.nvec))
        a = np.minimum(np.maximum(a, 0), self.top)     # out-of-range components are clipped
        return self._advance(self.actions.decide(self.cur, a))

    def step_decision(self, decision: Decision) -> tuple[np.ndarray, np.ndarray, bool, dict]:
        """Simulate one epoch under a given decision (e.g. from a baseline controller)."""
        self.actions.plan = plan_summary(decision)
        return self._advance(decision)

    def _advance(self, decision: Decision) -> tuple[np.ndarray, np.ndarray, bool, dict]:
        if self.sim.done:
            raise UserError("the episode is over (truncated at the horizon): call reset()")
        self.last_step = self.sim.step(decision)
        rewards = self._reward(self.last_step)
        self._observe()
        return self.obs, rewards, self.sim.done, self.terms

    def _observe(self) -> None:
        sim = self.sim
        if sim.done:      # look without applying the next boundary's faults or recoveries
            self.cur = sim.peek()
        else:
            self.cur = sim.observe()
        self.obs = self.features.observe(self.cur, self.actions.energy_price, self.actions.task_price)

    def state(self) -> np.ndarray:
        return self.features.state(self.obs)

    def masks(self) -> np.ndarray:
        return self.actions.masks(self.cur)

    # ------------------------------------------------------------------------------ reward
    def _reward(self, res: StepResult) -> np.ndarray:
        wt, n, fin = self.weights, self.n, res.finished
        st = fin.status
        on = st == DONE_ON_TIME
        n_on, n_late = int(np.count_nonzero(on)), int(np.count_nonzero(st == DONE_LATE))
        n_drop = int(np.count_nonzero(st == DROPPED))
        if len(st):
            self.on_time_by += np.bincount(fin.origin[on], minlength=n)
            self.resolved_by += np.bincount(fin.origin, minlength=n)
            seen = self.resolved_by.nonzero()[0]
            j = jain(self.on_time_by[seen] / self.resolved_by[seen])
        else:
            j = self.jain
        d_jain, self.jain = j - self.jain, j
        e = res.energy
        unserved = e["unserved_wh"]      # 0 at failed nodes: a fault is not the controller's doing
        flows, moved = res.flows, 0.0       # lost in transfers and spent transmitting
        if len(flows["energy"]["wh"]):
            moved = float(res.sent_wh.sum() - res.delivered_wh.sum())
        if len(flows["tasks"]["count"]):
            moved += float(e["consumed_tx_wh"].sum())
        lam = self.per_epoch_tasks
        terms = {"on_time": n_on / lam, "dropped": n_drop / lam,
                 "unserved": float(unserved.sum()) / self.total_idle_wh,
                 "loss": moved / self.total_idle_wh, "fairness": d_jain}
        team = (wt.on_time * terms["on_time"] - wt.dropped * terms["dropped"]
                - wt.unserved * terms["unserved"] - wt.loss * terms["loss"] + wt.fairness * terms["fairness"])
        self.team_return += team
        self.terms = {**terms, "team": team, "late": n_late / lam,
                      "plan": self.actions.plan}
        base = self._ones * team if wt.credit == 0.0 else self._credit(res, team, wt.credit)
        if wt.local == 0.0:
            return base
        on_time_at = np.bincount(fin.node[on], minlength=n)        # where they were served
        local = (wt.on_time * on_time_at / (lam / n)
                 - wt.unserved * unserved / np.maximum(self.idle_full_wh, 1e-12))
        return (1.0 - wt.local) * base + wt.local * local

    def _credit(self, res: StepResult, team: float, c: float) -> np.ndarray:
        """The team reward split by the nodes' marginals in this epoch's transport plan."""
        t, n = res.flows["tasks"], self.n
        parts = [res.sent_wh + res.delivered_wh,
                 np.bincount(t["src"], t["count"], n) + np.bincount(t["dst"], t["count"], n)]
        parts = [x / x.sum() for x in parts if x.sum() > 0]
        share = sum(parts) / len(parts) if parts else self._ones / n
        return team * ((1.0 - c) + c * n * share)
