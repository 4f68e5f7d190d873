"""Config composition (setup x agent x env, network, gradient method), validation and upgrades.

A config is composed from the registries' default sections: `setup` (`SETUPS`), `agent`
(`AGENTS`) with its `network` (`NETWORKS`) and `gradient` (`GRADIENTS`) sub-sections, and
`env` (`ENV_FAMILIES`), plus `experiment` and `replay_buffer`. A choice that changes the
config's shape is made when composing (the config file's argument); the locked config then
holds exactly the keys that choice needs, and `validate` refuses a section whose keys belong
to another choice. `extensions` lists the Python files that registered a user's own choices,
so a saved `config.json` can be loaded again in another process.

Key names follow facebookresearch/mtrl so its users feel at home. Step counts
(`num_train_steps`, `init_steps`, `eval_freq`, `log_freq`) are vector-env steps: each adds
one transition per task, as in mtrl.
"""

from __future__ import annotations

import copy
import inspect
import math
import pathlib

import ml_collections

from mtsac_jax import agents, envs, gradients, networks, setups
from mtsac_jax.envs import task_names
from mtsac_jax.numerics import NAN_POLICIES
from mtsac_jax.registry import ConfigError, check_choice, check_positive, extension_files
from mtsac_jax.tracking import MODES as WANDB_MODES

__all__ = ["ConfigError", "compose", "flatten", "parse_config_arg", "task_names", "upgrade", "validate"]

# The config keys naming a choice, with the config-file argument that makes it.
CHOICES = {
    "setup.name": "setup",
    "agent.name": "agent",
    "agent.network.name": "network",
    "agent.gradient.name": "gradient",
    "env.name": "env",
}


def agent_config(name: str, network: str = "mlp", gradient: str = "mean") -> ml_collections.ConfigDict:
    """The `agent` section: the agent's own keys, its `network` and its `gradient` method."""
    config = ml_collections.ConfigDict({"name": name, **agents.AGENTS.get(name).default_config()})
    config.network = networks.network_config(network)
    config.gradient = gradients.gradient_config(gradient)
    return config


def experiment_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "num_train_steps": 2_000_000,
            "init_steps": 1500,
            "eval_freq": 10_000,
            "num_eval_episodes": 10,
            "log_freq": 1000,
            # without a terminal (nohup, SLURM): a progress line this often between log lines; 0: never
            "progress_every_s": 60.0,
            "save_freq": 10_000,
            "keep_checkpoints": 2,
            "num_updates_per_step": 1,
            "save_video": False,
            # a non-finite loss or state: "stop" the run (its last checkpoint kept) or "skip" the
            # update; `max_skipped_updates` skips in a row stop it too
            "nan_policy": "stop",
            "max_skipped_updates": 10,
            # Weights & Biases tracking (mtsac_jax.tracking); entity "": the account's default
            "wandb": {"enabled": False, "project": "mtsac_jax", "entity": "", "mode": "online"},
        }
    )


def replay_buffer_config(num_tasks: int) -> ml_collections.ConfigDict:
    """mtrl's sizes: 1M transitions over all tasks (split evenly), 128 samples per task
    per batch (1280 on MT10)."""
    return ml_collections.ConfigDict({"capacity": 1_000_000, "batch_size": 128 * num_tasks})


# mtrl's agents that are `state_sac` with a gradient method here
MTRL_AGENTS = {"pcgrad_state_sac": "pcgrad", "gradnorm_state_sac": "gradnorm"}


