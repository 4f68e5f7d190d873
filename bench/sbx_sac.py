"""SBX's SAC (sbx-rl, JAX) on one Meta-World MT1 task, evaluated exactly as mtsac_jax evaluates.

The peer row of the learning benchmark. `bench/learning.py run --rows sbx-mt1-reach-v3
--sbx-python PYTHON` calls it with the network, batch, warm-up and optimiser numbers of
`configs/metaworld_mt1.py`, so only the implementation differs. It needs a Python with sbx-rl
and metaworld (see docs/results.md); it does not import mtsac_jax. It writes `eval.jsonl`
records shaped like `train.py`'s (step, success, episode_reward, tasks) into `--workdir`, and
SBX's own training figures into `--workdir/sb3_log/progress.csv`;
a run that did not finish starts again from scratch.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import gymnasium as gym
import metaworld
import metaworld.evaluation
import numpy as np
from sbx import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure


def make_env(task: str, seed: int, max_episode_steps: int, evaluation: bool) -> gym.Env:
    """One MT1 env with its 50 goals drawn from `seed`; eval envs terminate on success."""
    return metaworld.make_mt_envs(
        task,
        seed=seed,
        env_id=0,
        num_tasks=1,
        terminate_on_success=evaluation,
        use_one_hot=False,
        max_episode_steps=max_episode_steps,
        reward_function_version="v2",
    )


class DeterministicAgent:
    """Meta-World's `Agent` protocol over the SBX policy's mean action."""

    def __init__(self, model: SAC):
        self.model = model

    def eval_action(self, obs: np.ndarray) -> np.ndarray:
        return self.model.predict(obs, deterministic=True)[0]

    def reset(self, dones: np.ndarray) -> None:
        del dones


class EvalCallback(BaseCallback):
    """Every `eval_freq` env steps: Meta-World's evaluator, one JSON line to `eval.jsonl`."""

    def __init__(self, task: str, eval_envs: gym.vector.VectorEnv, eval_freq: int, episodes: int, log: pathlib.Path):
        super().__init__()
        self.task, self.eval_envs, self.eval_freq, self.episodes, self.log = task, eval_envs, eval_freq, episodes, log

    def _on_step(self) -> bool:
        if self.num_timesteps % self.eval_freq == 0:
            _, _, success, returns = metaworld.evaluation.evaluation(
                DeterministicAgent(self.model), self.eval_envs, self.episodes
            )
            task = {"success": float(success[self.task]), "episode_reward": float(np.mean(returns[self.task]))}
            record = {"step": self.num_timesteps, **task, "tasks": {self.task: task}}
            with self.log.open("a") as log:
                log.write(json.dumps(record) + "\n")
            print(f"[sbx] step {self.num_timesteps}: success {task['success']:.2f}", flush=True)
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options = {  # all required: bench/learning.py passes each from the mtsac_jax row's config
        "task": str, "seed": int, "workdir": pathlib.Path, "num_train_steps": int, "eval_freq": int,
        "num_eval_episodes": int, "max_episode_steps": int, "hidden_dim": int, "num_layers": int,
        "batch_size": int, "init_steps": int, "capacity": int, "lr": float, "tau": float, "discount": float,
        "init_temperature": float,
    }
    for name, kind in options.items():
        parser.add_argument(f"--{name}", type=kind, required=True)
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    log = args.workdir / "eval.jsonl"
    log.unlink(missing_ok=True)
    env = make_env(args.task, args.seed, args.max_episode_steps, evaluation=False)
    eval_envs = gym.vector.SyncVectorEnv(
        [lambda: make_env(args.task, args.seed, args.max_episode_steps, True)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,  # what Meta-World's evaluator expects
    )
    model = SAC(
        "MlpPolicy",
        env,
        learning_rate=args.lr,
        buffer_size=args.capacity,
        learning_starts=args.init_steps,
        batch_size=args.batch_size,
        tau=args.tau,
        gamma=args.discount,
        ent_coef=f"auto_{args.init_temperature}",
        policy_kwargs={"net_arch": [args.hidden_dim] * args.num_layers},
        seed=args.seed,
    )
    model.set_logger(configure(str(args.workdir / "sb3_log"), ["csv"]))  # SBX's training figures
    model.learn(args.num_train_steps, callback=EvalCallback(args.task, eval_envs, args.eval_freq,
                                                            args.num_eval_episodes, log))


if __name__ == "__main__":
    main()
