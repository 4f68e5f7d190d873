"""Update throughput against critic width (MT10, batch 1280, 3-layer critics, 3x400 actor).

    python bench/width_scaling.py --json bench/results/width_scaling.json --png docs/width_scaling.png

Each width runs the agent `train.py` uses (`state_sac`'s `update`, one update per call) on a
device-resident buffer of random transitions; repeats are interleaved across widths and
the median updates/s is reported, with the ratio to the narrowest width.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from peer_plugin import build  # noqa: E402
from peer_update import SHAPE  # noqa: E402


def updates_per_second(agent, state, buffer, seconds: float):
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        state, _ = agent.update(state, buffer)
        jax.block_until_ready(state)
        done += 1
    return done / (time.perf_counter() - start), state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="256,512,1024,2048")
    parser.add_argument("--seconds", type=float, default=4.0, help="per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--png", type=pathlib.Path)
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    systems = {}
    for width in widths:
        agent, state, buffer = build(SHAPE, critic_hidden=width)
        state, _ = agent.update(state, buffer)  # compile
        systems[width] = [agent, jax.block_until_ready(state), buffer]
    rates = {width: [] for width in widths}
    for _ in range(args.repeats):
        for width, system in systems.items():
            rate, system[1] = updates_per_second(*system, args.seconds)
            rates[width].append(rate)
    medians = {width: statistics.median(r) for width, r in rates.items()}
    print("critic width | updates/s | vs width %d" % widths[0])
    for width in widths:
        print(f"{width:12d} | {medians[width]:9.2f} | {medians[width] / medians[widths[0]]:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"shape": SHAPE, "median_updates_per_s": medians, "runs": rates}, indent=2))
    if args.png:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(5, 3.5))
        axes = figure.add_subplot()
        axes.plot(widths, [medians[w] for w in widths], marker="o")
        axes.set(xscale="log", yscale="log", xlabel="critic width (3 hidden layers)", ylabel="updates/s",
                 title="MT10, batch 1280: update throughput")
        axes.set_xticks(widths, [str(w) for w in widths])
        axes.grid(True, which="both", alpha=0.3)
        figure.tight_layout()
        FigureCanvasAgg(figure).print_png(str(args.png))


if __name__ == "__main__":
    main()
