"""The learning benchmark: a results table that anyone can reproduce with one command.

    python bench/learning.py run [--rows mt1-reach-v3,...]   # trains what is missing; resumable
    python bench/learning.py run --rows sbx-mt1-reach-v3 --sbx-python ~/sbx/bin/python  # see the README
    python bench/learning.py report [--rows ...] [--json bench/results/learning.json]

`run` trains every (row, seed) of ROWS with `train.py` into `runs/learning/<row>/seed<k>/`,
one after the other. Interrupt it whenever you like: running it again resumes unfinished
runs from their checkpoints and skips finished ones, so the table can be completed in several
sittings. A finished run's logs are copied to `bench/results/learning_runs/<row>/seed<k>/`
(commit them): `report` reads them there when `runs/` is gone, and `run` does not train it again. The `sbx-*` rows train SBX's SAC (bench/sbx_sac.py, in a Python that has sbx-rl and
metaworld) with the network, batch and budget of the matching mtsac_jax row, and are evaluated
the same way; an unfinished SBX run starts again. `report` reads the runs' `eval.jsonl` and
prints, per row and over its seeds: mean success at the last evaluation, the interquartile
mean (IQM) of the per-task, per-seed final success with a 95% percentile-bootstrap confidence
interval, the steps at which mean success first reached 0.9, and the training wall-clock; and,
for each `sbx-*` row, its curve against the mtsac_jax row's (mean success over the evaluations,
per seed, and the difference of the two rows' means with a bootstrap confidence interval).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import runpy
import signal
import statistics
import subprocess
import sys
import time

import numpy as np
from scipy import stats

from mtsac_jax.cli import config_values
from mtsac_jax.setups import BASE_MODE, headline_metric, record_mode

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "learning"
KEPT = REPO / "bench" / "results" / "learning_runs"  # each finished run's logs, committed with the repository
KEPT_FILES = ("eval.jsonl", "wallclock.json", "config.json")
MT1_PROTOCOL = [
    "--config.experiment.num_train_steps=50000",
    "--config.experiment.eval_freq=10000",
    "--config.experiment.num_eval_episodes=50",
]


def network(hidden_dim: int, num_layers: int) -> list[str]:
    """Overrides giving the actor and the critics `num_layers` hidden layers of `hidden_dim`."""
    return [f"--config.agent.{net}.{key}={value}" for net in ("actor", "critic")
            for key, value in (("hidden_dim", hidden_dim), ("num_layers", num_layers))]


MT10_CPU_50K = [  # MT10 at a small CPU budget: 50k steps per task, 2x256 networks, 10 evaluation episodes
    "--config.experiment.num_train_steps=50000",
    "--config.experiment.eval_freq=10000",
    "--config.experiment.num_eval_episodes=10",
    *network(256, 2),
]
MT10_CPU_EVALUATION = ["--config.experiment.eval_freq=10000", "--config.experiment.num_eval_episodes=50"]
HIPBMDP_CPU = [
    "--config.experiment.num_train_steps=50000",
    "--config.experiment.eval_freq=5000",
    *network(256, 2),
]
UNSEEN_MODES = ("eval_interpolation", "eval_extrapolation")
ROWS = {  # row name: (config argument, overrides, seeds)
    # reach-v3 is compared with SBX (SBX_ROWS), and its success at 50k moves by up to 0.4 from one
    # evaluation to the next: six seeds, so that the two curves can be told apart
    "mt1-reach-v3": ("configs/metaworld_mt1.py:reach-v3", MT1_PROTOCOL, (1, 2, 3, 4, 5, 6)),
    **{
        f"mt1-{task}": (f"configs/metaworld_mt1.py:{task}", MT1_PROTOCOL, (1, 2, 3))
        for task in ("push-v3", "drawer-close-v3", "button-press-topdown-v3")
    },
    # the same with mtrl's temperature loss (alpha, not log-alpha, times the entropy error)
    "mt1-reach-v3-alpha-loss": ("configs/metaworld_mt1.py:reach-v3", [*MT1_PROTOCOL,
                                "--config.agent.temperature_loss=alpha"], (1, 2, 3)),
    # the same with log-std bounds [-5, 2] (pytorch_sac, CleanRL) instead of mtrl's [-20, 2]
    "mt1-reach-v3-log-std-min-5": ("configs/metaworld_mt1.py:reach-v3", [*MT1_PROTOCOL,
                                   "--config.agent.actor.log_std_min=-5"], (1, 2, 3)),
    # the same with initial temperature 0.1 instead of 1: the temperature reaches ~0.1 only after
    # ~8k updates from 1 (Adam moves log-alpha by at most lr per update); also what a reward scale of 10 would do
    "mt1-reach-v3-init-temperature-0.1": ("configs/metaworld_mt1.py:reach-v3", [*MT1_PROTOCOL,
                                          "--config.agent.init_temperature=0.1"], (1, 2, 3)),
    # the same with SBX's default network and batch (2x256, 256) instead of mtrl's (3x400, 128)
    "mt1-reach-v3-2x256": ("configs/metaworld_mt1.py:reach-v3", [*MT1_PROTOCOL, *network(256, 2),
                                                                "--config.replay_buffer.batch_size=256"], (1, 2, 3)),
    # MT10 at a CPU budget: 100k steps per task, 2x256 networks, 128 samples per task.
    "mt10-cpu": (
        "configs/metaworld_mt10.py",
        ["--config.experiment.num_train_steps=100000", *MT10_CPU_EVALUATION, *network(256, 2)],
        (1, 2, 3),
    ),
    # The architectures against MT-SAC on MT10 at a smaller CPU budget: 50k steps per task, each
    # network's MT10 preset (configs/<network>.py) shrunk to 2x256, 10 evaluation episodes per task.
    **{
        f"mt10-cpu-50k{'-' + name if name else ''}": (
            f"configs/{name}.py:mt10" if name else "configs/metaworld_mt10.py",
            MT10_CPU_50K,
            (1,),
        )
        for name in ("", "film", "care", "soft_modularization", "moore", "paco")
    },
    # The gradient methods against MT-SAC at the same budget: MT-SAC's setting with another gradient.
    **{
        f"mt10-cpu-50k-{gradient}": (
            f"configs/compose.py:env=metaworld-mt10,gradient={gradient}",
            MT10_CPU_50K,
            (1,),
        )
        for gradient in ("pcgrad", "gradnorm")
    },
    # Distral at the same budget: a 2x256 network per task and the distilled policy, evaluated
    # with the distilled policy (mtrl's choice)
    "mt10-cpu-50k-distral": ("configs/compose.py:env=metaworld-mt10,agent=distral", MT10_CPU_50K, (1,)),
    # The scaled-critic recipe at mt10-cpu's budget (configs/scaled.py:mt10-cpu: 100k steps per task,
    # 2 updates per step), three seeds, and one seed of each ablation (one piece taken away).
    "mt10-cpu-scaled": ("configs/scaled.py:mt10-cpu", MT10_CPU_EVALUATION, (1, 2, 3)),
    **{
        f"mt10-cpu-scaled-{ablation}": (f"configs/scaled.py:mt10-cpu,{ablation}", MT10_CPU_EVALUATION, (1,))
        for ablation in ("mlp", "mse", "no-reward-norm", "one-update")
    },
    # The hipbmdp setup on states at a CPU budget: 50k agent steps per env (100k control steps), 4
    # training envs, 2x256 networks, evaluated every 5k steps on the training envs and the unseen ones.
    **{
        f"hipbmdp-{distribution}-{agent}": (f"configs/hipbmdp.py:{distribution},{agent}", HIPBMDP_CPU, (1, 2, 3))
        for distribution in ("cheetah-run", "walker-walk-friction")
        for agent in ("state_sac", "state_deepmdp", "hipbmdp")
    },
}
SBX_ROWS = {f"sbx-mt1-{task}": f"mt1-{task}" for task in ("reach-v3",)}  # peer row: its mtsac_jax row
SOLVED = 0.9


def workdir(row: str, seed: int) -> pathlib.Path:
    """`runs/learning/<row>/seed<k>/`, or `seed_<k>/` for a row trained as one multi-seed run
    (`train.py --workdir=runs/learning/<row> --config.num_seeds=N`)."""
    single, of_many = RUNS / row / f"seed{seed}", RUNS / row / f"seed_{seed}"
    return of_many if of_many.is_dir() and not single.is_dir() else single


def kept(row: str, seed: int) -> pathlib.Path:
    """`bench/results/learning_runs/<row>/seed<k>/`: a finished run's `eval.jsonl`, `wallclock.json` and
    `config.json`, copied there by `run`, so a table can be completed over several machines or
    sittings whose `runs/` folders are not kept."""
    return KEPT / row / f"seed{seed}"


def results(row: str, seed: int) -> pathlib.Path:
    """The folder to read a run's logs from: its workdir while it has them, else its kept copy."""
    path = workdir(row, seed)
    return path if (path / "eval.jsonl").exists() else kept(row, seed)


