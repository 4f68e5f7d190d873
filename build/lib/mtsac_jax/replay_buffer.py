"""Device-resident replay buffer with a leading task axis.

Arrays are shaped (T, capacity_per_task, ...). One vector-env step writes one transition
per task at the same ring index; sampling is stratified, `batch_size / T` per task, so a
batch is (T, B_t, ...) and every task weighs the same in the loss.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class ReplayBuffer:
    obs: jax.Array  # (T, C, obs_dim)
    action: jax.Array  # (T, C, action_dim)
    reward: jax.Array  # (T, C)
    next_obs: jax.Array  # (T, C, obs_dim)
    terminated: jax.Array  # (T, C): 1.0 only on true termination, never on truncation
    cursor: jax.Array  # () int32: ring index the next insert writes to
    size: jax.Array  # () int32: number of valid transitions per task

    @property
    def capacity_per_task(self) -> int:
        return self.reward.shape[1]


def init(num_tasks: int, capacity_per_task: int, obs_dim: int, action_dim: int) -> ReplayBuffer:
    zeros = functools.partial(jnp.zeros, dtype=jnp.float32)
    return ReplayBuffer(
        obs=zeros((num_tasks, capacity_per_task, obs_dim)),
        action=zeros((num_tasks, capacity_per_task, action_dim)),
        reward=zeros((num_tasks, capacity_per_task)),
        next_obs=zeros((num_tasks, capacity_per_task, obs_dim)),
        terminated=zeros((num_tasks, capacity_per_task)),
        cursor=jnp.zeros((), jnp.int32),
        size=jnp.zeros((), jnp.int32),
    )


def insert(buffer: ReplayBuffer, obs, action, reward, next_obs, terminated) -> ReplayBuffer:
    """Writes one transition per task (arrays shaped (T, ...)) at the ring cursor."""
    cursor = buffer.cursor

    def write(store, value):
        return store.at[:, cursor].set(jnp.asarray(value, store.dtype))

    return buffer.replace(
        obs=write(buffer.obs, obs),
        action=write(buffer.action, action),
        reward=write(buffer.reward, reward),
        next_obs=write(buffer.next_obs, next_obs),
        terminated=write(buffer.terminated, terminated),
        cursor=(cursor + 1) % buffer.capacity_per_task,
        size=jnp.minimum(buffer.size + 1, buffer.capacity_per_task),
    )


insert_jit = jax.jit(insert, donate_argnums=0)


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size_per_task: int) -> dict[str, jax.Array]:
    """Stratified sample: `batch_size_per_task` transitions of each task, shaped (T, B_t, ...)."""
    num_tasks = buffer.reward.shape[0]
    index = jax.random.randint(key, (num_tasks, batch_size_per_task), 0, buffer.size)  # (T, B_t)
    take = jax.vmap(lambda store, task_index: store[task_index])
    return {
        "obs": take(buffer.obs, index),
        "action": take(buffer.action, index),
        "reward": take(buffer.reward, index),
        "next_obs": take(buffer.next_obs, index),
        "terminated": take(buffer.terminated, index),
    }
