"""Gradient methods: per-task gradients from one vmapped backward pass, PCGrad and GradNorm."""

import json
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtsac_jax import agents, gradients, replay_buffer
from mtsac_jax.agents import EnvSpec, sac
from mtsac_jax.config import compose
from mtsac_jax.gradients import gradnorm, pcgrad
from mtsac_jax.registry import ConfigError
from tests.conftest import REPO, assert_killed_run_resumes_exactly, tiny_config
from tests.test_networks import ACT, B, OBS, T, random_batch



NETWORK_VARIANTS = {  # (network, agent.multitask keys): shared, per-task and description-read parameters
    "mlp_multi_head": ("mlp", {"should_use_multi_head_policy": True}),
    "mlp_shared_alpha": ("mlp", {"should_use_disentangled_alpha": False}),
    "care_descriptions": ("care", {"should_use_task_encoder": True, "task_encoder": {"embedding_dim": 8,
                                   "description_embeddings": "metaworld"}}),
    "paco": ("paco", {}),
}


def sac_with(variant, gradient="mean"):
    network, multitask = NETWORK_VARIANTS[variant]
    config = compose("metaworld", "state_sac", "metaworld-mt10", smoke=True, network=network, gradient=gradient)
    config.unlock()
    config.agent.multitask.update(multitask)
    config.agent.multitask.num_envs = T
    return sac.make_sac(config.agent, EnvSpec(T, OBS, ACT, ("reach-v3", "push-v3", "pick-place-v3")))


@pytest.mark.parametrize("variant", NETWORK_VARIANTS)
def test_per_task_gradients_from_one_vmapped_pass_equal_each_tasks_own_gradient(variant):
    """Against the Jacobian of the loss vector (one backward pass per task)."""
    parts = sac_with(variant)
    state = sac.init_state(parts, jax.random.key(0))
    batch = random_batch(jax.random.key(1))
    for loss, params in ((sac.critic_loss(parts, state, batch, jax.random.key(2)), state.critic.params),
                         (sac.actor_loss(parts, state, batch["obs"], jax.random.key(3)), state.actor.params),
                         (sac.alpha_loss(parts, jax.random.normal(jax.random.key(4), (T, B))), state.temperature.params)):
        losses, _, grads = jax.jit(lambda p: gradients.per_task_value_and_grad(loss, p))(params)
        np.testing.assert_allclose(losses, loss(params)[0], rtol=1e-5, atol=1e-6)
        jacobian = jax.jit(jax.jacrev(lambda p: loss(p)[0]))(params)  # each leaf (T, *leaf)

        def expected(axis, jac):  # shared: each task's own; per-task: task t's slice from task t's loss
            return jac if axis is None else jnp.sum(jac, axis=0)

        wanted = jax.tree.map(expected, loss.param_axes, jacobian, is_leaf=gradients.is_axis)
        chex.assert_trees_all_close(grads, wanted, rtol=2e-4, atol=1e-6)


def test_task_axes_are_found_from_the_shapes():
    parts = sac_with("mlp_multi_head")
    head = parts.critic_axes["params"]["ensemble"]["mlp"]["head"]["kernel"]
    hidden = parts.critic_axes["params"]["ensemble"]["mlp"]["hidden_0"]["kernel"]
    assert head == 1 and hidden is None  # the critics' leaves lead with the twin axis
    care = sac_with("care_descriptions")
    assert care.actor_axes["params"]["care"]["task_embedding"]["hidden"]["kernel"] is None  # reads (T, L) inputs


def test_pcgrad_projects_two_conflicting_gradients_as_the_paper():
    g1, g2 = np.array([1.0, 1.0]), np.array([-1.0, 0.5])  # g1 . g2 = -0.5 < 0
    projected = np.asarray(pcgrad.project_conflicting(jnp.array([g1, g2]), jnp.array([[0, 1], [1, 0]])))
    np.testing.assert_allclose(projected[0], g1 - (-0.5 / 1.25) * g2, rtol=1e-6)
    np.testing.assert_allclose(projected[1], g2 - (-0.5 / 2.0) * g1, rtol=1e-6)
    assert abs(projected[0] @ g2) < 1e-6 and abs(projected[1] @ g1) < 1e-6  # on the normal planes


