"""bench/ceiling.py's alternative formulations compute the same function, on the same parameters,
as the package's formulation of their network: its measurements compare formulations, nothing else."""

import sys

import jax
import ml_collections
import numpy as np
import pytest

from mtsac_jax import networks
from tests.conftest import REPO
from tests.test_architectures import H, OUT, SMALL, network

sys.path.insert(0, str(REPO / "bench"))
import ceiling  # noqa: E402


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
