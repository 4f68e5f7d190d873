"""Several seeds in one process (`num_seeds`): each seed a complete single-seed workdir, the
same run as a single-seed run of that seed, resumed exactly, stopped alone when it fails."""

import json
import math
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from mtsac_jax import plot
from mtsac_jax.policy import load_config, load_policy
from mtsac_jax.training import Trainer
from mtsac_jax.workdir import STOPPED, prepare_workdir
from tests.conftest import REPO, assert_close, read_jsonl, train

pytestmark = pytest.mark.e2e  # every test here runs train.py

TWO_SEEDS = "--config.num_seeds=2"  # as the two_seeds fixture (conftest.py)
INIT_STEPS = 60  # the smoke config's warm-up: no update before it


def test_each_seed_is_the_single_seed_run_of_its_seed(two_seeds, smoke_run):
    """Seed 1 of the two-seed run against the single-seed run with seed 1: the same config.json,
    the warm-up's records identical (envs, warm-up actions, episode statistics); after it, the
    vmapped update gives the same figures to float tolerance (XLA's batched matmuls sum in another
    order than single ones: about 1e-7 relative per update). Seed 2 is a run of its own."""
    single = smoke_run[0]
    assert json.loads((two_seeds / "config.json").read_text())["num_seeds"] == 2
    assert (json.loads((two_seeds / "seed_1" / "config.json").read_text())
            == json.loads((single / "config.json").read_text()))
    assert json.loads((two_seeds / "seed_2" / "config.json").read_text())["seed"] == 2
    for log in ("train.jsonl", "eval.jsonl"):
        records, expected = read_jsonl(two_seeds / "seed_1" / log), read_jsonl(single / log)
        assert [r["step"] for r in records] == [r["step"] for r in expected] != []
        assert_close(records, expected)
    warmup = [r for r in read_jsonl(single / "train.jsonl") if r["step"] <= INIT_STEPS]
    assert warmup and warmup == [r for r in read_jsonl(two_seeds / "seed_1" / "train.jsonl") if r["step"] <= INIT_STEPS]
    assert read_jsonl(two_seeds / "seed_1" / "train.jsonl") != read_jsonl(two_seeds / "seed_2" / "train.jsonl")
    last = read_jsonl(two_seeds / "seed_2" / "train.jsonl")[-1]
    assert all(math.isfinite(value) for value in last.values() if isinstance(value, float))


def test_a_seed_s_workdir_serves_load_policy_evaluate_and_plot(two_seeds, tmp_path):
    policy = load_policy(two_seeds / "seed_2")
    assert policy.step == 240
    result = subprocess.run([sys.executable, "evaluate.py", f"--workdir={two_seeds / 'seed_2'}", "--episodes=1"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "reach-v3" in result.stdout, result.stderr[-3000:]
    assert plot.plot_runs([two_seeds], tmp_path / "seeds.png").is_file()  # the run folder: its seeds


def test_evaluating_the_folder_of_several_seeds_points_to_a_seeds_folder(two_seeds):
    result = subprocess.run([sys.executable, "evaluate.py", f"--workdir={two_seeds}", "--episodes=1"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "holds a run of 2 seeds side by side" in message and f"--workdir={two_seeds / 'seed_1'}" in message, message


def test_a_multi_seed_run_resumes_exactly_with_its_seeds_at_different_checkpoints(two_seeds, tmp_path):
    """Stopped at step 180 with seed 2's newest checkpoint lost (a kill between the seeds'
    saves), then resumed to 240: both seeds go on from the newest step they both have, and their
    logs are those of the uninterrupted run."""
    workdir = tmp_path / "run"
    train(workdir, TWO_SEEDS, "--config.experiment.num_train_steps=180")
    newest = max(int(p.name) for p in (workdir / "seed_2" / "checkpoints").iterdir() if p.name.isdigit())
    shutil.rmtree(workdir / "seed_2" / "checkpoints" / str(newest))
    resumed = train(workdir, TWO_SEEDS)
    assert "[seed 1] Resuming state_sac" in resumed.stdout and "[seed 2] Resuming state_sac" in resumed.stdout
    for seed in ("seed_1", "seed_2"):
        for log in ("train.jsonl", "eval.jsonl"):
            assert read_jsonl(workdir / seed / log) == read_jsonl(two_seeds / seed / log), (seed, log)


def test_a_seed_that_diverges_is_stopped_alone(two_seeds, tmp_path):
    """Seed 2's parameters made NaN before the first update: seed 2 stops with the step and the
    quantity named in its stopped.txt and its console lines; seed 1 trains on, its logs those of
    the run without the fault; a resumption leaves seed 2 stopped and trains seed 1 on."""
    config = load_config(two_seeds)
    workdir = tmp_path / "run"
    prepare_workdir(workdir, config)
    trainer = Trainer(config, workdir)
    restore = trainer.restore

    def restore_and_poison():
        step = restore()
        trainer.state = jax.tree.map(
            lambda leaf: leaf.at[1].set(jnp.nan) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf, trainer.state)
        return step

    trainer.restore = restore_and_poison
    try:
        trainer.run()
    finally:
        trainer.close()
    reason = (workdir / "seed_2" / STOPPED).read_text()
    assert reason.startswith(f"seed 2 stopped: Training stopped at step {INIT_STEPS + 1}: non-finite"), reason
    assert "The newest checkpoint (step 50)" in reason
    assert reason.rstrip().endswith(f"go on with it alone: python train.py --config={workdir / 'seed_2' / 'config.json'} "
                                    f"--workdir={workdir / 'seed_2'}")
    for log in ("train.jsonl", "eval.jsonl"):  # to float tolerance: train.py sets its own matmul backend
        assert_close(read_jsonl(workdir / "seed_1" / log), read_jsonl(two_seeds / "seed_1" / log))
    assert [r["step"] for r in read_jsonl(workdir / "seed_2" / "train.jsonl")] == [60]
    resumed = train(workdir, TWO_SEEDS, "--config.experiment.num_train_steps=300")
    assert "[seed 2] stopped earlier, stays stopped: seed 2 stopped: Training stopped" in resumed.stdout
    assert [r["step"] for r in read_jsonl(workdir / "seed_1" / "train.jsonl")][-2:] == [240, 300]