def test_pcgrad_leaves_non_conflicting_gradients_unchanged():
    grads = jnp.array([[1.0, 0.0, 2.0], [0.5, 1.0, 0.0], [0.0, 3.0, 1.0]])  # all dot products >= 0
    orders = jnp.array([[2, 0, 1], [0, 1, 2], [1, 2, 0]])
    np.testing.assert_array_equal(pcgrad.project_conflicting(grads, orders), grads)


def test_pcgrad_projects_sequentially_in_each_tasks_own_order():
    """Three tasks: the result depends on the order; each order gives alg. 1's sequence."""
    grads = np.array([[1.0, 0.0], [-1.0, 1.0], [-0.2, -1.0]])

    def by_hand(i, order):
        g = grads[i].copy()
        for j in order:
            if j != i and g @ grads[j] < 0:
                g = g - (g @ grads[j]) / (grads[j] @ grads[j]) * grads[j]
        return g

    orders = np.array([[1, 2, 0], [2, 1, 0], [0, 1, 2]])
    swapped = orders[:, ::-1]
    for order_set in (orders, swapped):
        projected = np.asarray(pcgrad.project_conflicting(jnp.array(grads), jnp.array(order_set)))
        for i in range(3):
            np.testing.assert_allclose(projected[i], by_hand(i, order_set[i]), rtol=1e-5, atol=1e-7)
    assert not np.allclose(by_hand(0, orders[0]), by_hand(0, swapped[0]))


def pcgrad_step(variant, reduction="mean", key=0):
    parts = sac_with(variant, "pcgrad")
    state = sac.init_state(parts, jax.random.key(0))
    loss = sac.critic_loss(parts, state, random_batch(jax.random.key(1)), jax.random.key(2))
    method = pcgrad.make(_gradient_config(reduction), T)
    step = jax.jit(lambda params, method_state: method.value_and_grad(loss, params, method_state))
    return step(state.critic.params, method.init(None, jax.random.key(key)))


def _gradient_config(reduction):
    config = gradients.gradient_config("pcgrad")
    config.reduction = reduction
    return config


def test_pcgrad_without_conflicts_is_the_mean_gradient():
    """Per-task losses on disjoint coordinates of a shared vector never conflict."""
    params = {"shared": jnp.array([1.0, -2.0, 3.0]), "own": jnp.array([[0.5], [1.5], [-1.0]])}

    def fn(p, inputs):
        losses = inputs["weights"][:, 0] * p["shared"][inputs["index"][:, 0]] ** 2 + p["own"][:, 0] ** 2
        return losses, None

    inputs = {"weights": jnp.array([[1.0], [2.0], [3.0]]), "index": jnp.array([[0], [1], [2]])}
    loss = gradients.TaskLoss(fn, inputs, {"shared": None, "own": 0}, {"weights": 0, "index": 0})
    for reduction, scale in (("mean", 1 / 3), ("sum", 1.0)):
        method = pcgrad.make(_gradient_config(reduction), 3)
        _, _, grads, _ = method.value_and_grad(loss, params, method.init(params, jax.random.key(0)))
        plain = jax.grad(lambda p: loss(p)[0].sum() * scale)(params)
        chex.assert_trees_all_close(grads, plain, rtol=1e-6)


def test_pcgrad_draws_its_orders_from_its_key_reproducibly():
    _, _, grads, state = pcgrad_step("mlp_multi_head")
    _, _, again, state_again = pcgrad_step("mlp_multi_head")
    chex.assert_trees_all_equal(grads, again)
    np.testing.assert_array_equal(state["key"], state_again["key"])
    assert not np.array_equal(state["key"], jax.random.key_data(jax.random.key(0))), "the key moves on"


