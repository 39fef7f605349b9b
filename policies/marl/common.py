"""The PPO loop MAPPO and IPPO share (CleanRL style: one straight loop, ``# ALGO LOGIC`` marks
the algorithm), with the OT hooks: barycenter consensus in the policy loss (``alignment.py``) and
the drift-driven learning rate (``drift.py``). ``mappo.py`` and ``ippo.py`` choose the critic.

Parameter sharing: one actor for every agent (the observation carries what differs between
nodes). Steps count control epochs summed over the parallel envs; agent-steps = steps x agents.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from otmarl.scenarios.errors import UserError
from otmarl.simulator.world import DONE_ON_TIME

from . import deps
from .alignment import Consensus
from .core import EnvOptions, MarlCore, resolve_scenario
from .drift import DriftDetector, lr_factor
from .features import CLOCK, NAMES

torch = deps.torch()
from .nets import Actor, Critic, RunningNorm  # noqa: E402  (after the lazy torch import)


@dataclass
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
    """Seed of torch and of the episode seeds (drawn from it, so runs are reproducible)."""
    total_steps: int = 50_000
    """Control epochs to simulate in total, summed over the parallel envs."""
    n_envs: int = 4
    """Parallel envs (stepped in turn in this process)."""
    num_steps: int = 24
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
    torch_threads: int = 1
    """Torch CPU threads (the simulator is single-threaded)."""
    out: str = "runs/marl"
    """Checkpoint folder."""


def critic_input(kind: str, obs: np.ndarray, state: np.ndarray) -> np.ndarray:
    """(E, n, C): MAPPO sees the global state next to the agent's own observation; IPPO only
    its own observation."""
    if kind == "ippo":
        return obs
    e, n = obs.shape[:2]
    return np.concatenate([np.broadcast_to(state[:, None, :], (e, n, state.shape[1])), obs], -1)


def agent_groups(core: MarlCore) -> np.ndarray:
    """Consensus groups: node classes when there are several, otherwise every agent."""
    cls = np.asarray(core.info.node_class)
    return cls if len(np.unique(cls)) > 1 else np.arange(core.n)


def episode_stats(core: MarlCore) -> dict:
    w = core.sim.world
    return {"episode_return": core.team_return,
            "on_time_ratio": float(np.count_nonzero(w.status == DONE_ON_TIME)) / max(len(w.tasks), 1),
            "brownout_node_h": float(core.sim.recorder.flags["browned"][:core.sim.k].sum() * w.dt / 3600)}


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


def save_checkpoint(out: Path, actor, critic, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.save(actor.state_dict(), out / "actor.pt")
    torch.save(critic.state_dict(), out / "critic.pt")
    (out / "policy.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_meta(folder: str | Path) -> dict:
    f = Path(folder) / "policy.json"
    if not f.is_file():
        raise UserError(f"{folder}: not a checkpoint folder (no policy.json; train one with 'otmarl train')")
    return json.loads(f.read_text())


def train(args: PPOArgs, critic_kind: str, progress: Callable[[dict], None] | None = None) -> Path:
    """Train, write the checkpoint and train.csv into ``args.out``; return that folder."""
    if args.total_steps < 1 or args.n_envs < 1 or args.num_steps < 1:
        raise UserError("total_steps, n_envs and num_steps must be >= 1")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.torch_threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sc = resolve_scenario(args.scenario, args.overrides, args.horizon_h)
    opts = EnvOptions(mode=args.mode, reward=dict(args.reward) or None)
    seeder = np.random.default_rng(args.seed)
    cores = [MarlCore(sc, opts) for _ in range(args.n_envs)]
    obs = np.stack([c.reset(int(seeder.integers(2**31 - 1))) for c in cores])   # (E, n, d)
    E, n, d = obs.shape
    T, nvec = args.num_steps, cores[0].spec.nvec
    K, S = len(nvec), cores[0].state_dim
    C = d if critic_kind == "ippo" else S + d
    actor, critic = Actor(d, nvec, args.hidden), Critic(C, args.hidden)
    obs_norm, state_norm = RunningNorm(d), RunningNorm(S)
    if args.init:
        init_meta = load_meta(args.init)
        actor.load_state_dict(torch.load(Path(args.init) / "actor.pt"))
        critic.load_state_dict(torch.load(Path(args.init) / "critic.pt"))
        obs_norm, state_norm = (RunningNorm.from_dict(init_meta["obs_norm"]),
                                RunningNorm.from_dict(init_meta["state_norm"]))
    params = list(actor.parameters()) + list(critic.parameters())
    optim = torch.optim.Adam(params, lr=args.lr, eps=1e-5)
    groups = agent_groups(cores[0])
    consensus = Consensus(nvec, cores[0].spec.ordinal, groups, args.align_lambda, args.align_eps) \
        if args.align_lambda != 0.0 else None
    drift_cols = np.array([i for i, f in enumerate(NAMES) if f not in CLOCK])
    window = max(2, int(round(args.drift_window_h * 3600.0 / sc.control_interval_s)))
    detector = DriftDetector(window, seed=args.seed) if args.drift else None

    b_obs = np.zeros((T, E, n, d), np.float32)
    b_ci = np.zeros((T, E, n, C), np.float32)
    b_mask = np.zeros((T, E, n, int(sum(nvec))), np.int8)
    b_act = np.zeros((T, E, n, K), np.int64)
    b_logp, b_val, b_rew = (np.zeros((T, E, n), np.float32) for _ in range(3))
    b_done = np.zeros((T, E), np.float32)
    group_t = torch.as_tensor(np.tile(groups, T * E))
    log = CsvLog(out / "train.csv")
    num_updates = math.ceil(args.total_steps / (E * T))
    t0, global_step, signal = time.perf_counter(), 0, None

    def normalised(o: np.ndarray, s: np.ndarray):
        on, sn = obs_norm(o), state_norm(s)
        return on, critic_input(critic_kind, on, sn)

    for update in range(num_updates):
        # ALGO LOGIC: learning rate = lr0 x annealing x drift factor
        frac = 1.0 - update / num_updates if args.anneal_lr else 1.0
        factor = lr_factor(signal, args.drift_beta, args.drift_max_factor) if detector else 1.0
        lr = args.lr * frac * factor
        for g in optim.param_groups:
            g["lr"] = lr
        finished, rewards_seen, terms_seen = [], [], []

        # ALGO LOGIC: rollout (all envs, all agents share the actor)
        for t in range(T):
            state = np.stack([c.state() for c in cores])
            obs_norm.update(obs.reshape(-1, d))
            state_norm.update(state)
            o, ci = normalised(obs, state)
            mask = np.stack([c.masks() for c in cores])
            with torch.no_grad():
                a, logp, _, _ = actor.act(torch.as_tensor(o), torch.as_tensor(mask))
                v = critic(torch.as_tensor(ci))
            b_obs[t], b_ci[t], b_mask[t], b_act[t] = o, ci, mask, a.numpy()
            b_logp[t], b_val[t] = logp.numpy(), v.numpy()
            a = a.numpy()
            for e, core in enumerate(cores):
                nxt, r, truncated, terms = core.step(a[e])
                terms_seen.append(terms)
                if truncated:
                    # ALGO LOGIC: a time limit is not a terminal state: bootstrap from V(s_T)
                    _, ci_end = normalised(nxt[None], core.state()[None])
                    with torch.no_grad():
                        r = r + args.gamma * critic(torch.as_tensor(ci_end))[0].numpy()
                    finished.append(episode_stats(core))
                    nxt = core.reset(int(seeder.integers(2**31 - 1)))
                b_rew[t, e], b_done[t, e] = r, float(truncated)
                obs[e] = nxt
            rewards_seen.append(np.mean([tm["team"] for tm in terms_seen[-E:]]))
            if detector is not None:
                detector.push(np.concatenate([obs[:, :, drift_cols].mean((0, 1)), [rewards_seen[-1]]]))
            global_step += E

        # ALGO LOGIC: generalised advantage estimation
        with torch.no_grad():
            _, ci = normalised(obs, np.stack([c.state() for c in cores]))
            next_v = critic(torch.as_tensor(ci)).numpy()
        adv = np.zeros_like(b_rew)
        last = np.zeros((E, n), np.float32)
        for t in reversed(range(T)):
            nv = next_v if t == T - 1 else b_val[t + 1]
            live = 1.0 - b_done[t][:, None]
            delta = b_rew[t] + args.gamma * nv * live - b_val[t]
            last = delta + args.gamma * args.gae_lambda * live * last
            adv[t] = last
        ret = adv + b_val

        # ALGO LOGIC: PPO update (+ lambda x Sinkhorn divergence to the barycenter)
        N = T * E * n
        f_obs, f_ci = torch.as_tensor(b_obs.reshape(N, d)), torch.as_tensor(b_ci.reshape(N, C))
        f_mask, f_act = torch.as_tensor(b_mask.reshape(N, -1)), torch.as_tensor(b_act.reshape(N, K))
        f_logp, f_adv = torch.as_tensor(b_logp.reshape(N)), torch.as_tensor(adv.reshape(N))
        f_ret = torch.as_tensor(ret.reshape(N))
        if consensus is not None and update % args.align_every == 0:
            with torch.no_grad():
                consensus.refresh(actor.probs(f_obs, f_mask), group_t)
        mb = max(1, N // args.num_minibatches)
        stats = {"pg_loss": [], "v_loss": [], "entropy": [], "approx_kl": [], "clipfrac": [], "align": []}
        for _ in range(args.update_epochs):
            perm = torch.randperm(N)
            for s in range(0, N, mb):
                i = perm[s:s + mb]
                _, logp, ent, probs = actor.act(f_obs[i], f_mask[i], f_act[i])
                ratio = (logp - f_logp[i]).exp()
                a_mb = f_adv[i]
                a_mb = (a_mb - a_mb.mean()) / (a_mb.std() + 1e-8)
                clipped = ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)
                pg = torch.max(-a_mb * ratio, -a_mb * clipped).mean()
                v_loss = 0.5 * ((critic(f_ci[i]) - f_ret[i]) ** 2).mean()
                loss = pg - args.ent_coef * ent.mean() + args.vf_coef * v_loss
                if consensus is not None:
                    align = consensus.penalty(probs, group_t[i])
                    loss = loss + align
                    stats["align"].append(float(align.detach()))
                optim.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
                optim.step()
                with torch.no_grad():
                    stats["pg_loss"].append(float(pg))
                    stats["v_loss"].append(float(v_loss))
                    stats["entropy"].append(float(ent.mean()))
                    stats["approx_kl"].append(float(((ratio - 1) - (logp - f_logp[i])).mean()))
                    stats["clipfrac"].append(float(((ratio - 1).abs() > args.clip_coef).float().mean()))

        # ALGO LOGIC: drift check on the windows of observations and rewards
        signal = detector.check() if detector is not None else None
        dispersion = float("nan")
        if consensus is not None and consensus.bary is not None:
            with torch.no_grad():
                dispersion = float(consensus.dispersion(actor.probs(f_obs, f_mask), group_t))
        wall = time.perf_counter() - t0
        row = {"update": update + 1, "global_step": global_step, "agent_steps": global_step * n,
               "wall_s": wall, "sps": global_step / wall, "lr": lr, "lr_factor": factor,
               "drift_distance": signal.distance if signal else float("nan"),
               "drift_threshold": signal.threshold if signal else float("nan"),
               "reward_mean": float(np.mean(rewards_seen)),
               **{f"term_{k}": float(np.mean([tm[k] for tm in terms_seen]))
                  for k in ("on_time", "dropped", "unserved", "loss")},
               "episodes": len(finished),
               **{k: float(np.mean([f[k] for f in finished])) if finished else float("nan")
                  for k in ("episode_return", "on_time_ratio", "brownout_node_h")},
               **{k: float(np.mean(v)) if v else float("nan") for k, v in stats.items()},
               "align_dispersion": dispersion}
        log.write(row)
        if progress is not None:
            progress(row | {"total_steps": num_updates * E * T})
    log.close()
    env = {**opts.to_dict(), "reward": cores[0].weights.model_dump()}      # the weights used
    meta = {"algo": critic_kind, "args": asdict(args), "env": env, "scenario": sc.name,
            "n_agents": n, "obs_dim": d, "state_dim": S, "critic_dim": C, "hidden": args.hidden,
            "features": list(NAMES), "action": {"names": list(cores[0].spec.names),
                                                "nvec": list(nvec), "ordinal": list(cores[0].spec.ordinal)},
            "obs_norm": obs_norm.to_dict(),
            "state_norm": state_norm.to_dict(), "steps": global_step}
    save_checkpoint(out, actor, critic, meta)
    return out
