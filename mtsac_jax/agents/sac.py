"""`state_sac`: multi-task SAC on state observations (Haarnoja et al. 2018b, "Soft Actor-Critic
Algorithms and Applications"; MT-SAC of Yu et al. 2019): its steps as pure functions, and the
agent that runs them.

Equations cite Haarnoja et al. 2018b.
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
The state is nested: the actor, the critics with their targets, and the temperature are each
a sub-state holding their parameters, optimizer state and gradient-method state, so another
agent's state holds a `SACState` whole next to its own parts. An encoder stage (none by
default; `make_sac(..., make_encoder)`) maps observations to features once per batch, before
the twin ensemble; it belongs to the critics and is trained by their loss, and the actor reads
its features with the gradient stopped (mtrl's rule for SAC-AE).

Per-task losses are (T,) vectors; the registered gradient method (`agent.gradient`; `mean`,
the gradient of their mean, equals mtrl's mean over the whole batch as every task has as many
samples) turns each into the gradient Adam applies. Each loss is a `gradients.TaskLoss` on
typed inputs (the batch, the features, the other networks' parameters, the noise drawn before
the loss) whose fields declare their task axes, so a method can take any task's share of it.
The steps (`critic_step`, `actor_step`, `temperature_step`, `target_step`) take the `SAC`
bundle and a `SACState` and return the state with their part replaced: another agent composes
them with steps of its own (`mtsac_jax.agents.distral`).

Run it:

    python train.py --config=configs/compose.py:setup=metaworld,agent=state_sac,env=metaworld-mt10
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mtsac_jax import gradients, networks, replay_buffer, task_descriptions
from mtsac_jax.agents import Agent, AgentSpec, EnvSpec, reward_scale, sac_losses, sac_section, scanned
from mtsac_jax.networks import heads
from mtsac_jax.registry import ConfigError

@flax.struct.dataclass
class Trained:
    """Parameters trained on one loss, with their optimizer's state and the gradient method's
    state for that loss (None where the method keeps none, or where nothing trains them)."""

    params: Any
    opt_state: optax.OptState
    gradient_state: Any


@flax.struct.dataclass
class CriticState:
    """The twin critics (their encoder stage included) and the polyak-averaged targets."""

    params: dict
    target_params: dict
    opt_state: optax.OptState
    gradient_state: Any


@flax.struct.dataclass
class SACState:
    actor: Trained
    critic: CriticState
    temperature: Trained  # params: log-alpha, (T,) with disentangled alpha, else (1,)
    key: jax.Array  # raw uint32 key data (plain array: easy to checkpoint and copy)
    step: jax.Array  # () int32: gradient updates done
    reward_scale: reward_scale.RewardScale | None = None  # with `agent.reward_normalization`

    # Where checkpoint formats 1-3 (one flat state) kept each part: {today's path: saved path}.
    flat_fields = {
        ("actor", "params"): ("actor_params",),
        ("actor", "opt_state"): ("actor_opt_state",),
        ("actor", "gradient_state"): ("gradient_state", "actor"),
        ("critic", "params"): ("critic_params",),
        ("critic", "target_params"): ("target_critic_params",),
        ("critic", "opt_state"): ("critic_opt_state",),
        ("critic", "gradient_state"): ("gradient_state", "critic"),
        ("temperature", "params"): ("log_alpha",),
        ("temperature", "opt_state"): ("alpha_opt_state",),
        ("temperature", "gradient_state"): ("gradient_state", "alpha"),
        ("key",): ("key",),
        ("step",): ("step",),
    }


@dataclasses.dataclass(frozen=True)
class SAC:
    """SAC's networks, optimizers, gradient method and hyperparameters."""

    actor: nn.Module
    critic: heads.TwinCritic
    actor_optimizer: optax.GradientTransformation
    critic_optimizer: optax.GradientTransformation
    alpha_optimizer: optax.GradientTransformation
    gradient: gradients.GradientFunctions
    loss_guard: networks.LossGuard | None  # the network's mask-out and reset of diverging tasks
    descriptions: jax.Array | None  # (T, L) task-description embeddings the networks read, if any
    actor_axes: dict  # the task axis of each leaf of the actor's parameters (None: shared)
    critic_axes: dict  # the same for the critics'
    num_tasks: int
    obs_shape: tuple[int, ...]  # one observation's
    obs_dtype: str
    action_dim: int
    num_alphas: int
    discount: float
    tau: float
    init_temperature: float
    temperature_loss: str
    target_entropy: float
    reward_v_max: float | None  # with reward normalisation: the bound on every task's returns

    @property
    def alpha_axis(self):  # one log-alpha per task, or one that all tasks share
        return 0 if self.num_alphas == self.num_tasks else None


