"""`mean`: MT-SAC's gradient, of the mean of the per-task losses (Yu et al. 2019, sec. 5).

Every task has the same number of samples in a batch, so this equals mtrl's mean over the
whole batch. No state.

Run it:

    python train.py --config=configs/compose.py:env=metaworld-mt10,gradient=mean
"""

from __future__ import annotations

import jax

from mtsac_jax.gradients import GradientFunctions, GradientMethod


def init(params, key):
    del params, key
    return None


def value_and_grad(per_task_loss, params, state):
    def objective(params):
        losses, aux = per_task_loss(params)
        return losses.mean(), (losses, aux)

    (_, (losses, aux)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    return losses, aux, grads, state


METHOD = GradientMethod(make=lambda config, num_tasks: GradientFunctions(init=init, value_and_grad=value_and_grad))
