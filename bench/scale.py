"""Scale-out: seeds side by side, and the update on several devices, in one run.

    python bench/scale.py --json bench/results/scale.json

**Seeds.** The training loop (`train_and_evaluate`, as train.py runs it) on MT1 reach-v3 with
`num_seeds` = 1, 2, 4, 8, at the demo shape (`configs/demo.py`: 2x256 networks, batch 256) and
with tiny networks (2x32, batch 8): samples/s = env-steps/s of each seed times the seeds (the
median of the log intervals after the first, which holds the compiles). Beside it, the same
number of MT1 envs stepped one after the other with random actions and nothing else: what env
stepping alone allows. Rounds alternate over the seed counts; medians of the rounds.

**Devices.** One full SAC update per call at the MT10 reference shape (bench/architectures.py:
batch 1280, 3x400 actor and twin critics) on 1, 2 and 4 CPU devices simulated in one process
(`--xla_force_host_platform_device_count`), placed as train.py places them (`mtsac_jax.sharding`:
tasks split on 2, batches on 4), each in its own worker process, timed in interleaved rounds
with numpy's 1280x400 @ 400x400 matmul (bench/workers.py). Simulated devices share this
machine's cores: the figure says what splitting costs here (collectives, smaller matmuls), not
what more devices gain. The projection for real devices uses the update's FLOPs and the bytes
of the gradients reduced across devices, with the peak rates given on the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from peer_update import MATMUL, MATMUL_FLOP, SHAPE  # noqa: E402
from workers import System, measure_interleaved, rates, spread  # noqa: E402

SEED_COUNTS = (1, 2, 4, 8)
DEVICE_COUNTS = (1, 2, 4)
SHAPES = {"demo": (256, 2, 256), "tiny": (32, 2, 8)}  # name: (hidden_dim, num_layers, batch)


# ----- seeds -----


def seeds_config(shape: str, num_seeds: int, steps: int, intervals: int):
    import runpy

    config = runpy.run_path(str(HERE.parent / "configs" / "demo.py"))["get_config"](None)
    config.unlock()
    hidden_dim, num_layers, batch = SHAPES[shape]
    for network in (config.agent.actor, config.agent.critic):
        network.hidden_dim, network.num_layers = hidden_dim, num_layers
    config.replay_buffer.batch_size = batch
    config.num_seeds = num_seeds
    config.env.vector_strategy = "sync"
    config.experiment.num_train_steps = steps * (intervals + 1)
    config.experiment.init_steps = 100
    config.experiment.log_freq = steps
    config.experiment.eval_freq = 10**9
    config.experiment.num_eval_episodes = 1  # the last step's evaluation: not timed, kept short
    config.experiment.save_freq = 10**9
    config.replay_buffer.capacity = 10 * config.experiment.num_train_steps
    return config


def loop_samples_per_s(shape: str, num_seeds: int, steps: int, intervals: int) -> float:
    from mtsac_jax.training import train_and_evaluate

    with tempfile.TemporaryDirectory() as workdir:
        train_and_evaluate(seeds_config(shape, num_seeds, steps, intervals), workdir)
        seed_dir = pathlib.Path(workdir) / ("seed_1" if num_seeds > 1 else "")
        records = [json.loads(line) for line in (seed_dir / "train.jsonl").read_text().splitlines()]
    return num_seeds * statistics.median(r["perf/env_steps_per_s"] for r in records[1:])


def env_samples_per_s(num_seeds: int, steps: int) -> float:
    """MT1 reach-v3 vector envs, one per seed, stepped one after the other with random actions."""
    import numpy as np

    from mtsac_jax import envs

    config = seeds_config("tiny", num_seeds, steps, 1)
    vector_envs = [envs.make_vector_env(config.env, seed) for seed in range(1, num_seeds + 1)]
    try:
        for vector_env in vector_envs:
            vector_env.reset()
        actions = np.random.default_rng(0).uniform(-1, 1, (steps, 1, 4)).astype(np.float32)
        start = time.perf_counter()
        for action in actions:
            for vector_env in vector_envs:
                vector_env.step(action)
        return steps * num_seeds / (time.perf_counter() - start)
    finally:
        for vector_env in vector_envs:
            vector_env.close()


def measure_seeds(steps: int, intervals: int, repeats: int) -> dict:
    from mtsac_jax.cpu_runtime import tune_cpu_process

    tune_cpu_process()
    found = {f"{shape}/{n}": [] for shape in SHAPES for n in SEED_COUNTS}
    found.update({f"env/{n}": [] for n in SEED_COUNTS})
    for round_ in range(repeats):
        for n in SEED_COUNTS:
            found[f"env/{n}"].append(env_samples_per_s(n, steps))
            for shape in SHAPES:
                found[f"{shape}/{n}"].append(loop_samples_per_s(shape, n, steps, intervals))
        print(f"seeds: round {round_ + 1}/{repeats} done", flush=True)
    return {key: spread(values) for key, values in found.items()}


# ----- devices -----


def on_devices(config: dict) -> dict:
    """A bench/workers.py system: the MT10 reference update on `config["devices"]` simulated CPU
    devices, placed by `mtsac_jax.sharding`; its FLOPs and the bytes of its parameters."""
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={config['devices']}"  # CPU only
    from architectures import build, flop_per_update
    from peer_plugin import NUM_TASKS, updating

    import jax

    from mtsac_jax import sharding

    agent, state, buffer = build("mlp", config["shape"])
    # on CPU the simulated devices; on a GPU node or TPU host the first `devices` accelerators
    placement = sharding.plan(1, NUM_TASKS, config["shape"]["batch"] // NUM_TASKS, jax.devices()[:config["devices"]])
    state, buffer = placement.place(state, buffer)
    params = (state.actor.params, state.critic.params, state.temperature.params)
    return {**updating(agent, state, buffer), "devices": len(placement.devices), "split": placement.split,
            "flop_per_update": flop_per_update(agent, state, buffer),
            "gradient_bytes": sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(params))}


def devices_1(config: dict) -> dict:
    return on_devices({**config, "devices": 1})


def devices_2(config: dict) -> dict:
    return on_devices({**config, "devices": 2})


def devices_4(config: dict) -> dict:
    return on_devices({**config, "devices": 4})


def measure_devices(seconds: float, repeats: int) -> dict:
    systems = [System("numpy_matmul", f"{HERE / 'peer_update.py'}:numpy_matmul")]
    systems += [System(f"devices_{d}", f"{__file__}:devices_{d}") for d in DEVICE_COUNTS]
    results = measure_interleaved(systems, {"shape": SHAPE, "matmul": MATMUL}, seconds, repeats)
    matmul_rate = statistics.median(rates(results["numpy_matmul"])) * MATMUL_FLOP
    flop = results["devices_1"]["ready"]["details"]["flop_per_update"]  # the same work however split
    for d in DEVICE_COUNTS:
        entry = results[f"devices_{d}"]
        entry["updates_per_s"] = spread(rates(entry))
        entry["fraction_of_numpy_matmul"] = entry["updates_per_s"]["median"] * flop / matmul_rate
    return results


def projection(flop: float, gradient_bytes: float, devices: int, tflops: float, link_gb_s: float,
               efficiency: float) -> dict:
    """Seconds per update on `devices` devices of `tflops` peak each reaching `efficiency` of it
    (small matmuls: docs/performance.md section 5), the tasks split: its FLOPs divided over
    them, plus a ring all-reduce of the gradients (2 (D-1)/D of their bytes over each device's
    link of `link_gb_s`). Latency of the collectives and of kernel launches aside."""
    compute = flop / (devices * tflops * 1e12 * efficiency)
    reduce = 2 * (devices - 1) / devices * gradient_bytes / (link_gb_s * 1e9)
    return {"devices": devices, "compute_s": compute, "all_reduce_s": reduce, "updates_per_s": 1 / (compute + reduce)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="steps per log interval (seeds)")
    parser.add_argument("--intervals", type=int, default=3, help="timed log intervals per run (seeds)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per timed call (devices)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--what", choices=("all", "seeds", "devices", "report"), default="all",
                        help="report: print (and project) what --json holds, measuring nothing")
    parser.add_argument("--gpu", default="8,60,450", help="devices, TFLOP/s each, GB/s link each of a GPU node "
                        "(default: 8 H100: fp32 without tensor cores, NVLink)")
    parser.add_argument("--tpu", default="256,197,100", help="the same for a TPU pod slice (default: v5e-256, "
                        "bf16 peak, one ICI link)")
    parser.add_argument("--efficiency", type=float, default=0.15, help="fraction of peak the update's matmuls reach")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args(argv)
    result = json.loads(args.json.read_text()) if args.json and args.json.exists() else {}
    if args.what in ("all", "seeds"):
        result["seeds"] = measure_seeds(args.steps, args.intervals, args.repeats)
    if args.what in ("all", "devices"):
        result["devices"] = measure_devices(args.seconds, args.repeats)
    if "devices" in result:
        one = result["devices"]["devices_1"]["ready"]["details"]
        result["projection"] = {
            name: projection(one["flop_per_update"], one["gradient_bytes"], *(float(x) for x in spec.split(",")),
                             args.efficiency)
            for name, spec in (("gpu_node", args.gpu), ("tpu_pod", args.tpu))}
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


def report(result: dict) -> None:
    if "seeds" in result:
        seeds = result["seeds"]
        print("| seeds | demo shape: samples/s (x 1 seed) | tiny networks: samples/s (x 1 seed) | env stepping alone: samples/s |")
        print("|---|---|---|---|")
        for n in SEED_COUNTS:
            cells = [f"{seeds[f'{shape}/{n}']['median']:.0f} ({seeds[f'{shape}/{n}']['median'] / seeds[f'{shape}/1']['median']:.2f}x)"
                     for shape in SHAPES]
            print(f"| {n} | {' | '.join(cells)} | {seeds[f'env/{n}']['median']:.0f} |")
    if "devices" in result:
        print("\n| simulated CPU devices | split | updates/s (median [min-max]) | x 1 device | of numpy's matmul rate |")
        print("|---|---|---|---|---|")
        base = result["devices"]["devices_1"]["updates_per_s"]["median"]
        for d in DEVICE_COUNTS:
            entry = result["devices"][f"devices_{d}"]
            rate = entry["updates_per_s"]
            print(f"| {d} | {entry['ready']['details']['split'] or '-'} | {rate['median']:.2f} [{rate['min']:.2f}-{rate['max']:.2f}] | "
                  f"{rate['median'] / base:.2f} | {entry['fraction_of_numpy_matmul']:.2f} |")
        one = result["devices"]["devices_1"]["ready"]["details"]
        print(f"\none update: {one['flop_per_update'] / 1e9:.2f} GFLOP, gradients {one['gradient_bytes'] / 2**20:.1f} MiB")
        for name, entry in result["projection"].items():
            print(f"projection, {name}: {entry['devices']:.0f} devices, compute {entry['compute_s'] * 1e6:.1f} us + "
                  f"all-reduce {entry['all_reduce_s'] * 1e6:.1f} us per update: at most {entry['updates_per_s']:.0f} updates/s")


if __name__ == "__main__":
    main()
