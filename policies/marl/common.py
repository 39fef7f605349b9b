"""What MAPPO and IPPO share around their training loops: the options (``PPOArgs``), one run's
set-up and bookkeeping (``PPORun``: envs, networks, optimiser, OT hooks, log, checkpoint), the
clipped PPO loss, and checkpoint loading.

Each algorithm file (``mappo.py``, ``ippo.py``) owns its own straight loop and says what its
critic sees; this module never branches on the algorithm. The OT hooks are the barycenter
consensus in the policy loss (``alignment.py``) and the drift-driven learning rate
(``drift.py``). Parameter sharing: one actor for every agent (the observation carries what
differs between nodes). Steps count control epochs summed over the parallel envs; agent-steps
= steps x agents. All torch randomness flows from one ``torch.Generator`` seeded by the run seed.
"""
from __future__ import annotations

import csv
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from otmarl.scenarios.errors import UserError

from . import deps
from .alignment import Consensus
from .core import EnvOptions, MarlCore, resolve_scenario
from .drift import DriftDetector, DriftSignal, lr_factor
from .features import NAMES

torch = deps.torch()
from .nets import Actor, Critic, RunningNorm  # noqa: E402  (after the lazy torch import)
from .rollout import Batch, Collector, CriticInput, Rollout  # noqa: E402
from .controls import tune_seeds  # noqa: E402
from .warmstart import warm_start  # noqa: E402

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class PPOArgs:
    """Options of a training run (``otmarl train`` sets the common ones)."""

    scenario: str = "microgrid-solar"
    """Built-in scenario name or scenario file."""
    overrides: tuple[str, ...] = ()
    """Scenario overrides 'path=value', as ``--set`` takes them."""
    horizon_h: float | None = None
    """Episode length in hours (default: the scenario's horizon)."""
    mode: str = "market"
    """Env action mode: market (OT clears the offers the agents set) or direct (no OT)."""
    reward: dict = field(default_factory=dict)
    """Reward weights overriding the scenario's ``marl.reward`` (see RewardWeights)."""
    seed: int = 0
    """Seed of the run's torch.Generator (weights, action samples, minibatch order) and of the
    episode seeds (drawn from it, so runs are reproducible)."""
    total_steps: int = 50_000
    """Control epochs to simulate in total, summed over the parallel envs."""
    n_envs: int = 8
    """Parallel envs (stepped in turn in this process)."""
    num_steps: int = 48
    """Epochs per env per rollout (one PPO update per rollout)."""
    lr: float = 3e-4
    """Adam learning rate (the base rate lr0 of the drift schedule)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over training."""
    gamma: float = 0.99
    """Discount per epoch."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    update_epochs: int = 4
    """Passes over each rollout."""
    num_minibatches: int = 4
    """Minibatches per pass (over all agents' samples)."""
    clip_coef: float = 0.2
    """PPO ratio clip."""
    ent_coef: float = 0.01
    """Entropy bonus."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Gradient clipping."""
    norm_reward: bool = True
    """Divide rewards by the running standard deviation of the discounted return (the critic
    then fits returns of order 1)."""
    paired_envs: bool = True
    """The parallel envs run the same episode seeds, and each advantage has the mean over the
    envs at that epoch and agent taken out (``rollout.paired_baseline``); needs n_envs >= 2."""
    joint_explore: float = 0.0
    """Correlated exploration: the share of agents per epoch whose action draws share their
    env's uniforms (``rollout.Collector``); 0 = independent draws."""
    joint_hold: int = 1
    """Epochs an env keeps its common uniforms of joint exploration (1: new ones every epoch), so
    that a shared deviation lasts long enough to show in the team reward."""
    actor_state: bool = False
    """The actor sees the global ``state()`` next to its own observation (then a trained policy
    needs every node's state to act: centralised execution)."""
    deploy: str = "sample"
    """How ``--policy marl:DIR`` acts: 'sample' draws from the policy (seeded by the world's
    policy stream), 'mode' takes the most likely allowed option per component."""
    hidden: int = 64
    """Width of the two hidden layers of actor and critic."""
    align_lambda: float = 0.0
    """Weight of the barycenter consensus penalty: > 0 aligns the groups' policies, < 0
    diversifies them, 0 turns it off."""
    align_every: int = 5
    """Updates between barycenter refreshes."""
    align_eps: float = 0.1
    """Entropic regularisation of the Sinkhorn divergence and the barycenter (cost in [0, 1])."""
    drift: bool = False
    """Scale the learning rate with the Wasserstein drift of observations and rewards."""
    drift_window_h: float = 24.0
    """Length of each of the two compared windows, hours of simulated time."""
    drift_beta: float = 1.0
    """Slope of the learning-rate factor in the normalised distance d / threshold."""
    drift_max_factor: float = 3.0
    """Largest learning-rate factor."""
    init: str | None = None
    """Start from the weights and normalisers of this checkpoint folder."""
    warm_start: str = "none"
    """'best-fixed': before training, search the best constant action shared by all agents on
    the tuning seeds (``controls.search_fixed``) and start the actor at the policy that plays it
    with probability ``warm_prob`` per component (``warmstart.py``); 'none': the usual
    near-uniform start."""
    warm_prob: float = 0.9
    """Probability the warm-started policy puts on best-fixed's option of each component."""
    warm_tune_seeds: int = 3
    """Tuning seeds of the warm start's best-fixed search (the first of ``controls.tune_seeds``)."""
    torch_threads: int = 1
    """Torch CPU threads (the simulator is single-threaded)."""
    select_every: int = 0
    """Checkpoint selection: before the first update and every this many updates (and after the
    last), the actor is played on the first ``select_seeds`` tuning seeds (``controls.tune_seeds``,
    disjoint from training and evaluation seeds), deployed by sampling and by its mode; the
    checkpoint written is the (update, deployment) of the highest mean team return there, and
    ``deploy`` is set to it. With the warm start, the actor before the first update deployed by
    its mode plays best-fixed itself. 0: off (the last update, deployed as ``deploy`` says)."""
    select_seeds: int = 3
    """Tuning seeds of checkpoint selection."""
    out: str = "runs/marl"
    """Checkpoint folder."""

    def __post_init__(self) -> None:
        for name in ("total_steps", "n_envs", "num_steps", "update_epochs", "num_minibatches", "joint_hold",
                     "select_seeds"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: value {getattr(self, name)} must be >= 1")
        if self.deploy not in ("sample", "mode"):
            raise UserError(f"deploy: unknown value '{self.deploy}' (choose sample or mode)")
        if self.select_every < 0:
            raise UserError(f"select_every: value {self.select_every} must be >= 0 (0: no selection)")
        if not 0.0 <= self.joint_explore <= 1.0:
            raise UserError(f"joint_explore: value {self.joint_explore:g} must be between 0 and 1")
        self._check_warm_start()

    def _check_warm_start(self) -> None:
        from .warmstart import WARM_STARTS
        if self.warm_start not in WARM_STARTS:
            raise UserError(f"warm_start: unknown value '{self.warm_start}' (choose {' or '.join(WARM_STARTS)})")
        if not 0.0 < self.warm_prob < 1.0:
            raise UserError(f"warm_prob: value {self.warm_prob:g} must be > 0 and < 1")
        if self.warm_tune_seeds < 1:
            raise UserError(f"warm_tune_seeds: value {self.warm_tune_seeds} must be >= 1")
        if self.warm_start != "none" and self.init:
            raise UserError(f"warm_start: '{self.warm_start}' and init '{self.init}' both set the "
                            "starting weights; give one of them")


def agent_groups(core: MarlCore) -> np.ndarray:
    """Consensus groups: node classes when there are several, otherwise every agent."""
    cls = np.asarray(core.info.node_class)
    return cls if len(np.unique(cls)) > 1 else np.arange(core.n)


# ------------------------------------------------------------------------------ the PPO loss
LOSS_STATS = ("pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac", "align")


def ppo_loss(actor: Actor, critic: Critic, batch: Batch, idx: "torch.Tensor", args: PPOArgs,
             consensus: Consensus | None) -> tuple["torch.Tensor", dict]:
    """Clipped surrogate + value loss - entropy bonus (+ lambda x Sinkhorn divergence to the
    barycenter) on the rows ``idx``, and the minibatch's statistics."""
    _, logp, ent, probs = actor.act(batch.obs[idx], batch.mask[idx], batch.action[idx])
    log_ratio = logp - batch.logp[idx]
    ratio = log_ratio.exp()
    adv = batch.adv[idx]
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)      # per-minibatch normalisation
    clipped = ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)
    pg = torch.max(-adv * ratio, -adv * clipped).mean()
    v_loss = 0.5 * ((critic.normalised(batch.critic_in[idx]) - critic.standardise(batch.ret[idx])) ** 2).mean()
    loss = pg - args.ent_coef * ent.mean() + args.vf_coef * v_loss
    with torch.no_grad():
        stats = {"pg_loss": float(pg), "v_loss": float(v_loss), "entropy": float(ent.mean()),
                 # the low-variance estimator k3 = (r - 1) - log r of KL(old || new)
                 "approx_kl": float(((ratio - 1) - log_ratio).mean()),
                 "clipfrac": float(((ratio - 1).abs() > args.clip_coef).float().mean())}
    if consensus is not None:
        align = consensus.penalty(probs, batch.group[idx])
        loss = loss + align
        stats["align"] = float(align.detach())
    return loss, stats


