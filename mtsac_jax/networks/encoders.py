"""Encoder stages and decoders of the representation-learning agents (`sac_ae`, `deepmdp`,
`state_deepmdp`, `hipbmdp`): an observation (T, B, ...) to a feature (T, B, F) that the twin
critics and the actor read, and back.

- `PixelEncoder`: SAC-AE's (Yarats et al. 2019, "Improving Sample Efficiency in Model-Free
  Reinforcement Learning from Images"): uint8 frames scaled to [0, 1] inside the update,
  `num_layers` 3x3 convolutions of `num_filters` (the first of stride 2), a linear map to
  `feature_dim`, LayerNorm and tanh.
- `StateEncoder`: the same head on a ReLU MLP of a state vector.
- `PixelDecoder`: SAC-AE's decoder, the encoder mirrored (a linear map to the last convolution's
  shape, 3x3 transposed convolutions), reconstructing frames in [-0.5, 0.5] (`reconstruction_target`).

Every layer is shared by all tasks: the task axis is folded into the batch.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def _features(x, feature_dim: int):
    return nn.tanh(nn.LayerNorm(name="norm")(nn.Dense(feature_dim, name="features")(x)))


def conv_sizes(size: int, num_layers: int) -> tuple[int, int]:
    """The side of the first and of the last convolution's output for an input side `size`."""
    first = (size - 3) // 2 + 1
    return first, first - 2 * (num_layers - 1)


class PixelEncoder(nn.Module):
    """Frames (..., C, H, W), uint8 (or floats in [0, 255]) -> features (..., feature_dim)."""

    num_layers: int
    num_filters: int
    feature_dim: int

    @nn.compact
    def __call__(self, obs):
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).astype(jnp.float32) / 255.0
        x = jnp.transpose(x, (0, 2, 3, 1))  # channels last, as flax's convolutions take them
        for index in range(self.num_layers):
            x = nn.relu(nn.Conv(self.num_filters, (3, 3), strides=2 if index == 0 else 1, padding="VALID",
                                name=f"conv_{index}")(x))
        return _features(x.reshape(x.shape[0], -1), self.feature_dim).reshape(*lead, self.feature_dim)


class StateEncoder(nn.Module):
    """States (..., D) -> features (..., feature_dim): `num_layers` ReLU layers, then the head."""

    hidden_dim: int
    num_layers: int
    feature_dim: int

    @nn.compact
    def __call__(self, obs):
        lead = obs.shape[:-1]
        x = obs.reshape(-1, obs.shape[-1]).astype(jnp.float32)
        for index in range(self.num_layers):
            x = nn.relu(nn.Dense(self.hidden_dim, name=f"hidden_{index}")(x))
        return _features(x, self.feature_dim).reshape(*lead, self.feature_dim)


class PixelDecoder(nn.Module):
    """Features (..., F) -> frames (..., C, H, W) in [-0.5, 0.5], the `PixelEncoder` mirrored."""

    num_layers: int
    num_filters: int
    obs_shape: tuple[int, int, int]  # (C, H, W)

    @nn.compact
    def __call__(self, features):
        channels, height, width = self.obs_shape
        (first_h, last_h), (first_w, last_w) = conv_sizes(height, self.num_layers), conv_sizes(width, self.num_layers)
        lead = features.shape[:-1]
        x = nn.relu(nn.Dense(last_h * last_w * self.num_filters, name="expand")(features.reshape(-1, features.shape[-1])))
        x = x.reshape(-1, last_h, last_w, self.num_filters)
        for index in range(self.num_layers - 1):
            x = nn.relu(nn.ConvTranspose(self.num_filters, (3, 3), padding="VALID", name=f"deconv_{index}")(x))
        # stride 2 back to (H, W): output side 2 * side + 1 + extra with padding (2, 2 + extra)
        padding = ((2, 2 + height - 2 * first_h - 1), (2, 2 + width - 2 * first_w - 1))
        x = nn.ConvTranspose(channels, (3, 3), strides=(2, 2), padding=padding, name="frames")(x)
        return jnp.transpose(x, (0, 3, 1, 2)).reshape(*lead, channels, height, width)


def reconstruction_target(obs, key, bits: int = 5):
    """SAC-AE's target for a frame (uint8): quantised to `bits` bits, dequantised with uniform
    noise and centred, in [-0.5, 0.5] (Yarats et al. 2019, after Kingma & Dhariwal 2018)."""
    bins = 2**bits
    x = jnp.floor(obs.astype(jnp.float32) / 2 ** (8 - bits)) / bins
    return x + jax.random.uniform(key, x.shape) / bins - 0.5
