import chex
import flax.linen as nn
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

    for name in ("actor", "critic", "temperature"):
        moved = jax.tree.map(lambda a, b: not np.allclose(a, b), getattr(before, name).params,
                             getattr(after, name).params)
        assert all(jax.tree.leaves(moved)), f"{name} did not move in every leaf"
    tau = config.agent.critic_tau
    expected_target = jax.tree.map(
        lambda new, old_target: tau * new + (1 - tau) * old_target, after.critic.params, before.critic.target_params
    )
    chex.assert_trees_all_close(after.critic.target_params, expected_target, rtol=1e-6, atol=1e-7)
    assert int(after.step) == 1
    assert set(metrics) == {"critic_loss", "actor_loss", "alpha_loss", "alpha", "entropy", "q"}
    assert [part.gradient_state for part in (after.critic, after.actor, after.temperature)] == [None] * 3, \
        "mean keeps no state"
    for value in metrics.values():
        assert value.shape == (T,) and np.all(np.isfinite(value))


def test_update_does_not_retrace_on_second_call():
    """Neither the same buffer nor one with new transitions makes the update trace again (counted
    from JAX's trace events: a jit cache entry may be evicted by unrelated work, a trace is not)."""
    _, agent, buffer = setup_agent()
    state = agent.init(jax.random.key(0))
    state, _ = agent.update(state, buffer)
    traces = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_trace_duration":
            traces.append(kwargs.get("fun_name"))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        state, _ = agent.update(state, buffer)
        buffer = replay_buffer.insert_jit(buffer, *(np.ones(s.shape[:1] + s.shape[2:]) for s in
                                                    (buffer.obs, buffer.action, buffer.reward, buffer.next_obs,
                                                     buffer.terminated)))
        agent.update(state, buffer)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert traces == []


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


def tanh_gaussian_by_hand(mean, log_std, noise):
    """a = tanh(mean + std * noise) and log pi(a|s) = log N(u) - sum log(1 - tanh(u)^2), in float64."""
    mean, log_std, noise = (np.asarray(x, np.float64) for x in (mean, log_std, noise))
    u = mean + np.exp(log_std) * noise
    log_normal = -0.5 * noise**2 - log_std - 0.5 * np.log(2 * np.pi)
    return np.tanh(u), (log_normal - np.log(1 - np.tanh(u) ** 2)).sum(-1)


def loss_fixture(disentangled=True):
    config = tiny_config(num_envs=T, should_use_multi_head_policy=True, should_use_disentangled_alpha=disentangled)
    parts = sac.make_sac(config.agent, EnvSpec(T, OBS, ACT))
    state = sac.init_state(parts, jax.random.key(0))
    rng = np.random.default_rng(3)
    state = state.replace(  # targets apart from the critics, and temperatures apart per task
        critic=state.critic.replace(target_params=jax.tree.map(
            lambda p: p + 0.05 * rng.normal(size=p.shape).astype(np.float32), state.critic.params)),
        temperature=state.temperature.replace(
            params=np.log(np.array([0.2, 0.7] if disentangled else [0.4], np.float32))))
    batch = {
        "obs": rng.normal(size=(T, B, OBS)).astype(np.float32),
        "action": rng.uniform(-1, 1, (T, B, ACT)).astype(np.float32),
        "reward": rng.normal(size=(T, B)).astype(np.float32),
        "next_obs": rng.normal(size=(T, B, OBS)).astype(np.float32),
        # one terminal transition per task; a truncated episode's last step is stored as 0 (not terminal)
        "terminated": np.array([[1, 0, 0, 0], [0, 0, 1, 0]], np.float32),
    }
    return parts, state, batch


def test_the_critic_loss_is_the_soft_bellman_residual_computed_by_hand():
    """Per task: mean over the batch, summed over the twin critics, of (Q_i(s,a) - y)^2 with
    y = r + gamma (1 - terminated) (min_i Q'_i(s',a') - alpha_t log pi(a'|s')), a' drawn with the
    loss's own noise; only `terminated` cuts the bootstrap, so a truncated step bootstraps."""
    for disentangled in (True, False):
        parts, state, batch = loss_fixture(disentangled)
        loss = sac.critic_loss(parts, state, batch, jax.random.key(5))
        losses, q_mean = loss(state.critic.params)
        noise = loss.inputs.noise
        mean, log_std = parts.actor.apply(state.actor.params, batch["next_obs"], None)
        next_action, next_log_prob = tanh_gaussian_by_hand(mean, log_std, noise)
        target_q = np.asarray(parts.critic.apply(state.critic.target_params, batch["next_obs"],
                                                 next_action.astype(np.float32), None), np.float64)  # (2, T, B)
        alpha = np.broadcast_to(np.exp(np.asarray(state.temperature.params, np.float64)), (T,))[:, None]
        target = batch["reward"] + parts.discount * (1 - batch["terminated"]) * (
            target_q.min(axis=0) - alpha * next_log_prob)
        q = np.asarray(parts.critic.apply(state.critic.params, batch["obs"], batch["action"], None), np.float64)
        expected = ((q - target[None]) ** 2).sum(axis=0).mean(axis=-1)
        np.testing.assert_allclose(losses, expected, rtol=2e-5)
        np.testing.assert_allclose(q_mean, q.mean(axis=(0, 2)), rtol=1e-5)
        # the terminal transitions' targets are their rewards alone: changing the next state there changes nothing
        moved = dict(batch, next_obs=np.where(batch["terminated"][..., None] > 0, batch["next_obs"] + 3.0, batch["next_obs"]))
        np.testing.assert_allclose(sac.critic_loss(parts, state, moved, jax.random.key(5))(state.critic.params)[0],
                                   losses, rtol=1e-6)


