"""The training loop: CPU env workers feed a device-resident buffer; jitted SAC updates.

Per vector step: act (uniform random for `init_steps`, then the sampled policy), dispatch
the jitted update asynchronously, step the envs on the CPU while it runs, insert the
transition. Evaluation runs at every positive multiple of `eval_freq` and at the last step;
a checkpoint is written every `save_freq` steps, at the last step and when SIGTERM or
SIGINT asks the run to stop. Running again with the same workdir resumes bit-exactly from
the newest checkpoint.

Env worker faults (docs/reliability.md): a replaced async worker interrupts its task's episode,
which is dropped (the failed step's transition is not stored, the episode is not counted in
the train statistics); an evaluation it interrupts is done again. More than
`env.max_worker_restarts` restarts of one worker within `env.worker_restart_window_s` stop the
run once the current step is complete and saved.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import signal
import threading
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mtsac_jax import agents, envs, numerics, processes, replay_buffer, sharding, video
from mtsac_jax.checkpoint import Checkpointer
from mtsac_jax.config import flatten, task_names, upgrade, validate
from mtsac_jax.policy import DeterministicPolicy, TaskSharePolicy
from mtsac_jax.setups import SETUPS, merge_task_records
from mtsac_jax.run_log import RunLog

# Keys that may change between a run and its resumption: they change neither shapes nor
# what the training computes.
RESUMABLE_CHANGES = frozenset(
    {
        "experiment.num_train_steps",
        "experiment.eval_freq",
        "experiment.num_eval_episodes",
        "experiment.log_freq",
        "experiment.save_freq",
        "experiment.keep_checkpoints",
        "experiment.save_video",
        "env.vector_strategy",
        "env.worker_timeout_s",
        "env.max_worker_restarts",
        "env.worker_restart_window_s",
    }
)
STOPPED = "stopped.txt"  # in a seed's workdir: why that seed of a multi-seed run stopped
# Logged with each replaced train worker, by when it was replaced.
DROPPED_IN_STEP = ("Its unfinished episode is dropped: the transition of this step is not stored and the episode "
                   "is not counted in train/episode_reward or train/success.")
DROPPED_BETWEEN_STEPS = ("Its unfinished episode is dropped (not counted in train/episode_reward or train/success); "
                         "the task goes on with a new episode.")


class TrainingError(RuntimeError):
    """A run that cannot go on; the message names the cause and the fix."""


def prepare_workdir(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> list[str]:
    """Creates the workdir and writes `config.json`. A workdir of an earlier run must hold
    the same config up to `RESUMABLE_CHANGES`; returns those changes as readable lines."""
    config_path = workdir / "config.json"
    new = flatten(config.to_dict())
    changes = []
    if config_path.exists():
        saved = flatten(upgrade(json.loads(config_path.read_text())))
        differing = sorted(key for key in saved.keys() | new.keys() if saved.get(key) != new.get(key))
        changes = [f"{key}: {saved.get(key)!r} -> {new.get(key)!r}" for key in differing]
        blocking = [line for key, line in zip(differing, changes) if key not in RESUMABLE_CHANGES]
        if blocking:
            raise TrainingError(
                f"{workdir} holds a run with a different config:\n  " + "\n  ".join(blocking) + "\n"
                f"Resuming would mix two experiments. Fix: rerun with the saved values (--config={config_path}), "
                "or pass a new --workdir (or delete this one) to start a fresh run."
            )
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        if processes.is_main():
            partial = workdir / "config.json.partial"
            partial.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
            partial.replace(config_path)
    except OSError as error:
        raise TrainingError(f"Cannot write to the workdir {workdir}: {error}. Fix: pass a writable --workdir.")
    return changes


class EpisodeStats:
    """Reward and success (at any step) of the training episodes that end between logs."""

    def __init__(self, num_tasks: int):
        self.reward = np.zeros(num_tasks)
        self.success = np.zeros(num_tasks, dtype=bool)
        self.finished_reward: list[float] = []
        self.finished_success: list[float] = []

    def add(self, step: envs.Step) -> None:
        self.reward += step.reward
        self.success |= step.success
        for index in np.flatnonzero(step.done):
            self.finished_reward.append(float(self.reward[index]))
            self.finished_success.append(float(self.success[index]))
            self.reward[index] = 0.0
            self.success[index] = False
        self.interrupt(np.flatnonzero(step.dropped))

    def interrupt(self, indices) -> None:
        """Forgets the unfinished episodes of tasks `indices`: they are never counted."""
        self.reward[indices] = 0.0
        self.success[indices] = False

    def flush(self) -> dict:
        """The means over the episodes finished since the last flush, on every process's tasks
        (every process must call it)."""
        parts = processes.gather((self.finished_reward, self.finished_success))
        self.finished_reward, self.finished_success = [], []
        rewards, successes = (sum(lists, []) for lists in zip(*parts))
        if not rewards:
            return {}
        return {"train/episode_reward": float(np.mean(rewards)), "train/success": float(np.mean(successes))}

    def to_json(self) -> dict:
        """The statistics of every process's tasks, in task order (every process must call it)."""
        parts = processes.gather((self.reward.tolist(), self.success.tolist(), self.finished_reward,
                                  self.finished_success))
        reward, success, finished_reward, finished_success = (sum(lists, []) for lists in zip(*parts))
        return {"reward": reward, "success": success, "finished_reward": finished_reward,
                "finished_success": finished_success}

    def load_json(self, saved: dict, tasks: slice) -> None:
        """This process's part of `to_json`'s statistics: its `tasks`, and the finished episodes on process 0."""
        self.reward = np.array(saved["reward"], dtype=np.float64)[tasks]
        self.success = np.array(saved["success"], dtype=bool)[tasks]
        main = processes.is_main()
        self.finished_reward = list(saved["finished_reward"]) if main else []
        self.finished_success = list(saved["finished_success"]) if main else []


