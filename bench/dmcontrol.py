"""The hipbmdp setup's costs in one run: DMControl env stepping (raw and in the training loop,
states and frames) and each agent's update against SAC's on the same features.

    python bench/dmcontrol.py --json bench/results/dmcontrol.json

- Raw stepping: one env id of cheetah-run and of walker-walk (friction) as `DMControlEnv`, with
  random actions, on states and on 3 stacked 84x84 frames (agent steps/s; an agent step is 2
  control steps at action repeat 2), beside Meta-World's reach-v3 (the env of the Meta-World rows),
  timed in interleaved rounds in worker processes (bench/workers.py).
- Updates: each agent at `configs/hipbmdp.py:cheetah-run,<agent>[,pixels]` (2x1024 networks, a
  batch of 128 over 4 training envs, on a buffer of random transitions), against
  `state_sac` on states and against SAC behind the same pixel encoder without an auxiliary loss
  (`sac_pixels`) on frames, in the same interleaved rounds.
- In the loop: `train.py` on cheetah-run (state_sac on states, sac_ae on frames) for a few hundred
  steps, its env-steps/s (4 envs per step) before learning starts (stepping, acting, inserting) and
  after (an update per step; 15 steps for sac_ae), from its train.jsonl; the warm-up rate over the
  raw stepping rate of the same run.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from workers import System, measure_interleaved, rates, spread  # noqa: E402

CHEETAH, WALKER = "dmcontrol-cheetah-run-distribution-v0", "dmcontrol-walker-walk-friction-distribution-v0"
PIXELS = (84, 84, 0, 3)
ENVS = {
    "cheetah_states": (CHEETAH, None), "cheetah_frames": (CHEETAH, PIXELS),
    "walker_states": (WALKER, None), "walker_frames": (WALKER, PIXELS),
}
UPDATES = {  # system: (agent, on frames, the system it is compared with)
    "state_sac": ("state_sac", False, "state_sac"),
    "state_deepmdp": ("state_deepmdp", False, "state_sac"),
    "hipbmdp_states": ("hipbmdp", False, "state_sac"),
    "sac_pixels": ("sac_pixels", True, "sac_pixels"),
    "sac_ae": ("sac_ae", True, "sac_pixels"),
    "deepmdp": ("deepmdp", True, "sac_pixels"),
    "hipbmdp_frames": ("hipbmdp", True, "sac_pixels"),
}
LOOP = {  # system: (config words, its steps: warm-up, in all, between log lines)
    "state_sac_states": ("cheetah-run", {"init_steps": 300, "num_train_steps": 400, "log_freq": 50}),
    "sac_ae_frames": ("cheetah-run,sac_ae,pixels", {"init_steps": 300, "num_train_steps": 315, "log_freq": 5}),
}


def stepping(env) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    env.reset()

    def train(steps: int) -> None:
        for _ in range(steps):
            if env.step(rng.uniform(-1, 1, env.action_space.shape))[3]:
                env.reset()

    return {"train": train, "static_G": False}


def dmcontrol_env(config: dict, name: str) -> dict:
    from mtsac_jax.envs import dmcontrol

    env_name, pixels = ENVS[name]
    return stepping(dmcontrol.DMControlEnv(env_name, 3, 0, 2, 1000, pixels))


def metaworld_reach(config: dict) -> dict:
    import metaworld

    return stepping(metaworld.make_mt_envs("reach-v3", seed=0))


def update_system(config: dict, name: str) -> dict:
    """`agent.update` calls of the system `name` on a buffer of random transitions."""
    from mtsac_jax.cpu_runtime import tune_cpu_process

    tune_cpu_process()
    import functools
    import runpy

    import jax
    import numpy as np

    from peer_plugin import updating

    from mtsac_jax import agents, replay_buffer
    from mtsac_jax.agents import representation, sac

    agent_name, frames, _ = UPDATES[name]
    words = "cheetah-run," + ("sac_ae" if agent_name == "sac_pixels" else agent_name) + (",pixels" if frames else "")
    config = runpy.run_path(str(REPO / "configs" / "hipbmdp.py"))["get_config"](words)
    num_tasks, action_dim, obs_shape = 4, 6, ((9, 84, 84) if frames else (17,))
    spec = agents.EnvSpec(num_tasks, int(np.prod(obs_shape)), action_dim, (), obs_shape if frames else (),
                          "uint8" if frames else "float32")
    batch = config.replay_buffer.batch_size // num_tasks
    if agent_name == "sac_pixels":  # SAC behind the pixel encoder, no auxiliary loss
        parts = sac.make_sac(config.agent, spec, representation.make_encoder(config.agent, spec))
        agent = agents.Agent(init=jax.jit(functools.partial(sac.init_state, parts)),
                             update=jax.jit(functools.partial(sac.sac_update, parts, batch), donate_argnums=0),
                             policy_params=None, sample_actions=None, eval_actions=None)
    else:
        agent = agents.build(config.agent, spec, batch)
    per_task, rng = 1000, np.random.default_rng(0)
    buffer = replay_buffer.init(num_tasks, per_task, obs_shape, action_dim, np.uint8 if frames else np.float32)
    draw = ((lambda: rng.integers(0, 256, (num_tasks, *obs_shape), dtype=np.uint8)) if frames
            else (lambda: rng.normal(size=(num_tasks, *obs_shape)).astype(np.float32)))
    for _ in range(per_task):
        buffer = replay_buffer.insert_jit(buffer, draw(), rng.uniform(-1, 1, (num_tasks, action_dim)),
                                          rng.normal(size=num_tasks), draw(), np.zeros(num_tasks))
    return {**updating(agent, agent.init(jax.random.key(0)), buffer), "batch": config.replay_buffer.batch_size}


def _system(name: str) -> System:
    return System(name, f"{HERE / 'dmcontrol.py'}:{name}")


def loop_rates(words: str, steps: dict) -> dict:
    """train.py's env-steps/s before and after learning starts (the first interval of each left out)."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "train.py", f"--config=configs/hipbmdp.py:{words}", f"--workdir={folder}/run",
                   "--config.replay_buffer.capacity=4000", "--config.experiment.eval_freq=1000000",
                   "--config.experiment.save_freq=1000000",
                   *(f"--config.experiment.{key}={value}" for key, value in steps.items())]
        subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
        records = [json.loads(line) for line in (pathlib.Path(folder) / "run" / "train.jsonl").read_text().splitlines()]
    warmup = [r["perf/env_steps_per_s"] for r in records if r["step"] <= steps["init_steps"]][1:]
    learning = [r["perf/env_steps_per_s"] for r in records if r["step"] > steps["init_steps"]][1:]
    return {"command": " ".join(command[1:]), "warmup_env_steps_per_s": spread(warmup),
            "learning_env_steps_per_s": spread(learning)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one timed call")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of timed calls")
    parser.add_argument("--json", type=pathlib.Path, help="write the results here")
    args = parser.parse_args(argv)
    systems = [System("metaworld_reach", f"{HERE / 'dmcontrol.py'}:metaworld_reach"), *map(_system, ENVS),
               *map(_system, UPDATES)]
    results = measure_interleaved(systems, {}, args.seconds, args.repeats,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
    for result in results.values():
        if result.get("calls"):
            result["per_s"] = spread(rates(result))
    median = lambda name: results[name]["per_s"]["median"]  # noqa: E731
    print("| env | agent steps/s | x Meta-World reach-v3 |\n|---|---|---|")
    for name in ["metaworld_reach", *ENVS]:
        print(f"| {name} | {median(name):.0f} | {median(name) / median('metaworld_reach'):.2f} |")
    print("\n| agent | updates/s | x its SAC |\n|---|---|---|")
    for name, (_, _, base) in UPDATES.items():
        results[name]["x_base"] = median(name) / median(base)
        print(f"| {name} | {median(name):.2f} | {results[name]['x_base']:.2f} |")
    loop = {name: loop_rates(words, steps) for name, (words, steps) in LOOP.items()}
    print("\n| in the loop | env-steps/s, warm-up | with updates | warm-up x raw (4 envs) |\n|---|---|---|---|")
    for name, raw in (("state_sac_states", "cheetah_states"), ("sac_ae_frames", "cheetah_frames")):
        figures = loop[name]
        figures["warmup_x_raw"] = figures["warmup_env_steps_per_s"]["median"] / median(raw)
        print(f"| {name} | {figures['warmup_env_steps_per_s']['median']:.0f} | "
              f"{figures['learning_env_steps_per_s']['median']:.1f} | {figures['warmup_x_raw']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "systems": results,
                                         "loop": loop}, indent=1))


for _name in ENVS:
    globals()[_name] = lambda config, _name=_name: dmcontrol_env(config, _name)
for _name in UPDATES:
    globals()[_name] = lambda config, _name=_name: update_system(config, _name)

if __name__ == "__main__":
    main()
