"""Multi-task SAC: its steps as pure functions, and the `state_sac` agent that runs them.

Equations cite Haarnoja et al. 2018b, "Soft Actor-Critic Algorithms and Applications".
Choices that peers make differently, as mtrl makes them:
- update order: critic first, then actor and alpha on the freshly updated critic, then the
  polyak update of the target critics, all in one jitted call;
- target entropy: -|A| for every task;
- temperature loss (eq. 18) optimised in log-alpha: by default log_alpha times the detached
  entropy error, as the authors' softlearning code (and SB3, SBX), whose gradient in log-alpha
  is the error itself; `agent.temperature_loss="alpha"` takes mtrl's alpha times the error,
  whose gradient is alpha times the error (on MT1 reach-v3, seed 1, with 3x400 networks it ran
  alpha up to 60 and the critic loss to 1e6 within 50k steps; docs/results.md);
- one log-alpha per task with `should_use_disentangled_alpha`, else one shared;
- rewards are not rescaled.
Per-task losses are (T,) vectors; the registered gradient method (`agent.gradient`, `mean` by
default: the gradient of their mean, which equals mtrl's mean over the whole batch because
every task has the same number of samples) turns each into the gradient Adam applies. Each
loss is a `gradients.TaskLoss`: a function of the parameters and of explicit inputs (the batch,
the other networks' parameters, the sampling noise, drawn before the loss) whose task axes are
known, so that a method can take any task's share of it.

The steps (`critic_step`, `actor_step`, `temperature_step`, `target_step`) take the `SAC`
bundle first and any `flax.struct` state with the fields they read, and return the state
with those fields replaced: another agent composes them with steps of its own.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mtsac_jax import gradients, networks, replay_buffer, task_descriptions
from mtsac_jax.agents import Agent, AgentSpec, EnvSpec, sac_section
from mtsac_jax.networks import heads

LOSSES = ("critic", "actor", "alpha")  # each has its own gradient-method state


@flax.struct.dataclass
class SACState:
    actor_params: dict
    critic_params: dict
    target_critic_params: dict
    log_alpha: jax.Array  # (T,) with disentangled alpha, else (1,)
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    key: jax.Array  # raw uint32 key data (plain array: easy to checkpoint and copy)
    step: jax.Array  # () int32: gradient updates done
    gradient_state: dict  # {"critic", "actor", "alpha"}: the gradient method's state per loss


@dataclasses.dataclass(frozen=True)
class SAC:
    """SAC's networks, optimizers, gradient method and hyperparameters."""

    actor: nn.Module
    critic: nn.Module
    actor_optimizer: optax.GradientTransformation
    critic_optimizer: optax.GradientTransformation
    alpha_optimizer: optax.GradientTransformation
    gradient: gradients.GradientFunctions
    loss_guard: networks.LossGuard | None  # the network's mask-out and reset of diverging tasks
    descriptions: jax.Array | None  # (T, L) task-description embeddings the networks read, if any
    actor_axes: dict  # the task axis of each leaf of the actor's parameters (None: shared)
    critic_axes: dict  # the same for the critics'
    num_tasks: int
    obs_dim: int
    action_dim: int
    num_alphas: int
    discount: float
    tau: float
    init_temperature: float
    temperature_loss: str
    target_entropy: float


def make_sac(config: ml_collections.ConfigDict, env_spec: EnvSpec) -> SAC:
    """SAC from an `agent` config section: actor and twin critics on the registered network."""
    multitask = config.multitask
    network = networks.NETWORKS.get(config.network.name)
    descriptions = None
    if multitask.should_use_task_encoder and multitask.task_encoder.description_embeddings:
        descriptions = task_descriptions.description_embeddings(
            multitask.task_encoder.description_embeddings, env_spec.task_names
        )

    def make_network(section):
        return functools.partial(
            networks.build, config.network, multitask, section.hidden_dim, section.num_layers,
            reads_descriptions=descriptions is not None,
        )

    actor = heads.Actor(
        env_spec.action_dim, make_network(config.actor), config.actor.log_std_min, config.actor.log_std_max
    )
    critic = heads.TwinCritic(make_network(config.critic))

    def inputs(num_tasks):  # zeros shaped as the networks' inputs for `num_tasks` tasks
        obs = jnp.zeros((num_tasks, 1, env_spec.obs_dim))
        action = jnp.zeros((num_tasks, 1, env_spec.action_dim))
        return obs, action, None if descriptions is None else jnp.zeros((num_tasks, descriptions.shape[1]))

    def init_actor(num_tasks):
        obs, _, task_descriptions = inputs(num_tasks)
        return actor.init(jax.random.key(0), obs, task_descriptions)

    def init_critic(num_tasks):
        return critic.init(jax.random.key(0), *inputs(num_tasks))

    return SAC(
        actor=actor,
        critic=critic,
        actor_optimizer=optax.adam(config.optimizers.actor.lr),
        critic_optimizer=optax.adam(config.optimizers.critic.lr),
        alpha_optimizer=optax.adam(config.optimizers.alpha.lr),
        gradient=gradients.build(config.gradient, env_spec.num_tasks),
        loss_guard=network.loss_guard(config.network) if network.loss_guard else None,
        descriptions=None if descriptions is None else jnp.asarray(descriptions),
        actor_axes=gradients.task_axes(init_actor, env_spec.num_tasks),
        critic_axes=gradients.task_axes(init_critic, env_spec.num_tasks),
        num_tasks=env_spec.num_tasks,
        obs_dim=env_spec.obs_dim,
        action_dim=env_spec.action_dim,
        num_alphas=env_spec.num_tasks if multitask.should_use_disentangled_alpha else 1,
        discount=config.discount,
        tau=config.critic_tau,
        init_temperature=config.init_temperature,
        temperature_loss=config.temperature_loss,
        target_entropy=-float(env_spec.action_dim),
    )


