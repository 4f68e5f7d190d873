"""Checkpoints and resume: kills, signals, corrupt checkpoints, config changes."""

import json
import shutil
import signal
import subprocess
import time

import pytest

from tests.conftest import REPO, read_jsonl, train, train_command

pytestmark = pytest.mark.e2e  # every test here runs train.py


def start_and_interrupt(workdir, signum, after_checkpoint="100"):
    """Starts a smoke run and sends `signum` once checkpoint `after_checkpoint` exists."""
    process = subprocess.Popen(train_command(workdir), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 300
    while not (workdir / "checkpoints" / after_checkpoint).exists():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr


def assert_same_logs(reference, other):
    for name in ("train.jsonl", "eval.jsonl"):
        assert read_jsonl(reference / name) == read_jsonl(other / name), name


def test_sigkill_after_a_checkpoint_then_rerun_reproduces_the_uninterrupted_logs(smoke_run, tmp_path):
    reference, _ = smoke_run
    workdir = tmp_path / "killed"
    returncode, _, _ = start_and_interrupt(workdir, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    assert read_jsonl(workdir / "train.jsonl") != read_jsonl(reference / "train.jsonl"), "the kill came too late"
    result = train(workdir)
    assert "Resuming" in result.stdout
    assert_same_logs(reference, workdir)


def test_sigterm_saves_at_the_current_step_and_exits_cleanly(smoke_run, tmp_path):
    reference, _ = smoke_run
    workdir = tmp_path / "terminated"
    returncode, stdout, _ = start_and_interrupt(workdir, signal.SIGTERM)
    assert returncode == 0
    assert "Stopped by SIGTERM at step" in stdout and "Rerun the same command" in stdout
    stopped_at = int(stdout.split("Stopped by SIGTERM at step ")[1].split(";")[0])
    assert str(stopped_at) in [p.name for p in (workdir / "checkpoints").iterdir()]
    assert all(r["step"] <= stopped_at for r in read_jsonl(workdir / "train.jsonl"))
    result = train(workdir)
    assert f"at step {stopped_at} of 240" in result.stdout
    assert_same_logs(reference, workdir)


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(smoke_run, tmp_path):
    reference, _ = smoke_run
    workdir = tmp_path / "corrupt"
    shutil.copytree(reference, workdir)
    for path in (workdir / "checkpoints" / "240" / "arrays").rglob("*"):
        if path.is_file():
            path.write_bytes(b"garbage")
    result = train(workdir)
    assert "checkpoint" in result.stdout and "could not be restored" in result.stdout
    assert "at step 200 of 240" in result.stdout
    assert_same_logs(reference, workdir)


def test_changed_config_is_refused_with_the_differing_keys(smoke_run, tmp_path):
    reference, _ = smoke_run
    workdir = tmp_path / "changed"
    shutil.copytree(reference, workdir)
    before = (workdir / "train.jsonl").read_text()
    result = train(workdir, "--config.agent.discount=0.9", "--config.replay_buffer.batch_size=16",
                   expect_success=False)
    assert result.returncode != 0
    assert "agent.discount: 0.99 -> 0.9" in result.stderr and "replay_buffer.batch_size: 8 -> 16" in result.stderr
    assert "new --workdir" in result.stderr and "Traceback" not in result.stderr
    assert (workdir / "train.jsonl").read_text() == before
    assert json.loads((workdir / "config.json").read_text())["agent"]["discount"] == 0.99


def test_extending_a_finished_run_continues_it(smoke_run, tmp_path):
    reference, _ = smoke_run
    workdir = tmp_path / "extended"
    shutil.copytree(reference, workdir)
    result = train(workdir, "--config.experiment.num_train_steps=300")
    assert "experiment.num_train_steps: 240 -> 300" in result.stdout
    assert [r["step"] for r in read_jsonl(workdir / "train.jsonl")] == [60, 120, 180, 240, 300]
    assert [r["step"] for r in read_jsonl(workdir / "eval.jsonl")] == [120, 240, 300]
    assert read_jsonl(workdir / "train.jsonl")[:4] == read_jsonl(reference / "train.jsonl")


def test_unwritable_workdir_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = train(blocker / "run", expect_success=False)
    assert result.returncode != 0
    assert "Cannot write to the workdir" in result.stderr and "Traceback" not in result.stderr
    assert "Training" not in result.stdout


@pytest.mark.parametrize("keep", [1, 3])
def test_keep_checkpoints(tmp_path, keep):
    workdir = tmp_path / f"keep{keep}"
    train(workdir, f"--config.experiment.keep_checkpoints={keep}", "--config.experiment.num_train_steps=150")
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [50, 100, 150][-keep:]


def test_a_workdir_without_a_usable_checkpoint_starts_over_and_keeps_its_old_logs(smoke_run, tmp_path):
    reference, _ = smoke_run
    workdir = tmp_path / "no_checkpoints"
    shutil.copytree(reference, workdir)
    shutil.rmtree(workdir / "checkpoints")
    result = train(workdir)
    assert "has logs but no usable checkpoint: starting over from step 0" in result.stdout
    (aside,) = workdir.glob("logs_before_*")
    assert read_jsonl(aside / "train.jsonl") == read_jsonl(reference / "train.jsonl")
    assert_same_logs(reference, workdir)
