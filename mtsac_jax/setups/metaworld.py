"""`metaworld`: evaluate on the training tasks with Meta-World's own evaluator; the headline
metric is the success rate.

`metaworld.evaluation.evaluation` runs episodes with terminate-on-success until every task
has `num_episodes`, counts success per episode and sums episode rewards up to the end of each
episode; we report exactly what it returns. The policy is the deterministic one.

Run it:

    python train.py --config=configs/metaworld_mt10.py
    python train.py --config=configs/compose.py:setup=metaworld,agent=state_sac,env=metaworld-mt1,task=reach-v3
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from mtsac_jax.setups import Setup


def evaluate(policy, eval_envs: gym.vector.VectorEnv, num_episodes: int, task_names) -> dict:
    """Mean success and episode reward over tasks, plus the per-task figures."""
    import metaworld.evaluation  # only a run that evaluates on Meta-World imports it

    _, _, success_per_task, returns_per_task = metaworld.evaluation.evaluation(policy, eval_envs, num_episodes)
    tasks = {
        name: {
            "success": float(success_per_task[name]),
            "episode_reward": float(np.mean(returns_per_task[name])),
        }
        for name in task_names
    }
    return {
        "success": float(np.mean([task["success"] for task in tasks.values()])),
        "episode_reward": float(np.mean([task["episode_reward"] for task in tasks.values()])),
        "tasks": tasks,
    }


SETUP = Setup(env_families=("metaworld",), headline_metric="success", evaluate=evaluate)
