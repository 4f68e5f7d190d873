import imageio
import numpy as np
import pytest

from mtsac_jax import video
from tests.conftest import tiny_config

STEPS = 10


class ZeroPolicy:
    """Holds still; records the reset masks it is given."""

    def __init__(self):
        self.resets = []

    def eval_action(self, obs):
        return np.zeros((len(obs), 4))

    def reset(self, mask):
        self.resets.append(np.asarray(mask, dtype=bool).copy())


@pytest.fixture
def env_config():
    config = tiny_config()
    config.env.max_episode_steps = STEPS
    return config.env


def read_frames(path):
    with imageio.get_reader(path, "ffmpeg") as reader:
        return np.stack([frame for frame in reader])  # list(reader) would trust its infinite len()


def test_one_episode_is_written_as_a_readable_mp4(env_config, tmp_path):
    policy = ZeroPolicy()
    paths = video.record_episodes(policy, env_config, seed=0, out_dir=tmp_path / "videos", width=64, height=48)
    assert paths == [tmp_path / "videos" / "reach-v3_ep0.mp4"]
    assert paths[0].stat().st_size > 1000
    frames = read_frames(paths[0])
    # The reset state and the state after each step but the last, which already shows the next episode.
    assert frames.shape == (STEPS, 48, 64, 3)
    assert frames.std() > 5, "frames should show the scene, not a blank image"
    assert policy.resets[0].all() and sum(mask.sum() for mask in policy.resets[1:]) == 1


def test_each_episode_gets_its_own_video(env_config, tmp_path):
    paths = video.record_episodes(ZeroPolicy(), env_config, seed=0, out_dir=tmp_path, episodes_per_task=2,
                                  width=32, height=32)
    assert [path.name for path in paths] == ["reach-v3_ep0.mp4", "reach-v3_ep1.mp4"]
    for path in paths:
        assert read_frames(path).shape == (STEPS, 32, 32, 3)


def test_a_rendering_failure_names_the_fix():
    class BrokenEnv:
        def call(self, name):
            raise AttributeError("'NoneType' object has no attribute 'glGetError'")

    with pytest.raises(video.VideoError, match="MUJOCO_GL=egl.*osmesa"):
        video._render(BrokenEnv(), turn=True)


@pytest.mark.e2e
def test_save_video_records_every_evaluation_during_training_and_changes_no_log(smoke_run, tmp_path):
    from tests.conftest import read_jsonl, train

    reference, _ = smoke_run
    workdir = tmp_path / "with_video"
    result = train(workdir, "--config.experiment.save_video=True", "--config.experiment.num_train_steps=120")
    assert f"videos: {workdir / 'videos' / 'step120'} (1 files)" in result.stdout
    clip = imageio.v3.imread(workdir / "videos" / "step120" / "reach-v3_ep0.mp4")
    assert clip.shape[0] > 1 and clip.shape[-1] == 3
    for name in ("train.jsonl", "eval.jsonl"):
        assert read_jsonl(workdir / name) == [r for r in read_jsonl(reference / name) if r["step"] <= 120], name
