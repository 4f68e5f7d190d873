"""Measurements on one GPU, in one process, within a fixed time budget.

    bash bench/device/run.sh                        # on the GPU machine: installs wheels, runs this and the tests
    python bench/device/gpu.py --dry-run --out /tmp/gpu   # on any CPU: every step at tiny sizes

Sections, each written to its JSON file under `--out` as soon as it is done (a section that
fails records its error and the others go on; one that would overrun the budget is skipped
and says so):

- `gpu_update.json`
  - `matmul`: the GPU's own matmul rate, float32 at full precision and at TF32, at the update's
    shape (1280x400 @ 400x400) and at 8192^3, with bfloat16 at 8192^3 beside them: a chain of
    products in one compiled loop, so no dispatch is timed.
  - `updates`: updates/s of the MT10 reference update (`configs/metaworld_mt10.py`: 3x400 actor
    and twin critics, batch 1280) and of the MT50 one (batch 6400), with 1 and 20 updates per
    call (`experiment.num_updates_per_step`), each architecture's MT10 preset and the gradient
    methods at 20 per call, the reference at full float32 precision, and critics of width
    1024/2048/4096 (3 layers, actor 3x400). FLOPs per update from XLA's cost analysis of the
    compiled update; the achieved rate as a fraction of the float32 and TF32 matmul rates.
  - `sbx`: SBX's SAC update at the reference shape on the same GPU, with 1 and 20 gradient
    steps per call, when its wheels are installed.
- `gpu_seeds.json`: the demo shape's update (`configs/demo.py`: MT1, 2x256, batch 256) vmapped
  over 1, 8 and 32 seeds as `num_seeds` runs it: total samples/s against one seed.
- `gpu_loop.json`: `train.py` on the MT10 reference config with async env workers for
  `--loop-seconds` (stopped by SIGTERM, as a preemption), its env-steps/s after the first log
  interval against raw async stepping of the same envs, and the update's share of a step.

Timing: each system is compiled once, warmed up, then timed in `--repeats` interleaved rounds
of about `--seconds` each; medians with min and max.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import json
import os
import pathlib
import platform
import runpy
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Callable

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

METAWORLD_OBS_DIM, METAWORLD_ACTION_DIM = 39, 4
ARCHITECTURES = {  # name: (config argument, gradient method)
    "mlp": ("configs/metaworld_mt10.py", "mean"),
    "multi_head": ("configs/metaworld_mt10.py", "mean"),
    "film": ("configs/film.py:mt10", "mean"),
    "care": ("configs/care.py:mt10", "mean"),
    "soft_modularization": ("configs/soft_modularization.py:mt10", "mean"),
    "moore": ("configs/moore.py:mt10", "mean"),
    "paco": ("configs/paco.py:mt10", "mean"),
    "pcgrad": ("configs/metaworld_mt10.py", "pcgrad"),
    "gradnorm": ("configs/metaworld_mt10.py", "gradnorm"),
}
CRITIC_WIDTHS = (1024, 2048, 4096)
SEED_COUNTS = (1, 8, 32)


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


class Budget:
    """The script's wall-clock budget: a section starts only if its estimate fits."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


class Report:
    """JSON files under `out`, rewritten after every section."""

    def __init__(self, out: pathlib.Path, common: dict):
        self.out, self.common, self.files = out, common, {}
        out.mkdir(parents=True, exist_ok=True)

    def put(self, file: str, section: str, value) -> None:
        self.files.setdefault(file, dict(self.common))[section] = value
        (self.out / file).write_text(json.dumps(self.files[file], indent=1, default=str))

    def section(self, file: str, name: str, budget: Budget, estimate_s: float, work: Callable[[], dict]) -> dict | None:
        if budget.left() < estimate_s:
            self.put(file, name, {"skipped": f"{budget.left():.0f} s of the budget left, about {estimate_s:.0f} s needed"})
            print(f"[{name}] skipped: budget", flush=True)
            return None
        start = time.monotonic()
        print(f"[{name}] start ({budget.left():.0f} s of the budget left)", flush=True)
        try:
            value = work()
        except Exception as error:  # a failed section is recorded and the others go on
            value = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-4000:]}
            print(f"[{name}] failed: {type(error).__name__}: {error}", flush=True)
        value["section_s"] = time.monotonic() - start
        self.put(file, name, value)
        print(f"[{name}] done in {value['section_s']:.1f} s", flush=True)
        return value


