"""SAC's `agent` config section: its defaults (mtrl's `state_sac`), its checks, and the agent
hooks (`AgentSpec`) every agent built on it shares: taking the env's tasks, checking them,
shrinking for `smoke`, the metrics logged per task."""

from __future__ import annotations

import ml_collections

from mtsac_jax import gradients, networks, task_descriptions
from mtsac_jax.registry import ConfigError, check_choice, check_positive

TEMPERATURE_LOSSES = ("log_alpha", "alpha")
CRITIC_LOSSES = ("mse", "categorical")


def default_config() -> dict:
    """mtrl's `state_sac` at its MT10 reference: 3x400 actor and twin critics, Adam 3e-4."""
    return {
        "discount": 0.99,
        "critic_tau": 0.005,
        "init_temperature": 1.0,
        # "log_alpha": d loss / d log_alpha = -(log pi + target), as softlearning, SB3, SBX;
        # "alpha": mtrl's alpha * (...), whose gradient scales with alpha (see docs/results.md).
        "temperature_loss": "log_alpha",
        "actor": {"hidden_dim": 400, "num_layers": 3, "log_std_min": -20.0, "log_std_max": 2.0},
        "critic": {"hidden_dim": 400, "num_layers": 3},
        # "mse": the squared TD error on Q; "categorical": cross-entropy on a fixed support of
        # returns (`categorical`), Q the expectation over its bins (BRC, Nauman et al. 2025)
        "critic_loss": "mse",
        "categorical": {"num_bins": 101, "v_min": -10.0, "v_max": 10.0},
        # BRC's per-task reward scale: each task's rewards scaled when sampled so that the bound
        # on its soft returns is categorical.v_max
        "reward_normalization": False,
        # weight_decay > 0: AdamW (decoupled weight decay) instead of Adam; b1: Adam's beta1
        "optimizers": {"actor": {"lr": 3e-4, "weight_decay": 0.0}, "critic": {"lr": 3e-4, "weight_decay": 0.0},
                       "alpha": {"lr": 3e-4, "b1": 0.9}},
        "multitask": {
            "num_envs": 1,
            "should_use_disentangled_alpha": True,
            "should_use_multi_head_policy": False,
            "should_use_task_encoder": False,
            "should_use_disjoint_policy": False,
            # description_embeddings: "" (a learned embedding per task), "metaworld" (the shipped
            # Meta-World task-description embeddings) or a JSON file of them (CARE's context).
            "task_encoder": {"embedding_dim": 50, "description_embeddings": ""},
        },
    }


