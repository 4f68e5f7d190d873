"""Env worker faults (docs/reliability.md, "Env worker faults"): a worker that dies or hangs is
replaced and its failed transition dropped; one restarted too often stops the run with a
checkpoint; an env that raises names its task; old checkpoints resume with per-task cursors."""

import collections
import contextlib
import functools
import json
import importlib.util
import io
import math
import os
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import gymnasium as gym
import jax
import numpy as np
import pytest

from mtsac_jax import checkpoint, envs, replay_buffer
from mtsac_jax import policy as policy_module
from mtsac_jax.config import ConfigError
from mtsac_jax.env_faults import RestartCounter
from mtsac_jax.env_state import SnapshotWrapper
from mtsac_jax.envs.metaworld import make_task_env
from mtsac_jax.envs.workers import WorkerVectorEnv
from mtsac_jax.training import Trainer, train_and_evaluate
from tests.conftest import REPO, SMOKE, read_jsonl, tiny_config, train

ASYNC = "--config.env.vector_strategy=async"


# ----- helpers: a train.py run read line by line, and its worker processes -----


class Run:
    """train.py in a subprocess, its output (stdout and stderr) read as it comes."""

    def __init__(self, workdir, *args):
        self.process = subprocess.Popen([sys.executable, "train.py", f"--workdir={workdir}", *args], cwd=REPO,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines, self.output = queue.Queue(), []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern, timeout=300) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, f"the run ended without {pattern!r}:\n{''.join(self.output)[-3000:]}"
            self.output.append(line)
            if match := re.search(pattern, line):
                return match

    def finish(self, timeout=300) -> tuple[int, str]:
        while (line := self.lines.get(timeout=timeout)) is not None:
            self.output.append(line)
        return self.process.wait(timeout=60), "".join(self.output)

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def worker_pid(root: int, name: str, not_pid: int | None = None, timeout=120) -> int:
    """The live process named `name` (`train-env-<i>`, `eval-env-<i>`) below process `root`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children, names = collections.defaultdict(list), {}
        for entry in pathlib.Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                names[int(entry.name)] = (entry / "comm").read_text().strip()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z":
                children[int(fields[1])].append(int(entry.name))
        below, todo = [], [root]
        while todo:
            below.extend(children[todo[-1]])
            todo.extend(children[todo.pop()])
        found = [pid for pid in below if names.get(pid) == name and pid != not_pid]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no process {name} below {root}")


# ----- end to end -----


def test_sigkilled_workers_of_an_mt10_run_are_replaced_and_the_run_finishes(tmp_path):
    """A train worker and an eval worker SIGKILLed mid-run: each is named in one warning, the
    train task's failed transition is the one transition it lacks, the evaluation is redone."""
    workdir = tmp_path / "mt10"
    run = Run(workdir, "--config=configs/metaworld_mt10.py:smoke", ASYNC, "--config.experiment.num_train_steps=130")
    try:
        run.wait_for(r"^step 60/130")
        os.kill(worker_pid(run.process.pid, "train-env-3"), signal.SIGKILL)  # door-open-v3
        # Between the checkpoint of step 100 (which snapshots the eval envs) and the evaluation of step 120.
        deadline = time.monotonic() + 300
        while not (workdir / "checkpoints" / "100").is_dir():
            assert run.process.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(worker_pid(run.process.pid, "eval-env-5"), signal.SIGKILL)  # drawer-close-v3
        returncode, output = run.finish()
    finally:
        run.kill()
    assert returncode == 0, output[-3000:]
    train_warning = re.findall(r"warning: step (\d+): the train env worker of task door-open-v3 died \(killed by "
                               r"SIGKILL\); a new worker took its place \(restart 1, .*\)\. Its unfinished episode is "
                               r"dropped: the transition of this step is not stored", output)
    assert len(train_warning) == 1, output[-3000:]
    assert re.search(r"warning: step 120: the eval env worker of task drawer-close-v3 died \(killed by SIGKILL\); "
                     r"a new worker took its place .* The evaluation of step 120 is done again from its start", output)
    records = read_jsonl(workdir / "train.jsonl")
    assert [r["step"] for r in records] == [60, 120, 130]
    assert all(math.isfinite(value) for value in records[-1].values() if isinstance(value, float))
    assert [r["step"] for r in read_jsonl(workdir / "eval.jsonl")] == [120, 130]
    checkpointer = checkpoint.Checkpointer(workdir, keep=2)
    try:
        metadata = checkpointer.array_metadata(130)["buffer"]
        buffer = checkpointer.restore_part(130, {"buffer": {"size": metadata["size"], "cursor": metadata["cursor"]}})
    finally:
        checkpointer.close()
    expected = [130] * 10
    expected[3] = 129  # the transition of the step that failed, and only it, is missing
    assert np.asarray(buffer["buffer"]["size"]).tolist() == expected
    assert np.asarray(buffer["buffer"]["cursor"]).tolist() == expected


