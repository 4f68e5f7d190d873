"""The env worker process: builds one task's env, then answers `step`, `reset` and `call`
requests over a pipe until told to close or the training process is gone. Its other side is
`workers.WorkerVectorEnv`, which starts, watches and replaces these processes."""

from __future__ import annotations

import ctypes
import signal
import traceback
from typing import Any

import gymnasium as gym
from gymnasium.vector.utils import CloudpickleWrapper

_PR_SET_NAME = 15  # prctl option: the name of the calling thread, 15 bytes at most


def raised_at(error: BaseException) -> str:
    """`file:line in function` of the innermost frame of `error`'s traceback."""
    frames = traceback.extract_tb(error.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else "unknown place"


def _name_process(name: str) -> None:
    """Names this process in `ps` and `top` (Linux); elsewhere nothing happens."""
    try:
        ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _step(env: gym.Env, action) -> tuple:
    """One step with SAME_STEP autoreset, as gymnasium's vector envs report it."""
    obs, reward, terminated, truncated, info = env.step(action)
    if terminated or truncated:
        final_obs, final_info = obs, info
        obs, info = env.reset()
        info = {"final_info": final_info, "final_obs": final_obs, **info}
    return obs, reward, terminated, truncated, info


def _call(env: gym.Env, request: tuple) -> Any:
    name, args, kwargs = request
    attribute = env.get_wrapper_attr(name)
    return attribute(*args, **kwargs) if callable(attribute) else attribute


_COMMANDS = {"step": _step, "reset": lambda env, kwargs: env.reset(**kwargs), "call": _call}


def _report(error: Exception) -> tuple[str, str, str]:
    return type(error).__name__, str(error), raised_at(error)


def work(env_fn: CloudpickleWrapper, restart: int | None, connection, name: str) -> None:
    """A worker's life: build the env (`restart` passed when not None), report its spaces,
    then answer requests until told to close or the training process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _name_process(name)
    try:
        try:
            env = env_fn.fn() if restart is None else env_fn.fn(restart=restart)
        except Exception as error:
            connection.send(("error", _report(error)))
            return
        connection.send(("ok", (env.observation_space, env.action_space, dict(env.metadata), env.render_mode)))
        try:
            while True:
                command, payload = connection.recv()
                if command == "close":
                    connection.send(("ok", None))
                    return
                try:
                    reply = ("ok", _COMMANDS[command](env, payload))
                except Exception as error:
                    reply = ("error", _report(error))
                try:
                    connection.send(reply)
                except (OSError, EOFError):
                    raise
                except Exception as error:  # a result that pickle cannot write
                    connection.send(("error", _report(error)))
        finally:
            env.close()
    except (OSError, EOFError):  # the training process is gone
        return
