"""SAC gradient updates per second at mtrl's MT10 reference shape, against stable-baselines3 and SBX.

    bash bench/peer_venv.sh                     # once: the peers' venv (~/.cache/mtsac_jax/peer-venv)
    python bench/peer_update.py --repeats 9 --json bench/results/peer_update.json

The shape: observation 49 (39 + a 10-task one-hot), action 4, batch 1280, actor and twin
critics of 3x400, Adam 3e-4, gamma 0.99, tau 0.005, automatic entropy tuning, a buffer of
20,000 random transitions. One update is the critic step, the actor and temperature steps and
the target update. Systems (`--systems`):

    numpy_matmul           numpy's float32 1280x400 @ 400x400 matmul: the rate the update's
                           matmuls could reach on this machine (its GFLOP/s is the reference)
    sb3, sbx               SAC of stable-baselines3 (PyTorch) and of SBX (JAX), at their defaults,
                           under --peer-python (made by bench/peer_venv.sh)
    mtsac_jax              the `state_sac` update `train.py` runs, shared heads (bench/peer_plugin.py)
    mtsac_jax_multi_head   the same with one output head per task

`--system NAME=SPEC` adds a system of your own: a factory as bench/workers.py describes (e.g.
`--system old=../old-checkout/bench/peer_plugin.py:make`), run under this interpreter. Each
system runs in its own process (bench/workers.py), and timed calls of ~`--seconds` are
interleaved over `--repeats` rounds. Reported per system: median [min-max] updates/s, GFLOP/s
at the fixed count of `flop_per_update` (the same for every system, so GFLOP/s ratios are
updates/s ratios), the fraction of numpy's matmul rate, and the ratio to SBX.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from workers import System, measure_interleaved, rates, spread  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
SHAPE = {"obs_dim": 49, "act_dim": 4, "batch": 1280, "hidden": [400, 400, 400], "critics": 2, "lr": 3e-4,
         "gamma": 0.99, "tau": 0.005, "buffer_fill": 20_000}
MATMUL = (1280, 400, 400)  # (M, K, N) of numpy's (M x K) @ (K x N)
MATMUL_FLOP = 2.0 * MATMUL[0] * MATMUL[1] * MATMUL[2]  # of one reference matmul
PEER_VENV = pathlib.Path(os.environ.get("MTSAC_PEER_VENV", pathlib.Path.home() / ".cache/mtsac_jax/peer-venv"))
SYSTEMS = {  # name: (factory, runs under the peers' venv, table label)
    "numpy_matmul": ("peer_update.py:numpy_matmul", False, "numpy float32 1280x400 @ 400x400 matmul"),
    "sb3": ("peer_update.py:sb3", True, "stable-baselines3 (PyTorch)"),
    "sbx": ("peer_update.py:sbx", True, "SBX (JAX)"),
    "mtsac_jax": ("peer_plugin.py:make", False, "mtsac_jax, shared heads"),
    "mtsac_jax_multi_head": ("peer_plugin.py:make_multi_head", False, "mtsac_jax, multi-head"),
}


def flop_per_update(shape: dict = SHAPE) -> dict[str, float]:
    """FLOPs of one SAC update, 2 per multiply-add of the matmuls the update cannot do without
    (biases, activations, the tanh-Gaussian, the temperature, Adam and the target update add
    under 1 % and are left out). With f_a and f_c the multiply-adds of one sample's forward pass
    through the actor (49-400-400-400-8, mean and log-std) and through one critic
    (53-400-400-400-1), and i_a, i_c those of their first layers, per sample:

        critic step   actor forward on the next observations          f_a
                      target critics forward                          2 f_c
                      critics forward, weight gradients               2 f_c + 2 f_c
                      critics input gradients but the first layer's   2 (f_c - i_c)
        actor step    actor forward, weight gradients                 f_a + f_a
                      actor input gradients but the first layer's     f_a - i_a
                      critics forward on the new actions              2 f_c
                      critics gradient to the action columns only     2 (f_c - i_c + 4 x 400)

    13.75 GFLOP at batch 1280. (stable-baselines3 executes more: its actor step also computes
    the critics' weight gradients, which the next critic step discards.)"""
    obs, action, hidden, critics = shape["obs_dim"], shape["act_dim"], shape["hidden"], shape["critics"]

    def forward(sizes: list[int]) -> int:
        return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))

    f_a, f_c = forward([obs, *hidden, 2 * action]), forward([obs + action, *hidden, 1])
    i_a, i_c = obs * hidden[0], (obs + action) * hidden[0]
    critic_step = f_a + critics * (3 * f_c + f_c - i_c)
    actor_step = 3 * f_a - i_a + critics * (2 * f_c - i_c + action * hidden[0])
    to_flop = 2 * shape["batch"]
    return {"critic_step": to_flop * critic_step, "actor_step": to_flop * actor_step,
            "total": to_flop * (critic_step + actor_step)}