class Means:
    """Mean of each statistic over an update's minibatches (NaN for one never seen)."""

    def __init__(self, keys: tuple[str, ...] = LOSS_STATS):
        self.values: dict[str, list[float]] = {k: [] for k in keys}

    def add(self, stats: dict) -> None:
        for k, v in stats.items():
            self.values[k].append(v)

    def means(self) -> dict[str, float]:
        return {k: float(np.mean(v)) if v else float("nan") for k, v in self.values.items()}


# ---------------------------------------------------------------------------- one training run
class PPORun:
    """One training run's state and bookkeeping; the algorithm file drives it update by update.

    ``critic_input`` is the algorithm's choice of what the critic sees; its output width sets
    the critic's input size.
    """

    def __init__(self, args: PPOArgs, algo: str, critic_input: CriticInput):
        self.args, self.algo = args, algo
        torch.set_num_threads(args.torch_threads)
        self.gen = torch.Generator().manual_seed(args.seed)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.sc = resolve_scenario(args.scenario, args.overrides, args.horizon_h)
        self.opts = EnvOptions(mode=args.mode, reward=dict(args.reward) or None)
        self.cores = [MarlCore(self.sc, self.opts) for _ in range(args.n_envs)]
        self.paired = args.paired_envs and args.n_envs > 1
        self._build_nets(critic_input)
        self.warm, t = None, time.perf_counter()
        if args.warm_start == "best-fixed":
            self.warm = warm_start(self.actor, self.sc, self.opts, args.warm_tune_seeds, args.warm_prob)
        self.warm_s = time.perf_counter() - t
        self._build_hooks()
        self.log = CsvLog(self.out / "train.csv")
        self.num_updates = math.ceil(args.total_steps / (args.n_envs * args.num_steps))
        self.t0, self.global_step, self.signal = time.perf_counter(), 0, None
        self.selection: list[dict] = []
        self.best: dict | None = None

    def _build_nets(self, critic_input: CriticInput) -> None:
        a, core = self.args, self.cores[0]
        d, S = core.obs_dim, core.state_dim
        self.obs_norm, self.state_norm = RunningNorm(d), RunningNorm(S)
        self.reward_norm = RunningNorm(1) if a.norm_reward else None
        if a.init:
            meta = load_meta(a.init)
            self.obs_norm = RunningNorm.from_dict(meta["obs_norm"])
            self.state_norm = RunningNorm.from_dict(meta["state_norm"])
            if a.norm_reward and meta.get("reward_norm"):
                self.reward_norm = RunningNorm.from_dict(meta["reward_norm"])
        self.collector = Collector(self.cores, self.obs_norm, self.state_norm, critic_input,
                                   a.num_steps, a.gamma, self.gen, np.random.default_rng(a.seed),
                                   self.paired, a.joint_explore, a.actor_state, self.reward_norm,
                                   a.joint_hold)
        probe = critic_input(np.zeros((1, 1, d), np.float32), np.zeros((1, S), np.float32))
        self.critic_dim = probe.shape[-1]
        self.actor_dim = d + S if a.actor_state else d
        self.actor = Actor(self.actor_dim, core.spec.nvec, a.hidden, self.gen)
        self.critic = Critic(self.critic_dim, a.hidden, self.gen)
        if a.init:
            self.actor.load_state_dict(torch.load(Path(a.init) / "actor.pt"))
            self.critic.load_state_dict(torch.load(Path(a.init) / "critic.pt"))
            if meta.get("value_norm"):
                self.critic.ret_norm = RunningNorm.from_dict(meta["value_norm"])
        self.params = list(self.actor.parameters()) + list(self.critic.parameters())
        self.optim = torch.optim.Adam(self.params, lr=a.lr, eps=1e-5)

    def _build_hooks(self) -> None:
        a, core = self.args, self.cores[0]
        self.groups = agent_groups(core)
        self.consensus = None
        if a.align_lambda != 0.0:
            self.consensus = Consensus(core.spec.nvec, core.spec.ordinal, self.groups, a.align_lambda,
                                       a.align_eps)
        window = max(2, int(round(a.drift_window_h * 3600.0 / self.sc.control_interval_s)))
        self.detector = DriftDetector(window, seed=a.seed) if a.drift else None
        if self.detector is not None and a.init:    # its threshold is the history of distances
            self.detector.history = list(load_meta(a.init).get("drift_history") or [])

    # ---------------------------------------------------------------------- steps of an update
    def set_lr(self, update: int) -> float:
        """lr0 x linear annealing x the drift factor of the last check; set on the optimiser."""
        a = self.args
        frac = 1.0 - update / self.num_updates if a.anneal_lr else 1.0
        self.lr_factor = lr_factor(self.signal, a.drift_beta, a.drift_max_factor) if self.detector else 1.0
        lr = a.lr * frac * self.lr_factor
        for g in self.optim.param_groups:
            g["lr"] = lr
        return lr

    def collect(self) -> Rollout:
        roll = self.collector.collect(self.actor, self.critic)
        self.global_step += self.args.n_envs * self.args.num_steps
        if self.detector is not None:
            for row in roll.drift_rows:
                self.detector.push(row)
        return roll

    def refresh_consensus(self, batch: Batch, update: int) -> None:
        """New barycenters every ``align_every`` updates (from the policy before the update)."""
        if self.consensus is not None and update % self.args.align_every == 0:
            with torch.no_grad():
                self.consensus.refresh(self.actor.probs(batch.obs, batch.mask), batch.group)

    def optimise(self, loss: "torch.Tensor") -> None:
        self.optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.args.max_grad_norm)
        self.optim.step()

    def check_drift(self) -> DriftSignal | None:
        self.signal = self.detector.check() if self.detector is not None else None
        return self.signal

    def record(self, update: int, lr: float, roll: Rollout, batch: Batch, losses: Means,
               progress: Progress | None) -> dict:
        """Write the update's row to train.csv (and hand it to ``progress``)."""
        row = self._row(update, lr, roll, batch, losses)
        self.log.write(row)
        if progress is not None:
            progress(row | {"total_steps": self.num_updates * self.args.n_envs * self.args.num_steps})
        return row

    def _row(self, update: int, lr: float, roll: Rollout, batch: Batch, losses: Means) -> dict:
        wall, sig, done = time.perf_counter() - self.t0, self.signal, roll.finished
        dispersion = float("nan")
        if self.consensus is not None and self.consensus.bary is not None:
            with torch.no_grad():
                probs = self.actor.probs(batch.obs, batch.mask)
                dispersion = float(self.consensus.dispersion(probs, batch.group))
        return {"update": update + 1, "global_step": self.global_step,
                "agent_steps": self.global_step * self.cores[0].n, "wall_s": wall,
                "sps": self.global_step / wall, "lr": lr, "lr_factor": self.lr_factor,
                "reward_scale": self.collector.reward_scale(),
                "drift_distance": sig.distance if sig else float("nan"),
                "drift_threshold": sig.threshold if sig else float("nan"),
                "reward_mean": float(roll.team_reward.mean()),
                **{f"term_{k}": float(np.mean([tm[k] for tm in roll.terms]))
                   for k in ("on_time", "dropped", "unserved", "loss")},
                "episodes": len(done),
                **{k: float(np.mean([f[k] for f in done])) if done else float("nan")
                   for k in ("episode_return", "on_time_ratio", "brownout_node_h")},
                **losses.means(), "explained_variance": batch.explained_variance(),
                "align_dispersion": dispersion}

    def select(self, update: int | None) -> None:
        """Checkpoint selection (``select_every``): before the first update (``update`` None),
        every ``select_every`` updates and after the last, play the actor on the selection seeds
        deployed by sampling and by its mode (a checkpoint in ``out/selection``, run as
        ``--policy marl:DIR`` runs) and keep the best in ``out/selection/best``."""
        a = self.args
        if not a.select_every or (update is not None and update != self.num_updates - 1
                                  and (update + 1) % a.select_every):
            return
        from .controller import MarlController
        from .evaluate import run_policy
        here, best = self.out / "selection" / "now", self.out / "selection" / "best"
        meta = self._meta()
        save_checkpoint(here, self.actor, self.critic, meta)
        for deploy in ("sample", "mode"):
            score = float(np.mean([run_policy(self.sc, lambda: MarlController(here, sample=deploy == "sample"),
                                              seed, self.opts)["team_return"]
                                   for seed in tune_seeds(a.select_seeds)]))
            row = {"update": -1 if update is None else update, "steps": self.global_step,
                   "deploy": deploy, "team_return": score}
            self.selection.append(row)
            if self.best is None or score > self.best["team_return"]:
                self.best = row
                save_checkpoint(best, self.actor, self.critic,
                                {**meta, "args": {**meta["args"], "deploy": deploy}})

    def save(self) -> Path:
        """Close the log; write actor.pt, critic.pt and policy.json; return the folder. With
        checkpoint selection, the last update's checkpoint goes to ``out/last`` and the selected
        one is written in ``out``, its policy.json saying which it is and listing every candidate
        with its mean team return on the selection seeds."""
        self.log.close()
        meta = self._meta()
        if self.best is None:
            save_checkpoint(self.out, self.actor, self.critic, meta)
            return self.out
        save_checkpoint(self.out / "last", self.actor, self.critic, meta)
        chosen = self.out / "selection" / "best"
        best_meta = load_meta(chosen)
        best_meta["selection"] = {"chosen": self.best, "seeds": tune_seeds(self.args.select_seeds),
                                  "candidates": self.selection}
        for f in ("actor.pt", "critic.pt"):
            shutil.copyfile(chosen / f, self.out / f)
        (self.out / "policy.json").write_text(json.dumps(best_meta, indent=2) + "\n")
        shutil.rmtree(self.out / "selection")
        return self.out

    def _meta(self) -> dict:
        """policy.json of the actor as it is now."""
        core = self.cores[0]
        env = {**self.opts.to_dict(), "reward": core.weights.model_dump()}      # the weights used
        spec = core.spec
        meta = {"algo": self.algo, "args": asdict(self.args), "env": env, "scenario": self.sc.name,
                "n_agents": core.n, "obs_dim": core.obs_dim, "state_dim": core.state_dim,
                "critic_dim": self.critic_dim, "actor_dim": self.actor_dim, "actor_state": self.args.actor_state, "hidden": self.args.hidden, "features": list(NAMES),
                "action": {"names": list(spec.names), "nvec": list(spec.nvec), "ordinal": list(spec.ordinal)},
                "obs_norm": self.obs_norm.to_dict(), "state_norm": self.state_norm.to_dict(),
                "reward_norm": self.reward_norm.to_dict() if self.reward_norm else None,
                "value_norm": self.critic.ret_norm.to_dict(),
                "warm_start": self.warm.to_dict() | {"wall_s": self.warm_s} if self.warm else None,
                "drift_history": self.detector.history if self.detector else None,
                "steps": self.global_step}
        return meta


