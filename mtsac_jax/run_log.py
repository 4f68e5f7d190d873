"""Run outputs: `train.jsonl`, `eval.jsonl` and a concise console line per record.

Every key of a record is deterministic on CPU for a fixed config and seed, except the
wall-clock figures whose names start with `perf/`.
"""

from __future__ import annotations

import json
import pathlib
import sys


class RunLog:
    def __init__(self, workdir: pathlib.Path, num_train_steps: int, stream=sys.stdout):
        self._train = open(workdir / "train.jsonl", "a", encoding="utf-8")
        self._eval = open(workdir / "eval.jsonl", "a", encoding="utf-8")
        self._num_train_steps = num_train_steps
        self._stream = stream

    def train(self, record: dict) -> None:
        _append(self._train, record)
        parts = [f"step {record['step']}/{self._num_train_steps}", f"env_steps {record['env_steps']}"]
        for key, label in (
            ("train/success", "success"),
            ("train/episode_reward", "reward"),
            ("train/critic_loss", "critic"),
            ("train/actor_loss", "actor"),
            ("train/alpha_mean", "alpha"),
            ("perf/env_steps_per_s", "env-steps/s"),
        ):
            if key in record:
                parts.append(f"{label} {record[key]:.4g}")
        self._print(" | ".join(parts))

    def eval(self, record: dict) -> None:
        _append(self._eval, record)
        lines = [f"eval step {record['step']}: success {record['success']:.3f}, episode_reward {record['episode_reward']:.1f}"]
        width = max(len(name) for name in record["tasks"])
        for name, task in record["tasks"].items():
            lines.append(f"  {name:<{width}}  success {task['success']:.2f}  reward {task['episode_reward']:.1f}")
        self._print("\n".join(lines))

    def message(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        self._train.close()
        self._eval.close()

    def _print(self, text: str) -> None:
        print(text, file=self._stream, flush=True)


def _append(handle, record: dict) -> None:
    handle.write(json.dumps(record) + "\n")
    handle.flush()
