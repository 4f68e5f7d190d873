"""`pcgrad`: gradient surgery, each task's gradient of the shared parameters projected off the
gradients it conflicts with (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning", alg. 1).

Each task's gradient g_i of the shared parameters is projected, against every other task j in
a random order of its own, onto the normal plane of g_j where the two conflict:

    if g_i^PC . g_j < 0:  g_i^PC <- g_i^PC - (g_i^PC . g_j / |g_j|^2) g_j

with g_j the original gradient of task j (alg. 1, line 5); the projected gradients are combined
by their mean (`reduction="mean"`, as mtrl, so that without conflicts the result is MT-SAC's
gradient) or their sum (`"sum"`, the paper's). Per-task parameters (a task embedding, the heads
of a multi-head network, a disentangled log-alpha, ...) keep each task's own gradient, reduced
the same way. The per-task gradients come from one backward pass vmapped over the task axis of
the single-task loss (`gradients.per_task_value_and_grad`); the projections run on the (T, T)
matrix of their dot products, summed leaf by leaf, not on the (T, P) gradients
(`projection_coefficients`), and the result is one weighted sum of each leaf's task gradients. The
orders are drawn from the method's key, which its state carries, so a run reproduces and
resumes exactly.

mtrl differs: it projects every parameter as one vector (its MT-SAC has no per-task ones) and
divides by |g_j| + 1e-8 instead of |g_j|.

Run it:

    python train.py --config=configs/compose.py:env=metaworld-mt10,gradient=pcgrad
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections

from mtsac_jax.gradients import GradientFunctions, GradientMethod, is_axis, mean, per_task_value_and_grad
from mtsac_jax.registry import check_choice

REDUCTIONS = ("mean", "sum")


def init(params, key):
    del params
    return {"key": jax.random.key_data(key)}


def projection_coefficients(gram, orders):
    """Alg. 1 in the span of the task gradients: `gram` (T, T) holds g_i . g_j and task i
    visits the others in the order `orders[i]` (a permutation of range(T); i itself is skipped).
    Returns A (T, T) with g_i^PC = sum_m A_im g_m: every dot product alg. 1 needs is A @ gram,
    so the projection never touches the (T, P) gradients until A @ grads."""
    num_tasks = gram.shape[0]
    tasks = jnp.arange(num_tasks)

    def visit(coefficients, position):
        other = orders[:, position]  # (T,): the task each task projects against now
        dot = jnp.sum(coefficients * gram[other], axis=-1)  # g_i^PC . g_other
        conflict = (dot < 0) & (other != tasks)
        norm_sq = jnp.where(conflict, gram[other, other], 1.0)
        step = jnp.where(conflict, dot / norm_sq, 0.0)
        return coefficients - step[:, None] * jax.nn.one_hot(other, num_tasks, dtype=gram.dtype), None

    coefficients, _ = jax.lax.scan(visit, jnp.eye(num_tasks, dtype=gram.dtype), jnp.arange(num_tasks))
    return coefficients


def project_conflicting(grads, orders):
    """Alg. 1 on flat per-task gradients `grads` (T, P): the projected gradients (T, P)."""
    return projection_coefficients(grads @ grads.T, orders) @ grads


def combine_shared(shared, orders, scale):
    """Alg. 1's combined gradient of the shared parameters: `shared`, each leaf's task gradients
    flattened (T, P_l); returns each leaf's combination (P_l,). The Gram matrix of the whole
    shared gradients is summed leaf by leaf (no (T, P) copy), the result one weighted sum per leaf."""
    gram = sum(leaf @ leaf.T for leaf in shared)
    weights = projection_coefficients(gram, orders).sum(axis=0) * scale  # (T,)
    return [weights @ leaf for leaf in shared]


def value_and_grad(per_task_loss, params, state, reduction: str, combine=combine_shared):
    """`combine(shared, orders, scale)` turns the shared leaves' task gradients into their
    combination (`combine_shared`, or another formulation of it)."""
    losses, aux, grads = per_task_value_and_grad(per_task_loss, params)
    num_tasks = losses.shape[0]
    key, order_key = jax.random.split(jax.random.wrap_key_data(state["key"]))
    orders = jax.vmap(lambda k: jax.random.permutation(k, num_tasks))(jax.random.split(order_key, num_tasks))
    scale = 1.0 / num_tasks if reduction == "mean" else 1.0

    leaves, treedef = jax.tree.flatten(grads)
    axes = jax.tree.leaves(per_task_loss.param_axes, is_leaf=is_axis)
    shared = [leaf.reshape(num_tasks, -1) for leaf, axis in zip(leaves, axes) if axis is None]  # each (T, P_l)
    shared = iter(combine(shared, orders, scale) if shared else [])
    out = [next(shared).reshape(leaf.shape[1:]) if axis is None else leaf * scale for leaf, axis in zip(leaves, axes)]
    return losses, aux, jax.tree.unflatten(treedef, out), {"key": jax.random.key_data(key)}


def default_config() -> dict:
    """reduction: how the projected task gradients combine, "mean" (mtrl) or "sum" (the paper)."""
    return {"reduction": "mean"}


def validate(config: ml_collections.ConfigDict) -> None:
    check_choice("agent.gradient.reduction", config.reduction, REDUCTIONS)


def make(config: ml_collections.ConfigDict, num_tasks: int) -> GradientFunctions:
    if num_tasks == 1:  # nothing to project against: the loss's own gradient (mean and sum agree)
        return GradientFunctions(init=init, value_and_grad=mean.value_and_grad)
    return GradientFunctions(init=init, value_and_grad=functools.partial(value_and_grad, reduction=config.reduction))


METHOD = GradientMethod(make=make, default_config=default_config, validate=validate)
