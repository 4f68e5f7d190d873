"""Learning-curve plots from synthetic eval.jsonl files, through `plot_runs` and the CLI."""

import json
import pathlib
import subprocess
import sys

import matplotlib.image
import pytest

from mtsac_jax import plot
from mtsac_jax.plot import PlotError, plot_runs

REPO = pathlib.Path(__file__).resolve().parents[1]
TASKS = ("reach-v3", "push-v3", "pick-place-v3")


def write_run(workdir, steps=(60, 120, 180), tasks=TASKS, seed=None):
    """A run folder whose eval.jsonl holds one record per step."""
    workdir.mkdir(parents=True)
    lines = []
    for step in steps:
        success = {task: (step / 900 + i / 10 + (seed or 0) / 20) % 1.0 for i, task in enumerate(tasks)}
        per_task = {task: {"success": value, "episode_reward": 10.0 * step} for task, value in success.items()}
        mean = sum(success.values()) / len(success)
        record = {"step": step, "env_steps": 10 * step, "success": mean, "episode_reward": 10.0 * step, "tasks": per_task}
        lines.append(json.dumps(record))
    (workdir / "eval.jsonl").write_text("\n".join(lines) + "\n")
    if seed is not None:
        (workdir / "config.json").write_text(json.dumps({"seed": seed}))
    return workdir


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mtsac_jax.plot", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_single_run_writes_png(tmp_path):
    workdir = write_run(tmp_path / "run", seed=1)
    out = plot_runs([workdir], workdir / "learning_curves.png")
    assert out == workdir / "learning_curves.png"
    assert_png(out)


def test_three_seeds_write_one_png(tmp_path):
    # seeds stopped at different steps: the curves cover the steps all three share
    workdirs = [write_run(tmp_path / f"seed{seed}", steps=range(60, 60 * (6 + seed), 60), seed=seed)
                for seed in range(3)]
    out = plot_runs(workdirs, tmp_path / "plots" / "seeds.png")
    assert_png(out)
    assert sorted(path.name for path in tmp_path.rglob("*.png")) == ["seeds.png"]


def test_runs_without_shared_steps_are_rejected(tmp_path):
    runs = [write_run(tmp_path / "a", steps=(60,)), write_run(tmp_path / "b", steps=(120,))]
    with pytest.raises(PlotError, match="share no evaluation step"):
        plot_runs(runs, tmp_path / "out.png")


