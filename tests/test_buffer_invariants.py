"""The replay buffer against a plain numpy model of it, under random inserts (hypothesis)."""

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mtsac_jax import replay_buffer

T, OBS, ACT = 3, 2, 1


class NumpyBuffer:
    """Per-task rings: row `cursor[t]` of task t takes its next kept transition."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.fields = {"obs": np.zeros((T, capacity, OBS), np.float32), "action": np.zeros((T, capacity, ACT), np.float32),
                       "reward": np.zeros((T, capacity), np.float32), "next_obs": np.zeros((T, capacity, OBS), np.float32),
                       "terminated": np.zeros((T, capacity), np.float32)}
        self.cursor, self.size = np.zeros(T, np.int32), np.zeros(T, np.int32)

    def insert(self, transition: dict, keep: np.ndarray) -> None:
        for task in np.flatnonzero(keep):
            for name, store in self.fields.items():
                store[task, self.cursor[task]] = transition[name][task]
            self.cursor[task] = (self.cursor[task] + 1) % self.capacity
            self.size[task] = min(self.size[task] + 1, self.capacity)


def transition(step: int) -> dict:
    """Task t's transition of step s, every field telling (t, s) apart (and no obs all zeros, as
    an unwritten row is)."""
    tasks = np.arange(T, dtype=np.float32)
    return {"obs": np.stack([tasks + 1, np.full(T, step + 1, np.float32)], axis=1),
            "action": (tasks + 0.5 * step)[:, None] / 100.0,
            "reward": tasks * 1000.0 + step,
            "next_obs": np.stack([tasks, np.full(T, step + 0.5, np.float32)], axis=1),
            "terminated": (np.arange(T) + step) % 2 == 0}


@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(1, 5),
       keeps=st.lists(st.lists(st.booleans(), min_size=T, max_size=T), min_size=1, max_size=14),
       seed=st.integers(0, 2**31 - 1))
def test_inserts_and_samples_match_a_numpy_model(capacity, keeps, seed):
    """Ring wrap-around, per-task cursors and sizes, dropped transitions leave their task as it
    was, and stratified sampling returns only each task's own written rows, whole."""
    buffer, model = replay_buffer.init(T, capacity, OBS, ACT), NumpyBuffer(capacity)
    for step, keep in enumerate(keeps):
        keep = np.asarray(keep)
        values = transition(step)
        buffer = replay_buffer.insert_jit(buffer, values["obs"], values["action"], values["reward"], values["next_obs"],
                                          values["terminated"], keep)
        model.insert(values, keep)
    for name, store in model.fields.items():
        np.testing.assert_array_equal(np.asarray(getattr(buffer, name)), store, err_msg=name)
    np.testing.assert_array_equal(np.asarray(buffer.cursor), model.cursor)
    np.testing.assert_array_equal(np.asarray(buffer.size), model.size)

    batch = jax.device_get(jax.jit(replay_buffer.sample, static_argnums=2)(buffer, jax.random.key(seed), 16))
    for task in np.flatnonzero(model.size):
        written = {tuple(row): index for index, row in enumerate(model.fields["obs"][task, :model.size[task]])}
        for sample in range(16):
            row = written.get(tuple(batch["obs"][task, sample]))
            assert row is not None, f"task {task} sampled a row it never wrote: {batch['obs'][task, sample]}"
            for name, store in model.fields.items():
                np.testing.assert_array_equal(batch[name][task, sample], store[task, row], err_msg=name)