def validate(config: ml_collections.ConfigDict) -> None:
    check_choice("agent.temperature_loss", config.temperature_loss, TEMPERATURE_LOSSES)
    check_choice("agent.critic_loss", config.critic_loss, CRITIC_LOSSES)
    categorical = config.categorical
    if not (isinstance(categorical.num_bins, int) and categorical.num_bins >= 2) or categorical.v_min >= categorical.v_max:
        raise ConfigError(
            f"agent.categorical: num_bins={categorical.num_bins!r}, v_min={categorical.v_min}, v_max={categorical.v_max}: "
            "the support needs at least 2 bins and v_min below v_max. Fix: e.g. num_bins=101, v_min=-10, v_max=10."
        )
    if config.get("reward_normalization") and not (config.discount < 1.0 and categorical.v_max > 0):
        raise ConfigError(
            f"agent.reward_normalization=True bounds each task's returns by agent.categorical.v_max="
            f"{categorical.v_max} through the discount agent.discount={config.discount}: it needs a discount "
            "below 1 and a positive v_max. Fix: change those keys, or pass --config.agent.reward_normalization=False."
        )
    for name in ("actor", "critic"):
        if config.optimizers[name].weight_decay < 0:
            raise ConfigError(f"agent.optimizers.{name}.weight_decay={config.optimizers[name].weight_decay} must "
                              "not be negative (0: Adam, positive: AdamW).")
    gradients.GRADIENTS.get(config.gradient.name).validate(config.gradient)
    positive = {
        "agent.actor.hidden_dim": config.actor.hidden_dim,
        "agent.actor.num_layers": config.actor.num_layers,
        "agent.critic.hidden_dim": config.critic.hidden_dim,
        "agent.critic.num_layers": config.critic.num_layers,
        "agent.init_temperature": config.init_temperature,
        "agent.optimizers.actor.lr": config.optimizers.actor.lr,
        "agent.optimizers.critic.lr": config.optimizers.critic.lr,
        "agent.optimizers.alpha.lr": config.optimizers.alpha.lr,
        "agent.multitask.num_envs": config.multitask.num_envs,
        "agent.multitask.task_encoder.embedding_dim": config.multitask.task_encoder.embedding_dim,
    }
    check_positive(positive)
    if not 0.0 < config.discount <= 1.0:
        raise ConfigError(f"agent.discount={config.discount} must lie in (0, 1]. Fix: e.g. --config.agent.discount=0.99.")
    if not 0.0 < config.critic_tau <= 1.0:
        raise ConfigError(
            f"agent.critic_tau={config.critic_tau} must lie in (0, 1] (1 copies the critic into its target)."
        )
    if config.actor.log_std_min >= config.actor.log_std_max:
        raise ConfigError(
            f"agent.actor.log_std_min={config.actor.log_std_min} must be below "
            f"agent.actor.log_std_max={config.actor.log_std_max}."
        )
    multitask = config.multitask
    if multitask.should_use_multi_head_policy and multitask.should_use_disjoint_policy:
        raise ConfigError(
            "agent.multitask.should_use_multi_head_policy and agent.multitask.should_use_disjoint_policy "
            "are both True. A disjoint policy already gives every task its own network. "
            "Fix: set one of them to False."
        )
    network = networks.NETWORKS.get(config.network.name)
    check_positive({f"agent.network.{key}": value for key, value in config.network.items()
                    if isinstance(value, (int, float)) and not isinstance(value, bool)})
    if multitask.task_encoder.description_embeddings and not multitask.should_use_task_encoder:
        raise ConfigError(
            "agent.multitask.task_encoder.description_embeddings is set, but should_use_task_encoder is False, so "
            "no task encoder reads them. Fix: pass --config.agent.multitask.should_use_task_encoder=True."
        )
    if multitask.should_use_task_encoder and not network.uses_context:
        raise ConfigError(
            f"agent.multitask.should_use_task_encoder=True, but the network {config.network.name!r} learns its own "
            "per-task parameters and reads no task encoding. Fix: set it to False."
        )
    if multitask.should_use_disjoint_policy and not network.supports_disjoint:
        raise ConfigError(
            f"agent.multitask.should_use_disjoint_policy=True, but the network {config.network.name!r} has no "
            "disjoint form. Fix: set it to False, or choose network=mlp in the config file's argument."
        )


def take_tasks(config: ml_collections.ConfigDict, task_names: tuple[str, ...]) -> None:
    """One head, alpha and task encoding per task: `multitask.num_envs` is the env's task count."""
    config.multitask.num_envs = len(task_names)


def check_tasks(config: ml_collections.ConfigDict, task_names: tuple[str, ...], env_name: str) -> None:
    multitask = config.multitask
    if multitask.should_use_task_encoder and multitask.task_encoder.description_embeddings:
        task_descriptions.description_embeddings(multitask.task_encoder.description_embeddings, task_names)
    if multitask.num_envs != len(task_names):
        raise ConfigError(
            f"agent.multitask.num_envs={multitask.num_envs} but env.name={env_name!r} has {len(task_names)} "
            "task(s). The agent keeps one head/alpha per task, so the two must agree. "
            f"Fix: pass --config.agent.multitask.num_envs={len(task_names)} or leave it out "
            "(every config file sets it from the env)."
        )


def shrink(config: ml_collections.ConfigDict) -> None:
    """2x32 actor and critics, 8-wide task encodings and network dimensions."""
    for network in (config.actor, config.critic):
        network.hidden_dim = 32
        network.num_layers = 2
    config.multitask.task_encoder.embedding_dim = 8
    for key in config.network:
        if key.endswith("_dim"):
            config.network[key] = 8


# The agent hooks (`AgentSpec`) of every agent built on this section.
HOOKS = {"take_tasks": take_tasks, "check_tasks": check_tasks, "shrink": shrink,
                     "per_task_metrics": ("alpha",)}
