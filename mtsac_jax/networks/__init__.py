"""Networks: the `NETWORKS` registry and the layout every network keeps.

A network maps inputs shaped (T, B, D) and a per-task context shaped (T, E) (or None) to
outputs shaped (T, B, H); the actor and the twin critics (`networks.heads`) put a policy or
a Q-value on it. Three layout facts keep the update at the matmul ceiling
(docs/performance.md) and every network keeps them:
- a shared layer sees the task axis folded into the batch, (T*B, D): one plain matmul whose
  backward pass needs no transposed copies of the activations;
- a per-task layer (an output head per task, every layer of a disjoint network) carries a
  leading T axis on its parameters and is vmapped over the task axis of parameters and input
  (`PerTaskDense`), so each sample goes through its own task's weights only;
- task-only quantities (an embedding, attention weights, a scale and shift) are computed once
  on (T, ...) and broadcast over the batch.

A registered `Network` is `make(config, hidden_dim=, num_layers=, output_dim=, multitask=)`,
which returns the unbound flax module, plus the default of its `agent.network` config
section. `agent.multitask.should_use_multi_head_policy` and `should_use_disjoint_policy`
choose the per-task layers; `should_use_task_encoder` adds a task encoding as the context
(`TaskConditioned`): mtrl's learned embedding per task, or, with
`task_encoder.description_embeddings`, a learned map of fixed task-description embeddings (CARE's
context encoder). A network that needs a task encoding and gets no context learns one per task
itself (`task_encoding`), which is the same as a linear map of the task's one-hot.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mtsac_jax.registry import NETWORKS


@dataclasses.dataclass(frozen=True)
class LossGuard:
    """A per-task loss mask-out and reset of diverging tasks (PaCo, Sun et al. 2022, sec. 4.3):
    a task whose loss exceeds `threshold` (or is not finite) is left out of that loss's gradient,
    and `reset(params, opt_state, diverged: (T,) bool) -> (params, opt_state)` mends its
    parameters after the step."""

    threshold: float
    reset: Callable

    def masked(self, loss):
        """The `gradients.TaskLoss` `loss` with diverged tasks' losses replaced by zero (no
        gradient), its aux extended to `(aux, losses, diverged)`, the losses as computed."""

        def fn(params, inputs):
            losses, aux = loss.fn(params, inputs)
            diverged = jax.lax.stop_gradient(~(losses <= self.threshold))
            return jnp.where(diverged, 0.0, losses), (aux, jax.lax.stop_gradient(losses), diverged)

        return dataclasses.replace(loss, fn=fn)


@dataclasses.dataclass(frozen=True)
class Network:
    """A registered network.

    make: `(config, *, hidden_dim, num_layers, output_dim, multitask) -> nn.Module`, where
        `config` is the `agent.network` section and `multitask` the `agent.multitask` one; the
        module's `__call__(x: (T, B, D), context: (T, E) | None) -> (T, B, output_dim)`.
    default_config: the keys of `agent.network` besides `name`, with their defaults.
    supports_disjoint: whether `should_use_disjoint_policy` (a whole network per task) applies.
    uses_context: whether a task encoder's context (`should_use_task_encoder`) applies.
    loss_guard: `(config) -> LossGuard` for a network whose training masks out and resets
        diverging tasks, else None.
    """

    make: Callable[..., nn.Module]
    default_config: Callable[[], dict] = dict
    supports_disjoint: bool = False
    uses_context: bool = True
    loss_guard: Callable[[ml_collections.ConfigDict], LossGuard] | None = None




def network_config(name: str) -> ml_collections.ConfigDict:
    """The `agent.network` section of a registered network, at its defaults."""
    return ml_collections.ConfigDict({"name": name, **NETWORKS.get(name).default_config()})


PerTaskDense = nn.vmap(
    nn.Dense,
    variable_axes={"params": 0},
    split_rngs={"params": True},
    in_axes=0,
    out_axes=0,
)


def stacked_parameters(module: nn.Module, num: int, inputs: int, features: int):
    """`num` dense layers' parameters declared on `module`, stacked: kernel (num, inputs, features),
    each slice initialised as `nn.Dense`'s (LeCun normal), and bias (num, features), zeros."""
    kernel = module.param("kernel", nn.initializers.lecun_normal(batch_axis=(0,)), (num, inputs, features))
    return kernel, module.param("bias", nn.initializers.zeros, (num, features))


class StackedDense(nn.Module):
    """`num` dense layers whose parameters are stacked, kernel (num, D, F) and bias (num, F),
    applied as `num` plain matmuls: a list of `num` inputs (N, D), or one input (N, D) all read,
    -> a list of `num` outputs (N, F). On a CPU,
    `num` plain (N, D) @ (D, F) products run faster than one contraction batched over the
    stacking axis, whose backward pass moves activations between layouts (docs/performance.md,
    section 6)."""

    features: int
    num: int

    @nn.compact
    def __call__(self, inputs):
        inputs = inputs if isinstance(inputs, list) else [inputs] * self.num
        kernel, bias = stacked_parameters(self, self.num, inputs[0].shape[-1], self.features)
        return [x @ kernel[index] + bias[index] for index, x in enumerate(inputs)]


class StackedFeedForward(nn.Module):
    """`num` networks on one input, each `num_layers - 1` ReLU layers then a linear `output` layer
    (an expert or encoder of the mixture networks: MOORE's experts, CARE's encoders), their
    parameters stacked, applied as plain matmuls (`StackedDense`): (N, D) -> a list of `num`
    outputs (N, output_dim)."""

    hidden_dim: int
    num_layers: int
    output_dim: int
    num: int

    @nn.compact
    def __call__(self, x):
        hidden = x
        for index in range(self.num_layers - 1):
            hidden = [nn.relu(h) for h in StackedDense(self.hidden_dim, self.num, name=f"hidden_{index}")(hidden)]
        return StackedDense(self.output_dim, self.num, name="output")(hidden)