def compose(
    setup: str,
    agent: str,
    env: str,
    task_name: str | None = None,
    smoke: bool = False,
    network: str = "mlp",
    gradient: str = "mean",
    protocol: str | None = None,
) -> ml_collections.ConfigDict:
    """One config from a setup, an agent, an env, a network and a gradient method; locked
    against new keys. `task_name` is the task of a single-task env (`metaworld-mt1`); mtrl's
    agent names `pcgrad_state_sac` and `gradnorm_state_sac` are `state_sac` with that gradient;
    `protocol` names one of the env family's protocols (Meta-World's `mtrl`) instead of its
    defaults."""
    if agent in MTRL_AGENTS:
        if gradient not in ("mean", MTRL_AGENTS[agent]):
            raise ConfigError(
                f"agent={agent} is state_sac with gradient={MTRL_AGENTS[agent]}, and gradient={gradient} asks for "
                f"another gradient method. Fix: agent=state_sac,gradient={gradient}, or drop gradient=."
            )
        agent, gradient = "state_sac", MTRL_AGENTS[agent]
    config = ml_collections.ConfigDict()
    config.seed = 1
    config.num_seeds = 1  # seeds config.seed, config.seed + 1, ... trained side by side in one process
    config.setup = setups.setup_config(setup)
    config.agent = agent_config(agent, network, gradient)
    config.env = envs.env_config(env, task_name, protocol=protocol)
    if task_name is not None and "task_name" not in config.env:
        raise ConfigError(
            f"task={task_name} names the task of a single-task env, and env={env} trains its own "
            f"{len(task_names(config.env))} tasks. Fix: drop task=, or choose a single-task env (env=metaworld-mt1)."
        )
    config.experiment = experiment_config()
    names = task_names(config.env)
    config.replay_buffer = replay_buffer_config(len(names))
    agents.AGENTS.get(config.agent.name).take_tasks(config.agent, names)
    for key, value in setups.SETUPS.get(setup).config_defaults.items():
        if _has(config, key):
            set_key(config, key, value)
    config.extensions = extension_files({key: _get(config, key) for key in CHOICES})
    if smoke:
        shrink_to_smoke(config)
    config.lock()
    return config


def preset(arg: str | None, settings: dict[str, dict], options: dict[str, dict] | None = None, *,
           setup: str = "metaworld", agent: str = "state_sac", network: str = "mlp",
           gradient: str = "mean") -> ml_collections.ConfigDict:
    """A published setting as a config file's `get_config`: `settings` maps each variant (a word
    of the config file's argument; the first is the default) to its `env` and dotted config keys
    with their values, applied to `compose(setup, agent, env, network=..., gradient=...)`;
    `options` maps further words (ablations) to keys applied after the variant's (an `agent` or
    `network` entry changes the agent or the network); the name of one of the env family's protocols (Meta-World's
    `mtrl`) starts from that protocol; `smoke` shrinks the result."""
    variants, options = tuple(settings), options or {}
    protocols = tuple(dict.fromkeys(name for keys in settings.values() for name in envs.family_of(keys["env"]).protocols))
    flags, _ = parse_config_arg(arg, flags=(*variants, *options, *protocols, "smoke"))
    chosen = [flag for flag in flags if flag in variants] or [variants[0]]
    if len(chosen) > 1:
        raise ConfigError(f"the config file's argument names {' and '.join(chosen)}; it takes one of "
                          f"{', '.join(variants)}. Fix: keep one of them.")
    keys = dict(settings[chosen[0]])
    for flag in flags:
        keys.update(options.get(flag, {}))
    protocol = next((flag for flag in flags if flag in protocols), None)
    config = compose(setup, keys.pop("agent", agent), keys.pop("env"), network=keys.pop("network", network),
                     gradient=gradient, protocol=protocol)
    config.unlock()
    for key, value in keys.items():
        set_key(config, key, value)
    if "smoke" in flags:
        shrink_to_smoke(config)
    config.lock()
    return config


def shrink_to_smoke(config: ml_collections.ConfigDict) -> None:
    """Tiny networks (the agent's `shrink`), batch, steps and eval: every code path in well under two minutes."""
    num_tasks = len(task_names(config.env))
    agents.AGENTS.get(config.agent.name).shrink(config.agent)
    config.replay_buffer.batch_size = 8 * num_tasks
    config.replay_buffer.capacity = 1000 * num_tasks
    config.experiment.num_train_steps = 240
    config.experiment.init_steps = 60
    config.experiment.eval_freq = 120
    config.experiment.num_eval_episodes = 1
    config.experiment.log_freq = 60
    config.experiment.save_freq = 50
    config.env.update(envs.family_of(config.env.name).smoke_config)


