"""Videos of a policy's evaluation episodes: one MP4 per task and episode.

Frames are rendered offscreen by MuJoCo, which needs an OpenGL backend chosen with the
`MUJOCO_GL` environment variable: `egl` (GPU or Mesa EGL) or `osmesa` (software). The backend
is picked when the process renders its first frame, and `record_episodes` sets `MUJOCO_GL=egl`
before it renders if the variable is unset. (It is not set at import: with `MUJOCO_GL` set, `import mujoco`
loads that backend and fails outright where its libraries are missing, even if nothing renders.)

Cameras an env family names as upside down (Meta-World's corner cameras: their image's up axis
points at the floor) have their frames turned 180 degrees to show the robot upright. Videos are encoded
as H.264 with imageio's ffmpeg plugin; width and height must be even.
"""

from __future__ import annotations

import os
import pathlib
import warnings

import imageio
import ml_collections
import numpy as np

from mtsac_jax import envs
from mtsac_jax.config import task_names


class VideoError(RuntimeError):
    """Offscreen rendering failed; the message names the GL backend and the fix."""


def record_episodes(
    policy,
    env_config: ml_collections.ConfigDict,
    seed: int,
    out_dir: str | os.PathLike,
    episodes_per_task: int = 1,
    width: int = 240,
    height: int = 240,
    camera_name: str = "corner",
    fps: int = 30,
) -> list[pathlib.Path]:
    """Records `episodes_per_task` eval episodes of every task as `<task>_ep<k>.mp4` in `out_dir`.

    `policy` follows Meta-World's evaluator protocol: `eval_action(obs)` maps (T, obs_dim)
    observations to (T, action_dim) deterministic actions and `reset(mask)` is told which
    task envs start a new episode. The eval envs are built from `env_config` and `seed`
    exactly as for evaluation (episodes end on success or at `max_episode_steps`); all tasks
    step together until each has recorded its episodes. An episode's video shows the state
    after reset and after each of its steps but the last: with same-step autoreset the last
    step already returns the next episode's first state. Returns the paths in task order,
    then episode order.
    """
    names = task_names(env_config)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MUJOCO_GL", "egl")  # before the env workers start and the first render
    paths = [[out_dir / f"{name}_ep{k}.mp4" for k in range(episodes_per_task)] for name in names]
    vector_env = envs.make_vector_env(
        env_config, seed, evaluation=True, render_mode="rgb_array",
        width=width, height=height, camera_name=camera_name,
    )
    turn = camera_name in envs.family_of(env_config.name).upside_down_cameras
    try:
        obs, _ = vector_env.reset()
        policy.reset(np.ones(len(names), dtype=bool))
        episode = np.zeros(len(names), dtype=int)  # each task's current episode
        frames = [[frame] for frame in _render(vector_env, turn)]  # each task's current episode frames
        while (episode < episodes_per_task).any():
            step = envs.step(vector_env, policy.eval_action(obs))
            obs = step.next_obs
            policy.reset(step.done)
            for index in np.flatnonzero(step.done):
                if episode[index] < episodes_per_task:
                    _write_video(paths[index][episode[index]], frames[index], fps)
                episode[index] += 1
                frames[index] = []
            if (episode < episodes_per_task).any():
                for index, frame in enumerate(_render(vector_env, turn)):
                    if episode[index] < episodes_per_task:
                        frames[index].append(frame)
    finally:
        vector_env.close()
    return [path for task_paths in paths for path in task_paths]


def _render(vector_env, turn: bool) -> list[np.ndarray]:
    """One (height, width, 3) uint8 frame per task env, turned 180 degrees if `turn`.

    Raises a VideoError saying how to fix rendering if it fails.
    """
    try:
        frames = vector_env.call("render")
    except Exception as error:
        raise VideoError(envs.rendering_failed(error)) from error
    return [frame[::-1, ::-1] if turn else frame for frame in frames]


def _write_video(path: pathlib.Path, frames: list[np.ndarray], fps: int) -> None:
    """Encodes frames as an H.264 MP4 at `fps` frames per second."""
    with warnings.catch_warnings():  # JAX warns on any fork; this one only starts ffmpeg
        warnings.filterwarnings("ignore", message="os.fork\\(\\) was called", category=RuntimeWarning)
        imageio.v3.imwrite(path, np.stack(frames), plugin="FFMPEG", fps=fps, codec="libx264", macro_block_size=1)
