"""Setups: the `SETUPS` registry. A setup is what a work cares about (mtrl's `setup=`).

It says which env families a run may use, how a policy is evaluated and which number of the
evaluation record is the headline: `metaworld` evaluates on the training tasks with
Meta-World's own evaluator and reports success; `hipbmdp` evaluates on the training env ids
of a DMControl distribution and on its two unseen sets, and reports episode reward. Plots and
reports read the headline metric of a run's setup instead of assuming `success`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Callable

import ml_collections
import numpy as np

from mtsac_jax.registry import SETUPS, import_extensions


@dataclasses.dataclass(frozen=True)
class Setup:
    """A registered setup.

    env_families: the env families (`mtsac_jax.envs.ENV_FAMILIES` names) it accepts.
    headline_metric: the key of an evaluation record (and of each task's entry) that reports
        and plots show, e.g. "success" or "episode_reward".
    evaluate: `(policy, eval_envs, num_episodes, task_names) -> record`: the mean over tasks of
        every metric, and `tasks: {name: {metric: value}}`. `policy` follows Meta-World's
        evaluator protocol (`eval_action(obs)`, `reset(mask)`); `eval_envs` are the run's eval
        envs, one sub-env per task.
    default_config: the keys of the `setup` section besides `name`, with their defaults.
    evaluates_unseen: whether evaluation covers the env family's unseen task sets too
        (`EnvFamily.unseen_task_sets`): each evaluation then writes one record per set,
        `"mode": "eval_<set>"`, after the training tasks' `"mode": "eval_base"`.
    config_defaults: `{dotted key: value}` the setup sets in a composed config where the key
        exists (mtrl's per-setup components: optimizers, network sizes, the run's length).
    """

    env_families: tuple[str, ...]
    headline_metric: str
    evaluate: Callable[..., dict]
    default_config: Callable[[], dict] = dict
    evaluates_unseen: bool = False
    config_defaults: dict = dataclasses.field(default_factory=dict)


BASE_MODE = "eval_base"  # the `mode` of the training tasks' evaluation record when a setup has several


def record_mode(record: dict) -> str:
    """The evaluation set of an `eval.jsonl` record: its `mode`, the training tasks' without one."""
    return record.get("mode", BASE_MODE)


def evaluation_sets(config: ml_collections.ConfigDict) -> list[tuple[str | None, str | None]]:
    """(record mode, unseen task set) of each evaluation of a run: its training tasks (mode
    None, or `eval_base` beside unseen sets), then each of the env family's unseen task sets
    when the run's setup evaluates on them."""
    from mtsac_jax import envs  # the env families import nothing of the setups

    unseen = list(envs.unseen_task_sets(config.env)) if SETUPS.get(config.setup.name).evaluates_unseen else []
    return [(BASE_MODE if unseen else None, None), *((f"eval_{name}", name) for name in unseen)]


def merge_task_records(records: list[dict]) -> dict:
    """One evaluation record from those of disjoint task sets (the processes of a run), in
    their order: every metric's mean over all the tasks, and all the tasks' figures."""
    tasks = {name: figures for record in records for name, figures in record["tasks"].items()}
    metrics = next(iter(tasks.values())).keys()
    return {**{metric: float(np.mean([figures[metric] for figures in tasks.values()])) for metric in metrics},
            "tasks": tasks}


def setup_config(name: str) -> ml_collections.ConfigDict:
    """The `setup` section of a registered setup, at its defaults."""
    return ml_collections.ConfigDict({"name": name, **SETUPS.get(name).default_config()})


def headline_metric(workdir: str | pathlib.Path, default: str = "success") -> str:
    """The headline metric of the run in `workdir` (its config.json's setup, registered by the
    run's extensions if it is a user's own), or `default` for a folder without one (a peer's run)."""
    path = pathlib.Path(workdir) / "config.json"
    try:
        saved = json.loads(path.read_text())
        name = saved["setup"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return default
    if name not in SETUPS:
        import_extensions(saved.get("extensions", []))
    return SETUPS.get(name).headline_metric