def one_task_update(gradient):
    config = tiny_config()
    config.agent.gradient = gradients.gradient_config(gradient)
    agent = agents.build(config.agent, EnvSpec(1, OBS, ACT, ("reach-v3",)), batch_size_per_task=B)
    buffer = replay_buffer.init(1, 16, OBS, ACT)
    rng = np.random.default_rng(0)
    for _ in range(10):
        buffer = replay_buffer.insert_jit(buffer, rng.normal(size=(1, OBS)), rng.uniform(-1, 1, (1, ACT)),
                                          rng.normal(size=1), rng.normal(size=(1, OBS)), np.zeros(1))
    state = agent.init(jax.random.key(0))
    for _ in range(3):
        state, metrics = agent.update(state, buffer)
    return state, metrics


def test_pcgrad_with_one_task_is_plain_sac():
    state, metrics = one_task_update("pcgrad")
    plain_state, plain_metrics = one_task_update("mean")
    for part in ("actor", "critic", "temperature"):
        chex.assert_trees_all_equal(getattr(state, part).params, getattr(plain_state, part).params)
    chex.assert_trees_all_equal(metrics, plain_metrics)


def test_gradnorm_finds_the_last_shared_layer():
    for variant, layer in (("mlp_shared_alpha", "head"), ("mlp_multi_head", "hidden_1")):
        parts = sac_with(variant)
        state = sac.init_state(parts, jax.random.key(0))
        loss = sac.critic_loss(parts, state, random_batch(jax.random.key(1)), jax.random.key(2))
        paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(state.critic.params)[0]]
        chosen = [path for path, last in zip(paths, gradnorm.last_shared_layer(loss, state.critic.params)) if last]
        assert chosen == [f"['params']['ensemble']['mlp']['{layer}']['bias']",
                          f"['params']['ensemble']['mlp']['{layer}']['kernel']"], (variant, chosen)
    parts = sac_with("mlp_multi_head")
    alpha = sac.alpha_loss(parts, jnp.ones((T, B)))
    assert gradnorm.last_shared_layer(alpha, jnp.zeros(T)) == [False]  # a disentangled log-alpha shares nothing


