"""Registries: one plain mapping from name to entry per concern, and users' extension files.

The five concerns a run is composed of each have one registry, all of them here, each with
the entries of the package that implements the concern (its package re-exports it):

| registry | package | chosen by | an entry |
|---|---|---|---|
| `SETUPS` | `mtsac_jax/setups/` | `setup=` | `setups.Setup`: defaults, accepted env families, evaluation, headline metric |
| `ENV_FAMILIES` | `mtsac_jax/envs/` | `env=` | `envs.EnvFamily`: env names, task names, vector envs |
| `NETWORKS` | `mtsac_jax/networks/` | `network=` | `networks.Network`: a (T, B, D) x (T, E) -> (T, B, H) module |
| `GRADIENTS` | `mtsac_jax/gradients/` | `gradient=` | `gradients.GradientMethod`: per-task losses -> gradients |
| `AGENTS` | `mtsac_jax/agents/` | `agent=` | `agents.AgentSpec`: config section and the builder of pure functions |

Adding one is writing one module that defines its entry and registering it in one line; a
user registers their own from their own Python file (see docs/extending.md), which a run's
config lists under `extensions` (`extension_files`) so that another process can import it
again (`import_extensions`). Entries of the package itself are registered as
`"module:attribute"` strings and imported on first use, so that, for instance, `metaworld` is
imported only by a run that uses a Meta-World env.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import pathlib
import sys
from typing import Any, Generic, TypeVar

Entry = TypeVar("Entry")


class ConfigError(ValueError):
    """A config that cannot run; the message names the keys and the fix."""


def check_choice(key: str, value: str, valid) -> None:
    """Raises ConfigError naming `key`, the closest valid choice and all of them."""
    valid = tuple(valid)
    if value in valid:
        return
    close = difflib.get_close_matches(str(value), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"Unknown {key} {value!r}.{hint} Valid choices: {', '.join(valid)}.")


def check_positive(values: dict) -> None:
    """Raises ConfigError for the first of `{dotted key: value}` that is not positive, naming the key."""
    for key, value in values.items():
        if not value > 0:
            raise ConfigError(f"{key}={value!r} must be positive. Fix: pass --config.{key}=<a positive value>.")


class Registry(Generic[Entry]):
    """Name -> entry. `key` is the config key the name is read from, for error messages."""

    def __init__(self, kind: str, key: str):
        self.kind, self.key = kind, key
        self._entries: dict[str, Any] = {}
        self._sources: dict[str, str | None] = {}
        self._modules: dict[str, str] = {}

    def register(self, name: str, entry: Entry | str) -> Entry | str:
        """Registers `entry` (or a lazy `"module:attribute"` string) under `name`.

        Registering a name again from the same file (a config file imported twice) replaces
        the entry; from another file it is refused, so two extensions never shadow each other."""
        source = _caller_file()
        if name in self._entries and self._sources[name] != source:
            raise ConfigError(
                f"The {self.kind} {name!r} is already registered (by {self._sources[name] or 'mtsac_jax'}); "
                f"{source} registers it again. Fix: give the new {self.kind} another name."
            )
        self._entries[name] = entry
        self._sources[name] = source
        self._modules[name] = entry.partition(":")[0] if isinstance(entry, str) else sys._getframe(1).f_globals["__name__"]
        return entry

    def get(self, name: str) -> Entry:
        check_choice(self.key, name, self.names())
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attribute)
        return entry

    def source(self, name: str) -> str | None:
        """The Python file that registered `name` from outside the package, else None."""
        return self._sources.get(name)

    def module(self, name: str) -> str:
        """The module that defines `name`'s entry (a lazy entry's, else the one that registered it); its
        docstring describes the entry (the documentation's tables read it)."""
        check_choice(self.key, name, self.names())
        return self._modules[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


_PACKAGE = pathlib.Path(__file__).resolve().parent


def _caller_file() -> str | None:
    """The Python file whose top level (or a function of) called `register`; None for the
    package's own registrations."""
    for frame in inspect.stack()[2:]:
        path = pathlib.Path(frame.filename).resolve()
        if _PACKAGE not in path.parents:
            return str(path)
        if frame.function == "<module>":
            return None
    return None


SETUPS = Registry("setup", "setup.name")
SETUPS.register("metaworld", "mtsac_jax.setups.metaworld:SETUP")
SETUPS.register("hipbmdp", "mtsac_jax.setups.hipbmdp:SETUP")

ENV_FAMILIES = Registry("env family", "env family")
ENV_FAMILIES.register("metaworld", "mtsac_jax.envs.metaworld:FAMILY")
ENV_FAMILIES.register("dmcontrol", "mtsac_jax.envs.dmcontrol:FAMILY")

NETWORKS = Registry("network", "agent.network.name")
for _name in ("mlp", "film", "care", "soft_modularization", "moore", "paco", "bronet"):
    NETWORKS.register(_name, f"mtsac_jax.networks.{_name}:NETWORK")

GRADIENTS = Registry("gradient method", "agent.gradient.name")
for _name in ("mean", "pcgrad", "gradnorm"):
    GRADIENTS.register(_name, f"mtsac_jax.gradients.{_name}:METHOD")

AGENTS = Registry("agent", "agent.name")
AGENTS.register("state_sac", "mtsac_jax.agents.sac:STATE_SAC")
AGENTS.register("distral", "mtsac_jax.agents.distral:DISTRAL")
AGENTS.register("sac_ae", "mtsac_jax.agents.sac_ae:SAC_AE")
AGENTS.register("deepmdp", "mtsac_jax.agents.deepmdp:DEEPMDP")
AGENTS.register("state_deepmdp", "mtsac_jax.agents.deepmdp:STATE_DEEPMDP")
AGENTS.register("hipbmdp", "mtsac_jax.agents.hipbmdp:HIPBMDP")

# The config key naming each choice, and the registry it is chosen from (env families by
# the first word of `env.name`).
CHOSEN_FROM = {
    "setup.name": SETUPS,
    "agent.name": AGENTS,
    "agent.network.name": NETWORKS,
    "agent.gradient.name": GRADIENTS,
    "env.name": ENV_FAMILIES,
}


def extension_files(chosen: dict[str, str]) -> list[str]:
    """The files outside the package that registered the choices `chosen` ({config key: name})."""
    sources = {CHOSEN_FROM[key].source(name.split("-", 1)[0] if key == "env.name" else name)
               for key, name in chosen.items()}
    return sorted(source for source in sources if source)


def import_extensions(files) -> None:
    """Imports the files that registered a run's own setups, agents, networks, gradient
    methods or env families (the config's `extensions`), unless they already did."""
    registered = {registry.source(name) for registry in CHOSEN_FROM.values() for name in registry.names()}
    for file in files:
        path = pathlib.Path(file)
        if str(path) in registered:
            continue
        if not path.is_file():
            raise ConfigError(
                f"The run's config lists the extension {path} (a file that registers its own setup, agent, "
                "network, gradient method or env family), and that file does not exist. Fix: put the file "
                "back at that path, or import your module that registers them before loading the run."
            )
        name = f"mtsac_jax_extension_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
