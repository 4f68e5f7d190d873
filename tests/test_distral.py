"""Distral (Teh et al. 2017): its KL, its losses against SAC's, distillation, train.py and resume."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mtsac_jax
from mtsac_jax import agents, replay_buffer
from mtsac_jax.agents import EnvSpec, distral, sac_losses
from mtsac_jax.config import compose, validate
from mtsac_jax.networks import heads
from mtsac_jax.registry import ConfigError
from tests.conftest import assert_killed_run_resumes_exactly
from tests.test_networks import ACT, OBS, T, random_batch

TASKS = ("reach-v3", "push-v3", "pick-place-v3")


def distral_with(**keys):
    config = compose("metaworld", "distral", "metaworld-mt10", smoke=True)
    config.unlock()
    config.agent.update(keys)
    config.agent.multitask.num_envs = T
    return distral.make_distral(config.agent, EnvSpec(T, OBS, ACT, TASKS))


def test_kl_is_zero_when_the_policies_match_and_is_the_tanh_policies_kl_otherwise():
    keys = jax.random.split(jax.random.key(0), 4)
    mean_p, mean_q = (jax.random.normal(key, (T, 5, ACT)) for key in keys[:2])
    log_std_p, log_std_q = (0.3 * jax.random.normal(key, (T, 5, ACT)) - 0.5 for key in keys[2:])
    np.testing.assert_allclose(distral.gaussian_kl(mean_p, log_std_p, mean_p, log_std_p), 0.0, atol=1e-6)
    kl = distral.gaussian_kl(mean_p, log_std_p, mean_q, log_std_q)
    assert (kl > 0).all()
    # Monte Carlo E_{a ~ tanh-squashed p}[log p(a) - log q(a)]: tanh leaves the KL unchanged.
    noise = jax.random.normal(jax.random.key(5), (20_000, T, 5, ACT))
    pre_tanh = mean_p + jnp.exp(log_std_p) * noise
    log_p = heads.tanh_gaussian(mean_p, log_std_p, noise)[1]
    log_q = distral.log_prob_at(mean_q, log_std_q, pre_tanh)
    np.testing.assert_allclose((log_p - log_q).mean(axis=0), kl, rtol=0.05, atol=0.05)


def test_without_the_kl_the_losses_are_sacs_at_the_temperature_one_over_beta():
    parts = distral_with(distral_alpha=0.0, eval_policy="task", distral_beta=4.0)
    state = distral.init_state(parts, jax.random.key(0))
    np.testing.assert_allclose(jnp.exp(state.sac.temperature.params), 0.25, rtol=1e-6)
    batch = random_batch(jax.random.key(1))
    key = jax.random.key(2)
    regularised = distral.regularised_rewards(distral_with(distral_alpha=0.5, eval_policy="task", distral_beta=4.0),
                                              state, batch, key)["reward"]
    assert not np.allclose(regularised, batch["reward"])  # the KL regulariser enters the rewards when alpha > 0
    np.testing.assert_array_equal(distral.regularised_rewards(parts, state, batch, key)["reward"], batch["reward"])
    inputs = distral.actor_inputs(parts, state, batch["obs"], key)
    losses, (log_prob, _, _) = distral.actor_losses(parts, parts.sac, state.sac.actor.params, inputs)
    plain_losses, sac_log_prob = sac_losses.actor_losses(parts.sac, state.sac.actor.params, inputs)
    np.testing.assert_allclose(losses, plain_losses, rtol=1e-6)
    np.testing.assert_allclose(log_prob, sac_log_prob, rtol=1e-6)


def test_the_kl_term_pulls_each_task_policy_towards_the_distilled_one():
    """The task actors' loss grows by -c_KL E[log pi_0], exactly as computed from pi_0."""
    with_kl, without = distral_with(distral_alpha=0.5), distral_with(distral_alpha=0.0, eval_policy="task")
    state = distral.init_state(with_kl, jax.random.key(0))
    batch = random_batch(jax.random.key(1))
    inputs = distral.actor_inputs(with_kl, state, batch["obs"], jax.random.key(2))
    noise = inputs.noise
    losses, (_, mean, log_std) = distral.actor_losses(with_kl, with_kl.sac, state.sac.actor.params, inputs)
    plain, _ = distral.actor_losses(without, without.sac, state.sac.actor.params, inputs)
    prior_mean, prior_log_std = with_kl.distilled_actor.apply(state.distilled.params, batch["obs"])
    log_prior = distral.log_prob_at(prior_mean, prior_log_std, mean + jnp.exp(log_std) * noise)
    np.testing.assert_allclose(losses, plain - with_kl.kl_weight * log_prior.mean(axis=-1), rtol=1e-5, atol=1e-5)
    assert with_kl.kl_weight == pytest.approx(0.5 / 20.0)


