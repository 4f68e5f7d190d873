"""`hipbmdp`: generalisation across MDPs that differ in their physics (Zhang et al. 2021,
"Learning Robust State Abstractions for Hidden-Parameter Block MDPs"), on DMControl task
distributions (`mtsac_jax.envs.dmcontrol`). A run trains on some env ids of a distribution and
is evaluated on them (`eval_base`) and on two sets of ids it never sees (`eval_interpolation`,
`eval_extrapolation`); the headline metric is the episode reward.

Defaults are mtrl's hipbmdp components: Adam 1e-3 for actor and critic, 1e-4 with beta1 0.5
for the temperature, 2x1024 networks, log-std bounds [-10, 2], one temperature for all envs,
batch 128 over all training envs (mtrl's replay buffer default), 1M steps, 1500 warm-up steps,
evaluation every 10k steps on 10 episodes per env.

Run it:

    python train.py --config=configs/hipbmdp.py:cheetah-run
    python train.py --config=configs/compose.py:setup=hipbmdp,agent=state_sac,env=dmcontrol-walker-walk-friction-distribution-v0
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from mtsac_jax.setups import Setup


def evaluate(policy, eval_envs: gym.vector.VectorEnv, num_episodes: int, task_names) -> dict:
    """The mean over envs of the episode reward (the sum of an episode's rewards) of the first
    `num_episodes` episodes of each env, under the deterministic policy, plus each env's figure."""
    returns = [[] for _ in task_names]
    running = np.zeros(len(task_names))
    obs, _ = eval_envs.reset()
    policy.reset(np.ones(len(task_names), dtype=bool))
    while min(len(done) for done in returns) < num_episodes:
        obs, reward, terminated, truncated, _ = eval_envs.step(policy.eval_action(obs))
        running += reward
        ended = np.logical_or(terminated, truncated)
        for index in np.flatnonzero(ended):
            returns[index].append(float(running[index]))
        running[ended] = 0.0
        if ended.any():
            policy.reset(ended)
    tasks = {name: {"episode_reward": float(np.mean(episodes[:num_episodes]))}
             for name, episodes in zip(task_names, returns)}
    return {"episode_reward": float(np.mean([task["episode_reward"] for task in tasks.values()])), "tasks": tasks}


SETUP = Setup(
    env_families=("dmcontrol",),
    headline_metric="episode_reward",
    evaluate=evaluate,
    evaluates_unseen=True,
    config_defaults={
        "experiment.num_train_steps": 1_000_000,
        "replay_buffer.batch_size": 128,  # mtrl's, over all training envs: 32 per env with 4
        "agent.actor.hidden_dim": 1024,
        "agent.actor.num_layers": 2,
        "agent.actor.log_std_min": -10.0,
        "agent.critic.hidden_dim": 1024,
        "agent.critic.num_layers": 2,
        "agent.optimizers.actor.lr": 1e-3,
        "agent.optimizers.critic.lr": 1e-3,
        "agent.optimizers.alpha.lr": 1e-4,
        "agent.optimizers.alpha.b1": 0.5,
        "agent.multitask.should_use_disentangled_alpha": False,
    },
)
