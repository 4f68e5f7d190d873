"""`metaworld`: Meta-World's MT1 (one task, `env.task_name`), MT10 and MT50 benchmarks (Yu et al.
2019, "Meta-World"; McLean et al. 2025, "Meta-World+"): the Meta-World env of each task, which
`mtsac_jax.envs` gathers into a sync or async vector env.

Defaults follow the Meta-World+ protocol: 500-step episodes, a random goal of the task's 50
per reset, one-hot task id (multi-task only), v2 rewards. mtrl's protocol, the one the CARE
paper's numbers were measured on, is `PROTOCOLS["mtrl"]`: one fixed goal per task, 150-step
episodes, no one-hot (`configs/metaworld_mt10.py:mtrl`, mtrl's word `protocol=mtrl`). All task
envs truncate on the same step.

Run it:

    python train.py --config=configs/metaworld_mt1.py:reach-v3
    python train.py --config=configs/metaworld_mt10.py
    python train.py --config=configs/metaworld_mt50.py
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import pathlib
import pickle
import threading
import warnings

import gymnasium as gym
import metaworld
import ml_collections
from metaworld.env_dict import ALL_V3_ENVIRONMENTS, MT10_V3

from mtsac_jax.envs import EnvFamily, TaskEnv
from mtsac_jax.registry import ConfigError, check_choice

ENV_NAMES = ("metaworld-mt1", "metaworld-mt10", "metaworld-mt50")
TASKS = tuple(ALL_V3_ENVIRONMENTS)
MAX_EPISODE_STEPS = 500  # Meta-World refuses longer episodes.
GOALS_CACHE = (pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
               / "mtsac_jax" / "metaworld_goals")  # task_goals' files

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


PROTOCOLS = {"mtrl": {"fixed_goal": True, "max_episode_steps": 150, "use_one_hot": False}}


def describe(env_config: ml_collections.ConfigDict) -> str:
    """The protocol of an env section in words: whose it is (Meta-World's own, mtrl's, or
    neither), its episode length, goals and observation."""
    goal = "one fixed goal per task" if env_config.fixed_goal else "a new goal (of the task's 50) at every reset"
    observation = "a one-hot task id in the observation" if env_config.use_one_hot else "no one-hot task id"
    details = f"{env_config.max_episode_steps}-step episodes, {goal}, {observation}"
    keys = tuple(PROTOCOLS["mtrl"])
    own = default_config(env_config.name, env_config.get("task_name"))
    if all(env_config[key] == own[key] for key in keys):
        return f"Meta-World's own ({details})"
    if all(env_config[key] == PROTOCOLS["mtrl"][key] for key in keys):
        return f"mtrl's ({details})"
    return f"neither Meta-World's nor mtrl's ({details})"


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


@functools.lru_cache(maxsize=None)
def task_goals(task_name: str, seed: int) -> tuple[metaworld.Task, ...]:
    """The task's 50 goals as Meta-World's MT1 benchmark samples them from `seed` (a second of env
    resets per task), kept in `GOALS_CACHE` per Meta-World version so that later processes (env
    workers, eval envs, the next run) read them instead. A damaged or unwritable cache is passed
    over: the goals are then sampled again."""
    path = GOALS_CACHE / importlib.metadata.version("metaworld") / f"{task_name}-{seed}.pkl"
    try:
        goals = pickle.loads(path.read_bytes())
        if goals and all(isinstance(goal, metaworld.Task) and goal.env_name == task_name for goal in goals):
            return tuple(goals)
    except Exception:  # missing, cut short or not a pickle: sample again below
        pass
    goals = tuple(metaworld.MT1(task_name, seed=seed).train_tasks)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
        partial.write_bytes(pickle.dumps(goals))
        os.replace(partial, path)  # whole or not at all, also with several processes or threads writing
    except OSError:
        pass
    return goals


def make_task_env(task: TaskEnv) -> gym.Env:
    """One Meta-World task env. Its 50 goals come from the task seed, shared by train and eval
    envs so both see the same goal set (and, with `fixed_goal`, the same single goal); the env's
    own randomness is then reseeded from the request's stream seed. Eval envs terminate on
    success, as Meta-World's evaluator expects; `render_options` are Meta-World's `width`,
    `height`, `camera_name`."""
    config = task.env_config
    env = metaworld._init_each_env(  # what metaworld.make_mt_envs(task.name, ...) builds, on the cached goals
        ALL_V3_ENVIRONMENTS[task.name],
        list(task_goals(task.name, task.task_seed)),
        seed=task.task_seed,
        env_id=task.index,
        num_tasks=task.num_tasks,
        terminate_on_success=task.evaluation,
        use_one_hot=config["use_one_hot"],
        max_episode_steps=config["max_episode_steps"],
        reward_function_version=config["reward_function_version"],
        render_mode=task.render_mode,
        **task.render_options,
    )
    if config["fixed_goal"]:
        env.get_wrapper_attr("sample_tasks")()
        env.get_wrapper_attr("toggle_sample_tasks_on_reset")(False)
    env.unwrapped.seed(task.seed)
    return env


FAMILY = EnvFamily(
    env_names=ENV_NAMES,
    default_config=default_config,
    task_names=task_names,
    make_task_env=make_task_env,
    validate=validate,
    protocols=PROTOCOLS,
    describe=describe,
    smoke_config={"max_episode_steps": 50},
    upside_down_cameras=frozenset({"corner", "corner2", "corner3", "corner4"}),  # mounted with up at the floor
)
