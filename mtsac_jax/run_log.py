"""Run outputs: `train.jsonl`, `eval.jsonl`, TensorBoard events in `tb/`, the console, and
Weights & Biases when the run tracks there (`mtsac_jax.tracking`).

Every key of a record is deterministic on CPU for a fixed config and seed, except the
wall-clock figures whose names start with `perf/`. A resumed run first drops the records
past its checkpoint, so the logs continue without duplicated or missing lines. On a
terminal the console shows a live progress bar (steps, env-steps/s, updates/s, ETA,
the latest evaluation's headline metric, e.g. mean success); otherwise (nohup, SLURM, a pipe)
it prints plain lines, and a plain progress line (step, steps/s since the last such line, time
left at that rate) every `experiment.progress_every_s` seconds between them. An evaluation record holds means over tasks of the setup's metrics and `tasks`, the
same metrics per task.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import tensorboardX
import tqdm

from mtsac_jax.setups import BASE_MODE, record_mode
from mtsac_jax.tracking import Tracker

LOG_FILES = ("train.jsonl", "eval.jsonl")


def keep_records_up_to(workdir: pathlib.Path, step: int) -> list[str]:
    """Rewrites the JSONL logs without the records logged after `step`. A damaged line (cut
    short by a kill, or not a record) is moved to `<log>.damaged`; returns a warning per log
    that had any."""
    warnings = []
    for name in LOG_FILES:
        path = workdir / name
        if not path.exists():
            continue
        kept, damaged = [], []
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record_step = json.loads(line)["step"]
                keep = record_step <= step
            except (ValueError, KeyError, TypeError):
                damaged.append((number, line))
                continue
            if keep:
                kept.append(line)
        if damaged:
            aside = path.with_name(path.name + ".damaged")
            with open(aside, "a", encoding="utf-8") as handle:
                handle.writelines(line + "\n" for _, line in damaged)
            warnings.append(f"warning: {path}: line(s) {', '.join(str(n) for n, _ in damaged)} are not JSON records "
                            f"(cut short or damaged); moved them to {aside}.")
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return warnings


EVAL_KEYS = ("step", "env_steps", "tasks", "mode")  # the keys of an evaluation record that are not metrics
_LABELS = {"episode_reward": "reward"}  # shorter names in the per-task table


class RunLog:
    def __init__(
        self,
        workdir: pathlib.Path,
        num_train_steps: int,
        start_step: int,
        stream=sys.stdout,
        headline_metric: str = "success",
        label: str | None = None,
        progress_every_s: float = 60.0,
        tracker: Tracker | None = None,
    ):
        """`label`: one seed's of a multi-seed run; its console lines start with `[label]` and
        there is no progress bar. Without a bar, a progress line every `progress_every_s`
        seconds (0: never). `tracker`: the run's W&B run, sent every record as well."""
        damaged = keep_records_up_to(workdir, start_step)
        self._train = open(workdir / "train.jsonl", "a", encoding="utf-8")
        self._eval = open(workdir / "eval.jsonl", "a", encoding="utf-8")
        # purge_step hides events a killed run wrote past its last checkpoint.
        self._tensorboard = tensorboardX.SummaryWriter(str(workdir / "tb"), purge_step=start_step + 1)
        self._num_train_steps = num_train_steps
        self._stream = stream
        self._bar = tqdm.tqdm(
            total=num_train_steps,
            initial=start_step,
            unit="step",
            file=stream,
            disable=label is not None or not stream.isatty(),
            dynamic_ncols=True,
            # Rates come from the log interval (env-steps/s, updates/s in the postfix), not from
            # tqdm's own smoothed step rate, so the bar shows one figure per quantity.
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
        )
        self._bar_stats: dict[str, str] = {}
        self._headline_metric = headline_metric
        self._prefix = f"[{label}] " if label else ""
        self._progress_every_s = progress_every_s
        self._last_line = time.monotonic()
        self._step = start_step
        self._rate_from = (self._last_line, start_step)  # the rate is measured since the last progress line
        self._tracker = tracker
        for warning in damaged:
            self._print(warning)

    def advance(self, steps: int = 1) -> None:
        self._bar.update(steps)
        self._step += steps
        if self._bar.disable and self._progress_every_s > 0:
            now = time.monotonic()
            if now - self._last_line >= self._progress_every_s:
                self._print(self._progress(now))

    def _progress(self, now: float) -> str:
        step, total = self._step, self._num_train_steps
        since, from_step = self._rate_from
        rate = (step - from_step) / max(now - since, 1e-9)
        self._rate_from = (now, step)
        line = f"progress: step {step}/{total} ({100 * step / total:.0f}%), {rate:.1f} steps/s"
        if rate <= 0:
            return line
        hours, minutes = divmod(int((total - step) / rate // 60), 60)
        return f"{line}, about {hours}h{minutes:02d}m left"

    def train(self, record: dict) -> None:
        _append(self._train, record)
        scalars = {key: value for key, value in record.items() if "/" in key}
        for key, value in scalars.items():
            self._tensorboard.add_scalar(key, value, record["step"])
        if self._tracker is not None:
            self._tracker.log({"env_steps": record["env_steps"], **scalars}, record["step"])
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
        self._bar_stats["env-steps/s"] = f"{record['perf/env_steps_per_s']:.0f}"
        self._bar_stats["updates/s"] = f"{record['perf/updates_per_s']:.1f}"
        self._bar.set_postfix(self._bar_stats, refresh=False)
        self._print(" | ".join(parts))

    def eval(self, record: dict) -> None:
        _append(self._eval, record)
        scalars = eval_scalars(record)
        for tag, value in scalars.items():
            self._tensorboard.add_scalar(tag, value, record["step"])
        if self._tracker is not None:
            self._tracker.log(scalars, record["step"])
        if record_mode(record) == BASE_MODE:
            headline = record[self._headline_metric]
            self._bar_stats[self._headline_metric] = (f"{headline:.2f}" if self._headline_metric == "success"
                                                      else f"{headline:.1f}")
            self._bar.set_postfix(self._bar_stats, refresh=False)
        self._print(format_eval(record))

    def videos(self, paths: dict[str, pathlib.Path], step: int) -> None:
        """The evaluation videos of step `step`, one per task, to W&B when the run tracks there."""
        if self._tracker is not None:
            self._tracker.videos(paths, step)

    def message(self, text: str) -> None:
        self._print(text)

    def protocol(self, text: str) -> None:
        """The run's protocol in words: on the console and as TensorBoard text `protocol`."""
        self._print(f"protocol: {text}")
        self._tensorboard.add_text("protocol", text)

    def close(self) -> None:
        self._bar.close()
        self._train.close()
        self._eval.close()
        self._tensorboard.close()
        if self._tracker is not None:
            self._tracker.close()

    def _print(self, text: str) -> None:
        self._last_line = time.monotonic()
        text = "\n".join(self._prefix + line for line in text.splitlines()) if self._prefix else text
        if self._bar.disable:
            print(text, file=self._stream, flush=True)
        else:
            self._bar.write(text, file=self._stream)


class BuildProgress:
    """What a run is building (its envs, one per task) while it lasts, on the console as the run's
    log: a bar over the tasks on a terminal, gone once done; otherwise a plain line every
    `every_s` seconds (0: none), so a short build prints nothing. `quiet`: nothing at all."""

    def __init__(self, what: str, total: int, every_s: float, quiet: bool = False, stream=sys.stdout):
        self._what, self._total, self._every_s, self._stream = what, total, every_s, stream
        self._start = self._last_line = time.monotonic()
        self._done = 0
        terminal = stream.isatty()
        self._bar = tqdm.tqdm(total=total, desc=what, unit="task", file=stream, leave=False, dynamic_ncols=True,
                              disable=quiet or not terminal)
        self._lines = not quiet and not terminal and every_s > 0

    def __enter__(self) -> BuildProgress:
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()

    def advance(self) -> None:
        """One more task's env is built."""
        self._done += 1
        self._bar.update()
        now = time.monotonic()
        if self._lines and now - self._last_line >= self._every_s:
            self._last_line = now
            print(f"{self._what}: {self._done}/{self._total} tasks, {now - self._start:.0f} s", file=self._stream,
                  flush=True)


def _metrics(record: dict) -> list[str]:
    return [key for key in record if key not in EVAL_KEYS]


def eval_scalars(record: dict) -> dict[str, float]:
    """An evaluation record's figures by their TensorBoard tag: `eval/<metric>` and
    `eval/<metric>/<task>`, with the record's `mode` instead of `eval` when it has one."""
    prefix = record.get("mode") or "eval"
    scalars = {}
    for metric in _metrics(record):
        scalars[f"{prefix}/{metric}"] = record[metric]
        scalars.update({f"{prefix}/{metric}/{name}": task[metric] for name, task in record["tasks"].items()})
    return scalars


def format_eval(record: dict) -> str:
    """An evaluation record as a mean line and a per-task table."""
    metrics = _metrics(record)
    means = ", ".join(f"{metric} {record[metric]:.3f}" if metric == "success" else f"{metric} {record[metric]:.1f}"
                      for metric in metrics)
    mode = f" ({record['mode'].removeprefix('eval_')} envs)" if "mode" in record else ""
    lines = [f"eval step {record['step']}{mode}: {means}"]
    width = max(len(name) for name in record["tasks"])
    for name, task in record["tasks"].items():
        cells = "  ".join(f"success {task[m]:.2f}" if m == "success" else f"{_LABELS.get(m, m)} {task[m]:.1f}"
                          for m in metrics)
        lines.append(f"  {name:<{width}}  {cells}")
    return "\n".join(lines)



def _append(handle, record: dict) -> None:
    handle.write(json.dumps(record) + "\n")
    handle.flush()
