"""`moore`: Mixture Of ORthogonal Experts, k shared experts made orthonormal per sample and mixed
by per-task weights (Hendawy et al. 2024, "Multi-Task Reinforcement Learning
with Mixture of Orthogonal Experts", sec. 4).

k shared experts (MLPs on the state) give k representations per sample, U (k, H); Gram-Schmidt
across the expert axis makes them orthonormal per sample, V = GS(U) (eq. 4-5); the task's
weights w_c (a linear map of the task encoding: of its one-hot in the paper, of the context
when a task encoder gives one) mix them, v_c = tanh(V^T w_c) (eq. 6, with the tanh of the
authors' code), and an output layer (one per task with `should_use_multi_head_policy`, as the
paper's MT runs) maps v_c to the output. The experts carry a leading expert axis and read the
folded batch in one contraction; the task weights are computed once per task on (T, k).
Where the JAX baselines differ: they run every task's head on every sample and select one;
here each sample goes through its own task's head only.

Run it:

    python train.py --config=configs/moore.py:mt10
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtsac_jax.networks import FeedForward, Network, TaskEmbedding, experts, make_from_keys, output_layer

NORM_EPSILON = 1e-6  # keeps the normalisation's gradient finite for (near-)collinear experts


def gram_schmidt(u):
    """Orthonormalises u (k, N, H) across its first axis, per sample: row i of the result is u_i
    minus its projections on rows < i, divided by its norm. The norm is sqrt(|w|^2 + eps^2),
    so an expert collinear with earlier ones gives a (near-)zero row with a finite gradient."""
    basis = []
    for vector in u:
        for earlier in basis:
            vector = vector - jnp.sum(vector * earlier, axis=-1, keepdims=True) * earlier
        norm = jnp.sqrt(jnp.sum(vector * vector, axis=-1, keepdims=True) + NORM_EPSILON**2)
        basis.append(vector / norm)
    return jnp.stack(basis)


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
        representations = experts(FeedForward, self.num_experts, shared_input=True)(
            self.hidden_dim, self.num_layers, self.hidden_dim, name="experts"
        )(x.reshape(num_tasks * batch, -1))  # (k, T*B, H)
        basis = gram_schmidt(representations).reshape(self.num_experts, num_tasks, batch, -1)
        mixed = jax.nn.tanh(jnp.einsum("tk,ktbh->tbh", task_weights, basis))
        return output_layer(mixed, num_tasks, self.output_dim, per_task=self.multi_head)


def default_config() -> dict:
    """The paper's MT10 setting: k = 4 experts (6 on MT50)."""
    return {"num_experts": 4}


NETWORK = Network(make=make_from_keys(MOORE), default_config=default_config)
