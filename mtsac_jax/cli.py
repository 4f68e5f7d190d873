"""Command-line handling: every bad input becomes one clear paragraph, never a traceback.

ml_collections reports an unknown `--config.key` as a raw AttributeError, wraps errors of
`get_config` in a traceback and turns a missing config file into a placeholder; these
helpers catch each case and say what to fix.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import pathlib
import re
import sys

import ml_collections
from absl import flags
from ml_collections import config_flags

from mtsac_jax.config import CHOICES, ConfigError, flatten, set_key, task_names, validate
from mtsac_jax.registry import AGENTS
from mtsac_jax.workdir import RESUMABLE_CHANGES, config_changes

USAGE = "Usage: python train.py --config=configs/metaworld_mt10.py [--config.seed=1] [--workdir=runs/mt10]"


def fail(message: str) -> None:
    sys.exit(f"error: {message}")


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def parse_flags(argv: list[str]) -> list[str]:
    """absl flags parser for `app.run` that reports config errors plainly."""
    for arg in argv[1:]:
        if not arg.startswith("--config."):
            continue
        key = arg.split("=", 1)[0].removeprefix("--config.")
        if not _KEY.fullmatch(key):
            fail(f"{arg}: {key!r} is not a config key. Keys are dotted names, e.g. --config.agent.discount=0.99 "
                 "(python train.py --config=... --help lists them).")
        if key in CHOICES:
            choice = CHOICES[key]
            example = {"setup": "metaworld", "agent": "state_sac", "env": "metaworld-mt10", choice: "<name>"}
            fail(
                f"{arg} would change the {choice} without changing the config's shape. The {choice} "
                f"is chosen in the config file's argument, which builds its keys: e.g. --config=configs/compose.py:"
                + ",".join(f"{name}={value}" for name, value in example.items()) + "."
            )
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(_reason(str(error)))
    except ConfigError as error:  # raised by a config file's get_config
        fail(str(error))
    except (AttributeError, KeyError) as error:
        if "get_config" in str(error):  # a config file without get_config
            fail(f"config file {_config_file(argv)!r} defines no get_config(arg=None) returning the config. "
                 "Config files live in configs/ (e.g. configs/metaworld_mt10.py).")
        fail(_unknown_key(error, argv))
    except SyntaxError as error:
        fail(f"config file {error.filename or _config_file(argv)!r} is not a Python config file (line {error.lineno}: "
             f"{error.msg}). Config files live in configs/ (e.g. configs/metaworld_mt10.py); a run's config.json "
             "is passed as --config=runs/<run>/config.json.")
    except Exception as error:  # anything else a config file raised while loading
        fail(f"config file {_config_file(argv)!r} raised {type(error).__name__}: {error}")
    return []


def _config_file(argv: list[str]) -> str:
    given = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]
    return given[-1].partition(":")[0] if given else ""


def _unknown_key(error: Exception, argv: list[str]) -> str:
    """The message for a `--config.` key the config lacks, a leaf or a whole section."""
    nested = isinstance(error, AttributeError) and isinstance(error.__context__, KeyError)
    key_error = error.__context__ if nested else error
    missing, _, hint = str(key_error.args[0] if key_error.args else error).partition("\n")
    missing = missing.strip("'\"")
    given = [arg.split("=")[0] for arg in argv[1:] if re.match(rf"--config\.(.*\.)?{re.escape(missing)}(\.|=|$)", arg)]
    return (
        f"unknown config key {missing!r}{' in ' + ', '.join(given) if given else ''}.{' ' + hint if hint else ''} "
        "The config is locked: only keys the config file defines can be set (python train.py --config=... --help "
        "lists them)."
    )


_KINDS = {
    "invalid literal for int()": "takes an integer",
    "could not convert string to float": "takes a number",
    "Non-boolean argument to boolean flag": "takes True or False",
    "as a ConfigDict": "is a section: set its keys one by one, e.g. --config.<section>.<key>=<value>",
    "is not supported for overriding": "cannot be set on the command line (a list, filled in when composing; "
    "docs/extending.md)",
}


def _reason(text: str) -> str:
    """The message of a flag error; for an error inside `get_config`, which ml_collections
    hands over as formatted traceback text, the raised exception's own message."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Traceback" not in text:
        message = lines[0] if lines else text
        unsupported = re.search(r"field config\.(\S+) is not supported for overriding", message)
        if unsupported:
            return f"--config.{unsupported.group(1)} {_KINDS['is not supported for overriding']}."
        flag = re.match(r"flag (--[^=]+)=(.*?): ", message)
        for pattern, kind in _KINDS.items():
            if flag and pattern in message:
                name, value = flag.groups()
                message = f"{message.rstrip('.')}. Fix: {name} {kind}"
                if value.startswith("-"):
                    message += f" (it took the next argument, {value}, as its value: write {name}=<value>)"
                return message + "."
        return message
    exception_type, _, message = lines[-1].partition(": ")
    if exception_type == f"{ConfigError.__module__}.{ConfigError.__name__}":
        return message
    return f"the config file raised {lines[-1]}"


