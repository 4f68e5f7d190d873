"""Agents: the `AGENTS` registry and the bundle of pure functions every agent provides.

An agent is a frozen bundle of jitted pure functions over its own `flax.struct` state
(`Agent`): the training loop, checkpoints, evaluation and `load_policy` use nothing else.
Agents are composed, not subclassed: SAC's critic, actor, temperature and target steps are
plain functions in `mtsac_jax.agents.sac` that another agent's `update` calls next to its
own steps, on a state that has the fields they read.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import ml_collections

from mtsac_jax.registry import AGENTS


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know of the env: tasks and the sizes of observation and action;
    the task names in task-axis order (for task-description embeddings); the shape and dtype of
    one observation when it is not a vector of `obs_dim` floats (uint8 frames (C, H, W))."""

    num_tasks: int
    obs_dim: int
    action_dim: int
    task_names: tuple[str, ...] = ()
    obs_shape: tuple[int, ...] = ()
    obs_dtype: str = "float32"

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return self.obs_shape or (self.obs_dim,)

    @property
    def pixels(self) -> bool:
        return len(self.observation_shape) == 3


@dataclasses.dataclass(frozen=True)
class Agent:
    """The jitted pure functions of an agent; observations and actions are (T, ...), one row per task.

    init(key) -> state
    update(state, buffer) -> (state, metrics): `num_updates_per_call` gradient updates, the
        state donated; metrics are (T,) arrays (an `alpha` entry is logged per task too).
    policy_params(state) -> dict: the fields of the state the policy reads, `{field: value}`;
        `load_policy` restores only these from a checkpoint.
    sample_actions(policy_params, obs, key, step) -> actions: the exploration policy, with the
        key `fold_in(key, step)`.
    eval_actions(policy_params, obs) -> actions: the evaluation policy (deterministic).
    unseen_eval_actions(policy_params, obs) -> actions: the evaluation policy in envs the agent
        never trained on (the `hipbmdp` setup's unseen env ids), (M, obs_dim) -> (M, action_dim)
        for any M; None for an agent whose policy is defined per training task only.
    """

    init: Callable[[Any], Any]
    update: Callable[[Any, Any], tuple[Any, dict]]
    policy_params: Callable[[Any], dict]
    sample_actions: Callable[..., Any]
    eval_actions: Callable[[dict, Any], Any]
    unseen_eval_actions: Callable[[dict, Any], Any] | None = None


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """A registered agent: its builder, its config section and what the rest of the package
    needs to know of it (the loop, `config`, logs and plots never read an agent's internals).

    make: `(config, env_spec, batch_size_per_task, num_updates_per_call) -> Agent`, with
        `config` the whole `agent` section (its `network` and `gradient` sub-sections included).
    default_config: the `agent` section's own keys with their defaults (besides `name`,
        `network` and `gradient`, which the registries of those fill in). A key added later
        must default to the behaviour from before it: a run's saved config that lacks it gets
        the default when it is read again (`config.upgrade`).
    validate: `(config) -> None`, raises `ConfigError` naming the key and the fix.
    take_tasks: `(config, task_names) -> None`: the section takes the env's tasks when a config
        is composed (e.g. SAC's `multitask.num_envs`).
    check_tasks: `(config, task_names, env_name) -> None`: raises `ConfigError` when the section
        does not agree with the tasks of the env `env_name`.
    shrink: `(config) -> None`: the section at the tiny sizes of a `smoke` config.
    per_task_metrics: the update's metrics logged for each task besides their mean over tasks
        (`train/<metric>/<task>` and `train/<metric>_mean`); the others as `train/<metric>`.
    """

    make: Callable[..., Agent]
    default_config: Callable[[], dict]
    validate: Callable[[ml_collections.ConfigDict], None] = lambda config: None
    take_tasks: Callable[[ml_collections.ConfigDict, tuple[str, ...]], None] = lambda config, task_names: None
    check_tasks: Callable[[ml_collections.ConfigDict, tuple[str, ...], str], None] = lambda config, names, env: None
    shrink: Callable[[ml_collections.ConfigDict], None] = lambda config: None
    per_task_metrics: tuple[str, ...] = ()


def scanned(one_update, num_updates: int):
    """`num_updates` calls of `one_update(state, buffer)` in one `lax.scan`; metrics of the last."""

    def update(state, buffer):
        state, metrics = jax.lax.scan(lambda carry, _: one_update(carry, buffer), state, None, length=num_updates)
        return state, jax.tree.map(lambda m: m[-1], metrics)

    return update


def build(
    config: ml_collections.ConfigDict, env_spec: EnvSpec, batch_size_per_task: int, num_updates_per_call: int = 1
) -> Agent:
    return AGENTS.get(config.name).make(config, env_spec, batch_size_per_task, num_updates_per_call)