def init_state(sac: SAC, key: jax.Array) -> SACState:
    key, actor_key, critic_key = jax.random.split(key, 3)
    obs = jnp.zeros((sac.num_tasks, 1, sac.obs_dim))
    action = jnp.zeros((sac.num_tasks, 1, sac.action_dim))
    actor_params = sac.actor.init(actor_key, obs, sac.descriptions)
    critic_params = sac.critic.init(critic_key, obs, action, sac.descriptions)
    log_alpha = jnp.full((sac.num_alphas,), jnp.log(sac.init_temperature), jnp.float32)
    # The gradient method's streams are folded off the state's key, leaving its splits as they are.
    params = {"critic": critic_params, "actor": actor_params, "alpha": log_alpha}
    gradient_state = {
        loss: sac.gradient.init(params[loss], jax.random.fold_in(key, index)) for index, loss in enumerate(LOSSES)
    }
    return SACState(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=critic_params,
        log_alpha=log_alpha,
        actor_opt_state=sac.actor_optimizer.init(actor_params),
        critic_opt_state=sac.critic_optimizer.init(critic_params),
        alpha_opt_state=sac.alpha_optimizer.init(log_alpha),
        key=jax.random.key_data(key),
        step=jnp.zeros((), jnp.int32),
        gradient_state=gradient_state,
    )


def alpha(log_alpha, num_tasks: int):  # (T, 1): broadcasts against (T, B)
    return jnp.broadcast_to(jnp.exp(log_alpha), (num_tasks,))[:, None]


def _alpha_axis(sac: SAC):  # one log-alpha per task, or one that all tasks share
    return 0 if sac.num_alphas == sac.num_tasks else None


# ----- per-task losses: fn(params, inputs) -> ((T,) loss vector, aux), inputs with task axes -----


def critic_losses(sac: SAC, critic_params, inputs):
    """Soft Bellman residual (eq. 5) with the soft target of eq. 3 through min of twin
    target critics. Bootstraps through truncation: only `terminated` cuts the target."""
    batch, descriptions = inputs["batch"], inputs["descriptions"]
    num_tasks = batch["obs"].shape[0]
    mean, log_std = sac.actor.apply(inputs["actor_params"], batch["next_obs"], descriptions)
    next_action, next_log_prob = heads.tanh_gaussian(mean, log_std, inputs["noise"])
    target_q = sac.critic.apply(inputs["target_critic_params"], batch["next_obs"], next_action, descriptions)
    soft_value = target_q.min(axis=0) - alpha(inputs["log_alpha"], num_tasks) * next_log_prob
    target = batch["reward"] + sac.discount * (1.0 - batch["terminated"]) * soft_value
    q = sac.critic.apply(critic_params, batch["obs"], batch["action"], descriptions)  # (2, T, B)
    squared_error = (q - jax.lax.stop_gradient(target)[None]) ** 2
    return squared_error.sum(axis=0).mean(axis=-1), q.mean(axis=(0, 2))


def actor_losses(sac: SAC, actor_params, inputs):
    """Policy loss of eq. 7 with the reparameterised tanh-Gaussian: E[alpha log pi - min Q]."""
    obs, descriptions = inputs["obs"], inputs["descriptions"]
    mean, log_std = sac.actor.apply(actor_params, obs, descriptions)
    action, log_prob = heads.tanh_gaussian(mean, log_std, inputs["noise"])
    q = sac.critic.apply(inputs["critic_params"], obs, action, descriptions).min(axis=0)
    temperature = jax.lax.stop_gradient(alpha(inputs["log_alpha"], obs.shape[0]))
    return (temperature * log_prob - q).mean(axis=-1), log_prob


