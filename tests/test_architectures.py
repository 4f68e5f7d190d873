"""The multi-task architectures (film, care, soft_modularization, moore, paco) and the scaled
recipe's bronet: each against a plain per-task loop written from its paper's equations, its
mechanism on small cases, and its per-task parameters reached only by their own task's loss."""

import runpy

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mtsac_jax import gradients, networks
from mtsac_jax.agents import EnvSpec, sac
from mtsac_jax.config import compose, task_names
from mtsac_jax.networks import mlp, paco
from mtsac_jax.networks.moore import orthonormal_mixture
from tests.conftest import REPO, assert_killed_run_resumes_exactly

T, B, D, H, OUT = 3, 5, 6, 16, 4
ARCHITECTURES = ("film", "care", "soft_modularization", "moore", "paco")
SMALL = {  # small but not degenerate settings of each network's own keys
    "film": {"embedding_dim": 5, "per_feature": True},
    "care": {"num_experts": 3, "encoder_hidden_dim": 7, "encoder_output_dim": 6, "embedding_dim": 5},
    "soft_modularization": {"num_modules": 3, "module_hidden_dim": 7},
    "moore": {"num_experts": 3},
    "paco": {"num_parameter_sets": 4},
    "bronet": {},
}
NETWORKS = (*ARCHITECTURES, "bronet")


def network(name, multi_head=False, num_layers=2, **keys):
    config = networks.network_config(name)
    config.update({**SMALL[name], **keys})
    multitask = ml_collections.ConfigDict({"should_use_multi_head_policy": multi_head})
    module = networks.NETWORKS.get(name).make(config, hidden_dim=H, num_layers=num_layers, output_dim=OUT,
                                              multitask=multitask)
    x = jax.random.normal(jax.random.key(1), (T, B, D))
    params = module.init(jax.random.key(0), x)["params"]
    if name == "film":  # its generator starts at zero (every task the plain MLP): move it so that tasks differ
        kernel = jax.random.normal(jax.random.key(2), params["film"]["kernel"].shape)
        params = {**params, "film": {**params["film"], "kernel": kernel}}
    return module, params, x


def relu(x):
    return np.maximum(x, 0.0)


def dense(params, x, index=None):
    kernel, bias = np.asarray(params["kernel"]), np.asarray(params["bias"])
    if index is not None:
        kernel, bias = kernel[index], bias[index]
    return x @ kernel + bias


def softmax(z):
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def head(params, x, task, multi_head):
    return dense(params["head"], x, task if multi_head else None)


def film_reference(p, x, task, multi_head):
    """Perez et al. eq. 1-2 with gamma = 1 + delta_gamma, per feature."""
    film = dense(p["film"], np.asarray(p["task_embedding"]["embedding"])[task]).reshape(2, 2, H)
    h = x
    for layer in range(2):
        h = relu((1 + film[layer, 0]) * dense(p[f"hidden_{layer}"], h) + film[layer, 1])
    return head(p, h, task, multi_head)


def care_reference(p, x, task, multi_head):
    """Sodhani et al. eq. 1-2: attention over k encoders from the context, encoding ++ context."""
    context = np.asarray(p["task_embedding"]["embedding"])[task]
    attention = softmax(dense(p["attention"], context))
    encoders = p["encoders"]
    encoded = [dense(encoders["output"], relu(dense(encoders["hidden_0"], x, k)), k) for k in range(3)]
    mixed = sum(a * e for a, e in zip(attention, encoded))
    h = np.concatenate([mixed, np.broadcast_to(context, (len(x), 5))], axis=-1)
    for layer in range(2):
        h = relu(dense(p[f"hidden_{layer}"], h))
    return head(p, h, task, multi_head)


