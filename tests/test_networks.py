import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtsac_jax.agents import EnvSpec, sac
from mtsac_jax.networks import heads
from tests.conftest import tiny_config

T, OBS, ACT, B = 3, 6, 2, 4
VARIANTS = {
    "shared": {},
    "multi_head": {"should_use_multi_head_policy": True},
    "disjoint": {"should_use_disjoint_policy": True},
    "task_encoder": {"should_use_task_encoder": True, "should_use_multi_head_policy": True},
}


def sac_for(variant, num_tasks=T):
    config = tiny_config(num_envs=num_tasks, **VARIANTS[variant])
    return sac.make_sac(config.agent, EnvSpec(num_tasks, OBS, ACT))


def random_batch(key):
    keys = jax.random.split(key, 3)
    obs = jax.random.normal(keys[0], (T, B, OBS))
    return {
        "obs": obs,
        "action": jax.random.uniform(keys[1], (T, B, ACT), minval=-1, maxval=1),
        "reward": jax.random.normal(keys[2], (T, B)),
        "next_obs": obs + 0.1,
        "terminated": jnp.zeros((T, B)),
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shapes_and_actions_in_bounds(variant):
    sac_parts = sac_for(variant)
    state = sac.init_state(sac_parts, jax.random.key(0))
    obs = 10.0 * jax.random.normal(jax.random.key(1), (T, B, OBS))
    mean, log_std = sac_parts.actor.apply(state.actor.params, obs)
    assert mean.shape == log_std.shape == (T, B, ACT)
    assert np.all(log_std >= -20.0) and np.all(log_std <= 2.0)
    action, log_prob = heads.sample_tanh_gaussian(mean, log_std, jax.random.key(2))
    assert action.shape == (T, B, ACT) and log_prob.shape == (T, B)
    assert np.all(np.abs(action) <= 1.0)
    q = sac_parts.critic.apply(state.critic.params, obs, action)
    assert q.shape == (2, T, B)
    assert not np.allclose(q[0], q[1]), "the twin critics must be initialised independently"
    policy_params = sac.policy_params(sac_parts, state)
    acting = sac.sample_actions(sac_parts, policy_params, obs[:, 0], jax.random.key(3), 5)
    assert acting.shape == (T, ACT) and np.all(np.abs(acting) <= 1.0)
    assert sac.eval_actions(sac_parts, policy_params, obs[:, 0]).shape == (T, ACT)


def test_tanh_gaussian_log_prob_matches_density():
    """log pi from the stable formula equals the change-of-variables density."""
    mean, log_std = jnp.array([[0.3, -1.2]]), jnp.array([[-0.5, 0.1]])
    action, log_prob = heads.sample_tanh_gaussian(mean, log_std, jax.random.key(0))
    pre_tanh = jnp.arctanh(action)
    std = jnp.exp(log_std)
    gaussian = -0.5 * ((pre_tanh - mean) / std) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
    expected = jnp.sum(gaussian - jnp.log(1 - action**2), axis=-1)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-4, atol=1e-4)


