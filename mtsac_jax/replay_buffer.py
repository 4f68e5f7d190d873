"""Device-resident replay buffer with a leading task axis.

Arrays are shaped (T, capacity_per_task, ...). Each task has its own ring cursor and size:
one vector-env step writes one transition per task, each at its task's cursor, except for a
task whose transition is dropped (its env worker failed during the step: `insert`'s `keep`),
which keeps its cursor and size. Sampling is stratified, `batch_size / T` per task, so a batch
is (T, B_t, ...) and every task weighs the same in the loss.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class ReplayBuffer:
    obs: jax.Array  # (T, C, *obs_shape), float32 (states) or uint8 (frames)
    action: jax.Array  # (T, C, action_dim)
    reward: jax.Array  # (T, C)
    next_obs: jax.Array  # (T, C, *obs_shape)
    terminated: jax.Array  # (T, C): 1.0 only on true termination, never on truncation
    cursor: jax.Array  # (T,) int32: ring index each task's next insert writes to
    size: jax.Array  # (T,) int32: number of valid transitions of each task
    # how a sampled batch (T, B_t, ...) is split over devices (`sharding.Placement`); None: not at all
    batch_sharding: Any = flax.struct.field(pytree_node=False, default=None)

    @property
    def capacity_per_task(self) -> int:
        return self.reward.shape[1]


def init(num_tasks: int, capacity_per_task: int, obs_shape: int | tuple[int, ...], action_dim: int,
         obs_dtype=jnp.float32) -> ReplayBuffer:
    """An empty buffer; observations of shape `obs_shape` (an int: a vector) stored as `obs_dtype`
    (uint8 frames stay uint8: a quarter of float32's memory)."""
    zeros = functools.partial(jnp.zeros, dtype=jnp.float32)
    obs_shape = (obs_shape,) if isinstance(obs_shape, int) else tuple(obs_shape)
    return ReplayBuffer(
        obs=jnp.zeros((num_tasks, capacity_per_task, *obs_shape), obs_dtype),
        action=zeros((num_tasks, capacity_per_task, action_dim)),
        reward=zeros((num_tasks, capacity_per_task)),
        next_obs=jnp.zeros((num_tasks, capacity_per_task, *obs_shape), obs_dtype),
        terminated=zeros((num_tasks, capacity_per_task)),
        cursor=jnp.zeros((num_tasks,), jnp.int32),
        size=jnp.zeros((num_tasks,), jnp.int32),
    )


def insert(buffer: ReplayBuffer, obs, action, reward, next_obs, terminated, keep=None) -> ReplayBuffer:
    """Writes one transition per task (arrays shaped (T, ...)) at each task's ring cursor.

    `keep` ((T,) bool, default all True): tasks whose transition is stored; a task with
    `keep=False` is left exactly as it was (contents, cursor and size).
    """
    num_tasks = buffer.reward.shape[0]
    keep = jnp.ones((num_tasks,), bool) if keep is None else jnp.asarray(keep, bool)
    tasks, cursor = jnp.arange(num_tasks), buffer.cursor

    def write(store, value):
        value = jnp.asarray(value, store.dtype)
        kept = keep.reshape((num_tasks,) + (1,) * (value.ndim - 1))
        return store.at[tasks, cursor].set(jnp.where(kept, value, store[tasks, cursor]))

    return buffer.replace(
        obs=write(buffer.obs, obs),
        action=write(buffer.action, action),
        reward=write(buffer.reward, reward),
        next_obs=write(buffer.next_obs, next_obs),
        terminated=write(buffer.terminated, terminated),
        cursor=jnp.where(keep, (cursor + 1) % buffer.capacity_per_task, cursor),
        size=jnp.where(keep, jnp.minimum(buffer.size + 1, buffer.capacity_per_task), buffer.size),
    )


insert_jit = jax.jit(insert, donate_argnums=0)


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size_per_task: int) -> dict[str, jax.Array]:
    """Stratified sample: `batch_size_per_task` transitions of each task, shaped (T, B_t, ...),
    each task's drawn uniformly from its own valid transitions."""
    num_tasks = buffer.reward.shape[0]
    index = jax.random.randint(key, (num_tasks, batch_size_per_task), 0, buffer.size[:, None])  # (T, B_t)
    take = jax.vmap(lambda store, task_index: store[task_index])
    batch = {
        "obs": take(buffer.obs, index),
        "action": take(buffer.action, index),
        "reward": take(buffer.reward, index),
        "next_obs": take(buffer.next_obs, index),
        "terminated": take(buffer.terminated, index),
    }
    if buffer.batch_sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, buffer.batch_sharding)
    return batch
