"""Per-op profile of one update at the reference shape: where the time goes, dot by dot.

    python bench/profile_update.py [--updates 10] [--json bench/results/profile_update.json]
    python bench/profile_update.py --network paco    # an architecture's MT10 preset (bench/architectures.py)

Traces `--updates` calls of the agent `train.py` uses (bench/peer_plugin.py's shape) with
`jax.profiler`, reads the trace back with `jax.profiler.ProfileData`, and joins each traced op
with the compiled HLO: for every dot (alone, or inside a library fusion such as YNNPACK's) its
shapes, FLOPs, time per update and achieved GFLOP/s, next to numpy's 1280x400x400 rate measured
in the same process; then time per op kind (library dot fusions, XLA dots, elementwise
fusions, copies, gathers). Times are the traced ops' durations summed over the executor's
threads: work an op hands to a thread pool may be attributed to the pool's own events.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import re
import sys
import tempfile

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from peer_plugin import build  # noqa: E402
from peer_update import SHAPE  # noqa: E402
from xla_matmul import gflops  # noqa: E402

HEADER = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) \((.*)\) -> ")
INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = f32\[([\d,]*)\]")
DOT = re.compile(r"= f32\[([\d,]*)\][^ ]* dot\(%([\w.\-]+), %([\w.\-]+)\).*lhs_contracting_dims=\{([\d,]*)\}")
NOT_OPS = ("ThunkExecutor", "Await", "$")


def _dims(text: str) -> list[int]:
    return [int(x) for x in text.split(",")] if text else []


def dots_by_op(hlo: str) -> dict[str, tuple[float, list[str]]]:
    """op name -> (dot FLOPs, dot shapes) for every top-level dot and every fusion holding dots."""
    shapes, bodies, body = {}, {}, None
    for line in hlo.splitlines():
        header = HEADER.match(line) if line.rstrip().endswith("{") and not line.startswith(" ") else None
        if header:
            body = bodies.setdefault(header.group(1), [])
            shapes.update(re.findall(r"([\w.\-]+): f32\[([\d,]*)\]", header.group(2)))
            continue
        instruction = INSTRUCTION.match(line)
        if instruction:
            shapes[instruction.group(1)] = instruction.group(2)
        if body is not None:
            body.append(line)

    def flops(lines):
        total, described = 0.0, []
        for line in lines:
            dot = DOT.search(line)
            if dot:
                out, lhs = _dims(dot.group(1)), _dims(shapes[dot.group(2)])
                contracted = np.prod([lhs[d] for d in _dims(dot.group(4))])
                total += 2.0 * np.prod(out) * contracted
                described.append(f"[{shapes[dot.group(2)]}] x [{shapes[dot.group(3)]}] -> [{dot.group(1)}]")
        return total, described

    ops = {}
    for line in hlo.splitlines():
        instruction = INSTRUCTION.match(line)
        if not instruction or not line.startswith("  "):
            continue
        called = re.search(r"calls=%([\w.\-]+)", line)
        total, described = flops(bodies.get(called.group(1), [])) if called and "fusion(" in line else flops([line])
        if total:
            ops[instruction.group(1)] = (total, described)
    return ops


def op_times(updates: int, agent, state, buffer) -> dict[str, float]:
    """Traced time per op name, in seconds per update."""
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(updates):
                state, _ = agent.update(state, buffer)
            jax.block_until_ready(state)
        trace = next(pathlib.Path(trace_dir).rglob("*.xplane.pb"))
        profile = jax.profiler.ProfileData.from_file(str(trace))
        times = collections.Counter()
        for plane in profile.planes:
            for line in plane.lines:
                if line.name == "python":
                    continue
                for event in line.events:
                    if not event.name.startswith(NOT_OPS) and "ThunkExecutor" not in event.name:
                        times[event.name] += event.duration_ns / 1e9 / updates
    return dict(times)


def kind(op: str) -> str:
    if "_fusion" in op and op.split("_fusion")[0] in ("ynn", "xnn", "onednn"):
        return "library dot fusions"
    base = op.split(".")[0]
    return {"dot": "XLA dots", "copy": "copies"}.get(base, "gathers" if "gather" in base else "elementwise and other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--network", help="profile this network's MT10 preset instead (bench/architectures.py)")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    if args.network:
        from architectures import build as build_preset

        agent, state, buffer = build_preset(args.network, SHAPE)
    else:
        agent, state, buffer = build(SHAPE)
    hlo = agent.update.lower(state, buffer).compile().as_text()
    for _ in range(3):
        state, _ = agent.update(state, buffer)
    jax.block_until_ready(state)
    times = op_times(args.updates, agent, state, buffer)
    rng = np.random.default_rng(0)
    a, b = rng.random((1280, 400), np.float32), rng.random((400, 400), np.float32)
    numpy_gflops = gflops(lambda: a @ b, 2.0 * 1280 * 400 * 400, 2.0)

    dots = dots_by_op(hlo)
    rows = sorted(((op, *dots[op], seconds) for op, seconds in times.items() if op in dots), key=lambda r: -r[3])
    print(f"numpy 1280x400x400: {numpy_gflops:.0f} GFLOP/s; traced op time {sum(times.values()) * 1e3:.1f} ms "
          f"per update, {sum(r[3] for r in rows) * 1e3:.1f} ms of it in ops with dots "
          f"({sum(r[1] for r in rows) / 1e9:.2f} GFLOP)")
    print("op | dot shapes | GFLOP | ms/update | GFLOP/s | of numpy")
    for op, flop, described, seconds in rows:
        rate = flop / seconds / 1e9
        print(f"{op} | {'; '.join(described)} | {flop / 1e9:.3f} | {seconds * 1e3:.2f} | {rate:.0f} | {rate / numpy_gflops:.2f}")
    by_kind = collections.Counter()
    for op, seconds in times.items():
        by_kind[kind(op)] += seconds
    total = sum(by_kind.values())
    print("op kind | ms/update | share")
    for name, seconds in by_kind.most_common():
        print(f"{name} | {seconds * 1e3:.1f} | {seconds / total:.1%}")
    if args.json:
        args.json.write_text(json.dumps({
            "numpy_gflops": numpy_gflops,
            "ops": [{"op": op, "dots": d, "gflop": f / 1e9, "ms": s * 1e3} for op, f, d, s in rows],
            "by_kind_ms": {name: s * 1e3 for name, s in by_kind.items()},
        }, indent=2))


if __name__ == "__main__":
    main()