# ----- timing -----


class Timed:
    """A system: `call()` does `units` units of work and returns when they are done."""

    def __init__(self, name: str, call: Callable[[], None], units: int, info: dict | None = None):
        self.name, self.call, self.units, self.info = name, call, units, dict(info or {})
        self.calls_per_round, self.rates = 1, []

    def warm_up(self, seconds: float) -> None:
        self.call()  # the first call may still compile or autotune
        start = time.perf_counter()
        self.call()
        one = max(time.perf_counter() - start, 1e-6)
        self.calls_per_round = max(1, int(seconds / one))

    def round(self) -> None:
        start = time.perf_counter()
        for _ in range(self.calls_per_round):
            self.call()
        self.rates.append(self.calls_per_round * self.units / (time.perf_counter() - start))

    def result(self) -> dict:
        return {**self.info, "units_per_call": self.units, "calls_per_round": self.calls_per_round,
                "per_s": spread(self.rates)}


def interleaved(systems: list[Timed], seconds: float, repeats: int) -> dict[str, dict]:
    """Warms up every system, then `repeats` rounds of one timed stretch each, in turn."""
    failed = {}
    for system in list(systems):
        try:
            system.warm_up(seconds)
        except Exception as error:
            failed[system.name] = {"error": f"{type(error).__name__}: {error}"}
            systems.remove(system)
    for _ in range(repeats):
        for system in systems:
            system.round()
    return {**{system.name: system.result() for system in systems}, **failed}


# ----- the GPU's matmul rate -----


def matmul_chain(m: int, k: int, dtype, precision: str, length: int) -> Timed:
    """`length` products x <- x @ w ((m, k) @ (k, k)) in one compiled loop; w scaled to keep x's norm."""
    key_x, key_w = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key_x, (m, k), jnp.float32).astype(dtype)
    w = (jax.random.normal(key_w, (k, k), jnp.float32) / np.sqrt(k)).astype(dtype)

    @jax.jit
    def chain(x, w):
        with jax.default_matmul_precision(precision):
            return jax.lax.fori_loop(0, length, lambda _, x: jnp.dot(x, w, preferred_element_type=dtype), x)

    holder = {"x": chain(x, w)}

    def call():
        holder["x"] = jax.block_until_ready(chain(holder["x"], w))

    return Timed(f"{m}x{k}x{k} {jnp.dtype(dtype).name} {precision}", call, length,
                 {"flop_per_unit": 2.0 * m * k * k, "shape": [m, k, k], "dtype": jnp.dtype(dtype).name,
                  "precision": precision})


def measure_matmul(sizes: dict, seconds: float, repeats: int) -> dict:
    ref, big = sizes["ref_matmul"], sizes["big_matmul"]
    systems = [
        matmul_chain(*ref, jnp.float32, "highest", 200),
        matmul_chain(*ref, jnp.float32, "tensorfloat32", 200),
    ]
    if big:
        systems += [
            matmul_chain(big, big, jnp.float32, "highest", 10),
            matmul_chain(big, big, jnp.float32, "tensorfloat32", 10),
            matmul_chain(big, big, jnp.bfloat16, "default", 10),
        ]
    results = interleaved(systems, seconds, repeats)
    for result in results.values():
        if "per_s" in result:
            result["tflops"] = result["per_s"]["median"] * result["flop_per_unit"] / 1e12
    return results


# ----- SAC updates -----


def load_config(argument: str):
    file, _, arg = argument.partition(":")
    config = runpy.run_path(str(ROOT / file))["get_config"](arg or None)
    config.unlock()
    return config


