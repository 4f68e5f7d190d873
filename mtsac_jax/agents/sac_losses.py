"""SAC's per-task losses on typed inputs (Haarnoja et al. 2018b): the critics' soft Bellman
residual (eq. 5), the policy loss (eq. 7) and the temperature loss (eq. 18).

Each is `fn(sac, params, inputs) -> ((T,) losses, aux)`, `sac` the `mtsac_jax.agents.sac.SAC`
bundle; the inputs are `flax.struct` dataclasses whose fields declare their task axes
(`gradients.loss_input`), so a gradient method can take any task's share of a loss
(`sac.task_loss` makes the `TaskLoss`).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from mtsac_jax import gradients
from mtsac_jax.networks import heads


def alpha(log_alpha, num_tasks: int):  # (T, 1): broadcasts against (T, B)
    return jnp.broadcast_to(jnp.exp(log_alpha), (num_tasks,))[:, None]


def temperature(log_alpha, value_scale, num_tasks: int):
    """The entropy term's weight in the critics' units, (T, 1): alpha_t, times task t's value
    scale when reward normalisation scales the critics' values (`reward_scale`: the critics
    learn the whole soft return scaled, rewards and entropy bonus alike)."""
    weight = alpha(log_alpha, num_tasks)
    return weight if value_scale is None else weight * value_scale[:, None]


# ----- typed loss inputs: each field declares its task axes (`gradients.loss_input`) -----


@flax.struct.dataclass
class CriticInputs:
    batch: dict = gradients.loss_input()  # the stratified batch, each leaf (T, B, ...)
    noise: jax.Array = gradients.loss_input()  # (T, B, A): the next actions' sampling noise
    next_features: jax.Array = gradients.loss_input()  # the encoder's features of next_obs, for the actor
    target_next_features: jax.Array = gradients.loss_input()  # the target encoder's, for the target critics
    actor_params: dict = gradients.loss_input("actor")
    target_critic_params: dict = gradients.loss_input("critic")
    log_alpha: jax.Array = gradients.loss_input("alpha")
    descriptions: jax.Array | None = gradients.loss_input()  # (T, L) or None
    value_scale: jax.Array | None = gradients.loss_input()  # (T,) with reward normalisation, else None


@flax.struct.dataclass
class ActorInputs:
    features: jax.Array = gradients.loss_input()  # (T, B, F): the encoder's features, its gradient stopped
    noise: jax.Array = gradients.loss_input()  # (T, B, A)
    critic_params: dict = gradients.loss_input("critic")
    log_alpha: jax.Array = gradients.loss_input("alpha")
    descriptions: jax.Array | None = gradients.loss_input()
    value_scale: jax.Array | None = gradients.loss_input()


@flax.struct.dataclass
class TemperatureInputs:
    log_prob: jax.Array = gradients.loss_input()  # (T, B): the actor's log pi


# ----- per-task losses: fn(params, inputs) -> ((T,) loss vector, aux) -----


def critic_losses(sac, critic_params, inputs: CriticInputs):
    """Soft Bellman residual (eq. 5) with the soft target of eq. 3 through min of twin
    target critics, as the critics' value head measures it (squared error, or cross-entropy
    on a categorical support). Bootstraps through truncation: only `terminated` cuts the target."""
    batch, descriptions = inputs.batch, inputs.descriptions
    num_tasks = batch["obs"].shape[0]
    mean, log_std = sac.actor.apply(inputs.actor_params, inputs.next_features, descriptions)
    next_action, next_log_prob = heads.tanh_gaussian(mean, log_std, inputs.noise)
    target_q = sac.critic.apply(inputs.target_critic_params, inputs.target_next_features, next_action, descriptions,
                                method="q")
    soft_value = target_q.min(axis=0) - temperature(inputs.log_alpha, inputs.value_scale, num_tasks) * next_log_prob
    target = batch["reward"] + sac.discount * (1.0 - batch["terminated"]) * soft_value
    features = sac.critic.apply(critic_params, batch["obs"], method="encode")
    outputs = sac.critic.apply(critic_params, features, batch["action"], descriptions, method="outputs")  # (2, T, B, K)
    value_loss = sac.critic.value.loss(outputs, jax.lax.stop_gradient(target)[None])
    return value_loss.sum(axis=0).mean(axis=-1), sac.critic.value.q(outputs).mean(axis=(0, 2))


def actor_losses(sac, actor_params, inputs: ActorInputs):
    """Policy loss of eq. 7 with the reparameterised tanh-Gaussian: E[alpha log pi - min Q]."""
    features, descriptions = inputs.features, inputs.descriptions
    mean, log_std = sac.actor.apply(actor_params, features, descriptions)
    action, log_prob = heads.tanh_gaussian(mean, log_std, inputs.noise)
    q = sac.critic.apply(inputs.critic_params, features, action, descriptions, method="q").min(axis=0)
    weight = jax.lax.stop_gradient(temperature(inputs.log_alpha, inputs.value_scale, features.shape[0]))
    return (weight * log_prob - q).mean(axis=-1), log_prob


def alpha_losses(sac, log_alpha, inputs: TemperatureInputs):
    """Temperature loss of eq. 18, log pi detached: log_alpha_t * (-log pi - target_entropy)
    (or alpha_t * (...) with `temperature_loss="alpha"`); both push alpha the same way."""
    log_prob = inputs.log_prob
    entropy_error = jax.lax.stop_gradient(-log_prob - sac.target_entropy)
    if sac.temperature_loss == "alpha":
        return (alpha(log_alpha, log_prob.shape[0]) * entropy_error).mean(axis=-1), None
    log_alpha = jnp.broadcast_to(log_alpha, (log_prob.shape[0],))[:, None]
    return (log_alpha * entropy_error).mean(axis=-1), None
