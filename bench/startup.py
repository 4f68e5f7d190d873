"""Time from launch to the first training env step and to the first gradient update, and where
a start's time goes.

    python bench/startup.py --json bench/results/startup.json
    git worktree add /tmp/before <commit>      # a checkout of the code to compare with
    python bench/startup.py --config=configs/metaworld_mt50.py --baseline=/tmp/before --phases --repeats=3 \
        --json bench/results/startup_mt50.json

Runs `train.py` with `--config` (default `configs/metaworld_mt10.py`: the reference networks;
`init_steps=0`, a log line every step) as a user would, and times, from the launch of the
process, the appearance of the step-1 record in `train.jsonl` (first env step: envs, JAX
start-up and the acting compile included) and of the step-2 record (first gradient update
done: the update compile included). Three starts: fresh with empty caches (JAX's compilation
cache, and Meta-World's goals under `XDG_CACHE_HOME`), fresh with the caches warm, and resumed
from the checkpoint of the previous run (caches warm; its first new step is both the first env
step and the first update).

`--baseline DIR` makes the same starts with DIR's `train.py` (another checkout) in the same
repeats, each right after this checkout's, resumed from the same checkpoint, and gives each
figure's ratio to the baseline's (this checkout / baseline): the machine's load varies between
runs. `--phases` also times the parts of a start, each repeat in a process of its own:
importing, building the train envs, building the eval envs, the agent's initial state and
replay buffer, and compiling the update (no cache). Prints the figures and writes JSON;
medians over `--repeats`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import shutil
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
CASES = ("fresh_cold_cache", "fresh_warm_cache", "resumed_warm_cache")


def timed_start(tree: pathlib.Path, config: str, workdir: pathlib.Path, cache: pathlib.Path, num_train_steps: int,
                wanted_steps: list[int], finish: bool) -> dict:
    """Launches `tree`'s train.py with its caches under `cache` and returns the seconds until
    each wanted step's record appears; then lets it finish (its last checkpoint written) if
    `finish`, else kills it."""
    command = [sys.executable, "train.py", f"--config={config}", f"--workdir={workdir}",
               f"--compilation_cache={cache / 'xla'}", f"--config.experiment.num_train_steps={num_train_steps}",
               *OVERRIDES]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "XDG_CACHE_HOME": str(cache)})
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
    if not finish:
        process.kill()
    process.wait()
    return seen


def starts(tree: pathlib.Path, config: str, tmp: pathlib.Path, checkpoint: pathlib.Path | None) -> dict:
    """The three starts of `tree` in `tmp`; resumed from `checkpoint` (a workdir copied), or from
    the warm start's own, which then finishes."""
    cold = timed_start(tree, config, tmp / "cold", tmp / "cache", 2, [1, 2], finish=False)
    warm = timed_start(tree, config, tmp / "warm", tmp / "cache", 2, [1, 2], finish=checkpoint is None)
    shutil.copytree(checkpoint or tmp / "warm", tmp / "resumed")
    resumed = timed_start(tree, config, tmp / "resumed", tmp / "cache", 4, [3], finish=False)
    return {"fresh_cold_cache": {"first_env_step_s": cold[1], "first_update_s": cold[2]},
            "fresh_warm_cache": {"first_env_step_s": warm[1], "first_update_s": warm[2]},
            "resumed_warm_cache": {"first_env_step_s": resumed[3], "first_update_s": resumed[3]}}


def phases(config_arg: str) -> dict:
    """The seconds of each part of a start of `config_arg` (file[:argument]), in this process."""
    began = time.perf_counter()
    sys.path.insert(0, str(REPO))
    from mtsac_jax.cpu_runtime import tune_cpu_process

    tune_cpu_process()
    import jax
    import numpy as np

    from mtsac_jax import agents, envs, numerics, replay_buffer, sharding
    from mtsac_jax.layout import Layout

    times = {"imports_s": time.perf_counter() - began}
    file, _, arg = config_arg.partition(":")
    spec = importlib.util.spec_from_file_location("config_file", REPO / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg or None)

    def timed(name, work):
        start = time.perf_counter()
        result = jax.block_until_ready(work())
        times[name] = time.perf_counter() - start
        return result

    train_envs = timed("train_envs_s", lambda: envs.make_vector_env(config.env, config.seed))
    eval_envs = timed("eval_envs_s", lambda: envs.make_vector_env(config.env, config.seed, evaluation=True))
    num_tasks, obs_shape = train_envs.num_envs, train_envs.single_observation_space.shape
    action_dim = train_envs.single_action_space.shape[0]
    per_task = config.replay_buffer.batch_size // num_tasks
    agent = agents.build(config.agent, agents.EnvSpec(num_tasks, int(np.prod(obs_shape)), action_dim,
                                                      tuple(envs.task_names(config.env)), obs_shape, "float32"),
                         batch_size_per_task=per_task, num_updates_per_call=config.experiment.num_updates_per_step)
    layout = Layout(sharding.plan(1, num_tasks, per_task))
    state, buffer = timed("agent_init_s", lambda: layout.assemble(
        [agent.init(jax.random.key(config.seed))],
        [replay_buffer.init(num_tasks, config.replay_buffer.capacity // num_tasks, obs_shape, action_dim, np.float32)]))
    update = layout.jit_update(numerics.guarded(agent.update), state)
    timed("update_compile_s", lambda: update.lower(state, buffer).compile())
    train_envs.close()
    eval_envs.close()
    return times


def median(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/metaworld_mt10.py")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--baseline", type=pathlib.Path, help="a checkout of the code to compare with")
    parser.add_argument("--phases", action="store_true", help="also time the parts of a start")
    parser.add_argument("--phases-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    if args.phases_child:
        print(json.dumps(phases(args.config)))
        return
    results = {case: [] for case in CASES}
    baseline = {case: [] for case in CASES}
    parts = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            ours = starts(REPO, args.config, tmp / "ours", None)
            theirs = starts(args.baseline, args.config, tmp / "baseline", tmp / "ours" / "warm") if args.baseline else {}
        for case in CASES:
            results[case].append(ours[case])
            if theirs:
                baseline[case].append(theirs[case])
        if args.phases:
            child = subprocess.run([sys.executable, __file__, f"--config={args.config}", "--phases-child"],
                                   cwd=REPO, capture_output=True, text=True, check=True)
            parts.append(json.loads(child.stdout.splitlines()[-1]))
    summary = {case: median(runs) for case, runs in results.items()}
    report = {"config": args.config, "repeats": args.repeats, "median": summary, "runs": results}
    for case, figures in summary.items():
        print(f"{case:20s} first env step {figures['first_env_step_s']:6.1f} s   "
              f"first update {figures['first_update_s']:6.1f} s")
    if args.baseline:
        # the ratio of each repeat's figure to the baseline's of the same repeat, then the median
        ratios = {case: median([{key: ours[key] / theirs[key] for key in ours}
                                for ours, theirs in zip(results[case], baseline[case])]) for case in CASES}
        report.update(baseline={"median": {case: median(runs) for case, runs in baseline.items()}, "runs": baseline},
                      ratio_to_baseline=ratios)
        for case, figures in report["baseline"]["median"].items():
            print(f"{case:20s} baseline: first env step {figures['first_env_step_s']:6.1f} s   first update "
                  f"{figures['first_update_s']:6.1f} s   ratios {ratios[case]['first_env_step_s']:.2f}, "
                  f"{ratios[case]['first_update_s']:.2f}")
    if args.phases:
        report["phases"] = {"median": median(parts), "runs": parts}
        print("phases (median s): " + ", ".join(f"{key} {value:.1f}" for key, value in median(parts).items()))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
