"""Evaluate a trained run's checkpoint and print its per-task figures (success, or a hipbmdp run's episode
reward on its training and unseen envs); optionally record videos.

    python evaluate.py --workdir=runs/mt10
    python evaluate.py --workdir=runs/mt10 --episodes=50 --step=200000
    MUJOCO_GL=egl python evaluate.py --workdir=runs/mt10 --video     # videos in runs/mt10/videos/
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags, logging

from mtsac_jax import envs, video
from mtsac_jax.checkpoint import CheckpointError
from mtsac_jax.config import ConfigError
from mtsac_jax.policy import PolicyError, evaluate_policy, load_config, load_policy
from mtsac_jax.run_log import format_eval
from mtsac_jax.setups import evaluation_sets

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run folder (holds config.json and checkpoints/).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the newest).")
_EPISODES = flags.DEFINE_integer("episodes", None, "Episodes per task (default: experiment.num_eval_episodes).")
_VIDEO = flags.DEFINE_bool("video", False, "Also record one episode per task to WORKDIR/videos/step<N>/.")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected argument(s) {' '.join(argv[1:])}. Flags: --workdir, --step, --episodes, --video.")
    logging.set_verbosity(logging.WARNING)
    if not _WORKDIR.value:
        sys.exit("error: pass --workdir=<a training run folder>.")
    if _EPISODES.value is not None and _EPISODES.value < 1:
        sys.exit(f"error: --episodes={_EPISODES.value}: evaluate at least one episode per task. "
                 "Fix: --episodes=1 or more, or leave it out for the run's experiment.num_eval_episodes.")
    workdir = pathlib.Path(_WORKDIR.value)
    try:
        config = load_config(workdir)
        policy = load_policy(workdir, _STEP.value)
    except (PolicyError, ConfigError, CheckpointError) as error:
        sys.exit(f"error: {error}")
    episodes = _EPISODES.value or config.experiment.num_eval_episodes
    records = []
    try:
        for mode, task_set in evaluation_sets(config):  # the training tasks, then a hipbmdp run's unseen env sets
            vector_env = envs.make_vector_env(config.env, config.seed, evaluation=True, task_set=task_set)
            records.append({"step": policy.step, **({"mode": mode} if mode else {}),
                            **evaluate_policy(policy if task_set is None else policy.unseen, config, episodes,
                                              vector_env, task_set)})
    except envs.EnvWorkerError as error:
        sys.exit(f"error: {error}")
    print(f"{workdir}, checkpoint {policy.step}, {episodes} episode(s) per task")
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


if __name__ == "__main__":
    app.run(main)