def keep(row: str, seed: int) -> None:
    """Copies a finished run's logs to `kept(row, seed)`."""
    source, target = workdir(row, seed), kept(row, seed)
    target.mkdir(parents=True, exist_ok=True)
    for name in KEPT_FILES:
        if (source / name).exists():
            (target / name).write_bytes((source / name).read_bytes())


def read_evals(path: pathlib.Path, mode: str = BASE_MODE) -> list[dict]:
    """A run's evaluation records of the env set `mode` (its training tasks by default)."""
    eval_log = path / "eval.jsonl"
    records = [json.loads(line) for line in eval_log.read_text().splitlines()] if eval_log.exists() else []
    return [record for record in records if record_mode(record) == mode]


CLOCK_PERIOD_S = 60.0


def read_wallclock(path: pathlib.Path) -> float | None:
    """Training seconds a run's sittings have summed in `wallclock.json`, if it has one."""
    clock = path / "wallclock.json"
    return json.loads(clock.read_text())["seconds"] if clock.exists() else None


def _write_wallclock(path: pathlib.Path, seconds: float) -> None:
    partial = path / "wallclock.json.partial"
    partial.write_text(json.dumps({"seconds": seconds}))
    partial.replace(path / "wallclock.json")


def _wait(child: subprocess.Popen, timeout: float) -> int | None:
    """The child's exit status, or None if it is still running after `timeout` seconds."""
    try:
        return child.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def _option(overrides: list[str], key: str) -> str:
    return next(o for o in overrides if o.startswith(f"--config.{key}=")).split("=", 1)[1]


