"""Orbax checkpoints of a whole run: `WORKDIR/checkpoints/<step>/`.

A checkpoint holds three items:
- `arrays`: the TrainState, the replay buffer (contents, cursors and sizes) and the current
  observation, restored into the exact structure of a freshly built run;
- `envs`: exact snapshots of every train and eval env (`mtsac_jax.env_state`), as bytes, by
  group (`train`, `eval`, `eval_<set>`); at a step with an evaluation, the eval envs' from just
  before it too (`evaluation_start_<group>`), so `evaluate.py` reproduces that evaluation;
- `meta`: JSON with the step, the warm-up action RNG, the unfinished episode statistics, the
  episodes per task of the step's evaluation (`eval_episodes`, None without one; absent in
  checkpoints without those snapshots) and the checkpoint `format`.
Orbax writes each checkpoint into a temporary folder and renames it when complete, so a
kill during a save leaves the previous checkpoints intact. Then `checksums.json` records the
CRC-32 of every file of the checkpoint, and a restore first checks them: a checkpoint that was
truncated or had a bit flipped on disk (which orbax reads back without complaint when it hits
array data) is told apart from a good one. A checkpoint that fails its checksums or fails to
restore is moved aside to `WORKDIR/checkpoints_corrupt/` with a warning, in favour of the one
before it. (A checkpoint without `checksums.json`, from before checksums or from a kill right
after its commit, is restored unchecked.)
In a run over several processes every process writes its shards of the arrays and process 0
the rest and the checksums; the arrays are whole, so any process count restores them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import pathlib
import shutil
import json
import os
import time
import zlib
from collections.abc import Mapping
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

# orbax logs every save and restore at INFO level; keep the console for the run itself.
logging.getLogger("absl").setLevel(logging.WARNING)


# 4: the agent's state is nested (SAC: actor, critic, temperature sub-states). 3: the state is
# one flat dataclass, each part where the state class's `flat_fields` says; the replay buffer
# keeps a cursor and a size per task. 2: one cursor and size for all tasks (restored as that
# value for every task); the train state carries every field of the agent's state. 1 (no
# `format` in the meta): written before the registries, when the train state had no field
# without arrays (such as the gradient state of `mean`); such fields are restored as they are
# in a fresh state.
FORMAT = 4
CHECKSUMS = "checksums.json"
EVALUATION_START = "evaluation_start_"  # the env groups of the eval envs as the step's evaluation found them


class CheckpointError(RuntimeError):
    """Saving or restoring failed; the message names the cause and the fix."""


def _to_bytes_arrays(blobs) -> list[np.ndarray]:
    return [np.frombuffer(blob, dtype=np.uint8) for blob in blobs]


def _from_bytes_arrays(envs: dict) -> dict[str, list[bytes]]:
    return {group: [np.asarray(blob).tobytes() for blob in blobs] for group, blobs in envs.items()}


@contextlib.contextmanager
def quiet_orbax():
    """Keeps orbax's own log lines (tracebacks from its threads included) off the console while
    a checkpoint that may be damaged is read: the caller reports the failure in one line."""
    loggers = [logging.getLogger(name) for name in ("absl", "orbax", "tensorstore")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def failure_reason(error: BaseException) -> str:
    """One short line on why reading a checkpoint failed: the root cause's first line."""
    while error.__cause__ is not None or (error.__context__ is not None and not error.__suppress_context__):
        error = error.__cause__ or error.__context__
    text = (str(error).splitlines() or [""])[0].split(" See full TensorStore details")[0]
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


