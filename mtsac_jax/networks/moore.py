"""`moore`: Mixture Of ORthogonal Experts, k shared experts made orthonormal per sample and mixed
by per-task weights (Hendawy et al. 2024, "Multi-Task Reinforcement Learning
with Mixture of Orthogonal Experts", sec. 4).

k shared experts (MLPs on the state) give k representations per sample, U (k, H); Gram-Schmidt
across the expert axis makes them orthonormal per sample, V = GS(U) (eq. 4-5); the task's
weights w_c (a linear map of the task encoding: of its one-hot in the paper, of the context
when a task encoder gives one) mix them, v_c = tanh(V^T w_c) (eq. 6, with the tanh of the
authors' code), and an output layer (one per task with `should_use_multi_head_policy`, as the
paper's MT runs) maps v_c to the output. The experts' parameters carry a leading expert axis and
each expert reads the folded batch in plain matmuls; V^T w_c comes from the Cholesky factor of
the per-sample Gram matrix without forming V; the task weights are computed once per task on
(T, k).
Where the JAX baselines differ: they run every task's head on every sample and select one;
here each sample goes through its own task's head only.

Run it:

    python train.py --config=configs/moore.py:mt10
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtsac_jax.networks import Network, StackedFeedForward, TaskEmbedding, make_from_keys, output_layer

NORM_EPSILON = 1e-6  # keeps the normalisation's gradient finite for a zero representation
RELATIVE_EPSILON = 1e-3  # bounds the Gram matrix's condition for (near-)collinear experts


def orthonormal_mixture(u: list, weights):
    """w^T V for each sample: u, a list of k representations (N, H); weights (N, k); V (k, H) the
    Gram-Schmidt orthonormalisation of the sample's k representations (row i is u_i minus its
    projections on rows < i, divided by its norm) (eq. 4-6). Computed without V: the per-sample
    Gram matrix G = U U^T has the Cholesky factor L with U = L V, so w^T V = (L^-T w)^T U, and only
    G's k(k+1)/2 dot products, a k x k triangular solve per sample and one weighted sum of the u_i
    touch (N, H) arrays. A diagonal entry of L, the norm of u_i's residual, is
    sqrt(max(d, 0) + (r^2 |u_i|^2 + eps^2)), with r = `RELATIVE_EPSILON`: an expert (near-)collinear
    with earlier ones gets a (near-)zero row of V, a bounded mixture and finite gradients, where
    float32 rounding would otherwise leave d negative or a residual of rounding noise to divide by."""
    k = len(u)
    gram = {(i, j): jnp.sum(u[i] * u[j], axis=-1) for i in range(k) for j in range(i + 1)}  # (N,) each
    factor = {}
    for j in range(k):
        diagonal = gram[j, j] - sum((factor[j, m] ** 2 for m in range(j)), 0.0)
        factor[j, j] = jnp.sqrt(jnp.maximum(diagonal, 0.0) + RELATIVE_EPSILON**2 * gram[j, j] + NORM_EPSILON**2)
        for i in range(j + 1, k):
            factor[i, j] = (gram[i, j] - sum((factor[i, m] * factor[j, m] for m in range(j)), 0.0)) / factor[j, j]
    coefficients = [None] * k  # a = L^-T w, by back substitution
    for i in reversed(range(k)):
        later = sum((factor[m, i] * coefficients[m] for m in range(i + 1, k)), 0.0)
        coefficients[i] = (weights[:, i] - later) / factor[i, i]
    return sum(coefficient[:, None] * representation for coefficient, representation in zip(coefficients, u))


class MOORE(nn.Module):
    """(T, B, D), (T, E) | None -> (T, B, output_dim)."""

    hidden_dim: int
    num_layers: int
    output_dim: int
    multi_head: bool
    num_experts: int

    @nn.compact
    def __call__(self, x, context=None):
        num_tasks, batch = x.shape[:2]
        if context is None:  # a linear map of the one-hot: one learned weight vector per task
            task_weights = TaskEmbedding(self.num_experts, name="task_weights")(num_tasks)  # (T, k)
        else:
            task_weights = nn.Dense(self.num_experts, use_bias=False, name="task_weights")(context)
        representations = StackedFeedForward(self.hidden_dim, self.num_layers, self.hidden_dim, self.num_experts,
                                             name="experts")(x.reshape(num_tasks * batch, -1))  # k x (T*B, H)
        sample_weights = jnp.repeat(task_weights, batch, axis=0)  # (T*B, k)
        mixed = jax.nn.tanh(orthonormal_mixture(representations, sample_weights))
        return output_layer(mixed, num_tasks, self.output_dim, per_task=self.multi_head)


def default_config() -> dict:
    """The paper's MT10 setting: k = 4 experts (6 on MT50)."""
    return {"num_experts": 4}


NETWORK = Network(make=make_from_keys(MOORE), default_config=default_config)
