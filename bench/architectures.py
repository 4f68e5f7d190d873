"""Update cost of each multi-task architecture at the MT10 reference shape, in one run.

    python bench/architectures.py --json bench/results/architectures.json

Each architecture's MT10 preset (`configs/<network>.py:mt10`; MT-SAC is
`configs/metaworld_mt10.py`) at mtrl's reference shape: batch 1280 (128 per task), Adam 3e-4,
the preset's networks (3x400 actor and twin critics, or the paper's own sizes). Every system runs
one full SAC update per call on a replay buffer of random transitions, in its own worker process,
timed in interleaved rounds with numpy's float32 1280x400 @ 400x400 matmul (bench/workers.py).
Reported per architecture: updates/s (median [min-max] of the rounds), relative to MT-SAC, the
FLOPs of one update as XLA's cost analysis of the compiled update counts them, and the achieved
FLOP rate as a fraction of numpy's matmul rate in the same run.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import runpy
import statistics
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from peer_update import MATMUL, MATMUL_FLOP, SHAPE  # noqa: E402
from workers import System, measure_interleaved, rates, spread  # noqa: E402

PRESETS = {
    "mlp": "configs/metaworld_mt10.py",
    "film": "configs/film.py:mt10",
    "care": "configs/care.py:mt10",
    "soft_modularization": "configs/soft_modularization.py:mt10",
    "moore": "configs/moore.py:mt10",
    "paco": "configs/paco.py:mt10",
}


def build(name: str, shape: dict, seed: int = 0, gradient: str = "mean", overrides: dict | None = None):
    """The agent of the preset `name` (or of the config argument `name`, `file.py:arg`), with the
    gradient method `gradient` and the dotted config keys `overrides`, a train state and a buffer
    of random transitions, in a process tuned as train.py tunes it (before its first JAX
    computation)."""
    from mtsac_jax.cpu_runtime import tune_cpu_process

    tune_cpu_process()
    import jax
    from peer_plugin import NUM_TASKS, random_buffer

    from mtsac_jax import agents, gradients
    from mtsac_jax.envs import task_names

    file, _, arg = PRESETS.get(name, name).partition(":")
    config = runpy.run_path(str(HERE.parent / file))["get_config"](arg or None)
    config.unlock()
    config.agent.gradient = gradients.gradient_config(gradient)
    for key, value in (overrides or {}).items():
        parent, _, leaf = key.rpartition(".")
        functools.reduce(getattr, parent.split("."), config)[leaf] = value
    names = tuple(task_names(config.env))
    obs_dim = shape["obs_dim"] - (0 if config.env.use_one_hot else NUM_TASKS)  # the shape's has the one-hot
    action_dim = shape["act_dim"]
    agent = agents.build(config.agent, agents.EnvSpec(NUM_TASKS, obs_dim, action_dim, names),
                         shape["batch"] // NUM_TASKS)
    buffer = random_buffer(shape["buffer_fill"] // NUM_TASKS, obs_dim, action_dim, seed)
    return agent, agent.init(jax.random.key(seed)), buffer


def system(name: str, shape: dict, gradient: str = "mean", overrides: dict | None = None) -> dict:
    """A timed system (bench/workers.py) updating the preset (or config argument) `name` with
    `gradient` and the dotted config keys `overrides`, and the FLOPs of its update."""
    from peer_plugin import updating

    agent, state, buffer = build(name, shape, gradient=gradient, overrides=overrides)
    return {**updating(agent, state, buffer), "flop_per_update": flop_per_update(agent, state, buffer)}


def flop_per_update(agent, state, buffer) -> float:
    """The FLOPs of one `agent.update` call, as XLA's cost analysis of the compiled update counts them."""
    analysis = agent.update.lower(state, buffer).compile().cost_analysis()
    return (analysis[0] if isinstance(analysis, list) else analysis)["flops"]


def mlp(shape):
    return system("mlp", shape)


def film(shape):
    return system("film", shape)


def care(shape):
    return system("care", shape)


def soft_modularization(shape):
    return system("soft_modularization", shape)


def moore(shape):
    return system("moore", shape)


def paco(shape):
    return system("paco", shape)


def summarize(results: dict[str, dict], bases: dict[str, str]) -> None:
    """Adds updates/s, GFLOP/s and the fraction of numpy's matmul rate to each system of
    `bases`, and `x_base`: its updates/s over those of its base system (`bases[name]`)."""
    numpy_gflops = statistics.median([rate * MATMUL_FLOP / 1e9 for rate in rates(results["numpy_matmul"])])
    results["numpy_matmul"]["gflops"] = numpy_gflops
    for name in bases:
        result = results.get(name)
        if not result or not result.get("calls"):
            continue
        flop = result["ready"]["details"]["flop_per_update"]
        result["updates_per_s"] = spread(rates(result))
        result["gflops"] = result["updates_per_s"]["median"] * flop / 1e9
        result["of_numpy_matmul"] = result["gflops"] / numpy_gflops
    for name, base in bases.items():
        if "updates_per_s" in results.get(name, {}) and "updates_per_s" in results.get(base, {}):
            results[name]["x_base"] = results[name]["updates_per_s"]["median"] / results[base]["updates_per_s"]["median"]


