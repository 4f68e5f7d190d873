"""Meta-World v3 task descriptions and their fixed sentence embeddings: CARE's task context.

CARE (Sodhani et al. 2021, "Multi-Task Reinforcement Learning with Context-based
Representations") embeds each task's natural-language description once with a pretrained
language model and learns a map from that fixed embedding to the task's context. The package
ships a description and its embedding for each of the 50 Meta-World v3 tasks
(`data/metaworld_task_descriptions.json`, written by `scripts/embed_task_descriptions.py`); a
user's JSON file, such as mtrl's RoBERTa embeddings keyed by Meta-World v1 names, can stand in
for it. See docs/task_descriptions.md.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np

from mtsac_jax.registry import ConfigError, check_choice

SHIPPED = "metaworld"
SHIPPED_PATH = pathlib.Path(__file__).parent / "data" / "metaworld_task_descriptions.json"
KEY = "agent.multitask.task_encoder.description_embeddings"

# Meta-World v1 names that are not their v3 name with another version suffix.
V1_RENAMES = {"dissassemble-v1": "disassemble-v3"}


def v3_name(name: str) -> str:
    """The Meta-World v3 name of a v1, v2 or v3 task name (`reach-v1` -> `reach-v3`)."""
    if name in V1_RENAMES:
        return V1_RENAMES[name]
    base, dash_v, version = name.rpartition("-v")
    return f"{base}-v3" if dash_v and version in ("1", "2") else name


def task_description(task_name: str) -> str:
    """The shipped one-sentence description of a Meta-World task (v1, v2 or v3 name)."""
    tasks = _read(SHIPPED_PATH)["tasks"]
    name = v3_name(task_name)
    check_choice("Meta-World task", name, tasks)
    return tasks[name]["description"]


def description_embeddings(source: str, task_names: Sequence[str]) -> np.ndarray:
    """The (len(task_names), E) float32 description embeddings of `task_names`, in that order:
    CARE's fixed task-description inputs.

    `source` is "metaworld" for the shipped embeddings, or the path of a JSON file in the
    shipped format (`{"tasks": {name: {"embedding": [...]}}}`) or a flat `{name: [floats]}`
    mapping, as mtrl's; a key with a Meta-World v1 or v2 name stands for its v3 task, and a v3
    key wins over them. Raises ConfigError naming the cause and the fix."""
    path = SHIPPED_PATH if source == SHIPPED else pathlib.Path(source).expanduser()
    table = _embeddings_by_v3_name(_read(path))
    missing = [name for name in task_names if name not in table]
    if missing:
        raise ConfigError(
            f"{KEY}: {path} has no embedding for task(s) {', '.join(missing)}; it has "
            f"{len(table)}: {', '.join(sorted(table))}. Add the missing tasks to the file, or set "
            f"{KEY}={SHIPPED} for the shipped embeddings of all 50 Meta-World v3 tasks."
        )
    rows = [_row(table[name], name, path) for name in task_names]
    sizes = {name: row.size for name, row in zip(task_names, rows)}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name}: {size}" for name, size in sizes.items())
        raise ConfigError(
            f"{KEY}: the embeddings in {path} differ in length ({listed}); "
            "all tasks need the same length."
        )
    return np.stack(rows)


def _read(path: pathlib.Path) -> dict:
    if not path.is_file():
        raise ConfigError(
            f"{KEY}: no file {path}. Give the path of a JSON file of task-description "
            f"embeddings, or {SHIPPED!r} for the shipped ones."
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(
            f"{KEY}: {path} is not readable JSON ({error}). Fix or replace the file."
        ) from error
    if not isinstance(data, dict):
        raise ConfigError(
            f"{KEY}: {path} holds a JSON {type(data).__name__}, not an object mapping task "
            "names to embeddings."
        )
    return data


def _embeddings_by_v3_name(data: dict) -> dict:
    """{v3 task name: raw embedding} from either file format; v3 keys before v1/v2 aliases."""
    if isinstance(data.get("tasks"), dict):
        entries = {
            name: entry.get("embedding") if isinstance(entry, dict) else entry
            for name, entry in data["tasks"].items()
        }
    else:
        entries = data
    table = {}
    for name in sorted(entries, key=lambda name: v3_name(name) != name):
        table.setdefault(v3_name(name), entries[name])
    return table


def _row(values, name: str, path: pathlib.Path) -> np.ndarray:
    try:
        row = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        row = None
    if row is None or row.ndim != 1 or not row.size or not np.isfinite(row).all():
        raise ConfigError(
            f"{KEY}: the embedding of {name} in {path} is not a non-empty list of finite numbers."
        )
    return row
