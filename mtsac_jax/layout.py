"""Where a run's arrays live: a seed axis that is always there, and each process's task rows.

Every leaf of the train state and of the replay buffer, and every host array the loop hands
the device (observations, actions, transitions), carries a leading seed axis of size
`num_seeds` (1 for a one-seed run); the task axis comes next. A per-seed function (the agent's
update, its acting, the buffer's insert) runs over the seed axis with `Layout.map`: vmapped for
several seeds, and for one seed on the seed's slice itself, which compiles to the computation
of the function alone (bit-identical results). In a run over several processes each process
holds the rows of its own tasks (`mtsac_jax.processes`); `to_global` and `to_local` convert
between those rows and the run's global arrays, and are plain conversions in one process.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mtsac_jax import processes, sharding


class Layout:
    """The seed axis of a run and its placement on the devices (`sharding.Placement`, which knows the seed count)."""

    def __init__(self, placement: sharding.Placement):
        self.placement = placement
        self.several_processes = jax.process_count() > 1

    def map(self, fn: Callable, in_axes=0) -> Callable:
        """`fn` over the seed axis of its arguments (those whose `in_axes` entry is 0) and results."""
        if self.placement.num_seeds > 1:
            return jax.vmap(fn, in_axes=in_axes)

        def on_the_one_seed(*args):
            axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
            args = [arg if axis is None else jax.tree.map(lambda leaf: leaf[0], arg) for arg, axis in zip(args, axes)]
            return jax.tree.map(lambda leaf: leaf[None], fn(*args))

        return on_the_one_seed

    def assemble(self, states: list, buffers: list) -> tuple[Any, Any]:
        """One train state and one replay buffer per seed as the run's, with the seed axis,
        placed as the placement says (`replay_buffer.sample` reads the buffer's batch sharding)."""
        leaves = [leaf for leaf in jax.tree.leaves((states, buffers)) if isinstance(leaf, jax.Array)]
        if all(leaf.is_fully_addressable for leaf in leaves):
            return self.placement.place(_stacked(states), _stacked(buffers))
        # a checkpoint restored over several processes: stacked where the arrays will live
        abstract = jax.eval_shape(lambda: (_stacked(states), _stacked(buffers)))
        shardings = (self.placement.state_sharding(abstract[0]), self.placement.buffer_sharding(abstract[1]))
        state, buffer = jax.jit(lambda s, b: (_stacked(s), _stacked(b)), out_shardings=shardings)(states, buffers)
        return state, buffer.replace(batch_sharding=self.placement.batch_sharding())

    def stack_host(self, arrays: list[np.ndarray]) -> np.ndarray:
        """Host arrays (observations, transitions), one per seed, stacked without a device round trip."""
        return np.stack(arrays)

    def take(self, tree, index: int) -> Any:
        """Seed `index`'s part of `tree`."""
        return jax.tree.map(lambda leaf: leaf[index], tree)

    def to_global(self, rows: np.ndarray) -> Any:
        """Host data (seeds, this process's tasks, ...) as the argument of a jitted call: in a run
        over several processes the global array of every process's rows."""
        if not self.several_processes:
            return rows
        return processes.to_global(rows, self.placement.rows())

    def to_local(self, array: jax.Array) -> np.ndarray:
        """This process's task rows of a result split like `to_global`'s arrays, on the host."""
        if not self.several_processes:
            return np.asarray(array)
        return processes.local_rows(array, axis=1)

    def replicated(self, tree) -> Any:
        """Values every process holds alike (the acting keys) as arrays of the whole run."""
        if not self.several_processes:
            return tree
        return self.placement.put(tree, self.placement.replicated())

    def jit_update(self, update: Callable, state: Any) -> Callable:
        """`update(state, buffer) -> (state, metrics, fault)` over the seed axis, jitted with the
        state (shaped as `state`) donated; over several processes every process gets the
        metrics and the fault whole."""
        mapped = self.map(update)
        if not self.several_processes:
            return jax.jit(mapped, donate_argnums=0)
        replicated = self.placement.replicated()
        return jax.jit(mapped, donate_argnums=0,
                       out_shardings=(self.placement.state_sharding(state), replicated, replicated))

    def on_this_process(self, tree) -> Any:
        """A replicated tree as arrays this process can compute on alone (evaluation)."""
        return processes.local_copy(tree) if self.several_processes else tree


def _stacked(trees: list) -> Any:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
