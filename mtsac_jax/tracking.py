"""Weights & Biases tracking of a run, `experiment.wandb` (off by default).

    pip install 'mtsac_jax[wandb]'
    python train.py --config=configs/metaworld_mt10.py --config.experiment.wandb.enabled=True

Each training run is one W&B run (each seed of a multi-seed run one, grouped by the run's
folder) holding the run's config; every `train.jsonl` and `eval.jsonl` record is logged at its
`step`, under the names TensorBoard shows, and the evaluation videos of `experiment.save_video`
too. W&B's files go to `WORKDIR/wandb/`, and the W&B run's id is kept in `WORKDIR/wandb_run_id.txt`,
so a resumed run goes on in the same W&B run. With `mode="offline"` nothing leaves the machine
until `wandb sync WORKDIR/wandb/offline-run-*`. Only the process that writes the logs (process 0)
talks to W&B.
"""

from __future__ import annotations

import importlib
import pathlib
import secrets
import string
import sys

import ml_collections

from mtsac_jax.errors import TrainingError

MODES = ("online", "offline", "disabled")  # wandb.init's modes
RUN_ID_FILE = "wandb_run_id.txt"
INSTALL = "pip install 'mtsac_jax[wandb]'"


def import_wandb():
    """The `wandb` module; a TrainingError of one line saying how to install it if it is missing."""
    try:
        return importlib.import_module("wandb")
    except ImportError as error:
        raise TrainingError(f"experiment.wandb.enabled=True needs the wandb package, which cannot be imported "
                            f"({error}). Fix: {INSTALL}, or leave experiment.wandb.enabled False.") from None


class Tracker:
    """The W&B run of one seed's workdir, opened at `start_step` (0: a fresh W&B run; later: the
    W&B run whose id the workdir holds, resumed)."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: pathlib.Path, start_step: int,
                 multi_seed: bool = False):
        wandb = import_wandb()
        settings = config.experiment.wandb
        id_file = workdir / RUN_ID_FILE
        run_id = id_file.read_text().strip() if start_step and id_file.is_file() else ""
        if not run_id:
            run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
            id_file.write_text(run_id + "\n")
        folder = workdir.parent.name if multi_seed else None  # a multi-seed run's folder groups its seeds
        try:
            self._run = wandb.init(
                project=settings.project, entity=settings.entity or None, mode=settings.mode,
                id=run_id, resume="allow", dir=str(workdir), config=config.to_dict(),
                group=folder, name=f"{folder}/{workdir.name}" if folder else workdir.name,
                reinit="create_new",  # the seeds of a multi-seed run are W&B runs side by side
            )
        except wandb.errors.Error as error:
            raise TrainingError(
                f"W&B could not start the run's tracking: {error}. Fix: `wandb login` (or set WANDB_API_KEY), or track "
                "offline with --config.experiment.wandb.mode=offline and upload later with `wandb sync`.") from None
        self._wandb = wandb
        # W&B keeps a run's steps increasing: a resumed run's steps that the W&B run has already
        # logged (after the checkpoint, before the interruption) keep their first values.
        self._first_step = self._run.starting_step

    def log(self, scalars: dict, step: int) -> None:
        if step >= self._first_step:
            self._run.log(scalars, step=step)

    def videos(self, paths: dict[str, pathlib.Path], step: int) -> None:
        """One MP4 per task, `video/<task>`."""
        self.log({f"video/{task}": self._wandb.Video(str(path)) for task, path in paths.items()}, step)

    def close(self) -> None:
        """Finishes the W&B run, as failed when an error is on its way out (a stop signal is no error)."""
        self._run.finish(exit_code=0 if sys.exc_info()[1] is None else 1)
