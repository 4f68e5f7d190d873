"""The learning benchmark's statistics (bench/learning.py), on synthetic evaluation records."""

import importlib.util
import json

import numpy as np
import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("learning", REPO / "bench" / "learning.py")
learning = importlib.util.module_from_spec(spec)
spec.loader.exec_module(learning)


@pytest.fixture(autouse=True)
def no_kept_runs(tmp_path, monkeypatch):
    """The tests' runs only: not the finished runs kept under bench/results/learning_runs/."""
    monkeypatch.setattr(learning, "KEPT", tmp_path / "kept")


def record(step, successes):
    tasks = {f"task{i}": {"success": s, "episode_reward": 1.0} for i, s in enumerate(successes)}
    return {"step": step, "success": float(np.mean(successes)), "episode_reward": 1.0, "tasks": tasks}


def test_iqm_drops_the_outer_quartiles_and_brackets_itself():
    scores = np.array([0.0, 0.1, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    iqm, low, high = learning.iqm_with_ci(scores)
    assert iqm == pytest.approx(np.mean([0.5, 0.6, 0.7, 0.8]))
    assert low <= iqm <= high and 0.0 <= low and high <= 1.0
    assert learning.iqm_with_ci(np.ones(6)) == (1.0, 1.0, 1.0)


def test_summary_over_seeds():
    runs = {
        1: [record(10, [0.2, 0.4]), record(20, [1.0, 0.8]), record(30, [1.0, 1.0])],
        2: [record(10, [0.0, 0.0]), record(20, [0.5, 0.5]), record(30, [0.6, 0.8])],
    }
    row = learning.summarize("demo", runs, {1: 3600.0})
    assert row["mean_success"] == pytest.approx((1.0 + 0.7) / 2)
    assert row["steps_to_0.9"] == [20, None]
    assert row["steps"] == [30, 30]
    assert row["wallclock_h"][0] == pytest.approx(1.0) and np.isnan(row["wallclock_h"][1])
    assert row["iqm"] == pytest.approx(np.mean([0.8, 1.0]))  # of 0.6, 0.8, 1.0, 1.0


def test_sbx_row_gets_the_network_batch_and_budget_of_its_mtsac_jax_row():
    command = learning.sbx_command("sbx-python", "sbx-mt1-reach-v3", 2)
    options = dict(arg[2:].split("=", 1) for arg in command[2:])
    assert command[:2] == ["sbx-python", "bench/sbx_sac.py"]
    assert options["task"] == "reach-v3" and options["seed"] == "2"
    assert (options["hidden_dim"], options["num_layers"], options["batch_size"]) == ("400", "3", "128")
    assert (options["num_train_steps"], options["num_eval_episodes"], options["init_steps"]) == ("50000", "50", "1500")
    assert options["workdir"].endswith("runs/learning/sbx-mt1-reach-v3/seed2")


def test_a_rows_budget_is_its_override_or_its_config_files():
    assert learning.budget("mt1-reach-v3") == 50_000  # --config.experiment.num_train_steps=50000
    assert learning.budget("mt10-cpu-scaled-mlp") == 100_000  # configs/scaled.py:mt10-cpu,mlp


@pytest.mark.e2e
def test_a_stop_signal_reaches_the_run_and_ends_the_sitting(tmp_path):
    """SIGTERM to `bench/learning.py` is passed on to the training run (which checkpoints and
    exits), the sitting's wall-clock is kept, and no further run is started."""
    import signal
    import subprocess
    import sys
    import time

    run = ("import signal, sys, time, pathlib; "
           "signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path(sys.argv[1]).write_text('saved'), sys.exit(0))); "
           "pathlib.Path(sys.argv[2]).write_text('started'); time.sleep(60)")
    sitting = (f"import importlib.util, pathlib, sys; "
               f"spec = importlib.util.spec_from_file_location('learning', {str(REPO / 'bench' / 'learning.py')!r}); "
               f"learning = importlib.util.module_from_spec(spec); spec.loader.exec_module(learning); "
               f"path = pathlib.Path({str(tmp_path)!r}); "
               f"learning._run_timed(path, [sys.executable, '-c', {run!r}, str(path / 'saved'), str(path / 'started')], 'demo'); "
               f"(path / 'next_run').write_text('started')")
    parent = subprocess.Popen([sys.executable, "-c", sitting], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "started").exists() and time.time() < deadline:
        time.sleep(0.1)
    parent.send_signal(signal.SIGTERM)
    _, stderr = parent.communicate(timeout=60)
    assert parent.returncode != 0 and "rerun the same command to resume" in stderr
    assert (tmp_path / "saved").read_text() == "saved"
    assert (tmp_path / "wallclock.json").exists() and not (tmp_path / "next_run").exists()


@pytest.mark.e2e
def test_a_sitting_killed_outright_keeps_its_wall_clock_up_to_the_last_period(tmp_path):
    """With the sitting killed by SIGKILL (no handler runs), `wallclock.json` still holds the
    time up to the last clock period, on top of the earlier sittings' time."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "wallclock.json").write_text('{"seconds": 100.0}')  # an earlier sitting
    sitting = (f"import importlib.util, pathlib, sys; "
               f"spec = importlib.util.spec_from_file_location('learning', {str(REPO / 'bench' / 'learning.py')!r}); "
               f"learning = importlib.util.module_from_spec(spec); spec.loader.exec_module(learning); "
               f"learning.CLOCK_PERIOD_S = 0.2; "
               f"learning._run_timed(pathlib.Path({str(tmp_path)!r}), [sys.executable, '-c', 'import time; time.sleep(60)'], 'demo')")
    parent = subprocess.Popen([sys.executable, "-c", sitting], start_new_session=True)
    deadline = time.time() + 60
    while learning.read_wallclock(tmp_path) < 101.0 and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(parent.pid, signal.SIGKILL)  # the sitting and its run, as a machine reset would
    parent.wait(timeout=60)
    assert 101.0 <= learning.read_wallclock(tmp_path) < 160.0


def test_curve_comparison_uses_the_common_evaluations_and_brackets_the_difference():
    ours = {seed: [record(10, [0.5 + d]), record(20, [0.9 + d / 2]), record(30, [0.0])] for seed, d in
            enumerate([0.0, 0.05, 0.1], start=1)}
    peer = {seed: [record(10, [0.1 + d]), record(20, [0.3 + d])] for seed, d in enumerate([0.0, 0.1, 0.2], start=1)}
    entry = learning.compare_curves("ours", ours, "peer", peer)
    assert entry["steps"] == [10, 20]  # step 30 is only in one row: left out
    assert entry["area"][0] == pytest.approx(np.mean([0.7, 0.7375, 0.775]))
    assert entry["area"][1] == pytest.approx(np.mean([0.2, 0.3, 0.4]))
    low, high = entry["difference_ci95"]
    assert 0.0 < low <= entry["difference"] <= high
    tie = learning.compare_curves("ours", peer, "peer", peer)
    assert tie["difference"] == 0.0 and tie["difference_ci95"][0] < 0.0 < tie["difference_ci95"][1]


def test_a_row_is_summarised_on_its_setups_headline_metric():
    runs = {1: [record(10, [0.2, 0.4]), {**record(20, [1.0, 1.0]), "episode_reward": 7.0}]}
    row = learning.summarize("returns", runs, {}, metric="episode_reward")
    assert row["metric"] == "episode_reward" and row["mean_episode_reward"] == 7.0
    assert row["steps_to_0.9"] == [None], "steps to 0.9 is a success threshold"


def test_report_without_runs_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(learning, "RUNS", tmp_path / "learning")
    assert learning.report(None) == {"rows": [], "comparisons": []}
    assert "No evaluated runs under" in capsys.readouterr().out


def test_a_row_trained_as_one_multi_seed_run_is_read_from_its_seed_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(learning, "RUNS", tmp_path)
    (tmp_path / "demo" / "seed_2").mkdir(parents=True)
    (tmp_path / "demo" / "seed1").mkdir()
    assert learning.workdir("demo", 2) == tmp_path / "demo" / "seed_2"
    assert learning.workdir("demo", 1) == tmp_path / "demo" / "seed1"
    assert learning.workdir("demo", 3) == tmp_path / "demo" / "seed3"  # neither yet: where `run` trains it


def hipbmdp_runs(folder, finals, last_steps=None):
    """Runs of the row hipbmdp-cheetah-run-hipbmdp under `folder`: seed k ends at `finals[k - 1]`
    episode reward on the training envs (0.8 and 0.5 of it on the interpolation and extrapolation
    envs), evaluated at 5000 and 10000 steps, or up to `last_steps[k - 1]`."""
    row = "hipbmdp-cheetah-run-hipbmdp"
    for seed, final in enumerate(finals, start=1):
        folder_of_seed = folder / row / f"seed{seed}"
        folder_of_seed.mkdir(parents=True)
        lines = []
        for step, scale in ((5000, 0.5), (10000, 1.0)):
            if last_steps and step > last_steps[seed - 1]:
                continue
            for mode, factor in (("eval_base", 1.0), ("eval_interpolation", 0.8), ("eval_extrapolation", 0.5)):
                reward = final * scale * factor
                lines.append({"step": step, "mode": mode, "episode_reward": reward,
                              "tasks": {f"torso_length_{mode}": {"episode_reward": reward}}})
        (folder_of_seed / "eval.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        (folder_of_seed / "config.json").write_text(json.dumps({"setup": {"name": "hipbmdp"}}))
    return row


def test_a_hipbmdp_row_is_summarised_on_its_training_envs_and_reports_the_unseen_sets(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(learning, "RUNS", tmp_path)
    row = hipbmdp_runs(tmp_path, (300.0, 500.0))
    entry = learning.report(None, [row])["rows"][0]
    assert entry["metric"] == "episode_reward" and entry["mean_episode_reward"] == 400.0
    assert entry["unseen"] == {"eval_interpolation": pytest.approx(320.0), "eval_extrapolation": pytest.approx(200.0)}
    assert "interpolation 320.0, extrapolation 200.0" in capsys.readouterr().out


def test_a_report_of_finished_runs_leaves_out_the_seeds_still_training(tmp_path, monkeypatch):
    monkeypatch.setattr(learning, "RUNS", tmp_path)
    monkeypatch.setattr(learning, "budget", lambda row: 10000)
    row = hipbmdp_runs(tmp_path, (300.0, 500.0, 900.0), last_steps=(10000, 10000, 5000))
    assert learning.report(None, [row])["rows"][0]["seeds"] == [1, 2, 3]
    entry = learning.report(None, [row], finished_only=True)["rows"][0]
    assert entry["seeds"] == [1, 2] and entry["mean_episode_reward"] == 400.0
    assert entry["unseen"] == {"eval_interpolation": pytest.approx(320.0), "eval_extrapolation": pytest.approx(200.0)}


def test_a_finished_runs_logs_are_kept_and_read_back_once_its_workdir_is_gone(tmp_path, monkeypatch):
    monkeypatch.setattr(learning, "RUNS", tmp_path / "learning")
    row = "hipbmdp-cheetah-run-state_sac"
    path = learning.workdir(row, 1)
    path.mkdir(parents=True)
    evals = [{"step": 25_000, "episode_reward": 100.0, "tasks": {}}, {"step": 50_000, "episode_reward": 300.0, "tasks": {}}]
    (path / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    (path / "wallclock.json").write_text(json.dumps({"seconds": 600.0}))
    (path / "config.json").write_text(json.dumps({"setup": {"name": "hipbmdp"}}))
    assert learning.results(row, 1) == path
    learning.keep(row, 1)
    for name in ("eval.jsonl", "wallclock.json", "config.json"):
        (path / name).unlink()
    assert learning.results(row, 1) == learning.kept(row, 1)
    assert learning.evaluated_runs(row) == {1: evals}
    assert learning.read_wallclock(learning.results(row, 1)) == 600.0
    assert 1 in learning.finished(row, learning.evaluated_runs(row))  # `run` will not train it again
