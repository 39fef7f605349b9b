"""External trainers on the MARL env: the recipes of docs/marl.md ("Training with an external
trainer"), each trained for a few thousand agent-steps on microgrid-solar (10 agents, market
mode, one-day episodes of 24 epochs), with the agent-steps per second it ran at.

    python benchmarks/marl_recipes.py                       # sb3, rllib and torchrl
    python benchmarks/marl_recipes.py --only torchrl --agent-steps 4800 --repeats 3

None of these trainers is a dependency of otmarl; install them beside it, in an environment of
their own (the torch pin keeps the CPU build):

    pip install -c constraints.txt -e '.[marl,recipes]'

Each recipe function is the snippet of docs/marl.md with the clock around its training loop
(building the model, and for RLlib starting Ray, is not timed). Rates are wall-clock agent-steps
per second (RLlib samples in another process, so process CPU time would miss it): the median
over the repeats, run round robin with the baseline, random actions through the same env's dict
API for the same number of agent-steps. 'x random' is a recipe's rate over the baseline's: the
share of the time the trainer leaves to the env. A recipe whose package is missing is reported
as such and skipped.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from typing import Callable

import numpy as np

from otmarl.policies.marl import parallel_env

ENV = {"mode": "market", "horizon_h": 24}
"""The env of every recipe: microgrid-solar, market mode, one-day episodes (24 epochs)."""
NEEDS = {"random": (), "sb3": ("stable_baselines3", "supersuit"), "rllib": ("ray",),
         "torchrl": ("torchrl", "tensordict")}


def random_actions(agent_steps: int, seed: int) -> tuple[int, float]:
    """The baseline: random actions through the dict API, resets included."""
    env = parallel_env("microgrid-solar", seed=seed, **ENV)
    rng = np.random.default_rng(seed)
    nvec = env.action_space(env.possible_agents[0]).nvec
    env.reset()
    done, t = 0, time.perf_counter()
    while done < agent_steps:
        if not env.agents:
            env.reset()
        env.step(dict(zip(env.agents, rng.integers(0, nvec, (len(env.agents), len(nvec))))))
        done += len(env.possible_agents)
    return done, time.perf_counter() - t


def sb3(agent_steps: int, seed: int) -> tuple[int, float]:
    """Stable-Baselines3 PPO through SuperSuit: every agent is one slot of a vector env, so one
    MLP policy is shared by all agents (masks are not used: a masked action does nothing)."""
    import supersuit as ss
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.utils import set_random_seed

    torch.set_num_threads(1)      # nets this small: more threads only wait for each other
    set_random_seed(seed)      # not PPO(seed=...): it calls VecEnv.seed, which SuperSuit's lacks
    env = parallel_env("microgrid-solar", mode="market", horizon_h=24, seed=seed)
    venv = ss.pettingzoo_env_to_vec_env_v1(env)
    venv = ss.concat_vec_envs_v1(venv, 1, num_cpus=0, base_class="stable_baselines3")
    model = PPO("MlpPolicy", venv, n_steps=48, batch_size=240, n_epochs=4, device="cpu", verbose=0)
    t = time.perf_counter()
    model.learn(total_timesteps=agent_steps)          # timesteps of the vector env = agent-steps
    return model.num_timesteps, time.perf_counter() - t


def rllib(agent_steps: int, seed: int) -> tuple[int, float]:
    """RLlib PPO on the new API stack, multi-agent: one module shared by all agents, one env
    runner returning 480 agent-steps (48 env steps) per sample call. RLlib's defaults (2
    runners of 2,000 env steps, 20,000 agent-steps, per call and a 60 s sample timeout) time out
    on this env: see docs/marl.md. Masks are not used (a masked action does nothing)."""
    import ray
    import torch
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv
    from ray.tune.registry import register_env

    torch.set_num_threads(1)      # nets this small: more threads only wait for each other
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    register_env("otmarl", lambda cfg: ParallelPettingZooEnv(parallel_env("microgrid-solar", **cfg)))
    config = (PPOConfig()
              .environment("otmarl", env_config={"mode": "market", "horizon_h": 24, "seed": seed})
              .multi_agent(policies={"shared"}, policy_mapping_fn=lambda agent_id, episode, **kw: "shared",
                           count_steps_by="agent_steps")
              .env_runners(num_env_runners=1, rollout_fragment_length=480)
              .training(train_batch_size_per_learner=480, minibatch_size=240, num_epochs=4)
              .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[64, 64]))
              .debugging(seed=seed))
    algo = config.build_algo()
    done, t = 0, time.perf_counter()
    while done < agent_steps:
        result = algo.train()
        done = int(sum(result["env_runners"]["num_agent_steps_sampled_lifetime"].values()))
    took = time.perf_counter() - t
    algo.stop()
    ray.shutdown()
    return done, took


def torchrl(agent_steps: int, seed: int) -> tuple[int, float]:
    """TorchRL MAPPO through its PettingZoo wrapper: one group of all agents, a shared actor over
    each agent's observation that respects the masks, a centralised critic over all of them.
    ``numeric_infos=True`` gives infos the wrapper can stack (masks (components, choices))."""
    import torch
    from tensordict.nn import TensorDictModule
    from torch import nn
    from torch.distributions import Independent
    from torchrl.collectors import Collector
    from torchrl.envs import MarlGroupMapType, PettingZooWrapper
    from torchrl.modules import MaskedCategorical, MultiAgentMLP, ProbabilisticActor
    from torchrl.objectives import ClipPPOLoss, ValueEstimators

    class MaskedComponents(Independent):
        """One masked categorical per action component, log-probabilities summed."""

        def __init__(self, logits, mask):
            super().__init__(MaskedCategorical(logits=logits, mask=mask), 1, validate_args=False)

        @property
        def deterministic_sample(self):
            return self.mode

    torch.set_num_threads(1)      # nets this small: more threads only wait for each other
    torch.manual_seed(seed)
    env = PettingZooWrapper(env=parallel_env("microgrid-solar", mode="market", horizon_h=24, numeric_infos=True),
                            group_map=MarlGroupMapType.ALL_IN_ONE_GROUP, categorical_actions=True, seed=seed)
    n, (k, m) = len(env.group_map["agents"]), env.observation_spec["agents", "action_mask"].shape[-2:]
    obs = env.observation_spec["agents", "observation"].shape[-1]
    net = nn.Sequential(MultiAgentMLP(obs, k * m, n, centralised=False, share_params=True, depth=2, num_cells=64),
                        nn.Unflatten(-1, (k, m)))
    actor = ProbabilisticActor(
        TensorDictModule(net, in_keys=[("agents", "observation")], out_keys=[("agents", "logits")]),
        in_keys={"logits": ("agents", "logits"), "mask": ("agents", "action_mask")},
        out_keys=[("agents", "action")], distribution_class=MaskedComponents,
        return_log_prob=True, log_prob_key=("agents", "sample_log_prob"))
    critic = TensorDictModule(MultiAgentMLP(obs, 1, n, centralised=True, share_params=True, depth=2, num_cells=64),
                              in_keys=[("agents", "observation")], out_keys=[("agents", "state_value")])
    loss = ClipPPOLoss(actor_network=actor, critic_network=critic, entropy_coeff=0.01)
    loss.set_keys(reward=("agents", "reward"), action=("agents", "action"), value=("agents", "state_value"),
                  sample_log_prob=("agents", "sample_log_prob"), done=("agents", "done"),
                  terminated=("agents", "terminated"))
    loss.make_value_estimator(ValueEstimators.GAE, gamma=0.99, lmbda=0.95)
    optim = torch.optim.Adam(loss.parameters(), lr=3e-4)
    collector = Collector(env, actor, frames_per_batch=48, total_frames=-(-agent_steps // n),
                          auto_register_policy_transforms=False)
    done, t = 0, time.perf_counter()
    for batch in collector:                        # 48 env steps = 480 agent-steps
        with torch.no_grad():
            loss.value_estimator(batch, params=loss.critic_network_params,
                                 target_params=loss.target_critic_network_params)
        for _ in range(4):                         # epochs of 2 minibatches of 24 env steps
            for idx in torch.randperm(len(batch)).split(24):
                out = loss(batch[idx])
                (out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]).backward()
                optim.step()
                optim.zero_grad()
        done += batch.numel() * n
    return done, time.perf_counter() - t


RECIPES: dict[str, Callable[[int, int], tuple[int, float]]] = {
    "random": random_actions, "sb3": sb3, "rllib": rllib, "torchrl": torchrl}


def missing(name: str) -> list[str]:
    """The packages a recipe needs that are not installed."""
    return [p for p in NEEDS[name] if importlib.util.find_spec(p) is None]


def measure(names: list[str], agent_steps: int, repeats: int, seed: int) -> dict[str, list[float]]:
    """Agent-steps per second of each recipe, ``repeats`` times round robin."""
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names:
            steps, seconds = RECIPES[name](agent_steps, seed + r)
            rates[name].append(steps / seconds)
            print(f"  {name:8s} repeat {r}: {steps} agent-steps in {seconds:.1f} s", flush=True)
    return rates


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=[n for n in RECIPES if n != "random"], action="append",
                    help="run this recipe (repeatable; default: all)")
    ap.add_argument("--agent-steps", type=int, default=4800, help="agent-steps per run (default 4800)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each recipe (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    wanted = args.only or [n for n in RECIPES if n != "random"]
    for name in wanted:
        if missing(name):
            print(f"{name}: skipped, not installed: {', '.join(missing(name))}")
    names = ["random"] + [n for n in wanted if not missing(n)]
    rates = measure(names, args.agent_steps, args.repeats, args.seed)
    base = statistics.median(rates["random"])
    print(f"\n{'recipe':8s} {'agent-steps/s':>14s} {'min':>8s} {'max':>8s} {'x random':>9s}"
          f"   (median of {args.repeats}, wall clock)")
    for name, r in rates.items():
        med = statistics.median(r)
        print(f"{name:8s} {med:14.0f} {min(r):8.0f} {max(r):8.0f} {med / base:9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
