"""A whole training job against SBX's: MT1 reach-v3 from process start to exit, alternating.

    python bench/whole_job.py --sbx-python ~/.cache/mtsac_jax/peer-venv/bin/python \
        --json bench/results/whole_job.json

Both jobs train SAC on MT1 reach-v3 with 2x256 networks, batch 256, 8,000 env steps (1,500 of
them random warm-up), evaluating 10 episodes at steps 4,000 and 8,000: `train.py` with those
overrides of `configs/metaworld_mt1.py:reach-v3` (its checkpoints, logs and evaluations as a user
gets them), and SBX's `SAC.learn()` through bench/sbx_sac.py with the same numbers (network,
batch, warm-up, optimiser, discount, temperature; `bench/learning.py`'s `sbx_arguments`), in the
Python of `--sbx-python` (sbx-rl and metaworld: `bash bench/peer_venv.sh` and `pip install
metaworld packaging` into it). Each round runs both, in alternating order; the figure is each
job's wall time from spawning the process to its exit, median over rounds, and their ratio per
round. Where mtsac_jax's time goes, from its own logs: start-up and exit (the wall time outside
the training loop: imports, building the envs, the agent, restoring nothing), the warm-up steps
(env stepping alone, random actions), the training steps (acting, env stepping, updates; the
update's compile included), and evaluation with checkpointing (the loop's time that
`perf/` leaves out). SBX's: start-up and exit, and `learn()` (SB3's `time/time_elapsed`,
evaluation included).
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import runpy
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from learning import sbx_arguments  # noqa: E402

CONFIG, TASK = "configs/metaworld_mt1.py", "reach-v3"
SETTINGS = {  # dotted config key: value, for both jobs
    "agent.actor.hidden_dim": 256,
    "agent.actor.num_layers": 2,
    "agent.critic.hidden_dim": 256,
    "agent.critic.num_layers": 2,
    "replay_buffer.batch_size": 256,
    "experiment.num_train_steps": 8000,
    "experiment.eval_freq": 4000,
    "experiment.num_eval_episodes": 10,
    "seed": 1,
}


def config_of_both():
    """`CONFIG` at `TASK` with `SETTINGS` applied."""
    config = runpy.run_path(str(REPO / CONFIG))["get_config"](TASK)
    for key, value in SETTINGS.items():
        *parents, leaf = key.split(".")
        section = config
        for parent in parents:
            section = section[parent]
        section[leaf] = value
    return config


def mtsac_command(workdir: pathlib.Path) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), f"--config={CONFIG}:{TASK}", f"--workdir={workdir}",
            *(f"--config.{key}={value}" for key, value in SETTINGS.items())]


def sbx_command(sbx_python: str, workdir: pathlib.Path) -> list[str]:
    config = config_of_both()
    experiment = config.experiment
    return [sbx_python, str(HERE / "sbx_sac.py"),
            *sbx_arguments(config, TASK, config.seed, workdir, experiment.num_train_steps, experiment.eval_freq,
                           experiment.num_eval_episodes)]


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return seconds


def mtsac_phases(workdir: pathlib.Path, wall: float) -> dict:
    """Where the job's wall time went, from its train.jsonl (`perf/` leaves evaluation and saving
    out of its rates; `perf/elapsed_s` counts everything since the loop started)."""
    records = [json.loads(line) for line in (workdir / "train.jsonl").read_text().splitlines()]
    init_steps = config_of_both().experiment.init_steps
    steps_before, warm_up, training = 0, 0.0, 0.0
    for record in records:
        steps = record["step"] - steps_before
        seconds = steps / record["perf/env_steps_per_s"]
        random_steps = max(0, min(record["step"], init_steps) - steps_before)
        warm_up += seconds * random_steps / steps
        training += seconds * (steps - random_steps) / steps
        steps_before = record["step"]
    loop = records[-1]["perf/elapsed_s"]
    return {"start_up_and_exit_s": wall - loop, "warm_up_steps_s": warm_up, "training_steps_s": training,
            "evaluation_and_saving_s": loop - warm_up - training, "steps_logged": steps_before}


def sbx_phases(workdir: pathlib.Path, wall: float) -> dict:
    with open(workdir / "sb3_log" / "progress.csv") as table:
        elapsed = float(list(csv.DictReader(table))[-1]["time/time_elapsed"])
    return {"start_up_and_exit_s": wall - elapsed, "learn_s": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sbx-python", required=True, help="a Python with sbx-rl and metaworld")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(args.rounds):
            entry = {}
            order = ("mtsac_jax", "sbx") if index % 2 == 0 else ("sbx", "mtsac_jax")
            for system in order:
                workdir = pathlib.Path(scratch) / f"{system}_{index}"
                if system == "mtsac_jax":
                    wall = timed(mtsac_command(workdir))
                    entry[system] = {"wall_s": wall, **mtsac_phases(workdir, wall)}
                else:
                    wall = timed(sbx_command(args.sbx_python, workdir))
                    entry[system] = {"wall_s": wall, **sbx_phases(workdir, wall)}
                print(f"round {index + 1}/{args.rounds} {system}: {json.dumps(entry[system])}", flush=True)
            entry["ratio"] = entry["mtsac_jax"]["wall_s"] / entry["sbx"]["wall_s"]
            rounds.append(entry)
    summary = {system: {key: statistics.median(entry[system][key] for entry in rounds) for key in rounds[0][system]}
               for system in ("mtsac_jax", "sbx")}
    ratios = [entry["ratio"] for entry in rounds]
    summary["ratio"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    print(f"mtsac_jax {summary['mtsac_jax']['wall_s']:.1f} s, SBX {summary['sbx']['wall_s']:.1f} s (medians of "
          f"{args.rounds}); mtsac_jax / SBX per round: median {summary['ratio']['median']:.2f} "
          f"[{summary['ratio']['min']:.2f}-{summary['ratio']['max']:.2f}]")
    for system in ("mtsac_jax", "sbx"):
        print(f"{system}: " + ", ".join(f"{key} {value:.1f}" for key, value in summary[system].items()
                                        if key.endswith("_s")))
    if args.json:
        args.json.write_text(json.dumps({"task": TASK, "config": CONFIG, "settings": SETTINGS, "rounds": rounds,
                                         "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