def soft_modularization_reference(p, x, task, multi_head):
    """Yang et al. eq. 3-8, one sample at a time."""
    out = []
    for sample in x:
        state = dense(p["state_embedding"], sample)
        u = state * np.asarray(p["task_embedding"]["embedding"])[task]
        inputs = [relu(state)] * 3
        probs = None
        for layer in range(2):
            hidden = u if probs is None else dense(p[f"routing_up_{layer}"], probs.ravel()) * u
            logits = dense(p[f"routing_down_{layer}"], relu(hidden))
            outputs = [relu(dense(p[f"modules_{layer}"], inputs[j], j)) for j in range(3)]
            if layer == 0:
                probs = softmax(logits.reshape(3, 3))
                inputs = [sum(probs[i, j] * outputs[j] for j in range(3)) for i in range(3)]
            else:
                probs = softmax(logits)
                final = sum(probs[j] * outputs[j] for j in range(3))
        out.append(final)
    return head(p, np.stack(out), task, multi_head)


def moore_reference(p, x, task, multi_head):
    """Hendawy et al. eq. 4-6: experts, Gram-Schmidt per sample, tanh of the task's mixture."""
    experts = p["experts"]
    u = np.stack([dense(experts["output"], relu(dense(experts["hidden_0"], x, k)), k) for k in range(3)])
    weights = np.asarray(p["task_weights"]["embedding"])[task]
    out = []
    for b in range(len(x)):
        basis = []
        for vector in u[:, b]:
            for earlier in basis:
                vector = vector - (vector @ earlier) * earlier
            basis.append(vector / np.sqrt(vector @ vector + 1e-12))
        out.append(np.tanh(weights @ np.stack(basis)))
    return head(p, np.stack(out), task, multi_head)


def paco_reference(p, x, task, multi_head):
    """Sun et al. eq. 2: the task's weights composed from the K sets, then a plain MLP."""
    w = np.asarray(p["composition"]["embedding"])[task] / 2.0  # K = 4: scaled by K^-1/2

    def composed(layer):
        kernel = np.einsum("k,kdf->df", w, np.asarray(layer["kernel"]))
        return {"kernel": kernel, "bias": np.einsum("k,kf->f", w, np.asarray(layer["bias"]))}

    h = x
    for layer in range(2):
        h = relu(dense(composed(p[f"hidden_{layer}"]), h))
    return dense(p["head"], h, task) if multi_head else dense(composed(p["head"]), h)


def layer_norm(p, x):
    mean, variance = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + 1e-6) * np.asarray(p["scale"]) + np.asarray(p["bias"])


def bronet_reference(p, x, task, multi_head):
    """Nauman et al. 2024, sec. 4: ReLU(LN(Dense x)), then blocks h + LN(Dense(ReLU(LN(Dense h))))."""
    h = relu(layer_norm(p["input_norm"], dense(p["input"], x)))
    for block in range(2):
        y = relu(layer_norm(p[f"block_{block}_norm_0"], dense(p[f"block_{block}_dense_0"], h)))
        h = h + layer_norm(p[f"block_{block}_norm_1"], dense(p[f"block_{block}_dense_1"], y))
    return head(p, h, task, multi_head)


REFERENCES = {name: globals()[f"{name}_reference"] for name in NETWORKS}


@pytest.mark.parametrize("multi_head", [False, True], ids=["shared_head", "multi_head"])
@pytest.mark.parametrize("name", NETWORKS)
def test_the_batched_network_computes_what_a_plain_per_task_loop_computes(name, multi_head):
    module, params, x = network(name, multi_head)
    out = module.apply({"params": params}, x)
    assert out.shape == (T, B, OUT)
    for task in range(T):
        expected = REFERENCES[name](params, np.asarray(x[task]), task, multi_head)
        np.testing.assert_allclose(out[task], expected, rtol=2e-4, atol=2e-5)


def per_task_leaves(params, multi_head):
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        name = jax.tree_util.keystr(path)
        if any(key in name for key in ("task_embedding", "task_weights", "composition")) or (
            multi_head and "'head'" in name
        ):
            yield name, leaf


@pytest.mark.parametrize("name", NETWORKS)
def test_a_task_loss_has_zero_gradient_on_other_tasks_parameters(name):
    module, params, x = network(name, multi_head=True)
    task, others = 1, [0, 2]
    grads = jax.grad(lambda p: jnp.sum(module.apply({"params": p}, x)[task] ** 2))(params)
    checked = 0
    for leaf_name, leaf in per_task_leaves(grads, multi_head=True):
        assert leaf.shape[0] == T, leaf_name
        assert np.all(np.asarray(leaf)[others] == 0.0), f"{leaf_name}: task {task}'s loss reached other tasks"
        assert np.any(np.asarray(leaf)[task] != 0.0), f"{leaf_name}: task {task}'s loss missed its own parameters"
        checked += 1
    assert checked >= 2


