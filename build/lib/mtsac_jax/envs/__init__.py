"""Env families: the `ENV_FAMILIES` registry, and the vector-env step every family shares.

An env family (Meta-World today) provides, for the env names it owns (`<family>` or
`<family>-<variant>`, e.g. `metaworld-mt10`): the default `env` config section, the task
names in benchmark order, and the train and eval vector envs, one sub-env per task, with
SAME_STEP autoreset. Every sub-env exposes `snapshot()` and `restore(blobs)`
(`mtsac_jax.env_state.SnapshotWrapper`) so that checkpoints hold the exact env state. A
family's module is imported only when one of its envs is used.

SAME_STEP autoreset: on the last step of an episode the returned observation already belongs
to the next episode, the true final observation is `info["final_obs"]` and the step's
`success` lives in `info["final_info"]` (`step` unpacks this).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import gymnasium as gym
import ml_collections
import numpy as np

from mtsac_jax.registry import ConfigError, Registry, check_choice

TRAIN_STREAM, EVAL_STREAM = 0, 1
# `vector_strategy="auto"` runs the task envs in worker processes from this many cores on.
# On 2 cores the in-process (sync) envs step faster, alone and inside the training loop
# (bench/loop_throughput.py); with spare cores each worker steps its task in parallel.
ASYNC_MIN_CORES = 4
VECTOR_STRATEGIES = ("auto", "sync", "async")


@dataclasses.dataclass(frozen=True)
class EnvFamily:
    """A registered env family.

    env_names: the `env.name`s it provides.
    default_config: `(env_name, task_name) -> dict`, the `env` section besides `name` (which
        always holds `vector_strategy`); `task_name` is the `task=` of the config-file argument.
    task_names: `(env_config) -> tuple[str, ...]`, the tasks in benchmark order.
    make_vector_env: `(env_config, seed, evaluation, render_mode, **render_options) ->
        gym.vector.VectorEnv`, one sub-env per task, SAME_STEP autoreset, each sub-env with
        `snapshot()`/`restore(blobs)`; eval envs (`evaluation=True`) draw from their own
        random streams.
    validate: `(env_config) -> None`, raises `ConfigError` naming the key and the fix.
    """

    env_names: tuple[str, ...]
    default_config: Callable[[str, str | None], dict]
    task_names: Callable[[ml_collections.ConfigDict], tuple[str, ...]]
    make_vector_env: Callable[..., gym.vector.VectorEnv]
    validate: Callable[[ml_collections.ConfigDict], None] = lambda config: None


ENV_FAMILIES: Registry[EnvFamily] = Registry("env family", "env family")
ENV_FAMILIES.register("metaworld", "mtsac_jax.envs.metaworld:FAMILY")


def family_of(env_name: str, key: str = "env") -> EnvFamily:
    """The family that provides `env_name`; a ConfigError naming `key` and listing every env
    name otherwise."""
    family_name = env_name.split("-", 1)[0]
    family = ENV_FAMILIES.get(family_name) if family_name in ENV_FAMILIES else None
    if family is None or env_name not in family.env_names:
        check_choice(key, env_name, all_env_names())
    return family


def all_env_names() -> tuple[str, ...]:
    return tuple(name for family in ENV_FAMILIES.names() for name in ENV_FAMILIES.get(family).env_names)


def env_config(name: str, task_name: str | None = None) -> ml_collections.ConfigDict:
    """The `env` section of env `name` at its family's defaults."""
    family = family_of(name)
    return ml_collections.ConfigDict(
        {"name": name, "vector_strategy": "auto", **family.default_config(name, task_name)}
    )


