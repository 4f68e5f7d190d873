"""docs/extending.md, run as a user runs it: each example's files written out as shown, its
commands run as shown; each run then resumes exactly from an earlier checkpoint."""

import json
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO, read_jsonl

PAGE = (REPO / "docs" / "extending.md").read_text()
FILES = dict(re.findall(r"```python\n# (my_configs/\S+\.py)\n(.*?)```", PAGE, re.S))
COMMANDS = [block.strip().splitlines() for block in re.findall(r"```bash\n(.*?)```", PAGE, re.S)]


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A folder of the user's own, holding my_configs/ with the page's files."""
    folder = tmp_path_factory.mktemp("user")
    for name, text in FILES.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(text)
    return folder


def run(line, cwd):
    """A command of the page; `python train.py` and `python evaluate.py` are the repository's."""
    args = shlex.split(line)
    assert args[0] == "python"
    if args[1].endswith(".py"):
        args[1] = str(REPO / args[1])
    result = subprocess.run([sys.executable, *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{line}\n{result.stderr[-3000:]}"
    return result


def resumes_exactly(workdir, train_line, cwd):
    """Sets the run back to its checkpoint before the last (as a kill after it would) and
    reruns the command: the logs come out as before."""
    logs = {name: read_jsonl(workdir / name) for name in ("train.jsonl", "eval.jsonl")}
    checkpoints = sorted((workdir / "checkpoints").iterdir(), key=lambda path: int(path.name))
    shutil.rmtree(checkpoints[-1])
    result = run(train_line, cwd)
    assert "Resuming" in result.stdout and f"at step {checkpoints[-2].name}" in result.stdout
    for name, records in logs.items():
        assert read_jsonl(workdir / name) == records, name


def test_the_page_shows_four_examples():
    assert sorted(FILES) == ["my_configs/balanced_mean.py", "my_configs/layer_norm_mlp.py", "my_configs/pendulum.py",
                             "my_configs/reward_model_sac.py"]
    assert [len(commands) for commands in COMMANDS] == [2, 1, 3, 2]


@pytest.mark.e2e
def test_a_network_of_ones_own_trains_resumes_and_loads(user_folder):
    train_line, evaluate_line = COMMANDS[0]
    run(train_line, user_folder)
    workdir = user_folder / "runs" / "layer_norm_mlp"
    config = json.loads((workdir / "config.json").read_text())
    assert config["agent"]["network"] == {"name": "layer_norm_mlp", "epsilon": 1e-3}
    assert config["extensions"] == [str(user_folder / "my_configs" / "layer_norm_mlp.py")]
    resumes_exactly(workdir, train_line, user_folder)
    result = run(evaluate_line, user_folder)  # a new process: imports the extension from config.json
    assert "checkpoint 240" in result.stdout and "reach-v3  success" in result.stdout


@pytest.mark.e2e
def test_a_gradient_method_of_ones_own_trains_and_resumes_with_its_state(user_folder):
    (train_line,) = COMMANDS[1]
    run(train_line, user_folder)
    workdir = user_folder / "runs" / "metaworld-mt10_state_sac_balanced_mean_seed1_smoke"
    assert json.loads((workdir / "config.json").read_text())["agent"]["gradient"]["decay"] == 0.99
    resumes_exactly(workdir, train_line, user_folder)


@pytest.mark.e2e
def test_an_env_family_and_setup_of_ones_own_train_resume_evaluate_and_plot(user_folder):
    train_line, evaluate_line, plot_line = COMMANDS[2]
    result = run(train_line, user_folder)
    assert "g12  reward" in result.stdout
    workdir = user_folder / "runs" / "pendulum-gravity_state_sac_seed1_smoke"
    evals = read_jsonl(workdir / "eval.jsonl")
    assert set(evals[-1]) == {"step", "env_steps", "episode_reward", "tasks"}
    assert set(evals[-1]["tasks"]) == {"g8", "g10", "g12"}
    resumes_exactly(workdir, train_line, user_folder)
    assert "episode_reward" in run(evaluate_line, user_folder).stdout
    run(plot_line, user_folder)
    assert (workdir / "learning_curves.png").stat().st_size > 1000


@pytest.mark.e2e
def test_metaworld_is_imported_only_by_a_run_that_uses_it(user_folder):
    code = (
        "import sys; sys.path.insert(0, 'my_configs'); import pendulum, mtsac_jax, mtsac_jax.training, "
        "mtsac_jax.plot; from mtsac_jax.config import validate; validate(pendulum.get_config('smoke')); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'metaworld'))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=user_folder, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"


@pytest.mark.e2e
def test_an_agent_with_an_extra_loss_trains_resumes_and_evaluates(user_folder):
    train_line, evaluate_line = COMMANDS[3]
    run(train_line, user_folder)
    workdir = user_folder / "runs" / "reward_model_sac"
    config = json.loads((workdir / "config.json").read_text())
    assert config["agent"]["reward_model"] == {"hidden_dim": 64, "lr": 3e-3}
    last = read_jsonl(workdir / "train.jsonl")[-1]
    assert {"train/reward_model_loss_mean", "train/reward_model_loss/reach-v3", "train/alpha/reach-v3"} <= set(last)
    resumes_exactly(workdir, train_line, user_folder)
    result = run(evaluate_line, user_folder)  # a new process: imports the agent from config.json
    assert "checkpoint 240" in result.stdout and "reach-v3" in result.stdout


@pytest.mark.e2e
def test_the_extra_loss_trains_the_reward_model(user_folder):
    """In-process: on a buffer whose reward is a fixed function of the state, 400 updates bring
    the reward model's loss down tenfold, under the mean and under PCGrad."""
    code = (
        "import sys, jax, numpy as np; sys.path.insert(0, 'my_configs'); import reward_model_sac as example\n"
        "from mtsac_jax import replay_buffer\nfrom mtsac_jax.agents import EnvSpec\n"
        "from mtsac_jax.config import compose\n"
        "rng, buffer = np.random.default_rng(0), replay_buffer.init(10, 64, 5, 2)\n"
        "for _ in range(64):\n"
        "    obs = rng.normal(size=(10, 5))\n"
        "    buffer = replay_buffer.insert_jit(buffer, obs, rng.uniform(-1, 1, (10, 2)), obs[:, 0] ** 2,\n"
        "                                      rng.normal(size=(10, 5)), np.zeros(10))\n"
        "for gradient in ('mean', 'pcgrad'):\n"
        "    config = compose('metaworld', 'reward_model_sac', 'metaworld-mt10', smoke=True, gradient=gradient)\n"
        "    agent = example.make(config.agent, EnvSpec(10, 5, 2), 16)\n"
        "    state, losses = agent.init(jax.random.key(0)), []\n"
        "    for _ in range(400):\n"
        "        state, metrics = agent.update(state, buffer)\n"
        "        losses.append(metrics['reward_model_loss'].mean())\n"
        "    print(gradient, float(losses[0]), float(losses[-1]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=user_folder, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["mean", "pcgrad"], result.stdout
    for line in lines:
        _, first, last = line.split()
        assert float(last) < float(first) / 10, line
