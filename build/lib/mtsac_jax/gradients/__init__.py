"""Gradient methods: the `GRADIENTS` registry.

A gradient method turns a per-task loss into the gradient an optimizer applies: SAC calls it
once for each of its losses (critic, actor, temperature), and optax follows it. Its entry:

    init(params, key) -> state
    value_and_grad(per_task_loss, params, state) -> (losses, aux, grads, state)

where `per_task_loss(params) -> (losses: (T,), aux)`. The state (weights, initial losses,
their optimizer state, a key for methods that draw random numbers, ...) is part of the
agent's train state, so it is checkpointed and resumed with it; a method without state
returns None. `key` is the method's own stream (folded from the run's init key, so it leaves
every other stream as it is). `mean` (MT-SAC) optimises the mean of the per-task losses,
`jax.value_and_grad(losses.mean())`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections

from mtsac_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class GradientMethod:
    """A registered gradient method (see the module docstring for the two functions).

    make: `(config, num_tasks) -> GradientFunctions`, with `config` the `agent.gradient` section.
    default_config: the keys of `agent.gradient` besides `name`, with their defaults."""

    make: Callable[[ml_collections.ConfigDict, int], "GradientFunctions"]
    default_config: Callable[[], dict] = dict


@dataclasses.dataclass(frozen=True)
class GradientFunctions:
    init: Callable[[Any], Any]
    value_and_grad: Callable[..., tuple]


GRADIENTS: Registry[GradientMethod] = Registry("gradient method", "agent.gradient.name")
GRADIENTS.register("mean", "mtsac_jax.gradients.mean:METHOD")


def gradient_config(name: str) -> ml_collections.ConfigDict:
    """The `agent.gradient` section of a registered gradient method, at its defaults."""
    return ml_collections.ConfigDict({"name": name, **GRADIENTS.get(name).default_config()})


def build(config: ml_collections.ConfigDict, num_tasks: int) -> GradientFunctions:
    return GRADIENTS.get(config.name).make(config, num_tasks)
