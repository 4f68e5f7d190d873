"""Reward and success of the training episodes, per task, between log records."""

from __future__ import annotations

import numpy as np

from mtsac_jax import envs, processes


class EpisodeStats:
    """Reward and success (at any step) of the training episodes that end between logs;
    `reports_success`: whether the env has a success flag (DMControl has none)."""

    def __init__(self, num_tasks: int, reports_success: bool = True):
        self.reports_success = reports_success
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
        record = {"train/episode_reward": float(np.mean(rewards))}
        if self.reports_success:
            record["train/success"] = float(np.mean(successes))
        return record

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
