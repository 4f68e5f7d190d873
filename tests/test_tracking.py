"""Weights & Biases tracking (`experiment.wandb`), in W&B's offline mode: what a run logged is
read back from the offline run's transaction log (`WORKDIR/wandb/offline-run-*/run-<id>.wandb`)."""

import io
import json
import os
import pathlib
import signal
import struct
import subprocess
import sys
import time

import ml_collections
import pytest
import wandb

from mtsac_jax.cli import overridden_keys
from mtsac_jax.config import ConfigError, compose, upgrade, validate
from mtsac_jax.run_log import RunLog
from mtsac_jax.tracking import RUN_ID_FILE, Tracker
from mtsac_jax.workdir import config_changes, prepare_workdir
from tests.conftest import REPO, read_jsonl, tiny_config, train_command

OFFLINE = ["--config.experiment.wandb.enabled=True", "--config.experiment.wandb.mode=offline"]


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """W&B's own files under tmp_path, quiet, offline; the same for subprocesses."""
    env = {"WANDB_SILENT": "true", "WANDB_ERROR_REPORTING": "false", "WANDB_DISABLE_GIT": "true"}
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        env[name] = str(tmp_path / "wandb_home" / name.lower())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(name, raising=False)
    return dict(os.environ)


def wandb_records(path):
    """The protobuf records of a `.wandb` transaction log (LevelDB log framing: 32 KiB blocks
    of chunks, each with a 7-byte header: checksum, length, type), after its 7-byte file header."""
    from wandb.proto import wandb_internal_pb2

    data = pathlib.Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    block, offset, pending, records = 32768, 7, b"", []
    while offset + 7 <= len(data):
        if block - offset % block < 7:  # a block's tail too short for a header is padding
            offset += block - offset % block
            continue
        _, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        chunk = data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if kind in (1, 2):  # a whole record, or its first chunk
            pending = b""
        pending += chunk
        if kind in (1, 4):  # a whole record, or its last chunk
            records.append(wandb_internal_pb2.Record.FromString(pending))
    return records


def offline_runs(workdir):
    """Each offline W&B run in `workdir`, oldest first: its run record and its history as {step: {key: value}}
    (a media file's fields as `<key>/<field>`)."""
    runs = []
    for folder in sorted((workdir / "wandb").glob("offline-run-*")):
        (log,) = folder.glob("run-*.wandb")
        run, history = None, {}
        for record in wandb_records(log):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = record.run
            elif kind == "history":
                items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
                history[record.history.step.num] = {key: value for key, value in items.items() if not key.startswith("_")}
        runs.append((run, history))
    return runs


def logged_config(run) -> dict:
    return {item.key: json.loads(item.value_json) for item in run.config.update if not item.key.startswith("_")}


def test_an_unknown_mode_is_refused_naming_the_choices():
    config = tiny_config()
    config.experiment.wandb.mode = "onlin"
    with pytest.raises(ConfigError, match=r"experiment\.wandb\.mode 'onlin'.*'online'.*online, offline, disabled"):
        validate(config)


def test_a_config_json_from_before_tracking_resumes_with_tracking_off():
    saved = tiny_config().to_dict()
    del saved["experiment"]["wandb"]
    upgraded = upgrade(saved)
    assert upgraded["experiment"]["wandb"] == {"enabled": False, "project": "mtsac_jax", "entity": "", "mode": "online"}
    validate(ml_collections.ConfigDict(upgraded))


def test_tracking_can_be_turned_on_when_a_run_resumes_and_does_not_change_its_default_folder(tmp_path):
    config = compose("metaworld", "state_sac", "metaworld-mt1", task_name="reach-v3", smoke=True)
    prepare_workdir(tmp_path, config)
    config.experiment.wandb.enabled, config.experiment.wandb.mode = True, "offline"
    changes, blocking = config_changes(tmp_path, config)
    assert len(changes) == 2 and not blocking
    config.seed = 2
    argv = [f"--config={REPO / 'configs' / 'metaworld_mt1.py'}:reach-v3,smoke", "--config.seed=2", *OFFLINE]
    assert overridden_keys(config, argv) == {}
    config.agent.discount = 0.9
    assert overridden_keys(config, argv) == {"agent.discount": 0.9}


