"""SAC's actor and twin critics on a registered network, with a leading task axis.

Both take a `make_network(output_dim)` that returns the registered network with its context
(`networks.build`, partially applied); everything is shaped (T, B, ...).
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


class Actor(nn.Module):
    """Gaussian policy before the tanh squashing: returns (mean, log_std), each (T, B, A)."""

    action_dim: int
    make_network: Callable[[int], nn.Module]
    log_std_min: float
    log_std_max: float

    @nn.compact
    def __call__(self, obs, descriptions=None):
        out = self.make_network(2 * self.action_dim)(obs, descriptions)
        mean, raw_log_std = jnp.split(out, 2, axis=-1)
        # mtrl's bound: tanh maps the raw output smoothly into [log_std_min, log_std_max].
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (jnp.tanh(raw_log_std) + 1.0)
        return mean, log_std


class Critic(nn.Module):
    """Q(s, a): (T, B, D), (T, B, A) -> (T, B)."""

    make_network: Callable[[int], nn.Module]

    @nn.compact
    def __call__(self, obs, action, descriptions=None):
        return self.make_network(1)(jnp.concatenate([obs, action], axis=-1), descriptions)[..., 0]


_CriticEnsemble = nn.vmap(
    Critic,
    variable_axes={"params": 0},
    split_rngs={"params": True},
    in_axes=(0, 0, None),
    out_axes=0,
)


class TwinCritic(nn.Module):
    """An encoder stage, then two independent critics as one vmapped ensemble on its features:
    (T, B, D), (T, B, A) -> (2, T, B).

    `make_encoder() -> nn.Module` maps observations (T, B, ...) to features (T, B, F); without
    one the features are the observations. The encoder runs once per batch, before the
    ensemble (`encode`, then `q`); its parameters are the critics' (`params/encoder`), trained
    by the critic loss. The features are broadcast along the ensemble axis, so every layer is
    one batched matmul over a leading ensemble axis (no activation transposes in the backward
    pass)."""

    make_network: Callable[[int], nn.Module]
    make_encoder: Callable[[], nn.Module] | None = None

    def setup(self):
        self.encoder = None if self.make_encoder is None else self.make_encoder()
        self.ensemble = _CriticEnsemble(self.make_network)

    def encode(self, obs):
        return obs if self.encoder is None else self.encoder(obs)

    def q(self, features, action, descriptions=None):
        twin = lambda x: jnp.broadcast_to(x, (2, *x.shape))  # noqa: E731
        return self.ensemble(twin(features), twin(action), descriptions)

    def __call__(self, obs, action, descriptions=None):
        return self.q(self.encode(obs), action, descriptions)


def sample_tanh_gaussian(mean, log_std, key):
    """`tanh_gaussian` with standard normal noise drawn from `key`."""
    return tanh_gaussian(mean, log_std, jax.random.normal(key, mean.shape, mean.dtype))


def tanh_gaussian(mean, log_std, noise):
    """a = tanh(u), u = mean + std * noise; log pi(a|s) with the tanh change of variables
    (Haarnoja et al. 2018a, appendix C, eq. 21), summed over action dimensions."""
    pre_tanh = mean + jnp.exp(log_std) * noise
    gaussian_log_prob = -0.5 * noise**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    # log(1 - tanh(u)^2) written stably as 2 (log 2 - u - softplus(-2u)).
    log_det = 2.0 * (jnp.log(2.0) - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh))
    return jnp.tanh(pre_tanh), jnp.sum(gaussian_log_prob - log_det, axis=-1)