def update_record(metrics: dict, names: tuple[str, ...]) -> dict:
    """Means over tasks of the last adopted update's metrics (finite: `numerics.guarded`), plus
    alpha per task."""
    metrics = {key: np.asarray(value) for key, value in jax.device_get(metrics).items()}
    record = {f"train/{key}": float(value.mean()) for key, value in metrics.items() if key != "alpha"}
    record["train/alpha_mean"] = float(metrics["alpha"].mean())
    record.update({f"train/alpha/{name}": float(a) for name, a in zip(names, metrics["alpha"])})
    return record


class RestartCounter:
    """Counts each env worker's restarts within the last `window_s` seconds
    (`env.worker_restart_window_s`)."""

    def __init__(self, window_s: float, clock=time.monotonic):
        self.window_s, self.clock = window_s, clock
        self._times = collections.defaultdict(collections.deque)

    def add(self, worker) -> int:
        """Records a restart of `worker` (any hashable key); its restarts within the window."""
        now, times = self.clock(), self._times[worker]
        times.append(now)
        while now - times[0] > self.window_s:
            times.popleft()
        return len(times)


class StopSignals:
    """Turns SIGTERM and SIGINT into a request to stop after the current step."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def memory_bytes() -> int | None:
    """The memory of the first device: an accelerator's own, the machine's for CPU (None if unknown)."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(state, buffer) -> None:
    """Refuses, before anything is allocated, a train state and buffer (abstract shapes) that
    alone outgrow the device's memory: XLA would otherwise abort while compiling or allocating."""
    gib = lambda tree: sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree)) / 2**30  # noqa: E731
    available = memory_bytes()
    if available is not None and gib(state) + gib(buffer) > available / 2**30:
        raise TrainingError(
            f"out of memory before starting: the train state (networks, target networks, optimizer moments) needs "
            f"{gib(state):,.1f} GiB and the replay buffer {gib(buffer):,.1f} GiB, more than the {available / 2**30:.1f} "
            f"GiB of this {jax.devices()[0].platform.upper()} device. Fix: lower the network sizes "
            "(agent.actor/critic hidden_dim, num_layers) or replay_buffer.capacity.")


class SeedAxis:
    """The seed axis of a run with `num_seeds` > 1: the train state and the replay buffer carry
    a leading axis over seeds and the agent's functions are vmapped over it. With one seed
    there is no such axis and every function is the agent's own."""

    def __init__(self, num_seeds: int):
        self.num_seeds = num_seeds

    def map(self, fn: Callable, in_axes=0) -> Callable:
        return fn if self.num_seeds == 1 else jax.vmap(fn, in_axes=in_axes)

    def stack(self, trees: list) -> Any:
        if self.num_seeds == 1:
            return trees[0]
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)

    def stack_host(self, arrays: list[np.ndarray]) -> np.ndarray:
        """Host arrays (observations, transitions) stacked over seeds, without a device round trip."""
        return arrays[0] if self.num_seeds == 1 else np.stack(arrays)

    def take(self, tree, index: int) -> Any:
        return tree if self.num_seeds == 1 else jax.tree.map(lambda leaf: leaf[index], tree)