@pytest.mark.e2e
def test_tracking_without_the_wandb_package_stops_at_once_with_one_line(tmp_path, wandb_env):
    workdir = tmp_path / "run"
    command = train_command(workdir, "--config.experiment.wandb.enabled=True")
    without_wandb = ("import sys; sys.modules['wandb'] = None; import train; "
                     f"sys.argv = {command[1:]!r}; train.run(sys.argv)")
    result = subprocess.run([sys.executable, "-c", without_wandb], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env=wandb_env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "experiment.wandb.enabled=True needs the wandb package" in lines[0]
    assert "pip install 'mtsac_jax[wandb]'" in lines[0]
    assert not workdir.exists()  # stopped before anything was written


def test_each_seed_is_a_run_of_its_group_with_every_record_and_the_videos(tmp_path, wandb_env):
    config = tiny_config()
    config.experiment.wandb.update(enabled=True, mode="offline")
    workdir = tmp_path / "three-seeds" / "seed_2"
    workdir.mkdir(parents=True)
    video = tmp_path / "reach-v3_ep0.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    log = RunLog(workdir, num_train_steps=100, start_step=0, stream=io.StringIO(), label="seed 2",
                 tracker=Tracker(config, workdir, 0, multi_seed=True))
    log.train({"step": 10, "env_steps": 10, "train/critic_loss": 1.5, "train/alpha/reach-v3": 0.9,
               "perf/env_steps_per_s": 100.0, "perf/updates_per_s": 50.0})
    log.videos({"reach-v3": video}, 20)
    log.eval({"step": 20, "env_steps": 20, "success": 0.5, "tasks": {"reach-v3": {"success": 0.5}}})
    log.eval({"step": 20, "env_steps": 20, "mode": "eval_interpolation", "success": 1.0,
              "tasks": {"reach-v3-b": {"success": 1.0}}})
    log.close()
    wandb.teardown()  # the W&B service writes the run's log out, as when a training process ends

    ((run, history),) = offline_runs(workdir)
    assert run.run_id == (workdir / RUN_ID_FILE).read_text().strip()
    assert (run.project, run.run_group, run.display_name) == ("mtsac_jax", "three-seeds", "three-seeds/seed_2")
    assert logged_config(run) == json.loads(json.dumps(config.to_dict()))
    assert history[10] == {"env_steps": 10, "train/critic_loss": 1.5, "train/alpha/reach-v3": 0.9,
                           "perf/env_steps_per_s": 100.0, "perf/updates_per_s": 50.0}
    assert history[20]["eval/success"] == 0.5 and history[20]["eval/success/reach-v3"] == 0.5
    assert history[20]["eval_interpolation/success/reach-v3-b"] == 1.0
    assert history[20]["video/reach-v3/_type"] == "video-file"
    (media,) = workdir.glob(f"wandb/offline-run-*/files/{history[20]['video/reach-v3/path']}")
    assert media.read_bytes() == video.read_bytes()


@pytest.mark.e2e
def test_a_tracked_run_logs_its_config_and_records_and_goes_on_in_the_same_wandb_run_when_resumed(tmp_path, wandb_env):
    workdir = tmp_path / "run"
    command = train_command(workdir, *OFFLINE)
    interrupted = subprocess.Popen(command, cwd=REPO, env=wandb_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
    deadline = time.time() + 600
    while not (workdir / "checkpoints" / "100").exists():  # stopped as a preemption does, after step 100
        assert interrupted.poll() is None and time.time() < deadline, interrupted.communicate()[1][-3000:]
        time.sleep(0.02)
    interrupted.send_signal(signal.SIGTERM)
    stdout, stderr = interrupted.communicate(timeout=300)
    assert interrupted.returncode == 0 and "Stopped by SIGTERM" in stdout, stderr[-3000:]
    run_id = (workdir / RUN_ID_FILE).read_text().strip()
    resumed = subprocess.run(command, cwd=REPO, env=wandb_env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0 and "Resuming" in resumed.stdout, resumed.stderr[-3000:]
    assert (workdir / RUN_ID_FILE).read_text().strip() == run_id

    (first, first_history), (second, second_history) = offline_runs(workdir)
    assert first.run_id == second.run_id == run_id
    saved = json.loads((workdir / "config.json").read_text())
    assert logged_config(first) == logged_config(second) == saved
    assert saved["experiment"]["wandb"] == {"enabled": True, "project": "mtsac_jax", "entity": "", "mode": "offline"}
    # the records up to the stop in the first part, the rest in the resumed one: each step once
    assert max(first_history) < min(second_history)
    history = {**first_history, **second_history}
    train_records = read_jsonl(workdir / "train.jsonl", drop_perf=False)
    assert sorted(history) == [record["step"] for record in train_records] == [60, 120, 180, 240]
    assert "train/critic_loss" in train_records[-1]
    for record in train_records:  # every figure, the wall-clock ones too
        assert {key: history[record["step"]][key] for key in record if key != "step"} == pytest.approx(
            {key: value for key, value in record.items() if key != "step"})
    eval_records = read_jsonl(workdir / "eval.jsonl")
    assert [record["step"] for record in eval_records] == [120, 240]
    for record in eval_records:
        assert history[record["step"]]["eval/success/reach-v3"] == record["tasks"]["reach-v3"]["success"]
        assert history[record["step"]]["eval/episode_reward/reach-v3"] == pytest.approx(
            record["tasks"]["reach-v3"]["episode_reward"])
