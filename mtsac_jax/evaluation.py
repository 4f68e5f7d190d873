"""Evaluation with Meta-World's own evaluator and the deterministic policy.

`metaworld.evaluation.evaluation` runs episodes with terminate-on-success until every task
has `num_episodes`, counts success per episode and sums episode rewards up to the end of
each episode; we report exactly what it returns.
"""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import jax.numpy as jnp
import metaworld.evaluation
import numpy as np


class DeterministicPolicy:
    """Meta-World's `Agent` protocol over a jitted deterministic actor: tanh(mean)."""

    def __init__(self, deterministic_actions: Callable, actor_params):
        self._deterministic_actions = deterministic_actions
        self._actor_params = actor_params

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        """(T, obs_dim) observations, one per task env, to (T, action_dim) actions."""
        obs = jnp.asarray(observations, jnp.float32)
        return np.asarray(self._deterministic_actions(self._actor_params, obs), np.float64)

    def reset(self, env_mask: np.ndarray) -> None:
        """The policy is memoryless: nothing to reset between episodes."""


def evaluate(policy, eval_envs: gym.vector.VectorEnv, num_episodes: int, task_names) -> dict:
    """Mean success and episode reward over tasks, plus the per-task figures."""
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
