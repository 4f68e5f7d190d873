"""`deepmdp` and `state_deepmdp`: DeepMDP (Gelada et al. 2019, "DeepMDP: Learning Continuous
Latent Space Models for Representation Learning") on SAC, as mtrl trains it: the encoder's
latent z = phi(s) is shaped by a latent transition model and a reward model beside the critic's
loss (the DeepMDP losses, on sampled transitions):

    L_P = E[ (z'_pred - stop_gradient(phi(s')))^2 / (2 sigma^2) + log sigma ]   (the Gaussian NLL)
    L_R = E[ (R(z'_sample) - r)^2 ],  z'_sample = mean + sigma * eps
    L_D = E[ ||decoder(z'_sample) - target(o')||^2 ] + lambda E[ ||phi(s)||^2 / 2 ]   (frames only)

each per task, summed and taken in one step on the encoder and the models (`representation`).
`deepmdp` reads frames (SAC-AE's pixel encoder and decoder); `state_deepmdp` reads states (a
feed-forward encoder, no decoder). The transition model is deterministic by default (mtrl's
choice: sigma = 1, so L_P is half the squared error); `transition_model.probabilistic=True`
learns sigma.

Where mtrl differs: its state_deepmdp leaves the encoder type to choose by hand (an identity
encoder makes the model losses leave the policy's features untouched); it takes L_P + L_R and
L_D as two optimizer steps, each with its own sample of z'.

Run it:

    python train.py --config=configs/hipbmdp.py:finger-spin,deepmdp,pixels
    python train.py --config=configs/hipbmdp.py:cheetah-run,state_deepmdp
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from mtsac_jax import gradients
from mtsac_jax.agents import Agent, AgentSpec, EnvSpec, representation, sac_ae
from mtsac_jax.networks import encoders, latent_model
from mtsac_jax.registry import ConfigError, check_positive


class LatentModels(nn.Module):
    """The transition and reward models and the decoder of frames (None for states). With
    `num_envs` > 0 the transition model also reads an embedding per training env (HiP-BMDP's
    theta, (T, E), kept beside the module's parameters: `init_models`), with its task metric's weight."""

    feature_dim: int
    layer_width: int
    probabilistic: bool
    decoder: nn.Module | None
    num_envs: int = 0
    embedding_dim: int = 0
    task_metric_weight: float = 0.0

    def setup(self):
        self.transition = latent_model.TransitionModel(self.feature_dim, self.layer_width, self.probabilistic)
        self.reward = latent_model.RewardModel(self.layer_width)

    def predict(self, latent, action, embedding=None):
        """The next latent's (mean, sigma) from (T, B, F) latents, actions and, for HiP-BMDP,
        (T, E) env embeddings."""
        parts = [latent, action]
        if embedding is not None:
            parts.insert(1, jnp.broadcast_to(embedding[:, None, :], (*latent.shape[:2], embedding.shape[-1])))
        return self.transition(jnp.concatenate(parts, axis=-1))

    def __call__(self, latent, action, embedding=None):  # every part, for `init`
        mean, _ = self.predict(latent, action, embedding)
        return self.reward(mean), None if self.decoder is None else self.decoder(mean)


@flax.struct.dataclass
class ModelInputs:
    obs: jax.Array = gradients.loss_input()
    action: jax.Array = gradients.loss_input()
    reward: jax.Array = gradients.loss_input()
    next_obs: jax.Array = gradients.loss_input()
    noise: jax.Array = gradients.loss_input()  # (T, B, F) standard normal, for z'_sample
    target: jax.Array | None = gradients.loss_input()  # the reconstruction target of o' (frames), else None
    # HiP-BMDP: each task's paired env embedding, stop-gradient (T, E), else None
    paired_embedding: jax.Array | None = gradients.loss_input()


def gaussian_nll(mean, sigma, target):
    """Per task: the mean over the batch and the latent of (mean - target)^2 / (2 sigma^2) + log sigma."""
    return jnp.mean(0.5 * ((mean - target) / sigma) ** 2 + jnp.log(sigma), axis=(1, 2))


def model_losses(rep: representation.Representation, params, inputs: ModelInputs):
    """L_P + L_R (+ L_D), per task, and each of them as a metric; `task_metric_losses` adds HiP-BMDP's term."""
    latent = rep.encode(params["encoder"], inputs.obs)
    next_latent = jax.lax.stop_gradient(rep.encode(params["encoder"], inputs.next_obs))
    models = rep.models.bind(params["models"]["latent"])
    embedding = params["models"].get("embedding")
    mean, sigma = models.predict(latent, inputs.action, embedding)
    transition = gaussian_nll(mean, sigma, next_latent)
    sample = mean + sigma * inputs.noise if rep.models.probabilistic else mean
    reward = jnp.mean((models.reward(sample) - inputs.reward) ** 2, axis=-1)
    losses, metrics = transition + reward, {"transition_loss": transition, "reward_loss": reward}
    if rep.models.decoder is not None:
        reconstruction = sac_ae.reconstruction_loss(models.decoder(sample), inputs.target)
        losses += reconstruction + rep.latent_lambda * representation.latent_penalty(latent).mean(axis=-1)
        metrics["reconstruction_loss"] = reconstruction
    if embedding is not None:
        paired_mean, _ = models.predict(latent, inputs.action, inputs.paired_embedding)
        metric = task_metric_loss(embedding, inputs.paired_embedding, mean, paired_mean)
        losses += rep.models.task_metric_weight * metric
        metrics["task_metric_loss"] = metric
    return losses, metrics


def task_metric_loss(embedding, paired_embedding, prediction, paired_prediction):
    """HiP-BMDP's task metric (Zhang et al. 2021): per task t paired with env t', the
    mean over the batch of (||theta_t - theta_t'|| - ||P(s, a, theta_t) - P(s, a, theta_t')||)^2,
    the predictions' distance held fixed (the term trains the embedding only), (T,)."""
    embedding_distance = jnp.linalg.norm(embedding - paired_embedding, axis=-1)  # (T,)
    prediction_distance = jax.lax.stop_gradient(jnp.linalg.norm(prediction - paired_prediction, axis=-1))  # (T, B)
    return jnp.mean((embedding_distance[:, None] - prediction_distance) ** 2, axis=-1)


def model_inputs(rep: representation.Representation, state, batch, key) -> ModelInputs:
    noise_key, target_key, pair_key = jax.random.split(key, 3)
    feature_dim = rep.models.feature_dim
    paired = None
    if rep.models.num_envs:  # each task against another drawn each update (never itself; itself alone if T = 1)
        embedding = state.models.params["embedding"]
        shift = jax.random.randint(pair_key, (), 1, max(rep.sac.num_tasks, 2)) % rep.sac.num_tasks
        paired = jax.lax.stop_gradient(jnp.roll(embedding, -shift, axis=0))
    return ModelInputs(
        obs=batch["obs"], action=batch["action"], reward=batch["reward"], next_obs=batch["next_obs"],
        noise=jax.random.normal(noise_key, (*batch["reward"].shape, feature_dim)),
        target=None if rep.models.decoder is None else encoders.reconstruction_target(batch["next_obs"], target_key),
        paired_embedding=paired,
    )


def latent_models(config: ml_collections.ConfigDict, env_spec: EnvSpec, num_envs: int = 0) -> LatentModels:
    encoder = config.encoder
    decoder = (encoders.PixelDecoder(encoder.num_layers, encoder.num_filters, env_spec.observation_shape)
               if env_spec.pixels else None)
    embedding = (num_envs, config.task_embedding.dim, config.task_embedding.metric_weight) if num_envs else ()
    return LatentModels(encoder.feature_dim, config.transition_model.layer_width, config.transition_model.probabilistic,
                        decoder, *embedding)


def init_models(env_spec: EnvSpec, module: LatentModels, key) -> dict:
    """{"latent": the module's parameters} and, with env embeddings, {"embedding": (num_envs, E),
    standard normal}."""
    latent_key, embedding_key = jax.random.split(key)
    latent = jnp.zeros((1, 1, module.feature_dim))
    action = jnp.zeros((1, 1, env_spec.action_dim))
    if not module.num_envs:
        return {"latent": module.init(latent_key, latent, action)}
    embedding = jax.random.normal(embedding_key, (module.num_envs, module.embedding_dim))
    return {"latent": module.init(latent_key, latent, action, embedding[:1]), "embedding": embedding}


def build(config: ml_collections.ConfigDict, env_spec: EnvSpec, embed_envs: bool) -> representation.Representation:
    """DeepMDP's `Representation`; `embed_envs`: with HiP-BMDP's env embedding and task metric."""
    return representation.build(
        config, env_spec, lambda num_tasks: latent_models(config, env_spec, num_tasks if embed_envs else 0),
        lambda module, key: init_models(env_spec, module, key), model_losses, model_inputs)


def make_deepmdp(config, env_spec: EnvSpec, batch_size_per_task: int, num_updates_per_call: int = 1) -> Agent:
    sac_ae.require_frames(config, env_spec, "state_deepmdp")
    return representation.make_agent(build(config, env_spec, False), batch_size_per_task, num_updates_per_call)


def make_state_deepmdp(config, env_spec: EnvSpec, batch_size_per_task: int, num_updates_per_call: int = 1) -> Agent:
    if env_spec.pixels:
        raise ConfigError(f"agent state_deepmdp reads state vectors, and the env gives frames "
                          f"{env_spec.observation_shape}. Fix: agent=deepmdp for frames, or env.from_pixels=False.")
    return representation.make_agent(build(config, env_spec, False), batch_size_per_task, num_updates_per_call)


def default_config(pixels: bool = True) -> dict:
    """`representation`'s keys and the models': mtrl's transition model (one layer of 512,
    deterministic), whose width the reward model shares."""
    return {**representation.default_config(pixels), "transition_model": {"layer_width": 512, "probabilistic": False}}


def validate(config: ml_collections.ConfigDict) -> None:
    representation.validate(config)
    check_positive({"agent.transition_model.layer_width": config.transition_model.layer_width})


DEEPMDP = AgentSpec(make=make_deepmdp, default_config=default_config, validate=validate, **representation.HOOKS)
STATE_DEEPMDP = AgentSpec(make=make_state_deepmdp, default_config=lambda: default_config(pixels=False),
                          validate=validate, **representation.HOOKS)