class Checkpointer:
    def __init__(self, workdir: pathlib.Path, keep: int, read_only: bool = False):
        """`read_only`: only read existing checkpoints (evaluation): the folder must exist, and
        nothing in it is created, cleaned up or deleted."""
        self.directory = (pathlib.Path(workdir) / "checkpoints").absolute()
        if read_only and not self.directory.is_dir():
            raise CheckpointError(
                f"{self.directory} is missing (or not a folder): {workdir} holds no checkpoints. Fix: train "
                "(again) into this workdir, or pass the workdir of a run that saved checkpoints."
            )
        self._verified: set[int] = set()  # steps whose files `array_metadata` has checked
        with quiet_orbax():  # read-only managers warn that they are read-only
            options = ocp.CheckpointManagerOptions(
                max_to_keep=None if read_only else keep, create=not read_only, enable_async_checkpointing=False,
                cleanup_tmp_directories=not read_only, read_only=read_only,
            )
            self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("arrays", "envs", "meta"))

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, arrays: Any, env_blobs: dict[str, list[bytes]], meta: dict) -> None:
        """Writes checkpoint `step`; on failure the earlier checkpoints stay as they were."""
        envs = {group: _to_bytes_arrays(blobs) for group, blobs in env_blobs.items()}
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    arrays=ocp.args.StandardSave(arrays),
                    envs=ocp.args.StandardSave(envs),
                    meta=ocp.args.JsonSave({**meta, "format": FORMAT}),
                ),
                force=True,
            )
            self._manager.wait_until_finished()
            if jax.process_index() == 0:  # every process wrote its shards; the checkpoint is complete
                _write_checksums(self.directory / str(step))
        except (OSError, ValueError) as error:
            raise CheckpointError(
                f"Could not write the checkpoint for step {step} to {self.directory}: {error}. The previous "
                f"checkpoints ({self.steps() or 'none'}) are untouched. Fix: free disk space or make the "
                "workdir writable, then rerun the same command to resume."
            ) from error

    def restore_latest(self, abstract_arrays: Any, warn,
                       at_most: int | None = None) -> tuple[int, Any, dict[str, list[bytes]], dict] | None:
        """The newest checkpoint (of step `at_most` or earlier) that restores cleanly, or None
        when there is none.

        `abstract_arrays` gives the structure, shapes and dtypes (e.g. from `jax.eval_shape`);
        a shape mismatch means the checkpoint belongs to another configuration.
        """
        for step in reversed([step for step in self.steps() if at_most is None or step <= at_most]):
            try:
                verify_checksums(self.directory / str(step))
                with quiet_orbax():
                    meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
                    saved_format = meta.get("format", 1)
                    target = _saved_layout(abstract_arrays, saved_format)
                    restored = self._manager.restore(
                        step,
                        args=ocp.args.Composite(arrays=ocp.args.StandardRestore(target), envs=ocp.args.StandardRestore()),
                    )
                _check_shapes(target, restored["arrays"])
                arrays = _upgrade(abstract_arrays, restored["arrays"], saved_format)
            except Exception as error:  # a corrupt, truncated or foreign checkpoint
                aside = self._move_aside(step)
                warn(
                    f"warning: checkpoint {step} could not be restored ({failure_reason(error)}); "
                    f"moved it to {aside} and trying the previous one."
                )
                continue
            return step, arrays, _from_bytes_arrays(restored["envs"]), dict(meta)
        return None

    def discard_after(self, step: int) -> None:
        """Deletes the checkpoints newer than `step` (a run going on from `step` writes them anew)."""
        for newer in [saved for saved in self.steps() if saved > step]:
            self._manager.delete(newer)

    def array_metadata(self, step: int) -> Any:
        """The tree of checkpoint `step`'s arrays as metadata (each leaf has `.shape` and
        `.dtype`), read without loading any array, once every file of the checkpoint matches its
        checksum: a damaged file is named here, before orbax opens it (a read that fails in
        orbax's reader leaves others pending, whose callbacks print tracebacks at exit)."""
        if step not in self._verified:
            verify_checksums(self.directory / str(step))
            self._verified.add(step)
        return self._reader.item_metadata(step)["arrays"]

    def restore_part(self, step: int, part: Any) -> Any:
        """Only the sub-tree `part` (a sub-tree of `array_metadata(step)`, which checks the
        checkpoint's files) of checkpoint `step`'s arrays, as arrays on the default device; the
        rest, the replay buffer above all, is not read."""
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device), part)
        args = ocp.args.PyTreeRestore(
            item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract), partial_restore=True
        )
        return self._reader.restore(step, args=ocp.args.Composite(arrays=args))["arrays"]

    def restore_selected(self, step: int, abstract_state: Any, select: Callable[[Any], Any]) -> Any:
        """`select(train_state)` of checkpoint `step` (in any format), reading only those arrays.
        `select` picks parts of a train state and computes nothing (as `Agent.policy_params`);
        `abstract_state` is a train state's structure (`jax.eval_shape` of the agent's init)."""
        metadata = self.array_metadata(step)["train_state"]
        saved_format = self.meta(step).get("format", 1)
        tagged = jax.tree_util.tree_map_with_path(lambda path, _: _Path(path), abstract_state)
        chosen, treedef = jax.tree.flatten(select(tagged))
        paths = [saved_path(abstract_state, tuple(_key_name(key) for key in leaf.keys), saved_format)
                 for leaf in chosen]
        part: dict = {}
        for path in paths:
            _put(part, path, _part(metadata, path))
        restored = self.restore_part(step, {"train_state": part})["train_state"]
        return jax.tree.unflatten(treedef, [_part(restored, path) for path in paths])

    def meta(self, step: int) -> dict:
        """Checkpoint `step`'s `meta` item."""
        with quiet_orbax():
            return dict(self._reader.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

    def env_snapshots(self, step: int) -> dict[str, list[bytes]]:
        """Checkpoint `step`'s env snapshots, by group."""
        with quiet_orbax():
            restored = self._reader.restore(step, args=ocp.args.Composite(envs=ocp.args.StandardRestore()))
        return _from_bytes_arrays(restored["envs"])

    @functools.cached_property
    def _reader(self) -> ocp.CheckpointManager:
        """A manager that reads the `arrays` item as a plain PyTree (the format `StandardSave`
        writes), which allows metadata reads and partial restores; made on first use."""
        handlers = {
            "arrays": ocp.PyTreeCheckpointHandler(),
            "envs": ocp.StandardCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        }
        with quiet_orbax():
            options = ocp.CheckpointManagerOptions(create=False, read_only=True, cleanup_tmp_directories=False)
            return ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def _move_aside(self, step: int) -> pathlib.Path:
        aside = self.directory.parent / "checkpoints_corrupt" / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        if jax.process_index() == 0:
            aside.parent.mkdir(exist_ok=True)
            shutil.move(self.directory / str(step), aside)
        if jax.process_count() > 1:  # every process found it damaged; it is gone once they go on
            multihost_utils.sync_global_devices(f"checkpoint {step} moved aside")
        for manager in (self._manager, self.__dict__.get("_reader")):
            if manager is not None:
                manager.reload()
        return aside

    def close(self) -> None:
        for manager in (self._manager, self.__dict__.get("_reader")):
            if manager is not None:
                manager.close()


@dataclasses.dataclass(frozen=True)
class _Path:
    """A train-state leaf's key path, standing in for the leaf while `restore_selected` selects."""

    keys: tuple


def _key_name(key) -> str | int:
    return getattr(key, "name", getattr(key, "key", getattr(key, "idx", key)))


def _crc32(path: pathlib.Path) -> int:
    crc = 0
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def _file_checksums(folder: pathlib.Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): _crc32(path)
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != CHECKSUMS}


