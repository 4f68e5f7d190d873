"""What the compiled update is made of: op counts, transposes and copies of its optimised HLO.

    python bench/hlo_ops.py [--json bench/results/hlo_ops.json]
    python bench/hlo_ops.py --root /path/to/another/checkout      # the same, for another version
    python bench/hlo_ops.py --network film                        # an architecture's MT10 preset

Compiles the update `train.py` runs at the peer benchmark's shape (bench/peer_plugin.py) and
counts its dots, fusions, copies, gathers and transposes, with the shapes of every copy and
transpose. Two versions of the code compile to the same update when these agree; a transpose
of an activation (a [.., 1280, ..] array) is what a layout change would bring back.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import re
import sys

OPS = ("dot", "fusion", "copy", "gather", "transpose")


def hlo_ops(hlo: str) -> dict:
    def shapes(op):
        return dict(sorted(collections.Counter(re.findall(rf"= (\w+\[[\d,]*\])\S* {op}\(", hlo)).items()))

    counts = collections.Counter(re.findall(rf"= \w+\[[\d,]*\]\S* ({'|'.join(OPS)})\(", hlo))
    return {"counts": {op: counts.get(op, 0) for op in OPS}, "copies": shapes("copy"), "transposes": shapes("transpose")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parents[1],
                        help="checkout whose bench/peer_plugin.py and mtsac_jax to compile")
    parser.add_argument("--network", help="compile this network's MT10 preset instead (bench/architectures.py)")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    sys.path[:0] = [str(args.root), str(args.root / "bench")]
    from peer_plugin import build  # noqa: E402  (the chosen checkout's)
    from peer_update import SHAPE  # noqa: E402

    if args.network:
        from architectures import build as build_preset  # noqa: E402

        agent, state, buffer = build_preset(args.network, SHAPE)
    else:
        agent, state, buffer = build(SHAPE)
    result = {"root": str(args.root), **hlo_ops(agent.update.lower(state, buffer).compile().as_text())}
    print(json.dumps(result["counts"]), "transposes:", result["transposes"] or "none")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
