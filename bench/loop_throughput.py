"""Does the training loop keep the env workers busy? MT10, measured in one run.

    python bench/loop_throughput.py --json bench/results/loop_throughput.json

For each vector strategy (sync, async) it measures raw Meta-World MT10 stepping with random
actions (gymnasium `VectorEnv.step`, nothing else) and the training loop's env-steps/s with
tiny networks (2x32, batch 80), where the update is cheap: act, dispatch the update, step,
insert, as `train.py` runs it. The loop figure is the median of its `perf/env_steps_per_s`
log intervals after the first (which holds the compiles); raw stepping is timed over the
same number of steps. Repeats alternate raw and loop; medians are reported with the ratio.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from mtsac_jax import envs  # noqa: E402
from mtsac_jax.config import compose  # noqa: E402
from mtsac_jax.training import train_and_evaluate  # noqa: E402


def loop_config(strategy: str, steps: int, intervals: int):
    config = compose("metaworld", "state_sac", "metaworld-mt10", smoke=True)
    config.env.vector_strategy = strategy
    config.env.max_episode_steps = 500
    config.experiment.num_train_steps = steps * (intervals + 1)
    config.experiment.init_steps = 100
    config.experiment.log_freq = steps
    config.experiment.eval_freq = 10**9
    config.experiment.save_freq = 10**9
    config.replay_buffer.capacity = 10 * config.experiment.num_train_steps
    return config


def raw_stepping(vector_env, steps: int, rng: np.random.Generator) -> float:
    """Transitions per second of plain `VectorEnv.step` with uniform random actions."""
    actions = rng.uniform(-1, 1, (steps, vector_env.num_envs, 4)).astype(np.float32)
    start = time.perf_counter()
    for action in actions:
        vector_env.step(action)
    return steps * vector_env.num_envs / (time.perf_counter() - start)


def training_loop(strategy: str, steps: int, intervals: int) -> float:
    config = loop_config(strategy, steps, intervals)
    with tempfile.TemporaryDirectory() as workdir:
        train_and_evaluate(config, workdir)
        records = [json.loads(line) for line in (pathlib.Path(workdir) / "train.jsonl").read_text().splitlines()]
    return statistics.median(r["perf/env_steps_per_s"] for r in records[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500, help="vector steps per timed interval")
    parser.add_argument("--intervals", type=int, default=3, help="timed loop intervals per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategies", default="sync,async")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = {}
    for strategy in args.strategies.split(","):
        config = loop_config(strategy, args.steps, args.intervals)
        vector_env = envs.make_vector_env(config.env, seed=0)
        vector_env.reset()
        raw, loop = [], []
        for _ in range(args.repeats):
            raw.append(raw_stepping(vector_env, args.steps * args.intervals, rng))
            loop.append(training_loop(strategy, args.steps, args.intervals))
        vector_env.close()
        results[strategy] = {
            "raw_env_steps_per_s": statistics.median(raw),
            "loop_env_steps_per_s": statistics.median(loop),
            "loop_over_raw": statistics.median(loop) / statistics.median(raw),
            "raw_runs": raw,
            "loop_runs": loop,
        }
        print(f"{strategy:5s} raw {statistics.median(raw):7.0f} env-steps/s   loop {statistics.median(loop):7.0f} "
              f"env-steps/s   loop/raw {results[strategy]['loop_over_raw']:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "intervals": args.intervals, "repeats": args.repeats,
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