def random_buffer(num_tasks: int, per_task: int, obs_dim: int, action_dim: int, seed: int = 0):
    """A full replay buffer of random transitions, made on the device in one go."""
    from mtsac_jax import replay_buffer

    keys = jax.random.split(jax.random.key(seed), 4)
    buffer = replay_buffer.init(num_tasks, per_task, obs_dim, action_dim)
    return buffer.replace(
        obs=jax.random.normal(keys[0], buffer.obs.shape),
        action=jax.random.uniform(keys[1], buffer.action.shape, minval=-1, maxval=1),
        reward=jax.random.normal(keys[2], buffer.reward.shape),
        next_obs=jax.random.normal(keys[3], buffer.next_obs.shape),
        size=jnp.full((num_tasks,), per_task, jnp.int32),
    )


def make_agent(config, updates_per_call: int):
    """The agent of `config` at its task count and batch, and its (tasks, observation size)."""
    from mtsac_jax import agents
    from mtsac_jax.envs import task_names

    names = tuple(task_names(config.env))
    num_tasks = len(names)
    obs_dim = METAWORLD_OBS_DIM + (num_tasks if config.env.use_one_hot else 0)
    agent = agents.build(config.agent, agents.EnvSpec(num_tasks, obs_dim, METAWORLD_ACTION_DIM, names),
                         config.replay_buffer.batch_size // num_tasks, updates_per_call)
    return agent, num_tasks, obs_dim


def build_update(config, updates_per_call: int, per_task: int, seed: int = 0):
    """The agent of `config`, its state and a random buffer at the config's task count and batch."""
    agent, num_tasks, obs_dim = make_agent(config, updates_per_call)
    return agent, agent.init(jax.random.key(seed)), random_buffer(num_tasks, per_task, obs_dim, METAWORLD_ACTION_DIM, seed)


def update_system(name: str, config, updates_per_call: int, per_task: int, precision: str | None = None) -> Timed:
    """`updates_per_call` updates per call of the compiled update. FLOPs per update from XLA's
    cost analysis of the lowered update, which counts a scan's body once: one update's."""
    agent, state, buffer = build_update(config, updates_per_call, per_task)
    with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
        lowered = agent.update.lower(state, buffer)
        compiled = lowered.compile()
    flop = None  # the lowered module's analysis is not on every backend (not on CUDA): then the compiled one's
    for analysis in (lowered.cost_analysis, compiled.cost_analysis):
        found = analysis()
        found = found[0] if isinstance(found, list) and found else found
        if found and "flops" in found:
            flop = found["flops"]
            break
    holder = {"state": state}

    def call():
        holder["state"], _ = compiled(holder["state"], buffer)
        jax.block_until_ready(holder["state"])

    params = jax.tree.map(lambda leaf: leaf.size, agent.policy_params(state))
    return Timed(name, call, updates_per_call, {
        "flop_per_unit": flop, "batch": config.replay_buffer.batch_size, "num_tasks": int(buffer.reward.shape[0]),
        "actor": [config.agent.actor.hidden_dim, config.agent.actor.num_layers],
        "critic": [config.agent.critic.hidden_dim, config.agent.critic.num_layers],
        "network": config.agent.network.name, "gradient": config.agent.gradient.name,
        "precision": precision or "default", "policy_params": int(sum(jax.tree.leaves(params))),
    })


def prepared(factories: dict[str, Callable[[], Timed]]) -> tuple[list[Timed], dict]:
    """Builds and compiles the systems side by side on the host's cores (XLA compiles outside
    the GIL); a system that fails to build is reported and left out."""
    systems, failed = [], {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        futures = {name: pool.submit(factory) for name, factory in factories.items()}
        for name, future in futures.items():
            try:
                systems.append(future.result())
            except Exception as error:
                failed[name] = {"error": f"{type(error).__name__}: {error}"}
    return systems, failed


def measured(factories: dict[str, Callable[[], Timed]], seconds: float, repeats: int) -> dict:
    systems, failed = prepared(factories)
    return {**interleaved(systems, seconds, repeats), **failed}


def shrink(config, sizes: dict) -> None:
    """Tiny networks and batches for a dry run (the config's structure is kept)."""
    if not sizes["tiny"]:
        return
    for network in (config.agent.actor, config.agent.critic):
        network.hidden_dim, network.num_layers = 16, 2
    tasks = config.agent.multitask.num_envs
    config.replay_buffer.batch_size = 2 * tasks


def reference_configs(sizes: dict) -> dict:
    configs = {"mt10": load_config("configs/metaworld_mt10.py"), "mt50": load_config("configs/metaworld_mt50.py")}
    for config in configs.values():
        shrink(config, sizes)
    return configs


def system_config(name: str, sizes: dict):
    """The config, updates per call and matmul precision of a named update system:
    `mt10/<n>`, `mt50/<n>`, `mt10/<n>/highest`, `architecture/<name>/<n>`, `critic_width/<w>/<n>`."""
    from mtsac_jax import gradients

    kind, *rest = name.split("/")
    if kind in ("mt10", "mt50"):
        config = load_config(f"configs/metaworld_{kind}.py")
        shrink(config, sizes)
        return config, int(rest[0]), rest[1] if len(rest) > 1 else None
    if kind == "architecture":
        argument, gradient = ARCHITECTURES[rest[0]]
        config = load_config(argument)
        config.agent.gradient = gradients.gradient_config(gradient)
        if rest[0] == "multi_head":
            config.agent.multitask.should_use_multi_head_policy = True
        shrink(config, sizes)
        return config, int(rest[1]), None
    if kind == "critic_width":
        config = load_config("configs/metaworld_mt10.py")
        shrink(config, sizes)
        config.agent.critic.hidden_dim = int(rest[0])
        return config, int(rest[1]), None
    raise ValueError(f"unknown update system {name!r}")


def measure_named(names: list[str], sizes: dict, seconds: float, repeats: int) -> dict:
    def factory(name):
        config, updates_per_call, precision = system_config(name, sizes)
        return update_system(name, config, updates_per_call, sizes["per_task"], precision)

    return measured({name: functools.partial(factory, name) for name in names}, seconds, repeats)


def measure_updates(sizes: dict, seconds: float, repeats: int) -> dict:
    """The MT10 and MT50 reference updates, 1 and 20 per call; MT10 at full float32 precision."""
    names = [f"{tasks}/{n}" for n in (1, 20) for tasks in ("mt10", "mt50")] + ["mt10/20/highest"]
    return measure_named(names, sizes, seconds, repeats)


def measure_architectures(sizes: dict, seconds: float, repeats: int) -> dict:
    """Each architecture's MT10 preset and the gradient methods, 20 updates per call."""
    return measure_named([f"architecture/{name}/20" for name in ARCHITECTURES], sizes, seconds, repeats)


def measure_widths(sizes: dict, seconds: float, repeats: int) -> dict:
    """The MT10 reference with wider critics (3 layers; actor 3x400), 20 updates per call."""
    return measure_named([f"critic_width/{width}/20" for width in sizes["critic_widths"]], sizes, seconds, repeats)


def matmul_rates(matmul: dict) -> dict:
    """TFLOP/s of the matmul chains, by `<fp32|tf32>_<ref|peak>` (peak: the largest shape measured)."""
    rates, largest = {}, {}
    for result in matmul.values():
        if not isinstance(result, dict) or "tflops" not in result or result["dtype"] != "float32":
            continue
        precision = {"highest": "fp32", "tensorfloat32": "tf32"}[result["precision"]]
        size = result["shape"][0] * result["shape"][1]
        rates.setdefault(f"{precision}_ref", result["tflops"])  # the update's shape comes first
        if size > largest.get(precision, 0):
            largest[precision] = size
            rates[f"{precision}_peak"] = result["tflops"]
    return {key: value for key, value in rates.items() if not key.endswith("_peak") or largest[key[:4]] > 1280 * 400}


def with_rates(results: dict, matmul: dict) -> dict:
    """Adds TFLOP/s and its fraction of each matmul rate of `matmul_rates` (`of_fp32_ref`, ...)."""
    rates = matmul_rates(matmul)
    for result in results.values():
        if isinstance(result, dict) and "per_s" in result and result.get("flop_per_unit"):
            result["tflops"] = result["per_s"]["median"] * result["flop_per_unit"] / 1e12
            for key in [key for key in result if key.startswith("of_")]:
                del result[key]
            for key, rate in rates.items():
                result[f"of_{key}"] = result["tflops"] / rate
    return results


def flop_per_update(name: str) -> float:
    """One update's FLOPs for the named system at full size, as XLA's cost analysis of the
    lowered update counts them on this machine's backend (the count of the program, whatever
    runs it; a scan's body is counted once)."""
    config, updates_per_call, precision = system_config(name, SIZES["full"])
    agent, num_tasks, obs_dim = make_agent(config, updates_per_call)
    shapes = jax.eval_shape(lambda: (agent.init(jax.random.key(0)),
                                     random_buffer(num_tasks, 2, obs_dim, METAWORLD_ACTION_DIM)))
    with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
        analysis = agent.update.lower(*shapes).cost_analysis()
    return (analysis[0] if isinstance(analysis, list) else analysis)["flops"]


def annotate(folder: pathlib.Path) -> None:
    """Rewrites the GPU results in `folder` with FLOPs counted here (XLA:CUDA's cost analysis of
    a compiled update leaves out its library matmuls), the fractions of the matmul rates (the
    peak ones from `gpu_sbx.json` where `gpu_update.json` measured only the update's shape),
    and the loop's update share from `gpu_update.json`."""
    files = {name: json.loads((folder / name).read_text()) for name in ("gpu_update.json", "gpu_sbx.json", "gpu_loop.json")
             if (folder / name).exists()}
    peak_matmul = files.get("gpu_sbx.json", {}).get("matmul", {})
    for file in ("gpu_update.json", "gpu_sbx.json"):
        data = files.get(file)
        if data is None:
            continue
        own = data.get("matmul", {})
        matmul = own if any(k.startswith("8192") for k in own) else {**own, **{k: v for k, v in peak_matmul.items()
                                                                               if k.startswith("8192")}}
        for section in ("updates", "architectures", "widths", "sbx"):
            for name, result in data.get(section, {}).items():
                if isinstance(result, dict) and "per_s" in result and "network" in result:
                    result.setdefault("flop_per_unit_gpu_cost_analysis", result["flop_per_unit"])
                    result["flop_per_unit"] = flop_per_update(name)
            if section in data:
                with_rates(data[section], matmul)
        if matmul is not own:
            data["peak_matmul_from"] = "gpu_sbx.json (another machine of the same kind, the same day)"
        (folder / file).write_text(json.dumps(data, indent=1, default=str))
    if "gpu_loop.json" in files and "gpu_update.json" in files:
        loop = files["gpu_loop.json"]
        with_update_share(loop["loop"], files["gpu_update.json"].get("updates", {}))
        loop["loop"]["update_ms_from"] = "gpu_update.json (another machine of the same kind, the same day)"
        (folder / "gpu_loop.json").write_text(json.dumps(loop, indent=1, default=str))


def measure_sbx(sizes: dict, seconds: float, repeats: int) -> dict:
    """SBX's SAC at the reference shape (bench/peer_update.py's set-up), G gradient steps per call."""
    import peer_update

    shape = dict(peer_update.SHAPE)
    if sizes["tiny"]:
        shape.update(hidden=[16, 16], batch=20, buffer_fill=200)
    systems = []
    for steps in (1, 20):
        peer = peer_update.sbx(shape)
        systems.append(Timed(f"sbx/{steps}", lambda train=peer["train"], steps=steps: train(steps), steps,
                             {"versions": peer["versions"], "flop_per_unit": peer_update.flop_per_update(shape)["total"]}))
    return interleaved(systems, seconds, repeats)


# ----- seeds -----


def measure_seeds(sizes: dict, seconds: float, repeats: int) -> dict:
    """The demo shape's update vmapped over seeds, one update per call as `num_seeds` runs it."""
    config = load_config("configs/demo.py")
    shrink(config, sizes)
    agent, _, buffer = build_update(config, 1, sizes["per_task"])
    systems = []
    for num_seeds in sizes["seed_counts"]:
        states = jax.vmap(agent.init)(jax.random.split(jax.random.key(0), num_seeds))
        buffers = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (num_seeds, *leaf.shape)) + 0, buffer)
        update = jax.jit(jax.vmap(agent.update), donate_argnums=0)
        holder = {"state": states}

        def call(update=update, holder=holder, buffers=buffers):
            holder["state"], _ = update(holder["state"], buffers)
            jax.block_until_ready(holder["state"])

        systems.append(Timed(f"seeds/{num_seeds}", call, num_seeds * config.replay_buffer.batch_size,
                             {"num_seeds": num_seeds, "batch": config.replay_buffer.batch_size,
                              "hidden": [config.agent.critic.hidden_dim, config.agent.critic.num_layers]}))
    results = interleaved(systems, seconds, repeats)
    one = results.get("seeds/1", {}).get("per_s", {}).get("median")
    for result in results.values():
        if one and "per_s" in result:
            result["samples_per_s_x_one_seed"] = result["per_s"]["median"] / one
    return results


