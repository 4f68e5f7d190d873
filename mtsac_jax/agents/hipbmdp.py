"""`hipbmdp`: HiP-BMDP (Zhang et al. 2021, "Learning Robust State Abstractions for
Hidden-Parameter Block MDPs"): DeepMDP (`agents.deepmdp`) whose transition model also reads a
learned embedding theta of each training env (its hidden parameters, `task_embedding.dim`), so
that one latent space serves MDPs that differ in their dynamics. A task metric (weight
`task_embedding.metric_weight`, 0.01) makes distances between embeddings match distances
between the transition model's predictions for the same (s, a):

    L_theta = E[ (||theta_t - theta_t'|| - ||P(phi(s), a, theta_t) - P(phi(s), a, theta_t')||)^2 ],

each training env t paired with another env t' drawn at every update. Frames (SAC-AE's encoder
and decoder) or states (a feed-forward encoder). The policy and the critics read phi(s) alone
(mtrl's hipbmdp settings), so an env never trained on is acted in as any other.

Where mtrl differs: it pairs the samples of a batch with those of the batch reversed, which
pairs a task with itself (for an odd number of tasks, the middle one; and every sample of a
task whose reversal lands in the same task), and takes the norms over the whole batch at once;
here each task is paired with another env's embedding on its own samples, per sample.

Run it:

    python train.py --config=configs/hipbmdp.py:walker-walk-friction,hipbmdp
    python train.py --config=configs/hipbmdp.py:finger-spin,hipbmdp,pixels
"""

from __future__ import annotations

import ml_collections

from mtsac_jax.agents import Agent, AgentSpec, EnvSpec, deepmdp, representation


def make(config: ml_collections.ConfigDict, env_spec: EnvSpec, batch_size_per_task: int,
         num_updates_per_call: int = 1) -> Agent:
    return representation.make_agent(deepmdp.build(config, env_spec, embed_envs=True), batch_size_per_task,
                                     num_updates_per_call)


def default_config() -> dict:
    """DeepMDP's keys at mtrl's pixel settings, and the env embedding's: 50-d, task metric weight 0.01."""
    return {**deepmdp.default_config(), "task_embedding": {"dim": 50, "metric_weight": 0.01}}


def validate(config: ml_collections.ConfigDict) -> None:
    deepmdp.validate(config)
    if not config.task_embedding.dim > 0 or config.task_embedding.metric_weight < 0:
        raise representation.ConfigError(
            f"agent.task_embedding: dim={config.task_embedding.dim!r} must be positive and "
            f"metric_weight={config.task_embedding.metric_weight!r} not negative. Fix: e.g. dim=50, metric_weight=0.01.")


HIPBMDP = AgentSpec(make=make, default_config=default_config, validate=validate, **representation.HOOKS)
