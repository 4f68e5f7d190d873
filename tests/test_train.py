"""End-to-end: the smoke config through train.py, as a user runs it."""

import json

import pytest

from tests.conftest import read_jsonl, train


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


def test_non_finite_loss_stops_with_a_clear_message():
    import numpy as np

    from mtsac_jax.training import TrainingError, update_record

    metrics = {name: np.ones(2) for name in ("critic_loss", "actor_loss", "alpha_loss", "entropy", "q")}
    metrics["alpha"] = np.ones(2)
    assert update_record(metrics, ("reach-v3", "push-v3"), step=10)["train/alpha/push-v3"] == 1.0
    metrics["critic_loss"] = np.array([1.0, np.nan])
    with pytest.raises(TrainingError, match=r"train/critic_loss became non-finite at step 10 \(tasks: push-v3\)"):
        update_record(metrics, ("reach-v3", "push-v3"), step=10)