def parse_config_arg(arg: str | None, flags=("smoke",), keys=()) -> tuple[list[str], dict[str, str]]:
    """Splits a config-file argument `a,b,key=value` into flags and key/value pairs; a flag not
    in `flags` (None: any) or a key not in `keys` raises ConfigError naming the config file and
    what it takes."""
    given_flags, pairs = [], {}
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if sep:
            pairs[key.strip()] = value.strip()
        else:
            given_flags.append(key.strip())
    unknown = [flag for flag in given_flags if flags is not None and flag not in flags]
    unknown += [key for key in pairs if key not in keys]
    if unknown:
        caller = pathlib.Path(next(f.filename for f in inspect.stack()[1:] if f.filename != __file__)).resolve()
        if caller.is_relative_to(pathlib.Path.cwd()):
            caller = caller.relative_to(pathlib.Path.cwd())
        takes = [f"{key}=..." for key in keys] + list(flags or ())
        raise ConfigError(
            f"{caller} does not understand {', '.join(unknown)} in its argument. It takes "
            f"{', '.join(takes) or 'no argument'} (comma-separated)."
        )
    return given_flags, pairs


# ----- config.json of earlier versions -----


def upgrade(saved: dict) -> dict:
    """A `config.json` written by an earlier version, in today's shape: configs from before the
    registries had no `agent.network` (their networks were today's `mlp`), no `agent.gradient`
    (today's `mean`), no `extensions`, no `num_seeds` (1), no `experiment.save_video` (False), no
    `experiment.nan_policy` ("stop"), `max_skipped_updates` (10) and `progress_every_s` (60), no
    `experiment.wandb` (tracking off), no env worker keys (`envs.COMMON_DEFAULTS`). The agent's
    section gets the keys its agent (when registered: a user's agent once its extension is
    imported) has added since, at their defaults, which are the behaviour from before each key
    (`AgentSpec.default_config`)."""
    saved = copy.deepcopy(saved)
    saved.setdefault("extensions", [])
    saved.setdefault("num_seeds", 1)
    for key, value in envs.COMMON_DEFAULTS.items():
        saved.get("env", {}).setdefault(key, value)
    experiment = saved.get("experiment", {})
    experiment.setdefault("save_video", False)
    experiment.setdefault("nan_policy", "stop")
    experiment.setdefault("max_skipped_updates", 10)
    experiment.setdefault("progress_every_s", 60.0)
    experiment.setdefault("wandb", experiment_config().wandb.to_dict())
    agent = saved.get("agent", {})
    agent.setdefault("network", {"name": "mlp"})
    agent.setdefault("gradient", {"name": "mean"})
    if agent.get("name") in agents.AGENTS:
        _fill_missing(agent, agents.AGENTS.get(agent["name"]).default_config())
    return saved


