"""Exact snapshots of a running Meta-World env, for bit-exact resume mid-episode.

Meta-World's own `get_checkpoint` keeps only RNG states and the goal list; pickling an
env rebuilds it from its constructor. A snapshot here holds instead:
- MuJoCo's integration state (`mjSTATE_INTEGRATION`: positions, velocities, controls,
  mocap, warm start, time), which fully determines the next `mj_step`;
- the small numeric fields of the model, which Meta-World rewrites at every reset (goal
  site and object body positions);
- the attributes of every wrapper and of the env itself (episode counters, goal, RNGs,
  task list). Arrays that are live views into MuJoCo's model or data buffers (Meta-World
  keeps some, e.g. pad positions) are stored as views and re-attached on restore.
"""

from __future__ import annotations

import io
import pickle

import gymnasium as gym
import mujoco
import numpy as np

# Large, constant asset tables of the model (meshes, textures, ...), never rewritten.
_ASSET_PREFIXES = ("mesh_", "tex_", "hfield_", "skin_", "flex_", "bvh_", "oct_", "names", "paths", "text_")
_STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


def _layers(env: gym.Env) -> list:
    chain = [env]
    while isinstance(chain[-1], gym.Wrapper):
        chain.append(chain[-1].env)
    return chain


def _array_fields(struct) -> dict[str, np.ndarray]:
    fields = {}
    for name in dir(struct):
        if name.startswith("_"):
            continue
        value = getattr(struct, name, None)
        if isinstance(value, np.ndarray) and value.size:
            fields[name] = value
    return fields


class _Externals:
    """The live objects a snapshot refers to rather than copies: the wrapper layers,
    MuJoCo's model, data and renderer, and views into the model's and data's buffers."""

    def __init__(self, env: gym.Env):
        unwrapped = env.unwrapped
        self.objects = {f"layer{index}": layer for index, layer in enumerate(_layers(env))}
        self.objects.update(model=unwrapped.model, data=unwrapped.data, renderer=unwrapped.mujoco_renderer)
        self.ids = {id(obj): key for key, obj in self.objects.items()}
        self.buffers = {
            (owner, name): array
            for owner, struct in (("model", unwrapped.model), ("data", unwrapped.data))
            for name, array in _array_fields(struct).items()
        }

    def persistent_id(self, obj):
        if id(obj) in self.ids:
            return self.ids[id(obj)]
        if isinstance(obj, np.ndarray) and obj.base is not None:
            address = obj.__array_interface__["data"][0]
            for key, buffer in self.buffers.items():
                start = buffer.__array_interface__["data"][0]
                if start <= address < start + buffer.nbytes and obj.dtype == buffer.dtype:
                    return ("view", key, address - start, obj.shape, obj.strides)
        return None

    def persistent_load(self, pid):
        if isinstance(pid, tuple):
            _, key, offset, shape, strides = pid
            buffer = self.buffers[key]
            return np.ndarray(shape, buffer.dtype, buffer=buffer, offset=offset, strides=strides)
        return self.objects[pid]


def snapshot(env: gym.Env) -> bytes:
    """The complete state of a Meta-World env (any wrapper stack) as bytes."""
    unwrapped = env.unwrapped
    model, data = unwrapped.model, unwrapped.data
    state = np.empty(mujoco.mj_stateSize(model, _STATE_SPEC))
    mujoco.mj_getState(model, data, state, _STATE_SPEC)
    model_fields = {
        name: np.copy(array) for name, array in _array_fields(model).items() if not name.startswith(_ASSET_PREFIXES)
    }
    externals = _Externals(env)
    pickler_class = type("_Pickler", (pickle.Pickler,), {"persistent_id": lambda self, obj: externals.persistent_id(obj)})
    stream = io.BytesIO()
    pickler_class(stream, protocol=pickle.HIGHEST_PROTOCOL).dump(
        {"attributes": [dict(layer.__dict__) for layer in _layers(env)], "state": state, "model": model_fields}
    )
    return stream.getvalue()


def restore(env: gym.Env, blob: bytes) -> None:
    """Puts a live env of the same task and wrapper stack into the snapshot's state."""
    externals = _Externals(env)
    unpickler_class = type(
        "_Unpickler", (pickle.Unpickler,), {"persistent_load": lambda self, pid: externals.persistent_load(pid)}
    )
    saved = unpickler_class(io.BytesIO(blob)).load()
    model, data = env.unwrapped.model, env.unwrapped.data
    for name, value in saved["model"].items():
        getattr(model, name)[...] = value
    # mj_forward refreshes derived quantities but rewrites the warm start: set the state again.
    mujoco.mj_setState(model, data, saved["state"], _STATE_SPEC)
    mujoco.mj_forward(model, data)
    mujoco.mj_setState(model, data, saved["state"], _STATE_SPEC)
    for layer, attributes in zip(_layers(env), saved["attributes"]):
        layer.__dict__.update(attributes)


class SnapshotWrapper(gym.Wrapper):
    """Exposes `snapshot()` and `restore(blobs)` to `VectorEnv.call`, in or out of process."""

    def __init__(self, env: gym.Env, task_index: int):
        super().__init__(env)
        self.task_index = task_index

    def snapshot(self) -> bytes:
        return snapshot(self.env)

    def restore(self, blobs: list[bytes]) -> None:
        """Restores this task's snapshot from the list of all tasks' snapshots."""
        restore(self.env, blobs[self.task_index])
