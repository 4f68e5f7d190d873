"""`gradnorm`: learned per-task loss weights, so that the tasks' gradient norms at the last shared
layer follow their relative inverse training rates (Chen et al. 2018, "GradNorm", sec. 3, alg. 1).

The network descends L = (1/T) sum_i w_i L_i (with all w_i = 1 this is MT-SAC's mean). The
weights follow their own loss, the L1 distance of each task's gradient norm at the last shared
layer W, G_i = w_i |grad_W L_i|, from its target (eq. 1-2):

    L_grad = sum_i | G_i - mean(G) * r_i^alpha |,   r_i = L~_i / mean(L~),  L~_i = L_i(t) / L_i(0)

the target held constant; they are then renormalised to sum to T. `alpha` sets how strongly
tasks that train slower are pulled up (mtrl: 1.0). The initial losses L_i(0) are those of the
first update; weights, initial losses and the weights' Adam state are the method's state, so
they are checkpointed and resumed with the run. W is the shared layer the forward pass reaches
last (a shared output layer, or the last hidden layer under per-task heads), found from the
loss's computation; a loss with no shared parameters (a disentangled log-alpha) keeps weights 1.

Where this differs: SAC's actor and temperature losses can be negative, so training rates use
|L_i(t)| / |L_i(0)|; weights are kept at 1e-3 or more before renormalising. mtrl differs in
three ways: it takes L_i(0) as the previous update's loss, updates the weights with lr 1e-6
(here `lr`, the paper's 0.025 by default), and normalises them to sum to 1 without writing the
result back.

Run it:

    python train.py --config=configs/compose.py:env=metaworld-mt10,gradient=gradnorm
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mtsac_jax.gradients import GradientFunctions, GradientMethod, is_axis, per_task_value_and_grad
from mtsac_jax.registry import ConfigError

MIN_WEIGHT = 1e-3


def last_shared_layer(loss, params) -> list[bool]:
    """For each leaf of `params` (flattened), whether it belongs to the last shared layer: the
    module of the shared leaf whose first use comes last in the loss's forward computation."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    leaves = [leaf for _, leaf in paths]
    axes = jax.tree.leaves(loss.param_axes, is_leaf=is_axis)
    jaxpr = jax.make_jaxpr(lambda *flat: loss.fn(jax.tree.unflatten(treedef, flat), loss.inputs))(*leaves).jaxpr
    position = {id(var): index for index, var in enumerate(jaxpr.invars)}
    first_use = {}
    for step, equation in enumerate(jaxpr.eqns):
        for var in equation.invars:
            if id(var) in position:
                first_use.setdefault(position[id(var)], step)
    shared = [index for index, axis in enumerate(axes) if axis is None and index in first_use]
    if not shared:
        return [False] * len(leaves)
    module = paths[max(shared, key=lambda index: first_use[index])][0][:-1]
    return [axes[index] is None and paths[index][0][:-1] == module for index in range(len(leaves))]


def init(params, key, num_tasks, optimizer):
    del params, key
    weights = jnp.ones((num_tasks,), jnp.float32)
    return {
        "weights": weights,
        "initial_losses": jnp.ones((num_tasks,), jnp.float32),
        "started": jnp.zeros((), bool),
        "opt_state": optimizer.init(weights),
    }


def value_and_grad(per_task_loss, params, state, alpha, optimizer):
    losses, aux, grads = per_task_value_and_grad(per_task_loss, params)
    num_tasks = losses.shape[0]
    weights = state["weights"]
    initial = jnp.where(state["started"], state["initial_losses"], losses)

    leaves, treedef = jax.tree.flatten(grads)
    axes = jax.tree.leaves(per_task_loss.param_axes, is_leaf=is_axis)

    def weighted(leaf, axis):  # (1/T) sum_i w_i grad L_i, each task's share scaled by its weight
        if axis is None:
            return jnp.tensordot(weights, leaf, axes=1) / num_tasks
        shape = [1] * leaf.ndim
        shape[axis] = num_tasks
        return leaf * weights.reshape(shape) / num_tasks

    out = [weighted(leaf, axis) for leaf, axis in zip(leaves, axes)]
    layer = [leaf for leaf, in_layer in zip(leaves, last_shared_layer(per_task_loss, params)) if in_layer]
    if layer:
        norms = jnp.sqrt(sum(jnp.sum(leaf.reshape(num_tasks, -1) ** 2, axis=1) for leaf in layer))  # |grad_W L_i|
        grad_norms = weights * norms  # G_i
        rates = jnp.abs(losses) / jnp.maximum(jnp.abs(initial), 1e-12)
        target = jax.lax.stop_gradient(grad_norms.mean() * (rates / rates.mean()) ** alpha)
        weight_grad = jnp.sign(grad_norms - target) * norms  # d L_grad / d w_i, the target constant
        updates, opt_state = optimizer.update(weight_grad, state["opt_state"], weights)
        new_weights = jnp.maximum(optax.apply_updates(weights, updates), MIN_WEIGHT)
        new_weights = num_tasks * new_weights / new_weights.sum()
    else:
        new_weights, opt_state = weights, state["opt_state"]
    new_state = {"weights": new_weights, "initial_losses": initial, "started": jnp.ones((), bool),
                 "opt_state": opt_state}
    return losses, aux, jax.tree.unflatten(treedef, out), new_state


def default_config() -> dict:
    """alpha: the restoring force towards equal training rates (mtrl: 1.0); lr: Adam's step on
    the weights (the paper's 0.025)."""
    return {"alpha": 1.0, "lr": 0.025}


def validate(config: ml_collections.ConfigDict) -> None:
    if not config.alpha >= 0:
        raise ConfigError(f"agent.gradient.alpha={config.alpha!r} must be >= 0. Fix: e.g. --config.agent.gradient.alpha=1.0.")
    if not config.lr > 0:
        raise ConfigError(f"agent.gradient.lr={config.lr!r} must be positive. Fix: e.g. --config.agent.gradient.lr=0.025.")


def make(config: ml_collections.ConfigDict, num_tasks: int) -> GradientFunctions:
    optimizer = optax.adam(config.lr)
    return GradientFunctions(
        init=functools.partial(init, num_tasks=num_tasks, optimizer=optimizer),
        value_and_grad=functools.partial(value_and_grad, alpha=config.alpha, optimizer=optimizer),
    )


METHOD = GradientMethod(make=make, default_config=default_config, validate=validate)
