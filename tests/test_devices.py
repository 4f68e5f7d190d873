"""Several devices (simulated on CPU with --xla_force_host_platform_device_count) and several
processes (scripts/launch_local_multiprocess.sh): what is split over them, the same updates as
on one device to float tolerance, checkpoints that move between topologies."""

import json
import os
import subprocess
import sys

import jax
import pytest

from mtsac_jax import sharding
from mtsac_jax.config import ConfigError
from tests.conftest import REPO, SMOKE, assert_close, read_jsonl

MT10_SMOKE = ["--config=configs/metaworld_mt10.py:smoke", "--config.experiment.num_train_steps=130"]


LAUNCH = ["bash", "scripts/launch_local_multiprocess.sh"]


def train_on(devices, workdir, *args):
    """train.py on `devices` simulated CPU devices."""
    return _run([sys.executable, "train.py", f"--workdir={workdir}", *args],
                {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})


def train_in_processes(count, workdir, *args):
    """train.py in `count` processes of one device each, through the launch script."""
    stdout = _run([*LAUNCH, str(count), f"--workdir={workdir}", *args], {"PYTHON": sys.executable})
    return "\n".join(line for line in stdout.splitlines() if "Gloo" not in line)  # gloo's own connection lines


def _run(command, env):
    result = subprocess.run(command, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize(
    "devices, seeds, tasks, batch, split",
    [(1, 1, 10, 8, None), (2, 1, 10, 8, "task"), (4, 1, 10, 8, "batch"), (2, 4, 10, 8, "seed"),
     (4, 2, 10, 8, "batch"), (4, 2, 8, 8, "task")],
)
def test_what_is_split_over_the_devices(devices, seeds, tasks, batch, split):
    placement = sharding.plan(seeds, tasks, batch, devices=[jax.devices()[0]] * devices)
    assert placement.split == split


def test_devices_that_split_nothing_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"3 devices split neither the 1 seed\(s\), the 10 tasks nor the per-task "
                                          r"batch of 8\. Fix: make replay_buffer.batch_size / num_tasks a multiple of 3"):
        sharding.plan(1, 10, 8, devices=[jax.devices()[0]] * 3)


@pytest.fixture(scope="module")
def one_device_mt10(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one") / "run"
    stdout = train_on(1, workdir, *MT10_SMOKE)
    assert stdout.startswith("Starting: building the train envs of metaworld-mt10 (10 task(s)) and the state_sac "
                             "agent; the eval envs are built at their first use\n"
                             "devices: 1 (CPU), 1 process; one device: nothing is sharded\n")
    return workdir


@pytest.mark.parametrize("devices, split", [(2, "the replay buffer along the task axis"),
                                            (4, "each sampled batch along its per-task batch axis")])
@pytest.mark.e2e
def test_mt10_on_several_devices_matches_one_device(one_device_mt10, tmp_path, devices, split):
    """MT10 smoke on 2 devices (tasks split) and 4 (batches split): the logs of the 1-device run
    to float tolerance (the gradients are summed over devices in another order). The 4-device
    checkpoint then resumes on 1 device."""
    workdir = tmp_path / "run"
    stdout = train_on(devices, workdir, *MT10_SMOKE)
    assert stdout.splitlines()[1].startswith(f"devices: {devices} (CPU), 1 process; sharded: {split}")
    for log in ("train.jsonl", "eval.jsonl"):
        records, expected = read_jsonl(workdir / log), read_jsonl(one_device_mt10 / log)
        assert [r["step"] for r in records] == [r["step"] for r in expected] != []
        assert_close(records, expected)
    assert json.loads((workdir / "config.json").read_text())["num_seeds"] == 1  # no device count in the config
    if devices == 4:
        stdout = train_on(1, workdir, MT10_SMOKE[0], "--config.experiment.num_train_steps=180")
        assert "Resuming state_sac (network mlp, gradient mean) on metaworld-mt10 (10 task(s)) at step 130 of 180" in stdout
        assert [r["step"] for r in read_jsonl(workdir / "train.jsonl")][-2:] == [130, 180]


@pytest.mark.e2e
def test_two_seeds_on_two_devices_each_train_their_seed(two_seeds, tmp_path):
    """num_seeds=2 on 2 devices: a seed per device; each seed's logs those of the same seeds on one
    device to float tolerance."""
    stdout = train_on(2, tmp_path / "two", SMOKE, "--config.num_seeds=2")
    assert stdout.splitlines()[1].startswith(
        "devices: 2 (CPU), 1 process; sharded: the state and the replay buffer along the seed axis")
    for seed in ("seed_1", "seed_2"):
        assert_close(read_jsonl(tmp_path / "two" / seed / "train.jsonl"), read_jsonl(two_seeds / seed / "train.jsonl"))


@pytest.mark.e2e
def test_two_processes_train_checkpoint_and_resume(one_device_mt10, tmp_path):
    """MT10 smoke in 2 processes through the launch script, each stepping 5 tasks: to step 120, then
    resumed in 2 processes to 130; the logs (per-task evaluations included) are the 1-device run's
    to float tolerance. The checkpoint of 2 processes then resumes in 1."""
    workdir = tmp_path / "run"
    stdout = train_in_processes(2, workdir, MT10_SMOKE[0], "--config.experiment.num_train_steps=120")
    assert ("devices: 2 (CPU), 2 processes (each stepping the envs of 5 tasks); sharded: the replay buffer along the "
            "task axis, the parameters replicated") in stdout
    assert (workdir / "checkpoints" / "120").is_dir()
    stdout = train_in_processes(2, workdir, *MT10_SMOKE)
    assert "Resuming state_sac (network mlp, gradient mean) on metaworld-mt10 (10 task(s)) at step 120 of 130" in stdout
    for log in ("train.jsonl", "eval.jsonl"):
        assert_close(read_jsonl(workdir / log), read_jsonl(one_device_mt10 / log))
    stdout = train_on(1, workdir, MT10_SMOKE[0], "--config.experiment.num_train_steps=140")
    assert "Resuming state_sac (network mlp, gradient mean) on metaworld-mt10 (10 task(s)) at step 130 of 140" in stdout
    assert [r["step"] for r in read_jsonl(workdir / "eval.jsonl")] == [120, 130, 140]


class _OtherProcessDevice:
    def __init__(self, process_index):
        self.process_index, self.platform = process_index, "cpu"


@pytest.mark.parametrize("seeds, tasks", [(2, 10), (1, 5)])
def test_processes_that_cannot_share_out_the_tasks_are_refused_with_the_fix(seeds, tasks):
    devices = [_OtherProcessDevice(0), _OtherProcessDevice(1)]
    with pytest.raises(ConfigError, match=rf"2 processes share out the tasks of one seed: they need num_seeds=1 \(got "
                                          rf"{seeds}\) and the {tasks} tasks a multiple of the 2 devices\. Fix: run each"):
        sharding.plan(seeds, tasks, 8, devices=devices)


@pytest.mark.e2e
def test_the_launch_script_explains_its_arguments():
    result = subprocess.run([*LAUNCH, "two"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage: scripts/launch_local_multiprocess.sh N <train.py arguments>" in result.stderr
