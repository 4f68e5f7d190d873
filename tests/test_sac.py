import chex
import jax
import numpy as np

from mtsac_jax import agents, replay_buffer
from mtsac_jax.agents import EnvSpec, sac
from tests.conftest import tiny_config

T, OBS, ACT, B = 2, 5, 3, 4


def setup_agent(num_updates=1):
    config = tiny_config(num_envs=T, should_use_multi_head_policy=True)
    agent = agents.build(config.agent, EnvSpec(T, OBS, ACT), batch_size_per_task=B, num_updates_per_call=num_updates)
    buffer = replay_buffer.init(T, 16, OBS, ACT)
    rng = np.random.default_rng(0)
    for _ in range(10):
        buffer = replay_buffer.insert_jit(
            buffer,
            rng.normal(size=(T, OBS)),
            rng.uniform(-1, 1, (T, ACT)),
            rng.normal(size=T),
            rng.normal(size=(T, OBS)),
            np.zeros(T),
        )
    return config, agent, buffer


def host_copy(tree):
    return jax.tree.map(np.array, tree)


def test_update_moves_params_and_targets_move_by_tau():
    config, agent, buffer = setup_agent()
    state = agent.init(jax.random.key(0))
    before = host_copy(state)
    state, metrics = agent.update(state, buffer)
    after = host_copy(state)

    for name in ("actor_params", "critic_params", "log_alpha"):
        moved = jax.tree.map(lambda a, b: not np.allclose(a, b), getattr(before, name), getattr(after, name))
        assert all(jax.tree.leaves(moved)), f"{name} did not move in every leaf"
    tau = config.agent.critic_tau
    expected_target = jax.tree.map(
        lambda new, old_target: tau * new + (1 - tau) * old_target, after.critic_params, before.target_critic_params
    )
    chex.assert_trees_all_close(after.target_critic_params, expected_target, rtol=1e-6, atol=1e-7)
    assert int(after.step) == 1
    assert set(metrics) == {"critic_loss", "actor_loss", "alpha_loss", "alpha", "entropy", "q"}
    assert after.gradient_state == {"critic": None, "actor": None, "alpha": None}, "mean keeps no state"
    for value in metrics.values():
        assert value.shape == (T,) and np.all(np.isfinite(value))


def test_update_does_not_retrace_on_second_call():
    _, agent, buffer = setup_agent()
    state = agent.init(jax.random.key(0))
    state, _ = agent.update(state, buffer)
    state, _ = agent.update(state, buffer)
    buffer = replay_buffer.insert_jit(buffer, *(np.ones(s.shape[:1] + s.shape[2:]) for s in
                                                (buffer.obs, buffer.action, buffer.reward, buffer.next_obs, buffer.terminated)))
    agent.update(state, buffer)
    assert agent.update._cache_size() == 1


def test_scanned_updates_equal_repeated_single_updates():
    _, single, buffer = setup_agent(num_updates=1)
    _, scanned, _ = setup_agent(num_updates=3)
    state_a = single.init(jax.random.key(0))
    for _ in range(3):
        state_a, _ = single.update(state_a, buffer)
    state_b, _ = scanned.update(scanned.init(jax.random.key(0)), buffer)
    chex.assert_trees_all_close(host_copy(state_a), host_copy(state_b), rtol=1e-5, atol=1e-6)


def test_same_seed_same_update():
    _, agent, buffer = setup_agent()
    results = [host_copy(agent.update(agent.init(jax.random.key(7)), buffer)) for _ in range(2)]
    chex.assert_trees_all_equal(results[0], results[1])


def test_temperature_loss_forms_step_log_alpha_by_the_error_or_by_alpha_times_it():
    """log_alpha form: d loss / d log_alpha = mean(-log pi - target); alpha form: alpha times it."""
    log_prob = jax.random.normal(jax.random.key(0), (T, B))
    log_alpha = np.log(np.array([0.5, 4.0], np.float32))
    grads = {}
    for form in ("log_alpha", "alpha"):
        config = tiny_config(num_envs=T)
        config.agent.temperature_loss = form
        sac_parts = sac.make_sac(config.agent, EnvSpec(T, OBS, ACT))
        grads[form] = np.asarray(jax.grad(lambda a: sac.alpha_loss(sac_parts, log_prob)(a)[0].sum())(log_alpha))
    entropy_error = np.asarray(-log_prob - sac_parts.target_entropy).mean(axis=-1)
    np.testing.assert_allclose(grads["log_alpha"], entropy_error, rtol=1e-6)
    np.testing.assert_allclose(grads["alpha"], np.exp(log_alpha) * entropy_error, rtol=1e-6)
