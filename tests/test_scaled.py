"""The scaled-critic recipe's pieces: the categorical critic loss, per-task reward normalisation,
AdamW, and the preset trained through train.py and resumed exactly."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from mtsac_jax import replay_buffer
from mtsac_jax.agents import EnvSpec, reward_scale, sac
from mtsac_jax.networks import heads
from tests.conftest import assert_killed_run_resumes_exactly, tiny_config

VALUE = heads.CategoricalValue(num_bins=101, v_min=-10.0, v_max=10.0)


def test_the_two_hot_target_has_the_target_as_its_expectation_anywhere_on_the_support():
    targets = jnp.array([-10.0, -9.9, -3.14159, 0.0, 0.05, 7.77, 9.99, 10.0])
    two_hot = VALUE.two_hot(targets)
    np.testing.assert_allclose(two_hot.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(two_hot @ VALUE.support(), targets, rtol=1e-5, atol=1e-5)
    assert ((two_hot > 0).sum(axis=-1) <= 2).all()  # at most the two bins around the target
    # the loss is smallest where the predicted distribution is the target's: its expectation equals the target's
    logits = jnp.log(two_hot + 1e-12)
    np.testing.assert_allclose(VALUE.q(logits), targets, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target", [3.333, 25.0, -40.0])  # between two bins, and off the support on either side
def test_the_categorical_losss_gradient_moves_q_towards_the_target(target):
    logits = jax.random.normal(jax.random.key(0), (4, 101))
    before = VALUE.q(logits)
    for _ in range(300):
        logits = logits - 2.0 * jax.grad(lambda z: VALUE.loss(z, jnp.full(4, target)).sum())(logits)
    clipped = np.clip(target, -10.0, 10.0)
    assert np.all(np.abs(VALUE.q(logits) - clipped) < np.abs(before - clipped))
    np.testing.assert_allclose(VALUE.q(logits), clipped, atol=0.05)


def normalised_agent(num_tasks=2):
    config = tiny_config(num_envs=num_tasks)
    config.agent.critic_loss = "categorical"
    config.agent.reward_normalization = True
    parts = sac.make_sac(config.agent, EnvSpec(num_tasks, 5, 3))
    return parts, sac.init_state(parts, jax.random.key(0))


def test_reward_normalisation_gives_every_task_the_same_bound_on_its_returns():
    """Task 0's rewards in [-1, 1], task 1's 100 times larger: scaled, each task's soft-return
    bound (max |r| + alpha |H|) / (1 - gamma) is v_max; the buffer is left as it was."""
    parts, state = normalised_agent()
    state = state.replace(reward_scale=state.reward_scale.replace(entropy=jnp.array([2.0, -3.0])))
    rng = np.random.default_rng(0)
    rewards = rng.uniform(-1, 1, (2, 64)) * np.array([[1.0], [100.0]])
    batch = {"reward": jnp.asarray(rewards, jnp.float32)}
    state, scaled, factors = sac.normalise_rewards(parts, state, batch)
    alpha = np.exp(np.asarray(state.temperature.params))
    factors = np.asarray(factors)
    bound = (np.abs(np.asarray(scaled["reward"])).max(axis=-1) + factors * alpha * np.array([2.0, 3.0])) / (
        1 - parts.discount)
    np.testing.assert_allclose(bound, parts.reward_v_max, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(scaled["reward"]) / rewards, np.broadcast_to(factors[:, None], rewards.shape),
                               rtol=1e-5)
    # the statistics only grow: a later batch of smaller rewards keeps the bound of the larger ones
    _, _, later = sac.normalise_rewards(parts, state, {"reward": batch["reward"] / 10})
    np.testing.assert_allclose(later, factors, rtol=1e-6)


def test_reward_normalisation_statistics_are_updated_by_the_update_and_kept_in_the_state():
    parts, state = normalised_agent()
    buffer = replay_buffer.init(2, 16, 5, 3)
    rng = np.random.default_rng(1)
    for _ in range(10):
        buffer = replay_buffer.insert_jit(buffer, rng.normal(size=(2, 5)), rng.uniform(-1, 1, (2, 3)),
                                          np.array([0.5, 50.0]) * rng.uniform(size=2), rng.normal(size=(2, 5)),
                                          np.zeros(2))
    state, metrics = jax.jit(lambda s, b: sac.sac_update(parts, 4, s, b))(state, buffer)
    bound = np.asarray(state.reward_scale.reward_bound)
    assert 0 < bound[0] <= 0.5 and 0.5 < bound[1] <= 50.0
    assert np.all(np.asarray(state.reward_scale.entropy) != 0.0)  # the actor step's entropy estimate
    assert metrics["reward_scale"][0] > metrics["reward_scale"][1]  # the larger rewards are scaled down more


def test_weight_decay_makes_the_optimizer_adamw():
    params = {"w": jnp.ones(3)}
    zero = {"w": jnp.zeros(3)}
    for decay, expected in ((0.0, 1.0), (0.1, 1.0 - 0.01 * 0.1)):
        section = ml_collections.ConfigDict({"lr": 0.01, "weight_decay": decay})
        optimizer = sac.optimizer(section)
        updates, _ = optimizer.update(zero, optimizer.init(params), params)
        np.testing.assert_allclose(optax.apply_updates(params, updates)["w"], expected, rtol=1e-6)


def test_an_old_state_without_reward_normalisation_has_no_statistics():
    config = tiny_config()
    parts = sac.make_sac(config.agent, EnvSpec(1, 5, 3))
    assert sac.init_state(parts, jax.random.key(0)).reward_scale is None
    assert isinstance(reward_scale.init(3), reward_scale.RewardScale)


@pytest.mark.e2e
def test_the_scaled_preset_trains_mt10_through_train_py_and_resumes_exactly(tmp_path):
    assert_killed_run_resumes_exactly(tmp_path, "configs/scaled.py:mt10-cpu,smoke")


def test_with_reward_normalisation_the_critics_learn_the_soft_return_scaled_entropy_term_included():
    """A value scale c multiplies the entropy term of the critic target and of the actor loss, as
    a temperature c alpha would: rewards and entropy bonus are scaled alike, so the soft return's
    bound is the one the factor was made for."""
    parts, state = normalised_agent()
    rng = np.random.default_rng(2)
    batch = {"obs": rng.normal(size=(2, 4, 5)), "action": rng.uniform(-1, 1, (2, 4, 3)), "reward": rng.normal(size=(2, 4)),
             "next_obs": rng.normal(size=(2, 4, 5)), "terminated": np.zeros((2, 4))}
    batch = {name: jnp.asarray(value, jnp.float32) for name, value in batch.items()}
    scale = jnp.array([0.5, 0.02])
    hotter = state.replace(temperature=state.temperature.replace(params=state.temperature.params + jnp.log(scale)))
    key = jax.random.key(3)
    np.testing.assert_allclose(sac.critic_loss(parts, state, batch, key, scale)(state.critic.params)[0],
                               sac.critic_loss(parts, hotter, batch, key)(state.critic.params)[0], rtol=1e-5)
    np.testing.assert_allclose(sac.actor_loss(parts, state, batch["obs"], key, scale)(state.actor.params)[0],
                               sac.actor_loss(parts, hotter, batch["obs"], key)(state.actor.params)[0], rtol=1e-5)
    assert not np.allclose(sac.critic_loss(parts, state, batch, key)(state.critic.params)[0],
                           sac.critic_loss(parts, hotter, batch, key)(state.critic.params)[0])