def test_distillation_fits_the_distilled_policy_to_every_task_policy():
    parts = distral_with(distral_alpha=1.0)
    state = distral.init_state(parts, jax.random.key(0))
    obs = random_batch(jax.random.key(1))["obs"]
    task_mean = jnp.broadcast_to(jnp.array([0.3, -0.2, 0.1, 0.0])[:ACT], (T, obs.shape[1], ACT))
    task_log_std = jnp.full_like(task_mean, -1.0)
    step = jax.jit(functools.partial(distral.distill_step, parts))
    first = None
    for _ in range(300):
        state, metrics = step(state, obs, task_mean, task_log_std)
        first = metrics["kl"] if first is None else first
    assert (metrics["kl"] < 0.1 * first).all(), (first, metrics["kl"])


def test_config_errors_name_the_key_and_the_fix():
    config = compose("metaworld", "distral", "metaworld-mt10", smoke=True)
    config.unlock()
    config.agent.distral_alpha = 0.0
    with pytest.raises(ConfigError, match="untrained.*eval_policy=task"):
        validate(config)
    config.agent.distral_alpha = 1.5
    with pytest.raises(ConfigError, match=r"distral_alpha=1.5 must lie in \[0, 1\]"):
        validate(config)
    config.agent.distral_alpha = 0.5
    config.agent.eval_policy = "distiled"
    with pytest.raises(ConfigError, match="Did you mean 'distilled'"):
        validate(config)
    config.agent.eval_policy = "task"
    config.agent.distilled_actor.log_std_min = 3.0
    with pytest.raises(ConfigError, match="distilled_actor.log_std_min=3.0 must be below"):
        validate(config)


@pytest.mark.e2e
def test_distral_trains_mt10_through_train_py_resumes_exactly_and_evaluates_either_policy(tmp_path):
    assert_killed_run_resumes_exactly(tmp_path, "configs/compose.py:agent=distral,env=metaworld-mt10,smoke")
    policy = mtsac_jax.load_policy(tmp_path / "whole")
    obs = np.random.default_rng(0).normal(size=(10, 49))  # 39 state dimensions and the task's one-hot
    distilled = policy.eval_action(obs)
    config = compose("metaworld", "distral", "metaworld-mt10", smoke=True)
    config.unlock()
    config.agent.eval_policy = "task"
    agent = agents.build(config.agent, EnvSpec(10, 49, 4, ()), 8)
    task = agent.eval_actions(policy._policy_params, jnp.asarray(obs, jnp.float32))
    assert distilled.shape == task.shape == (10, 4)
    assert np.isfinite(distilled).all() and not np.allclose(distilled, task)
    # every task row through the one distilled policy: the same observation, the same action
    same = policy.eval_action(np.repeat(obs[:1], 10, axis=0))
    np.testing.assert_allclose(same, np.repeat(same[:1], 10, axis=0), rtol=1e-6)


def test_with_a_network_per_task_pcgrad_has_nothing_to_project_and_equals_mean():
    """Every parameter of the disjoint task policies and critics is a task's own, so PCGrad
    changes nothing: its update is the plain one."""
    obs_dim, act_dim = 7, 2
    buffer = replay_buffer.init(T, 16, obs_dim, act_dim)
    rng = np.random.default_rng(0)
    for _ in range(10):
        buffer = replay_buffer.insert_jit(buffer, rng.normal(size=(T, obs_dim)), rng.uniform(-1, 1, (T, act_dim)),
                                          rng.normal(size=T), rng.normal(size=(T, obs_dim)), np.zeros(T))
    states = {}
    for gradient in ("mean", "pcgrad"):
        config = compose("metaworld", "distral", "metaworld-mt10", smoke=True, gradient=gradient)
        config.unlock()
        config.agent.multitask.num_envs = T
        agent = agents.build(config.agent, EnvSpec(T, obs_dim, act_dim, TASKS), 4)
        states[gradient], _ = agent.update(agent.init(jax.random.key(0)), buffer)
    for part in (lambda state: state.sac.actor, lambda state: state.sac.critic, lambda state: state.distilled):
        chex.assert_trees_all_close(part(states["pcgrad"]).params, part(states["mean"]).params, rtol=1e-5, atol=1e-6)
