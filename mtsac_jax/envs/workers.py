"""Env workers: one process per task, each replaced on its own when it dies or hangs.

`WorkerVectorEnv` is the `async` vector env. Its `step`, `reset`, `call` and `get_attr` give
what gymnasium's `AsyncVectorEnv` gives with SAME_STEP autoreset (`final_obs`, `final_info`
and the `_<key>` masks included). Every request waits at most `timeout_s` for each worker's
answer. A worker that dies (a signal, the out-of-memory killer, a crash in native code) or
does not answer in time is killed and replaced by a new worker for the same task, whose env
is built again and reset; the request then raises `WorkersRestarted`, which names the tasks,
gives their new first observations and, for `step`, the other tasks' results. A task's env
function is called with `restart=k` for its k-th restart when it takes that argument (a new
random stream: `envs.task_env`). An env that raises is not restarted: `EnvWorkerError` names its task.

Workers are forked from a fork server that has imported the env family's module, so a worker
starts in a fraction of a second and the training process, with its threads, is never forked;
env functions a new process cannot import by name (from a config file's path) go by value. A worker ignores SIGINT and SIGTERM (the training
process handles them and closes its workers), exits when the training process is gone, and is
named after its label and task index in `ps` and `top` on Linux (`train-env-3`).
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib.machinery
import inspect
import multiprocessing
import multiprocessing.connection
import signal
import sys
import time
import weakref
from typing import Any, Callable, Sequence

import cloudpickle
import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import CloudpickleWrapper, batch_space, concatenate, create_empty_array, iterate

from mtsac_jax.envs import worker_process

DEFAULT_TIMEOUT_S = 60.0
STARTUP_TIMEOUT_S = 120.0  # a new worker has at least this long to build its env
CLOSE_TIMEOUT_S = 5.0


class EnvWorkerError(RuntimeError):
    """An env raised, or its worker could not be (re)started; the message names the task and the fix."""


@dataclasses.dataclass(frozen=True)
class WorkerFault:
    """A worker that died or hung, and was replaced."""

    index: int  # the task's index
    task: str  # the task's name
    what: str  # what happened, e.g. "died (killed by SIGKILL)"
    restart: int  # how many times this task's worker has been replaced, this time included


class WorkersRestarted(EnvWorkerError):
    """A request during which workers were replaced (their episodes are interrupted).

    `faults`: what happened to each; `obs`: {task index: the new env's first observation};
    `step_result`: for `step`, its (obs, reward, terminated, truncated, info), where the
    replaced tasks have their new observation, reward 0, neither termination nor truncation,
    and no info; None for other requests, which may be repeated.
    """

    def __init__(self, faults: list[WorkerFault], obs: dict[int, np.ndarray], step_result: tuple | None = None):
        self.faults, self.obs, self.step_result = faults, obs, step_result
        tasks = "; ".join(f"task {fault.task}: {fault.what}" for fault in faults)
        super().__init__(
            f"Env worker(s) had to be restarted ({tasks}), which interrupts their episodes. Fix: check the "
            "machine's memory and load and rerun; --config.env.vector_strategy=sync runs the envs in this process."
        )


def env_error_message(label: str, task: str, error_type: str, error: str, where: str) -> str:
    """The message for an env that raised: the task, the error, where it was raised and the fix."""
    return (
        f"The {label} of task {task} raised {error_type}: {error} (in {where}). The env cannot go on from "
        "here. Fix: check the env settings of the config (env.max_episode_steps, env.reward_function_version, "
        "...) or the env's code."
    )


@dataclasses.dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    connection: multiprocessing.connection.Connection


def _exit_description(worker: _Worker) -> str:
    worker.process.join(timeout=1.0)
    code = worker.process.exitcode
    if code is None:
        return "closed its connection"
    if code < 0:
        try:
            return f"died (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f"died (killed by signal {-code})"
    return f"died (exit code {code})"


def _kill(worker: _Worker | None) -> None:
    if worker is None:
        return
    if worker.process.is_alive():
        worker.process.kill()
    worker.process.join()
    worker.connection.close()


def _kill_all(workers: list) -> None:
    for index, worker in enumerate(workers):
        _kill(worker)
        workers[index] = None


def _takes_restart(env_fn: Callable) -> bool:
    try:
        return "restart" in inspect.signature(env_fn).parameters
    except (TypeError, ValueError):  # no signature to read
        return False


def _importable(module_name: str) -> bool:
    """Whether a new process finds the module by its name on `sys.path` (not one loaded from a path)."""
    top = module_name.split(".")[0]
    return top in sys.builtin_module_names or importlib.machinery.PathFinder.find_spec(top, sys.path) is not None


def _fork_server(env_fns: Sequence[Callable]) -> multiprocessing.context.BaseContext:
    """The fork server context, preloading the worker process's module and the env functions'
    modules (with those of the callables they are partials of: a family's `make_task_env`);
    unimportable ones go by value."""
    modules = {part.__module__ for fn in env_fns for part in (getattr(fn, "func", fn), *getattr(fn, "args", ()))
               if callable(part)}
    for name in modules - {"__main__"}:
        if name in sys.modules and not _importable(name):
            cloudpickle.register_pickle_by_value(sys.modules[name])
    context = multiprocessing.get_context("forkserver")
    preload = {"__main__", worker_process.__name__} | {name for name in modules if _importable(name)}
    context.set_forkserver_preload(sorted(preload))
    return context  # the preload has no effect once the server runs


class WorkerVectorEnv(gym.vector.VectorEnv):
    """One worker process per task, each restartable on its own (the module docstring says how).

    `env_fns`: one function per task building its env (called with `restart=k` on the k-th
    restart when it takes that argument); `task_names`: the tasks' names in messages;
    `timeout_s`: how long a worker may take to answer a request (`env.worker_timeout_s`);
    `label`: what the envs are ("train env", "eval env"), in messages and process names;
    `on_built`: called as each worker has built its env.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[..., gym.Env]],
        autoreset_mode: gym.vector.AutoresetMode | str = gym.vector.AutoresetMode.SAME_STEP,
        task_names: Sequence[str] | None = None,
        label: str = "env",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        on_built: Callable[[], None] | None = None,
    ):
        if gym.vector.AutoresetMode(autoreset_mode) != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError(f"{type(self).__name__} supports SAME_STEP autoreset only, not {autoreset_mode}.")
        self.env_fns = [CloudpickleWrapper(fn) for fn in env_fns]
        self.num_envs = len(self.env_fns)
        self.task_names = list(task_names) if task_names is not None else [str(i) for i in range(self.num_envs)]
        self.label, self.timeout_s = label, float(timeout_s)
        self.restarts = [0] * self.num_envs
        self._takes_restart = [_takes_restart(fn) for fn in env_fns]
        self._context = _fork_server(env_fns)
        self._workers: list[_Worker | None] = [None] * self.num_envs
        # Kills the workers when this env is collected or at exit, unless closed before. Registered
        # after multiprocessing's own exit hook so that it runs first: that hook would wait forever
        # for workers that ignore its SIGTERM.
        self._shutdown = weakref.finalize(self, _kill_all, self._workers)
        atexit.register(self._shutdown)
        try:
            for index in range(self.num_envs):
                self._workers[index] = self._start(index)
            specs = []
            for index in range(self.num_envs):
                specs.append(self._wait_started(index))
                if on_built is not None:
                    on_built()
        except BaseException:
            self._shutdown()
            raise
        observation_space, action_space, metadata, render_mode = specs[0]
        for index, spec in enumerate(specs):
            if spec[:2] != (observation_space, action_space):
                self._shutdown()
                raise EnvWorkerError(
                    f"The {label} of task {self.task_names[index]} has the spaces {spec[:2]}, unlike the first "
                    f"task's {(observation_space, action_space)}; a vector env batches equal spaces only."
                )
        self.single_observation_space, self.single_action_space = observation_space, action_space
        self.observation_space = batch_space(observation_space, self.num_envs)
        self.action_space = batch_space(action_space, self.num_envs)
        self.metadata = {**metadata, "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.render_mode = render_mode

    # ----- gymnasium's interface -----

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None):
        if seed is None or isinstance(seed, int):
            seeds = [None if seed is None else seed + index for index in range(self.num_envs)]
        else:
            seeds = list(seed)
        replies, restarted = self._request("reset", [{"seed": s, "options": options} for s in seeds])
        self._raise_restarted(restarted)
        infos = {}
        for index in range(self.num_envs):
            infos = self._add_info(infos, replies[index][1], index)
        return self._batch_obs([replies[index][0] for index in range(self.num_envs)]), infos

    def step(self, actions):
        replies, restarted = self._request("step", list(iterate(self.action_space, actions)))
        new_obs = {fault.index: obs for fault, obs in restarted}
        observations, rewards, terminations, truncations, infos = [], [], [], [], {}
        for index in range(self.num_envs):
            if index in new_obs:
                obs, reward, terminated, truncated = new_obs[index], 0.0, False, False
            else:
                obs, reward, terminated, truncated, info = replies[index]
                infos = self._add_info(infos, info, index)
            observations.append(obs)
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(truncated)
        result = (
            self._batch_obs(observations),
            np.array(rewards, dtype=np.float64),
            np.array(terminations, dtype=np.bool_),
            np.array(truncations, dtype=np.bool_),
            infos,
        )
        if restarted:
            raise WorkersRestarted([fault for fault, _ in restarted], new_obs, result)
        return result

    def call(self, name: str, *args, **kwargs) -> tuple:
        replies, restarted = self._request("call", [(name, args, kwargs)] * self.num_envs)
        self._raise_restarted(restarted)
        return tuple(replies[index] for index in range(self.num_envs))

    def get_attr(self, name: str) -> tuple:
        return self.call(name)

    def close_extras(self, terminate: bool = False, **kwargs) -> None:
        """Asks every worker to close its env and exit (at most `CLOSE_TIMEOUT_S` in all), then
        kills those left; `terminate` kills them at once."""
        if not terminate:
            deadline = time.monotonic() + CLOSE_TIMEOUT_S
            closing = {index: worker for index, worker in enumerate(self._workers)
                       if worker is not None and self._send(index, "close", None)}
            self._collect(closing, CLOSE_TIMEOUT_S)
            for worker in closing.values():
                worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        self._shutdown()
        atexit.unregister(self._shutdown)

    # ----- requests, faults and restarts -----

    def _start(self, index: int) -> _Worker:
        restart = self.restarts[index] if self._takes_restart[index] else None
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=worker_process.work,
            args=(self.env_fns[index], restart, theirs, f"{self.label.replace(' ', '-')}-{index}"),
            name=f"{self.label} worker of task {self.task_names[index]}",
            daemon=True,
        )
        process.start()
        theirs.close()
        return _Worker(process, ours)

    def _wait_started(self, index: int):
        """The new worker's spaces, metadata and render mode, once it has built its env."""
        replies, errors, failed = self._collect({index: self._workers[index]}, max(self.timeout_s, STARTUP_TIMEOUT_S))
        task = self.task_names[index]
        if index in errors:
            error_type, error, where = errors[index]
            raise EnvWorkerError(
                f"Building the {self.label} of task {task} raised {error_type}: {error} (in {where}). Fix: "
                "check the env settings of the config (env.*)."
            )
        if index in failed:
            raise EnvWorkerError(
                f"The {self.label} worker of task {task} {failed[index]} while building its env. Fix: check "
                "the machine's memory and rerun, or pass --config.env.vector_strategy=sync to build the envs in "
                "this process."
            )
        return replies[index]

    def _request(self, command: str, payloads: list) -> tuple[dict[int, Any], list[tuple[WorkerFault, np.ndarray]]]:
        """Sends `command` to every worker with its payload; returns the replies of the workers
        that answered and, for each worker that was replaced, its fault and new observation.
        An env that raised raises `EnvWorkerError` (once every worker has answered)."""
        if self.closed:
            raise EnvWorkerError(f"The {self.label}s were closed; no request can be made to them.")
        waiting, failed = {}, {}
        for index, payload in enumerate(payloads):
            if self._workers[index] is None:
                failed[index] = "was not running (its last start failed)"
            elif not self._send(index, command, payload):
                failed[index] = _exit_description(self._workers[index])
            else:
                waiting[index] = self._workers[index]
        replies, errors, late = self._collect(waiting, self.timeout_s)
        failed.update(late)
        if errors:
            index = min(errors)
            raise EnvWorkerError(self._env_error(index, errors[index]))
        return replies, [self._restart(index, what) for index, what in sorted(failed.items())]

    def _collect(self, waiting: dict[int, _Worker], timeout_s: float):
        """Waits up to `timeout_s` in all for one answer of each worker in `waiting`: ({index:
        result}, {index: (error type, message, where)} for envs that raised, {index: what
        happened} for workers that died (their connection ends) or did not answer in time)."""
        replies, errors, failed = {}, {}, {}
        deadline = time.monotonic() + timeout_s
        for index, worker in waiting.items():
            try:
                if not worker.connection.poll(max(0.0, deadline - time.monotonic())):
                    failed[index] = f"did not answer within {timeout_s:g} s"
                    continue
                status, value = worker.connection.recv()
            except (EOFError, OSError):
                failed[index] = _exit_description(worker)
                continue
            (replies if status == "ok" else errors)[index] = value
        return replies, errors, failed

    def _restart(self, index: int, what: str) -> tuple[WorkerFault, np.ndarray]:
        """Replaces the worker of task `index` by a new one, reset; its fault and first observation."""
        _kill(self._workers[index])
        self._workers[index] = None
        self.restarts[index] += 1
        try:
            self._workers[index] = self._start(index)
            self._wait_started(index)
            if not self._send(index, "reset", {}):
                raise EnvWorkerError(f"the new worker {_exit_description(self._workers[index])}")
            replies, errors, failed = self._collect({index: self._workers[index]}, self.timeout_s)
            if errors:
                raise EnvWorkerError(self._env_error(index, errors[index]))
            if failed:
                raise EnvWorkerError(f"the new worker {failed[index]} when reset")
        except EnvWorkerError as error:
            raise EnvWorkerError(
                f"The {self.label} worker of task {self.task_names[index]} {what}, and the worker started in its "
                f"place failed too: {error}"
            ) from error
        return WorkerFault(index, self.task_names[index], what, self.restarts[index]), replies[index][0]

    def _send(self, index: int, command: str, payload) -> bool:
        """Sends a request to worker `index`; False when its connection is broken (it died)."""
        try:
            self._workers[index].connection.send((command, payload))
        except OSError:
            return False
        return True

    def _raise_restarted(self, restarted: list[tuple[WorkerFault, np.ndarray]]) -> None:
        if restarted:
            raise WorkersRestarted([fault for fault, _ in restarted], {fault.index: obs for fault, obs in restarted})

    def _env_error(self, index: int, report: tuple[str, str, str]) -> str:
        return env_error_message(self.label, self.task_names[index], *report)

    def _batch_obs(self, observations: list) -> np.ndarray:
        out = create_empty_array(self.single_observation_space, n=self.num_envs, fn=np.zeros)
        return concatenate(self.single_observation_space, observations, out)
