"""A trained agent's deterministic policy, usable from plain numpy.

    import mtsac_jax
    policy = mtsac_jax.load_policy("runs/mt10")
    actions = policy.eval_action(obs_batch)   # (T, obs_dim) -> (T, action_dim), one row per task

The policy follows Meta-World's evaluator protocol (`eval_action`, `reset`), so it plugs
straight into `metaworld.evaluation.evaluation(policy, envs)`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
import sys
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mtsac_jax import agents, envs
from mtsac_jax.checkpoint import EVALUATION_START, Checkpointer, CheckpointError, failure_reason, quiet_orbax
from mtsac_jax.config import ConfigError, task_names, upgrade, validate
from mtsac_jax.registry import import_extensions
from mtsac_jax.setups import SETUPS, evaluation_sets


class PolicyError(RuntimeError):
    """The workdir holds no usable trained agent; the message says why and what to do."""


class DeterministicPolicy:
    """An agent's evaluation policy (SAC: tanh(mean) of the actor), for (T, obs_dim)
    observations: row t goes through task t's parameters (its head, embedding or network),
    so rows must follow the env's task order."""

    def __init__(self, eval_actions: Callable, policy_params: dict, step: int | None = None,
                 unseen_eval_actions: Callable | None = None):
        self._eval_actions = eval_actions
        self._policy_params = policy_params
        self.step = step  # the training step of the checkpoint, when loaded from one
        # the policy in envs it never trained on (rows are envs, not tasks), when the agent has one
        self.unseen = None if unseen_eval_actions is None else DeterministicPolicy(unseen_eval_actions, policy_params, step)

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        obs = jnp.asarray(envs.observations(np.asarray(observations)))
        return np.asarray(self._eval_actions(self._policy_params, obs), np.float64)

    def reset(self, env_mask: np.ndarray) -> None:
        """The policy is memoryless: nothing to reset between episodes."""


class TaskSharePolicy:
    """`policy` on the tasks `tasks` (a slice of its `num_tasks`) only: observations of those
    tasks in, their actions out (the other rows are computed on zeros and dropped)."""

    def __init__(self, policy: DeterministicPolicy, tasks: slice, num_tasks: int):
        self.policy, self.tasks, self.num_tasks = policy, tasks, num_tasks

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        whole = np.zeros((self.num_tasks, *observations.shape[1:]), observations.dtype)
        whole[self.tasks] = observations
        return self.policy.eval_action(whole)[self.tasks]

    def reset(self, env_mask: np.ndarray) -> None:
        """The policy is memoryless: nothing to reset between episodes."""


