"""What the representation-learning agents share (`sac_ae`, `deepmdp`, `state_deepmdp`,
`hipbmdp`): SAC behind an encoder stage, auxiliary models trained with the encoder on their own
losses, and mtrl's update schedule for them.

- The encoder stage (`networks.encoders`): SAC-AE's pixel encoder for frames, a feed-forward
  encoder for states. Its parameters are the critics' (`params/encoder`): the critic loss trains
  it, the actor reads its features with the gradient stopped (SAC-AE's rule).
- The auxiliary losses train the models and the encoder together, per task, through the run's
  gradient method, with an optimizer of their own: Adam at `optimizers.encoder` for the encoder
  (mtrl's encoder optimizer, next to the critic's) and `optimizers.decoder` for the models.
- One update: the critic step; the actor and temperature steps every `actor_update_freq`
  updates; the target step every `critic_target_update_freq` updates, the critics at
  `critic_tau` and the encoder at `encoder_tau`; then the auxiliary step. The actor's metrics of
  its last update are kept in the state and logged on the updates in between.

An agent is the auxiliary models (a flax module), their typed loss inputs and per-task losses
(`Representation`); `make_agent` builds the rest.
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

from mtsac_jax import gradients, replay_buffer
from mtsac_jax.agents import Agent, EnvSpec, sac, sac_section, scanned
from mtsac_jax.networks import encoders
from mtsac_jax.registry import ConfigError, check_positive


@flax.struct.dataclass
class RepresentationState:
    sac: sac.SACState  # actor, critics (the encoder stage inside) with targets, temperature, key, count
    # params: the auxiliary models'; opt_state and gradient_state: of {"encoder", "models"} together
    models: sac.Trained
    actor_metrics: dict  # the actor's and temperature's metrics of their last update, (T,) each


@dataclasses.dataclass(frozen=True)
class Representation:
    """SAC with an encoder stage, the auxiliary models, their losses and the update schedule.

    models: the flax module of the auxiliary models, initialised by `init_models(module, key)`.
    losses: `(representation, params, inputs) -> (losses (T,), metrics {name: (T,)})`, `params`
        being `{"encoder": the encoder's, "models": the models'}`.
    inputs: `(representation, state, batch, key) -> inputs`, a dataclass of `gradients.loss_input` fields.
    """

    sac: sac.SAC
    models: nn.Module
    init_models: Callable[[nn.Module, jax.Array], Any]
    losses: Callable
    inputs: Callable
    optimizer: optax.GradientTransformation
    model_axes: Any  # each leaf's task axis in the models' parameters (None: shared)
    actor_update_freq: int
    target_update_freq: int
    encoder_tau: float
    latent_lambda: float  # weight of the L2 penalty on the features (SAC-AE's decoder_latent_lambda)

    def encode(self, encoder_params, obs):
        return sac.encode(self.sac, encoder_params, obs)


def make_encoder(config: ml_collections.ConfigDict, env_spec: EnvSpec) -> Callable[[], nn.Module]:
    """The encoder stage for the env's observations: SAC-AE's pixel encoder for frames, else a
    feed-forward one."""
    encoder = config.encoder
    if env_spec.pixels:
        return functools.partial(encoders.PixelEncoder, encoder.num_layers, encoder.num_filters, encoder.feature_dim)
    return functools.partial(encoders.StateEncoder, encoder.hidden_dim, encoder.num_layers, encoder.feature_dim)


def optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam at `optimizers.encoder` for the encoder, `optimizers.decoder`'s for the models."""
    labels = lambda params: {part: jax.tree.map(lambda _: part, params[part]) for part in params}  # noqa: E731
    return optax.multi_transform({"encoder": sac.optimizer(config.optimizers.encoder),
                                  "models": sac.optimizer(config.optimizers.decoder)}, labels)


def _with_encoder(params, encoder) -> dict:
    return {**params, "params": {**params["params"], "encoder": encoder["params"]["encoder"]}}


def latent_penalty(features):
    """Half the squared norm of each feature vector, (T, B): the L2 penalty on the latent code
    (SAC-AE, after Ghosh et al. 2019)."""
    return 0.5 * jnp.sum(features**2, axis=-1)