@pytest.mark.e2e
def test_a_hung_worker_is_replaced_after_the_timeout_and_too_many_restarts_stop_with_a_checkpoint(tmp_path):
    """SIGSTOP: replaced once `env.worker_timeout_s` has passed. SIGKILL of its successor: the
    second restart within the window is one too many, so the run saves and stops in one paragraph;
    the same command (more steps) resumes from that checkpoint."""
    workdir = tmp_path / "run"
    settings = [ASYNC, "--config.env.worker_timeout_s=1", "--config.env.max_worker_restarts=1"]
    run = Run(workdir, SMOKE, *settings, "--config.experiment.num_train_steps=100000")
    try:
        run.wait_for(r"^step 60/")
        stopped = worker_pid(run.process.pid, "train-env-0")
        os.kill(stopped, signal.SIGSTOP)
        run.wait_for(r"warning: step \d+: the train env worker of task reach-v3 did not answer within 1 s; a new "
                     r"worker took its place \(restart 1")
        os.kill(worker_pid(run.process.pid, "train-env-0", not_pid=stopped), signal.SIGKILL)
        returncode, output = run.finish()
    finally:
        run.kill()
    assert returncode == 1, output[-3000:]
    assert "Traceback" not in output
    (paragraph,) = [line for line in output.splitlines() if line.startswith("error: ")]
    match = re.fullmatch(
        r"error: The train env worker of task reach-v3 was restarted 2 times within env\.worker_restart_window_s=3600 "
        r"s, more than env\.max_worker_restarts=1 allows; the last time it died \(killed by SIGKILL\) at step \d+\. "
        r".*Fix: .* A checkpoint of step (\d+) is saved in \S+: once fixed, rerun the same command to resume from "
        r"it\.", paragraph)
    assert match, paragraph
    step = int(match[1])
    assert (workdir / "checkpoints" / str(step)).is_dir()
    result = train(workdir, *settings, f"--config.experiment.num_train_steps={step + 10}")
    assert f"Resuming state_sac (network mlp, gradient mean) on metaworld-mt1 (1 task(s)) at step {step} of {step + 10}" in result.stdout
    assert read_jsonl(workdir / "train.jsonl")[-1]["step"] == step + 10


def raising_step(at):
    """SnapshotWrapper.step raising on its `at`-th call (the train env's step `at` while no
    evaluation has run)."""
    original, calls = SnapshotWrapper.step, [0]

    def step(self, action):
        calls[0] += 1
        if calls[0] == at:
            raise ValueError("the simulated fault")
        return original(self, action)

    return step


def test_a_sync_env_that_raises_names_its_task_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    config = tiny_config()
    config.env.vector_strategy = "sync"
    config.experiment.num_train_steps = 100
    monkeypatch.setattr(SnapshotWrapper, "step", raising_step(at=80))
    with pytest.raises(envs.EnvWorkerError) as raised:
        train_and_evaluate(config, tmp_path / "run")
    assert re.fullmatch(
        r"The train env of task reach-v3 raised ValueError: the simulated fault \(in \S+test_env_faults\.py:\d+ in "
        r"step\)\. The env cannot go on from here\. Fix: .* The newest checkpoint \(step 50\) in \S+ is kept: "
        r"rerun the same command to resume from it\.", str(raised.value))
    assert sorted(path.name for path in (tmp_path / "run" / "checkpoints").iterdir()) == ["50"]


@pytest.mark.e2e
def test_a_checkpoint_with_one_cursor_for_all_tasks_resumes_exactly(smoke_run, tmp_path):
    """Format 2 (before per-task cursors and nested agent states): checkpoint 200 rewritten so,
    the run resumed from it writes the uninterrupted run's logs."""
    reference, _ = smoke_run
    workdir = tmp_path / "format2"
    shutil.copytree(reference, workdir)
    shutil.rmtree(workdir / "checkpoints" / "240")
    config = tiny_config()
    trainer = Trainer(config, workdir)
    try:
        assert trainer.restore() == 200
        buffer = trainer.buffer
        trainer.buffer = buffer.replace(cursor=buffer.cursor[:, 0], size=buffer.size[:, 0])  # (seeds,)
        trainer.state = checkpoint._flat_state(trainer.state, type(trainer.state).flat_fields)
        run = trainer.runs[0]
        run.checkpointer.close()
        shutil.rmtree(workdir / "checkpoints" / "200")
        run.checkpointer = checkpoint.Checkpointer(workdir, keep=2)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(checkpoint, "FORMAT", 2)
            trainer.save(200)
        assert run.checkpointer.array_metadata(200)["buffer"]["cursor"].shape == ()
    finally:
        trainer.close()
    result = train(workdir)
    assert "at step 200 of 240" in result.stdout and "warning" not in result.stdout
    for name in ("train.jsonl", "eval.jsonl"):
        assert read_jsonl(workdir / name) == read_jsonl(reference / name), name


