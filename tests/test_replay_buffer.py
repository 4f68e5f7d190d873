import chex
import jax
import numpy as np
import pytest

from mtsac_jax import replay_buffer

T, C, OBS, ACT = 3, 5, 4, 2


def transition(value):
    return dict(
        obs=np.full((T, OBS), value, np.float32),
        action=np.full((T, ACT), value, np.float32),
        reward=np.arange(T, dtype=np.float32) + value,
        next_obs=np.full((T, OBS), value + 0.5, np.float32),
        terminated=np.zeros(T, np.float32),
    )


def filled(num_inserts, insert=replay_buffer.insert_jit):
    buffer = replay_buffer.init(T, C, OBS, ACT)
    for value in range(num_inserts):
        buffer = insert(buffer, **transition(float(value)))
    return buffer


def test_ring_wraps_around_and_overwrites_oldest():
    buffer = filled(C + 2)  # values 0..6; slots 0 and 1 now hold 5 and 6
    np.testing.assert_array_equal(buffer.size, [C] * T)
    np.testing.assert_array_equal(buffer.cursor, [2] * T)
    np.testing.assert_array_equal(buffer.obs[0, :, 0], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buffer.reward[2], np.array([5, 6, 2, 3, 4]) + 2)


def test_each_task_writes_its_own_row():
    buffer = filled(1)
    np.testing.assert_array_equal(buffer.reward[:, 0], [0.0, 1.0, 2.0])


def test_stratified_sample_shapes_and_only_valid_rows():
    buffer = filled(3)
    batch = replay_buffer.sample(buffer, jax.random.key(0), batch_size_per_task=16)
    assert batch["obs"].shape == (T, 16, OBS)
    assert batch["action"].shape == (T, 16, ACT)
    assert batch["reward"].shape == (T, 16)
    assert batch["terminated"].shape == (T, 16)
    # Only the 3 filled slots are drawn, and each task draws from its own row.
    assert set(np.unique(batch["obs"])) <= {0.0, 1.0, 2.0}
    np.testing.assert_array_equal(batch["reward"] - batch["obs"][..., 0], np.broadcast_to(np.arange(T)[:, None], (T, 16)))
    np.testing.assert_array_equal(batch["next_obs"], batch["obs"] + 0.5)


@pytest.mark.parametrize("num_inserts", [2, C + 3])
def test_jit_and_no_jit_agree(num_inserts):
    jitted, plain = filled(num_inserts), filled(num_inserts, insert=replay_buffer.insert)
    chex.assert_trees_all_equal(jitted, plain)
    key = jax.random.key(1)
    sample_jit = jax.jit(replay_buffer.sample, static_argnums=2)
    chex.assert_trees_all_equal(sample_jit(jitted, key, 7), replay_buffer.sample(plain, key, 7))


def test_a_task_not_kept_keeps_its_row_cursor_and_size():
    buffer = filled(2)
    before = jax.device_get(buffer)
    buffer = replay_buffer.insert_jit(buffer, **transition(9.0), keep=np.array([True, False, True]))
    np.testing.assert_array_equal(buffer.cursor, [3, 2, 3])
    np.testing.assert_array_equal(buffer.size, [3, 2, 3])
    for name in ("obs", "action", "reward", "next_obs", "terminated"):
        np.testing.assert_array_equal(getattr(buffer, name)[1], getattr(before, name)[1], err_msg=name)
    np.testing.assert_array_equal(buffer.obs[[0, 2], 2, 0], [9.0, 9.0])
    # The next kept transition of task 1 goes where the dropped one would have gone.
    buffer = replay_buffer.insert_jit(buffer, **transition(10.0))
    np.testing.assert_array_equal(buffer.obs[:, :4, 0], [[0, 1, 9, 10], [0, 1, 10, 0], [0, 1, 9, 10]])
    # Task 1 samples only its 3 valid transitions.
    batch = replay_buffer.sample(buffer, jax.random.key(0), batch_size_per_task=64)
    assert set(np.unique(batch["obs"][1])) == {0.0, 1.0, 10.0}


def test_keeping_every_task_is_the_plain_insert():
    chex.assert_trees_all_equal(
        replay_buffer.insert_jit(filled(C + 1), **transition(7.0), keep=np.ones(T, bool)),
        replay_buffer.insert_jit(filled(C + 1), **transition(7.0)),
    )