def numpy_matmul(shape: dict) -> dict:
    """G float32 matmuls of MATMUL's shape (the roofline reference)."""
    import numpy as np

    m, k, n = MATMUL
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    out = np.empty((m, n), np.float32)

    def train(count: int) -> None:
        for _ in range(count):
            np.matmul(a, b, out=out)

    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return {"train": train, "versions": {"numpy": np.__version__, "blas": f"{blas['name']} {blas['version']}"}}


def _random_env(shape: dict):
    """An env with the shape's spaces, for the peers' constructors (the benchmark never steps it)."""
    import gymnasium as gym
    import numpy as np

    class RandomEnv(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (shape["obs_dim"],), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (shape["act_dim"],), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, False, False, {}

    return RandomEnv()


def _peer_sac(sac_class, shape: dict):
    """A peer's SAC at the shape, its replay buffer filled with random transitions."""
    import numpy as np
    from stable_baselines3.common.logger import Logger

    model = sac_class("MlpPolicy", _random_env(shape), learning_rate=shape["lr"], buffer_size=shape["buffer_fill"],
                      learning_starts=0, batch_size=shape["batch"], tau=shape["tau"], gamma=shape["gamma"],
                      ent_coef="auto", seed=0, verbose=0,
                      policy_kwargs={"net_arch": list(shape["hidden"]), "n_critics": shape["critics"]})
    model.set_logger(Logger(folder=None, output_formats=[]))  # no log files, no folder
    rng = np.random.default_rng(0)
    obs, action = shape["obs_dim"], shape["act_dim"]
    for _ in range(shape["buffer_fill"]):
        model.replay_buffer.add(rng.normal(size=(1, obs)), rng.normal(size=(1, obs)),
                                rng.uniform(-1, 1, (1, action)), rng.normal(size=1), np.zeros(1), [{}])
    return model


def _versions(*names: str) -> dict[str, str]:
    import importlib.metadata

    return {name: importlib.metadata.version(name) for name in names}


def sb3(shape: dict) -> dict:
    """stable-baselines3's SAC: `train(G)` is G gradient steps of `SAC.train`."""
    import stable_baselines3
    import torch

    model = _peer_sac(stable_baselines3.SAC, shape)

    def train(count: int) -> None:
        model.train(gradient_steps=count, batch_size=shape["batch"])

    return {"train": train, "torch_threads": torch.get_num_threads(),
            "versions": _versions("stable-baselines3", "torch", "numpy", "gymnasium")}


def sbx(shape: dict) -> dict:
    """SBX's SAC: `train(G)` is G gradient steps, one jitted loop over G (compiled per G)."""
    import jax
    import sbx as sbx_module

    model = _peer_sac(sbx_module.SAC, shape)

    def train(count: int) -> None:
        model.train(gradient_steps=count, batch_size=shape["batch"])
        jax.block_until_ready((model.policy.qf_state.params, model.policy.actor_state.params))

    return {"train": train, "static_G": True, "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
            "versions": _versions("sbx-rl", "stable-baselines3", "jax", "jaxlib", "flax", "optax", "numpy")}


def summarize(results: dict[str, dict], flop: float) -> None:
    """Adds updates/s, GFLOP/s, the fraction of numpy's matmul rate and the ratio to SBX to
    each measured system's result (numpy_matmul: GFLOP/s only)."""
    measured = {name: result for name, result in results.items() if result.get("calls")}
    for name, result in measured.items():
        if name == "numpy_matmul":
            result["gflops"] = spread([rate * MATMUL_FLOP / 1e9 for rate in rates(result)])
        else:
            result["updates_per_s"] = spread(rates(result))
            result["gflops"] = spread([rate * flop / 1e9 for rate in rates(result)])
    numpy_rate = measured.get("numpy_matmul", {}).get("gflops", {}).get("median")
    sbx_rate = measured.get("sbx", {}).get("updates_per_s", {}).get("median")
    for name, result in measured.items():
        if numpy_rate:
            result["of_numpy_matmul"] = result["gflops"]["median"] / numpy_rate
        if sbx_rate and "updates_per_s" in result:
            result["x_sbx"] = result["updates_per_s"]["median"] / sbx_rate


def table(results: dict[str, dict], labels: dict[str, str]) -> str:
    """A markdown table of `summarize`d results."""
    lines = ["| system | updates/s | GFLOP/s | of numpy's matmul rate | x SBX |", "|---|---|---|---|---|"]
    for name, result in results.items():
        if "error" in result:
            lines.append(f"| {labels[name]} | failed | | | |")
            continue
        updates, gflops = result.get("updates_per_s"), result["gflops"]
        cells = [f"{updates['median']:.2f} [{updates['min']:.2f}-{updates['max']:.2f}]" if updates else "-",
                 f"{gflops['median']:.1f}" + ("" if updates else f" [{gflops['min']:.1f}-{gflops['max']:.1f}]"),
                 f"{result['of_numpy_matmul']:.2f}" if "of_numpy_matmul" in result else "-",
                 f"{result['x_sbx']:.2f}" if "x_sbx" in result else "-"]
        lines.append(f"| {labels[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma list of: " + ", ".join(SYSTEMS))
    parser.add_argument("--system", action="append", default=[], metavar="NAME=SPEC",
                        help="an extra system, module:function or path/to/file.py:function (repeatable)")
    parser.add_argument("--peer-python", help="a Python with stable-baselines3 and sbx-rl, for sb3 and sbx "
                        f"(default: {PEER_VENV}/bin/python, made by bench/peer_venv.sh, if it exists)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one timed call")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of timed calls")
    parser.add_argument("--json", type=pathlib.Path, help="write the results here")
    args = parser.parse_args(argv)

    names = [name for name in args.systems.split(",") if name]
    unknown = [name for name in names if name not in SYSTEMS]
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {list(SYSTEMS)}")
    peers = [name for name in names if SYSTEMS[name][1]]
    peer_python = args.peer_python or (str(PEER_VENV / "bin/python") if (PEER_VENV / "bin/python").exists() else None)
    if peers and not peer_python:
        parser.error(f"{', '.join(peers)} need --peer-python, a Python with stable-baselines3 and sbx-rl: "
                     f"make one with `bash bench/peer_venv.sh` (it goes to {PEER_VENV}, where it is found "
                     "without --peer-python), or leave them out of --systems")
    systems = [System(name, str(HERE / SYSTEMS[name][0]), peer_python if SYSTEMS[name][1] else sys.executable)
               for name in names]
    labels = {name: SYSTEMS[name][2] for name in names}
    for extra in args.system:
        name, _, spec = extra.partition("=")
        if not spec:
            parser.error(f"--system {extra}: give NAME=SPEC")
        systems.append(System(name, spec))
        labels[name] = name

    flop = flop_per_update()
    print(f"{len(systems)} systems, ~{args.seconds} s per timed call, {args.repeats} interleaved rounds; "
          f"{flop['total'] / 1e9:.2f} GFLOP per update", file=sys.stderr)
    results = measure_interleaved(systems, SHAPE, args.seconds, args.repeats,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
    summarize(results, flop["total"])
    print(table(results, labels))
    if args.json:
        args.json.write_text(json.dumps({
            "shape": SHAPE, "matmul": MATMUL, "flop_per_update": flop,
            "settings": {"seconds": args.seconds, "repeats": args.repeats, "XLA_FLAGS": os.environ.get("XLA_FLAGS")},
            "host": {"cpu": _cpu_name(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "systems": results}, indent=1))
    failed = [name for name, result in results.items() if "error" in result]
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (the errors are above and in the JSON)")


def _cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