def make_sac(config: ml_collections.ConfigDict, env_spec: EnvSpec,
             make_encoder: Callable[[], nn.Module] | None = None) -> SAC:
    """SAC from an `agent` config section: actor and twin critics on the registered network,
    behind the encoder stage `make_encoder` (none: the networks read the observations)."""
    if env_spec.pixels and make_encoder is None:
        raise ConfigError(
            f"agent {config.name} reads state observations, and the env gives frames {env_spec.observation_shape}. "
            "Fix: an agent with a pixel encoder (agent=sac_ae, deepmdp or hipbmdp), or env.from_pixels=False.")
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
    value = heads.ScalarValue()
    if config.critic_loss == "categorical":
        value = heads.CategoricalValue(config.categorical.num_bins, config.categorical.v_min, config.categorical.v_max)
    critic = heads.TwinCritic(make_network(config.critic), make_encoder, value)

    def inputs(num_tasks):  # zeros shaped as the critics' inputs for `num_tasks` tasks
        obs = jnp.zeros((num_tasks, 1, *env_spec.observation_shape), env_spec.obs_dtype)
        action = jnp.zeros((num_tasks, 1, env_spec.action_dim))
        return obs, action, None if descriptions is None else jnp.zeros((num_tasks, descriptions.shape[1]))

    def init_critic(num_tasks):
        return critic.init(jax.random.key(0), *inputs(num_tasks))

    def init_actor(num_tasks):
        obs, _, task_descriptions = inputs(num_tasks)
        features = critic.apply(init_critic(num_tasks), obs, method="encode")
        return actor.init(jax.random.key(0), features, task_descriptions)

    return SAC(
        actor=actor,
        critic=critic,
        actor_optimizer=optimizer(config.optimizers.actor),
        critic_optimizer=optimizer(config.optimizers.critic),
        alpha_optimizer=optimizer(config.optimizers.alpha),
        gradient=gradients.build(config.gradient, env_spec.num_tasks),
        loss_guard=network.loss_guard(config.network) if network.loss_guard else None,
        descriptions=None if descriptions is None else jnp.asarray(descriptions),
        actor_axes=gradients.task_axes(init_actor, env_spec.num_tasks),
        critic_axes=gradients.task_axes(init_critic, env_spec.num_tasks),
        num_tasks=env_spec.num_tasks,
        obs_shape=env_spec.observation_shape,
        obs_dtype=env_spec.obs_dtype,
        action_dim=env_spec.action_dim,
        num_alphas=env_spec.num_tasks if multitask.should_use_disentangled_alpha else 1,
        discount=config.discount,
        tau=config.critic_tau,
        init_temperature=config.init_temperature,
        temperature_loss=config.temperature_loss,
        target_entropy=-float(env_spec.action_dim),
        reward_v_max=config.categorical.v_max if config.get("reward_normalization") else None,
    )