def test_gradnorm_weights_move_towards_balance_and_keep_summing_to_the_task_count():
    """Two regression tasks through one shared layer, one loss 100 times the other's."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 16, 4)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(2, 16, 1)), jnp.float32)
    scales = jnp.array([100.0, 1.0])

    def fn(p, inputs):
        prediction = inputs["x"] @ p["shared"]  # (T, N, 1)
        return inputs["scale"] * jnp.mean((prediction - inputs["y"]) ** 2, axis=(1, 2)), None

    loss = gradients.TaskLoss(fn, {"x": x, "y": y, "scale": scales}, {"shared": None},
                              {"x": 0, "y": 0, "scale": 0})
    config = gradients.gradient_config("gradnorm")
    method = gradnorm.make(config, 2)
    params = {"shared": jnp.asarray(rng.normal(size=(4, 1)), jnp.float32)}
    state = method.init(params, jax.random.key(0))
    step = jax.jit(lambda p, s: method.value_and_grad(loss, p, s))

    def imbalance(p, weights):
        per_task = jax.vmap(lambda xi, yi, si, wi: wi * jnp.linalg.norm(jax.grad(
            lambda q: si * jnp.mean((xi @ q - yi) ** 2))(p["shared"])))(x, y, scales, weights)
        return float(per_task.max() / per_task.min())

    before = imbalance(params, state["weights"])
    for _ in range(200):
        _, _, grads, state = step(params, state)
        params = jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)
        np.testing.assert_allclose(state["weights"].sum(), 2.0, rtol=1e-5)
    weights = np.asarray(state["weights"])
    assert weights[0] < 0.5 < 1.5 < weights[1], weights  # the large loss is weighed down
    assert imbalance(params, state["weights"]) < before / 5


def test_gradnorm_keeps_the_first_losses_as_the_initial_ones():
    parts = sac_with("mlp_shared_alpha", "gradnorm")
    state = sac.init_state(parts, jax.random.key(0))
    method_state = state.critic.gradient_state
    first = sac.critic_loss(parts, state, random_batch(jax.random.key(1)), jax.random.key(2))
    losses, _, _, method_state = parts.gradient.value_and_grad(first, state.critic.params, method_state)
    second = sac.critic_loss(parts, state, random_batch(jax.random.key(5)), jax.random.key(6))
    _, _, _, method_state = parts.gradient.value_and_grad(second, state.critic.params, method_state)
    np.testing.assert_array_equal(method_state["initial_losses"], losses)
    assert not np.allclose(method_state["weights"], 1.0)


@pytest.mark.e2e
@pytest.mark.parametrize("gradient", ["pcgrad", "gradnorm"])
def test_each_method_trains_mt10_through_train_py_and_resumes_exactly(gradient, tmp_path):
    assert_killed_run_resumes_exactly(tmp_path, f"configs/compose.py:env=metaworld-mt10,gradient={gradient},smoke")


@pytest.mark.e2e
def test_mtrl_agent_names_are_state_sac_with_their_gradient_method():
    for agent, gradient in (("pcgrad_state_sac", "pcgrad"), ("gradnorm_state_sac", "gradnorm")):
        config = compose("metaworld", agent, "metaworld-mt10")
        assert (config.agent.name, config.agent.gradient.name) == ("state_sac", gradient)
    with pytest.raises(ConfigError, match="agent=state_sac,gradient=gradnorm"):
        compose("metaworld", "pcgrad_state_sac", "metaworld-mt10", gradient="gradnorm")
    printed = subprocess.run(
        [sys.executable, "main.py", "setup=metaworld", "agent=pcgrad_state_sac", "env=metaworld-mt10", "--print_config"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout
    assert json.loads(printed)["agent"]["gradient"] == {"name": "pcgrad", "reduction": "mean"}


def test_pcgrad_with_conflicting_tasks_through_value_and_grad_is_alg_1_by_hand():
    """Two tasks whose losses pull a shared vector apart (their gradients conflict), each with a
    head of its own: the shared gradient is the mean (or sum) of each task's gradient projected
    onto the normal plane of the other's (alg. 1; with two tasks the order does not matter),
    the heads keep their own task's gradient, and the losses come out as computed."""
    params = {"shared": jnp.array([0.3, -1.2, 0.8]), "head": jnp.array([[1.0, 0.5], [-0.5, 2.0]])}
    targets = jnp.array([[2.0, 1.0, -1.0], [-1.5, -2.0, 0.5]])

    def fn(p, inputs):
        prediction = p["shared"][None, :] * inputs["scale"]  # (T, 3)
        losses = ((prediction - inputs["target"]) ** 2).sum(-1) + (p["head"] ** 2).sum(-1)
        return losses, prediction

    inputs = {"scale": jnp.array([[1.0], [2.0]]), "target": targets}
    loss = gradients.TaskLoss(fn, inputs, {"shared": None, "head": 0}, {"scale": 0, "target": 0})
    task_grads = [jax.grad(lambda p, t=t: fn(p, inputs)[0][t])(params) for t in range(2)]
    g1, g2 = (np.asarray(g["shared"], np.float64) for g in task_grads)
    assert g1 @ g2 < 0  # the tasks conflict on the shared vector
    projected = [g1 - (g1 @ g2) / (g2 @ g2) * g2, g2 - (g2 @ g1) / (g1 @ g1) * g1]
    for reduction, scale in (("mean", 0.5), ("sum", 1.0)):
        method = pcgrad.make(_gradient_config(reduction), 2)
        state = method.init(params, jax.random.key(0))
        losses, aux, grads, new_state = jax.jit(lambda p, s: method.value_and_grad(loss, p, s))(params, state)
        np.testing.assert_allclose(losses, fn(params, inputs)[0], rtol=1e-6)
        np.testing.assert_allclose(aux, fn(params, inputs)[1], rtol=1e-6)
        np.testing.assert_allclose(grads["shared"], scale * (projected[0] + projected[1]), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grads["head"], scale * np.stack([g["head"][t] for t, g in enumerate(task_grads)]),
                                   rtol=1e-6)
        assert not np.allclose(grads["shared"], scale * (g1 + g2))  # the projection changed the shared gradient
        assert not np.array_equal(new_state["key"], state["key"])  # the next update draws new orders