def _run_timed(path: pathlib.Path, command: list[str], name: str) -> None:
    """Runs one training command; `wallclock.json` sums the time of every sitting, brought up to
    date every `CLOCK_PERIOD_S` so a sitting killed outright loses at most that much. SIGTERM or
    SIGINT is passed on to the run (which saves a checkpoint and exits) and ends the sitting."""
    print(f"[learning] {name} -> {path}", flush=True)
    path.mkdir(parents=True, exist_ok=True)
    start, spent, stopped = time.time(), read_wallclock(path) or 0.0, []
    child = subprocess.Popen(command, cwd=REPO)

    def pass_on(signum, frame):
        stopped.append(signum)
        child.send_signal(signum)

    previous = {signum: signal.signal(signum, pass_on) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        while (returncode := _wait(child, CLOCK_PERIOD_S)) is None:
            _write_wallclock(path, spent + time.time() - start)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _write_wallclock(path, spent + time.time() - start)
    if stopped:
        sys.exit(f"stopped: {name} was asked to stop; rerun the same command to resume.")
    if returncode != 0:
        sys.exit(f"error: {name} stopped with status {returncode}; rerun to resume.")


def sbx_command(sbx_python: str, row: str, seed: int) -> list[str]:
    """bench/sbx_sac.py with the numbers of the mtsac_jax row's config (network, batch, budget)."""
    config_arg, overrides, _ = ROWS[SBX_ROWS[row]]
    config_path, task = config_arg.split(":")
    config = runpy.run_path(str(REPO / config_path))["get_config"](task)
    run = {key: _option(overrides, f"experiment.{key}") for key in ("num_train_steps", "eval_freq", "num_eval_episodes")}
    return [sbx_python, "bench/sbx_sac.py", *sbx_arguments(config, task, seed, workdir(row, seed), **run)]


def sbx_arguments(config, task: str, seed: int, path: pathlib.Path, num_train_steps, eval_freq,
                  num_eval_episodes) -> list[str]:
    """bench/sbx_sac.py's arguments for the mtsac_jax config `config` (its network, batch, warm-up,
    optimiser and env numbers) on MT1 `task`, with the run's budget and evaluation."""
    agent, experiment = config.agent, config.experiment
    numbers = {
        "task": task,
        "seed": seed,
        "workdir": path,
        "num_train_steps": num_train_steps,
        "eval_freq": eval_freq,
        "num_eval_episodes": num_eval_episodes,
        "max_episode_steps": config.env.max_episode_steps,
        "hidden_dim": agent.critic.hidden_dim,
        "num_layers": agent.critic.num_layers,
        "batch_size": config.replay_buffer.batch_size,
        "init_steps": experiment.init_steps,
        "capacity": config.replay_buffer.capacity,
        "lr": agent.optimizers.critic.lr,
        "tau": agent.critic_tau,
        "discount": agent.discount,
        "init_temperature": agent.init_temperature,
    }
    return [f"--{key}={value}" for key, value in numbers.items()]


def budget(row: str) -> int:
    """The training steps (per task) of a row: its override, or its config file's."""
    config_arg, overrides, _ = ROWS[SBX_ROWS.get(row, row)]
    if any(override.startswith("--config.experiment.num_train_steps=") for override in overrides):
        return int(_option(overrides, "experiment.num_train_steps"))
    path, _, arg = config_arg.partition(":")
    return int(config_values(str(REPO / path), arg or None)["experiment.num_train_steps"])


def evaluated_runs(row: str, mode: str = BASE_MODE) -> dict[int, list[dict]]:
    """Each seed's eval records of the env set `mode`, for the seeds of `row` that have any."""
    runs = {seed: read_evals(results(row, seed), mode) for seed in ROWS[SBX_ROWS.get(row, row)][2]}
    return {seed: evals for seed, evals in runs.items() if evals}


def finished(row: str, runs: dict[int, list[dict]]) -> dict[int, list[dict]]:
    """The runs of `row` whose last evaluation is at the row's budget."""
    return {seed: evals for seed, evals in runs.items() if evals[-1]["step"] >= budget(row)}


def run(rows: list[str], sbx_python: str | None, only_seeds: list[int] | None = None) -> None:
    """Trains each (row, seed) whose last evaluation is not yet at the row's final step."""
    for row in rows:
        config, overrides, seeds = ROWS[SBX_ROWS.get(row, row)]
        done = finished(row, evaluated_runs(row))
        for seed in [seed for seed in seeds if only_seeds is None or seed in only_seeds]:
            path = workdir(row, seed)
            if seed in done:
                if results(row, seed) == path and not kept(row, seed).is_dir():
                    keep(row, seed)
                continue
            if row in SBX_ROWS:
                (path / "wallclock.json").unlink(missing_ok=True)  # an SBX run starts again
                command = sbx_command(sbx_python, row, seed)
            else:
                command = [sys.executable, "train.py", f"--config={config}", f"--config.seed={seed}",
                           f"--workdir={path}", *overrides]
            _run_timed(path, command, f"{row} seed {seed}")
            keep(row, seed)


def iqm_with_ci(scores: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Interquartile mean and its 95% percentile-bootstrap confidence interval."""
    iqm = float(stats.trim_mean(scores, 0.25))
    if len(scores) < 2 or np.all(scores == scores[0]):
        return iqm, iqm, iqm
    result = stats.bootstrap((scores,), lambda x, axis: stats.trim_mean(x, 0.25, axis=axis), n_resamples=2000,
                             method="percentile", random_state=seed)
    return iqm, float(result.confidence_interval.low), float(result.confidence_interval.high)


def summarize(row: str, runs: dict[int, list[dict]], wallclock: dict[int, float], metric: str = "success") -> dict:
    """The table row of one experiment from the eval records of its seeds, on the headline
    `metric` of its setup (steps to 0.9 only for success)."""
    final = [evals[-1] for evals in runs.values()]
    per_task = np.array([task[metric] for record in final for task in record["tasks"].values()])
    iqm, low, high = iqm_with_ci(per_task)
    solved_at = [next((r["step"] for r in evals if metric == "success" and r[metric] >= SOLVED), None)
                 for evals in runs.values()]
    return {
        "row": row,
        "metric": metric,
        "seeds": sorted(runs),
        "steps": [record["step"] for record in final],
        f"mean_{metric}": statistics.mean(record[metric] for record in final),
        "iqm": iqm,
        "iqm_ci95": [low, high],
        "steps_to_0.9": solved_at,
        "wallclock_h": [wallclock.get(seed, float("nan")) / 3600 for seed in sorted(runs)],
    }


def compare_curves(row: str, runs: dict[int, list[dict]], peer: str, peer_runs: dict[int, list[dict]],
                   seed: int = 0, metric: str = "success") -> dict:
    """Two rows' learning curves side by side: per seed, the mean `metric` over the evaluations
    both rows have reached (the area under the curve, normalised), its mean over seeds for each
    row, and the difference with a 95% percentile-bootstrap confidence interval (seeds resampled
    within each row). A positive difference favours `row`; an interval containing 0 cannot tell."""
    steps = sorted(set.intersection(*({r["step"] for r in evals} for evals in [*runs.values(), *peer_runs.values()])))

    def areas(row_runs: dict[int, list[dict]]) -> np.ndarray:
        return np.array([np.mean([r[metric] for r in evals if r["step"] in steps]) for evals in row_runs.values()])

    ours, theirs = areas(runs), areas(peer_runs)
    result = stats.bootstrap((ours, theirs), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                             n_resamples=2000, method="percentile", random_state=seed)
    return {
        "row": row,
        "peer": peer,
        "steps": steps,
        "seeds": [len(ours), len(theirs)],
        "area": [float(ours.mean()), float(theirs.mean())],
        "difference": float(ours.mean() - theirs.mean()),
        "difference_ci95": [float(result.confidence_interval.low), float(result.confidence_interval.high)],
    }


def report(json_path: pathlib.Path | None, rows: list[str] | None = None, finished_only: bool = False) -> dict:
    """The table of `rows` (every row by default) that have evaluated runs (`finished_only`: runs
    at their row's budget, leaving out those still training), printed and written to `json_path`."""
    table = []
    runs_of = {row: evaluated_runs(row) for row in rows or [*ROWS, *SBX_ROWS]}
    if finished_only:
        runs_of = {row: finished(row, runs) for row, runs in runs_of.items()}
    for row, runs in runs_of.items():
        if not runs:
            continue
        wallclock = {seed: read_wallclock(results(row, seed)) for seed in runs}
        wallclock = {seed: seconds for seed, seconds in wallclock.items() if seconds is not None}
        metric = headline_metric(results(row, min(runs)))
        entry = summarize(row, runs, wallclock, metric)
        unseen = {mode: {seed: evals for seed, evals in evaluated_runs(row, mode).items() if seed in runs}
                  for mode in UNSEEN_MODES}
        entry["unseen"] = {mode: statistics.mean(evals[-1][metric] for evals in mode_runs.values())
                           for mode, mode_runs in unseen.items() if mode_runs}
        table.append(entry)
    if not table:
        print(f"No evaluated runs under {RUNS}: nothing to report. Train them first: python bench/learning.py run")
        return {"rows": [], "comparisons": []}
    print("| row | seeds | steps | mean of the headline metric | IQM [95% CI] | steps to 0.9 | wall-clock (h) | "
          "unseen envs |")
    print("|---|---|---|---|---|---|---|---|")
    for entry in table:
        solved = ", ".join("-" if s is None else str(s) for s in entry["steps_to_0.9"])
        clock = ", ".join("-" if np.isnan(h) else f"{h:.2f}" for h in entry["wallclock_h"])  # - : still running
        print(f"| {entry['row']} | {len(entry['seeds'])} | {', '.join(map(str, entry['steps']))} | "
              f"{entry['mean_' + entry['metric']]:.2f} {entry['metric']} | {entry['iqm']:.2f} [{entry['iqm_ci95'][0]:.2f}, "
              f"{entry['iqm_ci95'][1]:.2f}] | {solved} | {clock} | "
              + (", ".join(f"{mode.removeprefix('eval_')} {value:.1f}" for mode, value in entry["unseen"].items()) or "-")
              + " |")
    comparisons = []
    for peer, row in SBX_ROWS.items():
        if peer not in runs_of or row not in runs_of:
            continue
        runs, peer_runs = finished(row, runs_of[row]), finished(peer, runs_of[peer])
        if len(runs) >= 2 and len(peer_runs) >= 2:
            comparisons.append(compare_curves(row, runs, peer, peer_runs))
    if comparisons:
        print("\n| row | against | seeds | mean success over the evaluations | difference [95% CI] |")
        print("|---|---|---|---|---|")
    for entry in comparisons:
        low, high = entry["difference_ci95"]
        print(f"| {entry['row']} | {entry['peer']} | {entry['seeds'][0]}, {entry['seeds'][1]} | "
              f"{entry['area'][0]:.2f}, {entry['area'][1]:.2f} | {entry['difference']:+.2f} [{low:+.2f}, {high:+.2f}] |")
    result = {"rows": table, "comparisons": comparisons}
    if json_path:
        json_path.write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "report"))
    parser.add_argument("--rows", help=f"comma list of (default: every row): {', '.join([*ROWS, *SBX_ROWS])}")
    parser.add_argument("--seeds", help="comma list: train only these of each row's seeds (e.g. to split "
                        "a row over two processes)")
    parser.add_argument("--sbx-python", help="a Python with sbx-rl and metaworld, for the sbx-* rows")
    parser.add_argument("--finished", action="store_true", help="report: only the runs at their row's budget")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    rows = args.rows.split(",") if args.rows else [*ROWS]
    if args.command == "run":
        unknown = [row for row in rows if row not in ROWS and row not in SBX_ROWS]
        if unknown:
            sys.exit(f"error: unknown rows {unknown}; choose from {[*ROWS, *SBX_ROWS]}")
        if any(row in SBX_ROWS for row in rows) and not args.sbx_python:
            sys.exit("error: the sbx-* rows need --sbx-python, a Python with sbx-rl and metaworld "
                     "(see docs/results.md).")
        run(rows, args.sbx_python, [int(seed) for seed in args.seeds.split(",")] if args.seeds else None)
    else:
        report(args.json, rows if args.rows else None, finished_only=args.finished)


if __name__ == "__main__":
    main()