def _write_checksums(folder: pathlib.Path) -> None:
    partial = folder / f"{CHECKSUMS}.partial"
    partial.write_text(json.dumps(_file_checksums(folder)))
    os.replace(partial, folder / CHECKSUMS)


def verify_checksums(folder: pathlib.Path) -> None:
    """Raises ValueError naming the first file of checkpoint `folder` that is missing, added or
    different from when it was written; a checkpoint without `checksums.json` passes."""
    path = folder / CHECKSUMS
    if not path.exists():
        return
    try:
        expected = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{CHECKSUMS} is damaged ({error})") from None
    actual = _file_checksums(folder)
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            raise ValueError(f"{name} is missing")
        if name not in expected:
            raise ValueError(f"{name} was not part of the checkpoint")
        if expected[name] != actual[name]:
            raise ValueError(f"{name} does not match its checksum (damaged on disk)")


def _part(tree, path: tuple):
    """The sub-tree of `tree` (dataclasses and dicts) at `path`, a tuple of field names and keys."""
    for name in path:
        tree = tree[name] if isinstance(tree, (Mapping, list, tuple)) and not hasattr(tree, "_fields") else getattr(
            tree, name)
    return tree


def _put(tree: dict, path: tuple, value) -> None:
    """Sets `value` at `path` in the nested dict `tree`, making the dicts on the way."""
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def _with_part(tree, path: tuple, value):
    """`tree` with its sub-tree at `path` replaced by `value`."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        return {**tree, head: _with_part(tree[head], rest, value)}
    return tree.replace(**{head: _with_part(getattr(tree, head), rest, value)})


def _flat_state(state, flat_fields: dict) -> dict:
    """Today's nested train state laid out as formats 1-3 saved it: `{saved path: part}`."""
    layout: dict = {}
    for path, saved in flat_fields.items():
        _put(layout, saved, _part(state, path))
    return layout


