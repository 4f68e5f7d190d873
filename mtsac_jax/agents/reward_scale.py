"""Per-task reward normalisation (BRC, Nauman et al. 2025, sec. 4): each task's rewards are
scaled, when a batch is sampled, so that the bound on that task's soft returns is `v_max`:

    r_t <- r_t * v_max / (G_t + lambda_t),   G_t = max |r_t| / (1 - gamma),
                                             lambda_t = alpha_t |H_t| / (1 - gamma),

G_t the bound on task t's returns from the largest reward it has shown, lambda_t the entropy
term's share (alpha_t the task's temperature, H_t its policy's entropy as the last actor step
measured it). The critics then learn the whole soft return scaled by the factor: the entropy
bonus in their target, and in the actor's loss against them, is weighted by alpha_t times the
factor (`sac_losses.temperature`), so that (G_t + lambda_t) times the factor is v_max. The
statistics live in the train state (`RewardScale`), so a checkpoint restores them exactly; the
replay buffer keeps the rewards as the env gave them, so a scale never goes stale: every batch
is scaled by the statistics of its own update.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class RewardScale:
    reward_bound: jax.Array  # (T,) the largest |reward| of each task sampled so far
    entropy: jax.Array  # (T,) each task's policy entropy -E[log pi], from the last actor step


def init(num_tasks: int) -> RewardScale:
    return RewardScale(jnp.zeros((num_tasks,), jnp.float32), jnp.zeros((num_tasks,), jnp.float32))


def factors(scale: RewardScale, alpha, discount: float, v_max: float):
    """(T,) each task's reward factor v_max / (G_t + lambda_t)."""
    ceiling = (scale.reward_bound + alpha * jnp.abs(scale.entropy)) / (1.0 - discount)
    return v_max / jnp.maximum(ceiling, 1e-6)


def observe(scale: RewardScale, reward) -> RewardScale:
    """The statistics with a sampled batch's rewards (T, B) taken in."""
    return scale.replace(reward_bound=jnp.maximum(scale.reward_bound, jnp.abs(reward).max(axis=-1)))


def observe_entropy(scale: RewardScale, log_prob) -> RewardScale:
    """The statistics with the actor's log pi (T, B) on the latest batch."""
    return scale.replace(entropy=-log_prob.mean(axis=-1))
