"""One seed of a run: its envs, logs and checkpoints, a complete single-seed workdir.

In a run over several processes (`mtsac_jax.processes`) each process has the envs of its share
of the tasks (`processes.task_share`); process 0 writes the logs (and tracks the run in Weights &
Biases with `experiment.wandb`). Env worker faults (`env_faults`) and non-finite updates
(`nan_policy`) are handled per seed, so a seed of a multi-seed run can stop alone.
"""

from __future__ import annotations

import pathlib
import time
from typing import Callable

import gymnasium as gym
import jax
import ml_collections
import numpy as np

from mtsac_jax import envs, processes, tracking, video
from mtsac_jax.checkpoint import EVALUATION_START, Checkpointer
from mtsac_jax.config import task_names
from mtsac_jax.env_faults import DROPPED_BETWEEN_STEPS, DROPPED_IN_STEP, EnvFaults
from mtsac_jax.episode_stats import EpisodeStats
from mtsac_jax.nan_policy import NanPolicy
from mtsac_jax.policy import DeterministicPolicy, TaskSharePolicy
from mtsac_jax.registry import AGENTS
from mtsac_jax.run_log import BuildProgress, RunLog
from mtsac_jax.setups import SETUPS, evaluation_sets, merge_task_records
from mtsac_jax.workdir import STOPPED


def update_record(metrics: dict, seed: int, names: tuple[str, ...], per_task: tuple[str, ...]) -> dict:
    """Seed `seed`'s part of the last adopted update's metrics (finite: `numerics.guarded`), each
    (seeds, T): the mean over tasks as `train/<metric>`, and for the agent's `per_task` metrics
    the mean as `train/<metric>_mean` and each task's as `train/<metric>/<task>`."""
    metrics = {key: np.asarray(value)[seed] for key, value in jax.device_get(metrics).items()}
    record = {f"train/{key}": float(value.mean()) for key, value in metrics.items() if key not in per_task}
    for key in per_task:
        record[f"train/{key}_mean"] = float(metrics[key].mean())
        record.update({f"train/{key}/{name}": float(value) for name, value in zip(names, metrics[key])})
    return record


