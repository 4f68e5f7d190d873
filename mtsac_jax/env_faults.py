"""Env worker faults of one seed's envs (docs/reliability.md).

A replaced async worker is logged with what it means for the run; a request it interrupted
(a snapshot, a restore, an evaluation) is done again. More than `env.max_worker_restarts`
restarts of one worker within `env.worker_restart_window_s` set `error`: the run stops once
the current step is complete and saved.
"""

from __future__ import annotations

import collections
import time
from typing import Callable

import ml_collections

from mtsac_jax import envs
from mtsac_jax.errors import TrainingError

# Logged with each replaced train worker, by when it was replaced.
DROPPED_IN_STEP = ("Its unfinished episode is dropped: the transition of this step is not stored and the episode "
                   "is not counted in train/episode_reward or train/success.")
DROPPED_BETWEEN_STEPS = ("Its unfinished episode is dropped (not counted in train/episode_reward or train/success); "
                         "the task goes on with a new episode.")


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


class EnvFaults:
    """The fault handling of one seed's train and eval envs. `say` logs a line; `kept_checkpoint`
    says which checkpoint a stopped run keeps."""

    def __init__(self, env_config: ml_collections.ConfigDict, say: Callable[[str], None],
                 kept_checkpoint: Callable[[], str]):
        self.env_config, self.say, self.kept_checkpoint = env_config, say, kept_checkpoint
        self.restarts = RestartCounter(env_config.worker_restart_window_s)
        self.error: str | None = None  # set when a worker was restarted too often: the run stops

    def retry(self, group: str, step: int, consequence: str, request, on_restart=None):
        """`request()`, done again after each worker restart it meets (`envs.WorkersRestarted`),
        which is logged with `consequence` and passed to `on_restart`. A restart met once the
        run is stopping (`error`) stops it at once with `TrainingError`, keeping the
        checkpoints as they are."""
        while True:
            try:
                return request()
            except envs.WorkersRestarted as restarted:
                stopping = self.error is not None
                self.note(restarted.faults, group, step, consequence)
                if on_restart is not None:
                    on_restart(restarted)
                if stopping:
                    raise TrainingError(f"{self.error} {self.kept_checkpoint()}") from restarted

    def note(self, faults: list[envs.WorkerFault], group: str, step: int, consequence: str) -> None:
        """Logs each replaced worker; sets `error` when one was restarted too often."""
        env = self.env_config
        for fault in faults:
            self.say(f"warning: step {step}: the {group} env worker of task {fault.task} {fault.what}; a new worker "
                     f"took its place (restart {fault.restart}, on a random stream of its own). {consequence}")
            count = self.restarts.add((group, fault.index))
            if count > env.max_worker_restarts and self.error is None:
                self.error = (
                    f"The {group} env worker of task {fault.task} was restarted {count} times within "
                    f"env.worker_restart_window_s={env.worker_restart_window_s:g} s, more than "
                    f"env.max_worker_restarts={env.max_worker_restarts} allows; the last time it {fault.what} at "
                    f"step {step}. "
                    "Something keeps killing or stalling it. Fix: check the machine's memory (the out-of-memory "
                    "killer) and load; raise env.worker_timeout_s if the env is slow rather than stuck; or pass "
                    "--config.env.vector_strategy=sync to run the envs in this process and see their own errors."
                )