def load_config_or_exit(config_flag) -> ml_collections.ConfigDict:
    """The parsed, validated config, or exit with a message naming the fix."""
    config = config_flag.value
    if config is None:
        fail(f"no --config given. {USAGE}")
    if not isinstance(config, ml_collections.ConfigDict):
        path = config_flags.get_config_filename(flags.FLAGS["config"]).partition(":")[0]
        reason = "does not exist" if not pathlib.Path(path).exists() else "could not be loaded"
        fail(f"config file {path!r} {reason}. Config files live in configs/ (e.g. configs/metaworld_mt10.py).")
    _retake_tasks(config)
    try:
        validate(config)
    except ConfigError as error:
        fail(str(error))
    return config


def _retake_tasks(config: ml_collections.ConfigDict) -> None:
    """After `--config.env.` overrides that change the env's tasks (a distribution's
    `env.train_ids`), the agent section takes the new tasks (e.g. `multitask.num_envs`), unless
    the command line sets those agent keys itself."""
    overridden = {arg.split("=", 1)[0].removeprefix("--config.") for arg in sys.argv if arg.startswith("--config.")}
    if not any(key.startswith("env.") for key in overridden):
        return
    try:
        retaken = copy.deepcopy(config.agent)
        AGENTS.get(config.agent.name).take_tasks(retaken, task_names(config.env))
    except ConfigError as error:
        fail(str(error))
    before, after = flatten(config.agent.to_dict()), flatten(retaken.to_dict())
    changed = {key for key in after if after[key] != before.get(key)}
    if changed and not {f"agent.{key}" for key in changed} & overridden:
        for key in changed:
            set_key(config.agent, key, after[key])


def config_values(config_file: str, arg: str | None) -> dict:
    """The dotted keys of the config that `config_file:arg` builds, with their values."""
    spec = importlib.util.spec_from_file_location("mtsac_jax_config_file", config_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return flatten(module.get_config(arg).to_dict())


def config_keys(config_file: str, arg: str | None) -> set[str]:
    """The dotted keys of the config that `config_file:arg` builds."""
    return set(config_values(config_file, arg))


def print_help(doc: str, flag_names: list[str], config_file: str, arg: str | None) -> None:
    """`train.py --help`: usage, the flags, and every config key with its value in the config
    that `config_file:arg` builds."""
    print(doc.strip(), "\n\nflags:")
    for name in flag_names:
        flag = flags.FLAGS[name]
        print(f"  --{name}: {flag.help}" + (f" (default: {flag.default!r})" if flag.default not in (None, False) else ""))
    print(f"\nconfig keys of {config_file}{':' + arg if arg else ''}, with their values (set one with --config.<key>=<value>):")
    for key, value in sorted(config_values(config_file, arg).items()):
        print(f"  {key} = {value!r}")


def config_variant(argv: list[str]) -> str:
    """The variant a `--config=` argument asks for: `demo` (configs/demo.py), `mtrl` (mtrl's
    protocol: its argument's `mtrl` or `protocol=mtrl`), `smoke` (its argument's `smoke`), any
    of these joined, or '' for a full run."""
    given = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]
    file, _, arg = (given[-1] if given else "").partition(":")
    words = arg.split(",")
    variant = ["demo"] if pathlib.Path(file).stem == "demo" else []
    variant += ["mtrl"] if "mtrl" in words or "protocol=mtrl" in words else []
    return "-".join(variant + (["smoke"] if "smoke" in words else []))


def overridden_keys(config: ml_collections.ConfigDict, argv: list[str]) -> dict:
    """The keys a command line sets (with `--config.` flags or mtrl's words) to other values than
    its config file gives them, with their values: the seed and the keys a resumption may change
    (`RESUMABLE_CHANGES`) aside."""
    given = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]
    if not given:
        return {}
    file, _, arg = given[-1].partition(":")
    base = {key: json.dumps(value) for key, value in config_values(file, arg or None).items()}
    ours = flatten(json.loads(json.dumps(config.to_dict())))
    return {key: value for key, value in sorted(ours.items())
            if key != "seed" and key not in RESUMABLE_CHANGES and json.dumps(value) != base.get(key)}


def default_workdir(config: ml_collections.ConfigDict, variant: str = "", overridden: dict | None = None
                    ) -> pathlib.Path:
    """runs/<env>[-<task>]_<agent>[_<network>][_<gradient>]_seed<seed>[_<variant>][_<id>], the
    network and the gradient method named unless they are `mlp` and `mean`, the variant (smoke,
    demo, mtrl) unless it is a full run, and `<id>` a short hash of the `overridden` keys (those
    the command line changes) when there are any: the same command lands in the same folder,
    and commands that differ in any key in different ones. A folder without the id that holds a
    run of this very config (one started before ids were given) is that run's folder."""
    env = config.env.name if config.env.name != "metaworld-mt1" else f"{config.env.name}-{task_names(config.env)[0]}"
    choices = [config.agent.name]
    choices += [name for name, default in ((config.agent.network.name, "mlp"), (config.agent.gradient.name, "mean"))
                if name != default]
    plain = pathlib.Path("runs") / f"{env}_{'_'.join(choices)}_seed{config.seed}{'_' + variant if variant else ''}"
    if not overridden or ((plain / "config.json").is_file() and not config_changes(plain, config)[1]):
        return plain
    digest = hashlib.sha1(json.dumps(overridden, sort_keys=True).encode()).hexdigest()[:8]
    return plain.with_name(f"{plain.name}_{digest}")
