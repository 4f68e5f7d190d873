"""Update cost of each gradient method, and of Distral, at the MT10 reference shape, against MT-SAC, in one run.

    python bench/gradients.py --json bench/results/gradients.json

MT-SAC's MT10 setting (`configs/metaworld_mt10.py`: 3x400 actor and twin critics, batch 1280,
128 per task) with each gradient method (`mean` is MT-SAC), PCGrad on CARE's preset, and the
`distral` agent at the same sizes (a 3x400 network per task and the distilled policy). Every
system runs one full update per call on a replay buffer of random transitions, in its own
worker process, timed in interleaved rounds with numpy's float32 1280x400 @ 400x400 matmul
(bench/workers.py). Reported per system: updates/s (median [min-max] of the rounds), relative
to MT-SAC (to mean on the same network), the FLOPs of one update as XLA's cost analysis counts
them and the achieved rate as a fraction of numpy's matmul rate in the same run.
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from architectures import arguments, measure, system  # noqa: E402

SYSTEMS = {  # name: (network preset or config argument, gradient method)
    "mean": ("mlp", "mean"),
    "pcgrad": ("mlp", "pcgrad"),
    "gradnorm": ("mlp", "gradnorm"),
    "care_mean": ("care", "mean"),
    "care_pcgrad": ("care", "pcgrad"),
    "distral": ("configs/compose.py:agent=distral", "mean"),
}
BASES = {"mean": "mean", "pcgrad": "mean", "gradnorm": "mean", "care_mean": "care_mean", "care_pcgrad": "care_mean",
         "distral": "mean"}
LABELS = {"distral": "agent=distral (mlp per task)"}


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


def distral(shape):
    return _measured("distral", shape)


def main(argv: list[str] | None = None) -> None:
    args, names = arguments(__doc__, SYSTEMS, "systems", argv)
    measure(HERE / "gradients.py", names, args,
            bases=BASES, rows={name: [LABELS.get(name, network), gradient] for name, (network, gradient) in SYSTEMS.items()},
            header=["network", "gradient"], base_label="x mean",
            described={"systems_measured": SYSTEMS})


if __name__ == "__main__":
    main()
