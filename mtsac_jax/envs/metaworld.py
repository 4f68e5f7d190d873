"""The Meta-World env family: `metaworld-mt1` (one task, `env.task_name`), `metaworld-mt10`,
`metaworld-mt50`, one gymnasium env per task in a sync or async vector env.

Defaults follow the Meta-World+ protocol: 500-step episodes, a random goal of the task's 50
per reset, one-hot task id (multi-task only), v2 rewards. mtrl's protocol is
`fixed_goal=True, max_episode_steps=150, use_one_hot=False`. All task envs truncate on the
same step.
"""

from __future__ import annotations

import functools
import warnings

import gymnasium as gym
import metaworld
import ml_collections
from metaworld.env_dict import ALL_V3_ENVIRONMENTS, MT10_V3

from mtsac_jax.env_state import SnapshotWrapper
from mtsac_jax.envs import EVAL_STREAM, TRAIN_STREAM, EnvFamily, derived_seed, vector_env_class
from mtsac_jax.registry import ConfigError, check_choice

ENV_NAMES = ("metaworld-mt1", "metaworld-mt10", "metaworld-mt50")
TASKS = tuple(ALL_V3_ENVIRONMENTS)
MAX_EPISODE_STEPS = 500  # Meta-World refuses longer episodes.

# Meta-World's one-hot wrapper builds float64 bounds for a float32 Box.
warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32.*")


def default_config(name: str, task_name: str | None = None) -> dict:
    config = {
        "max_episode_steps": MAX_EPISODE_STEPS,
        "use_one_hot": name != "metaworld-mt1",
        "fixed_goal": False,
        "reward_function_version": "v2",
    }
    if name == "metaworld-mt1":
        task_name = task_name or "reach-v3"
        check_choice("task", task_name, TASKS)
        config["task_name"] = task_name
    return config


def task_names(env_config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The Meta-World task names of an env section, in benchmark order."""
    if env_config.name == "metaworld-mt1":
        return (env_config.task_name,)
    if env_config.name == "metaworld-mt10":
        return tuple(MT10_V3)
    return TASKS


def validate(env_config: ml_collections.ConfigDict) -> None:
    if env_config.name == "metaworld-mt1":
        check_choice("env.task_name", env_config.task_name, TASKS)
    check_choice("env.reward_function_version", env_config.reward_function_version, ("v1", "v2"))
    if not env_config.max_episode_steps > 0:
        raise ConfigError(
            f"env.max_episode_steps={env_config.max_episode_steps!r} must be positive. "
            "Fix: pass --config.env.max_episode_steps=<a positive value>."
        )
    if env_config.max_episode_steps > MAX_EPISODE_STEPS:
        raise ConfigError(
            f"env.max_episode_steps={env_config.max_episode_steps} exceeds Meta-World's limit of "
            f"{MAX_EPISODE_STEPS} steps per episode. Fix: pass a value <= {MAX_EPISODE_STEPS}."
        )


def _make_task_env(
    task_name: str,
    task_index: int,
    num_tasks: int,
    seed: int,
    stream: int,
    fixed_goal: bool,
    terminate_on_success: bool,
    env_kwargs: dict,
    restart: int = 0,
) -> gym.Env:
    """One Meta-World task env (module-level so async workers can unpickle it).

    The 50 goals of a task come from `derived_seed(seed, task_index)`, shared by train and eval
    envs so both see the same goal set (and, with `fixed_goal`, the same single goal); the env's
    own randomness is then reseeded from `derived_seed(seed, task_index, stream)`, or, for the
    `restart`-th replacement of a failed async worker, from `derived_seed(seed, task_index,
    stream, restart)`: the same goals, a new stream, the same one for the same restart.
    """
    env = metaworld.make_mt_envs(
        task_name,
        seed=derived_seed(seed, task_index),
        env_id=task_index,
        num_tasks=num_tasks,
        terminate_on_success=terminate_on_success,
        **env_kwargs,
    )
    if fixed_goal:
        env.get_wrapper_attr("sample_tasks")()
        env.get_wrapper_attr("toggle_sample_tasks_on_reset")(False)
    env.unwrapped.seed(derived_seed(seed, task_index, stream, *([restart] if restart else [])))
    return SnapshotWrapper(env, task_index)


def make_vector_env(
    env_config: ml_collections.ConfigDict,
    seed: int,
    evaluation: bool = False,
    render_mode: str | None = None,
    *,
    tasks: slice = slice(None),
    **render_options,
) -> gym.vector.VectorEnv:
    """Train or eval envs of the tasks (those in the slice `tasks`); eval envs terminate on success, as Meta-World's
    evaluator expects. `render_options` are Meta-World's `width`, `height`, `camera_name`."""
    names = task_names(env_config)
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
            seed=seed,
            stream=EVAL_STREAM if evaluation else TRAIN_STREAM,
            fixed_goal=env_config.fixed_goal,
            terminate_on_success=evaluation,
            env_kwargs=env_kwargs,
        )
        for index, name in enumerate(names)
    ][tasks]
    vector_cls = vector_env_class(env_config.vector_strategy, env_config.worker_timeout_s)
    return vector_cls(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, task_names=names[tasks],
                      label="eval env" if evaluation else "train env")


FAMILY = EnvFamily(
    env_names=ENV_NAMES,
    default_config=default_config,
    task_names=task_names,
    make_vector_env=make_vector_env,
    validate=validate,
)
