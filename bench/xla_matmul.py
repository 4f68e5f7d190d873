"""XLA's own float32 GEMM rate against numpy's (OpenBLAS) on the shapes of the SAC update.

    python bench/xla_matmul.py --json bench/results/xla_matmul.json

The update at the reference shape is made of such matmuls (forward, input-gradient and
weight-gradient products of 1280x400x400) plus elementwise work, so XLA's rate on them
bounds the update's achievable fraction of numpy's matmul rate. Measured under the process
settings `train.py` applies (`mtsac_jax.cpu_runtime`); medians of repeats, measured in one run.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from mtsac_jax.cpu_runtime import tune_cpu_process

CASES = {  # name: (lhs shape, rhs shape, function)
    "forward 1280x400 @ 400x400": ((1280, 400), (400, 400), lambda a, b: a @ b),
    "weight grad 400x1280 @ 1280x400": ((1280, 400), (1280, 400), lambda a, g: a.T @ g),
    "twin critics 2x(1280x400 @ 400x400)": ((2, 1280, 400), (2, 400, 400), lambda a, b: jnp.einsum("emk,ekn->emn", a, b)),
    "wide 1280x400 @ 400x800": ((1280, 400), (400, 800), lambda a, b: a @ b),
}


def gflops(call, flop: float, seconds: float) -> float:
    call()
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        result = call()
        done += 1
    jax.block_until_ready(result)
    return flop * done / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    tune_cpu_process()
    rng = np.random.default_rng(0)
    a, b = rng.random((1280, 400), np.float32), rng.random((400, 400), np.float32)
    runs = {"numpy 1280x400 @ 400x400": []} | {name: [] for name in CASES}
    compiled = {}
    for name, (lhs, rhs, fn) in CASES.items():
        x, y = jnp.asarray(rng.random(lhs, np.float32)), jnp.asarray(rng.random(rhs, np.float32))
        out = jax.eval_shape(fn, x, y).shape
        contracted = lhs[-1] if name.startswith(("forward", "twin", "wide")) else lhs[0]
        flop = 2.0 * np.prod(out) * contracted
        compiled[name] = (jax.jit(fn), x, y, flop)
    for _ in range(args.repeats):
        runs["numpy 1280x400 @ 400x400"].append(gflops(lambda: a @ b, 2.0 * 1280 * 400 * 400, args.seconds))
        for name, (fn, x, y, flop) in compiled.items():
            runs[name].append(gflops(lambda: fn(x, y), flop, args.seconds))
    numpy_rate = statistics.median(runs["numpy 1280x400 @ 400x400"])
    summary = {name: {"gflops": statistics.median(r), "vs_numpy": statistics.median(r) / numpy_rate}
               for name, r in runs.items()}
    for name, figures in summary.items():
        print(f"{name:40s} {figures['gflops']:7.1f} GFLOP/s  {figures['vs_numpy']:.2f}x numpy")
    if args.json:
        args.json.write_text(json.dumps({"median": summary, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
