"""Shared fixtures: tiny configs, and real Meta-World envs built once per session."""

import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if os.environ["JAX_PLATFORMS"] != "cpu":
    # Tests compare batched computations with plain loops at float32 tolerances; an accelerator's
    # default float32 matmuls (TF32 on NVIDIA GPUs) round coarser. Subprocesses inherit this too.
    os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")

import pytest

from mtsac_jax import envs
from mtsac_jax.config import compose


def pytest_collection_modifyitems(items):
    """Every test not marked `e2e` (a whole command in a process of its own) is a `unit` test:
    `pytest -m unit` runs the in-process tests alone."""
    for item in items:
        if item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.unit)


def tiny_config(env="metaworld-mt1", **multitask):
    """The smoke config, unlocked so a test can switch agent.multitask variants."""
    config = compose("metaworld", "state_sac", env, smoke=True)
    config.unlock()
    config.agent.multitask.update(multitask)
    return config


@pytest.fixture(scope="session")
def mt1_envs():
    config = tiny_config()
    config.env.max_episode_steps = 5
    vector_env = envs.make_vector_env(config.env, seed=0)
    yield vector_env
    vector_env.close()


@pytest.fixture(scope="session")
def mt10_config():
    return tiny_config("metaworld-mt10")


@pytest.fixture(scope="session")
def mt10_envs(mt10_config):
    vector_env = envs.make_vector_env(mt10_config.env, seed=0)
    yield vector_env
    vector_env.close()


REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = "--config=configs/metaworld_mt1.py:reach-v3,smoke"


def train_command(workdir, *overrides):
    return [sys.executable, "train.py", SMOKE, f"--workdir={workdir}", *overrides]


def train(workdir, *overrides, expect_success=True):
    """Runs the MT1 smoke config through train.py, as a user does."""
    result = subprocess.run(train_command(workdir, *overrides), cwd=REPO, capture_output=True, text=True, timeout=600)
    if expect_success:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_killed_run_resumes_exactly(tmp_path, config_arg, checkpoint_step=50, num_train_steps=120, overrides=()):
    """`train.py --config=<config_arg> <overrides>` for `num_train_steps` in one go, against a run
    SIGKILLed after its `checkpoint_step` checkpoint and started again: the same logs, finite losses."""

    def start(workdir):
        command = [sys.executable, "train.py", f"--config={config_arg}", f"--workdir={workdir}",
                   f"--config.experiment.num_train_steps={num_train_steps}", *overrides]
        return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(process):
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        return stdout

    whole, killed = start(tmp_path / "whole"), start(tmp_path / "resumed")
    deadline = time.time() + 600
    while not (tmp_path / "resumed" / "checkpoints" / str(checkpoint_step)).exists():
        assert killed.poll() is None, killed.communicate()[1][-3000:]
        assert time.time() < deadline
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    finish(whole)
    assert "Resuming" in finish(start(tmp_path / "resumed"))
    for log in ("train.jsonl", "eval.jsonl"):
        records = read_jsonl(tmp_path / "whole" / log)
        assert records and records == read_jsonl(tmp_path / "resumed" / log), log
    last = read_jsonl(tmp_path / "whole" / "train.jsonl")[-1]
    assert all(math.isfinite(value) for value in last.values() if isinstance(value, float))


def assert_close(records, expected):
    """Equal keys and steps; numbers equal to float tolerance."""
    assert [r.keys() for r in records] == [r.keys() for r in expected]
    for record, want in zip(records, expected):
        for key, value in want.items():
            if isinstance(value, float):
                assert record[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (record["step"], key)
            elif key == "tasks":  # an evaluation's per-task figures
                assert list(record[key]) == list(value), record["step"]
                for task, figures in value.items():
                    assert record[key][task] == pytest.approx(figures, rel=1e-4, abs=1e-6), (record["step"], task)
            else:
                assert record[key] == value, (record["step"], key)


def read_jsonl(path, drop_perf=True):
    records = [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]
    if drop_perf:
        records = [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in records]
    return records


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One uninterrupted smoke run, the reference other runs are compared against."""
    workdir = tmp_path_factory.mktemp("smoke") / "run"
    return workdir, train(workdir)


@pytest.fixture(scope="session")
def two_seeds(tmp_path_factory):
    """The MT1 smoke run with seeds 1 and 2 side by side, uninterrupted."""
    workdir = tmp_path_factory.mktemp("seeds") / "run"
    train(workdir, "--config.num_seeds=2")
    return workdir
