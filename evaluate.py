"""Evaluate a trained run's checkpoint and print its per-task figures (success, or a hipbmdp run's episode
reward on its training and unseen envs); optionally record videos.

    python evaluate.py --workdir=runs/mt10                           # the newest checkpoint
    python evaluate.py --workdir=runs/mt10 --step=200000             # eval.jsonl's figures of step 200000
    python evaluate.py --workdir=runs/mt10 --step=200000 --fresh_envs --episodes=50   # other goals, more episodes
    MUJOCO_GL=egl python evaluate.py --workdir=runs/mt10 --video     # videos in runs/mt10/videos/

At a checkpoint of a step the run evaluated at, the eval envs start as the run's evaluation found
them (same goals, same random streams), so the figures are that step's in eval.jsonl, given as
many episodes. --fresh_envs builds new eval envs instead (the run's seeds from their start, as at
its first evaluation); so do checkpoints of a step without an evaluation and older ones, as the
first output line says.
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags, logging

from mtsac_jax import envs, video
from mtsac_jax.checkpoint import CheckpointError
from mtsac_jax.config import ConfigError
from mtsac_jax.cpu_runtime import tune_cpu_process
from mtsac_jax.policy import PolicyError, RunEvaluation, evaluate_policy, load_config, load_evaluation, load_policy
from mtsac_jax.run_log import format_eval
from mtsac_jax.setups import evaluation_sets

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run folder (holds config.json and checkpoints/).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the newest).")
_EPISODES = flags.DEFINE_integer(
    "episodes", None, "Episodes per task (default: as many as the run's evaluation at that step, else "
    "experiment.num_eval_episodes); another count than the run's gives other figures than eval.jsonl.")
_FRESH_ENVS = flags.DEFINE_bool(
    "fresh_envs", False, "Evaluate on newly built eval envs (the run's seeds from their start: the goals of its first "
    "evaluation) instead of the run's eval envs as its evaluation at that step found them (eval.jsonl's figures).")
_VIDEO = flags.DEFINE_bool("video", False, "Also record one episode per task to WORKDIR/videos/step<N>/.")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected argument(s) {' '.join(argv[1:])}. Flags: --workdir, --step, --episodes, "
                 "--fresh_envs, --video.")
    logging.set_verbosity(logging.WARNING)
    tune_cpu_process()  # the policy computes as in training (its matmuls rounded alike)
    if not _WORKDIR.value:
        sys.exit("error: pass --workdir=<a training run folder>.")
    if _EPISODES.value is not None and _EPISODES.value < 1:
        sys.exit(f"error: --episodes={_EPISODES.value}: evaluate at least one episode per task. "
                 "Fix: --episodes=1 or more, or leave it out for the run's experiment.num_eval_episodes.")
    workdir = pathlib.Path(_WORKDIR.value)
    try:
        config = load_config(workdir)
        if _FRESH_ENVS.value:
            policy, evaluation = load_policy(workdir, _STEP.value), RunEvaluation(None, {}, "--fresh_envs")
        else:
            policy, evaluation = load_evaluation(workdir, _STEP.value)
    except (PolicyError, ConfigError, CheckpointError) as error:
        sys.exit(f"error: {error}")
    episodes = _EPISODES.value or evaluation.episodes or config.experiment.num_eval_episodes
    records = []
    try:
        for mode, task_set in evaluation_sets(config):  # the training tasks, then a hipbmdp run's unseen env sets
            vector_env = envs.make_vector_env(config.env, config.seed, evaluation=True, task_set=task_set)
            records.append({"step": policy.step, **({"mode": mode} if mode else {}),
                            **evaluate_policy(policy if task_set is None else policy.unseen, config, episodes,
                                              vector_env, task_set, evaluation.snapshots.get(task_set))})
    except envs.EnvWorkerError as error:
        sys.exit(f"error: {error}")
    print(f"{workdir}, checkpoint {policy.step}, {episodes} episode(s) per task {_envs_used(evaluation, episodes)}")
    for record in records:
        print(format_eval(record))
    if _VIDEO.value:
        folder = workdir / "videos" / f"step{policy.step}"
        try:
            paths = video.record_episodes(policy, config.env, config.seed, folder)
        except video.VideoError as error:
            sys.exit(f"error: {error}")
        except OSError as error:
            sys.exit(f"error: cannot write the videos to {folder}: {error.strerror or error}. The evaluation above "
                     "stands. Fix: make that folder writable (or remove what blocks it), then rerun with --video.")
        print(f"videos: {paths[0].parent} ({len(paths)} files)")


def _envs_used(evaluation: RunEvaluation, episodes: int) -> str:
    """Which eval envs gave the figures, and whether they are eval.jsonl's."""
    if evaluation.episodes is None:
        return f"on freshly built eval envs ({evaluation.missing}: not the figures of eval.jsonl)"
    envs_used = "on the run's eval envs as its evaluation at this step found them"
    if episodes != evaluation.episodes:
        return (f"{envs_used}, which ran {evaluation.episodes} episode(s) per task: with {episodes} the figures "
                "cannot be those of eval.jsonl")
    return f"{envs_used}: the figures of eval.jsonl"


if __name__ == "__main__":
    app.run(main)
