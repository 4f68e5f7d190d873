"""One run over several processes, joined by `jax.distributed` (one per host, or one per GPU).

Every process sees every device of the run (`jax.devices()`); the train state and the replay
buffer are global arrays over all of them (`mtsac_jax.sharding`), and each process holds the
shards of its own devices. The tasks are shared out in equal contiguous blocks: process p steps
the train and eval envs of its block, and its transitions go into its devices' shards of the
buffer (the buffer's task axis is split over the devices, in process order). The jitted update
runs on all processes at once; XLA sums the gradients of the shared parameters across them.
Host-side figures (episode statistics, evaluation records, env snapshots) are gathered to every
process with `gather`; process 0 writes the logs, every process writes its shards of each orbax
checkpoint.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize(coordinator_address: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Joins this process to the run's other processes (`jax.distributed.initialize`). Unset
    arguments come from the cluster (SLURM, Cloud TPU, Open MPI, Kubernetes) or, for the
    coordinator, from `JAX_COORDINATOR_ADDRESS`. CPU devices reduce across processes with gloo."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def is_main() -> bool:
    """Whether this process writes the run's logs and files besides the checkpoint shards."""
    return jax.process_index() == 0


def task_share(num_tasks: int) -> slice:
    """This process's tasks: an equal contiguous block, in process order (`slice(None)`, all of
    them, for one process)."""
    count, index = jax.process_count(), jax.process_index()
    if count == 1:
        return slice(None)
    size = num_tasks // count
    return slice(index * size, (index + 1) * size)


def any_process(flag: bool) -> bool:
    """Whether `flag` holds on any process; every process must call it."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.process_allgather(np.array([flag])).any())


def gather(value) -> list:
    """`value` (anything picklable) of every process, in process order; every process must call it."""
    if jax.process_count() == 1:
        return [value]
    data = np.frombuffer(pickle.dumps(value), np.uint8)
    sizes = multihost_utils.process_allgather(np.array([data.size]))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    gathered = multihost_utils.process_allgather(padded)
    return [pickle.loads(row[: int(size)].tobytes()) for row, size in zip(gathered, sizes.ravel())]


def to_global(local: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """The global array whose rows (leading axis) are each process's `local` rows, in process order."""
    return jax.make_array_from_process_local_data(sharding, local)


def local_rows(array: jax.Array, axis: int = 0) -> np.ndarray:
    """This process's rows of a global `array` split along `axis` over the devices."""
    by_start = {shard.index[axis].start or 0: shard for shard in array.addressable_shards}
    return np.concatenate([np.asarray(by_start[start].data) for start in sorted(by_start)], axis=axis)


def local_copy(tree):
    """A fully replicated global tree as arrays on this process's first device, for computations
    this process runs alone (evaluation)."""
    return jax.tree.map(lambda leaf: leaf.addressable_data(0), tree)


def leave(error: BaseException) -> None:
    """Ends this process of a run over several at once, with `error` on stderr and exit status
    1: a normal exit would wait for the other processes at `jax.distributed`'s shutdown barrier,
    while they wait for this one in the next collective. The launcher stops the others."""
    if isinstance(error, SystemExit):
        print(error.code, file=sys.stderr)
    else:
        traceback.print_exception(error, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