def _nested_state(abstract_state, flat: dict, flat_fields: dict):
    """The train state of formats 1-3 (`flat`, as `_flat_state` lays it out) in today's tree;
    parts that format did not save keep `abstract_state`'s value, which must hold no arrays."""
    state = abstract_state
    for path, saved in flat_fields.items():
        try:
            state = _with_part(state, path, _part(flat, saved))
        except (KeyError, AttributeError):  # not saved (format 1 dropped parts without arrays)
            pass
    missing = [jax.tree_util.keystr(path) for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
               if isinstance(leaf, jax.ShapeDtypeStruct)]
    if missing:
        raise ValueError(f"the checkpoint's train state has no {', '.join(missing)}")
    return state


def _prune_empty(tree):
    """Format 1's layout: dict entries without arrays left out."""
    if not isinstance(tree, dict):
        return tree
    return {name: _prune_empty(value) for name, value in tree.items() if jax.tree.leaves(value)}


def _saved_layout(abstract_arrays: dict, saved_format: int) -> dict:
    """The arrays' tree as format `saved_format` wrote it."""
    layout = dict(abstract_arrays)
    if saved_format < 3:  # one cursor and size for all tasks
        scalar = jax.ShapeDtypeStruct((), abstract_arrays["buffer"].cursor.dtype)
        layout["buffer"] = abstract_arrays["buffer"].replace(cursor=scalar, size=scalar)
    if saved_format < 4:  # one flat train state
        state = abstract_arrays["train_state"]
        layout["train_state"] = _flat_state(state, type(state).flat_fields)
    if saved_format < 2:  # the train state without its array-less fields
        layout["train_state"] = _prune_empty(layout["train_state"])
    return layout


def _upgrade(abstract_arrays: dict, restored: dict, saved_format: int) -> dict:
    """Arrays restored in format `saved_format`, in today's tree."""
    arrays = dict(restored)
    if saved_format < 3:
        num_tasks = abstract_arrays["buffer"].cursor.shape
        buffer = restored["buffer"]
        arrays["buffer"] = buffer.replace(cursor=jnp.full(num_tasks, buffer.cursor, buffer.cursor.dtype),
                                          size=jnp.full(num_tasks, buffer.size, buffer.size.dtype))
    if saved_format < 4:
        state = abstract_arrays["train_state"]
        arrays["train_state"] = _nested_state(state, restored["train_state"], type(state).flat_fields)
    return arrays


def saved_path(state, path: tuple, saved_format: int) -> tuple:
    """Where format `saved_format` keeps the part of the train state `state` at `path`."""
    if saved_format >= 4:
        return path
    for nested, saved in type(state).flat_fields.items():
        if path[:len(nested)] == nested:
            return saved + path[len(nested):]
    raise ValueError(f"format {saved_format} has no place for the train state's {'.'.join(map(str, path))}")


def _check_shapes(expected: Any, restored: Any) -> None:
    def check(path, want, got):
        if tuple(want.shape) != tuple(np.shape(got)):
            raise ValueError(f"{jax.tree_util.keystr(path)} has shape {np.shape(got)}, expected {tuple(want.shape)}")

    jax.tree_util.tree_map_with_path(check, expected, restored)