# ------------------------------------------------------------------------------ log, checkpoint
class CsvLog:
    """Training curves: one row per update (and TensorBoard scalars when it is installed)."""

    def __init__(self, path: Path):
        self.path, self.fh, self.writer = path, None, None
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(path.parent / "tb"))
        except ImportError:
            self.tb = None

    def write(self, row: dict) -> None:
        if self.writer is None:
            self.fh = self.path.open("w", newline="")
            self.writer = csv.DictWriter(self.fh, fieldnames=list(row))
            self.writer.writeheader()
        self.writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.fh.flush()
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "update":
                    self.tb.add_scalar(k, v, row["global_step"])

    def close(self) -> None:
        if self.fh:
            self.fh.close()
        if self.tb is not None:
            self.tb.close()


def save_checkpoint(out: Path, actor: Actor, critic: Critic, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.save(actor.state_dict(), out / "actor.pt")
    torch.save(critic.state_dict(), out / "critic.pt")
    (out / "policy.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_meta(folder: str | Path) -> dict:
    """policy.json of a checkpoint folder; a UserError when there is none."""
    f = Path(folder) / "policy.json"
    if not f.is_file():
        raise UserError(f"{folder}: not a checkpoint folder (no policy.json; train one with 'otmarl train')")
    return json.loads(f.read_text())
