"""The documentation site: it builds with warnings as errors, its tables come from the
registries, and every command of its "Running code" page trains (at smoke size)."""

import importlib.util
import json
import re
import shlex
import subprocess
import sys

import pytest

from mtsac_jax import registry
from mtsac_jax.config import validate
from tests.conftest import REPO

RUNNING_CODE = REPO / "docs" / "running_code.md"


def _load_hook():
    spec = importlib.util.spec_from_file_location("registry_tables", REPO / "docs" / "hooks" / "registry_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


registry_tables = _load_hook()


def page_commands(path=RUNNING_CODE) -> list[str]:
    """The `python train.py` lines of a page's bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", path.read_text(), re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip().startswith("python train.py")]


def smoke_args(command: str) -> list[str]:
    """A page's command at smoke size: `smoke` added to its config file's argument (or as a
    word after mtrl's words), and its overrides of run lengths and batch sizes
    (`experiment.*`, `replay_buffer.*`) left out, since smoke sets those."""
    args = shlex.split(command)[2:]
    sized = re.compile(r"^(--config\.)?(experiment|replay_buffer)\.")
    args = [arg for arg in args if not sized.match(arg)]
    configs = [index for index, arg in enumerate(args) if arg.startswith("--config=")]
    if configs:
        arg = args[configs[0]]
        args[configs[0]] = arg + (",smoke" if ":" in arg else ":smoke")
    else:
        args.append("smoke")
    return args


def run_train(*args, cwd=REPO):
    return subprocess.run([sys.executable, "train.py", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.e2e
def test_the_site_builds_with_warnings_as_errors_and_has_every_page(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    catalogue = (tmp_path / "site" / "catalogue" / "index.html").read_text()
    for kind in registry_tables.REGISTRIES:
        for name in registry_tables.package_names(kind):
            assert f"<code>{name}</code>" in catalogue, (kind, name)
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("load_policy", "compose", "AgentSpec", "Network", "GradientMethod", "EnvFamily", "Setup"):
        assert f'id="mtsac_jax.' in api and name in api, name
    for page in ("running_code", "configuration", "runs", "scaling", "design", "extending", "performance", "results"):
        assert (tmp_path / "site" / page / "index.html").is_file(), page


@pytest.mark.parametrize("kind", list(registry_tables.REGISTRIES))
def test_every_registered_piece_says_what_it_is_and_its_commands_compose(kind):
    rows = registry_tables.rows(kind)
    assert [row["name"] for row in rows] == registry_tables.package_names(kind)
    assert {"mlp", "state_sac", "metaworld", "mean"} & {row["name"] for row in rows}
    for row in rows:
        assert len(row["what"]) > 20 and not row["what"].startswith("`"), row
        assert row["commands"], f"{row['name']}: its module's docstring has no `python train.py` line"
        if not (kind == "setups" and row["name"] == "metaworld"):
            assert re.search(r"(19|20)\d\d", row["paper"]), row
        for command in row["commands"]:
            config_arg = next(arg for arg in shlex.split(command) if arg.startswith("--config="))
            path, _, arg = config_arg.removeprefix("--config=").partition(":")
            spec = importlib.util.spec_from_file_location("config_file", REPO / path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            config = module.get_config(f"{arg},smoke" if arg else "smoke")
            validate(config)
            chosen = {"setups": config.setup.name, "agents": config.agent.name, "networks": config.agent.network.name,
                      "gradients": config.agent.gradient.name, "env_families": config.env.name.split("-", 1)[0]}
            assert chosen[kind] == row["name"], command


def test_the_description_leaves_out_the_name_and_the_paper():
    what, paper = registry_tables.describe('''`film`: an MLP scaled per task (Perez et al. 2018, eq. 1-2) by FiLM.

    More.''')
    assert (what, paper) == ("an MLP scaled per task by FiLM.", "Perez et al. 2018, eq. 1-2")
    assert registry_tables.commands("    python train.py --config=configs/hipbmdp.py:a,deepmdp\n"
                                    "    python train.py --config=configs/hipbmdp.py:a,state_deepmdp  # note",
                                    others=("state_deepmdp", "hipbmdp")) == [
        "python train.py --config=configs/hipbmdp.py:a,deepmdp"]


def test_the_smoke_form_of_a_command_keeps_its_choices_and_drops_its_sizes():
    assert smoke_args("python train.py --config=configs/metaworld_mt10.py --config.seed=1 "
                      "--config.replay_buffer.batch_size=1280") == ["--config=configs/metaworld_mt10.py:smoke", "--config.seed=1"]
    assert smoke_args("python train.py setup=metaworld env=metaworld-mt10 experiment.num_train_steps=9 setup.seed=1") == [
        "setup=metaworld", "env=metaworld-mt10", "setup.seed=1", "smoke"]


def test_the_running_code_page_shows_mtrls_walk_through():
    commands = page_commands()
    assert len(commands) >= 6
    text = " ".join(commands)
    for key in ("setup=metaworld", "agent=state_sac", "env=metaworld-mt10", "agent.multitask.num_envs=10",
                "should_use_disentangled_alpha", "should_use_multi_head_policy", "experiment.num_train_steps",
                "seed=1", "replay_buffer.batch_size"):
        assert key in text, key


@pytest.mark.e2e
@pytest.mark.parametrize("command", page_commands(), ids=lambda command: " ".join(command.split()[2:])[:60])
def test_every_command_of_the_running_code_page_trains_at_smoke_size(command, tmp_path):
    printed = run_train(*shlex.split(command)[2:], "--print_config")
    assert printed.returncode == 0, printed.stderr[-3000:]
    full = json.loads(printed.stdout[printed.stdout.index("{"):])
    for override in re.findall(r"(?:--config\.|(?<= ))([\w.]+)=(\S+)", command):
        key, value = override
        if key in ("setup", "agent", "env") or key.startswith("setup."):
            continue
        node = full
        for part in key.split("."):
            node = node[part]
        assert str(node) == value or json.dumps(node) == value.lower(), (key, node, value)
    result = run_train(*smoke_args(command), f"--workdir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "eval.jsonl").read_text().strip()