def load_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The resolved config a run saved in `WORKDIR/config.json` (in today's shape), with the
    run's own registered extensions imported."""
    workdir = pathlib.Path(workdir)
    path = workdir / "config.json"
    if not workdir.is_dir():
        raise PolicyError(f"{workdir} is not a folder. Fix: pass --workdir=<a training run folder>.")
    if not path.is_file():
        raise PolicyError(f"{path} does not exist: {workdir} is not a training workdir (train.py writes one).")
    damaged = (f"{path} is damaged or not a run's config ({{}}). Fix: restore it from a copy, or rewrite it with "
               f"the run's config: python train.py --config=<the run's config file> --print_config > {path}")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError(f"it holds a JSON {type(saved).__name__}, not an object")
    except (OSError, ValueError) as error:
        raise PolicyError(damaged.format(error)) from None
    try:
        import_extensions(saved.get("extensions", []))  # first: the run's own agent upgrades its section
        config = ml_collections.ConfigDict(upgrade(saved))
        validate(config)
    except ConfigError as error:
        raise PolicyError(f"{path} is not a valid run config: {error}") from None
    except (ValueError, AttributeError, TypeError) as error:
        raise PolicyError(damaged.format(error)) from None
    return config


@dataclasses.dataclass(frozen=True)
class RunEvaluation:
    """What a checkpoint keeps of the run's own evaluation at its step: the `episodes` per task
    and the eval envs' snapshots from just before it, by task set (None: the training tasks,
    else an unseen set); without them (`episodes` None) `missing` says why."""

    episodes: int | None
    snapshots: dict[str | None, list[bytes]]
    missing: str = ""


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def load_policy(workdir: str | pathlib.Path, step: int | None = None,
                warn: Callable[[str], None] = _warn) -> DeterministicPolicy:
    """The deterministic policy of the newest checkpoint in `workdir` (or of `step`). A newest
    checkpoint that cannot be read is skipped for the one before it, and `warn` is told."""
    return _load(workdir, step, warn, _restore_policy)


def load_evaluation(workdir: str | pathlib.Path, step: int | None = None,
                    warn: Callable[[str], None] = _warn) -> tuple[DeterministicPolicy, RunEvaluation]:
    """`load_policy`'s policy, and what its checkpoint keeps of the run's evaluation at its step."""
    return _load(workdir, step, warn, lambda checkpointer, config, at: (
        _restore_policy(checkpointer, config, at), _run_evaluation(checkpointer, config, at)))


def _load(workdir: str | pathlib.Path, step: int | None, warn: Callable[[str], None], read: Callable):
    """`read(checkpointer, config, step)` of the newest readable checkpoint in `workdir` (or of `step`)."""
    config = load_config(workdir)
    if config.num_seeds > 1:
        folders = ", ".join(f"seed_{seed}" for seed in range(config.seed, config.seed + config.num_seeds))
        raise PolicyError(
            f"{workdir} holds a run of {config.num_seeds} seeds side by side; each seed's checkpoints are in "
            f"its own folder ({folders}). Fix: pass --workdir={pathlib.Path(workdir) / f'seed_{config.seed}'} "
            "(or another seed's folder)."
        )
    checkpointer = Checkpointer(pathlib.Path(workdir), config.experiment.keep_checkpoints, read_only=True)
    try:
        steps = checkpointer.steps()
        if not steps:
            raise PolicyError(f"{workdir} has no checkpoint yet; train longer than experiment.save_freq steps.")
        if step is not None and step not in steps:
            raise PolicyError(f"{workdir} has no checkpoint for step {step}; it has {steps}. Fix: pass one of "
                              "those to --step, or leave --step out for the newest.")
        for candidate in [step] if step is not None else reversed(steps):
            try:
                with quiet_orbax():
                    return read(checkpointer, config, candidate)
            except Exception as error:  # a damaged, truncated or emptied checkpoint
                reason = failure_reason(error)
                if step is not None:
                    raise CheckpointError(f"checkpoint {step} of {workdir} cannot be read ({reason}). "
                                          f"Fix: pass another --step of {steps}.") from None
                earlier = [s for s in steps if s < candidate]
                if earlier:
                    warn(f"warning: checkpoint {candidate} of {workdir} cannot be read ({reason}); "
                         f"skipped it, using checkpoint {earlier[-1]} instead.")
        raise CheckpointError(f"no checkpoint of {workdir} can be read ({', '.join(map(str, steps))}; the oldest "
                              f"failed with {reason}). Fix: train again into a fresh workdir.")
    finally:
        checkpointer.close()


def _restore_policy(checkpointer: Checkpointer, config: ml_collections.ConfigDict, step: int) -> DeterministicPolicy:
    metadata = checkpointer.array_metadata(step)
    obs_shape, obs_dtype = tuple(metadata["obs"].shape[1:]), str(metadata["obs"].dtype)
    action_dim = metadata["buffer"]["action"].shape[2]
    names = tuple(task_names(config.env))
    env_spec = agents.EnvSpec(len(names), int(np.prod(obs_shape)), action_dim, names, obs_shape, obs_dtype)
    agent = agents.build(config.agent, env_spec, batch_size_per_task=1)
    abstract_state = jax.eval_shape(agent.init, jax.random.key(0))
    policy_params = checkpointer.restore_selected(step, abstract_state, agent.policy_params)
    return DeterministicPolicy(agent.eval_actions, policy_params, step, agent.unseen_eval_actions)


def _run_evaluation(checkpointer: Checkpointer, config: ml_collections.ConfigDict, step: int) -> RunEvaluation:
    meta = checkpointer.meta(step)
    if "eval_episodes" not in meta:
        return RunEvaluation(None, {}, f"checkpoint {step} is older than those that keep their evaluation's eval envs")
    if meta["eval_episodes"] is None:
        return RunEvaluation(None, {}, f"the run did not evaluate at step {step}")
    snapshots = checkpointer.env_snapshots(step)
    return RunEvaluation(meta["eval_episodes"], {task_set: snapshots[EVALUATION_START + (mode if task_set else "eval")]
                                    for mode, task_set in evaluation_sets(config)})


def evaluate_policy(policy, config: ml_collections.ConfigDict, episodes: int, eval_envs, task_set: str | None = None,
                    snapshots: list[bytes] | None = None) -> dict:
    """The setup's evaluation of `policy` on `eval_envs` (closed after; the run's tasks, or its
    unseen `task_set`), the envs first put in the state of `snapshots` when given (a
    `RunEvaluation`'s), done again from its start after each env worker that died or hung and was
    replaced (a warning line names the task); more than `env.max_worker_restarts` replacements
    raise `EnvWorkerError`."""
    setup = SETUPS.get(config.setup.name)
    names = task_names(config.env) if task_set is None else envs.unseen_task_sets(config.env)[task_set]
    try:
        for restarts in itertools.count(1):
            try:
                if snapshots is not None:
                    eval_envs.call("restore", snapshots)
                return setup.evaluate(policy, eval_envs, episodes, names)
            except envs.WorkersRestarted as restarted:
                print(f"warning: {restarted} The evaluation is done again from its start.", file=sys.stderr)
                if restarts > config.env.max_worker_restarts:
                    raise envs.EnvWorkerError(
                        f"env workers were replaced {restarts} times during this evaluation, more than "
                        f"env.max_worker_restarts={config.env.max_worker_restarts}. Fix: see what kills them "
                        "(the out-of-memory killer, a crash in the env), or evaluate with "
                        "env.vector_strategy=sync in the run's config.json.") from restarted
    finally:
        eval_envs.close()