# ----- the training loop -----


def raw_async_stepping(env_config, seconds: float) -> dict:
    """Vector steps of the train envs with random actions and nothing else, for about `seconds`."""
    from mtsac_jax import envs

    vector_env = envs.make_vector_env(env_config, seed=0)
    try:
        vector_env.reset()
        rng = np.random.default_rng(0)
        num_envs = vector_env.num_envs
        for _ in range(20):  # workers warm
            vector_env.step(rng.uniform(-1, 1, (num_envs, METAWORLD_ACTION_DIM)).astype(np.float32))
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            vector_env.step(rng.uniform(-1, 1, (num_envs, METAWORLD_ACTION_DIM)).astype(np.float32))
            steps += 1
        elapsed = time.perf_counter() - start
    finally:
        vector_env.close()
    return {"vector_steps": steps, "seconds": elapsed, "env_steps_per_s": steps * num_envs / elapsed}


def measure_loop(sizes: dict, loop_seconds: float) -> dict:
    """train.py on MT10 with async workers, stopped by SIGTERM after `loop_seconds`."""
    overrides = {
        "env.vector_strategy": "async",
        "experiment.num_train_steps": 10**7,
        "experiment.init_steps": sizes["loop_log_freq"],
        "experiment.log_freq": sizes["loop_log_freq"],
        "experiment.eval_freq": 10**9,
        "experiment.save_freq": 10**9,
        "replay_buffer.capacity": 100_000,
    }
    config = load_config("configs/metaworld_mt10.py")
    config.env.vector_strategy = "async"
    raw = raw_async_stepping(config.env, sizes["raw_seconds"])
    argument = "configs/metaworld_mt10.py" + (":smoke" if sizes["tiny"] else "")
    with tempfile.TemporaryDirectory() as workdir:
        command = [sys.executable, str(ROOT / "train.py"), f"--config={ROOT / argument}", f"--workdir={workdir}/run",
                   *(f"--config.{key}={value}" for key, value in overrides.items())]
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            output, _ = process.communicate(timeout=loop_seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=120)
        log = pathlib.Path(workdir) / "run" / "train.jsonl"
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    after_first = [r for r in records[1:] if "perf/env_steps_per_s" in r]
    result = {"command": " ".join(command[1:]), "returncode": process.returncode,
              "wall_s": time.monotonic() - started, "output_tail": output[-3000:], "raw": raw,
              "log_intervals": len(records)}
    if after_first:
        loop_rate = statistics.median(r["perf/env_steps_per_s"] for r in after_first)
        updates = statistics.median(r["perf/updates_per_s"] for r in after_first)
        result.update({"loop_env_steps_per_s": spread([r["perf/env_steps_per_s"] for r in after_first]),
                       "loop_updates_per_s": updates, "loop_over_raw": loop_rate / raw["env_steps_per_s"],
                       "vector_step_ms": 1000 * 10 / loop_rate})
    return result


