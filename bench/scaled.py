"""The scaled-critic recipe's update cost per critic width, against numpy's matmul rate.

    python bench/scaled.py --json bench/results/scaled.json
    python bench/scaled.py --widths 256,512 --repeats 3

The `configs/scaled.py:mt10-cpu` preset (BroNet critic of 2 residual blocks, BroNet actor of
width 256, categorical loss, reward normalisation, task embeddings, AdamW) at the MT10 shape
(batch 1280), its critic at each width of `--widths`, and MT-SAC's MT10 reference update
(`configs/metaworld_mt10.py`, 3x400) for scale. Each system runs one update per call in its own
worker process, timed in interleaved rounds with numpy's float32 1280x400 @ 400x400 matmul
(bench/workers.py). Reported per width: updates/s (median [min-max]), the update's FLOPs (XLA's
cost analysis), the fraction of numpy's matmul rate, and the hours that 200k updates (MT10 at
100k steps per task, 2 updates per step) take at that rate: the figure `mt10-cpu`'s width is
chosen by.
"""

from __future__ import annotations

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import architectures  # noqa: E402

WIDTHS = (256, 384, 512, 768, 1024, 2048, 4096)
UPDATES = 200_000  # MT10 at 100k steps per task, 2 updates per env step


def width_system(width: int):
    def system(shape):
        from peer_plugin import updating

        agent, state, buffer = architectures.build("configs/scaled.py:mt10-cpu", shape,
                                                   overrides={"agent.critic.hidden_dim": width})
        return {**updating(agent, state, buffer), "flop_per_update": architectures.flop_per_update(agent, state, buffer)}

    return system


for _width in WIDTHS:
    globals()[f"width_{_width}"] = width_system(_width)


def main(argv: list[str] | None = None) -> None:
    choices = {"mt_sac": None, **{f"width_{width}": width for width in WIDTHS}}
    args, names = architectures.arguments(__doc__, choices, "systems", argv)
    rows = {"mt_sac": ["MT-SAC 3x400 (reference)"], **{f"width_{w}": [f"bronet critic {w}"] for w in WIDTHS}}
    results = architectures.measure(HERE / "scaled.py", names, args, bases={name: "mt_sac" for name in choices},
                                    rows=rows, header=["system"], base_label="x MT-SAC",
                                    described={"widths": list(WIDTHS)})
    for name in names:
        if "updates_per_s" in results[name]:
            hours = UPDATES / results[name]["updates_per_s"]["median"] / 3600
            results[name]["hours_for_200k_updates"] = hours
            print(f"{name}: {hours:.1f} h for {UPDATES:,} updates")
    if args.json:
        saved = json.loads(args.json.read_text())
        saved["systems"] = results
        args.json.write_text(json.dumps(saved, indent=1))


def mt_sac(shape):
    return architectures.system("mlp", shape)


if __name__ == "__main__":
    main()
