"""Learning curves of training runs, drawn into one PNG.

    python -m mtsac_jax.plot WORKDIR [WORKDIR ...] [--out PATH]
    python -m mtsac_jax.plot EXPERIMENT_DIR [EXPERIMENT_DIR ...] [--out PATH]

Reads `eval.jsonl` of each run and draws the headline metric of the run's setup (success for
`metaworld`; `mtsac_jax.setups`) against `step` (vector-env steps): a first panel with its
mean over tasks, then one panel per task. Run folders with the same config (their seeds aside)
are seeds of one experiment: each panel shows their mean as a line and their min..max as a
shaded band, at the evaluation steps all of them share. Run folders of different configs are
separate experiments, each labelled with the keys in which its config differs from the
others'. An experiment folder (one whose subfolders are runs, such as
`runs/learning/mt1-reach-v3` with `seed1`, `seed2`, ..., or a multi-seed run with its
`seed_<k>/`) is one experiment named after it. All experiments share the panels; the figure's
title says what it shows. The PNG goes to `WORKDIR/learning_curves.png` for one run, `./learning_curves.png` otherwise, or
`--out`. A run evaluated on several env sets (`hipbmdp`: its training envs and two unseen
sets) is drawn on its training envs, or on the set `--mode` names (`eval_interpolation`,
`eval_extrapolation`).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mtsac_jax.config import CHOICES, flatten, upgrade
from mtsac_jax.registry import ConfigError
from mtsac_jax.setups import BASE_MODE, headline_metric, record_mode

FILENAME = "learning_curves.png"
MAX_COLUMNS = 5


class PlotError(ValueError):
    """Bad input to `plot_runs`; the message says what is wrong and where."""


def load_run(workdir: pathlib.Path, metric: str = "success", warn=lambda message: None, mode: str = BASE_MODE
             ) -> tuple[list[str], dict[int, dict[str, float]]]:
    """The task names of a run, in logged order, and `metric` per task at each step, of the
    evaluation records of the env set `mode` (the training tasks by default).

    A step logged twice (a resumed run) keeps its last record. A last line cut short (a run
    writing it, or killed) is skipped and `warn` is told; any other damaged line is an error."""
    if not workdir.is_dir():
        raise PlotError(f"{workdir}: no such directory. Fix: pass a run folder (one holding eval.jsonl).")
    path = workdir / "eval.jsonl"
    if not path.is_file():
        raise PlotError(f"{path} not found: no evaluations yet (or not a run folder)")
    tasks, curves = None, {}
    lines = [(number, line) for number, line in
             enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1) if line.strip()]
    for number, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == lines[-1][0]:
                warn(f"warning: {path}, line {number}: cut short (a run writing it, or killed); skipped")
                continue
            raise PlotError(f"{path}, line {number}: malformed JSON ({error.msg}). "
                            "Fix: repair or delete that line") from None
        if isinstance(record, dict) and record_mode(record) != mode:
            continue
        try:
            success = {name: float(task[metric]) for name, task in record["tasks"].items()}
            step = int(record["step"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise PlotError(f"{path}, line {number}: expected "
                            f'{{"step": ..., "tasks": {{TASK: {{"{metric}": ...}}, ...}}}}. '
                            "Fix: repair or delete that line") from None
        if tasks is None:
            tasks = list(success)
        elif set(success) != set(tasks):
            raise PlotError(f"{path}, line {number}: tasks differ from the first record")
        curves[step] = success
    if tasks is None:
        raise PlotError(f"{path} is empty: no evaluations yet" if mode == BASE_MODE else
                        f"{path} has no evaluations of {mode} yet (a run evaluates on several env sets in the hipbmdp "
                        "setup: eval_interpolation, eval_extrapolation)")
    if not tasks:
        raise PlotError(f"{path}: the records name no tasks")
    return tasks, curves


def _saved_config(workdir: pathlib.Path) -> dict | None:
    """A run's `config.json` in today's shape (`config.upgrade`), so that runs of one config
    written by different versions compare equal; a peer's config.json as it is."""
    try:
        saved = json.loads((workdir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    try:
        return upgrade(saved)
    except (AttributeError, KeyError, TypeError, ConfigError):
        return saved


def _legend_label(workdirs: list[pathlib.Path]) -> str:
    """'1 run' or 'mean of N runs', with the seeds when every run's config.json names one."""
    seeds = []
    for workdir in workdirs:
        config = _saved_config(workdir)
        if not isinstance(config, dict) or "seed" not in config:
            break
        seeds.append(config["seed"])
    label = "1 run" if len(workdirs) == 1 else f"mean of {len(workdirs)} runs"
    if len(seeds) == len(workdirs):
        label += f" (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"
    return label


def _experiments(paths: list[pathlib.Path]) -> list[tuple[str | None, list[pathlib.Path]]]:
    """(name, run folders) per experiment: each experiment folder by its name, with the runs
    inside it; the run folders grouped by config (seed aside), each group named by the keys in
    which its config differs from the other groups' (no name when there is one group only)."""
    experiments, loose = [], []
    for path in paths:
        inside = sorted(child for child in path.iterdir() if (child / "eval.jsonl").is_file()) \
            if path.is_dir() and not (path / "eval.jsonl").exists() else []
        if inside:
            experiments.append((path.name, inside))
        else:
            loose.append(path)
    groups: dict[str, list[pathlib.Path]] = {}
    for path in loose:  # by config, seed aside; runs without a readable config.json (a peer's) count as one
        config = _saved_config(path)
        key = json.dumps({k: v for k, v in flatten(config).items() if not _beside_the_experiment(k)}, sort_keys=True) \
            if isinstance(config, dict) else ""
        groups.setdefault(key, []).append(path)
    if len(groups) == 1 and not experiments:
        return [(None, loose)]
    differing = _config_differences([runs[0] for runs in groups.values()])
    # the choices (agent, network, ...) name an experiment when they differ; else up to 3 keys
    shown = [key for key in CHOICES if key in differing]
    more = ""
    if not shown:
        shown = differing[:3]
        more = f" (+{len(differing) - len(shown)} keys)" if len(differing) > len(shown) else ""
    for runs in groups.values():
        config = flatten(_saved_config(runs[0]) or {})
        named = ", ".join(f"{key}={config.get(key)}" for key in shown) + more if shown else str(runs[0])
        experiments.append((named, runs))
    return experiments


def _beside_the_experiment(key: str) -> bool:
    """The seed and the tracking keys: runs differing in them only are seeds of one experiment."""
    return key == "seed" or key.startswith("experiment.wandb.")


def _config_differences(workdirs: list[pathlib.Path]) -> list[str]:
    """The config keys, seed and tracking aside, in which the runs' config.json files differ."""
    flat = []
    for workdir in workdirs:
        config = _saved_config(workdir)
        if not isinstance(config, dict):
            return []
        flat.append(flatten(config))
    keys = {key for key in set().union(*flat) if not _beside_the_experiment(key)}
    return sorted(key for key in keys if len({json.dumps(config.get(key)) for config in flat}) > 1)


def _seed_curves(workdirs: list[pathlib.Path], metric: str, warn, mode: str) -> tuple[list[str], list[int], np.ndarray]:
    """Tasks, the evaluation steps all runs share, and metric[run, step, task] of the env set
    `mode`; `warn` is told when the runs' evaluation steps differ."""
    runs = [load_run(workdir, metric, warn, mode) for workdir in workdirs]
    tasks = runs[0][0]
    for workdir, (other_tasks, _) in zip(workdirs[1:], runs[1:]):
        differing = sorted(set(tasks) ^ set(other_tasks))
        if differing:
            raise PlotError(f"runs have different tasks: {workdirs[0]} and {workdir} differ in {', '.join(differing)}. "
                            "Fix: plot them in separate commands (--out to name each PNG)")
    steps = sorted(set.intersection(*(set(curves) for _, curves in runs)))
    if not steps:
        raise PlotError("the runs share no evaluation step")
    every_step = set.union(*(set(curves) for _, curves in runs))
    if len(every_step) > len(steps):
        warn(f"warning: the runs are cut to the {len(steps)} evaluation steps they share, of {len(every_step)} "
             f"(up to step {steps[-1]})")
    return tasks, steps, np.array([[[curves[step][task] for task in tasks] for step in steps] for _, curves in runs])


def _title(grouped, metric: str, mode: str) -> str:
    """What the figure shows: the metric, on which envs, of how many experiments and seeds."""
    what = {"success": "success rate", "episode_reward": "episode reward"}.get(metric, metric)
    envs = sorted({str(config["env"]["name"]) for _, runs in grouped
                   if isinstance(config := _saved_config(runs[0]), dict) and "name" in config.get("env", {})})
    title = f"Evaluation {what}" + ("" if mode == BASE_MODE else f" on the {mode.removeprefix('eval_')} envs")
    title += f" of {', '.join(envs)}" if envs else ""
    title += f": {len(grouped)} experiments" if len(grouped) > 1 else ""
    if any(len(runs) > 1 for _, runs in grouped):
        title += " (mean over seeds, min..max shaded)"
    return title


def plot_runs(workdirs, out_path, warn=lambda message: print(message, file=sys.stderr),
              mode: str = BASE_MODE) -> pathlib.Path:
    """Draw the learning curves of `workdirs` (seeds of one experiment, or experiment folders
    to compare) on the env set `mode` into the PNG `out_path`; `warn` is told what the averaging hides."""
    workdirs = [pathlib.Path(workdir) for workdir in workdirs]
    out_path = pathlib.Path(out_path)
    if not workdirs:
        raise PlotError("no workdir given")
    if out_path.suffix.lower() != ".png":
        raise PlotError(f"{out_path}: the output must be a .png file")
    experiments, tasks, first_name = [], None, None  # (legend label, own tasks, steps, metric)
    grouped = _experiments(workdirs)
    try:
        metric = headline_metric(grouped[0][1][0])
    except ConfigError as error:
        raise PlotError(f"{grouped[0][1][0]}: {error}") from None
    for name, runs in grouped:
        own_tasks, steps, success = _seed_curves(runs, metric, warn, mode)
        if tasks is None:
            tasks, first_name = own_tasks, name
        elif set(own_tasks) != set(tasks):
            raise PlotError(f"experiments {first_name} and {name} have different tasks. Fix: plot them in separate "
                            "commands (--out to name each PNG)")
        label = _legend_label(runs)
        experiments.append((f"{name}: {label}" if name else label, own_tasks, steps, success))
    columns = min(MAX_COLUMNS, len(tasks) + 1)
    rows = math.ceil((len(tasks) + 1) / columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, sharey=True, squeeze=False).ravel()
    for label, own_tasks, steps, success in experiments:
        success = success[:, :, [own_tasks.index(task) for task in tasks]]
        panels = [("mean over tasks", success.mean(axis=2))] + [(task, success[:, :, i]) for i, task in enumerate(tasks)]
        for ax, (title, values) in zip(axes, panels):
            line, = ax.plot(steps, values.mean(axis=0), marker=".", label=label)
            if len(values) > 1:
                ax.fill_between(steps, values.min(axis=0), values.max(axis=0), alpha=0.25, color=line.get_color(),
                                label="min..max" if len(experiments) == 1 else None)
            ax.set(title=title, xlabel="step")
            if metric == "success":
                ax.set_ylim(-0.04, 1.04)  # a success of 0 shows above the axis
    for ax in axes[:len(tasks) + 1]:
        ax.grid(alpha=0.3)
    for ax in axes[len(tasks) + 1:]:
        ax.set_visible(False)
    for ax in axes[::columns]:
        ax.set_ylabel(metric)
    figure.suptitle(_title(grouped, metric, mode))
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", fontsize="small")  # below the panels, covering none
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out_path, dpi=100)
    except OSError as error:
        raise PlotError(f"cannot write {out_path}: {error.strerror or error}. Fix: pass --out=<a writable .png path>") from None
    return out_path


def main(argv=None) -> int:
    """Command-line entry point: plot the runs, print the PNG path; 0 on success, 1 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m mtsac_jax.plot", description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+", metavar="WORKDIR",
                        help="run folder with eval.jsonl (several = seeds), or experiment folders to compare")
    parser.add_argument("--out", type=pathlib.Path,
                        help=f"PNG path (default: WORKDIR/{FILENAME} for one run, ./{FILENAME} for several)")
    parser.add_argument("--mode", default=BASE_MODE,
                        help="the env set of a run evaluated on several (hipbmdp): eval_base (its training envs, the "
                             "default), eval_interpolation or eval_extrapolation")
    args = parser.parse_args(argv)
    default = pathlib.Path(args.workdirs[0]) / FILENAME if len(args.workdirs) == 1 else pathlib.Path(FILENAME)
    try:
        path = plot_runs(args.workdirs, args.out or default, mode=args.mode)
    except PlotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