def _actor_steps(rep: Representation, state: sac.SACState, obs, key):
    state, metrics, log_prob = sac.actor_step(rep.sac, state, obs, key)
    state, alpha_metrics = sac.temperature_step(rep.sac, state, log_prob)
    return state, {**metrics, **alpha_metrics}


def target_step(rep: Representation, state: sac.SACState) -> sac.SACState:
    """Polyak averaging of the targets: the critics at `critic_tau`, the encoder at `encoder_tau`."""
    critic = state.critic
    target = optax.incremental_update(critic.params, critic.target_params, rep.sac.tau)
    encoder = optax.incremental_update(sac.encoder_params(rep.sac, critic.params),
                                       sac.encoder_params(rep.sac, critic.target_params), rep.encoder_tau)
    return state.replace(critic=critic.replace(target_params=_with_encoder(target, encoder)))


def auxiliary_step(rep: Representation, state: RepresentationState, batch, key):
    """One step of the auxiliary losses on the models and the encoder."""
    params = {"encoder": sac.encoder_params(rep.sac, state.sac.critic.params), "models": state.models.params}
    inputs = rep.inputs(rep, state, batch, key)
    param_axes = {"encoder": jax.tree.map(lambda _: None, params["encoder"]), "models": rep.model_axes}
    loss = gradients.TaskLoss(functools.partial(rep.losses, rep), inputs, param_axes, gradients.input_axes(inputs, {}))
    losses, metrics, grads, method_state = rep.sac.gradient.value_and_grad(loss, params, state.models.gradient_state)
    updates, opt_state = rep.optimizer.update(grads, state.models.opt_state, params)
    params = optax.apply_updates(params, updates)
    critic = state.sac.critic.replace(params=_with_encoder(state.sac.critic.params, params["encoder"]))
    state = state.replace(sac=state.sac.replace(critic=critic), models=sac.Trained(params["models"], opt_state, method_state))
    return state, {"model_loss": losses, **metrics}


def update(rep: Representation, batch_size_per_task: int, state: RepresentationState, buffer):
    """One update on a stratified batch, in mtrl's order (the module docstring)."""
    sac_state, (sample_key, critic_key, actor_key, model_key) = sac.next_key(state.sac, 4)
    batch = replay_buffer.sample(buffer, sample_key, batch_size_per_task)
    sac_state, critic_metrics = sac.critic_step(rep.sac, sac_state, batch, critic_key)
    sac_state, actor_metrics = jax.lax.cond(
        sac_state.step % rep.actor_update_freq == 0,
        lambda s: _actor_steps(rep, s, batch["obs"], actor_key), lambda s: (s, state.actor_metrics), sac_state)
    sac_state = jax.lax.cond(sac_state.step % rep.target_update_freq == 0,
                             functools.partial(target_step, rep), lambda s: s, sac_state)
    state, model_metrics = auxiliary_step(rep, state.replace(sac=sac_state, actor_metrics=actor_metrics), batch, model_key)
    return state, {**critic_metrics, **actor_metrics, **model_metrics}


def init_state(rep: Representation, key) -> RepresentationState:
    sac_key, model_key, method_key = jax.random.split(key, 3)
    sac_state = sac.init_state(rep.sac, sac_key)
    models = rep.init_models(rep.models, model_key)
    params = {"encoder": sac.encoder_params(rep.sac, sac_state.critic.params), "models": models}
    obs = jnp.zeros((rep.sac.num_tasks, 1, *rep.sac.obs_shape), rep.sac.obs_dtype)
    shapes = jax.eval_shape(lambda s: _actor_steps(rep, s, obs, jax.random.key(0))[1], sac_state)
    return RepresentationState(
        sac=sac_state,
        models=sac.Trained(models, rep.optimizer.init(params), rep.sac.gradient.init(params, method_key)),
        actor_metrics=jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), shapes),
    )


def make_agent(rep: Representation, batch_size_per_task: int, num_updates_per_call: int) -> Agent:
    one_update = functools.partial(update, rep, batch_size_per_task)
    return Agent(
        init=jax.jit(functools.partial(init_state, rep)),
        update=jax.jit(scanned(one_update, num_updates_per_call), donate_argnums=0),
        policy_params=lambda state: sac.policy_params(rep.sac, state.sac),
        sample_actions=jax.jit(functools.partial(sac.sample_actions, rep.sac)),
        eval_actions=jax.jit(functools.partial(sac.eval_actions, rep.sac)),
        unseen_eval_actions=sac.unseen_policy(rep.sac),
    )


