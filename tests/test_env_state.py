import metaworld
import numpy as np
import pytest

from mtsac_jax import env_state


def rollout(env, actions):
    out = []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs.copy(), reward, info["success"]))
        if terminated or truncated:
            out.append((env.reset()[0].copy(), 0.0, 0.0))
    return out


@pytest.mark.parametrize("task", ["reach-v3", "pick-place-v3", "soccer-v3"])
def test_restored_env_continues_bit_exactly(task):
    """Snapshot mid-episode, restore into an env built with another seed: the next steps,
    the episode end and the following episodes (new goals) are identical."""
    env = metaworld.make_mt_envs(task, seed=1, env_id=0, num_tasks=1, max_episode_steps=40)
    other = metaworld.make_mt_envs(task, seed=99, env_id=0, num_tasks=1, max_episode_steps=40)
    rng = np.random.default_rng(0)
    env.reset()
    other.reset()
    for _ in range(17):
        env.step(rng.uniform(-1, 1, 4))
    blob = env_state.snapshot(env)
    env_state.restore(other, blob)
    actions = rng.uniform(-1, 1, (100, 4))
    expected, got = rollout(env, actions), rollout(other, actions)
    assert len(expected) == len(got) > 100  # two episode ends included
    for (obs_a, reward_a, success_a), (obs_b, reward_b, success_b) in zip(expected, got):
        np.testing.assert_array_equal(obs_a, obs_b)
        assert reward_a == reward_b and success_a == success_b
