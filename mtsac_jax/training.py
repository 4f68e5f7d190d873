"""The training loop: CPU env workers feed a device-resident buffer; jitted SAC updates.

Per vector step (`Trainer.step`): act (uniform random for `init_steps`, then the sampled
policy), dispatch the jitted update asynchronously, step the envs on the CPU while it runs,
insert the transition, then log, evaluate and save when due. Evaluation runs at every positive
multiple of `eval_freq` and at the last step; a checkpoint is written every `save_freq` steps,
at the last step and when SIGTERM or SIGINT asks the run to stop. Running again with the same
workdir resumes bit-exactly from the newest checkpoint.

One code path serves 1..N seeds and 1..P processes: the seeds' train states and buffers share
a leading seed axis (`layout.Layout`, size 1 for one seed), and each seed's envs, logs,
checkpoints, env faults and non-finite updates are its `seed_run.SeedRun`'s.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import threading
import time
from typing import Callable

import jax
import ml_collections
import numpy as np

from mtsac_jax import agents, envs, numerics, processes, replay_buffer, sharding
from mtsac_jax.config import validate
from mtsac_jax.errors import TrainingError
from mtsac_jax.layout import Layout
from mtsac_jax.policy import DeterministicPolicy
from mtsac_jax.run_log import BuildProgress
from mtsac_jax.seed_run import SeedRun
from mtsac_jax.setups import evaluation_sets
from mtsac_jax.workdir import STOPPED, prepare_workdir, seed_workdirs


class StopSignals:
    """Turns SIGTERM and SIGINT into a request to stop after the current step."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def memory_bytes() -> int | None:
    """The memory of the first device: an accelerator's own, the machine's for CPU (None if unknown)."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(state, buffer) -> None:
    """Refuses, before anything is allocated, a train state and buffer (abstract shapes) that
    alone outgrow the device's memory: XLA would otherwise abort while compiling or allocating."""
    gib = lambda tree: sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree)) / 2**30  # noqa: E731
    available = memory_bytes()
    if available is not None and gib(state) + gib(buffer) > available / 2**30:
        raise TrainingError(
            f"out of memory before starting: the train state (networks, target networks, optimizer moments) needs "
            f"{gib(state):,.1f} GiB and the replay buffer {gib(buffer):,.1f} GiB, more than the {available / 2**30:.1f} "
            f"GiB of this {jax.devices()[0].platform.upper()} device. Fix: lower the network sizes "
            "(agent.actor/critic hidden_dim, num_layers) or replay_buffer.capacity.")


