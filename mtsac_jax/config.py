"""Config building blocks (setup x agent x env), the smoke variant, and validation.

Key names follow facebookresearch/mtrl so its users feel at home. Step counts
(`num_train_steps`, `init_steps`, `eval_freq`, `log_freq`) are vector-env steps:
each adds one transition per task, as in mtrl.
"""

from __future__ import annotations

import difflib

import ml_collections
from metaworld.env_dict import ALL_V3_ENVIRONMENTS, MT10_V3

SETUPS = ("metaworld",)
AGENTS = ("state_sac",)
TEMPERATURE_LOSSES = ("log_alpha", "alpha")
ENVS = ("metaworld-mt1", "metaworld-mt10", "metaworld-mt50")
META_WORLD_TASKS = tuple(ALL_V3_ENVIRONMENTS)
MAX_EPISODE_STEPS = 500  # Meta-World refuses longer episodes.


class ConfigError(ValueError):
    """A config that cannot run; the message names the keys and the fix."""


def task_names(env_config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The Meta-World task names of an env section, in benchmark order."""
    if env_config.name == "metaworld-mt1":
        return (env_config.task_name,)
    if env_config.name == "metaworld-mt10":
        return tuple(MT10_V3)
    return META_WORLD_TASKS


def setup_config(name: str) -> ml_collections.ConfigDict:
    """What the work cares about: `metaworld` evaluates on the training tasks (success rate)."""
    _check_choice("setup", name, SETUPS)
    return ml_collections.ConfigDict({"name": name})


def agent_config(name: str) -> ml_collections.ConfigDict:
    """mtrl's `state_sac` at its MT10 reference: 3x400 actor and twin critics, Adam 3e-4."""
    _check_choice("agent", name, AGENTS)
    return ml_collections.ConfigDict(
        {
            "name": name,
            "discount": 0.99,
            "critic_tau": 0.005,
            "init_temperature": 1.0,
            # "log_alpha": d loss / d log_alpha = -(log pi + target), as softlearning, SB3, SBX;
            # "alpha": mtrl's alpha * (...), whose gradient scales with alpha (see docs/results.md).
            "temperature_loss": "log_alpha",
            "actor": {
                "hidden_dim": 400,
                "num_layers": 3,
                "log_std_min": -20.0,
                "log_std_max": 2.0,
            },
            "critic": {"hidden_dim": 400, "num_layers": 3},
            "optimizers": {
                "actor": {"lr": 3e-4},
                "critic": {"lr": 3e-4},
                "alpha": {"lr": 3e-4},
            },
            "multitask": {
                "num_envs": 1,
                "should_use_disentangled_alpha": True,
                "should_use_multi_head_policy": False,
                "should_use_task_encoder": False,
                "should_use_disjoint_policy": False,
                "task_encoder": {"embedding_dim": 50},
            },
        }
    )


def env_config(name: str, task_name: str = "reach-v3") -> ml_collections.ConfigDict:
    """Meta-World+ protocol by default: 500-step episodes, a random goal of 50 per
    reset, one-hot task id (multi-task only), v2 rewards. mtrl's protocol is
    `fixed_goal=True, max_episode_steps=150, use_one_hot=False`."""
    _check_choice("env", name, ENVS)
    config = ml_collections.ConfigDict(
        {
            "name": name,
            "vector_strategy": "auto",
            "max_episode_steps": MAX_EPISODE_STEPS,
            "use_one_hot": name != "metaworld-mt1",
            "fixed_goal": False,
            "reward_function_version": "v2",
        }
    )
    if name == "metaworld-mt1":
        _check_choice("task", task_name, META_WORLD_TASKS)
        config.task_name = task_name
    return config


def experiment_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "num_train_steps": 2_000_000,
            "init_steps": 1500,
            "eval_freq": 10_000,
            "num_eval_episodes": 10,
            "log_freq": 1000,
            "save_freq": 10_000,
            "keep_checkpoints": 2,
            "num_updates_per_step": 1,
        }
    )


def replay_buffer_config(num_tasks: int) -> ml_collections.ConfigDict:
    """mtrl's sizes: 1M transitions over all tasks (split evenly), 128 samples per task
    per batch (1280 on MT10)."""
    return ml_collections.ConfigDict({"capacity": 1_000_000, "batch_size": 128 * num_tasks})


def compose(
    setup: str, agent: str, env: str, task_name: str = "reach-v3", smoke: bool = False
) -> ml_collections.ConfigDict:
    """One config from a setup, an agent and an env; locked against new keys."""
    config = ml_collections.ConfigDict()
    config.seed = 1
    config.setup = setup_config(setup)
    config.agent = agent_config(agent)
    config.env = env_config(env, task_name)
    config.experiment = experiment_config()
    num_tasks = len(task_names(config.env))
    config.replay_buffer = replay_buffer_config(num_tasks)
    config.agent.multitask.num_envs = num_tasks
    if smoke:
        shrink_to_smoke(config)
    config.lock()
    return config


def shrink_to_smoke(config: ml_collections.ConfigDict) -> None:
    """Tiny networks, batch, steps and eval: every code path in well under two minutes."""
    num_tasks = config.agent.multitask.num_envs
    for network in (config.agent.actor, config.agent.critic):
        network.hidden_dim = 32
        network.num_layers = 2
    config.agent.multitask.task_encoder.embedding_dim = 8
    config.replay_buffer.batch_size = 8 * num_tasks
    config.replay_buffer.capacity = 1000 * num_tasks
    config.experiment.num_train_steps = 240
    config.experiment.init_steps = 60
    config.experiment.eval_freq = 120
    config.experiment.num_eval_episodes = 1
    config.experiment.log_freq = 60
    config.experiment.save_freq = 50
    config.env.max_episode_steps = 50


