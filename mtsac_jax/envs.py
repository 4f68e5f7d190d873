"""Meta-World env workers: one gymnasium env per task in a sync or async vector env.

All task envs truncate on the same step. Autoreset is SAME_STEP: on the last step of an
episode the returned observation already belongs to the next episode, the true final
observation is `info["final_obs"]` and the step's `success` lives in `info["final_info"]`.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import os
import signal
import warnings

import gymnasium as gym
import metaworld
import ml_collections
import numpy as np

from mtsac_jax.config import task_names
from mtsac_jax.env_state import SnapshotWrapper

TRAIN_STREAM, EVAL_STREAM = 0, 1
# `vector_strategy="auto"` runs the task envs in worker processes from this many cores on.
# On 2 cores the in-process (sync) envs step faster, alone and inside the training loop
# (bench/loop_throughput.py); with spare cores each worker steps its task in parallel.
ASYNC_MIN_CORES = 4

# Meta-World's one-hot wrapper builds float64 bounds for a float32 Box.
warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32.*")


def derived_seed(*entropy: int) -> int:
    """A 32-bit seed from (run seed, task index[, stream]): task i's 50 goals come from
    `derived_seed(seed, i)`, its train/eval env randomness from `derived_seed(seed, i, stream)`."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])


def _make_task_env(
    task_name: str,
    task_index: int,
    num_tasks: int,
    goal_seed: int,
    rng_seed: int,
    fixed_goal: bool,
    terminate_on_success: bool,
    env_kwargs: dict,
) -> gym.Env:
    """One Meta-World task env (module-level so async workers can pickle it).

    The 50 goals of a task come from `goal_seed`, shared by train and eval envs so both
    see the same goal set (and, with `fixed_goal`, the same single goal); each env's own
    randomness is then reseeded from `rng_seed`. In an async worker process, SIGINT and
    SIGTERM are ignored: the training process handles them and closes the workers itself.
    """
    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    env = metaworld.make_mt_envs(
        task_name,
        seed=goal_seed,
        env_id=task_index,
        num_tasks=num_tasks,
        terminate_on_success=terminate_on_success,
        **env_kwargs,
    )
    if fixed_goal:
        env.get_wrapper_attr("sample_tasks")()
        env.get_wrapper_attr("toggle_sample_tasks_on_reset")(False)
    env.unwrapped.seed(rng_seed)
    return SnapshotWrapper(env, task_index)


def make_vector_env(
    env_config: ml_collections.ConfigDict,
    seed: int,
    evaluation: bool = False,
    render_mode: str | None = None,
    **render_options,
) -> gym.vector.VectorEnv:
    """The vector env of an env config section, one sub-env per task in benchmark order.

    Eval envs terminate on success, as Meta-World's evaluator expects. `render_mode`
    ("rgb_array") makes `vector_env.call("render")` return one frame per task, shaped by
    `render_options` (Meta-World's `width`, `height`, `camera_name`); offscreen rendering
    needs `MUJOCO_GL=egl` (or `osmesa`) on a machine without a display.
    """
    names = task_names(env_config)
    stream = EVAL_STREAM if evaluation else TRAIN_STREAM
    env_kwargs = {
        "use_one_hot": env_config.use_one_hot,
        "max_episode_steps": env_config.max_episode_steps,
        "reward_function_version": env_config.reward_function_version,
        "render_mode": render_mode,
        **render_options,
    }
    env_fns = [
        functools.partial(
            _make_task_env,
            task_name=name,
            task_index=index,
            num_tasks=len(names),
            goal_seed=derived_seed(seed, index),
            rng_seed=derived_seed(seed, index, stream),
            fixed_goal=env_config.fixed_goal,
            terminate_on_success=evaluation,
            env_kwargs=env_kwargs,
        )
        for index, name in enumerate(names)
    ]
    strategy = resolve_strategy(env_config.vector_strategy)
    vector_cls = gym.vector.AsyncVectorEnv if strategy == "async" else gym.vector.SyncVectorEnv
    return vector_cls(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


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
    success: np.ndarray  # Meta-World's success flag for this step


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
            f"Meta-World env {', '.join(dead)} died ({type(error).__name__}). A worker killed from outside "
            "(out of memory, a signal) takes its task down with it. Fix: check memory and rerun, or pass "
            "--config.env.vector_strategy=sync to run the envs in this process and see their own errors."
        )
    return (
        f"A Meta-World env raised {type(error).__name__}: {error}. Fix: check the env settings "
        "(env.max_episode_steps, env.reward_function_version) or rerun with "
        "--config.env.vector_strategy=sync to see the env's own traceback."
    )
