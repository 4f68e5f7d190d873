"""The latent models of DeepMDP (Gelada et al. 2019, "DeepMDP: Learning Continuous Latent Space
Models for Representation Learning") as mtrl builds them: a transition model
P(z' | z, a) and a reward model R(z'), each one Dense-LayerNorm-ReLU layer of `layer_width` and
a linear output, shared by all tasks (the task axis folded into the batch).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


def _hidden(x, width: int):
    return nn.relu(nn.LayerNorm(name="norm")(nn.Dense(width, name="hidden")(x)))


class TransitionModel(nn.Module):
    """(..., F + E + A) -> the next latent's Gaussian (mean, sigma), each (..., F). Deterministic
    (mtrl's default): sigma 1, so the Gaussian NLL is half the squared error; probabilistic:
    sigma = min_sigma + (max_sigma - min_sigma) * sigmoid(.), learned."""

    feature_dim: int
    layer_width: int
    probabilistic: bool = False
    min_sigma: float = 1e-4
    max_sigma: float = 10.0

    @nn.compact
    def __call__(self, x):
        hidden = _hidden(x, self.layer_width)
        mean = nn.Dense(self.feature_dim, name="mean")(hidden)
        if not self.probabilistic:
            return mean, jnp.ones_like(mean)
        sigma = nn.sigmoid(nn.Dense(self.feature_dim, name="sigma")(hidden))
        return mean, self.min_sigma + (self.max_sigma - self.min_sigma) * sigma


class RewardModel(nn.Module):
    """(..., F) -> the reward (...)."""

    layer_width: int

    @nn.compact
    def __call__(self, latent):
        return nn.Dense(1, name="reward")(_hidden(latent, self.layer_width))[..., 0]