def alpha_losses(sac: SAC, log_alpha, inputs):
    """Temperature loss of eq. 18, log pi detached: log_alpha_t * (-log pi - target_entropy)
    (or alpha_t * (...) with `temperature_loss="alpha"`); both push alpha the same way."""
    log_prob = inputs["log_prob"]
    entropy_error = jax.lax.stop_gradient(-log_prob - sac.target_entropy)
    if sac.temperature_loss == "alpha":
        return (alpha(log_alpha, log_prob.shape[0]) * entropy_error).mean(axis=-1), None
    log_alpha = jnp.broadcast_to(log_alpha, (log_prob.shape[0],))[:, None]
    return (log_alpha * entropy_error).mean(axis=-1), None


def task_loss(sac: SAC, losses, params_axes, inputs, input_axes=None) -> gradients.TaskLoss:
    """`losses(sac, params, inputs)` as a `TaskLoss`; every input's task axis is the first,
    except the networks' parameters (their own axes), a shared log-alpha and the inputs whose
    axes `input_axes` gives."""
    known = {"actor_params": sac.actor_axes, "critic_params": sac.critic_axes,
             "target_critic_params": sac.critic_axes, "log_alpha": _alpha_axis(sac), **(input_axes or {})}
    input_axes = {name: known[name] if name in known else jax.tree.map(lambda _: 0, value)
                  for name, value in inputs.items()}
    return gradients.TaskLoss(functools.partial(losses, sac), inputs, params_axes, input_axes)


# ----- the steps -----


def descend(sac: SAC, state, loss: str, per_task_loss, params, optimizer, opt_state):
    """One gradient-method + Adam step on `params`: (losses, aux, params, opt_state, gradient_state)."""
    losses, aux, grads, method_state = sac.gradient.value_and_grad(per_task_loss, params, state.gradient_state[loss])
    updates, opt_state = optimizer.update(grads, opt_state)
    return losses, aux, optax.apply_updates(params, updates), opt_state, {**state.gradient_state, loss: method_state}


def descend_network(sac: SAC, state, loss: str, per_task_loss, params, optimizer, opt_state):
    """`descend` on a network's parameters, through the network's loss guard if it has one:
    returns the losses as computed and a `<loss>_masked` metric (T,) of the tasks left out."""
    if sac.loss_guard is None:
        return (*descend(sac, state, loss, per_task_loss, params, optimizer, opt_state), {})
    _, (aux, losses, diverged), params, opt_state, gradient_state = descend(
        sac, state, loss, sac.loss_guard.masked(per_task_loss), params, optimizer, opt_state
    )
    params, opt_state = sac.loss_guard.reset(params, opt_state, diverged)
    return losses, aux, params, opt_state, gradient_state, {f"{loss}_masked": diverged.astype(jnp.float32)}


def action_noise(sac: SAC, key, obs):
    """Standard normal noise for one action per observation, (T, B, A), drawn outside the loss."""
    return jax.random.normal(key, (*obs.shape[:-1], sac.action_dim), obs.dtype)


def critic_loss(sac: SAC, state, batch, key) -> gradients.TaskLoss:
    """`critic_losses` at `state` on `batch`, the next actions sampled with `key`."""
    inputs = {
        "batch": batch,
        "noise": action_noise(sac, key, batch["next_obs"]),
        "actor_params": state.actor_params,
        "target_critic_params": state.target_critic_params,
        "log_alpha": state.log_alpha,
        "descriptions": sac.descriptions,
    }
    return task_loss(sac, critic_losses, sac.critic_axes, inputs)


def actor_loss(sac: SAC, state, obs, key) -> gradients.TaskLoss:
    """`actor_losses` at `state` on `obs` (T, B, D), the actions sampled with `key`."""
    inputs = {
        "obs": obs,
        "noise": action_noise(sac, key, obs),
        "critic_params": state.critic_params,
        "log_alpha": state.log_alpha,
        "descriptions": sac.descriptions,
    }
    return task_loss(sac, actor_losses, sac.actor_axes, inputs)


def alpha_loss(sac: SAC, log_prob) -> gradients.TaskLoss:
    """`alpha_losses` given the actor's log pi (T, B)."""
    return task_loss(sac, alpha_losses, _alpha_axis(sac), {"log_prob": log_prob})


