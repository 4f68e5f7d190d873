"""The DMControl env family and the hipbmdp setup: distributions built from the suite's own
models, env ids that change the dynamics (or, for mtenv's finger "size", do not), unseen
evaluation sets, exact snapshots, and state_sac trained, evaluated and resumed on them."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mtsac_jax import envs, plot
from mtsac_jax.config import ConfigError, compose, validate
from mtsac_jax.env_state import SnapshotWrapper
from mtsac_jax.envs import dmcontrol
from mtsac_jax.run_log import format_eval
from tests.conftest import REPO, assert_killed_run_resumes_exactly

CHEETAH, FINGER_SIZE = "dmcontrol-cheetah-run-distribution-v0", "dmcontrol-finger-spin-distribution-v0"
WALKER_FRICTION, WALKER_FOOT = "dmcontrol-walker-walk-friction-distribution-v0", "dmcontrol-walker-walk-foot-distribution-v0"
SPINNER = "dmcontrol-finger-spin-spinner-distribution-v0"


def rollout(env, steps, seed=0):
    """Observations, rewards and physics positions under fixed random actions."""
    obs, _ = env.reset()
    rng = np.random.default_rng(seed)
    observations, rewards, positions = [obs], [], []
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        observations.append(obs)
        rewards.append(reward)
        positions.append(env.unwrapped.physics.data.qpos.copy())
    return np.array(observations), np.array(rewards), np.array(positions)


@pytest.mark.parametrize("name, domain, task, env_id", [
    (CHEETAH, "cheetah", "run", 1), (WALKER_FRICTION, "walker", "walk", 1), (SPINNER, "finger", "spin", 6)])
def test_the_id_holding_the_suites_own_value_is_the_suites_task(name, domain, task, env_id):
    """Physics, task and control timestep are the suite's: the same observations and rewards
    as `suite.load` step for step (action repeat 1)."""
    from dm_control import suite

    ours = dmcontrol.DMControlEnv(name, env_id, seed=5, action_repeat=1, episode_length=1000)
    reference = suite.load(domain, task, task_kwargs={"random": 5})
    obs, _ = ours.reset()
    np.testing.assert_array_equal(obs, dmcontrol.DMControlEnv._flat(reference.reset().observation))
    rng = np.random.default_rng(0)
    for _ in range(40):
        action = rng.uniform(-1, 1, ours.action_space.shape)
        obs, reward, *_ = ours.step(action)
        time_step = reference.step(action)
        np.testing.assert_array_equal(obs, dmcontrol.DMControlEnv._flat(time_step.observation))
        assert reward == time_step.reward


@pytest.mark.parametrize("name", [CHEETAH, WALKER_FRICTION, WALKER_FOOT, SPINNER])
def test_other_env_ids_have_other_dynamics(name):
    first = rollout(dmcontrol.DMControlEnv(name, 2, 7, 2, 1000), 60)
    second = rollout(dmcontrol.DMControlEnv(name, 9, 7, 2, 1000), 60)
    assert not np.array_equal(first[2], second[2])
    assert not np.array_equal(first[0], second[0])


def test_mtenvs_finger_size_ids_share_their_dynamics():
    """mtenv's finger "size" edits only the invisible touch-sensor site: positions, rewards and
    rendered frames are those of every other id; the touch readings alone may differ."""
    first = rollout(dmcontrol.DMControlEnv(FINGER_SIZE, 1, 7, 2, 1000), 150)
    second = rollout(dmcontrol.DMControlEnv(FINGER_SIZE, 10, 7, 2, 1000), 150)
    np.testing.assert_array_equal(first[2], second[2])
    np.testing.assert_array_equal(first[1], second[1])
    touch = [7, 8]  # position (4), velocity (3), touch (2) in the suite's order
    np.testing.assert_array_equal(np.delete(first[0], touch, axis=1), np.delete(second[0], touch, axis=1))
    xml, _ = dmcontrol.physics_xml(FINGER_SIZE, 10)
    assert 'size="0.25 .03 .025"' in xml and 'group="3"' in xml


def test_the_varied_quantity_takes_each_ids_value():
    env = dmcontrol.DMControlEnv(CHEETAH, 7, 0, 2, 1000)
    torso = env.physics.named.model.geom_size["torso"]
    assert torso[1] == pytest.approx(1.1)  # a capsule's half-length
    env = dmcontrol.DMControlEnv(WALKER_FRICTION, 4, 0, 2, 1000)
    assert env.physics.named.model.geom_friction["right_thigh"][0] == pytest.approx(1.0)
    env = dmcontrol.DMControlEnv(WALKER_FOOT, 3, 0, 2, 1000)
    assert env.physics.named.model.geom_size["left_foot"][1] == pytest.approx(0.10)
    assert env.physics.named.model.geom_size["right_foot"][1] == pytest.approx(0.1)


def config(name=CHEETAH, **env):
    config = compose("hipbmdp", "state_sac", name, smoke=True)
    config.unlock()
    config.env.update(env)
    return config


def test_the_evaluation_sets_use_their_env_ids():
    env_config = config(train_ids=(1, 2), interpolation_ids=(4, 5, 6), extrapolation_ids=(10,)).env
    assert envs.task_names(env_config) == ("torso_length_1", "torso_length_2")
    sets = envs.unseen_task_sets(env_config)
    assert sets == {"interpolation": ("torso_length_4", "torso_length_5", "torso_length_6"),
                    "extrapolation": ("torso_length_10",)}
    vector_env = envs.make_vector_env(env_config, seed=1, task_set="interpolation")
    try:
        lengths = [env.unwrapped.physics.named.model.geom_size["torso"][1] for env in vector_env.envs]
        assert lengths == pytest.approx([0.8, 0.9, 1.0])
    finally:
        vector_env.close()


@pytest.mark.parametrize("env, message", [
    ({"train_ids": (3, 4), "interpolation_ids": (4, 5)}, "share the env id"),
    ({"extrapolation_ids": (0, 11)}, "distinct integers from 1 to 10"),
    ({"train_ids": (3, 3)}, "distinct integers"),
    ({"train_ids": ()}, "is empty"),
    ({"episode_length": 999}, "not a multiple of env.action_repeat"),
])
def test_bad_env_ids_are_refused_clearly(env, message):
    bad = config(**env)
    bad.agent.multitask.num_envs = max(1, len(bad.env.train_ids))
    with pytest.raises(ConfigError, match=message):
        validate(bad)


def test_a_snapshot_restores_physics_task_randomness_and_the_episode_exactly():
    env = SnapshotWrapper(dmcontrol.DMControlEnv(WALKER_FOOT, 4, 3, 2, 1000), 0)
    other = SnapshotWrapper(dmcontrol.DMControlEnv(WALKER_FOOT, 4, 99, 2, 1000), 0)
    rollout(env, 30)
    other.reset()
    other.restore([env.snapshot()])
    rng = np.random.default_rng(1)
    for _ in range(500):  # on past the episode's end: the next initial state is the task's draw
        action = rng.uniform(-1, 1, env.action_space.shape)
        expected, got = env.step(action), other.step(action)
        np.testing.assert_array_equal(expected[0], got[0])
        assert expected[1:4] == got[1:4]
        if expected[3]:
            np.testing.assert_array_equal(env.reset()[0], other.reset()[0])


def test_a_policy_with_a_part_per_training_env_is_refused_on_unseen_envs(tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "--config=configs/hipbmdp.py:cheetah-run,smoke", f"--workdir={tmp_path / 'run'}",
         "--config.agent.multitask.should_use_multi_head_policy=True"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "cannot act in an unseen env" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.e2e
def test_state_sac_trains_evaluates_every_set_and_resumes_exactly_after_sigkill(tmp_path):
    """Checkpoint 50 lies mid-episode (70-step episodes): the envs, the task randomness and the
    unseen sets' eval envs continue as in the run that was never killed."""
    assert_killed_run_resumes_exactly(tmp_path, "configs/hipbmdp.py:walker-walk-friction,smoke",
                                      overrides=["--config.env.episode_length=140"])
    records = [json.loads(line) for line in (tmp_path / "whole" / "eval.jsonl").read_text().splitlines()]
    assert [record["mode"] for record in records] == ["eval_base", "eval_interpolation", "eval_extrapolation"]
    assert list(records[1]["tasks"]) == ["friction_5", "friction_6"]
    assert list(records[2]["tasks"]) == ["friction_2", "friction_9"]
    assert all("success" not in record for record in records)
    for index, mode in ((0, "eval_base"), (2, "eval_extrapolation")):  # the curves of one env set
        assert plot.load_run(tmp_path / "whole", "episode_reward", mode=mode)[0] == list(records[index]["tasks"])
        assert plot.plot_runs([tmp_path / "whole"], tmp_path / f"{mode}.png", mode=mode).stat().st_size > 0
    evaluated = subprocess.run([sys.executable, "evaluate.py", f"--workdir={tmp_path / 'whole'}", "--episodes=1"],
                               cwd=REPO, capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    for record in records:  # the run's own evaluation of its newest checkpoint, every env set
        assert format_eval(record) in evaluated.stdout


@pytest.mark.e2e
def test_mtrls_hipbmdp_command_line_runs_as_typed(tmp_path):
    result = subprocess.run(
        [sys.executable, "main.py", "setup=hipbmdp", "agent=state_sac", "env=dmcontrol-finger-spin-distribution-v0",
         "env.train=[1,3]", "env.eval.interpolation=[2]", "env.eval.extrapolation=[10]", "smoke",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["env"]["train_ids"] == [1, 3] and saved["agent"]["multitask"]["num_envs"] == 2
    assert "eval step 240 (extrapolation envs)" in result.stdout and "size_10" in result.stdout
