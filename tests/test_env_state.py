import gymnasium as gym
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


class PhysicsEnv(gym.Env):
    """A gymnasium env whose state is a dm_control `Physics` (as dm_control suite tasks keep
    theirs): a two-link arm with a free-floating ball, random initial joint angles and random
    torque noise from the env's own generator."""

    XML = """
    <mujoco>
      <worldbody>
        <body name="upper"><joint name="shoulder" type="hinge" damping="0.1"/>
          <geom type="capsule" fromto="0 0 0 0 0 -0.5" size="0.04"/>
          <body name="lower" pos="0 0 -0.5"><joint name="elbow" type="hinge" damping="0.1"/>
            <geom type="capsule" fromto="0 0 0 0 0 -0.5" size="0.04"/></body></body>
        <body name="ball" pos="0.3 0 0.2"><freejoint/><geom type="sphere" size="0.05"/></body>
      </worldbody>
      <actuator><motor joint="shoulder"/><motor joint="elbow"/></actuator>
    </mujoco>"""

    def __init__(self, seed):
        from dm_control import mujoco as dm_mujoco

        self.physics = dm_mujoco.Physics.from_xml_string(self.XML)
        self.random = np.random.default_rng(seed)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.physics.model.nq + self.physics.model.nv,))
        self.steps = 0

    def _obs(self):
        return np.concatenate([self.physics.data.qpos, self.physics.data.qvel])

    def reset(self, *, seed=None, options=None):
        with self.physics.reset_context():
            self.physics.named.data.qpos[["shoulder", "elbow"]] = self.random.uniform(-1, 1, 2)
        self.steps = 0
        return self._obs(), {}

    def step(self, action):
        self.physics.set_control(np.asarray(action) + 0.1 * self.random.normal(size=2))
        self.physics.step(nstep=4)
        self.steps += 1
        return self._obs(), float(-self.physics.named.data.qpos["shoulder"][0] ** 2), False, self.steps >= 30, {}


def test_an_env_whose_state_is_a_dm_control_physics_is_restored_bit_exactly():
    """Snapshot mid-episode, restore into an env with another seed: positions, velocities,
    the ball's free flight, the noise generator and the episode counter all continue as the
    original. The live Physics is restored in place, so what else holds it (a renderer, a
    camera) sees the restored state."""
    env, other = PhysicsEnv(seed=1), PhysicsEnv(seed=2)
    env.reset()
    other.reset()
    rng = np.random.default_rng(0)
    for _ in range(11):
        env.step(rng.uniform(-1, 1, 2))
    actions = rng.uniform(-1, 1, (45, 2))
    blob = env_state.snapshot(env)
    assert not np.array_equal(env._obs(), other._obs())
    held = other.physics  # as a renderer holds it
    env_state.restore(other, blob)
    assert other.physics is held
    np.testing.assert_array_equal(held.data.qpos, env.physics.data.qpos)

    def run(env):
        out = []
        for action in actions:
            obs, reward, _, truncated, _ = env.step(action)
            out.append((obs.copy(), reward))
            if truncated:
                out.append((env.reset()[0].copy(), 0.0))
        return out

    expected, got = run(env), run(other)
    assert len(expected) == len(got) > len(actions)  # an episode end and a new episode included
    for (obs_a, reward_a), (obs_b, reward_b) in zip(expected, got):
        np.testing.assert_array_equal(obs_a, obs_b)
        assert reward_a == reward_b