def parse_config_arg(arg: str | None) -> tuple[list[str], dict[str, str]]:
    """Splits a config-file argument `a,b,key=value` into flags and key/value pairs."""
    flags, pairs = [], {}
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if sep:
            pairs[key.strip()] = value.strip()
        else:
            flags.append(key.strip())
    return flags, pairs


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks values and cross-section facts; raises ConfigError naming keys and fix."""
    _check_choice("setup.name", config.setup.name, SETUPS)
    _check_choice("agent.name", config.agent.name, AGENTS)
    _check_choice("env.name", config.env.name, ENVS)
    if config.env.name == "metaworld-mt1":
        _check_choice("env.task_name", config.env.task_name, META_WORLD_TASKS)
    _check_choice("agent.temperature_loss", config.agent.temperature_loss, TEMPERATURE_LOSSES)
    _check_choice("env.vector_strategy", config.env.vector_strategy, ("auto", "sync", "async"))
    _check_choice("env.reward_function_version", config.env.reward_function_version, ("v1", "v2"))

    positive = {
        "agent.actor.hidden_dim": config.agent.actor.hidden_dim,
        "agent.actor.num_layers": config.agent.actor.num_layers,
        "agent.critic.hidden_dim": config.agent.critic.hidden_dim,
        "agent.critic.num_layers": config.agent.critic.num_layers,
        "agent.init_temperature": config.agent.init_temperature,
        "agent.optimizers.actor.lr": config.agent.optimizers.actor.lr,
        "agent.optimizers.critic.lr": config.agent.optimizers.critic.lr,
        "agent.optimizers.alpha.lr": config.agent.optimizers.alpha.lr,
        "agent.multitask.num_envs": config.agent.multitask.num_envs,
        "agent.multitask.task_encoder.embedding_dim": config.agent.multitask.task_encoder.embedding_dim,
        "replay_buffer.capacity": config.replay_buffer.capacity,
        "replay_buffer.batch_size": config.replay_buffer.batch_size,
        "experiment.num_train_steps": config.experiment.num_train_steps,
        "experiment.eval_freq": config.experiment.eval_freq,
        "experiment.num_eval_episodes": config.experiment.num_eval_episodes,
        "experiment.log_freq": config.experiment.log_freq,
        "experiment.save_freq": config.experiment.save_freq,
        "experiment.keep_checkpoints": config.experiment.keep_checkpoints,
        "experiment.num_updates_per_step": config.experiment.num_updates_per_step,
        "env.max_episode_steps": config.env.max_episode_steps,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{key}={value!r} must be positive. Fix: pass --config.{key}=<a positive value>.")
    if config.experiment.init_steps < 0:
        raise ConfigError(
            f"experiment.init_steps={config.experiment.init_steps} must be >= 0 "
            "(vector-env steps of uniform random actions before learning starts)."
        )
    if not 0.0 < config.agent.discount <= 1.0:
        raise ConfigError(
            f"agent.discount={config.agent.discount} must lie in (0, 1]. Fix: e.g. --config.agent.discount=0.99."
        )
    if not 0.0 < config.agent.critic_tau <= 1.0:
        raise ConfigError(
            f"agent.critic_tau={config.agent.critic_tau} must lie in (0, 1] (1 copies the critic into its target)."
        )
    if config.agent.actor.log_std_min >= config.agent.actor.log_std_max:
        raise ConfigError(
            f"agent.actor.log_std_min={config.agent.actor.log_std_min} must be below "
            f"agent.actor.log_std_max={config.agent.actor.log_std_max}."
        )
    if config.env.max_episode_steps > MAX_EPISODE_STEPS:
        raise ConfigError(
            f"env.max_episode_steps={config.env.max_episode_steps} exceeds Meta-World's limit of "
            f"{MAX_EPISODE_STEPS} steps per episode. Fix: pass a value <= {MAX_EPISODE_STEPS}."
        )

    tasks = task_names(config.env)
    num_tasks = len(tasks)
    multitask = config.agent.multitask
    if multitask.num_envs != num_tasks:
        raise ConfigError(
            f"agent.multitask.num_envs={multitask.num_envs} but env.name={config.env.name!r} has "
            f"{num_tasks} task(s). The agent keeps one head/alpha per task, so the two must agree. "
            f"Fix: pass --config.agent.multitask.num_envs={num_tasks} or leave it out "
            "(every config file sets it from the env)."
        )
    if multitask.should_use_multi_head_policy and multitask.should_use_disjoint_policy:
        raise ConfigError(
            "agent.multitask.should_use_multi_head_policy and agent.multitask.should_use_disjoint_policy "
            "are both True. A disjoint policy already gives every task its own network. "
            "Fix: set one of them to False."
        )
    for key in ("batch_size", "capacity"):
        value = config.replay_buffer[key]
        if value % num_tasks:
            raise ConfigError(
                f"replay_buffer.{key}={value} is not divisible by the {num_tasks} tasks of "
                f"env.name={config.env.name!r}; the buffer holds and samples an equal share per task. "
                f"Fix: pass --config.replay_buffer.{key}={max(1, value // num_tasks) * num_tasks}."
            )


def _check_choice(key: str, value: str, valid: tuple[str, ...]) -> None:
    if value in valid:
        return
    close = difflib.get_close_matches(str(value), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"Unknown {key} {value!r}.{hint} Valid choices: {', '.join(valid)}.")