def build(config: ml_collections.ConfigDict, env_spec: EnvSpec, models_for: Callable[[int], nn.Module],
          init_models, losses, inputs) -> Representation:
    """The `Representation` of an agent section with SAC's keys and `default_config`'s;
    `models_for(num_tasks)` is the models' module for that many tasks."""
    def shapes(num_tasks: int):  # the models' parameters for `num_tasks` tasks, to find their task axes
        return jax.eval_shape(functools.partial(init_models, models_for(num_tasks)), jax.random.key(0))

    return Representation(
        sac=sac.make_sac(config, env_spec, make_encoder(config, env_spec)),
        models=models_for(env_spec.num_tasks),
        init_models=init_models,
        losses=losses,
        inputs=inputs,
        optimizer=optimizer(config),
        model_axes=gradients.task_axes(shapes, env_spec.num_tasks),
        actor_update_freq=config.actor_update_freq,
        target_update_freq=config.critic_target_update_freq,
        encoder_tau=config.encoder_tau,
        latent_lambda=config.decoder.latent_lambda,
    )


# ----- the config section -----


def default_config(pixels: bool = True) -> dict:
    """SAC's keys at mtrl's settings for its pixel agents (`pixels`: 2x1024 networks, Adam 1e-3,
    temperature 0.1 tuned at 1e-4 with beta1 0.5, critic tau 0.01, encoder tau 0.05, actor and
    targets every 2 updates) or for `state_deepmdp` (SAC's own schedule), plus the encoder's,
    the decoder's and the models' optimizers."""
    config = sac_section.default_config()
    config["multitask"]["should_use_disentangled_alpha"] = False
    config["actor"].update(hidden_dim=1024, num_layers=2, log_std_min=-10.0)
    config["critic"].update(hidden_dim=1024, num_layers=2)
    config["optimizers"]["actor"]["lr"] = config["optimizers"]["critic"]["lr"] = 1e-3
    config["optimizers"]["alpha"].update(lr=1e-4, b1=0.5)
    config["optimizers"]["encoder"] = {"lr": 1e-3, "weight_decay": 0.0}
    config["optimizers"]["decoder"] = {"lr": 1e-3, "weight_decay": 1e-7}
    config.update(
        init_temperature=0.1 if pixels else 1.0,
        critic_tau=0.01 if pixels else 0.005,
        encoder_tau=0.05,
        actor_update_freq=2 if pixels else 1,
        critic_target_update_freq=2 if pixels else 1,
        # num_layers: convolutions (frames) or ReLU layers (states); num_filters for frames, hidden_dim for states
        encoder={"feature_dim": 50, "num_layers": 4, "num_filters": 32, "hidden_dim": 256},
        decoder={"latent_lambda": 0.0},  # mtrl's; SAC-AE's paper uses 1e-6
    )
    return config


def validate(config: ml_collections.ConfigDict) -> None:
    sac_section.validate(config)
    check_positive({
        "agent.actor_update_freq": config.actor_update_freq,
        "agent.critic_target_update_freq": config.critic_target_update_freq,
        **{f"agent.encoder.{key}": value for key, value in config.encoder.items()},
        "agent.optimizers.encoder.lr": config.optimizers.encoder.lr,
        "agent.optimizers.decoder.lr": config.optimizers.decoder.lr,
    })
    if not 0.0 < config.encoder_tau <= 1.0:
        raise ConfigError(f"agent.encoder_tau={config.encoder_tau} must lie in (0, 1] (1 copies the encoder into its target).")
    if config.decoder.latent_lambda < 0:
        raise ConfigError(f"agent.decoder.latent_lambda={config.decoder.latent_lambda} must not be negative.")


def shrink(config: ml_collections.ConfigDict) -> None:
    """SAC's smoke sizes, an 8-d feature from 2 layers of 4 filters (or 16 units), 16-wide models."""
    sac_section.shrink(config)
    config.encoder.update(feature_dim=8, num_layers=2, num_filters=4, hidden_dim=16)
    if "transition_model" in config:
        config.transition_model.layer_width = 16
    if "task_embedding" in config:
        config.task_embedding.dim = 4


HOOKS = {**sac_section.HOOKS, "shrink": shrink}