def _fill_missing(section: dict, defaults: dict) -> None:
    for key, value in defaults.items():
        if key not in section:
            section[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(section[key], dict):
            _fill_missing(section[key], value)


# ----- validation -----


def flatten(tree, prefix: str = "") -> dict:
    """A nested dict (or ConfigDict) as {"dotted.key": value}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, (dict, ml_collections.ConfigDict)):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _get(config: ml_collections.ConfigDict, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def set_key(config: ml_collections.ConfigDict, dotted: str, value) -> None:
    """Sets the key at the dotted path `dotted` (its sections exist) to `value`."""
    parent, _, leaf = dotted.rpartition(".")
    (_get(config, parent) if parent else config)[leaf] = value


def _has(config: ml_collections.ConfigDict, dotted: str) -> bool:
    try:
        _get(config, dotted)
    except (KeyError, AttributeError):
        return False
    return True


def _check_shape(section_key: str, section: ml_collections.ConfigDict, expected: ml_collections.ConfigDict) -> None:
    """The keys of `section` (recursively) must be those of the chosen entry's default."""

    have, want = set(flatten(section)), set(flatten(expected))
    if have != want:
        choice = CHOICES[f"{section_key}.name"]
        differing = sorted(have ^ want)
        raise ConfigError(
            f"{section_key}.name={section.name!r}, but the {section_key} section holds the keys of another "
            f"choice (differing: {', '.join(differing)}). The {choice} sets the config's shape: choose it in "
            f"the config file's argument, e.g. --config=configs/compose.py:...,{choice}={section.name}, instead "
            f"of --config.{section_key}.name."
        )


SECTIONS = ("seed", "num_seeds", "setup", "agent", "env", "experiment", "replay_buffer", "extensions")
SEED_BOUND = 2**32  # the env and replay seeds are derived from the seed as 32-bit integers


def _check_sections(config: ml_collections.ConfigDict) -> None:
    """The top-level keys, the sections and the names of the choices are there, of the right kind."""
    have = set(config.keys())
    missing, unknown = [key for key in SECTIONS if key not in have], sorted(have - set(SECTIONS))
    if missing or unknown:
        raise ConfigError(
            "The config is not a run's config: "
            + "; ".join(([f"it lacks {', '.join(missing)}"] if missing else [])
                        + ([f"it holds unknown keys {', '.join(unknown)}"] if unknown else []))
            + f". A config holds exactly {', '.join(SECTIONS)}. Fix: start from a config file in configs/ "
            "or from a run's config.json."
        )
    for key in ("experiment", "replay_buffer", *CHOICES):
        section_key, _, leaf = key.rpartition(".") if key in CHOICES else (key, "", "")
        section = config
        for part in section_key.split("."):
            section = section.get(part) if isinstance(section, (dict, ml_collections.ConfigDict)) else None
        if not isinstance(section, (dict, ml_collections.ConfigDict)):
            raise ConfigError(
                f"{section_key} must be a section of keys; the config has {section!r} there. Fix: start from a "
                "config file in configs/ or from a run's config.json."
            )
        if leaf and not isinstance(section.get(leaf), str):
            raise ConfigError(f"{key} must name the {CHOICES[key]} (a string); it is {section.get(leaf)!r}.")


def _check_keys(section_key: str, section, expected) -> None:
    """A section without a choice (`experiment`, `replay_buffer`) holds exactly its default keys."""
    have, want = set(flatten(section)), set(flatten(expected))
    if have != want:
        raise ConfigError(
            f"The {section_key} section "
            + "; ".join(([f"lacks {', '.join(sorted(want - have))}"] if want - have else [])
                        + ([f"holds unknown keys {', '.join(sorted(have - want))}"] if have - want else []))
            + f". Fix: give {section_key} exactly the keys {', '.join(sorted(want))} (README.md lists them)."
        )


def _kind(value) -> str:
    return {bool: "True or False", int: "an integer", float: "a number", str: "a string", list: "a list"}.get(
        type(value), type(value).__name__)


def _check_types(config: ml_collections.ConfigDict, defaults: dict) -> None:
    """Every value has the type of its default (an integer is a number too), and every number is finite."""
    for key, value in flatten(config).items():
        default = defaults[key]
        if isinstance(default, bool) or isinstance(value, bool):
            fits = isinstance(value, bool) and isinstance(default, bool)
        elif isinstance(default, float):
            fits = isinstance(value, (int, float))
        elif default is None:
            fits = True
        elif isinstance(default, (list, tuple)):  # a tuple is a list once in config.json
            fits = isinstance(value, (list, tuple))
        else:
            fits = isinstance(value, type(default))
        if not fits:
            raise ConfigError(
                f"{key}={value!r} is {_kind(value)}, and {key} takes {_kind(default)} (default {default!r}). "
                f"Fix: pass --config.{key}=<{_kind(default)}>."
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value!r} must be a finite number. Fix: pass --config.{key}=<a finite number>.")
    if isinstance(config.extensions, list) and not all(isinstance(file, str) for file in config.extensions):
        raise ConfigError(f"extensions={config.extensions!r} must list Python files (strings).")


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the keys, types, values and cross-section facts; raises ConfigError naming keys and fix."""
    _check_sections(config)
    # every choice resolved once (an unknown name is refused here, naming its key)
    setup = setups.SETUPS.get(config.setup.name)
    agent = agents.AGENTS.get(config.agent.name)
    networks.NETWORKS.get(config.agent.network.name)
    gradients.GRADIENTS.get(config.agent.gradient.name)
    family = envs.family_of(config.env.name, key="env.name")
    try:
        env_section = envs.env_config(config.env.name, config.env.get("task_name"), family)
    except ConfigError:
        envs.validate(config.env, family)  # the same fault, named by its key (env.task_name)
        raise
    agent_section = agent_config(config.agent.name, config.agent.network.name, config.agent.gradient.name)
    for key, expected in (
        ("setup", setups.setup_config(config.setup.name)),
        ("env", env_section),
        ("agent.network", agent_section.network),
        ("agent.gradient", agent_section.gradient),
        ("agent", agent_section),
    ):
        _check_shape(key, _get(config, key), expected)
    names = family.task_names(config.env)
    num_tasks = len(names)
    _check_keys("experiment", config.experiment, experiment_config())
    _check_keys("replay_buffer", config.replay_buffer, replay_buffer_config(num_tasks))
    defaults = {"seed": 1, "num_seeds": 1, "extensions": [], **flatten({
        "setup": setups.setup_config(config.setup.name), "agent": agent_section, "env": env_section,
        "experiment": experiment_config(), "replay_buffer": replay_buffer_config(num_tasks)})}
    _check_types(config, defaults)
    if not 0 <= config.seed < SEED_BOUND:
        raise ConfigError(
            f"seed={config.seed} must lie in [0, 2**32): env and network seeds derive from it. "
            "Fix: pass --config.seed=<a non-negative integer>, e.g. 1."
        )
    if not 1 <= config.num_seeds <= SEED_BOUND - config.seed:
        raise ConfigError(
            f"num_seeds={config.num_seeds} must be at least 1 (and seed + num_seeds - 1 below 2**32): the run trains "
            f"seeds {config.seed} to seed + num_seeds - 1. Fix: pass --config.num_seeds=<1 or more>, e.g. 5."
        )
    envs.validate(config.env, family)
    if config.env.name.split("-", 1)[0] not in setup.env_families:
        raise ConfigError(
            f"setup.name={config.setup.name!r} evaluates on the env families {', '.join(setup.env_families)}, "
            f"not on env.name={config.env.name!r}. Fix: choose another env or setup in the config file's argument."
        )
    agent.validate(config.agent)

    positive = {
        "replay_buffer.capacity": config.replay_buffer.capacity,
        "replay_buffer.batch_size": config.replay_buffer.batch_size,
        "experiment.num_train_steps": config.experiment.num_train_steps,
        "experiment.eval_freq": config.experiment.eval_freq,
        "experiment.num_eval_episodes": config.experiment.num_eval_episodes,
        "experiment.log_freq": config.experiment.log_freq,
        "experiment.save_freq": config.experiment.save_freq,
        "experiment.keep_checkpoints": config.experiment.keep_checkpoints,
        "experiment.num_updates_per_step": config.experiment.num_updates_per_step,
        "experiment.max_skipped_updates": config.experiment.max_skipped_updates,
    }
    check_choice("experiment.nan_policy", config.experiment.nan_policy, NAN_POLICIES)
    check_choice("experiment.wandb.mode", config.experiment.wandb.mode, WANDB_MODES)
    if config.experiment.wandb.enabled and not config.experiment.wandb.project.strip():
        raise ConfigError("experiment.wandb.project is empty; W&B files each run under a project. "
                          "Fix: e.g. --config.experiment.wandb.project=mtsac_jax.")
    check_positive(positive)
    if config.experiment.progress_every_s < 0:
        raise ConfigError(f"experiment.progress_every_s={config.experiment.progress_every_s} must not be negative "
                          "(0: no progress lines). Fix: e.g. --config.experiment.progress_every_s=60.")
    if config.experiment.init_steps < 0:
        raise ConfigError(
            f"experiment.init_steps={config.experiment.init_steps} must be >= 0 "
            "(vector-env steps of uniform random actions before learning starts)."
        )

    agent.check_tasks(config.agent, names, config.env.name)
    for key in ("batch_size", "capacity"):
        value = config.replay_buffer[key]
        if value % num_tasks:
            raise ConfigError(
                f"replay_buffer.{key}={value} is not divisible by the {num_tasks} tasks of "
                f"env.name={config.env.name!r}; the buffer holds and samples an equal share per task. "
                f"Fix: pass --config.replay_buffer.{key}={max(1, value // num_tasks) * num_tasks}."
            )
