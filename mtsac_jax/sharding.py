"""Where the train state and the replay buffer live when the run sees several devices.

One mesh axis, `devices`, over every device of the run (`jax.sharding.Mesh`). What is split
over it, in order of preference:
- `seed`: with `num_seeds` a multiple of the device count, the seed axis of the state and the
  buffer: each device trains whole seeds, and nothing crosses devices in the update;
- `task`: with the task count a multiple of the device count, the buffer's task axis, the
  parameters replicated: each device samples and computes the losses of its tasks, and XLA
  sums the gradients of the shared parameters over devices;
- `batch`: otherwise the per-task batch axis of each sampled batch (the buffer replicated).
One device is the plain path: nothing is placed and nothing constrained. Device and process
counts are facts of the run, not of its config: checkpoints hold whole arrays, so a run saved
on one topology resumes on another.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mtsac_jax.registry import ConfigError

AXIS = "devices"


@dataclasses.dataclass(frozen=True)
class Placement:
    """The run's devices and what is split over them (`split`: seed, task, batch, or None for one device)."""

    devices: tuple
    split: str | None
    num_seeds: int
    num_tasks: int

    @property
    def mesh(self) -> Mesh:
        return Mesh(np.array(self.devices), (AXIS,))

    def describe(self) -> str:
        platform = self.devices[0].platform.upper()
        processes = jax.process_count()
        line = f"devices: {len(self.devices)} ({platform}), {processes} process{'es' if processes > 1 else ''}"
        if processes > 1:
            line += f" (each stepping the envs of {self.num_tasks // processes} tasks)"
        if self.split is None:
            return line + "; one device: nothing is sharded"
        what = {"seed": "the state and the replay buffer along the seed axis",
                "task": "the replay buffer along the task axis, the parameters replicated",
                "batch": "each sampled batch along its per-task batch axis, the replay buffer and the parameters "
                         "replicated"}[self.split]
        return f"{line}; sharded: {what}"

    def _sharding(self, axis: int | None) -> jax.sharding.Sharding:
        if self.split is None:
            return jax.sharding.SingleDeviceSharding(self.devices[0])
        return NamedSharding(self.mesh, PartitionSpec(*([None] * axis), AXIS) if axis is not None else PartitionSpec())

    def state_sharding(self, state: Any) -> Any:
        """A sharding per leaf of the train state (abstract or concrete), its seed axis first."""
        sharding = self._sharding(0 if self.split == "seed" else None)
        return jax.tree.map(lambda _: sharding, state)

    def buffer_sharding(self, buffer: Any) -> Any:
        """A sharding per leaf of the replay buffer: the seed axis first, then the task axis."""
        sharding = self._sharding({"seed": 0, "task": 1}.get(self.split))
        return jax.tree.map(lambda _: sharding, buffer)

    def seed_shardings(self) -> tuple[jax.sharding.Sharding, jax.sharding.Sharding]:
        """Where one seed's checkpoint arrays (no seed axis) are restored: (whole arrays, such as
        the train state and the observations; arrays with a leading task axis, the buffer's). The
        first device in one process; in several, replicated and the run's split of the task axis."""
        if jax.process_count() == 1:
            first = jax.sharding.SingleDeviceSharding(self.devices[0])
            return first, first
        return self.replicated(), self._sharding(0 if self.split == "task" else None)

    def batch_sharding(self) -> NamedSharding | None:
        """The sharding of a sampled batch (T, B_t, ...) when the batch axis is split, else None."""
        return NamedSharding(self.mesh, PartitionSpec(None, AXIS)) if self.split == "batch" else None

    def place(self, state: Any, buffer: Any) -> tuple[Any, Any]:
        """The (stacked) train state and replay buffer put where this placement says, the buffer
        carrying its batch sharding into `replay_buffer.sample`."""
        if self.split is not None:
            state = jax.tree.map(_put, state, self.state_sharding(state))
            buffer = jax.tree.map(_put, buffer, self.buffer_sharding(buffer))
        return state, buffer.replace(batch_sharding=self.batch_sharding())

    def replicated(self) -> jax.sharding.Sharding:
        """The sharding of an array every device holds whole."""
        return self._sharding(None)

    def rows(self) -> jax.sharding.Sharding:
        """The sharding of per-task host data (seeds, tasks, ...: observations, transitions) when
        the task axis is split over the devices (several processes: each process's tasks on its devices)."""
        return self._sharding(1)

    def put(self, tree: Any, sharding: jax.sharding.Sharding) -> Any:
        """`tree`'s arrays (every process holding the same values) placed on `sharding`."""
        return jax.tree.map(lambda leaf: _put(leaf, sharding), tree)


def _put(leaf, sharding: jax.sharding.Sharding):
    """`jax.device_put`, also of PRNG key arrays and onto the devices of several processes."""
    if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
        return leaf
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_put(jax.random.key_data(leaf), sharding), impl=jax.random.key_impl(leaf))
    if jax.process_count() > 1:  # a jax.Array put there gives shards that cannot be read back (jax 0.10)
        leaf = np.asarray(leaf)
    return jax.device_put(leaf, sharding)


def plan(num_seeds: int, num_tasks: int, batch_size_per_task: int, devices=None) -> Placement:
    """The placement for this run on `devices` (default: every device of every process)."""
    devices = tuple(jax.devices() if devices is None else devices)
    count = len(devices)
    processes = len({device.process_index for device in devices})
    if processes > 1 and (num_seeds > 1 or num_tasks % count):
        raise ConfigError(
            f"{processes} processes share out the tasks of one seed: they need num_seeds=1 (got {num_seeds}) and "
            f"the {num_tasks} tasks a multiple of the {count} devices. Fix: run each seed as its own job "
            f"(--config.seed), and on a device count that divides {num_tasks} (CUDA_VISIBLE_DEVICES, or fewer "
            "processes or hosts)."
        )
    if count == 1:
        split = None
    elif num_seeds > 1 and num_seeds % count == 0:
        split = "seed"
    elif num_tasks % count == 0:
        split = "task"
    elif batch_size_per_task % count == 0:
        split = "batch"
    else:
        raise ConfigError(
            f"{count} devices split neither the {num_seeds} seed(s), the {num_tasks} tasks nor the per-task batch of "
            f"{batch_size_per_task}. Fix: make replay_buffer.batch_size / num_tasks a multiple of {count}, or run on "
            "fewer devices (CUDA_VISIBLE_DEVICES, or --xla_force_host_platform_device_count on CPU)."
        )
    return Placement(devices, split, num_seeds, num_tasks)