class TaskEmbedding(nn.Module):
    """A learned embedding per task (mtrl's `should_use_task_encoder`): the (T, E) context."""

    embedding_dim: int

    @nn.compact
    def __call__(self, num_tasks: int):
        return self.param("embedding", nn.initializers.normal(1.0), (num_tasks, self.embedding_dim))


def task_encoding(context, num_tasks: int, dim: int):
    """The task encoding a network conditions on, (T, E): the context when there is one, else a
    learned `task_embedding` of `dim` per task. Call it inside a compact module's `__call__`."""
    if context is not None:
        return context
    return TaskEmbedding(dim, name="task_embedding")(num_tasks)


def hidden_stack(x, hidden_dim: int, num_layers: int):
    """`num_layers` shared ReLU layers `hidden_<i>` on x (N, D) -> (N, hidden_dim). Call it
    inside a compact module's `__call__`."""
    for index in range(num_layers):
        x = nn.relu(nn.Dense(hidden_dim, name=f"hidden_{index}")(x))
    return x


def make_from_keys(module_class):
    """A `Network.make` for a module whose fields are `hidden_dim, num_layers, output_dim,
    multi_head` and, by the same names, keys of its `agent.network` section (keys that are not
    fields, such as a loss guard's, stay out; so do `name` and `parent`, which every flax module
    has: the section's `name` names the registered network, not the module)."""
    fields = {field.name for field in dataclasses.fields(module_class)} - {"name", "parent"}

    def make(config, *, hidden_dim, num_layers, output_dim, multitask):
        keys = {key: value for key, value in config.items() if key in fields}
        return module_class(hidden_dim, num_layers, output_dim, multi_head=multitask.should_use_multi_head_policy,
                            **keys)

    return make


def output_layer(x, num_tasks: int, features: int, per_task: bool):
    """The output layer `head` on hidden features x, (T*B, H) or (T, B, H), -> (T, B, features):
    one shared `nn.Dense` on the folded batch, or one per task (`PerTaskDense`, a multi-head
    output). Call it inside a compact module's `__call__`."""
    if per_task:
        return PerTaskDense(features, name="head")(x.reshape(num_tasks, -1, x.shape[-1]))
    return nn.Dense(features, name="head")(x.reshape(-1, x.shape[-1])).reshape(num_tasks, -1, features)


def broadcast_concat(x, context):
    """x (T, B, D) with a per-task context (T, E) appended to every sample: (T, B, D + E)."""
    num_tasks, batch = x.shape[:2]
    tiled = jnp.broadcast_to(context[:, None, :], (num_tasks, batch, context.shape[-1]))
    return jnp.concatenate([x, tiled.astype(x.dtype)], axis=-1)


class DescriptionEncoder(nn.Module):
    """CARE's context encoder (Sodhani et al. 2021, sec. 4.1): fixed task-description embeddings
    (T, L) through a learned two-layer ReLU MLP to the (T, E) context."""

    embedding_dim: int

    @nn.compact
    def __call__(self, descriptions):  # (T, L), fixed
        x = nn.relu(nn.Dense(self.embedding_dim, name="hidden")(descriptions))
        return nn.Dense(self.embedding_dim, name="output")(x)


class TaskConditioned(nn.Module):
    """A registered network and its context in one parameter scope: `(T, B, D), descriptions ->
    (T, B, H)`.

    The context is the learned task embedding (`task_embedding`) when `task_embedding_dim` is
    positive, encoded from the tasks' description embeddings (T, L), given with each call,
    instead when `reads_descriptions`, else None. The network's parameters sit directly in this
    module's scope (`nn.share_scope`), beside `task_embedding`."""

    make_network: Callable[[], nn.Module]
    task_embedding_dim: int = 0
    reads_descriptions: bool = False

    def setup(self):
        self.network = self.make_network()
        nn.share_scope(self, self.network)
        if self.task_embedding_dim and self.reads_descriptions:
            self.task_embedding = DescriptionEncoder(self.task_embedding_dim)
        elif self.task_embedding_dim:
            self.task_embedding = TaskEmbedding(self.task_embedding_dim)

    def __call__(self, x, descriptions=None):
        if self.task_embedding_dim and self.reads_descriptions:
            context = self.task_embedding(descriptions)
        elif self.task_embedding_dim:
            context = self.task_embedding(x.shape[0])
        else:
            context = None
        return self.network(x, context)


def build(
    network: ml_collections.ConfigDict,
    multitask: ml_collections.ConfigDict,
    hidden_dim: int,
    num_layers: int,
    output_dim: int,
    reads_descriptions: bool = False,
) -> TaskConditioned:
    """The registered network `network.name` with its context, as a module named after the
    network (its parameters live under that name); with `reads_descriptions` its context is
    encoded from the tasks' description embeddings (T, L), which every call then gives. Call it
    inside a compact module."""
    make = functools.partial(
        NETWORKS.get(network.name).make,
        network,
        hidden_dim=hidden_dim,
        num_layers=num_layers,
        output_dim=output_dim,
        multitask=multitask,
    )
    embedding_dim = multitask.task_encoder.embedding_dim if multitask.should_use_task_encoder else 0
    return TaskConditioned(make, embedding_dim, reads_descriptions, name=network.name)
