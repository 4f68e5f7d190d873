"""Command-line handling: every bad input becomes one clear paragraph, never a traceback.

ml_collections reports an unknown `--config.key` as a raw AttributeError, wraps errors of
`get_config` in a traceback and turns a missing config file into a placeholder; these
helpers catch each case and say what to fix.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys

import ml_collections
from absl import flags
from ml_collections import config_flags

from mtsac_jax.config import CHOICES, ConfigError, flatten, task_names, validate

USAGE = "Usage: python train.py --config=configs/metaworld_mt10.py [--config.seed=1] [--workdir=runs/mt10]"


def fail(message: str) -> None:
    sys.exit(f"error: {message}")


def parse_flags(argv: list[str]) -> list[str]:
    """absl flags parser for `app.run` that reports config errors plainly."""
    for arg in argv[1:]:
        key = arg.split("=", 1)[0].removeprefix("--config.")
        if arg.startswith("--config.") and key in CHOICES:
            fail(
                f"{arg} would change the {CHOICES[key]} without changing the config's shape. The {CHOICES[key]} "
                f"is chosen in the config file's argument, which builds its keys: e.g. "
                f"--config=configs/compose.py:setup=metaworld,agent=state_sac,env=metaworld-mt10,"
                f"{CHOICES[key]}=<name>."
            )
    try:
        return flags.FLAGS(argv)
    except AttributeError as error:  # unknown --config.key
        key_error = error.__context__ if isinstance(error.__context__, KeyError) else error
        missing, _, hint = str(key_error.args[0] if key_error.args else error).partition("\n")
        missing = missing.strip("'\"")
        given = [arg.split("=")[0] for arg in argv[1:] if re.match(rf"--config\..*\b{re.escape(missing)}\b", arg)]
        fail(
            f"unknown config key {missing!r}{' in ' + ', '.join(given) if given else ''}. {hint} "
            "The config is locked: only keys the config file defines can be set (README.md lists them)."
        )
    except flags.Error as error:
        fail(_reason(str(error)))
    return []


def _reason(text: str) -> str:
    """The message of a flag error; for an error inside `get_config`, which ml_collections
    hands over as formatted traceback text, the raised exception's own message."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Traceback" not in text:
        return lines[0] if lines else text
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
        path = config_flags.get_config_filename(flags.FLAGS["config"])
        reason = "does not exist" if not pathlib.Path(path).exists() else "could not be loaded"
        fail(f"config file {path!r} {reason}. Config files live in configs/ (e.g. configs/metaworld_mt10.py).")
    try:
        validate(config)
    except ConfigError as error:
        fail(str(error))
    return config


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
    """The variant a `--config=` argument asks for: `demo` (configs/demo.py), `smoke` (its
    argument's `smoke`), both, or '' for a full run."""
    given = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]
    file, _, arg = (given[-1] if given else "").partition(":")
    variant = ["demo"] if pathlib.Path(file).stem == "demo" else []
    return "-".join(variant + (["smoke"] if "smoke" in arg.split(",") else []))


def default_workdir(config: ml_collections.ConfigDict, variant: str = "") -> pathlib.Path:
    """runs/<env>[-<task>]_<agent>[_<network>][_<gradient>]_seed<seed>[_<variant>], the network
    and the gradient method named unless they are `mlp` and `mean`, the variant (smoke, demo)
    unless it is a full run: the same command lands in the same folder, and different choices
    and variants in different ones."""
    env = config.env.name if config.env.name != "metaworld-mt1" else f"{config.env.name}-{task_names(config.env)[0]}"
    choices = [config.agent.name]
    choices += [name for name, default in ((config.agent.network.name, "mlp"), (config.agent.gradient.name, "mean"))
                if name != default]
    return pathlib.Path("runs") / f"{env}_{'_'.join(choices)}_seed{config.seed}{'_' + variant if variant else ''}"