def test_film_with_identity_scale_and_zero_shift_is_the_plain_mlp():
    """As every task starts: the generator's initial parameters give gamma 1 and beta 0."""
    for per_feature in (False, True):
        module, _, x = network("film", per_feature=per_feature)
        params = module.init(jax.random.key(0), x)["params"]
        plain = mlp.MLP(H, 2, OUT)
        mlp_params = {key: params[key] for key in ("hidden_0", "hidden_1", "head")}
        np.testing.assert_allclose(module.apply({"params": params}, x), plain.apply({"params": mlp_params}, x),
                                   rtol=1e-6, atol=1e-6)


def test_care_attention_sums_to_one_per_task_and_follows_the_context():
    module, params, x = network("care")

    def attention(context):
        _, state = module.apply({"params": params}, x, jnp.asarray(context), mutable=["intermediates"])
        (weights,) = state["intermediates"]["attention_weights"]
        return np.asarray(weights)

    context = np.asarray(params["task_embedding"]["embedding"])
    weights = attention(context)
    assert weights.shape == (T, 3)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-6)
    assert not np.allclose(weights, attention(context + 1.0)), "the attention must change with the context"
    # the network reads the context it is given: another context, another output
    moved = module.apply({"params": params}, x, jnp.asarray(context + 1.0))
    assert not np.allclose(moved, module.apply({"params": params}, x))


def test_moore_experts_are_orthonormal_per_sample_and_gradients_finite_when_collinear():
    u = list(jax.random.normal(jax.random.key(0), (4, 7, 16)))

    def basis(u):  # row i of V is the mixture with the one-hot weights e_i
        return jnp.stack([orthonormal_mixture(u, jnp.broadcast_to(jnp.eye(len(u))[i], (7, len(u))))
                          for i in range(len(u))])

    rows = np.asarray(basis(u))
    np.testing.assert_allclose(np.einsum("inh,jnh->nij", rows, rows), np.broadcast_to(np.eye(4), (7, 4, 4)),
                               atol=1e-5)
    weights = jax.random.normal(jax.random.key(1), (7, 4))
    np.testing.assert_allclose(orthonormal_mixture(u, weights), np.einsum("nk,knh->nh", weights, rows),
                               rtol=1e-4, atol=1e-5)
    collinear = [u[0], 2.0 * u[0] + 1e-7 * u[1], u[2]]
    grad = jax.grad(lambda v: jnp.sum(basis(v) ** 2))(collinear)
    assert all(np.all(np.isfinite(g)) for g in grad)
    # the mixture stays of the order of the weights: V's rows have norms of at most about 1
    mixture = np.asarray(orthonormal_mixture(collinear, weights[:, :3]))
    assert np.all(np.linalg.norm(mixture, axis=-1) <= 1.01 * np.linalg.norm(weights[:, :3], axis=-1))
    # at initialisation the whole network's gradients are finite
    module, params, x = network("moore")
    grads = jax.grad(lambda p: jnp.sum(module.apply({"params": p}, x) ** 2))(params)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grads))


