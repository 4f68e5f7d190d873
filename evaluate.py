"""Evaluate a trained run's checkpoint and print per-task success; optionally record videos.

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
from mtsac_jax.config import ConfigError, task_names
from mtsac_jax.policy import PolicyError, load_config, load_policy
from mtsac_jax.setups import SETUPS
from mtsac_jax.run_log import format_eval

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run folder (holds config.json and checkpoints/).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the newest).")
_EPISODES = flags.DEFINE_integer("episodes", None, "Episodes per task (default: experiment.num_eval_episodes).")
_VIDEO = flags.DEFINE_bool("video", False, "Also record one episode per task to WORKDIR/videos/step<N>/.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if not _WORKDIR.value:
        sys.exit("error: pass --workdir=<a training run folder>.")
    workdir = pathlib.Path(_WORKDIR.value)
    try:
        config = load_config(workdir)
        policy = load_policy(workdir, _STEP.value)
    except (PolicyError, ConfigError, CheckpointError) as error:
        sys.exit(f"error: {error}")
    episodes = _EPISODES.value or config.experiment.num_eval_episodes
    if episodes < 1:
        sys.exit("error: --episodes must be positive.")
    eval_envs = envs.make_vector_env(config.env, config.seed, evaluation=True)
    try:
        record = {"step": policy.step}
        setup = SETUPS.get(config.setup.name)
        record.update(setup.evaluate(policy, eval_envs, episodes, task_names(config.env)))
    finally:
        eval_envs.close()
    print(f"{workdir}, checkpoint {policy.step}, {episodes} episode(s) per task")
    print(format_eval(record))
    if _VIDEO.value:
        try:
            paths = video.record_episodes(policy, config.env, config.seed, workdir / "videos" / f"step{policy.step}")
        except video.VideoError as error:
            sys.exit(f"error: {error}")
        print(f"videos: {paths[0].parent} ({len(paths)} files)")


if __name__ == "__main__":
    app.run(main)