def per_task_leaves(params, variant):
    """(name, leaf) of the parameters that belong to one task each."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        name = jax.tree_util.keystr(path)
        if variant == "disjoint" or "head" in name or "task_embedding" in name:
            yield name, leaf


@pytest.mark.parametrize("variant", ["multi_head", "disjoint", "task_encoder"])
def test_a_task_loss_has_zero_gradient_on_other_tasks_parameters(variant):
    sac_parts = sac_for(variant)
    state = sac.init_state(sac_parts, jax.random.key(0))
    batch = random_batch(jax.random.key(1))
    task = 1
    others = [t for t in range(T) if t != task]

    critic_loss = sac.critic_loss(sac_parts, state, batch, jax.random.key(2))
    critic_grads = jax.grad(lambda p: critic_loss(p)[0][task])(state.critic.params)
    actor_loss = sac.actor_loss(sac_parts, state, batch["obs"], jax.random.key(3))
    actor_grads = jax.grad(lambda p: actor_loss(p)[0][task])(state.actor.params)
    checked = 0
    for grads, task_axis in ((critic_grads, 1), (actor_grads, 0)):  # critic leaves lead with the twin axis
        for name, leaf in per_task_leaves(grads, variant):
            assert leaf.shape[task_axis] == T, name
            per_task = np.moveaxis(np.asarray(leaf), task_axis, 0)
            assert np.all(per_task[others] == 0.0), f"{name}: task {task}'s loss reached other tasks"
            assert np.any(per_task[task] != 0.0), f"{name}: task {task}'s loss did not reach its own weights"
            checked += 1
    assert checked >= 2

    log_prob = jax.random.normal(jax.random.key(4), (T, B))
    alpha_grad = jax.grad(lambda a: sac.alpha_loss(sac_parts, log_prob)(a)[0][task])(state.temperature.params)
    assert alpha_grad.shape == (T,)
    assert np.all(alpha_grad[np.array(others)] == 0.0) and alpha_grad[task] != 0.0


def test_shared_alpha_when_not_disentangled():
    config = tiny_config(num_envs=T, should_use_disentangled_alpha=False)
    sac_parts = sac.make_sac(config.agent, EnvSpec(T, OBS, ACT))
    assert sac.init_state(sac_parts, jax.random.key(0)).temperature.params.shape == (1,)


def test_disjoint_networks_have_no_shared_weights():
    sac_parts = sac_for("disjoint")
    state = sac.init_state(sac_parts, jax.random.key(0))
    for leaf in jax.tree.leaves(state.actor.params):
        assert leaf.shape[0] == T
    for leaf in jax.tree.leaves(state.critic.params):
        assert leaf.shape[:2] == (2, T)


def plain_mlp(layers, x, task):
    """A straightforward MLP on one task's (B, D) input; `layers` are (kernel, bias) pairs whose
    per-task parameters are indexed with `task`."""
    for index, (kernel, bias) in enumerate(layers):
        if kernel.ndim == 3:  # per-task layer
            kernel, bias = kernel[task], bias[task]
        x = x @ kernel + bias
        if index < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


def mlp_layers(params):
    names = sorted(name for name in params if name.startswith("hidden_")) + ["head"]
    return [(np.asarray(params[n]["kernel"]), np.asarray(params[n]["bias"])) for n in names]


@pytest.mark.parametrize("variant", ["shared", "multi_head", "disjoint"])
def test_batched_networks_compute_what_a_plain_per_task_loop_computes(variant):
    """The vmapped, flattened and ensemble-broadcast networks equal a plain loop over tasks
    and critics, so the optimised layout changes no number the update computes."""
    sac_parts = sac_for(variant)
    state = sac.init_state(sac_parts, jax.random.key(0))
    batch = random_batch(jax.random.key(1))
    obs, action = np.asarray(batch["obs"]), np.asarray(batch["action"])
    mean, log_std = sac_parts.actor.apply(state.actor.params, batch["obs"])
    q = sac_parts.critic.apply(state.critic.params, batch["obs"], batch["action"])
    actor_layers = mlp_layers(state.actor.params["params"]["mlp"])
    critic_params = state.critic.params["params"]["ensemble"]["mlp"]
    for task in range(T):
        out = plain_mlp(actor_layers, obs[task], task)
        np.testing.assert_allclose(mean[task], out[:, :ACT], rtol=1e-5, atol=1e-5)
        raw = out[:, ACT:]
        np.testing.assert_allclose(log_std[task], -20 + 11 * (np.tanh(raw) + 1), rtol=1e-5, atol=1e-4)
        for member in range(2):
            layers = [(k[member], b[member]) for k, b in mlp_layers(critic_params)]
            expected = plain_mlp(layers, np.concatenate([obs[task], action[task]], -1), task)[:, 0]
            np.testing.assert_allclose(q[member, task], expected, rtol=1e-5, atol=1e-5)