def critic_step(sac: SAC, state, batch, key):
    """Updates `critic_params` on the soft Bellman residual; metrics `critic_loss`, `q`."""
    losses, q, params, opt_state, gradient_state, masked = descend_network(
        sac, state, "critic", critic_loss(sac, state, batch, key),
        state.critic_params, sac.critic_optimizer, state.critic_opt_state,
    )
    state = state.replace(critic_params=params, critic_opt_state=opt_state, gradient_state=gradient_state)
    return state, {"critic_loss": losses, "q": q, **masked}


def actor_step(sac: SAC, state, obs, key):
    """Updates `actor_params` against the current critic; returns log pi (T, B) for the temperature."""
    losses, log_prob, params, opt_state, gradient_state, masked = descend_network(
        sac, state, "actor", actor_loss(sac, state, obs, key),
        state.actor_params, sac.actor_optimizer, state.actor_opt_state,
    )
    state = state.replace(actor_params=params, actor_opt_state=opt_state, gradient_state=gradient_state)
    return state, {"actor_loss": losses, "entropy": -log_prob.mean(axis=-1), **masked}, log_prob


def temperature_step(sac: SAC, state, log_prob):
    """Updates `log_alpha` towards the target entropy, given the actor's log pi."""
    losses, _, log_alpha, opt_state, gradient_state = descend(
        sac, state, "alpha", alpha_loss(sac, log_prob),
        state.log_alpha, sac.alpha_optimizer, state.alpha_opt_state,
    )
    state = state.replace(log_alpha=log_alpha, alpha_opt_state=opt_state, gradient_state=gradient_state)
    return state, {"alpha_loss": losses, "alpha": alpha(log_alpha, sac.num_tasks)[:, 0]}


def target_step(sac: SAC, state):
    """Polyak averaging of the target critics: target <- tau * critic + (1 - tau) * target."""
    return state.replace(
        target_critic_params=optax.incremental_update(state.critic_params, state.target_critic_params, sac.tau)
    )


def sac_update(sac: SAC, batch_size_per_task: int, state: SACState, buffer: replay_buffer.ReplayBuffer):
    """One SAC update on a stratified batch: critic, actor, temperature, targets."""
    key, sample_key, critic_key, actor_key = jax.random.split(jax.random.wrap_key_data(state.key), 4)
    batch = replay_buffer.sample(buffer, sample_key, batch_size_per_task)
    state, critic_metrics = critic_step(sac, state, batch, critic_key)
    state, actor_metrics, log_prob = actor_step(sac, state, batch["obs"], actor_key)
    state, alpha_metrics = temperature_step(sac, state, log_prob)
    state = target_step(sac, state)
    state = state.replace(key=jax.random.key_data(key), step=state.step + 1)
    return state, {**critic_metrics, **actor_metrics, **alpha_metrics}  # each (T,)


def scanned(one_update, num_updates: int):
    """`num_updates` calls of `one_update(state, buffer)` in one `lax.scan`; metrics of the last."""

    def update(state, buffer):
        state, metrics = jax.lax.scan(lambda carry, _: one_update(carry, buffer), state, None, length=num_updates)
        return state, jax.tree.map(lambda m: m[-1], metrics)

    return update


# ----- acting on a (T, obs_dim) batch, one observation per task -----


def sample_actions(sac: SAC, policy_params, obs, key, step):
    """Actions sampled with the key `fold_in(key, step)`: reproducible at any step."""
    mean, log_std = sac.actor.apply(policy_params["actor_params"], obs[:, None, :], sac.descriptions)
    action, _ = heads.sample_tanh_gaussian(mean, log_std, jax.random.fold_in(key, step))
    return action[:, 0]


def eval_actions(sac: SAC, policy_params, obs):
    """The deterministic policy tanh(mean)."""
    mean, _ = sac.actor.apply(policy_params["actor_params"], obs[:, None, :], sac.descriptions)
    return jnp.tanh(mean[:, 0])


# ----- the state_sac agent -----


def make_state_sac(
    config: ml_collections.ConfigDict, env_spec: EnvSpec, batch_size_per_task: int, num_updates_per_call: int = 1
) -> Agent:
    sac = make_sac(config, env_spec)
    one_update = functools.partial(sac_update, sac, batch_size_per_task)
    return Agent(
        init=jax.jit(functools.partial(init_state, sac)),
        update=jax.jit(scanned(one_update, num_updates_per_call), donate_argnums=0),
        policy_params=lambda state: {"actor_params": state.actor_params},
        sample_actions=jax.jit(functools.partial(sample_actions, sac)),
        eval_actions=jax.jit(functools.partial(eval_actions, sac)),
    )


STATE_SAC = AgentSpec(make=make_state_sac, default_config=sac_section.default_config, validate=sac_section.validate,
                      **sac_section.HOOKS)
