"""SAC's actor and twin critics on a registered network, with a leading task axis.

Both take a `make_network(output_dim)` that returns the registered network with its context
(`networks.build`, partially applied); everything is shaped (T, B, ...).
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class ScalarValue:
    """A critic that outputs Q itself, trained on the squared TD error (SAC's eq. 5)."""

    num_outputs = 1

    def q(self, outputs):  # (..., 1) -> (...)
        return outputs[..., 0]

    def loss(self, outputs, target):
        return (outputs[..., 0] - target) ** 2


@dataclasses.dataclass(frozen=True)
class CategoricalValue:
    """A critic that outputs logits over a fixed support of `num_bins` returns in [v_min, v_max]
    (Bellemare et al. 2017; Farebrother et al. 2024, "Stop Regressing"): Q is the expectation
    over the bins, and the loss the cross-entropy against the target's two-hot projection onto
    the support (the two bins around it, weighted so their expectation is the target, clipped
    to the support), whose gradient moves Q towards the target."""

    num_bins: int
    v_min: float
    v_max: float

    @property
    def num_outputs(self):
        return self.num_bins

    def support(self):
        return jnp.linspace(self.v_min, self.v_max, self.num_bins)

    def q(self, outputs):  # (..., K) -> (...)
        return jax.nn.softmax(outputs, axis=-1) @ self.support()

    def two_hot(self, target):  # (...) -> (..., K)
        position = (jnp.clip(target, self.v_min, self.v_max) - self.v_min) / (self.v_max - self.v_min)
        position = position * (self.num_bins - 1)
        lower = jnp.clip(jnp.floor(position), 0, self.num_bins - 2)
        upper_weight = position - lower
        bins = jnp.arange(self.num_bins)
        return ((bins == lower[..., None]) * (1.0 - upper_weight[..., None])
                + (bins == lower[..., None] + 1) * upper_weight[..., None])

    def loss(self, outputs, target):
        return -jnp.sum(self.two_hot(target) * jax.nn.log_softmax(outputs, axis=-1), axis=-1)


class Critic(nn.Module):
    """The critic's outputs at (s, a): (T, B, D), (T, B, A) -> (T, B, K), K the value head's."""

    make_network: Callable[[int], nn.Module]
    num_outputs: int = 1

    @nn.compact
    def __call__(self, obs, action, descriptions=None):
        return self.make_network(self.num_outputs)(jnp.concatenate([obs, action], axis=-1), descriptions)


_CriticEnsemble = nn.vmap(
    Critic,
    variable_axes={"params": 0},
    split_rngs={"params": True},
    in_axes=(0, 0, None),
    out_axes=0,
)


class TwinCritic(nn.Module):
    """An encoder stage, then two independent critics as one vmapped ensemble on its features:
    (T, B, D), (T, B, A) -> Q (2, T, B), through the value head `value` (`outputs` gives the
    head's raw outputs, (2, T, B, K)).

    `make_encoder() -> nn.Module` maps observations (T, B, ...) to features (T, B, F); without
    one the features are the observations. The encoder runs once per batch, before the
    ensemble (`encode`, then `q`); its parameters are the critics' (`params/encoder`), trained
    by the critic loss. The features are broadcast along the ensemble axis, so every layer is
    one batched matmul over a leading ensemble axis (no activation transposes in the backward
    pass)."""

    make_network: Callable[[int], nn.Module]
    make_encoder: Callable[[], nn.Module] | None = None
    value: ScalarValue | CategoricalValue = ScalarValue()

    def setup(self):
        self.encoder = None if self.make_encoder is None else self.make_encoder()
        self.ensemble = _CriticEnsemble(self.make_network, self.value.num_outputs)

    def encode(self, obs):
        return obs if self.encoder is None else self.encoder(obs)

    def outputs(self, features, action, descriptions=None):  # (2, T, B, K): the value head's outputs
        twin = lambda x: jnp.broadcast_to(x, (2, *x.shape))  # noqa: E731
        return self.ensemble(twin(features), twin(action), descriptions)

    def q(self, features, action, descriptions=None):
        return self.value.q(self.outputs(features, action, descriptions))

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
