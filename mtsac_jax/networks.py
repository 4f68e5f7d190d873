"""Actor and twin critics with a leading task axis.

Every network maps inputs shaped (T, B, ...) to outputs shaped (T, B, ...). A per-task
layer (a multi-head output layer, or every layer of a disjoint network) is a `nn.Dense`
vmapped over the task axis of both its parameters and its input, so each sample goes
through its own task's weights only.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

PerTaskDense = nn.vmap(
    nn.Dense,
    variable_axes={"params": 0},
    split_rngs={"params": True},
    in_axes=0,
    out_axes=0,
)


class TaskEmbedding(nn.Module):
    """A learned embedding per task, concatenated to the state (`should_use_task_encoder`)."""

    embedding_dim: int

    @nn.compact
    def __call__(self, x):  # (T, B, D) -> (T, B, D + E)
        num_tasks, batch = x.shape[:2]
        table = self.param("embedding", nn.initializers.normal(1.0), (num_tasks, self.embedding_dim))
        tiled = jnp.broadcast_to(table[:, None, :], (num_tasks, batch, self.embedding_dim))
        return jnp.concatenate([x, tiled.astype(x.dtype)], axis=-1)


class TaskMLP(nn.Module):
    """ReLU MLP over (T, B, D). `multi_head`: the output layer is per task;
    `disjoint`: every layer is per task (fully separate networks).

    Shared layers see the task axis folded into the batch, (T*B, D): one plain matmul whose
    backward pass needs no transposed copies of the activations (docs/performance.md)."""

    hidden_dim: int
    num_layers: int
    output_dim: int
    multi_head: bool = False
    disjoint: bool = False
    task_embedding_dim: int = 0

    @nn.compact
    def __call__(self, x):
        if self.task_embedding_dim:
            x = TaskEmbedding(self.task_embedding_dim, name="task_embedding")(x)
        num_tasks, batch = x.shape[:2]
        if not self.disjoint:
            x = x.reshape(num_tasks * batch, -1)
        hidden = PerTaskDense if self.disjoint else nn.Dense
        for index in range(self.num_layers):
            x = nn.relu(hidden(self.hidden_dim, name=f"hidden_{index}")(x))
        if not self.disjoint and self.multi_head:
            x = x.reshape(num_tasks, batch, -1)
        head = PerTaskDense if (self.disjoint or self.multi_head) else nn.Dense
        return head(self.output_dim, name="head")(x).reshape(num_tasks, batch, -1)


class Actor(nn.Module):
    """Gaussian policy before the tanh squashing: returns (mean, log_std), each (T, B, A)."""

    action_dim: int
    hidden_dim: int
    num_layers: int
    log_std_min: float
    log_std_max: float
    multi_head: bool = False
    disjoint: bool = False
    task_embedding_dim: int = 0

    @nn.compact
    def __call__(self, obs):
        out = TaskMLP(
            self.hidden_dim,
            self.num_layers,
            2 * self.action_dim,
            self.multi_head,
            self.disjoint,
            self.task_embedding_dim,
            name="mlp",
        )(obs)
        mean, raw_log_std = jnp.split(out, 2, axis=-1)
        # mtrl's bound: tanh maps the raw output smoothly into [log_std_min, log_std_max].
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (jnp.tanh(raw_log_std) + 1.0)
        return mean, log_std


class Critic(nn.Module):
    """Q(s, a): (T, B, D), (T, B, A) -> (T, B)."""

    hidden_dim: int
    num_layers: int
    multi_head: bool = False
    disjoint: bool = False
    task_embedding_dim: int = 0

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        q = TaskMLP(
            self.hidden_dim, self.num_layers, 1, self.multi_head, self.disjoint, self.task_embedding_dim, name="mlp"
        )(x)
        return q[..., 0]


_CriticEnsemble = nn.vmap(
    Critic,
    variable_axes={"params": 0},
    split_rngs={"params": True},
    in_axes=0,
    out_axes=0,
)


class TwinCritic(Critic):
    """Two independent critics (same fields as `Critic`) as one vmapped ensemble:
    (T, B, D), (T, B, A) -> (2, T, B).

    The inputs are broadcast along the ensemble axis first, so every layer is one batched
    matmul over a leading ensemble axis (no activation transposes in the backward pass)."""

    @nn.compact
    def __call__(self, obs, action):
        twin = lambda x: jnp.broadcast_to(x, (2, *x.shape))  # noqa: E731
        return _CriticEnsemble(
            self.hidden_dim, self.num_layers, self.multi_head, self.disjoint, self.task_embedding_dim, name="ensemble"
        )(twin(obs), twin(action))


def sample_tanh_gaussian(mean, log_std, key):
    """a = tanh(u), u ~ N(mean, std); log pi(a|s) with the tanh change of variables
    (Haarnoja et al. 2018a, appendix C, eq. 21), summed over action dimensions."""
    noise = jax.random.normal(key, mean.shape, mean.dtype)
    pre_tanh = mean + jnp.exp(log_std) * noise
    gaussian_log_prob = -0.5 * noise**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    # log(1 - tanh(u)^2) written stably as 2 (log 2 - u - softplus(-2u)).
    log_det = 2.0 * (jnp.log(2.0) - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh))
    return jnp.tanh(pre_tanh), jnp.sum(gaussian_log_prob - log_det, axis=-1)
