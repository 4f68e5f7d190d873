"""Interleaved timing of systems, each in a worker process of its own.

A *system* is a factory named `module:function` or `path/to/file.py:function`, called in a
fresh process as `function(config: dict) -> dict` and returning

    {"train": callable(G) -> None,  # G units of work (e.g. G updates); returns when they are done
     "static_G": bool,              # optional: True if a new G compiles anew (a jitted loop of G)
     ...}                           # anything else JSON-able, reported as the system's details

`measure_interleaved` starts the workers one after another (so no compilation or warm-up
overlaps another system), each warms up and calibrates G so that one `train(G)` takes about
`seconds`; then, in each of `repeats` rounds, every system makes one timed call in turn, so
slow drift of a shared machine reaches all systems alike. Thread pools of different libraries
never share a process, and each worker may run under its own interpreter. The workers need
only the standard library; a factory imports what it needs itself.

    python bench/workers.py SPEC --config JSON --seconds S   # one worker (the orchestrator's use)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable


@dataclasses.dataclass(frozen=True)
class System:
    name: str
    spec: str  # module:function or path/to/file.py:function
    python: str = sys.executable


class WorkerError(RuntimeError):
    """A worker exited or failed; the message carries the end of its stderr."""


def spread(values: list[float]) -> dict:
    """Median, min, max and all of `values`."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def measure_interleaved(systems: list[System], config: dict, seconds: float, repeats: int,
                        log: Callable[[str], None] = print) -> dict[str, dict]:
    """Per system name: `spec`, `python`, and either `error` (why its worker failed) or
    `ready` (G, first call, set-up time, the factory's details) and `calls`, one
    {"seconds", "units"} per round."""
    results = {system.name: {"spec": system.spec, "python": system.python} for system in systems}
    workers = []
    try:
        for system in systems:
            try:
                worker = _Worker(system, config, seconds)
                results[system.name]["ready"] = worker.reply()
            except WorkerError as error:
                results[system.name]["error"] = str(error)
                log(str(error))
                continue
            results[system.name]["calls"] = []
            workers.append(worker)
            log(f"ready: {system.name}, G = {results[system.name]['ready']['G']}, "
                f"set up in {results[system.name]['ready']['setup_s']:.1f} s")
        for round_ in range(repeats):
            for worker in list(workers):
                try:
                    results[worker.system.name]["calls"].append(worker.ask())
                except WorkerError as error:
                    results[worker.system.name]["error"] = str(error)
                    log(str(error))
                    workers.remove(worker)
            log(f"round {round_ + 1}/{repeats} done")
    finally:
        for worker in workers:
            worker.close()
    return results


def rates(result: dict) -> list[float]:
    """Units per second of each timed call of one system's result."""
    return [call["units"] / call["seconds"] for call in result["calls"]]


class _Worker:
    def __init__(self, system: System, config: dict, seconds: float):
        self.system = system
        self.stderr = tempfile.TemporaryFile(mode="w+")
        command = [system.python, __file__, system.spec, "--config", json.dumps(config), "--seconds", str(seconds)]
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=self.stderr, text=True, bufsize=1)
        except OSError as error:
            raise WorkerError(f"{system.name}: cannot start {system.python}: {error}") from error

    def reply(self) -> dict:
        line = self.process.stdout.readline()
        if line:
            return json.loads(line)
        code = self.process.wait()
        self.stderr.seek(0)
        tail = "\n".join(self.stderr.read().strip().splitlines()[-15:])
        raise WorkerError(f"{self.system.name} ({self.system.spec} under {self.system.python}) "
                          f"failed, exit code {code}:\n{tail}")

    def ask(self) -> dict:
        try:
            self.process.stdin.write("measure\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the worker has exited: reply() says why
        return self.reply()

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def load(spec: str) -> Callable[[dict], dict]:
    """The factory a spec names; a file's folder goes on sys.path for its own imports."""
    target, function = spec.rsplit(":", 1)
    if target.endswith(".py"):
        path = pathlib.Path(target).resolve()
        sys.path.insert(0, str(path.parent))
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    return getattr(module, function)


def _timed(train: Callable[[int], None], count: int) -> float:
    start = time.perf_counter()
    train(count)
    return time.perf_counter() - start


def calibrate(train: Callable[[int], None], static_G: bool, seconds: float) -> tuple[int, float]:
    """Warms `train` up and returns (G, seconds of the first call): G such that `train(G)` takes
    about `seconds`, from a timed probe of at least a tenth of that."""
    count = 1
    first = _timed(train, count)
    elapsed = _timed(train, count)
    while elapsed < seconds / 10:
        count = min(100 * count, math.ceil(1.5 * count * seconds / 10 / max(elapsed, 1e-9)))
        if static_G:
            train(count)
        elapsed = _timed(train, count)
    G = max(1, round(count * seconds / elapsed))
    if static_G and G != count:
        train(G)
    return G, first


def serve(spec: str, config: dict, seconds: float) -> None:
    """Worker: build the system, calibrate, report; then one timed call per line on stdin.
    Replies go to the original stdout; anything the system prints goes to stderr."""
    start = time.perf_counter()
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    system = load(spec)(config)
    train, static_G = system.pop("train"), bool(system.pop("static_G", False))
    G, first = calibrate(train, static_G, seconds)
    replies.write(json.dumps({"G": G, "first_call_s": first, "setup_s": time.perf_counter() - start,
                              "python": platform.python_version(), "details": system}) + "\n")
    for _ in sys.stdin:
        replies.write(json.dumps({"seconds": _timed(train, G), "units": G}) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec")
    parser.add_argument("--config", type=json.loads, default={})
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    serve(args.spec, args.config, args.seconds)
