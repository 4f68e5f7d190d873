"""`sac_ae`: SAC+AE (Yarats et al. 2019, "Improving Sample Efficiency in Model-Free Reinforcement
Learning from Images"): SAC on pixels behind a convolutional encoder, which a deterministic
autoencoder's reconstruction loss trains beside the critic's:

    L(encoder, decoder) = E[ ||decoder(encoder(o)) - target(o)||^2 ] + lambda E[ ||encoder(o)||^2 / 2 ],

the target being the frame quantised to 5 bits, dequantised with uniform noise and centred
(`encoders.reconstruction_target`). The schedule, optimizers and targets are
`agents.representation`'s (mtrl's). Frames only: on states, use `state_sac` or `state_deepmdp`.

Where mtrl differs: its decoder optimizer applies weight decay as an L2 term inside Adam; here
`optimizers.decoder.weight_decay` is AdamW's decoupled decay (1e-7 either way).

Run it:

    python train.py --config=configs/hipbmdp.py:finger-spin,sac_ae,pixels
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from mtsac_jax import gradients
from mtsac_jax.agents import Agent, AgentSpec, EnvSpec, representation
from mtsac_jax.networks import encoders
from mtsac_jax.registry import ConfigError


@flax.struct.dataclass
class AutoencoderInputs:
    obs: jax.Array = gradients.loss_input()  # (T, B, C, H, W) uint8
    target: jax.Array = gradients.loss_input()  # (T, B, C, H, W) in [-0.5, 0.5]


def reconstruction_loss(reconstruction, target):
    """Per task: the mean over the batch and the pixels of the squared error, (T,)."""
    return jnp.mean((reconstruction - target) ** 2, axis=tuple(range(1, reconstruction.ndim)))


def autoencoder_losses(rep: representation.Representation, params, inputs: AutoencoderInputs):
    features = rep.encode(params["encoder"], inputs.obs)
    reconstruction = reconstruction_loss(rep.models.apply(params["models"], features), inputs.target)
    losses = reconstruction + rep.latent_lambda * representation.latent_penalty(features).mean(axis=-1)
    return losses, {"reconstruction_loss": reconstruction}


def autoencoder_inputs(rep, state, batch, key) -> AutoencoderInputs:
    return AutoencoderInputs(obs=batch["obs"], target=encoders.reconstruction_target(batch["obs"], key))


def require_frames(config: ml_collections.ConfigDict, env_spec: EnvSpec, states_instead: str) -> None:
    if not env_spec.pixels:
        raise ConfigError(
            f"agent {config.name} reconstructs frames, and the env gives state vectors {env_spec.observation_shape}. "
            f"Fix: --config.env.from_pixels=True, or agent={states_instead} for states.")


def make(config: ml_collections.ConfigDict, env_spec: EnvSpec, batch_size_per_task: int,
         num_updates_per_call: int = 1) -> Agent:
    require_frames(config, env_spec, "state_sac")
    models_for = lambda num_tasks: encoders.PixelDecoder(  # noqa: E731 (one decoder for all tasks)
        config.encoder.num_layers, config.encoder.num_filters, env_spec.observation_shape)
    features = jnp.zeros((1, config.encoder.feature_dim))
    rep = representation.build(config, env_spec, models_for, lambda module, key: module.init(key, features),
                               autoencoder_losses, autoencoder_inputs)
    return representation.make_agent(rep, batch_size_per_task, num_updates_per_call)


SAC_AE = AgentSpec(make=make, default_config=representation.default_config, validate=representation.validate,
                   **representation.HOOKS)