@pytest.mark.e2e
def test_cli_prints_default_path(tmp_path):
    workdir = write_run(tmp_path / "run")
    result = run_cli(workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(workdir / "learning_curves.png")
    assert_png(workdir / "learning_curves.png")


@pytest.mark.e2e
def test_cli_several_runs_with_out(tmp_path):
    runs = [write_run(tmp_path / f"seed{seed}", seed=seed) for seed in range(2)]
    out = tmp_path / "curves.png"
    result = run_cli(*runs, "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert_png(out)


def missing_dir(tmp_path):
    return [tmp_path / "nowhere"], "no such directory"


def missing_eval(tmp_path):
    (tmp_path / "run").mkdir()
    return [tmp_path / "run"], "no evaluations yet"


def empty_eval(tmp_path):
    workdir = write_run(tmp_path / "run")
    (workdir / "eval.jsonl").write_text("")
    return [workdir], "no evaluations yet"


def malformed_line(tmp_path):
    workdir = write_run(tmp_path / "run")
    lines = (workdir / "eval.jsonl").read_text().splitlines()
    (workdir / "eval.jsonl").write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    return [workdir], f"{workdir / 'eval.jsonl'}, line 2: malformed JSON"


def different_tasks(tmp_path):
    first = write_run(tmp_path / "a")
    second = write_run(tmp_path / "b", tasks=("reach-v3", "push-v3", "door-open-v3"))
    return [first, second], f"runs have different tasks: {first} and {second} differ in door-open-v3, pick-place-v3"


@pytest.mark.e2e
@pytest.mark.parametrize("bad_input", [missing_dir, missing_eval, empty_eval, malformed_line, different_tasks])
def test_cli_rejects_bad_input_in_one_line(tmp_path, bad_input):
    workdirs, message = bad_input(tmp_path)
    result = run_cli(*workdirs, "--out", tmp_path / "out.png")
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.png").exists()


@pytest.mark.e2e
def test_a_last_line_cut_short_is_skipped_with_one_warning(tmp_path):
    workdir = write_run(tmp_path / "run")
    with open(workdir / "eval.jsonl", "a") as handle:
        handle.write('{"step": 240, "tasks": ')  # a run killed while writing its evaluation
    result = run_cli(workdir, "--out", tmp_path / "out.png")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"warning: {workdir / 'eval.jsonl'}, line 4: cut short (a run writing it, or killed); skipped"
    assert_png(tmp_path / "out.png")


@pytest.mark.e2e
def test_experiment_folders_are_compared_on_the_same_panels(tmp_path):
    for experiment in ("ours", "peer"):
        for seed in range(3):
            write_run(tmp_path / experiment / f"seed{seed}", seed=seed)
    result = run_cli(tmp_path / "ours", tmp_path / "peer", "--out", tmp_path / "compare.png")
    assert result.returncode == 0, result.stderr
    assert_png(tmp_path / "compare.png")


def test_run_folders_and_experiment_folders_share_the_panels(tmp_path):
    write_run(tmp_path / "peer" / "seed0")
    experiments = plot._experiments([write_run(tmp_path / "run"), tmp_path / "peer"])
    assert [(name, [run.name for run in runs]) for name, runs in experiments] == [("peer", ["seed0"]), (
        str(tmp_path / "run"), ["run"])]
    assert_png(plot_runs([tmp_path / "run", tmp_path / "peer"], tmp_path / "out.png"))


def test_runs_of_different_configs_are_separate_labelled_curves_and_seeds_of_one_are_averaged(tmp_path):
    runs = [write_run(tmp_path / f"{network}{seed}", seed=seed) for network in ("care", "mlp") for seed in (1, 2)]
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        network = "care" if run.name.startswith("care") else "mlp"
        (run / "config.json").write_text(json.dumps({**config, "env": {"name": "metaworld-mt10"},
                                                     "agent": {"network": {"name": network}}}))
    experiments = plot._experiments(runs)
    assert [(name, [run.name for run in group]) for name, group in experiments] == [
        ("agent.network.name=care", ["care1", "care2"]), ("agent.network.name=mlp", ["mlp1", "mlp2"])]
    title = plot._title(experiments, "success", "eval_base")
    assert title == ("Evaluation success rate of metaworld-mt10: 2 experiments (mean over seeds, min..max shaded)")
    assert_png(plot_runs(runs, tmp_path / "compare.png"))


def test_seeds_are_cut_to_the_steps_they_share_with_a_warning(tmp_path):
    workdirs = [write_run(tmp_path / f"seed{seed}", steps=range(60, 60 * (3 + seed), 60), seed=seed)
                for seed in (1, 2)]
    warnings = []
    plot_runs(workdirs, tmp_path / "seeds.png", warn=warnings.append)
    assert any("cut to the 3 evaluation steps they share, of 4 (up to step 180)" in w for w in warnings), warnings
    warnings.clear()
    plot_runs([workdirs[0]], tmp_path / "one.png", warn=warnings.append)
    assert warnings == []


def test_seeds_saved_by_an_older_version_or_tracked_in_wandb_are_one_experiment(tmp_path):
    from mtsac_jax.config import compose

    saved = compose("metaworld", "state_sac", "metaworld-mt10", smoke=True).to_dict()
    older = json.loads(json.dumps(saved))
    del older["experiment"]["wandb"]  # a config.json from before tracking
    tracked = json.loads(json.dumps(saved))
    tracked["experiment"]["wandb"]["enabled"] = True
    runs = []
    for seed, config in ((1, older), (2, saved), (3, tracked)):
        run = write_run(tmp_path / f"seed{seed}", seed=seed)
        (run / "config.json").write_text(json.dumps({**config, "seed": seed}))
        runs.append(run)
    assert [(name, [run.name for run in group]) for name, group in plot._experiments(runs)] == [
        (None, ["seed1", "seed2", "seed3"])]
