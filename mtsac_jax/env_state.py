"""Exact snapshots of a running env, for bit-exact resume mid-episode.

Meta-World's own `get_checkpoint` keeps only RNG states and the goal list; pickling an
env rebuilds it from its constructor. A snapshot here holds instead, for a MuJoCo env (one
whose unwrapped env keeps a `mujoco.MjModel` and `MjData` as `model` and `data`, or a
dm_control `Physics` as `physics`):
- MuJoCo's integration state (`mjSTATE_INTEGRATION`: positions, velocities, controls,
  mocap, warm start, time), which fully determines the next `mj_step`;
- the small numeric fields of the model, which Meta-World rewrites at every reset (goal
  site and object body positions);
- the attributes of every wrapper and of the env itself (episode counters, goal, RNGs,
  task list). Arrays that are live views into MuJoCo's model or data buffers (Meta-World
  keeps some, e.g. pad positions) are stored as views and re-attached on restore.
An env without MuJoCo (a pure-Python env such as gymnasium's Pendulum) is snapshotted by the
attributes of its wrappers and of itself alone. Functions that wrappers keep as attributes are
referred to, not copied.
"""

from __future__ import annotations

import functools
import io
import pickle
import types

import gymnasium as gym
import mujoco
import numpy as np

# Large, constant asset tables of the model (meshes, textures, ...), never rewritten.
_ASSET_PREFIXES = ("mesh_", "tex_", "hfield_", "skin_", "flex_", "bvh_", "oct_", "names", "paths", "text_")
_STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION
_FUNCTIONS = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial)


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


def _physics(env: gym.Env):
    """A dm_control `Physics` the env keeps as `physics` (it wraps MuJoCo's model and data), else None."""
    physics = getattr(env.unwrapped, "physics", None)
    return physics if hasattr(getattr(physics, "model", None), "ptr") else None


def _mujoco(env: gym.Env) -> tuple[mujoco.MjModel, mujoco.MjData] | None:
    """The env's MuJoCo model and data, or None for an env without MuJoCo."""
    physics = _physics(env)
    if physics is not None:
        model, data = physics.model.ptr, physics.data.ptr
    else:
        model, data = getattr(env.unwrapped, "model", None), getattr(env.unwrapped, "data", None)
    return (model, data) if isinstance(model, mujoco.MjModel) and isinstance(data, mujoco.MjData) else None


class _Externals:
    """The live objects a snapshot refers to rather than copies: the wrapper layers and, for
    a MuJoCo env, its model, data and renderer (or its `Physics` and the wrappers of its model
    and data), and views into the model's and data's buffers."""

    def __init__(self, env: gym.Env):
        self.objects = {f"layer{index}": layer for index, layer in enumerate(_layers(env))}
        # Functions a wrapper keeps (e.g. an action transform) are code, not state: they are
        # referred to, which also covers closures that pickle cannot copy.
        self.objects.update({
            f"layer{index}.{name}": value
            for index, layer in enumerate(_layers(env))
            for name, value in vars(layer).items()
            if isinstance(value, _FUNCTIONS)
        })
        self.buffers = {}
        if _mujoco(env):
            model, data = _mujoco(env)
            self.objects.update(model=model, data=data, renderer=getattr(env.unwrapped, "mujoco_renderer", None))
            physics = _physics(env)
            if physics is not None:
                self.objects.update(physics=physics, physics_model=physics.model, physics_data=physics.data)
            self.buffers = {
                (owner, name): array
                for owner, struct in (("model", model), ("data", data))
                for name, array in _array_fields(struct).items()
            }
        self.ids = {id(obj): key for key, obj in self.objects.items() if obj is not None}

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
    """The complete state of an env (any wrapper stack) as bytes."""
    state, model_fields = None, {}
    if _mujoco(env):
        model, data = _mujoco(env)
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
    if saved["state"] is not None:
        model, data = _mujoco(env)
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
