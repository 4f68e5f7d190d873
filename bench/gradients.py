"""Update cost of each gradient method at the MT10 reference shape, against MT-SAC, in one run.

    python bench/gradients.py --json bench/results/gradients.json

MT-SAC's MT10 setting (`configs/metaworld_mt10.py`: 3x400 actor and twin critics, batch 1280,
128 per task) with each gradient method (`mean` is MT-SAC), and PCGrad on CARE's preset. Every
system runs one full SAC update per call on a replay buffer of random transitions, in its own
worker process, timed in interleaved rounds with numpy's float32 1280x400 @ 400x400 matmul
(bench/workers.py). Reported per system: updates/s (median [min-max] of the rounds), relative
to MT-SAC (to mean on the same network), the FLOPs of one update as XLA's cost analysis counts
them and the achieved rate as a fraction of numpy's matmul rate in the same run.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from architectures import system  # noqa: E402
from peer_update import MATMUL, MATMUL_FLOP, SHAPE  # noqa: E402
from workers import System, measure_interleaved, rates, spread  # noqa: E402

SYSTEMS = {  # name: (network preset, gradient method)
    "mean": ("mlp", "mean"),
    "pcgrad": ("mlp", "pcgrad"),
    "gradnorm": ("mlp", "gradnorm"),
    "care_mean": ("care", "mean"),
    "care_pcgrad": ("care", "pcgrad"),
}


def _measured(name: str, shape: dict) -> dict:
    network, gradient = SYSTEMS[name]
    return system(network, shape, gradient)


def mean(shape):
    return _measured("mean", shape)


def pcgrad(shape):
    return _measured("pcgrad", shape)


def gradnorm(shape):
    return _measured("gradnorm", shape)


def care_mean(shape):
    return _measured("care_mean", shape)


def care_pcgrad(shape):
    return _measured("care_pcgrad", shape)


def summarize(results: dict[str, dict]) -> None:
    """Adds updates/s, x the same network's `mean`, GFLOP/s and the fraction of numpy's rate."""
    numpy_gflops = statistics.median([rate * MATMUL_FLOP / 1e9 for rate in rates(results["numpy_matmul"])])
    results["numpy_matmul"]["gflops"] = numpy_gflops
    for name in SYSTEMS:
        result = results.get(name)
        if not result or not result.get("calls"):
            continue
        flop = result["ready"]["details"]["flop_per_update"]
        result["updates_per_s"] = spread(rates(result))
        result["gflops"] = result["updates_per_s"]["median"] * flop / 1e9
        result["of_numpy_matmul"] = result["gflops"] / numpy_gflops
    for name, (network, _) in SYSTEMS.items():
        base = "mean" if network == "mlp" else f"{network}_mean"
        if "updates_per_s" in results.get(name, {}) and "updates_per_s" in results.get(base, {}):
            results[name]["x_mean"] = results[name]["updates_per_s"]["median"] / results[base]["updates_per_s"]["median"]


def table(results: dict[str, dict]) -> str:
    lines = ["| network | gradient | updates/s | x mean | GFLOP per update | GFLOP/s | of numpy's matmul rate |",
             "|---|---|---|---|---|---|---|"]
    for name, (network, gradient) in SYSTEMS.items():
        result = results.get(name)
        if result is None:
            continue
        if "updates_per_s" not in result:
            lines.append(f"| {network} | {gradient} | failed | | | | |")
            continue
        updates = result["updates_per_s"]
        flop = result["ready"]["details"]["flop_per_update"]
        x_mean = f"{result['x_mean']:.2f}" if "x_mean" in result else "-"
        lines.append(f"| {network} | {gradient} | {updates['median']:.2f} [{updates['min']:.2f}-{updates['max']:.2f}] | "
                     f"{x_mean} | {flop / 1e9:.2f} | {result['gflops']:.1f} | {result['of_numpy_matmul']:.2f} |")
    lines.append(f"| numpy 1280x400 @ 400x400 | | - | - | - | {results['numpy_matmul']['gflops']:.1f} | 1.00 |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma list of: " + ", ".join(SYSTEMS))
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one timed call")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of timed calls")
    parser.add_argument("--json", type=pathlib.Path, help="write the results here")
    args = parser.parse_args(argv)
    names = [name for name in args.systems.split(",") if name]
    unknown = sorted(set(names) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {list(SYSTEMS)}")
    systems = [System("numpy_matmul", f"{HERE / 'peer_update.py'}:numpy_matmul")]
    systems += [System(name, f"{HERE / 'gradients.py'}:{name}") for name in names]
    results = measure_interleaved(systems, SHAPE, args.seconds, args.repeats,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
    summarize(results)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"shape": SHAPE, "systems_measured": SYSTEMS, "matmul": MATMUL,
                                         "settings": {"seconds": args.seconds, "repeats": args.repeats},
                                         "systems": results}, indent=1))
    failed = [name for name, result in results.items() if "error" in result]
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (the errors are above and in the JSON)")


if __name__ == "__main__":
    main()
