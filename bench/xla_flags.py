"""XLA CPU flags against the update at the reference shape: which backend runs the matmuls best.

    python bench/xla_flags.py --json bench/results/xla_flags.json

Each variant (a set of `XLA_FLAGS`) runs in its own process, which measures numpy's float32
1280x400x400 matmul rate, XLA's jitted matmul of the same shape, and the updates/s of the
agent `train.py` uses at the peer benchmark's shape (bench/peer_plugin.py). The figure per
variant is the update's achieved GFLOP/s as a fraction of numpy's rate measured in the same
process; rounds of all variants are interleaved and medians reported.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
YNN = "--xla_cpu_experimental_ynn_fusion_type="
VARIANTS = {  # jaxlib 0.10 hands each dot to YNNPACK by default ("individual_dot")
    "jaxlib's default: YNNPACK dots": f"{YNN}+individual_dot",  # named, so train.py's choice stays out
    "YNNPACK dots and elementwise": f"{YNN}+eltwise",
    "YNNPACK dot fusions only (train.py's choice)": f"{YNN}-individual_dot",
    "XLA's own dots": f"{YNN}-individual_dot,-dot,-eltwise,-reduce",
}


def child(seconds: float) -> dict:
    """Measured inside one process under the XLA_FLAGS it was started with."""
    import jax
    import numpy as np

    sys.path.insert(0, str(HERE))
    from peer_plugin import build
    from peer_update import MATMUL_FLOP, SHAPE, flop_per_update
    from xla_matmul import gflops

    update_gflop = flop_per_update()["total"] / 1e9

    agent, state, buffer = build(SHAPE)
    rng = np.random.default_rng(0)
    a, b = rng.random((1280, 400), np.float32), rng.random((400, 400), np.float32)
    x, y = jax.numpy.asarray(a), jax.numpy.asarray(b)
    matmul = jax.jit(lambda p, q: p @ q)
    holder = [state]

    def update():
        holder[0], _ = agent.update(holder[0], buffer)
        return holder[0]

    numpy_gflops = gflops(lambda: a @ b, MATMUL_FLOP, seconds)
    xla_gflops = gflops(lambda: matmul(x, y), MATMUL_FLOP, seconds)
    update_gflops = gflops(update, update_gflop * 1e9, 3 * seconds)
    return {"numpy_gflops": numpy_gflops, "xla_matmul_gflops": xla_gflops,
            "updates_per_s": update_gflops / update_gflop, "of_numpy": update_gflops / numpy_gflops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list of: " + ", ".join(VARIANTS))
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.seconds)))
        return
    names = args.variants.split(",")
    runs = {name: [] for name in names}
    for _ in range(args.repeats):
        for name in names:
            env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {VARIANTS[name]}".strip()}
            result = subprocess.run([sys.executable, __file__, "--child", f"--seconds={args.seconds}"],
                                    env=env, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"{name}: failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            runs[name].append(json.loads(result.stdout.strip().splitlines()[-1]))
    table = {}
    print("variant | XLA_FLAGS | updates/s | XLA matmul / numpy | update GFLOP/s / numpy")
    for name in names:
        if not runs[name]:
            continue
        median = {key: statistics.median(r[key] for r in runs[name]) for key in runs[name][0]}
        median["xla_matmul_of_numpy"] = statistics.median(r["xla_matmul_gflops"] / r["numpy_gflops"] for r in runs[name])
        table[name] = {"flags": VARIANTS[name], "median": median, "runs": runs[name]}
        print(f"{name} | {VARIANTS[name] or '-'} | {median['updates_per_s']:.2f} | "
              f"{median['xla_matmul_of_numpy']:.2f} | {median['of_numpy']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
