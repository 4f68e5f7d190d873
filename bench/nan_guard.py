"""Cost of the non-finite guard (`mtsac_jax.numerics.guarded`) on MT-SAC's update, in one run.

    python bench/nan_guard.py --json bench/results/nan_guard.json

MT-SAC's MT10 setting (`configs/metaworld_mt10.py`: 3x400 actor and twin critics, batch 1280)
updated with and without the guard, each in its own worker process, timed in interleaved rounds
with numpy's float32 1280x400 @ 400x400 matmul (bench/workers.py), as bench/architectures.py
times the architectures. The guarded update also returns its fault report, as train.py uses it.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from architectures import arguments, build, flop_per_update, measure  # noqa: E402

SYSTEMS = {"plain": False, "guarded": True}


def _system(shape: dict, guard: bool) -> dict:
    import jax
    from peer_plugin import updating

    from mtsac_jax.numerics import guarded

    agent, state, buffer = build("mlp", shape)
    if guard:
        guarded_update = guarded(agent.update)

        def update(state, buffer):
            state, metrics, fault = guarded_update(state, buffer)
            return state, (metrics, fault)

        agent = dataclasses.replace(agent, update=jax.jit(update, donate_argnums=0))
    return {**updating(agent, state, buffer), "flop_per_update": flop_per_update(agent, state, buffer)}


def plain(shape):
    return _system(shape, guard=False)


def guarded(shape):
    return _system(shape, guard=True)


def main(argv: list[str] | None = None) -> None:
    args, names = arguments(__doc__, SYSTEMS, "systems", argv)
    measure(HERE / "nan_guard.py", names, args, bases={name: "plain" for name in SYSTEMS},
            rows={name: [name] for name in SYSTEMS}, header=["MT-SAC update"], base_label="x plain",
            described={"systems_measured": list(SYSTEMS)})


if __name__ == "__main__":
    main()