def test_the_actor_loss_is_alpha_log_pi_minus_the_twin_minimum_computed_by_hand():
    """Per task: mean over the batch of alpha_t log pi(a|s) - min_i Q_i(s, a), a reparameterised
    with the loss's own noise; alpha is not trained through this loss."""
    parts, state, batch = loss_fixture()
    loss = sac.actor_loss(parts, state, batch["obs"], jax.random.key(6))
    losses, log_prob = loss(state.actor.params)
    mean, log_std = parts.actor.apply(state.actor.params, batch["obs"], None)
    action, expected_log_prob = tanh_gaussian_by_hand(mean, log_std, loss.inputs.noise)
    q = np.asarray(parts.critic.apply(state.critic.params, batch["obs"], action.astype(np.float32), None), np.float64)
    alpha = np.exp(np.asarray(state.temperature.params, np.float64))[:, None]
    np.testing.assert_allclose(log_prob, expected_log_prob, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(losses, (alpha * expected_log_prob - q.min(axis=0)).mean(axis=-1), rtol=2e-5, atol=1e-6)
    def summed(log_alpha):
        with_alpha = state.replace(temperature=state.temperature.replace(params=log_alpha))
        return sac.actor_loss(parts, with_alpha, batch["obs"], jax.random.key(6))(state.actor.params)[0].sum()

    np.testing.assert_array_equal(jax.grad(summed)(state.temperature.params), 0.0)


FEATURES = 6
ENCODED = []  # the shape of every batch the encoder below is traced on


class RecordingEncoder(nn.Module):
    """A Dense encoder that records the shapes it is applied to."""

    @nn.compact
    def __call__(self, obs):
        ENCODED.append(obs.shape)
        return nn.Dense(FEATURES)(obs)


def encoder_fixture():
    config = tiny_config(num_envs=T, should_use_multi_head_policy=True)
    parts = sac.make_sac(config.agent, EnvSpec(T, OBS, ACT), make_encoder=RecordingEncoder)
    return parts, sac.init_state(parts, jax.random.key(0))


def test_the_encoder_stage_runs_once_per_batch_before_the_twin_ensemble():
    parts, state = encoder_fixture()
    assert state.critic.params["params"]["encoder"]["Dense_0"]["kernel"].shape == (OBS, FEATURES)
    assert state.actor.params["params"]["mlp"]["hidden_0"]["kernel"].shape[0] == FEATURES  # the actor reads features
    _, _, buffer = setup_agent()
    ENCODED.clear()
    after, _ = jax.jit(lambda s, b: sac.sac_update(parts, B, s, b))(state, buffer)
    # obs in the critic loss, next_obs under the critic (for the actor) and the target, obs for the actor:
    # each a (T, B, D) batch, never one per twin critic
    assert ENCODED == [(T, B, OBS)] * 4, ENCODED
    encoder = lambda params: params["params"]["encoder"]["Dense_0"]["kernel"]  # noqa: E731
    assert not np.allclose(encoder(after.critic.params), encoder(state.critic.params)), "the critic loss trains it"
    np.testing.assert_allclose(
        encoder(after.critic.target_params),
        parts.tau * encoder(after.critic.params) + (1 - parts.tau) * encoder(state.critic.target_params), rtol=1e-6)


def test_the_actor_loss_does_not_train_the_encoder():
    parts, state = encoder_fixture()
    obs = jax.random.normal(jax.random.key(1), (T, B, OBS))

    def actor_objective(critic_params):
        with_critic = state.replace(critic=state.critic.replace(params=critic_params))
        return sac.actor_loss(parts, with_critic, obs, jax.random.key(2))(state.actor.params)[0].sum()

    grads = jax.grad(actor_objective)(state.critic.params)["params"]
    assert all(np.all(leaf == 0.0) for leaf in jax.tree.leaves(grads["encoder"]))
    assert any(np.any(leaf != 0.0) for leaf in jax.tree.leaves(grads["ensemble"]))  # the gradient stops at the features


def test_the_policy_acts_on_the_encoders_features():
    parts, state = encoder_fixture()
    policy_params = sac.policy_params(parts, state)
    assert set(policy_params["encoder"]["params"]) == {"encoder"}  # the critics' other parameters are not read
    obs = jax.random.normal(jax.random.key(1), (T, OBS))
    features = parts.critic.apply(state.critic.params, obs[:, None], method="encode")
    mean, _ = parts.actor.apply(state.actor.params, features, None)
    np.testing.assert_allclose(sac.eval_actions(parts, policy_params, obs), np.tanh(mean[:, 0]), rtol=1e-6)
    shifted = jax.tree.map(lambda p: p + 1.0, policy_params["encoder"])
    assert not np.allclose(sac.eval_actions(parts, {**policy_params, "encoder": shifted}, obs),
                           sac.eval_actions(parts, policy_params, obs))
