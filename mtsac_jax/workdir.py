"""A run's workdir: its `config.json`, and what may change when the run resumes there.

A multi-seed run writes one complete single-seed workdir per seed, `WORKDIR/seed_<seed>/`,
with the config of that seed alone (`seed_config`).
"""

from __future__ import annotations

import json
import pathlib

import ml_collections

from mtsac_jax import processes
from mtsac_jax.config import flatten, upgrade
from mtsac_jax.errors import TrainingError

# Keys that may change between a run and its resumption: they change neither shapes nor
# what the training computes.
RESUMABLE_CHANGES = frozenset(
    {
        "experiment.num_train_steps",
        "experiment.eval_freq",
        "experiment.num_eval_episodes",
        "experiment.log_freq",
        "experiment.progress_every_s",
        "experiment.save_freq",
        "experiment.keep_checkpoints",
        "experiment.save_video",
        "env.vector_strategy",
        "env.worker_timeout_s",
        "env.max_worker_restarts",
        "env.worker_restart_window_s",
        "experiment.wandb.enabled",
        "experiment.wandb.project",
        "experiment.wandb.entity",
        "experiment.wandb.mode",
    }
)
STOPPED = "stopped.txt"  # in a seed's workdir: why that seed of a multi-seed run stopped


def prepare_workdir(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> list[str]:
    """Creates the workdir and writes `config.json`. A workdir of an earlier run must hold
    the same config up to `RESUMABLE_CHANGES`; returns those changes as readable lines."""
    config_path = workdir / "config.json"
    changes, blocking = config_changes(workdir, config)
    if config_path.exists():
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


def config_changes(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> tuple[list[str], list[str]]:
    """How `config` differs from the run saved in `workdir` (none when it holds no run), as
    readable lines: all of them, and those not in `RESUMABLE_CHANGES` (which a resumption refuses)."""
    config_path = workdir / "config.json"
    if not config_path.exists():
        return [], []
    new = flatten(json.loads(json.dumps(config.to_dict())))  # as config.json holds it (tuples as lists)
    saved = flatten(upgrade(json.loads(config_path.read_text())))
    differing = sorted(key for key in saved.keys() | new.keys() if saved.get(key) != new.get(key))
    changes = [f"{key}: {saved.get(key)!r} -> {new.get(key)!r}" for key in differing]
    return changes, [line for key, line in zip(differing, changes) if key not in RESUMABLE_CHANGES]


def seed_config(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
    """The config of seed `seed` of a multi-seed run: a single-seed run of its own."""
    config = ml_collections.ConfigDict(config.to_dict())
    config.seed, config.num_seeds = seed, 1
    config.lock()
    return config


def seed_workdirs(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> list[tuple]:
    """(config, workdir, label) of each seed: the run itself for one seed, else each seed's
    own workdir (prepared here) under `workdir`, labelled `seed <seed>`."""
    if config.num_seeds == 1:
        return [(config, workdir, None)]
    seeds = []
    for seed in range(config.seed, config.seed + config.num_seeds):
        seed_workdir = workdir / f"seed_{seed}"
        prepare_workdir(seed_workdir, seed_config(config, seed))
        seeds.append((seed_config(config, seed), seed_workdir, f"seed {seed}"))
    return seeds
