import os
import signal

import numpy as np
import pytest

from mtsac_jax import envs
from mtsac_jax.config import task_names
from tests.conftest import tiny_config

MT10_ORDER = [
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3",
    "drawer-close-v3", "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3",
]
MT10_CLASSES = [
    "SawyerReachEnvV3", "SawyerPushEnvV3", "SawyerPickPlaceEnvV3", "SawyerDoorEnvV3", "SawyerDrawerOpenEnvV3",
    "SawyerDrawerCloseEnvV3", "SawyerButtonPressTopdownEnvV3", "SawyerPegInsertionSideEnvV3",
    "SawyerWindowOpenEnvV3", "SawyerWindowCloseEnvV3",
]


def test_mt10_yields_ten_tasks_in_documented_order(mt10_config, mt10_envs):
    assert list(task_names(mt10_config.env)) == MT10_ORDER
    assert mt10_envs.num_envs == 10
    assert list(mt10_envs.get_attr("task_name")) == MT10_CLASSES
    obs, _ = mt10_envs.reset()
    assert obs.shape == (10, 39 + 10)
    np.testing.assert_array_equal(obs[:, 39:], np.eye(10))  # one-hot task id in task order


def test_truncation_is_stored_as_not_terminal_with_the_true_final_obs(mt1_envs):
    mt1_envs.reset()
    actions = np.zeros((1, 4), np.float32)
    steps = [envs.step(mt1_envs, actions) for _ in range(5)]  # max_episode_steps=5 in the fixture
    assert [bool(s.done[0]) for s in steps] == [False] * 4 + [True]
    assert all(s.terminated[0] == 0.0 for s in steps), "truncation must bootstrap: terminated stays 0"
    last = steps[-1]
    # SAME_STEP autoreset: next_obs is already the new episode's; the transition keeps the true s'.
    assert not np.allclose(last.final_obs, last.next_obs)
    hand_before = steps[-2].final_obs[0, :3]
    np.testing.assert_allclose(last.final_obs[0, :3], hand_before, atol=0.05)  # still near the last pose
    assert last.final_obs.dtype == np.float32 and last.final_obs.shape == (1, 39)


def test_mt1_has_no_one_hot_and_fixed_goal_keeps_the_goal():
    config = tiny_config()
    config.env.fixed_goal = True
    config.env.max_episode_steps = 2
    vector_env = envs.make_vector_env(config.env, seed=3)
    eval_env = envs.make_vector_env(config.env, seed=3, evaluation=True)
    try:
        goals = []
        obs, _ = vector_env.reset()
        goals.append(obs[0, -3:].copy())
        for _ in range(6):  # three episodes
            step = envs.step(vector_env, np.zeros((1, 4), np.float32))
            if step.done[0]:
                goals.append(step.next_obs[0, -3:].copy())
        eval_obs, _ = eval_env.reset()
        assert obs.shape == (1, 39)
        assert len(goals) == 4 and all(np.allclose(goal, goals[0]) for goal in goals)
        np.testing.assert_allclose(eval_obs[0, -3:], goals[0])  # eval sees the same fixed goal
    finally:
        vector_env.close()
        eval_env.close()


def test_random_goal_changes_between_episodes():
    config = tiny_config()
    config.env.max_episode_steps = 1
    vector_env = envs.make_vector_env(config.env, seed=3)
    try:
        obs, _ = vector_env.reset()
        goals = {tuple(np.round(obs[0, -3:], 5))}
        for _ in range(5):
            goals.add(tuple(np.round(envs.step(vector_env, np.zeros((1, 4), np.float32)).next_obs[0, -3:], 5)))
        assert len(goals) > 1
    finally:
        vector_env.close()


def test_a_killed_async_worker_is_replaced_and_named():
    config = tiny_config()
    config.env.vector_strategy = "async"  # a worker process whatever the core count
    vector_env = envs.make_vector_env(config.env, seed=0)
    try:
        vector_env.reset()
        envs.step(vector_env, np.zeros((1, 4), np.float32))
        os.kill(vector_env._workers[0].process.pid, signal.SIGKILL)
        with pytest.raises(envs.WorkersRestarted, match=r"task reach-v3: died \(killed by SIGKILL\)") as raised:
            envs.step(vector_env, np.zeros((1, 4), np.float32))
        (fault,) = raised.value.faults
        assert (fault.index, fault.task, fault.restart) == (0, "reach-v3", 1)
        step = envs.step(vector_env, np.zeros((1, 4), np.float32))  # the new worker steps on
        assert not step.dropped.any() and step.next_obs.shape == (1, 39)
    finally:
        vector_env.close()


def test_auto_strategy_follows_the_core_count(monkeypatch):
    monkeypatch.setattr(envs.os, "cpu_count", lambda: 2)
    assert envs.resolve_strategy("auto") == "sync"
    monkeypatch.setattr(envs.os, "cpu_count", lambda: 16)
    assert envs.resolve_strategy("auto") == "async"
    assert envs.resolve_strategy("sync") == "sync" and envs.resolve_strategy("async") == "async"


def test_the_protocol_is_named_from_the_env_section():
    from mtsac_jax.config import compose
    from mtsac_jax.envs import metaworld
    from mtsac_jax.registry import ConfigError

    own = compose("metaworld", "state_sac", "metaworld-mt10").env
    assert metaworld.describe(own) == ("Meta-World's own (500-step episodes, a new goal (of the task's 50) at every "
                                       "reset, a one-hot task id in the observation)")
    mtrl = compose("metaworld", "state_sac", "metaworld-mt10", protocol="mtrl").env
    assert metaworld.describe(mtrl) == "mtrl's (150-step episodes, one fixed goal per task, no one-hot task id)"
    assert metaworld.describe(compose("metaworld", "state_sac", "metaworld-mt1").env).startswith("Meta-World's own")
    with pytest.raises(ConfigError, match="protocol=mt50: env metaworld-mt10 knows mtrl"):
        compose("metaworld", "state_sac", "metaworld-mt10", protocol="mt50")


def test_metaworlds_goals_come_from_the_cache_as_sampled_and_a_damaged_cache_is_sampled_again(monkeypatch, tmp_path):
    import metaworld

    from mtsac_jax.envs import metaworld as family

    monkeypatch.setattr(family, "GOALS_CACHE", tmp_path)
    family.task_goals.cache_clear()
    sampled = family.task_goals("reach-v3", 11)
    assert sampled == tuple(metaworld.MT1("reach-v3", seed=11).train_tasks)
    (cached,) = tmp_path.rglob("reach-v3-11.pkl")
    family.task_goals.cache_clear()
    monkeypatch.setattr(metaworld, "MT1", None)  # a read from the cache samples nothing
    assert family.task_goals("reach-v3", 11) == sampled
    monkeypatch.undo()
    monkeypatch.setattr(family, "GOALS_CACHE", tmp_path)
    for damage in (cached.read_bytes()[:100], b"not a pickle"):
        cached.write_bytes(damage)
        family.task_goals.cache_clear()
        assert family.task_goals("reach-v3", 11) == sampled
        assert cached.read_bytes() != damage  # written whole again
    family.task_goals.cache_clear()
