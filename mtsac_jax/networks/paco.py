"""`paco`: Parameter-Compositional multi-task networks, each task's parameters a combination of K
shared parameter sets by its own vector (Sun et al. 2022, "PaCo: Parameter-
Compositional Multi-Task Reinforcement Learning", sec. 4).

The network of task t has parameters theta_t = Phi w_t (eq. 2): Phi holds K parameter sets of
the whole network (every layer's kernels and biases with a leading set axis), w_t (the task's
`composition`, a learned K-vector) composes them. The composed weights are computed once per task
on (T, K) x (K, ...) and each task's samples go through its own composed layers, one batched
contraction per layer: never K forward passes. Phi gets every task's gradient, w_t only its own.

Training stability (sec. 4.3) is the network's `LossGuard`: a task whose critic or actor loss
exceeds `loss_threshold` is masked out of that loss (it moves neither Phi nor its w_t in that
step), and its w_t is reset to the mean of the other tasks' vectors, with its Adam moments set
to zero. With `should_use_multi_head_policy` the output layer is a free per-task layer instead
of a composed one.

Run it:

    python train.py --config=configs/paco.py:mt10
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mtsac_jax.networks import LossGuard, Network, PerTaskDense, TaskEmbedding, make_from_keys, stacked_parameters

COMPOSITION = "composition"  # the name of the per-task compositional vectors in the parameter tree


class CompositionalDense(nn.Module):
    """A dense layer whose per-task weights are composed from K parameter sets:
    x (T, B, D), w (T, K) -> (T, B, features)."""

    features: int
    num_sets: int

    @nn.compact
    def __call__(self, x, composition):
        kernels, biases = stacked_parameters(self, self.num_sets, x.shape[-1], self.features)
        # once per task, as one (T, K) @ (K, D*F) product: its gradients are plain products too,
        # where a contraction over the set axis of (K, D, F) moves weight-sized arrays between layouts
        kernel = (composition @ kernels.reshape(self.num_sets, -1)).reshape(-1, *kernels.shape[1:])  # (T, D, F)
        bias = composition @ biases
        return jnp.einsum("tbd,tdf->tbf", x, kernel) + bias[:, None, :]


class PaCo(nn.Module):
    """(T, B, D), None -> (T, B, output_dim)."""

    hidden_dim: int
    num_layers: int
    output_dim: int
    multi_head: bool
    num_parameter_sets: int

    @nn.compact
    def __call__(self, x, context=None):
        num_tasks = x.shape[0]
        num_sets = self.num_parameter_sets
        scale = num_sets**-0.5  # sum_k w_k phi_k keeps phi's initial variance
        composition = TaskEmbedding(num_sets, name=COMPOSITION)(num_tasks) * scale  # (T, K)
        for index in range(self.num_layers):
            x = nn.relu(CompositionalDense(self.hidden_dim, num_sets, name=f"hidden_{index}")(x, composition))
        if self.multi_head:
            return PerTaskDense(self.output_dim, name="head")(x)
        return CompositionalDense(self.output_dim, num_sets, name="head")(x, composition)


def reset_diverged(params, opt_state, diverged):
    """Task rows of every `composition` leaf (task axis -2) where `diverged` (T,) is set: the
    vector back to the mean of the other tasks' (unchanged if all diverged), its Adam moments
    (any leaf of the optimizer state on the same path) to zero."""
    keep = ~diverged[:, None]

    def on_composition(path, leaf, reset):
        if not any(getattr(entry, "key", None) == COMPOSITION for entry in path):
            return leaf
        return jnp.where(diverged[:, None], reset(leaf), leaf)

    def mean_of_others(leaf):
        total = jnp.sum(jnp.where(keep, leaf, 0.0), axis=-2, keepdims=True)
        count = jnp.maximum(jnp.sum(keep), 1)
        return jnp.where(jnp.any(keep), total / count, leaf)

    params = jax.tree_util.tree_map_with_path(lambda p, x: on_composition(p, x, mean_of_others), params)
    opt_state = jax.tree_util.tree_map_with_path(
        lambda p, x: on_composition(p, x, jnp.zeros_like) if jnp.ndim(x) >= 2 else x, opt_state
    )
    return params, opt_state


def loss_guard(config: ml_collections.ConfigDict) -> LossGuard:
    return LossGuard(threshold=config.loss_threshold, reset=reset_diverged)


def default_config() -> dict:
    """K = 5 parameter sets (the paper's MT10 setting); a task's loss above `loss_threshold` is
    masked out and its compositional vector reset."""
    return {"num_parameter_sets": 5, "loss_threshold": 3000.0}


NETWORK = Network(
    make=make_from_keys(PaCo), default_config=default_config, uses_context=False, loss_guard=loss_guard
)
