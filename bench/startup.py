"""Time from launch to the first training env step and to the first gradient update (MT10).

    python bench/startup.py --json bench/results/startup.json

Runs `train.py` with `configs/metaworld_mt10.py` (the reference networks, `init_steps=0`,
a log line every step) as a user would, and times, from the launch of the process, the
appearance of the step-1 record in `train.jsonl` (first env step: envs, eval envs, JAX
start-up and the acting compile included) and of the step-2 record (first gradient update
done: the update compile included). Three starts: fresh with an empty JAX compilation
cache, fresh with the cache warm, and resumed from the checkpoint of the previous run
(cache warm; its first new step is both the first env step and the first update).
Prints the figures and writes JSON; medians over `--repeats`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
OVERRIDES = [
    "--config.experiment.init_steps=0",
    "--config.experiment.log_freq=1",
    "--config.experiment.eval_freq=1000000",
    "--config.experiment.num_eval_episodes=1",
    "--config.experiment.save_freq=1000000",
]


def timed_start(workdir: pathlib.Path, cache: pathlib.Path, num_train_steps: int, wanted_steps: list[int]) -> dict:
    """Launches train.py and returns the seconds until each wanted step's record appears."""
    command = [sys.executable, "train.py", "--config=configs/metaworld_mt10.py", f"--workdir={workdir}",
               f"--compilation_cache={cache}", f"--config.experiment.num_train_steps={num_train_steps}", *OVERRIDES]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = {}
    log = workdir / "train.jsonl"
    while len(seen) < len(wanted_steps):
        if process.poll() is not None and process.returncode != 0:
            raise RuntimeError(process.stderr.read())
        if log.exists():
            for line in log.read_text().splitlines():
                step = json.loads(line)["step"]
                if step in wanted_steps and step not in seen:
                    seen[step] = time.perf_counter() - start
        time.sleep(0.01)
    process.wait()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    results = {"fresh_cold_cache": [], "fresh_warm_cache": [], "resumed_warm_cache": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            cold = timed_start(tmp / "cold", tmp / "cache", 2, [1, 2])
            warm = timed_start(tmp / "warm", tmp / "cache", 2, [1, 2])
            resumed = timed_start(tmp / "warm", tmp / "cache", 4, [3])
        results["fresh_cold_cache"].append({"first_env_step_s": cold[1], "first_update_s": cold[2]})
        results["fresh_warm_cache"].append({"first_env_step_s": warm[1], "first_update_s": warm[2]})
        results["resumed_warm_cache"].append({"first_env_step_s": resumed[3], "first_update_s": resumed[3]})
    summary = {
        case: {key: statistics.median(run[key] for run in runs) for key in runs[0]} for case, runs in results.items()
    }
    for case, figures in summary.items():
        print(f"{case:20s} first env step {figures['first_env_step_s']:5.1f} s   "
              f"first update {figures['first_update_s']:5.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"median": summary, "runs": results, "repeats": args.repeats}, indent=2))


if __name__ == "__main__":
    main()