class Trainer:
    """One run of `num_seeds` seeds: their `SeedRun`s, and the agent's train state and replay
    buffer with the seed axis, resumable from the seeds' checkpoints. The seeds share each
    jitted update, act and insert call; a multi-seed run writes a single-seed workdir per seed,
    `WORKDIR/seed_<seed>/`."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: pathlib.Path):
        self.config, self.workdir = config, workdir
        self.experiment = config.experiment
        self.runs: list[SeedRun] = []
        try:
            seeds, names = seed_workdirs(config, workdir), envs.task_names(config.env)
            with BuildProgress("building the train envs", len(seeds) * len(names[processes.task_share(len(names))]),
                               self.experiment.progress_every_s, quiet=not processes.is_main()) as progress:
                for seed_config, seed_workdir, label in seeds:
                    self.runs.append(SeedRun(seed_config, seed_workdir, label, progress.advance))
            first = self.runs[0]
            self.names, self.num_tasks, self.setup = first.names, first.num_tasks, first.setup
            space = first.train_envs.single_observation_space
            self.obs_shape, self.obs_dtype = space.shape, envs.observations(np.zeros(0, space.dtype)).dtype
            self.obs_dim = int(np.prod(self.obs_shape))
            self.action_dim = first.train_envs.single_action_space.shape[0]
            batch_size_per_task = config.replay_buffer.batch_size // self.num_tasks
            self.agent = agents.build(
                config.agent, agents.EnvSpec(self.num_tasks, self.obs_dim, self.action_dim, tuple(self.names),
                                             self.obs_shape, str(self.obs_dtype)),
                batch_size_per_task=batch_size_per_task, num_updates_per_call=self.experiment.num_updates_per_step,
            )
            unseen = [task_set for _, task_set in evaluation_sets(config)[1:]]
            if unseen and self.agent.unseen_eval_actions is None:
                raise TrainingError(
                    f"setup {config.setup.name} evaluates on env ids the agent never trains on ({', '.join(unseen)}), "
                    f"and the policy of agent {config.agent.name} with network {config.agent.network.name} has a part of "
                    "its own per training env (a head, an embedding or a whole network): it cannot act in an unseen env. "
                    "Fix: a policy all envs share (network=mlp or bronet, with agent.multitask.should_use_multi_head_"
                    "policy, should_use_disjoint_policy and should_use_task_encoder False).")
            self.layout = Layout(sharding.plan(config.num_seeds, self.num_tasks, batch_size_per_task))
            state, buffer = jax.eval_shape(self.agent.init, first.init_key), jax.eval_shape(self._new_buffer)
            check_memory(*(jax.tree.map(lambda leaf: jax.ShapeDtypeStruct((len(self.runs), *leaf.shape), leaf.dtype),
                                        part) for part in (state, buffer)))
            # one seed's checkpoint arrays, as a checkpoint is restored
            whole, by_task = self.layout.placement.seed_shardings()
            obs = jax.ShapeDtypeStruct((self.num_tasks, *self.obs_shape), self.obs_dtype)
            self.abstract = jax.tree.map(
                lambda leaf, where: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=where),
                {"train_state": state, "buffer": buffer, "obs": obs},
                {"train_state": jax.tree.map(lambda _: whole, state), "buffer": jax.tree.map(lambda _: by_task, buffer),
                 "obs": whole})
        except BaseException:
            self.close()
            raise
        self.state, self.buffer = self.layout.assemble([self.agent.init(run.init_key) for run in self.runs],
                                                       [self._new_buffer() for _ in self.runs])
        self.act_keys = self.layout.replicated(jax.numpy.stack([run.act_key for run in self.runs]))
        # the agent's update, dropped (the state given back) when its result is not finite
        self.update = self.layout.jit_update(numerics.guarded(self.agent.update), self.state)
        self.sample_actions = jax.jit(self.layout.map(self.agent.sample_actions, in_axes=(0, 0, 0, None)))
        self.insert = jax.jit(self.layout.map(replay_buffer.insert), donate_argnums=0)

    def _new_buffer(self) -> replay_buffer.ReplayBuffer:
        return replay_buffer.init(self.num_tasks, self.config.replay_buffer.capacity // self.num_tasks,
                                  self.obs_shape, self.action_dim, self.obs_dtype)

    def close(self) -> None:
        for run in self.runs:
            run.close()

    @property
    def active(self) -> list[tuple[int, SeedRun]]:
        return [(index, run) for index, run in enumerate(self.runs) if run.stopped is None]

    def each_run(self, work: Callable[[int, SeedRun], None]) -> None:
        """`work(index, run)` for each active seed. In a multi-seed run a seed whose work fails
        (non-finite updates, an env, its workers) is stopped alone; the run fails once none is left."""
        for index, run in self.active:
            try:
                work(index, run)
            except (TrainingError, envs.EnvWorkerError) as error:
                if len(self.runs) == 1:
                    raise
                kept = "" if isinstance(error, TrainingError) else f" {run.kept_checkpoint()}"
                run.stop(f"{run.label} stopped: {error}{kept}")
        if not self.active:
            raise TrainingError("Every seed of this run stopped; what stopped each is said above and in "
                                f"{self.workdir}/seed_<seed>/{STOPPED}.")

    # ----- checkpoints -----

    def save(self, step: int) -> None:
        self.each_run(lambda index, run: run.save(step, {
            "train_state": self.layout.take(self.state, index), "buffer": self.layout.take(self.buffer, index)}))

    def restore(self) -> int:
        """Restores each active seed's newest good checkpoint, the newest step all of them have
        (a seed's newer ones are dropped); returns that step (0 when starting fresh)."""
        if not self.active:
            raise TrainingError("Every seed of this run stopped earlier; what stopped each is in "
                                f"{self.workdir}/seed_<seed>/{STOPPED}. Fix: resume a seed alone with --workdir="
                                f"{self.workdir}/seed_<seed>, or start a new run.")
        for run in self.runs:  # a seed stopped earlier: acted for (vmapped) but never stepped
            if run.stopped is not None:
                run.obs = np.zeros((self.num_tasks, *self.obs_shape), self.obs_dtype)
        target = None
        while True:
            restored = [run.restore(self.abstract, target) for _, run in self.active]
            steps = {step for step, _ in restored}
            if len(steps) == 1:
                break
            target = min(steps)
        step = steps.pop()
        for _, run in self.active:
            run.checkpointer.discard_after(step)
            if step == 0:
                run.set_earlier_logs_aside()
        if step:
            parts = {index: arrays for (index, _), (_, arrays) in zip(self.active, restored)}
            kept = {"train_state": self.state, "buffer": self.buffer.replace(batch_sharding=None)}
            seeds = [parts.get(index) or self.layout.take(kept, index) for index in range(len(self.runs))]
            self.state, self.buffer = self.layout.assemble([seed["train_state"] for seed in seeds],
                                                           [seed["buffer"] for seed in seeds])
        return step

    # ----- the loop -----

    def act(self, step: int) -> np.ndarray:
        """The actions of every seed (seeds, this process's tasks, action)."""
        if step <= self.experiment.init_steps:
            return self.layout.stack_host([run.warmup_actions(self.action_dim) if run.stopped is None
                                           else np.zeros((self.num_tasks, self.action_dim), np.float32)
                                           for run in self.runs])
        obs = self.layout.to_global(self.layout.stack_host([run.obs for run in self.runs]))
        actions = self.sample_actions(self.agent.policy_params(self.state), obs, self.act_keys, step)
        return self.layout.to_local(actions)

    def evaluate(self, step: int) -> None:
        policy_params = self.layout.on_this_process(self.agent.policy_params(self.state))

        self.each_run(lambda index, run: run.evaluate(step, DeterministicPolicy(
            self.agent.eval_actions, self.layout.take(policy_params, index),
            unseen_eval_actions=self.agent.unseen_eval_actions)))

    def run(self) -> None:
        experiment = self.experiment
        if processes.is_main():
            print(self.layout.placement.describe(), flush=True)
        with StopSignals() as stop:
            start_step = self.restore()
            for run in self.runs:
                if run.stopped is not None:
                    print(f"[{run.label}] stopped earlier, stays stopped: {run.stopped}", flush=True)
                elif processes.is_main():
                    run.open_log(start_step, self.setup.headline_metric)
            protocol = envs.family_of(self.config.env.name).describe(self.config.env)
            for _, run in self.active if processes.is_main() else ():
                run.say(
                    f"{'Resuming' if start_step else 'Training'} {self.config.agent.name} (network "
                    f"{self.config.agent.network.name}, gradient {self.config.agent.gradient.name}) on {self.config.env.name} "
                    f"({self.num_tasks} task(s)) at step {start_step} of {experiment.num_train_steps}; "
                    f"workdir {run.workdir}"
                )
                if protocol:
                    run.log.protocol(protocol)
                if start_step >= experiment.num_train_steps:
                    run.say("The run is already complete; raise experiment.num_train_steps to train further.")

            def stop_on_resume_fault(index, run):  # workers restarted too often while resuming
                if run.faults.error:
                    raise TrainingError(f"{run.faults.error} {run.kept_checkpoint()}")
            self.each_run(stop_on_resume_fault)
            clock = Clock()
            try:
                for step in range(start_step + 1, experiment.num_train_steps + 1):
                    if self.step(step, clock, stop):
                        return
            except envs.EnvWorkerError as error:  # an env raised: the state is not one to save
                raise envs.EnvWorkerError(f"{error} {self.runs[0].kept_checkpoint()}") from error

    def step(self, step: int, clock: Clock, stop: StopSignals) -> bool:
        """One vector step: act, dispatch the update, step the envs, insert, then log, evaluate
        and save when due. Returns whether the run stops here."""
        actions = self.act(step)
        # Learning starts once the warm-up transitions (at least one) are in the buffer.
        updating = step > max(self.experiment.init_steps, 1)
        if updating:  # dispatched asynchronously; its state is the one given if it was not finite
            self.state, metrics, fault = self.update(self.state, self.buffer)
        obs_before, transitions = [run.obs for run in self.runs], [None] * len(self.runs)

        def step_envs(index, run):
            transitions[index] = run.step_envs(actions[index], step)
        self.each_run(step_envs)
        self.buffer = self.insert(self.buffer, *self._insert_args(obs_before, actions, transitions))
        if updating:  # the next step's actions wait for this update anyway; only its fault flags come over
            bad = np.asarray(fault["any"])  # (seeds,)
            self.each_run(lambda index, run: run.adopt(metrics, fault, index, bool(bad[index]), step))
        clock.stepped(self.experiment.num_updates_per_step if updating else 0)
        for _, run in self.active:
            if run.log is not None:
                run.log.advance()
        return self._after_step(step, clock, stop)

    def _after_step(self, step: int, clock: Clock, stop: StopSignals) -> bool:
        """Logs, evaluates and saves when due; stops the run on a fault or a stop signal."""
        experiment = self.experiment
        last_step = step == experiment.num_train_steps
        if step % experiment.log_freq == 0 or last_step:
            perf = clock.interval(self.num_tasks)
            for _, run in self.active:
                run.log_train(step, perf)
        with clock.paused():  # eval and saving are not throughput
            if step % experiment.eval_freq == 0 or last_step:
                self.evaluate(step)
            # a stop asked for or forced on any process stops them all, after saving
            halting = processes.any_process(stop.received is not None or any(run.faults.error for _, run in self.active))
            if step % experiment.save_freq == 0 or last_step or halting:
                self.save(step)

        def stop_on_fault(index, run):
            if run.faults.error:
                raise TrainingError(
                    f"{run.faults.error} A checkpoint of step {step} is saved in {run.checkpointer.directory}: "
                    "once fixed, rerun the same command to resume from it."
                )
        self.each_run(stop_on_fault)
        if stop.received or (halting and jax.process_count() > 1):
            cause = stop.received or "another process of the run (its console says why)"
            for _, run in self.active:
                run.say(f"Stopped by {cause} at step {step}; checkpoint saved in "
                        f"{run.checkpointer.directory}. Rerun the same command with the same --workdir to resume.")
            return True
        return False

    def _insert_args(self, obs_before: list[np.ndarray], actions: np.ndarray, transitions: list) -> tuple:
        """The replay buffer's insert arguments, over the seed axis; a stopped seed stores nothing."""
        rows = []
        for obs, transition in zip(obs_before, transitions):
            if transition is None:
                zeros = np.zeros(self.num_tasks, np.float32)
                rows.append((obs, zeros, obs, zeros, np.zeros(self.num_tasks, bool)))
            else:
                rows.append((obs, transition.reward, transition.final_obs, transition.terminated, ~transition.dropped))
        args = [self.layout.stack_host(list(column)) for column in zip(*rows)]
        args.insert(1, actions)
        return tuple(self.layout.to_global(arg) for arg in args)


class Clock:
    """Throughput between log records: env-steps/s and updates/s, with evaluation and saving left out."""

    def __init__(self):
        self.start = self.interval_start = time.perf_counter()
        self.steps, self.updates = 0, 0

    def stepped(self, updates: int) -> None:
        self.steps += 1
        self.updates += updates

    def interval(self, num_tasks: int) -> dict:
        """The figures since the last record; starts the next interval."""
        now = time.perf_counter()
        perf = {"perf/env_steps_per_s": self.steps * num_tasks / (now - self.interval_start),
                "perf/updates_per_s": self.updates / (now - self.interval_start),
                "perf/elapsed_s": now - self.start}
        self.interval_start, self.steps, self.updates = now, 0, 0
        return perf

    @contextlib.contextmanager
    def paused(self):
        """Time spent inside is not counted in the interval."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.interval_start += time.perf_counter() - began


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> None:
    """Trains for `experiment.num_train_steps` vector steps into `workdir`, resuming from
    its newest checkpoint when there is one."""
    validate(config)
    workdir = pathlib.Path(workdir)
    changes = prepare_workdir(workdir, config)
    for change in changes if processes.is_main() else ():
        print(f"Config change on resume (allowed): {change}", flush=True)
    if processes.is_main():
        print(f"Starting: building the train envs of {config.env.name} ({len(envs.task_names(config.env))} task(s)) "
              f"and the {config.agent.name} agent; the eval envs are built at their first use", flush=True)
    trainer = Trainer(config, workdir)
    try:
        trainer.run()
    finally:
        trainer.close()