def test_soft_modularization_routing_sums_to_one_per_sample():
    module, params, x = network("soft_modularization")
    _, state = module.apply({"params": params}, x, mutable=["intermediates"])
    between, last = state["intermediates"]["routing"]
    assert between.shape == (T * B, 3, 3) and last.shape == (T * B, 3)
    np.testing.assert_allclose(between.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(last.sum(axis=-1), 1.0, rtol=1e-6)
    assert not np.allclose(between[0], between[1]), "routing is per sample"


def test_paco_composes_each_tasks_weights_as_the_weighted_sum_of_the_parameter_set():
    module, params, x = network("paco")
    layer = paco.CompositionalDense(H, 4)
    w = jax.random.normal(jax.random.key(3), (T, 4))
    layer_params = layer.init(jax.random.key(4), x, w)["params"]
    out = layer.apply({"params": layer_params}, x, w)
    for task in range(T):
        kernel = sum(w[task, k] * layer_params["kernel"][k] for k in range(4))
        bias = sum(w[task, k] * layer_params["bias"][k] for k in range(4))
        np.testing.assert_allclose(out[task], x[task] @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_paco_masks_out_a_diverging_task_and_resets_its_vector_and_moments():
    config = compose("metaworld", "state_sac", "metaworld-mt10", smoke=True, network="paco")
    config.unlock()
    config.agent.network.loss_threshold = 1.0
    parts = sac.make_sac(config.agent, EnvSpec(T, D, 2))
    state = sac.init_state(parts, jax.random.key(0))
    params = state.critic.params
    opt_state = parts.critic_optimizer.init(params)
    opt_state = jax.tree.map(lambda leaf: leaf + 1.0 if jnp.ndim(leaf) >= 2 else leaf, opt_state)
    losses = jnp.array([0.5, 7.0, 0.25])  # task 1 diverges

    guard = parts.loss_guard
    fixed = gradients.TaskLoss(lambda p, inputs: (losses, None), None, None, None)
    masked, (_, seen, diverged) = guard.masked(fixed)(params)
    np.testing.assert_array_equal(diverged, [False, True, False])
    np.testing.assert_array_equal(masked, [0.5, 0.0, 0.25])
    np.testing.assert_array_equal(seen, losses)

    new_params, new_opt = guard.reset(params, opt_state, diverged)
    before = params["params"]["ensemble"]["paco"]["composition"]["embedding"]  # (2, T, K)
    after = new_params["params"]["ensemble"]["paco"]["composition"]["embedding"]
    np.testing.assert_allclose(after[:, 1], (before[:, 0] + before[:, 2]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(after[:, [0, 2]], before[:, [0, 2]])
    adam = new_opt[0]
    for moment in (adam.mu, adam.nu):
        moments = moment["params"]["ensemble"]["paco"]["composition"]["embedding"]
        assert np.all(moments[:, 1] == 0.0) and np.all(moments[:, [0, 2]] == 1.0)
        np.testing.assert_array_equal(moment["params"]["ensemble"]["paco"]["hidden_0"]["kernel"],
                                      opt_state[0].mu["params"]["ensemble"]["paco"]["hidden_0"]["kernel"])
    # and in a step, the diverged task gets no gradient on its vector
    def task_losses(p, inputs):  # task t's loss reads task t's vectors only; task 1's is far above the threshold
        vectors = p["params"]["ensemble"]["paco"]["composition"]["embedding"]
        return jnp.sum(vectors**2, axis=(0, 2)) * jnp.array([0.01, 1000.0, 0.01]), None

    loss = guard.masked(gradients.TaskLoss(task_losses, None, None, None))
    grads = jax.grad(lambda p: loss(p)[0].sum())(params)
    composition_grad = grads["params"]["ensemble"]["paco"]["composition"]["embedding"]
    assert np.all(composition_grad[:, 1] == 0.0) and np.all(composition_grad[:, 0] != 0.0)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_each_presets_agent_builds_from_its_config_file(name):
    """What train.py builds from `configs/<name>.py:mt10,smoke`, without the envs: the network
    section as the file gives it (with its `name` key) makes the actor and critics' parameters."""
    config = runpy.run_path(str(REPO / "configs" / f"{name}.py"))["get_config"]("mt10,smoke")
    names = task_names(config.env)
    parts = sac.make_sac(config.agent, EnvSpec(len(names), D, 2, tuple(names)))
    state = jax.eval_shape(lambda key: sac.init_state(parts, key), jax.random.key(0))
    assert name in state.critic.params["params"]["ensemble"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n == "paco" else pytest.mark.slow)
                                  for n in ARCHITECTURES])
@pytest.mark.e2e
def test_each_preset_trains_mt10_through_train_py_and_resumes_exactly(name, tmp_path):
    assert_killed_run_resumes_exactly(tmp_path, f"configs/{name}.py:mt10,smoke")
