"""The training loop: CPU env workers feed a device-resident buffer; jitted SAC updates.

Per vector step: act (uniform random for `init_steps`, then the sampled policy), dispatch
the jitted update asynchronously, step the envs on the CPU while it runs, insert the
transition. Evaluation runs at every positive multiple of `eval_freq` and at the last step.
"""

from __future__ import annotations

import json
import pathlib
import time

import jax
import ml_collections
import numpy as np

from mtsac_jax import envs, evaluation, replay_buffer
from mtsac_jax.config import task_names, validate
from mtsac_jax.learner import SACLearner
from mtsac_jax.run_log import RunLog


class TrainingError(RuntimeError):
    """A run that cannot go on; the message names the cause and the fix."""


def prepare_workdir(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Creates the workdir and writes the resolved `config.json`; refuses to mix runs."""
    if (workdir / "train.jsonl").exists():
        raise TrainingError(
            f"{workdir} already holds a run (train.jsonl exists). Fix: pass a new --workdir, "
            "or delete that folder to start over."
        )
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    except OSError as error:
        raise TrainingError(f"Cannot write to the workdir {workdir}: {error}. Fix: pass a writable --workdir.")


class EpisodeStats:
    """Reward and success (at any step) of the training episodes that end between logs."""

    def __init__(self, num_tasks: int):
        self._reward = np.zeros(num_tasks)
        self._success = np.zeros(num_tasks, dtype=bool)
        self._finished_reward: list[float] = []
        self._finished_success: list[float] = []

    def add(self, step: envs.Step) -> None:
        self._reward += step.reward
        self._success |= step.success
        for index in np.flatnonzero(step.done):
            self._finished_reward.append(float(self._reward[index]))
            self._finished_success.append(float(self._success[index]))
            self._reward[index] = 0.0
            self._success[index] = False

    def flush(self) -> dict:
        if not self._finished_reward:
            return {}
        record = {
            "train/episode_reward": float(np.mean(self._finished_reward)),
            "train/success": float(np.mean(self._finished_success)),
        }
        self._finished_reward, self._finished_success = [], []
        return record


def update_record(metrics: dict, names: tuple[str, ...], step: int) -> dict:
    """Means over tasks of the last update's metrics, plus alpha per task; NaN stops the run."""
    metrics = {key: np.asarray(value) for key, value in jax.device_get(metrics).items()}
    for key, value in metrics.items():
        if not np.all(np.isfinite(value)):
            bad = [name for name, v in zip(names, np.broadcast_to(value, (len(names),))) if not np.isfinite(v)]
            raise TrainingError(
                f"train/{key} became non-finite at step {step} (tasks: {', '.join(bad)}). The update "
                "diverged; nothing after this point would be meaningful. Fix: lower the learning rates "
                "(agent.optimizers.*.lr), raise experiment.init_steps, or check the reward scale of the env."
            )
    record = {f"train/{key}": float(value.mean()) for key, value in metrics.items() if key != "alpha"}
    record["train/alpha_mean"] = float(metrics["alpha"].mean())
    record.update({f"train/alpha/{name}": float(a) for name, a in zip(names, metrics["alpha"])})
    return record


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Trains for `experiment.num_train_steps` vector steps; returns the last eval record."""
    validate(config)
    workdir = pathlib.Path(workdir)
    prepare_workdir(workdir, config)
    experiment = config.experiment
    names = task_names(config.env)
    num_tasks = len(names)

    train_envs = envs.make_vector_env(config.env, config.seed)
    eval_envs = envs.make_vector_env(config.env, config.seed, evaluation=True)
    obs_dim = train_envs.single_observation_space.shape[0]
    action_dim = train_envs.single_action_space.shape[0]

    learner = SACLearner(
        config.agent,
        obs_dim,
        action_dim,
        batch_size_per_task=config.replay_buffer.batch_size // num_tasks,
        num_updates_per_call=experiment.num_updates_per_step,
    )
    init_key, act_key = jax.random.split(jax.random.key(config.seed))
    state = learner.init(init_key)
    buffer = replay_buffer.init(num_tasks, config.replay_buffer.capacity // num_tasks, obs_dim, action_dim)
    warmup_rng = np.random.default_rng(config.seed)
    log = RunLog(workdir, experiment.num_train_steps)
    log.message(
        f"Training {config.agent.name} on {config.env.name} ({num_tasks} task(s)) for "
        f"{experiment.num_train_steps} steps (x{num_tasks} env steps); workdir {workdir}"
    )

    episode_stats = EpisodeStats(num_tasks)
    metrics = None
    last_eval = {}
    obs, _ = train_envs.reset()
    obs = obs.astype(np.float32)
    interval_start, interval_steps, interval_updates = time.perf_counter(), 0, 0
    run_start = interval_start
    try:
        for step in range(1, experiment.num_train_steps + 1):
            if step <= experiment.init_steps:
                actions = warmup_rng.uniform(-1.0, 1.0, (num_tasks, action_dim)).astype(np.float32)
            else:
                actions = np.asarray(
                    learner.sample_actions(state.actor_params, obs, jax.random.fold_in(act_key, step))
                )
            # Learning starts once the warm-up transitions (at least one) are in the buffer.
            if step > max(experiment.init_steps, 1):
                state, metrics = learner.update(state, buffer)  # dispatched asynchronously
                interval_updates += experiment.num_updates_per_step
            transition = envs.step(train_envs, actions)
            buffer = replay_buffer.insert_jit(
                buffer, obs, actions, transition.reward, transition.final_obs, transition.terminated
            )
            episode_stats.add(transition)
            obs = transition.next_obs
            interval_steps += 1

            last_step = step == experiment.num_train_steps
            if step % experiment.log_freq == 0 or last_step:
                record = {"step": step, "env_steps": step * num_tasks}
                record.update(episode_stats.flush())
                if metrics is not None:
                    record.update(update_record(metrics, names, step))
                now = time.perf_counter()
                record["perf/env_steps_per_s"] = interval_steps * num_tasks / (now - interval_start)
                record["perf/updates_per_s"] = interval_updates / (now - interval_start)
                record["perf/elapsed_s"] = now - run_start
                log.train(record)
                interval_start, interval_steps, interval_updates = now, 0, 0
            if step % experiment.eval_freq == 0 or last_step:
                eval_start = time.perf_counter()
                policy = evaluation.DeterministicPolicy(learner.deterministic_actions, state.actor_params)
                last_eval = {"step": step, "env_steps": step * num_tasks}
                last_eval.update(evaluation.evaluate(policy, eval_envs, experiment.num_eval_episodes, names))
                log.eval(last_eval)
                interval_start += time.perf_counter() - eval_start  # eval time is not training throughput
    finally:
        log.close()
        train_envs.close()
        eval_envs.close()
    return last_eval