# ----- main -----


def environment() -> dict:
    import importlib.metadata

    versions = {}
    for name in ("jax", "jaxlib", "jax-cuda13-plugin", "flax", "optax", "orbax-checkpoint", "chex", "numpy",
                 "mujoco", "metaworld", "gymnasium", "ml_collections", "sbx-rl", "stable-baselines3"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        gpu = None
    return {"devices": [str(device) for device in jax.devices()], "backend": jax.default_backend(),
            "gpu": gpu, "versions": versions, "python": platform.python_version(), "cpus": os.cpu_count(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


SIZES = {
    "full": {"tiny": False, "ref_matmul": (1280, 400), "big_matmul": 8192, "per_task": 2000,
             "critic_widths": CRITIC_WIDTHS, "seed_counts": SEED_COUNTS, "loop_log_freq": 500, "raw_seconds": 15},
    "dry": {"tiny": True, "ref_matmul": (64, 32), "big_matmul": 128, "per_task": 50,
            "critic_widths": (32, 64), "seed_counts": (1, 2), "loop_log_freq": 20, "raw_seconds": 2},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, help="folder of the JSON files")
    parser.add_argument("--annotate", type=pathlib.Path, metavar="FOLDER",
                        help="only rewrite the GPU results in FOLDER with FLOPs counted here (see `annotate`)")
    parser.add_argument("--budget", type=float, default=330.0, help="seconds this script may take")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one timed stretch")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--loop-seconds", type=float, default=120.0, help="how long train.py runs")
    parser.add_argument("--no-big-matmul", action="store_true", help="the matmul rate at the update's shape only")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes, on whatever backend there is")
    parser.add_argument("--only", default="matmul,updates,loop,seeds,architectures,widths,sbx",
                        help="comma list of sections")
    args = parser.parse_args(argv)
    if args.annotate:
        annotate(args.annotate)
        return
    if args.out is None:
        parser.error("give --out FOLDER (or --annotate FOLDER)")
    sizes = dict(SIZES["dry" if args.dry_run else "full"])
    if args.no_big_matmul:
        sizes["big_matmul"] = None
    budget = Budget(args.budget)
    only = set(args.only.split(","))
    report = Report(args.out, {"environment": environment(), "dry_run": args.dry_run,
                               "settings": {"seconds": args.seconds, "repeats": args.repeats}})
    print(json.dumps(report.common["environment"]), flush=True)
    sections = {  # in order of priority: name: (file, estimated seconds, work)
        "matmul": ("gpu_update.json", 5, lambda: measure_matmul(sizes, args.seconds, args.repeats)),
        "updates": ("gpu_update.json", 40, lambda: measure_updates(sizes, args.seconds, args.repeats)),
        "loop": ("gpu_loop.json", args.loop_seconds + sizes["raw_seconds"] + 20,
                 lambda: measure_loop(sizes, args.loop_seconds)),
        "seeds": ("gpu_seeds.json", 15, lambda: measure_seeds(sizes, args.seconds, args.repeats)),
        "architectures": ("gpu_update.json", 40, lambda: measure_architectures(sizes, args.seconds, args.repeats)),
        "widths": ("gpu_update.json", 20, lambda: measure_widths(sizes, args.seconds, args.repeats)),
        "sbx": ("gpu_update.json", 20, lambda: measure_sbx(sizes, args.seconds, args.repeats)),
    }
    unknown = only - set(sections)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {list(sections)}")
    done = {}
    for name, (file, estimate_s, work) in sections.items():
        if name not in only:
            continue
        result = done[name] = report.section(file, name, budget, estimate_s, work) or {}
        if file == "gpu_update.json" and name != "matmul" and result:
            report.put(file, name, with_rates(result, done.get("matmul", {})))
        if name == "loop" and "vector_step_ms" in result:
            report.put(file, name, with_update_share(result, done.get("updates", {})))


def with_update_share(loop: dict, updates: dict) -> dict:
    """The share of one loop step that the MT10 update (one per call, as the loop runs it) takes."""
    rate = updates.get("mt10/1", {}).get("per_s", {}).get("median")
    if rate:
        loop["update_ms"] = 1000 / rate
        loop["update_share_of_step"] = loop["update_ms"] / loop["vector_step_ms"]
    return loop

if __name__ == "__main__":
    main()
