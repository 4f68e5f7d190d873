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

Beside them, other formulations of the same computations (`tests/test_bench_ceiling.py` checks
they compute the same):
- pcgrad `concatenated`: the shared task gradients concatenated into one (T, P) array, its Gram
  matrix and the combination taken on it; pcgrad `stepwise`: alg. 1 projecting the (T, P)
  gradients step by step, as the paper writes it;
- distral `task_loop`: each per-task layer as T plain 128-row matmuls instead of one product
  batched over the task axis; distral `task_scan`: each per-task layer as one 128-row matmul
  applied T times by `jax.lax.map` (a loop in the compiled program, not T unrolled products;
  its FLOPs are counted on distral's formulation, as XLA's cost analysis counts a loop's body once).
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from architectures import arguments, build, flop_per_update, measure, system  # noqa: E402

SYSTEMS = {  # name: (network preset or config argument, gradient method)
    "mean": ("mlp", "mean"),
    "pcgrad": ("mlp", "pcgrad"),
    "pcgrad_concatenated": ("mlp", "pcgrad_concatenated"),
    "pcgrad_stepwise": ("mlp", "pcgrad_stepwise"),
    "gradnorm": ("mlp", "gradnorm"),
    "care_mean": ("care", "mean"),
    "care_pcgrad": ("care", "pcgrad"),
    "distral": ("configs/compose.py:agent=distral", "mean"),
    "distral_task_loop": ("configs/compose.py:agent=distral", "mean"),
    "distral_task_scan": ("configs/compose.py:agent=distral", "mean"),
}
OVERRIDES = {"distral_task_loop": {"agent.network.name": "mlp_task_loop"},
             "distral_task_scan": {"agent.network.name": "mlp_task_scan"}}
BASES = {"mean": "mean", "pcgrad": "mean", "pcgrad_concatenated": "pcgrad", "pcgrad_stepwise": "pcgrad",
         "gradnorm": "mean", "care_mean": "care_mean", "care_pcgrad": "care_mean", "distral": "mean",
         "distral_task_loop": "distral", "distral_task_scan": "distral"}
FLOPS_AS = {"distral_task_scan": "distral"}  # XLA's cost analysis counts a loop's body once: the FLOPs of the
# formulation whose arithmetic the loop repeats (tests/test_bench_ceiling.py: the same function)
LABELS = {"distral": "agent=distral (mlp per task)", "distral_task_loop": "agent=distral, per-task layers as a task loop",
          "distral_task_scan": "agent=distral, per-task layers by lax.map"}


def register_alternatives() -> None:
    """Registers the alternative formulations: gradient methods `pcgrad_concatenated` and
    `pcgrad_stepwise`, networks `mlp_task_loop` and `mlp_task_scan`."""
    import dataclasses
    import functools

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mtsac_jax.gradients import GradientFunctions, pcgrad
    from mtsac_jax.networks import StackedDense, broadcast_concat, mlp, stacked_parameters
    from mtsac_jax.registry import GRADIENTS, NETWORKS

    def stepwise(flat, orders):
        """Alg. 1 on the (T, P) gradients themselves, one position of the orders at a time."""
        tasks = jnp.arange(flat.shape[0])

        def visit(projected, position):
            other = orders[:, position]
            originals = flat[other]
            dot = jnp.sum(projected * originals, axis=-1)
            conflict = (dot < 0) & (other != tasks)
            norm_sq = jnp.where(conflict, jnp.sum(originals * originals, axis=-1), 1.0)
            return projected - jnp.where(conflict, dot / norm_sq, 0.0)[:, None] * originals, None

        return jax.lax.scan(visit, flat, jnp.arange(flat.shape[0]))[0]

    def combine(shared, orders, scale, kind):
        """pcgrad.combine_shared on the task gradients concatenated into one (T, P) array."""
        flat = jnp.concatenate(shared, axis=1)
        if kind == "concatenated":
            combined = (pcgrad.projection_coefficients(flat @ flat.T, orders).sum(axis=0) * scale) @ flat
        else:
            combined = stepwise(flat, orders).sum(axis=0) * scale
        return jnp.split(combined, np.cumsum([leaf.shape[1] for leaf in shared])[:-1])

    for kind in ("concatenated", "stepwise"):
        def make(config, num_tasks, kind=kind):
            return GradientFunctions(init=pcgrad.init, value_and_grad=functools.partial(
                pcgrad.value_and_grad, reduction=config.reduction, combine=functools.partial(combine, kind=kind)))

        if f"pcgrad_{kind}" not in GRADIENTS:
            GRADIENTS.register(f"pcgrad_{kind}", dataclasses.replace(pcgrad.METHOD, make=make))

    class TaskLoopMLP(mlp.MLP):
        """mlp.MLP whose per-task layers are T plain matmuls (`StackedDense` over the task axis)."""

        @nn.compact
        def __call__(self, x, context=None):
            if context is not None:
                x = broadcast_concat(x, context)
            num_tasks = x.shape[0]
            hidden = list(x)
            for index in range(self.num_layers):
                hidden = [nn.relu(h) for h in StackedDense(self.hidden_dim, num_tasks, name=f"hidden_{index}")(hidden)]
            return jnp.stack(StackedDense(self.output_dim, num_tasks, name="head")(hidden))

    class TaskScanDense(nn.Module):
        """A per-task dense layer (`PerTaskDense`'s parameters) applied task by task by `jax.lax.map`."""

        features: int

        @nn.compact
        def __call__(self, x):
            kernel, bias = stacked_parameters(self, x.shape[0], x.shape[-1], self.features)
            return jax.lax.map(lambda args: args[0] @ args[1] + args[2], (x, kernel, bias))

    class TaskScanMLP(mlp.MLP):
        """mlp.MLP whose per-task layers are `TaskScanDense`."""

        @nn.compact
        def __call__(self, x, context=None):
            if context is not None:
                x = broadcast_concat(x, context)
            for index in range(self.num_layers):
                x = nn.relu(TaskScanDense(self.hidden_dim, name=f"hidden_{index}")(x))
            return TaskScanDense(self.output_dim, name="head")(x)

    for name, module_class in (("mlp_task_loop", TaskLoopMLP), ("mlp_task_scan", TaskScanMLP)):
        if name not in NETWORKS:
            NETWORKS.register(name, dataclasses.replace(mlp.NETWORK, make=lambda config, module_class=module_class,
                              **sizes: module_class(sizes["hidden_dim"], sizes["num_layers"], sizes["output_dim"],
                                                    multi_head=True, disjoint=True)))

def _measured(name: str, shape: dict) -> dict:
    network, gradient = SYSTEMS[name]
    register_alternatives()
    measured = system(network, shape, gradient, OVERRIDES.get(name))
    if name in FLOPS_AS:
        network, gradient = SYSTEMS[FLOPS_AS[name]]
        measured["flop_per_update"] = flop_per_update(*build(network, shape, gradient=gradient,
                                                             overrides=OVERRIDES.get(FLOPS_AS[name])))
    return measured


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


def pcgrad_concatenated(shape):
    return _measured("pcgrad_concatenated", shape)


def pcgrad_stepwise(shape):
    return _measured("pcgrad_stepwise", shape)


def distral_task_loop(shape):
    return _measured("distral_task_loop", shape)


def distral_task_scan(shape):
    return _measured("distral_task_scan", shape)


def main(argv: list[str] | None = None) -> None:
    args, names = arguments(__doc__, SYSTEMS, "systems", argv)
    measure(HERE / "gradients.py", names, args,
            bases=BASES, rows={name: [LABELS.get(name, network), gradient] for name, (network, gradient) in SYSTEMS.items()},
            header=["network", "gradient"], base_label="x mean",
            described={"systems_measured": SYSTEMS})


if __name__ == "__main__":
    main()