# ----- the vector env, the buffer, the seed streams, the keys -----


def pendulums(num_tasks=3, timeout_s=10.0):
    fns = [functools.partial(gym.make, "Pendulum-v1", max_episode_steps=50)] * num_tasks
    return WorkerVectorEnv(fns, task_names=["a", "b", "c"][:num_tasks], label="train env", timeout_s=timeout_s)


def test_the_failed_step_s_transition_never_reaches_the_buffer():
    vector_env = pendulums()
    try:
        buffer = replay_buffer.init(3, 10, 3, 1)
        obs, _ = vector_env.reset(seed=0)
        obs = obs.astype(np.float32)

        def step_and_insert(buffer, obs):
            actions = np.full((3, 1), 0.5, np.float32)
            step = envs.step(vector_env, actions, drop_restarted=True)
            buffer = replay_buffer.insert_jit(buffer, obs, actions, step.reward, step.final_obs, step.terminated,
                                              keep=~step.dropped)
            return buffer, step

        for _ in range(3):
            buffer, step = step_and_insert(buffer, obs)
            obs = step.next_obs
        before = jax.device_get(buffer)
        os.kill(vector_env._workers[1].process.pid, signal.SIGKILL)
        buffer, step = step_and_insert(buffer, obs)
        assert step.dropped.tolist() == [False, True, False] and not step.done.any()
        (fault,) = step.faults
        assert (fault.index, fault.task, fault.what, fault.restart) == (1, "b", "died (killed by SIGKILL)", 1)
        assert np.asarray(buffer.size).tolist() == [4, 3, 4]
        for name in ("obs", "action", "reward", "next_obs", "terminated"):
            np.testing.assert_array_equal(getattr(buffer, name)[1], getattr(before, name)[1], err_msg=name)
        # Task b goes on from its new env's first observation, which starts its next transition.
        first_obs = step.next_obs[1]
        buffer, step = step_and_insert(buffer, step.next_obs)
        assert np.asarray(buffer.size).tolist() == [5, 4, 5]
        np.testing.assert_array_equal(buffer.obs[1, 3], first_obs)
        assert vector_env.restarts == [0, 1, 0]
    finally:
        vector_env.close()


MY_ENVS = """
import gymnasium as gym


def make(length):
    return gym.make("Pendulum-v1", max_episode_steps=length)


class Broken(gym.Wrapper):
    def step(self, action):
        raise RuntimeError("the env broke")


def make_broken():
    return Broken(make(10))
"""


