"""The alternative formulations of bench/ceiling.py and bench/gradients.py compute the same
function, on the same parameters, as the package's formulation: their measurements compare
formulations, nothing else."""

import importlib.util
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mtsac_jax import gradients, networks
from mtsac_jax.registry import GRADIENTS
from tests.conftest import REPO
from tests.test_architectures import H, OUT, SMALL, network


def bench_module(name):
    """bench/<name>.py as a module (it puts bench/ on sys.path for its own imports)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # flax's dataclasses look it up
    spec.loader.exec_module(module)
    return module


ceiling = bench_module("ceiling")


@pytest.mark.parametrize("alternative", ceiling.ALTERNATIVES)
def test_an_alternative_computes_its_networks_function_on_its_parameters(alternative):
    ceiling._register_alternatives()
    name = ceiling.ALTERNATIVES[alternative]
    module, params, x = network(name)
    config = networks.network_config(name)
    config.update(SMALL[name])
    config.name = alternative
    multitask = ml_collections.ConfigDict({"should_use_multi_head_policy": False})
    other = networks.NETWORKS.get(alternative).make(config, hidden_dim=H, num_layers=2, output_dim=OUT,
                                                    multitask=multitask)
    other_params = other.init(jax.random.key(0), x)["params"]
    assert jax.tree.structure(other_params) == jax.tree.structure(params)
    assert [leaf.shape for leaf in jax.tree.leaves(other_params)] == [leaf.shape for leaf in jax.tree.leaves(params)]
    np.testing.assert_allclose(other.apply({"params": params}, x), module.apply({"params": params}, x),
                               rtol=2e-4, atol=2e-5)


def test_pcgrads_alternatives_give_its_gradients_and_the_task_loop_and_scan_mlps_its_disjoint_function():
    from mtsac_jax.agents import sac
    from tests.test_gradients import T as NUM_TASKS
    from tests.test_gradients import _gradient_config, random_batch, sac_with

    bench_module("gradients").register_alternatives()
    parts = sac_with("mlp_multi_head", "pcgrad")
    state = sac.init_state(parts, jax.random.key(0))
    loss = sac.critic_loss(parts, state, random_batch(jax.random.key(1)), jax.random.key(2))
    results = {}
    for name in ("pcgrad", "pcgrad_concatenated", "pcgrad_stepwise"):
        method = GRADIENTS.get(name).make(_gradient_config("mean"), NUM_TASKS)
        results[name] = method.value_and_grad(loss, state.critic.params, method.init(None, jax.random.key(3)))[2]
    for name in ("pcgrad_concatenated", "pcgrad_stepwise"):
        for ours, theirs in zip(jax.tree.leaves(results["pcgrad"]), jax.tree.leaves(results[name])):
            np.testing.assert_allclose(theirs, ours, rtol=2e-4, atol=1e-6)
        # a loss with per-task parameters only (as the temperature's) keeps each task's own gradient
        own = {"own": jnp.arange(NUM_TASKS, dtype=jnp.float32)[:, None]}
        alone = gradients.TaskLoss(lambda p, inputs: (p["own"][:, 0] ** 2, None), {}, {"own": 0}, {})
        method = GRADIENTS.get(name).make(_gradient_config("mean"), NUM_TASKS)
        grads = method.value_and_grad(alone, own, method.init(None, jax.random.key(3)))[2]
        np.testing.assert_allclose(grads["own"], 2 * own["own"] / NUM_TASKS, rtol=1e-6)

    config = networks.network_config("mlp")
    multitask = ml_collections.ConfigDict({"should_use_multi_head_policy": True, "should_use_disjoint_policy": True})
    sizes = {"hidden_dim": H, "num_layers": 2, "output_dim": OUT, "multitask": multitask}
    disjoint = networks.NETWORKS.get("mlp").make(config, **sizes)
    x = jax.random.normal(jax.random.key(4), (3, 5, 6))
    params = disjoint.init(jax.random.key(0), x)["params"]
    for name in ("mlp_task_loop", "mlp_task_scan"):
        other = networks.NETWORKS.get(name).make(config, **sizes)
        assert jax.tree.structure(other.init(jax.random.key(0), x)["params"]) == jax.tree.structure(params)
        np.testing.assert_allclose(other.apply({"params": params}, x), disjoint.apply({"params": params}, x),
                                   rtol=2e-5, atol=2e-6)