def optimizer(section: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam (with the section's `b1`, 0.9 without one), or AdamW (Loshchilov & Hutter 2019) when
    the section's `weight_decay` is positive."""
    if section.get("weight_decay", 0.0) > 0:
        return optax.adamw(section.lr, b1=section.get("b1", 0.9), weight_decay=section.weight_decay)
    return optax.adam(section.lr, b1=section.get("b1", 0.9))


def init_state(sac: SAC, key: jax.Array) -> SACState:
    key, actor_key, critic_key = jax.random.split(key, 3)
    obs = jnp.zeros((sac.num_tasks, 1, *sac.obs_shape), sac.obs_dtype)
    action = jnp.zeros((sac.num_tasks, 1, sac.action_dim))
    critic_params = sac.critic.init(critic_key, obs, action, sac.descriptions)
    actor_params = sac.actor.init(actor_key, encode(sac, critic_params, obs), sac.descriptions)
    log_alpha = jnp.full((sac.num_alphas,), jnp.log(sac.init_temperature), jnp.float32)
    # Each loss's gradient-method stream is folded off the state's key (critic 0, actor 1, alpha 2).
    critic_method, actor_method, alpha_method = (
        sac.gradient.init(params, jax.random.fold_in(key, index))
        for index, params in enumerate((critic_params, actor_params, log_alpha)))
    return SACState(
        actor=Trained(actor_params, sac.actor_optimizer.init(actor_params), actor_method),
        critic=CriticState(critic_params, critic_params, sac.critic_optimizer.init(critic_params), critic_method),
        temperature=Trained(log_alpha, sac.alpha_optimizer.init(log_alpha), alpha_method),
        key=jax.random.key_data(key),
        step=jnp.zeros((), jnp.int32),
        reward_scale=None if sac.reward_v_max is None else reward_scale.init(sac.num_tasks),
    )


def encode(sac: SAC, critic_params, obs):
    """The encoder stage's features of `obs` (T, B, ...) under `critic_params`: the observations
    themselves when SAC has no encoder."""
    return obs if sac.critic.make_encoder is None else sac.critic.apply(critic_params, obs, method="encode")


def encoder_params(sac: SAC, critic_params) -> dict:
    """The part of the critics' parameters the encoder stage reads (the policy needs it to act)."""
    if sac.critic.make_encoder is None:
        return {}
    return {"params": {"encoder": critic_params["params"]["encoder"]}}


def task_loss(sac: SAC, losses, params_axes, inputs) -> gradients.TaskLoss:
    """`losses(sac, params, inputs)` as a `TaskLoss`, the inputs' task axes as their fields
    declare: SAC's kinds are "actor" and "critic" (those networks' parameters' axes) and "alpha"
    (log-alpha's: the first, or none when one is shared)."""
    kinds = {"actor": sac.actor_axes, "critic": sac.critic_axes, "alpha": sac.alpha_axis}
    return gradients.TaskLoss(functools.partial(losses, sac), inputs, params_axes, gradients.input_axes(inputs, kinds))



# ----- the steps -----


def descend(sac: SAC, trained, per_task_loss, optimizer):
    """One gradient-method + optimizer step on `trained` (a `Trained` or `CriticState`):
    (losses, aux, trained)."""
    losses, aux, grads, method_state = sac.gradient.value_and_grad(per_task_loss, trained.params,
                                                                   trained.gradient_state)
    updates, opt_state = optimizer.update(grads, trained.opt_state, trained.params)
    params = optax.apply_updates(trained.params, updates)
    return losses, aux, trained.replace(params=params, opt_state=opt_state, gradient_state=method_state)


def descend_network(sac: SAC, trained, per_task_loss, optimizer, loss: str):
    """`descend` on a network's parameters, through the network's loss guard if it has one:
    returns the losses as computed and a `<loss>_masked` metric (T,) of the tasks left out."""
    if sac.loss_guard is None:
        return (*descend(sac, trained, per_task_loss, optimizer), {})
    _, (aux, losses, diverged), trained = descend(sac, trained, sac.loss_guard.masked(per_task_loss), optimizer)
    params, opt_state = sac.loss_guard.reset(trained.params, trained.opt_state, diverged)
    trained = trained.replace(params=params, opt_state=opt_state)
    return losses, aux, trained, {f"{loss}_masked": diverged.astype(jnp.float32)}


def action_noise(sac: SAC, key, obs):
    """Standard normal noise for one action per observation, (T, B, A), drawn outside the loss."""
    return jax.random.normal(key, (*obs.shape[:2], sac.action_dim), jnp.float32)


def critic_loss(sac: SAC, state: SACState, batch, key, value_scale=None) -> gradients.TaskLoss:
    """`sac_losses.critic_losses` at `state` on `batch`, the next actions sampled with `key`;
    `value_scale` (T,): reward normalisation's factors, else None."""
    next_obs = batch["next_obs"]
    inputs = sac_losses.CriticInputs(
        batch=batch,
        noise=action_noise(sac, key, next_obs),
        next_features=jax.lax.stop_gradient(encode(sac, state.critic.params, next_obs)),
        target_next_features=encode(sac, state.critic.target_params, next_obs),
        actor_params=state.actor.params,
        target_critic_params=state.critic.target_params,
        log_alpha=state.temperature.params,
        descriptions=sac.descriptions,
        value_scale=value_scale,
    )
    return task_loss(sac, sac_losses.critic_losses, sac.critic_axes, inputs)


def actor_inputs(sac: SAC, state: SACState, obs, key, value_scale=None) -> sac_losses.ActorInputs:
    """The actor loss's inputs at `state` on `obs` (T, B, D), the actions sampled with `key`."""
    features = jax.lax.stop_gradient(encode(sac, state.critic.params, obs))  # mtrl: the actor never trains the encoder
    return sac_losses.ActorInputs(features=features, noise=action_noise(sac, key, features),
                                  critic_params=state.critic.params, log_alpha=state.temperature.params,
                                  descriptions=sac.descriptions, value_scale=value_scale)


def actor_loss(sac: SAC, state: SACState, obs, key, value_scale=None) -> gradients.TaskLoss:
    """`sac_losses.actor_losses` at `state` on `obs` (T, B, D), the actions sampled with `key`."""
    return task_loss(sac, sac_losses.actor_losses, sac.actor_axes, actor_inputs(sac, state, obs, key, value_scale))


def alpha_loss(sac: SAC, log_prob) -> gradients.TaskLoss:
    """`sac_losses.alpha_losses` given the actor's log pi (T, B)."""
    return task_loss(sac, sac_losses.alpha_losses, sac.alpha_axis, sac_losses.TemperatureInputs(log_prob=log_prob))


def critic_step(sac: SAC, state: SACState, batch, key, value_scale=None):
    """Updates the critics (and the encoder stage) on the soft Bellman residual; metrics `critic_loss`, `q`."""
    losses, q, critic, masked = descend_network(
        sac, state.critic, critic_loss(sac, state, batch, key, value_scale), sac.critic_optimizer, "critic"
    )
    return state.replace(critic=critic), {"critic_loss": losses, "q": q, **masked}


def actor_step(sac: SAC, state: SACState, obs, key, value_scale=None):
    """Updates the actor against the current critic; returns log pi (T, B) for the temperature."""
    losses, log_prob, actor, masked = descend_network(
        sac, state.actor, actor_loss(sac, state, obs, key, value_scale), sac.actor_optimizer, "actor"
    )
    return state.replace(actor=actor), {"actor_loss": losses, "entropy": -log_prob.mean(axis=-1), **masked}, log_prob


def temperature_step(sac: SAC, state: SACState, log_prob):
    """Updates log-alpha towards the target entropy, given the actor's log pi."""
    losses, _, temperature = descend(sac, state.temperature, alpha_loss(sac, log_prob), sac.alpha_optimizer)
    state = state.replace(temperature=temperature)
    return state, {"alpha_loss": losses, "alpha": sac_losses.alpha(temperature.params, sac.num_tasks)[:, 0]}


def target_step(sac: SAC, state: SACState) -> SACState:
    """Polyak averaging of the target critics: target <- tau * critic + (1 - tau) * target."""
    critic = state.critic
    return state.replace(critic=critic.replace(
        target_params=optax.incremental_update(critic.params, critic.target_params, sac.tau)
    ))


def next_key(state: SACState, num: int):
    """The update's `num` keys from the state's stream, and the state with the stream advanced
    and the update counted."""
    key, *keys = jax.random.split(jax.random.wrap_key_data(state.key), num + 1)
    return state.replace(key=jax.random.key_data(key), step=state.step + 1), keys


def normalise_rewards(sac: SAC, state: SACState, batch):
    """(state, batch, factors): the batch with each task's rewards scaled by BRC's rule
    (`reward_scale`), the state with the batch's rewards taken into the statistics, and the (T,)
    factors, by which the critics' values are scaled too; without normalisation, the state and
    batch as they were and None."""
    if state.reward_scale is None:
        return state, batch, None
    scale = reward_scale.observe(state.reward_scale, batch["reward"])
    alpha = sac_losses.alpha(state.temperature.params, sac.num_tasks)[:, 0]
    factors = reward_scale.factors(scale, alpha, sac.discount, sac.reward_v_max)
    batch = {**batch, "reward": batch["reward"] * factors[:, None]}
    return state.replace(reward_scale=scale), batch, factors


def sac_update(sac: SAC, batch_size_per_task: int, state: SACState, buffer: replay_buffer.ReplayBuffer):
    """One SAC update on a stratified batch: critic, actor, temperature, targets."""
    state, (sample_key, critic_key, actor_key) = next_key(state, 3)
    batch = replay_buffer.sample(buffer, sample_key, batch_size_per_task)
    state, batch, value_scale = normalise_rewards(sac, state, batch)
    state, critic_metrics = critic_step(sac, state, batch, critic_key, value_scale)
    state, actor_metrics, log_prob = actor_step(sac, state, batch["obs"], actor_key, value_scale)
    state, alpha_metrics = temperature_step(sac, state, log_prob)
    metrics = {**critic_metrics, **actor_metrics, **alpha_metrics}
    if value_scale is not None:
        state = state.replace(reward_scale=reward_scale.observe_entropy(state.reward_scale, log_prob))
        metrics["reward_scale"] = value_scale
    return target_step(sac, state), metrics  # each (T,)


# ----- acting on a (T, obs_dim) batch, one observation per task -----


def policy_params(sac: SAC, state: SACState) -> dict:
    """What the policy reads: the actor's parameters and the encoder stage's."""
    return {"actor": state.actor.params, "encoder": encoder_params(sac, state.critic.params)}


def policy_distribution(sac: SAC, policy_params, obs):
    """The actor's (mean, log_std) at `obs` (T, ...), one observation per task: each (T, 1, A)."""
    features = encode(sac, policy_params["encoder"], obs[:, None])
    return sac.actor.apply(policy_params["actor"], features, sac.descriptions)


def sample_actions(sac: SAC, policy_params, obs, key, step):
    """Actions sampled with the key `fold_in(key, step)`: reproducible at any step."""
    mean, log_std = policy_distribution(sac, policy_params, obs)
    action, _ = heads.sample_tanh_gaussian(mean, log_std, jax.random.fold_in(key, step))
    return action[:, 0]


def eval_actions(sac: SAC, policy_params, obs):
    """The deterministic policy tanh(mean)."""
    return jnp.tanh(policy_distribution(sac, policy_params, obs)[0][:, 0])


def acts_on_unseen_envs(sac: SAC) -> bool:
    """Whether the policy has no per-task part (no parameter with a task axis in the actor or
    the encoder stage, no task descriptions), so that it acts in envs it never trained on."""
    axes = (sac.actor_axes, encoder_params(sac, sac.critic_axes))
    return sac.descriptions is None and all(axis is None for axis in jax.tree.leaves(axes, is_leaf=lambda x: x is None))


def unseen_eval_actions(sac: SAC, policy_params, obs):
    """The deterministic policy in envs it never trained on, (M, D) -> (M, A): every row through
    the policy's shared parameters (`acts_on_unseen_envs`)."""
    features = encode(sac, policy_params["encoder"], obs[None])
    return jnp.tanh(sac.actor.apply(policy_params["actor"], features, None)[0][0])


def unseen_policy(sac: SAC):
    """`Agent.unseen_eval_actions` of an agent acting with SAC's policy: jitted, or None when the
    policy has a part per training task."""
    return jax.jit(functools.partial(unseen_eval_actions, sac)) if acts_on_unseen_envs(sac) else None


# ----- the state_sac agent -----


def make_state_sac(
    config: ml_collections.ConfigDict, env_spec: EnvSpec, batch_size_per_task: int, num_updates_per_call: int = 1
) -> Agent:
    sac = make_sac(config, env_spec)
    one_update = functools.partial(sac_update, sac, batch_size_per_task)
    return Agent(
        init=jax.jit(functools.partial(init_state, sac)),
        update=jax.jit(scanned(one_update, num_updates_per_call), donate_argnums=0),
        policy_params=functools.partial(policy_params, sac),
        sample_actions=jax.jit(functools.partial(sample_actions, sac)),
        eval_actions=jax.jit(functools.partial(eval_actions, sac)),
        unseen_eval_actions=unseen_policy(sac),
    )


STATE_SAC = AgentSpec(make=make_state_sac, default_config=sac_section.default_config, validate=sac_section.validate,
                      **sac_section.HOOKS)