def seed_config(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
    """The config of seed `seed` of a multi-seed run: a single-seed run of its own."""
    config = ml_collections.ConfigDict(config.to_dict())
    config.seed, config.num_seeds = seed, 1
    config.lock()
    return config


class SeedStopped(Exception):
    """One seed of a multi-seed run stopped (the message says why); the others go on."""


class SeedRun:
    """One seed's envs, logs and checkpoints: a complete single-seed workdir. In a run over
    several processes (`mtsac_jax.processes`) each process has the envs of its share of the
    tasks, `tasks` (`processes.task_share`); process 0 writes the logs."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: pathlib.Path, label: str | None):
        self.config, self.workdir, self.label = config, workdir, label
        self.experiment = config.experiment
        self.names = task_names(config.env)
        self.num_tasks = len(self.names)
        self.tasks = processes.task_share(self.num_tasks)
        self.setup = SETUPS.get(config.setup.name)
        self.train_envs = envs.make_vector_env(config.env, config.seed, tasks=self.tasks)
        self.eval_envs = envs.make_vector_env(config.env, config.seed, evaluation=True, tasks=self.tasks)
        if self.train_envs.num_envs != len(self.names[self.tasks]):
            self.train_envs.close()
            self.eval_envs.close()
            raise TrainingError(
                f"The env family of env.name={config.env.name!r} built {self.train_envs.num_envs} envs for this "
                f"process's {len(self.names[self.tasks])} tasks: its make_vector_env ignores `tasks`. Fix: build "
                "only the sub-envs of those tasks (docs/extending.md), or train in one process.")
        self.init_key, self.act_key = jax.random.split(jax.random.key(config.seed))
        self.warmup_rng = np.random.default_rng(config.seed)
        self.episode_stats = EpisodeStats(self.train_envs.num_envs)
        self.checkpointer = Checkpointer(workdir, self.experiment.keep_checkpoints)
        self.video_failed = False
        self.obs = None
        self.restarts = RestartCounter(config.env.worker_restart_window_s)
        self.fault_error: str | None = None  # set when a worker was restarted too often: the run stops
        self.skipped_updates, self.skipped_in_a_row = 0, 0  # dropped updates: in this log interval, in a row
        self.metrics = None  # the last adopted update's metrics
        self.messages: list[str] = []  # said before the log is open
        self.log: RunLog | None = None
        self.stopped = (workdir / STOPPED).read_text().strip() if label and (workdir / STOPPED).is_file() else None

    def say(self, text: str) -> None:
        if self.log is not None:
            self.log.message(text)
        elif processes.is_main():
            self.messages.append(text)
        else:  # processes other than 0 write no logs
            print(f"[process {jax.process_index()}] {text}", flush=True)

    def open_log(self, start_step: int, headline_metric: str) -> None:
        self.log = RunLog(self.workdir, self.experiment.num_train_steps, start_step, headline_metric=headline_metric,
                          label=self.label)
        for message in self.messages:
            self.log.message(message)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        self.checkpointer.close()
        self.train_envs.close()
        self.eval_envs.close()

    def stop(self, reason: str) -> None:
        """Stops this seed for the rest of a multi-seed run, and for its resumptions."""
        reason += (f" This seed stays stopped when the run resumes; once fixed, go on with it alone: python train.py "
                   f"--config={self.workdir / 'config.json'} --workdir={self.workdir}")
        self.stopped = reason
        self.say(f"error: {reason}")
        (self.workdir / STOPPED).write_text(reason + "\n")

    # ----- checkpoints -----

    def save(self, step: int, arrays: dict) -> None:
        env_blobs = {
            "train": self._retry("train", step, DROPPED_BETWEEN_STEPS, lambda: list(self.train_envs.call("snapshot")),
                                 on_restart=self._restarted_between_steps),
            "eval": self._retry("eval", step, "Evaluations start their episodes afresh anyway.",
                                lambda: list(self.eval_envs.call("snapshot"))),
        }
        meta = {
            "step": step,
            "warmup_rng": self.warmup_rng.bit_generator.state,
            "episode_stats": self.episode_stats.to_json(),
        }
        parts = processes.gather((env_blobs, self.obs))  # the checkpoint holds every process's tasks
        env_blobs = {group: sum((blobs[group] for blobs, _ in parts), []) for group in env_blobs}
        obs = np.concatenate([obs for _, obs in parts])
        self.checkpointer.save(step, {**arrays, "obs": obs}, env_blobs, meta)

    def restore(self, abstract: dict, at_most: int | None = None) -> tuple[int, dict | None]:
        """Restores the newest good checkpoint (of step `at_most` or earlier); returns its step
        and its `train_state` and `buffer` (0 and None when starting fresh)."""
        self.obs = np.zeros((self.train_envs.num_envs, abstract["obs"].shape[-1]), np.float32)
        restored = self.checkpointer.restore_latest(abstract, self.say, at_most)
        if restored is None:
            obs, _ = self._retry("train", 0, "All train envs are reset again.", self.train_envs.reset)
            self.obs = obs.astype(np.float32)
            return 0, None
        step, arrays, env_blobs, meta = restored
        self.obs = np.asarray(arrays.pop("obs"))[self.tasks]
        for group, vector_env in (("train", self.train_envs), ("eval", self.eval_envs)):
            self._retry(group, step, "Its env is restored from the checkpoint all the same.",
                        lambda: vector_env.call("restore", env_blobs[group]))
        self.warmup_rng.bit_generator.state = meta["warmup_rng"]
        self.episode_stats.load_json(meta["episode_stats"], self.tasks)
        return step, arrays

    def set_earlier_logs_aside(self) -> None:
        """A workdir with logs but no usable checkpoint starts over: its logs move to
        `logs_before_<time>/` instead of being overwritten."""
        earlier = [self.workdir / name for name in ("train.jsonl", "eval.jsonl", "tb") if (self.workdir / name).exists()]
        if not processes.is_main() or not any(path.is_dir() or path.stat().st_size for path in earlier):
            return
        aside = self.workdir / f"logs_before_{time.strftime('%Y%m%d-%H%M%S')}"
        aside.mkdir()
        for path in earlier:
            path.rename(aside / path.name)
        self.say(f"{self.workdir} has logs but no usable checkpoint: starting over from step 0. "
                 f"The earlier logs are kept in {aside}.")

    # ----- env worker faults -----

    def _retry(self, group: str, step: int, consequence: str, request, on_restart=None):
        """`request()`, done again after each worker restart it meets (`envs.WorkersRestarted`),
        which is logged with `consequence` and passed to `on_restart`. A restart met once the
        run is stopping (`fault_error`) stops it at once with `TrainingError`, keeping the
        checkpoints as they are."""
        while True:
            try:
                return request()
            except envs.WorkersRestarted as restarted:
                stopping = self.fault_error is not None
                self.note_faults(restarted.faults, group, step, consequence)
                if on_restart is not None:
                    on_restart(restarted)
                if stopping:
                    raise TrainingError(f"{self.fault_error} {self.kept_checkpoint()}") from restarted

    def note_faults(self, faults: list[envs.WorkerFault], group: str, step: int, consequence: str) -> None:
        """Logs each replaced worker; sets `fault_error` when one was restarted too often."""
        env = self.config.env
        for fault in faults:
            self.say(f"warning: step {step}: the {group} env worker of task {fault.task} {fault.what}; a new worker "
                     f"took its place (restart {fault.restart}, on a random stream of its own). {consequence}")
            count = self.restarts.add((group, fault.index))
            if count > env.max_worker_restarts and self.fault_error is None:
                self.fault_error = (
                    f"The {group} env worker of task {fault.task} was restarted {count} times within "
                    f"env.worker_restart_window_s={env.worker_restart_window_s:g} s, more than "
                    f"env.max_worker_restarts={env.max_worker_restarts} allows; the last time it {fault.what} at "
                    f"step {step}. "
                    "Something keeps killing or stalling it. Fix: check the machine's memory (the out-of-memory "
                    "killer) and load; raise env.worker_timeout_s if the env is slow rather than stuck; or pass "
                    "--config.env.vector_strategy=sync to run the envs in this process and see their own errors."
                )

    def _restarted_between_steps(self, restarted: envs.WorkersRestarted) -> None:
        """Train workers replaced between steps: their tasks act next from their new envs' first observation."""
        obs = np.array(self.obs)
        for index, first_obs in restarted.obs.items():
            obs[index] = first_obs
        self.obs = obs
        self.episode_stats.interrupt(list(restarted.obs))

    def dropped_update(self, what: str) -> None:
        """A non-finite update (`what`: its step, quantities and tasks), already dropped: stops the
        run (`experiment.nan_policy="stop"`, or too many in a row) or counts it."""
        experiment = self.experiment
        fix = ("Fix: lower the learning rates (agent.optimizers.*.lr), raise experiment.init_steps or check the "
               "env's reward scale")
        if experiment.nan_policy == "stop":
            raise TrainingError(
                f"Training stopped at {what}. The update was dropped and nothing of it saved. "
                f"{self.kept_checkpoint()} {fix}; or pass --config.experiment.nan_policy=skip to drop such "
                "updates and go on."
            )
        self.skipped_in_a_row += 1
        self.skipped_updates += 1
        if self.skipped_in_a_row > experiment.max_skipped_updates:
            raise TrainingError(
                f"Training stopped: {self.skipped_in_a_row} updates in a row were not finite, more than "
                f"experiment.max_skipped_updates={experiment.max_skipped_updates}; the last at {what}. "
                f"{self.kept_checkpoint()} {fix}."
            )
        if self.skipped_in_a_row == 1:
            self.say(f"warning: dropped the update at {what} (experiment.nan_policy=skip: the state is as before it).")

    def kept_checkpoint(self) -> str:
        steps = self.checkpointer.steps()
        if not steps:
            return "No checkpoint was written yet: the same command starts this run afresh."
        return (f"The newest checkpoint (step {steps[-1]}) in {self.checkpointer.directory} is kept: rerun the same "
                "command to resume from it.")

    # ----- one step -----

    def warmup_actions(self, action_dim: int) -> np.ndarray:
        """Uniform actions for this process's tasks: its rows of every task's, as one process draws them."""
        return self.warmup_rng.uniform(-1.0, 1.0, (self.num_tasks, action_dim)).astype(np.float32)[self.tasks]

    def step_envs(self, actions: np.ndarray, step: int) -> envs.Step:
        transition = envs.step(self.train_envs, actions, drop_restarted=True)
        self.note_faults(transition.faults, "train", step, DROPPED_IN_STEP)
        self.episode_stats.add(transition)
        self.obs = transition.next_obs
        return transition

    def adopt(self, metrics, fault, step: int) -> None:
        """The update's result for this seed: its metrics, or a dropped update (`numerics.guarded`)."""
        if bool(fault["any"]):
            self.dropped_update(numerics.describe(fault, step, self.names))
        else:
            self.metrics, self.skipped_in_a_row = metrics, 0

    def log_train(self, step: int, perf: dict) -> None:
        record = {"step": step, "env_steps": step * self.num_tasks}
        record.update(self.episode_stats.flush())
        if self.metrics is not None:
            record.update(update_record(self.metrics, self.names))
        record.update(perf)
        if self.experiment.nan_policy == "skip":
            record["train/skipped_updates"], self.skipped_updates = self.skipped_updates, 0
        if self.log is not None:
            self.log.train(record)

    def evaluate(self, step: int, policy: DeterministicPolicy) -> None:
        """Evaluates `policy` on this process's tasks and logs the record of all of them."""
        record = {"step": step, "env_steps": step * self.num_tasks}
        names = self.names[self.tasks]
        share = policy if self.tasks == slice(None) else TaskSharePolicy(policy, self.tasks, self.num_tasks)
        evaluation = self._retry(
            "eval", step, f"The evaluation of step {step} is done again from its start.",
            lambda: self.setup.evaluate(share, self.eval_envs, self.experiment.num_eval_episodes, names),
        )
        if jax.process_count() > 1:
            evaluation = merge_task_records(processes.gather(evaluation))
        record.update(evaluation)
        if self.log is None:
            return
        if self.experiment.save_video and not self.video_failed:
            self._record_video(policy, step)
        self.log.eval(record)

    def _record_video(self, policy, step: int) -> None:
        """One evaluation episode per task as MP4s in `videos/step<N>/` (mtrl's `save_video`), on
        envs of their own, so the run's eval envs and logs are as without video."""
        try:
            paths = video.record_episodes(policy, self.config.env, self.config.seed,
                                          self.workdir / "videos" / f"step{step}")
        except (video.VideoError, envs.EnvWorkerError, OSError) as error:
            self.video_failed = True
            self.say(f"warning: no evaluation videos for the rest of this run: {error}")
            return
        self.say(f"videos: {paths[0].parent} ({len(paths)} files)")


class Trainer:
    """One run of `num_seeds` seeds: their envs, logs and checkpoints (`SeedRun`), and the agent's
    state and replay buffer, resumable from their checkpoints. The seeds of a multi-seed run
    share each jitted update and act call (vmapped over the seed axis) and write a single-seed
    workdir each, `WORKDIR/seed_<seed>/`."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: pathlib.Path):
        self.config, self.workdir = config, workdir
        self.experiment = config.experiment
        self.axis = SeedAxis(config.num_seeds)
        seeds = [config.seed + k for k in range(config.num_seeds)]
        self.runs: list[SeedRun] = []
        try:
            for seed in seeds:
                if self.axis.num_seeds == 1:
                    self.runs.append(SeedRun(config, workdir, None))
                else:
                    seed_workdir = workdir / f"seed_{seed}"
                    prepare_workdir(seed_workdir, seed_config(config, seed))
                    self.runs.append(SeedRun(seed_config(config, seed), seed_workdir, f"seed {seed}"))
            first = self.runs[0]
            self.names, self.num_tasks = first.names, first.num_tasks
            self.obs_dim = first.train_envs.single_observation_space.shape[0]
            self.action_dim = first.train_envs.single_action_space.shape[0]
            self.setup = first.setup
            self.agent = agents.build(
                config.agent,
                agents.EnvSpec(self.num_tasks, self.obs_dim, self.action_dim, tuple(self.names)),
                batch_size_per_task=config.replay_buffer.batch_size // self.num_tasks,
                num_updates_per_call=self.experiment.num_updates_per_step,
            )
            make_buffer = lambda: replay_buffer.init(  # noqa: E731
                self.num_tasks, config.replay_buffer.capacity // self.num_tasks, self.obs_dim, self.action_dim
            )
            self.placement = sharding.plan(config.num_seeds, self.num_tasks,
                                           config.replay_buffer.batch_size // self.num_tasks)
            state, buffer = jax.eval_shape(self.agent.init, first.init_key), jax.eval_shape(make_buffer)
            check_memory(*(jax.tree.map(lambda leaf: jax.ShapeDtypeStruct((len(seeds), *leaf.shape), leaf.dtype), part)
                           for part in (state, buffer)))
            # one seed's checkpoint arrays, restored whole onto the first device or, for one seed, as placed
            on_first = jax.sharding.SingleDeviceSharding(jax.devices()[0])
            placed = ({"train_state": self.placement.state_sharding(state), "buffer": self.placement.buffer_sharding(buffer)}
                      if self.axis.num_seeds == 1 else jax.tree.map(lambda _: on_first, {"train_state": state, "buffer": buffer}))
            self.abstract = jax.tree.map(lambda leaf, where: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=where),
                                         {"train_state": state, "buffer": buffer}, placed)
            self.abstract["obs"] = jax.ShapeDtypeStruct(
                (self.num_tasks, self.obs_dim), np.float32,
                sharding=on_first if jax.process_count() == 1 else self.placement.replicated())
        except BaseException:
            self.close()
            raise
        self._place(self.axis.stack([self.agent.init(run.init_key) for run in self.runs]),
                    self.axis.stack([make_buffer() for _ in self.runs]))
        self.act_keys = self.axis.stack([run.act_key for run in self.runs])
        # the agent's update, dropped (the state given back) when its result is not finite
        guarded_update = self.axis.map(numerics.guarded(self.agent.update))
        if jax.process_count() == 1:
            self.update = jax.jit(guarded_update, donate_argnums=0)
        else:  # every process reads the metrics and the fault whole
            self.act_keys = self.placement.put(self.act_keys, self.placement.replicated())
            self.update = jax.jit(guarded_update, donate_argnums=0, out_shardings=(
                self.placement.state_sharding(self.state), self.placement.replicated(), self.placement.replicated()))
        self.sample_actions = (self.agent.sample_actions if self.axis.num_seeds == 1
                               else jax.jit(jax.vmap(self.agent.sample_actions, in_axes=(0, 0, 0, None))))
        self.insert = (replay_buffer.insert_jit if self.axis.num_seeds == 1
                       else jax.jit(jax.vmap(replay_buffer.insert), donate_argnums=0))

    def _place(self, state, buffer) -> None:
        """Puts the (stacked) train state and replay buffer where `self.placement` says."""
        self.state, self.buffer = self.placement.place(state, buffer)

    def close(self) -> None:
        for run in self.runs:
            run.close()

    @property
    def active(self) -> list[tuple[int, SeedRun]]:
        return [(index, run) for index, run in enumerate(self.runs) if run.stopped is None]

    def each_run(self, work: Callable[[int, SeedRun], None]) -> None:
        """`work(index, run)` for each active seed. In a multi-seed run a seed whose work fails
        (non-finite updates, an env, its workers) is stopped alone; the run fails once none is left."""
        for index, run in self.active:
            try:
                work(index, run)
            except (TrainingError, envs.EnvWorkerError) as error:
                if self.axis.num_seeds == 1:
                    raise
                kept = "" if isinstance(error, TrainingError) else f" {run.kept_checkpoint()}"
                run.stop(f"{run.label} stopped: {error}{kept}")
        if not self.active:
            raise TrainingError("Every seed of this run stopped; what stopped each is said above and in "
                                f"{self.workdir}/seed_<seed>/{STOPPED}.")

    # ----- checkpoints -----

    def save(self, step: int) -> None:
        self.each_run(lambda index, run: run.save(step, {
            "train_state": self.axis.take(self.state, index), "buffer": self.axis.take(self.buffer, index)}))

    def restore(self) -> int:
        """Restores each active seed's newest good checkpoint, the newest step all of them have
        (a seed's newer ones are dropped); returns that step (0 when starting fresh)."""
        if not self.active:
            raise TrainingError("Every seed of this run stopped earlier; what stopped each is in "
                                f"{self.workdir}/seed_<seed>/{STOPPED}. Fix: resume a seed alone with --workdir="
                                f"{self.workdir}/seed_<seed>, or start a new run.")
        for run in self.runs:  # a seed stopped earlier: acted for (vmapped) but never stepped
            if run.stopped is not None:
                run.obs = np.zeros((self.num_tasks, self.obs_dim), np.float32)
        target = None
        while True:
            restored = [run.restore(self.abstract, target) for _, run in self.active]
            steps = {step for step, _ in restored}
            if len(steps) == 1:
                break
            target = min(steps)
        step = steps.pop()
        for _, run in self.active:
            run.checkpointer.discard_after(step)
            if step == 0:
                run.set_earlier_logs_aside()
        if step:
            state, buffer = self.state, self.buffer.replace(batch_sharding=None)
            for (index, _), (_, arrays) in zip(self.active, restored):
                if self.axis.num_seeds == 1:
                    state, buffer = arrays["train_state"], arrays["buffer"]
                else:
                    state, buffer = (jax.tree.map(lambda whole, part: whole.at[index].set(part), whole, part)
                                     for whole, part in ((state, arrays["train_state"]), (buffer, arrays["buffer"])))
            self._place(state, buffer)
        return step

    # ----- the loop -----

    def act(self, step: int) -> np.ndarray:
        if step <= self.experiment.init_steps:
            return self.axis.stack_host([run.warmup_actions(self.action_dim) if run.stopped is None
                                         else np.zeros((self.num_tasks, self.action_dim), np.float32) for run in self.runs])
        policy_params = self.agent.policy_params(self.state)
        obs = self.axis.stack_host([run.obs for run in self.runs])
        if jax.process_count() == 1:
            return np.asarray(self.sample_actions(policy_params, obs, self.act_keys, step))
        obs = processes.to_global(obs, self.placement.rows())
        return processes.local_rows(self.sample_actions(policy_params, obs, self.act_keys, step))

    def evaluate(self, step: int) -> None:
        policy_params = self.agent.policy_params(self.state)
        if jax.process_count() > 1:  # each process evaluates alone, on its own device
            policy_params = processes.local_copy(policy_params)
        self.each_run(lambda index, run: run.evaluate(
            step, DeterministicPolicy(self.agent.eval_actions, self.axis.take(policy_params, index))))

    def run(self) -> None:
        experiment = self.experiment
        if processes.is_main():
            print(self.placement.describe(), flush=True)
        with StopSignals() as stop:
            start_step = self.restore()
            for run in self.runs:
                if run.stopped is not None:
                    print(f"[{run.label}] stopped earlier, stays stopped: {run.stopped}", flush=True)
                elif processes.is_main():
                    run.open_log(start_step, self.setup.headline_metric)
            for _, run in self.active if processes.is_main() else ():
                run.say(
                    f"{'Resuming' if start_step else 'Training'} {self.config.agent.name} on {self.config.env.name} "
                    f"({self.num_tasks} task(s)) at step {start_step} of {experiment.num_train_steps}; "
                    f"workdir {run.workdir}"
                )
                if start_step >= experiment.num_train_steps:
                    run.say("The run is already complete; raise experiment.num_train_steps to train further.")

            def stop_on_resume_fault(index, run):  # workers restarted too often while resuming
                if run.fault_error:
                    raise TrainingError(f"{run.fault_error} {run.kept_checkpoint()}")
            self.each_run(stop_on_resume_fault)
            try:
                self._loop(start_step, stop)
            except envs.EnvWorkerError as error:  # an env raised: the state is not one to save
                raise envs.EnvWorkerError(f"{error} {self.runs[0].kept_checkpoint()}") from error

    def _loop(self, start_step: int, stop: StopSignals) -> None:
        experiment = self.experiment
        interval_start, interval_steps, interval_updates = time.perf_counter(), 0, 0
        run_start = interval_start
        for step in range(start_step + 1, experiment.num_train_steps + 1):
            actions = self.act(step)
            # Learning starts once the warm-up transitions (at least one) are in the buffer.
            updating = step > max(experiment.init_steps, 1)
            if updating:  # dispatched asynchronously; its state is the one given if it was not finite
                self.state, new_metrics, fault = self.update(self.state, self.buffer)
                interval_updates += experiment.num_updates_per_step
            obs_before, transitions = [run.obs for run in self.runs], [None] * len(self.runs)

            def step_envs(index, run):
                transitions[index] = run.step_envs(self.axis.take(actions, index), step)
            self.each_run(step_envs)
            self.buffer = self.insert(self.buffer, *self._insert_args(obs_before, actions, transitions))
            if updating:  # the next step's actions wait for this update anyway
                if self.axis.num_seeds > 1:  # one transfer, then each seed's part on the host
                    new_metrics, fault = jax.device_get((new_metrics, fault))
                self.each_run(lambda index, run: run.adopt(self.axis.take(new_metrics, index),
                                                           self.axis.take(fault, index), step))
            interval_steps += 1
            for _, run in self.active:
                if run.log is not None:
                    run.log.advance()

            last_step = step == experiment.num_train_steps
            if step % experiment.log_freq == 0 or last_step:
                now = time.perf_counter()
                perf = {"perf/env_steps_per_s": interval_steps * self.num_tasks / (now - interval_start),
                        "perf/updates_per_s": interval_updates / (now - interval_start),
                        "perf/elapsed_s": now - run_start}
                for _, run in self.active:
                    run.log_train(step, perf)
                interval_start, interval_steps, interval_updates = now, 0, 0
            pause_start = time.perf_counter()
            if step % experiment.eval_freq == 0 or last_step:
                self.evaluate(step)
            # a stop asked for or forced on any process stops them all, after saving
            halting = processes.any_process(stop.received is not None or any(run.fault_error for _, run in self.active))
            if step % experiment.save_freq == 0 or last_step or halting:
                self.save(step)
            interval_start += time.perf_counter() - pause_start  # eval and saving are not throughput

            def stop_on_fault(index, run):
                if run.fault_error:
                    raise TrainingError(
                        f"{run.fault_error} A checkpoint of step {step} is saved in {run.checkpointer.directory}: "
                        "once fixed, rerun the same command to resume from it."
                    )
            self.each_run(stop_on_fault)
            if stop.received or (halting and jax.process_count() > 1):
                cause = stop.received or "another process of the run (its console says why)"
                for _, run in self.active:
                    run.say(f"Stopped by {cause} at step {step}; checkpoint saved in "
                            f"{run.checkpointer.directory}. Rerun the same command with the same --workdir to resume.")
                return

    def _insert_args(self, obs_before: list[np.ndarray], actions: np.ndarray, transitions: list) -> tuple:
        """The replay buffer's insert arguments, over the seed axis; a stopped seed stores nothing."""
        rows = []
        for obs, transition in zip(obs_before, transitions):
            if transition is None:
                zeros = np.zeros(self.num_tasks, np.float32)
                rows.append((obs, zeros, obs, zeros, np.zeros(self.num_tasks, bool)))
            else:
                rows.append((obs, transition.reward, transition.final_obs, transition.terminated, ~transition.dropped))
        args = [self.axis.stack_host(list(column)) for column in zip(*rows)]
        args.insert(1, actions)
        if jax.process_count() > 1:  # each process's tasks into its devices' shards of the buffer
            args = [processes.to_global(arg, self.placement.rows()) for arg in args]
        return tuple(args)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> None:
    """Trains for `experiment.num_train_steps` vector steps into `workdir`, resuming from
    its newest checkpoint when there is one."""
    validate(config)
    workdir = pathlib.Path(workdir)
    changes = prepare_workdir(workdir, config)
    for change in changes if processes.is_main() else ():
        print(f"Config change on resume (allowed): {change}", flush=True)
    trainer = Trainer(config, workdir)
    try:
        trainer.run()
    finally:
        trainer.close()
