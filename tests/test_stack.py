"""The declared stack: pyproject.toml's ranges, requirements.lock's pins and the imports agree."""

import ast
import importlib.metadata
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
MAIN = [Requirement(line) for line in PROJECT["dependencies"]]
DEV = [Requirement(line) for line in PROJECT["optional-dependencies"]["dev"]]
LOCAL = {"mtsac_jax", "tests", *(path.stem for path in REPO.glob("*.py"))}


def locked() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not a pin (name==version)"
            pins[canonicalize_name(name)] = version
    return pins


def imported(paths) -> set[str]:
    """The top-level modules the files import (anywhere in them), less the standard library and our own."""
    modules = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - LOCAL


def test_the_lock_pins_every_declared_dependency_within_its_range():
    pins = locked()
    for requirement in MAIN + DEV:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is declared in pyproject.toml but not pinned in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject.toml's {requirement}")


def test_every_imported_package_is_declared_where_it_is_used():
    distributions = importlib.metadata.packages_distributions()
    main = {canonicalize_name(requirement.name) for requirement in MAIN}
    dev = {canonicalize_name(requirement.name) for requirement in DEV}
    package_files = [*(REPO / "mtsac_jax").rglob("*.py"), *REPO.glob("*.py")]
    for modules, declared, where in (
        (imported(package_files), main, "pyproject.toml's dependencies"),
        (imported([*(REPO / "tests").rglob("*.py"), REPO / "bench" / "learning.py"]), main | dev,
         "pyproject.toml's dependencies or its dev extra"),
    ):
        for module in sorted(modules):
            names = {canonicalize_name(name) for name in distributions.get(module, [module])}
            assert names & declared, f"{module} is imported but {', '.join(sorted(names))} is not in {where}"