class SeedRun:
    """One seed's envs, logs and checkpoints, in `workdir`; `label` names the seed in a multi-seed run.
    `on_built` is called as each train env is built. The eval envs are built at their first use
    (the first evaluation, or a checkpoint before it), the same envs whenever that is."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: pathlib.Path, label: str | None,
                 on_built: Callable[[], None] | None = None):
        self.config, self.workdir, self.label = config, workdir, label
        self.experiment = config.experiment
        self.names = task_names(config.env)
        self.num_tasks = len(self.names)
        self.tasks = processes.task_share(self.num_tasks)
        self.setup = SETUPS.get(config.setup.name)
        self.per_task_metrics = AGENTS.get(config.agent.name).per_task_metrics
        self.train_envs = envs.make_vector_env(config.env, config.seed, tasks=self.tasks, on_built=on_built)
        # the eval envs' task set (None: the run's tasks) by their group in a checkpoint: `eval`, then `eval_<set>`
        # per unseen set (hipbmdp), evaluated whole by the process that writes the logs
        self.eval_sets = {"eval": None, **{mode: task_set for mode, task_set in evaluation_sets(config)[1:]
                                           if processes.is_main()}}
        self.eval_envs: dict[str, gym.vector.VectorEnv] = {}  # by group, once built (`eval_env`)
        self.eval_snapshots_to_restore: dict[str, list[bytes]] = {}  # a restored checkpoint's, until built
        self.init_key, self.act_key = jax.random.split(jax.random.key(config.seed))
        self.warmup_rng = np.random.default_rng(config.seed)
        self.episode_stats = EpisodeStats(self.train_envs.num_envs, envs.family_of(config.env.name).reports_success)
        self.checkpointer = Checkpointer(workdir, self.experiment.keep_checkpoints)
        self.faults = EnvFaults(config.env, self.say, self.kept_checkpoint)
        self.nan_policy = NanPolicy(self.experiment, self.names, self.say, self.kept_checkpoint)
        self.video_failed = False
        self.evaluation_start = None  # the step of the latest evaluation, and the eval envs' snapshots from just before it
        self.obs = None
        self.metrics = None  # the last adopted update's metrics of every seed, and this seed's index
        self.messages: list[str] = []  # said before the log is open
        self.log: RunLog | None = None
        self.stopped = (workdir / STOPPED).read_text().strip() if label and (workdir / STOPPED).is_file() else None

    def say(self, text: str) -> None:
        if self.log is not None:
            self.log.message(text)
        elif processes.is_main():
            self.messages.append(text)
        else:  # processes other than 0 write no logs
            print(f"[process {jax.process_index()}] {text}", flush=True)

    def open_log(self, start_step: int, headline_metric: str) -> None:
        tracker = (tracking.Tracker(self.config, self.workdir, start_step, multi_seed=self.label is not None)
                   if self.experiment.wandb.enabled else None)
        self.log = RunLog(self.workdir, self.experiment.num_train_steps, start_step, headline_metric=headline_metric,
                          label=self.label, progress_every_s=self.experiment.progress_every_s, tracker=tracker)
        for message in self.messages:
            self.log.message(message)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        self.checkpointer.close()
        self.train_envs.close()
        for vector_env in self.eval_envs.values():
            vector_env.close()

    def stop(self, reason: str) -> None:
        """Stops this seed for the rest of a multi-seed run, and for its resumptions."""
        reason += (f" This seed stays stopped when the run resumes; once fixed, go on with it alone: python train.py "
                   f"--config={self.workdir / 'config.json'} --workdir={self.workdir}")
        self.stopped = reason
        self.say(f"error: {reason}")
        (self.workdir / STOPPED).write_text(reason + "\n")

    def kept_checkpoint(self) -> str:
        steps = self.checkpointer.steps()
        if not steps:
            return "No checkpoint was written yet: the same command starts this run afresh."
        return (f"The newest checkpoint (step {steps[-1]}) in {self.checkpointer.directory} is kept: rerun the same "
                "command to resume from it.")

    # ----- checkpoints -----

    def save(self, step: int, arrays: dict) -> None:
        """Writes checkpoint `step`: `arrays` (this seed's train state and buffer), the envs'
        snapshots (at a step with an evaluation, the eval envs' from just before it too), the
        observations and the host-side streams, of every process's tasks."""
        env_blobs = {
            "train": self.faults.retry("train", step, DROPPED_BETWEEN_STEPS, lambda: list(self.train_envs.call("snapshot")),
                                       on_restart=self._restarted_between_steps),
            **self._eval_snapshots(step),
        }
        evaluated = self.evaluation_start is not None and self.evaluation_start[0] == step
        if evaluated:  # evaluate.py reproduces this step's evaluation from them
            env_blobs.update({EVALUATION_START + group: blobs for group, blobs in self.evaluation_start[1].items()})
        meta = {
            "step": step,
            "warmup_rng": self.warmup_rng.bit_generator.state,
            "episode_stats": self.episode_stats.to_json(),
            "eval_episodes": self.experiment.num_eval_episodes if evaluated else None,
        }
        parts = processes.gather((env_blobs, self.obs))  # the checkpoint holds every process's tasks
        env_blobs = {group: sum((blobs.get(group, []) for blobs, _ in parts), []) for group in env_blobs}
        obs = np.concatenate([obs for _, obs in parts])
        self.checkpointer.save(step, {**arrays, "obs": obs}, env_blobs, meta)

    def restore(self, abstract: dict, at_most: int | None = None) -> tuple[int, dict | None]:
        """Restores the newest good checkpoint (of step `at_most` or earlier); returns its step
        and its `train_state` and `buffer` (0 and None when starting fresh)."""
        self.obs = np.zeros((self.train_envs.num_envs, *abstract["obs"].shape[1:]), abstract["obs"].dtype)
        self.eval_snapshots_to_restore = {}
        restored = self.checkpointer.restore_latest(abstract, self.say, at_most)
        if restored is None:
            obs, _ = self.faults.retry("train", 0, "All train envs are reset again.", self.train_envs.reset)
            self.obs = envs.observations(obs)
            return 0, None
        step, arrays, env_blobs, meta = restored
        self.obs = np.asarray(arrays.pop("obs"))[self.tasks]
        self.faults.retry("train", step, "Its env is restored from the checkpoint all the same.",
                          lambda: self.train_envs.call("restore", env_blobs["train"]))
        self.eval_snapshots_to_restore = {group: env_blobs[group] for group in self.eval_sets}
        self.warmup_rng.bit_generator.state = meta["warmup_rng"]
        self.episode_stats.load_json(meta["episode_stats"], self.tasks)
        return step, arrays

    def _eval_snapshots(self, step: int) -> dict[str, list[bytes]]:
        """The eval envs' snapshots by their group in a checkpoint (a restored checkpoint's for
        those not built since)."""
        def snapshots(group: str) -> list[bytes]:
            if group in self.eval_snapshots_to_restore:
                return self.eval_snapshots_to_restore[group]
            vector_env = self.eval_env(group, step)
            return self.faults.retry("eval", step, "Evaluations start their episodes afresh anyway.",
                                     lambda: list(vector_env.call("snapshot")))
        return {group: snapshots(group) for group in self.eval_sets}

    def eval_env(self, group: str, step: int) -> gym.vector.VectorEnv:
        """The eval envs of `group`, built at their first use, in the state of the restored
        checkpoint's snapshots if there is one."""
        if group not in self.eval_envs:
            task_set = self.eval_sets[group]
            which = {"evaluation": True, "tasks": self.tasks} if task_set is None else {"task_set": task_set}
            count = self.train_envs.num_envs if task_set is None else len(envs.unseen_task_sets(self.config.env)[task_set])
            with BuildProgress(f"building the {task_set or 'eval'} envs", count, self.experiment.progress_every_s,
                               quiet=not processes.is_main()) as progress:
                self.eval_envs[group] = envs.make_vector_env(self.config.env, self.config.seed, **which,
                                                             on_built=progress.advance)
        if group in self.eval_snapshots_to_restore:
            snapshots = self.eval_snapshots_to_restore.pop(group)
            self.faults.retry("eval", step, "Its env is restored from the checkpoint all the same.",
                              lambda: self.eval_envs[group].call("restore", snapshots))
        return self.eval_envs[group]

    def set_earlier_logs_aside(self) -> None:
        """A workdir with logs but no usable checkpoint starts over: its logs move to
        `logs_before_<time>/` instead of being overwritten."""
        earlier = [self.workdir / name for name in ("train.jsonl", "eval.jsonl", "tb") if (self.workdir / name).exists()]
        if not processes.is_main() or not any(path.is_dir() or path.stat().st_size for path in earlier):
            return
        aside = self.workdir / f"logs_before_{time.strftime('%Y%m%d-%H%M%S')}"
        aside.mkdir()
        for path in earlier:
            path.rename(aside / path.name)
        self.say(f"{self.workdir} has logs but no usable checkpoint: starting over from step 0. "
                 f"The earlier logs are kept in {aside}.")

    def _restarted_between_steps(self, restarted: envs.WorkersRestarted) -> None:
        """Train workers replaced between steps: their tasks act next from their new envs' first observation."""
        obs = np.array(self.obs)
        for index, first_obs in restarted.obs.items():
            obs[index] = first_obs
        self.obs = obs
        self.episode_stats.interrupt(list(restarted.obs))

    # ----- one step -----

    def warmup_actions(self, action_dim: int) -> np.ndarray:
        """Uniform actions for this process's tasks: its rows of every task's, as one process draws them."""
        return self.warmup_rng.uniform(-1.0, 1.0, (self.num_tasks, action_dim)).astype(np.float32)[self.tasks]

    def step_envs(self, actions: np.ndarray, step: int) -> envs.Step:
        transition = envs.step(self.train_envs, actions, drop_restarted=True)
        self.faults.note(transition.faults, "train", step, DROPPED_IN_STEP)
        self.episode_stats.add(transition)
        self.obs = transition.next_obs
        return transition

    def adopt(self, metrics, fault, seed: int, bad: bool, step: int) -> None:
        """The update's result for seed `seed` of every seed's `metrics` and `fault` (left on the
        device: only a log record or a dropped update reads them), `bad` if not finite."""
        if bad:
            self.nan_policy.dropped(jax.tree.map(lambda leaf: leaf[seed], fault), step)
        else:
            self.nan_policy.adopted()
            self.metrics = (metrics, seed)

    def log_train(self, step: int, perf: dict) -> None:
        record = {"step": step, "env_steps": step * self.num_tasks}
        record.update(self.episode_stats.flush())
        if self.metrics is not None:
            record.update(update_record(*self.metrics, self.names, self.per_task_metrics))
        record.update(perf)
        record.update(self.nan_policy.record())
        if self.log is not None:
            self.log.train(record)

    def evaluate(self, step: int, policy: DeterministicPolicy) -> None:
        """Evaluates `policy` on this process's tasks and logs the record of all of them; with
        unseen task sets, `policy.unseen` on each set too, one record per set (`mode`)."""
        self.evaluation_start = (step, {})
        record = {"step": step, "env_steps": step * self.num_tasks}
        names = self.names[self.tasks]
        share = policy if self.tasks == slice(None) else TaskSharePolicy(policy, self.tasks, self.num_tasks)
        evaluation = self._evaluated(step, share, "eval", names)
        if jax.process_count() > 1:
            evaluation = merge_task_records(processes.gather(evaluation))
        (base_mode, _), *unseen_sets = evaluation_sets(self.config)
        records = [{**record, **({"mode": base_mode} if base_mode else {}), **evaluation}]
        for mode, task_set in unseen_sets:
            if mode not in self.eval_sets:  # evaluated by process 0, which writes the logs
                continue
            names = envs.unseen_task_sets(self.config.env)[task_set]
            records.append({**record, "mode": mode,
                            **self._evaluated(step, policy.unseen, mode, names)})
        if self.log is None:
            return
        if self.experiment.save_video and not self.video_failed:
            self._record_video(policy, step)
        for record in records:
            self.log.eval(record)

    def _evaluated(self, step: int, policy, group: str, names) -> dict:
        """The setup's evaluation on the eval envs of `group`, their snapshots from just before
        it kept in `evaluation_start`."""
        vector_env = self.eval_env(group, step)

        def evaluation():
            self.evaluation_start[1][group] = list(vector_env.call("snapshot"))
            return self.setup.evaluate(policy, vector_env, self.experiment.num_eval_episodes, names)
        return self.faults.retry("eval", step, f"The evaluation of step {step} is done again from its start.", evaluation)

    def _record_video(self, policy, step: int) -> None:
        """One evaluation episode per task as MP4s in `videos/step<N>/` (mtrl's `save_video`), on
        envs of their own, so the run's eval envs and logs are as without video."""
        try:
            paths = video.record_episodes(policy, self.config.env, self.config.seed,
                                          self.workdir / "videos" / f"step{step}")
        except (video.VideoError, envs.EnvWorkerError, OSError) as error:
            self.video_failed = True
            self.say(f"warning: no evaluation videos for the rest of this run: {error}")
            return
        self.say(f"videos: {paths[0].parent} ({len(paths)} files)")
        self.log.videos(dict(zip(self.names, paths)), step)