@pytest.fixture
def my_envs(tmp_path):
    """A module of env functions loaded from its path, as a config file or an extension is: a
    worker cannot import it by name."""
    (tmp_path / "my_envs.py").write_text(MY_ENVS)
    spec = importlib.util.spec_from_file_location("my_envs_from_a_path", tmp_path / "my_envs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as ml_collections does with a config file
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_env_functions_of_a_module_loaded_from_its_path_reach_the_workers(my_envs):
    vector_env = WorkerVectorEnv([functools.partial(my_envs.make, 7)] * 2)
    try:
        vector_env.reset(seed=0)
        steps = [vector_env.step(np.zeros((2, 1), np.float32)) for _ in range(7)]
        assert steps[-1][3].all() and "final_obs" in steps[-1][4]
    finally:
        vector_env.close()


def test_an_env_that_raises_in_a_worker_names_its_task_and_is_not_restarted(my_envs):
    vector_env = WorkerVectorEnv([functools.partial(my_envs.make, 10), my_envs.make_broken], task_names=["a", "b"],
                                 label="train env")
    try:
        vector_env.reset(seed=0)
        with pytest.raises(envs.EnvWorkerError, match=r"^The train env of task b raised RuntimeError: the env broke "
                                                       r"\(in \S+:\d+ in step\)") as raised:
            envs.step(vector_env, np.zeros((2, 1), np.float32), drop_restarted=True)
        assert not isinstance(raised.value, envs.WorkersRestarted) and vector_env.restarts == [0, 0]
    finally:
        vector_env.close()


@pytest.mark.e2e
def test_a_process_that_exits_without_closing_its_workers_does_not_hang():
    """Even when its exit hooks would run multiprocessing's (which SIGTERMs and joins workers,
    which ignore SIGTERM) before the vector env's finalizer."""
    script = ("import weakref\nclass Early: pass\nearly = Early()\nweakref.finalize(early, print, 'finalized')\n"
              "import functools, gymnasium as gym\nfrom mtsac_jax.envs.workers import WorkerVectorEnv\n"
              "envs = WorkerVectorEnv([functools.partial(gym.make, 'Pendulum-v1')] * 2)\nenvs.reset(seed=0)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "finalized" in result.stdout, result.stderr[-3000:]


def test_a_stopped_worker_is_replaced_once_the_timeout_has_passed():
    vector_env = pendulums(timeout_s=0.5)
    try:
        vector_env.reset(seed=0)
        stopped = vector_env._workers[2].process
        os.kill(stopped.pid, signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(envs.WorkersRestarted, match=r"task c: did not answer within 0\.5 s") as raised:
            vector_env.reset(seed=0)
        assert time.monotonic() - start >= 0.5
        assert stopped.exitcode == -signal.SIGKILL and list(raised.value.obs) == [2]
        assert raised.value.step_result is None  # a reset, which may be repeated
        obs, _ = vector_env.reset(seed=0)
        assert obs.shape == (3, 3)
    finally:
        vector_env.close()


def test_a_restart_draws_the_task_s_env_from_a_stream_of_its_own():
    env_config = {"use_one_hot": False, "max_episode_steps": 5, "reward_function_version": "v2", "fixed_goal": False}

    def goals(**restart):
        env = envs.task_env(make_task_env, env_config, "reach-v3", 0, 1, 3, False, None, {}, **restart)
        return [tuple(np.round(env.reset()[0][-3:], 6)) for _ in range(4)]

    assert goals() == goals(restart=0)  # the first env's stream, as before restarts existed
    assert goals(restart=1) == goals(restart=1)
    assert goals(restart=1) != goals() and goals(restart=2) != goals(restart=1)


def test_restarts_are_counted_within_the_window():
    now = [0.0]
    counter = RestartCounter(window_s=10.0, clock=lambda: now[0])
    assert [counter.add("a"), counter.add("b")] == [1, 1]
    now[0] = 5.0
    assert counter.add("a") == 2
    now[0] = 12.0
    assert counter.add("a") == 2  # the restart at 0 s has left the window


@pytest.mark.parametrize("key, value", [("worker_timeout_s", 0.0), ("worker_restart_window_s", -1.0),
                                        ("max_worker_restarts", 0)])
def test_worker_keys_out_of_range_are_refused(key, value):
    config = tiny_config()
    config.env[key] = value
    with pytest.raises(ConfigError, match=rf"env\.{key}={value!r} must be .* Fix: pass --config\.env\.{key}="):
        envs.validate(config.env)



@pytest.mark.e2e
def test_evaluate_py_names_a_worker_killed_as_it_starts(smoke_run, tmp_path):
    """evaluate.py with async workers, an eval worker SIGKILLed as soon as it exists: killed while
    building its env, a clean error naming the task; killed later, a warning and the evaluation
    done again. Either way no traceback."""
    workdir = tmp_path / "run"
    shutil.copytree(smoke_run[0], workdir)
    config = json.loads((workdir / "config.json").read_text())
    config["env"]["vector_strategy"] = "async"
    (workdir / "config.json").write_text(json.dumps(config))
    process = subprocess.Popen([sys.executable, "evaluate.py", f"--workdir={workdir}", "--episodes=1"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        os.kill(worker_pid(process.pid, "eval-env-0"), signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert "Traceback" not in stderr, stderr[-3000:]
    if process.returncode:
        assert re.fullmatch(r"error: The eval env worker of task reach-v3 died \(killed by SIGKILL\) while building "
                            r"its env\. Fix: .*\s*", stderr), stderr[-3000:]
    else:
        assert "The evaluation is done again from its start." in stderr and "reach-v3" in stdout


@pytest.mark.e2e
def test_evaluate_py_does_its_evaluation_again_after_a_killed_worker(smoke_run):
    """evaluate.py's evaluation meets a dead eval worker: one warning names the task, the worker
    is replaced and the evaluation is done again from its start."""
    config = policy_module.load_config(smoke_run[0])
    config.unlock()
    config.env.vector_strategy = "async"
    policy = policy_module.load_policy(smoke_run[0])
    eval_envs = envs.make_vector_env(config.env, config.seed, evaluation=True)
    eval_envs.reset()
    os.kill(worker_pid(os.getpid(), "eval-env-0"), signal.SIGKILL)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        record = policy_module.evaluate_policy(policy, config, 2, eval_envs)
    assert len(re.findall(r"^warning: .*task reach-v3: died \(killed by SIGKILL\).* The evaluation is done again "
                          r"from its start\.$", stderr.getvalue(), re.M)) == 1, stderr.getvalue()
    assert 0.0 <= record["success"] <= 1.0 and list(record["tasks"]) == ["reach-v3"]
