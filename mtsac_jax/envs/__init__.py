"""Env families: the `ENV_FAMILIES` registry, and the vector envs and steps every family shares.

An env family (Meta-World today) provides, for the env names it owns (`<family>` or
`<family>-<variant>`, e.g. `metaworld-mt10`): the default `env` config section, the task
names in benchmark order, and one function that builds one task's env from a `TaskEnv`
request. Everything else is shared and lives here: the seeds of each task and stream
(`derived_seed`), the exact snapshots (`mtsac_jax.env_state.SnapshotWrapper`, so checkpoints
hold the env state), a process's share of the tasks, the vector strategy (in this process or
one restartable worker per task) and SAME_STEP autoreset. A family's module is imported only
when one of its envs is used.

SAME_STEP autoreset: on the last step of an episode the returned observation already belongs
to the next episode, the true final observation is `info["final_obs"]` and the step's
`success` lives in `info["final_info"]` (`step` unpacks this).

Env faults (docs/reliability.md, "Env worker faults"): with `vector_strategy="async"` each task
runs in a worker process (`mtsac_jax.envs.workers`) that is replaced when it dies or does not
answer within `env.worker_timeout_s`; an env that raises, in a worker or in this process,
gives an `EnvWorkerError` naming its task.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable, Sequence

import gymnasium as gym
import ml_collections
import numpy as np

from mtsac_jax.env_state import SnapshotWrapper
from mtsac_jax.envs.worker_process import raised_at
from mtsac_jax.envs.workers import (
    DEFAULT_TIMEOUT_S, EnvWorkerError, WorkerFault, WorkersRestarted, WorkerVectorEnv, env_error_message,
)
from mtsac_jax.registry import ENV_FAMILIES, ConfigError, check_choice

TRAIN_STREAM, EVAL_STREAM = 0, 1
# `vector_strategy="auto"` runs the task envs in worker processes from this many cores on.
# On 2 cores the in-process (sync) envs step faster, alone and inside the training loop
# (bench/loop_throughput.py); with spare cores each worker steps its task in parallel.
ASYNC_MIN_CORES = 4
VECTOR_STRATEGIES = ("auto", "sync", "async")
# The keys of every env section besides `name`, with their defaults (README.md's keys table).
COMMON_DEFAULTS = {
    "vector_strategy": "auto",
    "worker_timeout_s": DEFAULT_TIMEOUT_S,  # seconds an async worker may take to answer
    "max_worker_restarts": 3,  # restarts of one worker within the window before the run stops
    "worker_restart_window_s": 3600.0,
}


@dataclasses.dataclass(frozen=True)
class TaskEnv:
    """What a family's `make_task_env` builds: the env of task `name` (index `index` of
    `num_tasks`, in benchmark order) for the `env` section `env_config` (a plain dict).

    task_seed: the seed of the task itself, `derived_seed(run seed, index)`: the same for the
        train and eval envs (e.g. Meta-World draws the task's goal set from it).
    seed: the seed of the env's own random stream, `derived_seed(run seed, index, stream)`,
        the train and eval streams apart, and another after each restart of its worker.
    evaluation: an eval env (e.g. Meta-World's terminate on success).
    render_mode, render_options: as `make_vector_env` was given them (video).
    """

    env_config: dict
    name: str
    index: int
    num_tasks: int
    task_seed: int
    seed: int
    evaluation: bool = False
    render_mode: str | None = None
    render_options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class EnvFamily:
    """A registered env family.

    env_names: the `env.name`s it provides.
    default_config: `(env_name, task_name) -> dict`, the `env` section besides `name` and the
        keys every section holds (`COMMON_DEFAULTS`); `task_name` is the `task=` of the
        config-file argument.
    task_names: `(env_config) -> tuple[str, ...]`, the tasks in benchmark order.
    make_task_env: `(TaskEnv) -> gym.Env`, one task's env, seeded from the request (a
        module-level function: async workers build their env with it).
    validate: `(env_config) -> None`, raises `ConfigError` naming the key and the fix.
    protocols: named protocols other than the defaults, each the `env` keys it sets (e.g.
        Meta-World's `mtrl`); a config asks for one with `compose(..., protocol=name)`.
    describe: `(env_config) -> str`, the protocol in words, printed when a run starts.
    unseen_task_sets: `(env_config) -> {set name: task names}`, tasks a run does not train on
        and is evaluated on besides its own (DMControl distributions' unseen env ids), for a
        setup that evaluates on them (`hipbmdp`).
    smoke_config: the `env` keys of a `smoke` config (short episodes).
    reports_success: whether its envs flag success (`info["success"]`); training logs then
        report the success rate of the training episodes beside their reward.
    upside_down_cameras: the cameras whose frames come upside down (videos turn them).
    """

    env_names: tuple[str, ...]
    default_config: Callable[[str, str | None], dict]
    task_names: Callable[[ml_collections.ConfigDict], tuple[str, ...]]
    make_task_env: Callable[[TaskEnv], gym.Env]
    validate: Callable[[ml_collections.ConfigDict], None] = lambda config: None
    protocols: dict[str, dict] = dataclasses.field(default_factory=dict)
    describe: Callable[[ml_collections.ConfigDict], str] = lambda config: ""
    unseen_task_sets: Callable[[ml_collections.ConfigDict], dict[str, tuple[str, ...]]] = lambda config: {}
    smoke_config: dict = dataclasses.field(default_factory=dict)
    reports_success: bool = True
    upside_down_cameras: frozenset[str] = frozenset()


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


def env_config(name: str, task_name: str | None = None, family: EnvFamily | None = None,
               protocol: str | None = None) -> ml_collections.ConfigDict:
    """The `env` section of env `name` at its family's defaults (`family`, when resolved
    already), or at its named `protocol`."""
    family = family or family_of(name)
    config = {"name": name, **COMMON_DEFAULTS, **family.default_config(name, task_name)}
    if protocol is not None:
        if protocol not in family.protocols:
            raise ConfigError(
                f"protocol={protocol}: env {name} knows {', '.join(family.protocols) or 'no protocol'} besides its "
                "own defaults. Fix: choose one of those, or leave protocol out for the defaults."
            )
        config.update(family.protocols[protocol])
    return ml_collections.ConfigDict(config)


def task_names(env_config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The task names of an env section, in benchmark order."""
    return family_of(env_config.name).task_names(env_config)


def unseen_task_sets(env_config: ml_collections.ConfigDict) -> dict[str, tuple[str, ...]]:
    """The family's sets of tasks a run does not train on, by name (none for most families)."""
    return family_of(env_config.name).unseen_task_sets(env_config)


def validate(env_config: ml_collections.ConfigDict, family: EnvFamily | None = None) -> None:
    """Checks an env section: the keys every section holds, then its family's own (`family`,
    when resolved already)."""
    family = family or family_of(env_config.name, key="env.name")
    check_choice("env.vector_strategy", env_config.vector_strategy, VECTOR_STRATEGIES)
    for key, meaning in (
        ("worker_timeout_s", "the seconds an env worker may take to answer before it is restarted"),
        ("worker_restart_window_s", "the seconds within which env.max_worker_restarts restarts of one worker are allowed"),
    ):
        if not env_config[key] > 0:
            raise ConfigError(f"env.{key}={env_config[key]!r} must be positive: it is {meaning}. "
                              f"Fix: pass --config.env.{key}=<seconds>, e.g. {COMMON_DEFAULTS[key]:g}.")
    if env_config.max_worker_restarts < 1:
        raise ConfigError(
            f"env.max_worker_restarts={env_config.max_worker_restarts!r} must be at least 1: it is how many times "
            "one env worker may be restarted within env.worker_restart_window_s before the run stops. "
            f"Fix: pass --config.env.max_worker_restarts=<1 or more>, e.g. {COMMON_DEFAULTS['max_worker_restarts']}."
        )
    family.validate(env_config)


def make_vector_env(
    env_config: ml_collections.ConfigDict,
    seed: int,
    evaluation: bool = False,
    render_mode: str | None = None,
    tasks: slice = slice(None),
    task_set: str | None = None,
    on_built: Callable[[], None] | None = None,
    **render_options,
) -> gym.vector.VectorEnv:
    """The vector env of an env config section, one sub-env per task in benchmark order (of
    the tasks in the slice `tasks`: a process's share of a run over several processes), each
    the same env whichever share it is built in, with SAME_STEP autoreset and exact snapshots.
    `task_set` names one of the family's unseen task sets to build instead of the run's tasks
    (eval envs only). `on_built` is called as each task's env is built.

    Train and eval envs (`evaluation`) draw from separate streams, and each unseen set from its own. `render_mode` ("rgb_array")
    makes `vector_env.call("render")` return one frame per task, shaped by `render_options`;
    offscreen rendering needs `MUJOCO_GL=egl` (or `osmesa`) on a machine without a display.
    """
    family = family_of(env_config.name)
    if task_set is None:
        names, stream = family.task_names(env_config), EVAL_STREAM if evaluation else TRAIN_STREAM
    else:
        sets = family.unseen_task_sets(env_config)
        names, stream = sets[task_set], EVAL_STREAM + 1 + list(sets).index(task_set)
    env_fns = [
        functools.partial(task_env, family.make_task_env, env_config.to_dict(), name, index, len(names), seed,
                          evaluation or task_set is not None, render_mode, render_options, stream=stream)
        for index, name in enumerate(names)
    ][tasks]
    vector_cls = vector_env_class(env_config.vector_strategy, env_config.worker_timeout_s)
    return vector_cls(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, task_names=names[tasks],
                      label="eval env" if evaluation else "train env", on_built=on_built)


def task_env(make_task_env: Callable[[TaskEnv], gym.Env], env_config: dict, name: str, index: int, num_tasks: int,
             seed: int, evaluation: bool, render_mode: str | None, render_options: dict, restart: int = 0,
             stream: int | None = None) -> gym.Env:
    """Task `index`'s env as a family builds it, with `snapshot()`/`restore(blobs)`. Its stream
    is `derived_seed(seed, index, stream)` (`stream`: the train or eval stream by default); the
    `restart`-th replacement of its worker gets `derived_seed(seed, index, stream, restart)`:
    the same task, a new stream, the same one for the same restart."""
    if stream is None:
        stream = EVAL_STREAM if evaluation else TRAIN_STREAM
    request = TaskEnv(env_config, name, index, num_tasks, task_seed=derived_seed(seed, index),
                      seed=derived_seed(seed, index, stream, *([restart] if restart else [])),
                      evaluation=evaluation, render_mode=render_mode, render_options=render_options)
    return SnapshotWrapper(make_task_env(request), index)


def vector_env_class(vector_strategy: str, worker_timeout_s: float = DEFAULT_TIMEOUT_S) -> Callable[..., gym.vector.VectorEnv]:
    """The vector env of `env.vector_strategy`, called as `(env_fns, autoreset_mode=SAME_STEP,
    task_names=None, label="env", on_built=None)`: `WorkerVectorEnv` (one restartable worker per
    task, each answering within `worker_timeout_s`) or `TaskSyncVectorEnv` (in this process).
    `task_names` and `label` ("train env", "eval env") name the envs in messages; `on_built` is
    called as each env is built."""
    if resolve_strategy(vector_strategy) == "async":
        return functools.partial(WorkerVectorEnv, timeout_s=worker_timeout_s)
    return TaskSyncVectorEnv


class _NamesTaskOnError(gym.Wrapper):
    """Turns an exception of the env's `step` or `reset` into an `EnvWorkerError` naming the task."""

    def __init__(self, env: gym.Env, label: str, task: str):
        super().__init__(env)
        self._label, self._task = label, task

    def _named(self, error: Exception) -> EnvWorkerError:
        return EnvWorkerError(env_error_message(self._label, self._task, type(error).__name__, str(error), raised_at(error)))

    def step(self, action):
        try:
            return self.env.step(action)
        except Exception as error:
            raise self._named(error) from error

    def reset(self, **kwargs):
        try:
            return self.env.reset(**kwargs)
        except Exception as error:
            raise self._named(error) from error


def _named_env(env_fn: Callable[[], gym.Env], label: str, task: str, on_built: Callable[[], None] | None) -> gym.Env:
    env = _NamesTaskOnError(env_fn(), label, task)
    if on_built is not None:
        on_built()
    return env


class TaskSyncVectorEnv(gym.vector.SyncVectorEnv):
    """gymnasium's `SyncVectorEnv` whose env errors name their task (`EnvWorkerError`); `on_built`
    is called as each env is built."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
                 task_names: Sequence[str] | None = None, label: str = "env",
                 on_built: Callable[[], None] | None = None):
        names = list(task_names) if task_names is not None else [str(i) for i in range(len(env_fns))]
        super().__init__([functools.partial(_named_env, env_fn, label, name, on_built)
                          for env_fn, name in zip(env_fns, names)], autoreset_mode=autoreset_mode)


def derived_seed(*entropy: int) -> int:
    """A 32-bit seed from (run seed, task index[, stream[, restart]]): task i's goals come from
    `derived_seed(seed, i)`, its train/eval env randomness from `derived_seed(seed, i, stream)`,
    and after the k-th restart of its worker from `derived_seed(seed, i, stream, k)`."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])


def resolve_strategy(vector_strategy: str) -> str:
    """`sync` or `async`; `auto` picks by the number of cores of this machine."""
    if vector_strategy != "auto":
        return vector_strategy
    return "async" if (os.cpu_count() or 1) >= ASYNC_MIN_CORES else "sync"


@dataclasses.dataclass
class Step:
    """One vector step, arrays shaped (T, ...), ready for the replay buffer."""

    next_obs: np.ndarray  # obs to act on next (already reset where an episode ended or a worker was replaced)
    final_obs: np.ndarray  # the true s' of this transition (final_obs where an episode ended)
    reward: np.ndarray
    terminated: np.ndarray  # stored in the buffer; truncation is bootstrapped through
    done: np.ndarray  # terminated or truncated: an episode ended on this step
    success: np.ndarray  # the env's success flag for this step (False where it has none)
    dropped: np.ndarray  # tasks whose worker was replaced during this step: no transition, episode interrupted
    faults: list[WorkerFault]  # what happened to those workers


def rendering_failed(error: Exception) -> str:
    """What to say when offscreen rendering fails: the GL backend, the error and the fix."""
    backend = os.environ.get("MUJOCO_GL", "<unset>")
    return (f"Offscreen rendering failed with MUJOCO_GL={backend} ({type(error).__name__}: {error}). Fix: set "
            "MUJOCO_GL=egl (GPU or Mesa EGL) or MUJOCO_GL=osmesa (software) before the first render, and install "
            "that backend's libraries (e.g. apt-get install libegl1 libgl1-mesa-dri for EGL, libosmesa6 for OSMesa).")


def observations(obs: np.ndarray) -> np.ndarray:
    """Observations as the replay buffer stores them: uint8 frames as they are, anything else float32."""
    return obs if obs.dtype == np.uint8 else obs.astype(np.float32)


def step(envs: gym.vector.VectorEnv, actions: np.ndarray, drop_restarted: bool = False) -> Step:
    """Steps all task envs and unpacks SAME_STEP autoreset into a transition.

    A worker replaced during the step raises `WorkersRestarted`, or with `drop_restarted`
    gives a Step whose `dropped` tasks have their new env's first observation as `next_obs`,
    reward 0 and no episode end. An env that raises gives an `EnvWorkerError`.
    """
    dropped, faults = np.zeros(envs.num_envs, dtype=bool), []
    try:
        next_obs, reward, terminated, truncated, info = envs.step(actions)
    except WorkersRestarted as restarted:
        if not drop_restarted:
            raise
        next_obs, reward, terminated, truncated, info = restarted.step_result
        faults = restarted.faults
        dropped[[fault.index for fault in faults]] = True
    except EnvWorkerError:
        raise
    except Exception as error:  # a vector env of a family's own
        raise EnvWorkerError(
            f"An env raised {type(error).__name__}: {error} (in {raised_at(error)}). Fix: check the env settings of "
            "the config (env.*) or the env's code."
        ) from error
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
        next_obs=observations(next_obs),
        final_obs=observations(final_obs),
        reward=reward.astype(np.float32),
        terminated=terminated.astype(np.float32),
        done=done,
        success=success,
        dropped=dropped,
        faults=faults,
    )
