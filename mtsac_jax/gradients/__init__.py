"""Gradient methods: the `GRADIENTS` registry.

A gradient method turns a per-task loss into the gradient an optimizer applies: SAC calls it
once for each of its losses (critic, actor, temperature), and optax follows it. Its entry:

    init(params, key) -> state
    value_and_grad(per_task_loss, params, state) -> (losses, aux, grads, state)

where `per_task_loss(params) -> (losses: (T,), aux)` is a `TaskLoss`: it also says which
leaves of the parameters and of its inputs carry the task axis, so that a method can take
each task's gradient apart (`per_task_value_and_grad`). The state (weights, initial losses,
their optimizer state, a key for methods that draw random numbers, ...) is part of the
agent's train state, so it is checkpointed and resumed with it; a method without state
returns None. `key` is the method's own stream (folded from the run's init key, so it leaves
every other stream as it is). `mean` (MT-SAC) optimises the mean of the per-task losses,
`jax.value_and_grad(losses.mean())`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from mtsac_jax.registry import GRADIENTS


@dataclasses.dataclass(frozen=True)
class GradientMethod:
    """A registered gradient method (see the module docstring for the two functions).

    make: `(config, num_tasks) -> GradientFunctions`, with `config` the `agent.gradient` section.
    default_config: the keys of `agent.gradient` besides `name`, with their defaults.
    validate: `(config) -> None`, raises `ConfigError` naming the key and the fix."""

    make: Callable[[ml_collections.ConfigDict, int], "GradientFunctions"]
    default_config: Callable[[], dict] = dict
    validate: Callable[[ml_collections.ConfigDict], None] = lambda config: None


@dataclasses.dataclass(frozen=True)
class GradientFunctions:
    init: Callable[[Any], Any]
    value_and_grad: Callable[..., tuple]


@dataclasses.dataclass(frozen=True)
class TaskLoss:
    """A per-task loss `fn(params, inputs) -> (losses (T,), aux)` on its inputs, callable as
    `loss(params)`. `param_axes` and `input_axes` are pytrees like the parameters and the
    inputs holding each leaf's task axis, or None for a leaf that all tasks share; a task's
    share of the loss is `fn` on its slice of every task-axis leaf (kept as an axis of size 1).
    Leaves of `aux` have a leading task axis."""

    fn: Callable[[Any, Any], tuple]
    inputs: Any
    param_axes: Any
    input_axes: Any

    def __call__(self, params):
        return self.fn(params, self.inputs)


def loss_input(axes: str = "task"):
    """A field of a `TaskLoss`'s typed inputs (a `flax.struct` dataclass) with where its task
    axis is: "task" (the first axis of every leaf), "shared" (none: every task reads it whole),
    or a kind that the loss's owner resolves (`input_axes`)."""
    return flax.struct.field(metadata={"task_axes": axes})


def input_axes(inputs, kinds: dict[str, Any]):
    """`inputs` (a dataclass of `loss_input` fields) with each leaf replaced by its task axis;
    `kinds` gives the axes of each kind besides "task" and "shared"."""

    def axes(field):
        value, kind = getattr(inputs, field.name), field.metadata["task_axes"]
        if kind in ("task", "shared"):
            return jax.tree.map(lambda _: 0 if kind == "task" else None, value)
        return kinds[kind]

    return inputs.replace(**{field.name: axes(field) for field in dataclasses.fields(inputs)})


def is_axis(x) -> bool:
    """Whether `x` is a leaf of a `TaskLoss`'s axes (an axis, or None for none)."""
    return x is None or isinstance(x, int)


def per_task_value_and_grad(loss: TaskLoss, params):
    """Every task's loss and gradient, from one backward pass vmapped over the task axis of
    the single-task loss: `(losses (T,), aux, grads)`, where a shared leaf's gradient gets a
    leading task axis (T, ...) holding each task's gradient of its own loss, and a per-task
    leaf's gradient is in place (each task's slice from its own loss). Their sum over tasks is
    the gradient of `losses.sum()`."""

    def single_task(task_params, task_inputs):
        keep = lambda axis, leaf: leaf if axis is None else jnp.expand_dims(leaf, axis)  # noqa: E731
        task_params = jax.tree.map(keep, loss.param_axes, task_params, is_leaf=is_axis)
        task_inputs = jax.tree.map(keep, loss.input_axes, task_inputs, is_leaf=is_axis)
        losses, aux = loss.fn(task_params, task_inputs)
        return losses[0], jax.tree.map(lambda leaf: leaf[0], aux)

    grad_axes = jax.tree.map(lambda axis: 0 if axis is None else axis, loss.param_axes, is_leaf=is_axis)
    (losses, aux), grads = jax.vmap(
        jax.value_and_grad(single_task, has_aux=True),
        in_axes=(loss.param_axes, loss.input_axes),
        out_axes=((0, 0), grad_axes),
    )(params, loss.inputs)
    return losses, aux, grads


def task_axes(init: Callable[[int], Any], num_tasks: int):
    """The task axis of each leaf that `init(num_tasks)` returns (None for a leaf whose shape
    does not depend on the number of tasks): the axis whose size changes with one task more.
    Only shapes are computed."""
    with_tasks = jax.eval_shape(functools.partial(init, num_tasks))
    one_more = jax.eval_shape(functools.partial(init, num_tasks + 1))

    def axis(leaf, other):
        changed = [index for index, (a, b) in enumerate(zip(leaf.shape, other.shape)) if a != b]
        if len(changed) > 1 or len(leaf.shape) != len(other.shape):
            raise ValueError(f"a leaf of shape {leaf.shape} (and {other.shape} with one task more) has no single task axis")
        return changed[0] if changed else None

    return jax.tree.map(axis, with_tasks, one_more)




def gradient_config(name: str) -> ml_collections.ConfigDict:
    """The `agent.gradient` section of a registered gradient method, at its defaults."""
    return ml_collections.ConfigDict({"name": name, **GRADIENTS.get(name).default_config()})


def build(config: ml_collections.ConfigDict, num_tasks: int) -> GradientFunctions:
    return GRADIENTS.get(config.name).make(config, num_tasks)