def table(results: dict[str, dict], rows: dict[str, list[str]], header: list[str], base_label: str) -> str:
    """A markdown row per measured system: its `rows[name]` cells, then the figures."""
    lines = [f"| {' | '.join(header)} | updates/s | {base_label} | GFLOP per update | GFLOP/s | of numpy's matmul rate |",
             "|---" * (len(header) + 5) + "|"]
    for name, cells in rows.items():
        result = results.get(name)
        if result is None:
            continue
        if "updates_per_s" not in result:
            lines.append(f"| {' | '.join(cells)} | failed | | | | |")
            continue
        updates = result["updates_per_s"]
        flop = result["ready"]["details"]["flop_per_update"]
        x_base = f"{result['x_base']:.2f}" if "x_base" in result else "-"  # its base was not measured
        lines.append(f"| {' | '.join(cells)} | {updates['median']:.2f} [{updates['min']:.2f}-{updates['max']:.2f}] | "
                     f"{x_base} | {flop / 1e9:.2f} | {result['gflops']:.1f} | {result['of_numpy_matmul']:.2f} |")
    lines.append(f"| numpy 1280x400 @ 400x400 |{' |' * (len(header) - 1)} - | - | - | "
                 f"{results['numpy_matmul']['gflops']:.1f} | 1.00 |")
    return "\n".join(lines)


def measure(file: pathlib.Path, names: list[str], argv_settings, bases: dict[str, str], rows: dict[str, list[str]],
            header: list[str], base_label: str, described: dict, references: tuple[str, ...] = ()) -> dict:
    """Times the systems `names` (functions of `file`) with numpy's matmul in interleaved rounds,
    prints the table, writes the JSON and exits non-zero if one failed; returns the results.
    `references` are more functions of `file`, timed in the same rounds but not tabled: each
    returns `flop_per_call` with its `train`, and gets its GFLOP/s and fraction of numpy's rate."""
    systems = [System("numpy_matmul", f"{HERE / 'peer_update.py'}:numpy_matmul")]
    systems += [System(name, f"{file}:{name}") for name in [*references, *names]]
    results = measure_interleaved(systems, SHAPE, argv_settings.seconds, argv_settings.repeats,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
    summarize(results, {name: bases[name] for name in names})
    print(table(results, {name: rows[name] for name in names}, header, base_label))
    for name in references:
        if "calls" in results[name]:
            flop = results[name]["ready"]["details"]["flop_per_call"]
            results[name]["gflops"] = statistics.median(rate * flop / 1e9 for rate in rates(results[name]))
            results[name]["of_numpy_matmul"] = results[name]["gflops"] / results["numpy_matmul"]["gflops"]
            print(f"{name}: {results[name]['gflops']:.1f} GFLOP/s, {results[name]['of_numpy_matmul']:.2f} of numpy's "
                  f"rate at the reference shape")
    if argv_settings.json:
        argv_settings.json.write_text(json.dumps({"shape": SHAPE, **described, "matmul": MATMUL, "settings": {
            "seconds": argv_settings.seconds, "repeats": argv_settings.repeats}, "systems": results}, indent=1))
    failed = [name for name, result in results.items() if "error" in result]
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (the errors are above and in the JSON)")
    return results


def arguments(doc: str, choices, what: str, argv: list[str] | None):
    """The common command line: which systems, call length, rounds, JSON file."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(f"--{what}", default=",".join(choices), help="comma list of: " + ", ".join(choices))
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one timed call")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of timed calls")
    parser.add_argument("--json", type=pathlib.Path, help="write the results here")
    args = parser.parse_args(argv)
    names = [name for name in getattr(args, what).split(",") if name]
    unknown = sorted(set(names) - set(choices))
    if unknown:
        parser.error(f"unknown {what} {unknown}; choose from {list(choices)}")
    return args, names


def main(argv: list[str] | None = None) -> None:
    args, names = arguments(__doc__, PRESETS, "networks", argv)
    measure(HERE / "architectures.py", names, args, bases={name: "mlp" for name in PRESETS},
            rows={name: [name] for name in PRESETS}, header=["network (MT10 preset)"], base_label="x MT-SAC",
            described={"presets": PRESETS})


if __name__ == "__main__":
    main()
