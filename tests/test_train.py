"""End-to-end: the smoke config through train.py, as a user runs it."""

import json
import re
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO, read_jsonl, train

pytestmark = pytest.mark.e2e  # every test here runs train.py


def test_smoke_run_writes_config_train_and_eval_logs(smoke_run):
    workdir, result = smoke_run
    config = json.loads((workdir / "config.json").read_text())
    assert config["env"]["task_name"] == "reach-v3" and config["experiment"]["num_train_steps"] == 240
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["200", "240"]  # keep the last 2
    assert list((workdir / "tb").glob("events.out.tfevents.*"))

    evals = read_jsonl(workdir / "eval.jsonl")
    assert [e["step"] for e in evals] == [120, 240]  # every eval_freq and the last step
    for record in evals:
        assert set(record) == {"step", "env_steps", "success", "episode_reward", "tasks"}
        assert set(record["tasks"]) == {"reach-v3"}
        assert 0.0 <= record["success"] <= 1.0 and record["episode_reward"] > 0.0
        assert record["tasks"]["reach-v3"]["success"] == record["success"]

    train_records = read_jsonl(workdir / "train.jsonl", drop_perf=False)
    assert [r["step"] for r in train_records] == [60, 120, 180, 240]
    assert [r["env_steps"] for r in train_records] == [60, 120, 180, 240]
    assert "train/critic_loss" not in train_records[0], "no updates during the random warm-up"
    for record in train_records[1:]:
        for key in ("train/critic_loss", "train/actor_loss", "train/alpha_loss", "train/alpha/reach-v3"):
            assert key in record
        assert record["perf/env_steps_per_s"] > 0 and record["perf/updates_per_s"] > 0
    assert "train/episode_reward" in train_records[0]  # 50-step episodes end within the first interval
    assert "reach-v3  success" in result.stdout


def test_same_seed_reproduces_logs_exactly(smoke_run, tmp_path):
    workdir, _ = smoke_run
    train(tmp_path / "again")
    for name in ("train.jsonl", "eval.jsonl"):
        assert read_jsonl(workdir / name) == read_jsonl(tmp_path / "again" / name)


def test_async_workers_reproduce_the_sync_run(smoke_run, tmp_path):
    workdir, _ = smoke_run
    train(tmp_path / "async", "--config.env.vector_strategy=async")
    for name in ("train.jsonl", "eval.jsonl"):
        assert read_jsonl(workdir / name) == read_jsonl(tmp_path / "async" / name)


def test_other_seed_changes_the_run(smoke_run, tmp_path):
    workdir, _ = smoke_run
    train(tmp_path / "seed2", "--config.seed=2")
    assert read_jsonl(workdir / "train.jsonl") != read_jsonl(tmp_path / "seed2" / "train.jsonl")


def test_a_non_finite_update_stops_the_run_before_anything_of_it_is_saved(tmp_path):
    """A critic learning rate of 1e30: the second update's losses overflow. The update is dropped
    inside the jitted step, the run stops with the step, the quantity and the task, and the
    checkpoint from before it stays the newest."""
    result = train(tmp_path / "run", "--config.agent.optimizers.critic.lr=1e30", expect_success=False)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert re.search(r"Training stopped at step \d+: non-finite [a-z_]+ \(task reach-v3\)", message), message
    assert "The newest checkpoint (step 50)" in message and "nan_policy=skip" in message
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()) == ["50"]


def test_with_nan_policy_skip_dropped_updates_are_counted_and_too_many_in_a_row_stop_the_run(tmp_path):
    result = train(tmp_path / "run", "--config.agent.optimizers.critic.lr=1e30", "--config.experiment.nan_policy=skip",
                   "--config.experiment.max_skipped_updates=3", expect_success=False)
    assert result.returncode == 1
    assert result.stdout.count("warning: dropped the update at step") + result.stderr.count(
        "warning: dropped the update at step") == 1
    assert "4 updates in a row were not finite, more than experiment.max_skipped_updates=3" in result.stderr


def test_without_a_terminal_progress_lines_come_between_log_lines_and_the_status_names_the_choices(tmp_path):
    result = train(tmp_path / "run", "--config.experiment.progress_every_s=0.02")  # stdout is a pipe here
    progress = [re.fullmatch(r"progress: step (\d+)/240 \(\d+%\), ([\d.]+) steps/s, about \d+h\d\dm left", line)
                for line in result.stdout.splitlines() if line.startswith("progress: ")]
    assert progress and all(progress), result.stdout
    steps = [int(match[1]) for match in progress]
    assert steps == sorted(steps) and 0 < steps[0] and steps[-1] <= 240 and all(float(m[2]) > 0 for m in progress)
    # building an env (its model file read, ~0.15 s with its goals cached) takes longer than 0.02 s: the train env's
    # line before training, the eval env's at the first save
    assert re.search(r"^building the train envs: 1/1 tasks, \d+ s\ndevices: ", result.stdout, re.M), result.stdout
    assert re.search(r"^building the eval envs: 1/1 tasks, \d+ s$", result.stdout, re.M), result.stdout
    assert "Training state_sac (network mlp, gradient mean) on metaworld-mt1 (1 task(s)) at step 0 of 240" in result.stdout
    # the smoke config's 50-step episodes are neither protocol
    assert ("protocol: neither Meta-World's nor mtrl's (50-step episodes, a new goal (of the task's 50) at every "
            "reset, no one-hot task id)") in result.stdout


@pytest.mark.e2e
def test_ctrl_c_while_starting_stops_with_one_line_and_leaves_no_half_made_run(tmp_path):
    """SIGINT while the envs are built (before the loop handles it by saving): one line, exit
    status 130, and the workdir it made removed, so the same command starts afresh."""
    workdir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "train.py", "--config=configs/metaworld_mt10.py:smoke", f"--workdir={workdir}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal's Ctrl-C reaches it
    assert process.stdout.readline().startswith("Starting: building the train envs of metaworld-mt10")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == ("Stopped by Ctrl-C while starting. Nothing was saved: rerun the same "
                                               "command to start.")
    assert "Traceback" not in stderr and not workdir.exists()
