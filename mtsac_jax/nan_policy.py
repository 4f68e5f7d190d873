"""What a run does with an update that was not finite (`experiment.nan_policy`).

`numerics.guarded` has already dropped it inside the jitted update (the state is as before
it). `stop` ends the run naming the step, the quantities and the tasks, its last checkpoint
kept; `skip` counts it (`train/skipped_updates`) and goes on, until
`experiment.max_skipped_updates` in a row end the run as `stop` does.
"""

from __future__ import annotations

from typing import Callable

import ml_collections

from mtsac_jax import numerics
from mtsac_jax.errors import TrainingError

FIX = ("Fix: lower the learning rates (agent.optimizers.*.lr), raise experiment.init_steps or check the env's "
       "reward scale")


class NanPolicy:
    """One seed's dropped updates. `say` logs a line; `kept_checkpoint` says which checkpoint a
    stopped run keeps."""

    def __init__(self, experiment: ml_collections.ConfigDict, task_names: tuple[str, ...],
                 say: Callable[[str], None], kept_checkpoint: Callable[[], str]):
        self.experiment, self.task_names = experiment, task_names
        self.say, self.kept_checkpoint = say, kept_checkpoint
        self.skipped, self.skipped_in_a_row = 0, 0  # dropped updates: in this log interval, in a row

    def adopted(self) -> None:
        """A finite update: the count of dropped ones in a row starts again."""
        self.skipped_in_a_row = 0

    def dropped(self, fault, step: int) -> None:
        """A non-finite update at `step` (`fault`: `numerics.guarded`'s, which names the quantities
        and tasks): stops the run or counts it."""
        what = numerics.describe(fault, step, self.task_names)
        experiment = self.experiment
        if experiment.nan_policy == "stop":
            raise TrainingError(
                f"Training stopped at {what}. The update was dropped and nothing of it saved. "
                f"{self.kept_checkpoint()} {FIX}; or pass --config.experiment.nan_policy=skip to drop such "
                "updates and go on."
            )
        self.skipped_in_a_row += 1
        self.skipped += 1
        if self.skipped_in_a_row > experiment.max_skipped_updates:
            raise TrainingError(
                f"Training stopped: {self.skipped_in_a_row} updates in a row were not finite, more than "
                f"experiment.max_skipped_updates={experiment.max_skipped_updates}; the last at {what}. "
                f"{self.kept_checkpoint()} {FIX}."
            )
        if self.skipped_in_a_row == 1:
            self.say(f"warning: dropped the update at {what} (experiment.nan_policy=skip: the state is as before it).")

    def record(self) -> dict:
        """The log record's count of updates dropped since the last one (with `skip`)."""
        if self.experiment.nan_policy != "skip":
            return {}
        record, self.skipped = {"train/skipped_updates": self.skipped}, 0
        return record
