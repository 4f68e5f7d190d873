"""Runs and checkpoints of the code before the registries (tests/fixtures/legacy): the same
commands write the same logs, and their checkpoints and config.json resume and load.

The logs were written on one machine, and XLA compiles for the CPU it runs on: on another CPU
model the same program rounds differently in the last bits (about 1e-7 relative after 240
steps). So the records must agree exactly in their keys, steps and counts, and their floats to
1e-5 relative; on one machine a run reproduces exactly (tests/test_train.py, test_resume.py)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mtsac_jax
from tests.conftest import REPO, read_jsonl

LEGACY = REPO / "tests" / "fixtures" / "legacy"
MT = "--config.agent.multitask"
MT1 = "--config=configs/metaworld_mt1.py:reach-v3,smoke"
MT10 = "--config=configs/metaworld_mt10.py:smoke"
COMMANDS = {
    "mt1": [MT1],
    "mt1-task-encoder-alpha-loss": [MT1, f"{MT}.should_use_task_encoder=True", "--config.agent.temperature_loss=alpha"],
    "mt10": [MT10],
    "mt10-multi-head-task-encoder-shared-alpha": [
        MT10,
        f"{MT}.should_use_multi_head_policy=True",
        f"{MT}.should_use_task_encoder=True",
        f"{MT}.should_use_disentangled_alpha=False",
    ],
    "mt10-disjoint": [MT10, f"{MT}.should_use_disjoint_policy=True"],
}


def assert_same_records(actual, expected, name):
    assert len(actual) == len(expected) and actual, name
    for got, want in zip(actual, expected):
        assert got.keys() == want.keys(), name
        for key, value in want.items():
            if isinstance(value, float):
                np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=f"{name} {key}")
            elif isinstance(value, dict):
                assert_same_records([got[key]], [value], f"{name} {key}")
            else:
                assert got[key] == value, f"{name} {key}"


def run(workdir, *args):
    result = subprocess.run([sys.executable, "train.py", f"--workdir={workdir}", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.e2e
def test_the_mt1_smoke_run_writes_the_logs_of_the_code_before_the_registries(smoke_run):
    workdir, _ = smoke_run
    for name in ("train.jsonl", "eval.jsonl"):
        assert_same_records(read_jsonl(workdir / name), read_jsonl(LEGACY / "mt1" / name), name)


@pytest.mark.e2e
def test_every_network_variant_writes_the_logs_of_the_code_before_the_registries(tmp_path):
    """The first 120 steps (two log lines, one evaluation, 60 updates) of each variant; two runs
    at a time, one per core."""
    variants = [name for name in COMMANDS if name != "mt1"]
    for pair in (variants[:2], variants[2:]):
        processes = {
            variant: subprocess.Popen(
                [sys.executable, "train.py", f"--workdir={tmp_path / variant}", *COMMANDS[variant],
                 "--config.experiment.num_train_steps=120"],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            for variant in pair
        }
        for variant, process in processes.items():
            _, stderr = process.communicate(timeout=600)
            assert process.returncode == 0, f"{variant}: {stderr[-3000:]}"
    for variant in variants:
        for name in ("train.jsonl", "eval.jsonl"):
            expected = [r for r in read_jsonl(LEGACY / variant / name) if r["step"] <= 120]
            assert_same_records(read_jsonl(tmp_path / variant / name), expected, f"{variant}: {name}")


@pytest.mark.e2e
@pytest.mark.parametrize("variant", ["mt1", "mt10-multi-head-task-encoder-shared-alpha"])
def test_a_checkpoint_of_the_code_before_the_registries_resumes_with_the_same_continuation(variant, tmp_path):
    workdir = tmp_path / variant
    shutil.copytree(LEGACY / variant, workdir, ignore=shutil.ignore_patterns("README.md"))
    result = run(workdir, *COMMANDS[variant])
    assert "at step 200 of 240" in result.stdout and "warning" not in result.stdout
    for name in ("train.jsonl", "eval.jsonl"):
        assert_same_records(read_jsonl(workdir / name), read_jsonl(LEGACY / variant / name), name)
    config = json.loads((workdir / "config.json").read_text())
    assert config["agent"]["network"] == {"name": "mlp"} and config["agent"]["gradient"] == {"name": "mean"}


def test_load_policy_reads_a_run_of_the_code_before_the_registries(tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(LEGACY / "mt10-multi-head-task-encoder-shared-alpha", workdir)
    policy = mtsac_jax.load_policy(workdir)
    assert policy.step == 200
    actions = policy.eval_action(np.zeros((10, 49)))
    assert actions.shape == (10, 4) and np.all(np.abs(actions) <= 1.0)


FORMAT3 = REPO / "tests" / "fixtures" / "format3"
FORMAT3_COMMANDS = {
    "distral-mt10": ["--config=configs/compose.py:agent=distral,env=metaworld-mt10,smoke"],
    "care-pcgrad-mt10": ["--config=configs/compose.py:env=metaworld-mt10,network=care,gradient=pcgrad,smoke"],
}


@pytest.mark.e2e
def test_flat_state_checkpoints_resume_with_the_same_continuation_and_load(tmp_path):
    """Checkpoints of format 3 (one flat train state: Distral's, and CARE's with PCGrad's state)
    resume into today's nested states and continue as that run did; `load_policy` reads them."""
    processes = {}
    for variant, args in FORMAT3_COMMANDS.items():
        shutil.copytree(FORMAT3 / variant, tmp_path / variant)
        processes[variant] = subprocess.Popen(
            [sys.executable, "train.py", f"--workdir={tmp_path / variant}", *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    for variant, process in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, f"{variant}: {stderr[-3000:]}"
        assert "at step 200 of 240" in stdout and "warning" not in stdout + stderr, variant
        for name in ("train.jsonl", "eval.jsonl"):
            expected = read_jsonl(FORMAT3 / variant / name)
            assert_same_records(read_jsonl(tmp_path / variant / name), expected, f"{variant}: {name}")
    shutil.rmtree(tmp_path / "distral-mt10" / "checkpoints" / "240")  # load the format-3 checkpoint itself
    policy = mtsac_jax.load_policy(tmp_path / "distral-mt10")
    assert policy.step == 200
    actions = policy.eval_action(np.zeros((10, 49)))
    assert actions.shape == (10, 4) and np.all(np.abs(actions) <= 1.0)