def task_names(env_config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The task names of an env section, in benchmark order."""
    return family_of(env_config.name).task_names(env_config)


def validate(env_config: ml_collections.ConfigDict) -> None:
    family = family_of(env_config.name, key="env.name")
    check_choice("env.vector_strategy", env_config.vector_strategy, VECTOR_STRATEGIES)
    family.validate(env_config)


def make_vector_env(
    env_config: ml_collections.ConfigDict,
    seed: int,
    evaluation: bool = False,
    render_mode: str | None = None,
    **render_options,
) -> gym.vector.VectorEnv:
    """The vector env of an env config section, one sub-env per task in benchmark order.

    Eval envs terminate on success where the family defines success. `render_mode`
    ("rgb_array") makes `vector_env.call("render")` return one frame per task, shaped by
    `render_options`; offscreen rendering needs `MUJOCO_GL=egl` (or `osmesa`) on a machine
    without a display.
    """
    return family_of(env_config.name).make_vector_env(env_config, seed, evaluation, render_mode, **render_options)


def vector_env_class(vector_strategy: str) -> type[gym.vector.VectorEnv]:
    return gym.vector.AsyncVectorEnv if resolve_strategy(vector_strategy) == "async" else gym.vector.SyncVectorEnv


def derived_seed(*entropy: int) -> int:
    """A 32-bit seed from (run seed, task index[, stream]): task i's goals come from
    `derived_seed(seed, i)`, its train/eval env randomness from `derived_seed(seed, i, stream)`."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])


class EnvWorkerError(RuntimeError):
    """An env worker crashed or an env raised; the message names the task and the fix."""


def resolve_strategy(vector_strategy: str) -> str:
    """`sync` or `async`; `auto` picks by the number of cores of this machine."""
    if vector_strategy != "auto":
        return vector_strategy
    return "async" if (os.cpu_count() or 1) >= ASYNC_MIN_CORES else "sync"


@dataclasses.dataclass
class Step:
    """One vector step, arrays shaped (T, ...), ready for the replay buffer."""

    next_obs: np.ndarray  # obs to act on next (already reset where an episode ended)
    final_obs: np.ndarray  # the true s' of this transition (final_obs where an episode ended)
    reward: np.ndarray
    terminated: np.ndarray  # stored in the buffer; truncation is bootstrapped through
    done: np.ndarray  # terminated or truncated: an episode ended on this step
    success: np.ndarray  # the env's success flag for this step (False where it has none)


def step(envs: gym.vector.VectorEnv, actions: np.ndarray) -> Step:
    """Steps all task envs and unpacks SAME_STEP autoreset into a transition."""
    try:
        next_obs, reward, terminated, truncated, info = envs.step(actions)
    except Exception as error:
        raise EnvWorkerError(_describe_failure(envs, error)) from error
    done = np.logical_or(terminated, truncated)
    final_obs = next_obs.copy()
    success = np.zeros(len(done), dtype=bool)
    if "success" in info:
        success |= info["_success"] & (info["success"] > 0)
    if done.any():
        final_info = info["final_info"]
        for index in np.flatnonzero(info["_final_obs"]):
            final_obs[index] = info["final_obs"][index]
        if "success" in final_info:
            success |= final_info["_success"] & (final_info["success"] > 0)
    return Step(
        next_obs=next_obs.astype(np.float32),
        final_obs=final_obs.astype(np.float32),
        reward=reward.astype(np.float32),
        terminated=terminated.astype(np.float32),
        done=done,
        success=success,
    )


def _describe_failure(envs: gym.vector.VectorEnv, error: Exception) -> str:
    processes = getattr(envs, "processes", [])
    dead = [f"worker {index} (exit code {process.exitcode})" for index, process in enumerate(processes)
            if not process.is_alive()]
    if dead:
        return (
            f"Env {', '.join(dead)} died ({type(error).__name__}). A worker killed from outside "
            "(out of memory, a signal) takes its task down with it. Fix: check memory and rerun, or pass "
            "--config.env.vector_strategy=sync to run the envs in this process and see their own errors."
        )
    return (
        f"An env raised {type(error).__name__}: {error}. Fix: check the env settings "
        "(env.max_episode_steps, env.reward_function_version) or rerun with "
        "--config.env.vector_strategy=sync to see the env's own traceback."
    )
