"""Train multi-task SAC from a config file, or from mtrl's command line.

    python train.py --config=configs/metaworld_mt10.py --config.seed=1 --workdir=runs/mt10
    python train.py --config=configs/compose.py:setup=metaworld,agent=state_sac,env=metaworld-mt10,smoke
    python train.py setup=metaworld agent=state_sac env=metaworld-mt10 setup.seed=1     # mtrl's words
    python train.py -m setup=metaworld agent=state_sac env=metaworld-mt10 setup.seed=1,2,3
    python train.py --config=runs/mt10/config.json --workdir=runs/mt10          # a run's saved config
    scripts/launch_local_multiprocess.sh 2 --config=configs/metaworld_mt10.py   # 2 processes (README: many devices)
"""

from __future__ import annotations

import functools
import json
import pathlib
import shutil
import subprocess
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from mtsac_jax import mtrl_args, processes, tracking
from mtsac_jax.checkpoint import CheckpointError
from mtsac_jax.cli import (config_keys, config_variant, default_workdir, fail, load_config_or_exit, overridden_keys,
                           parse_flags, print_help)
from mtsac_jax.config import ConfigError
from mtsac_jax.cpu_runtime import tune_cpu_process
from mtsac_jax.envs import EnvWorkerError
from mtsac_jax.training import TrainingError, train_and_evaluate

COMPOSE = str(pathlib.Path(__file__).resolve().parent / "configs" / "compose.py")
FROM_JSON = str(pathlib.Path(__file__).resolve().parent / "configs" / "from_json.py")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with an argument: configs/metaworld_mt1.py:reach-v3,smoke"
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run folder (default: runs/<env>_<agent>_seed<seed>[_<variant>], README.md says more)."
)
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache",
    str(pathlib.Path.home() / ".cache" / "mtsac_jax" / "xla"),
    "Folder of JAX's persistent compilation cache, so a second start skips compiling ('' disables it).",
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False,
    "Join the run's other processes (one per host or per GPU) with jax.distributed; on SLURM, Cloud TPU and Open MPI "
    "everything is detected, elsewhere pass the three flags below (scripts/launch_local_multiprocess.sh does).",
)
_COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 for --distributed (default: $JAX_COORDINATOR_ADDRESS)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "The run's process count, for --distributed.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (0 writes the logs), for --distributed.")
_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False, "Print the resolved config as JSON and exit (Hydra's `--cfg job` does the same)."
)


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected argument(s) {' '.join(argv[1:])}. Flags start with -- (--config=..., --config.<key>=<value>, "
             "--workdir=...); mtrl's words are key=value (setup.seed=1). python train.py --help lists them.")
    logging.set_verbosity(logging.WARNING)  # keep JAX's backend probing off the console
    config = load_config_or_exit(_CONFIG)
    if _PRINT_CONFIG.value:
        print(json.dumps(config.to_dict(), indent=2, sort_keys=True))
        return
    tune_cpu_process()  # memory reuse and the matmul backend (mtsac_jax/cpu_runtime.py)
    if _DISTRIBUTED.value:
        processes.initialize(_COORDINATOR_ADDRESS.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    if _COMPILATION_CACHE.value:
        jax.config.update("jax_compilation_cache_dir", _COMPILATION_CACHE.value)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    if _WORKDIR.value:
        workdir = pathlib.Path(_WORKDIR.value)
    else:
        overridden = overridden_keys(config, sys.argv)
        workdir = default_workdir(config, config_variant(sys.argv), overridden)
        if overridden and processes.is_main():
            print(f"workdir {workdir}: the config file's run with " + ", ".join(
                f"{key}={value}" for key, value in overridden.items()), flush=True)
    if workdir.exists() and not workdir.is_dir():
        fail(f"--workdir={workdir} is a file, not a folder. Fix: pass a new or existing run folder.")
    started = _started(workdir)
    try:
        _train(config, workdir, started)
    except BaseException as error:
        if jax.process_count() > 1 and not (isinstance(error, SystemExit) and not error.code):
            processes.leave(error)  # the others wait for this process in vain: end at once, no goodbye
        raise


def _train(config, workdir: pathlib.Path, started: dict[str, bool]) -> None:
    try:
        if config.experiment.wandb.enabled and processes.is_main():  # before anything is built
            tracking.import_wandb()
        train_and_evaluate(config, workdir)
    except (TrainingError, EnvWorkerError, CheckpointError, ConfigError) as error:
        _forget_unstarted(workdir, started)
        sys.exit(f"error: {error}")
    except (MemoryError, jax.errors.JaxRuntimeError) as error:
        if not isinstance(error, MemoryError) and "RESOURCE_EXHAUSTED" not in str(error):
            raise
        _forget_unstarted(workdir, started)
        fail(f"out of memory: {str(error).splitlines()[0] if str(error) else 'MemoryError'}. The replay buffer "
             "(replay_buffer.capacity transitions) and the networks (agent.actor/critic hidden_dim, num_layers) "
             "must fit in memory. Fix: lower replay_buffer.capacity or the network sizes.")
    except KeyboardInterrupt:  # Ctrl-C before the training loop took over the signal (it saves, then stops)
        _forget_unstarted(workdir, started)
        kept = (" Its checkpoints are as they were: rerun the same command to resume." if (workdir / "checkpoints").is_dir()
                and any((workdir / "checkpoints").iterdir()) else " Nothing was saved: rerun the same command to start.")
        print(f"Stopped by Ctrl-C while starting.{kept}", file=sys.stderr)
        sys.exit(130)
    except BaseException:
        _forget_unstarted(workdir, started)
        raise


def _started(workdir: pathlib.Path) -> dict[str, bool]:
    """What of a run `workdir` held before this command: the folder, its config.json."""
    return {"folder": workdir.is_dir(), "config": (workdir / "config.json").is_file()}


def _forget_unstarted(workdir: pathlib.Path, started: dict[str, bool]) -> None:
    """After a command failed before its first checkpoint, removes the config.json it wrote (and
    the folder it made, if it holds nothing else), so that the next command in this workdir,
    with any config, starts there as in a new one."""
    checkpoints = workdir / "checkpoints"
    if not processes.is_main() or started["config"] or (checkpoints.is_dir() and any(checkpoints.iterdir())):
        return
    try:
        (workdir / "config.json").unlink(missing_ok=True)
    except OSError:  # the workdir could not be made (a file in its path): nothing was written
        return
    if not started["folder"] and workdir.is_dir():
        leftovers = [path for path in workdir.rglob("*") if path.is_file()]
        if not leftovers:
            shutil.rmtree(workdir, ignore_errors=True)


def run(argv: list[str]) -> None:
    """Runs `argv` (a command line of `--config` flags, mtrl's `key=value` words, or both)."""
    argv = [f"--config={FROM_JSON}:{arg.split('=', 1)[1]}"
            if arg.startswith("--config=") and arg.endswith(".json") and ".py:" not in arg else arg for arg in argv]
    flags_argv, words, multirun = mtrl_args.split(mtrl_args.hydra_flags(argv))
    if any(arg in ("-h", "--help", "--helpshort") for arg in flags_argv[1:]):
        try:  # mtrl's words choose the config whose keys are listed, as they would for training
            composed = mtrl_args.translate(words, flags_argv, COMPOSE, functools.partial(config_keys, COMPOSE)) \
                if words and not multirun else flags_argv
        except ConfigError as error:
            fail(str(error))
        given = [arg.split("=", 1)[1] for arg in composed if arg.startswith("--config=")]
        file, _, config_arg = (given[-1] if given else f"{COMPOSE}:").partition(":")
        try:
            print_help(__doc__, ["config", "workdir", "compilation_cache", "distributed", "coordinator_address",
                                 "num_processes", "process_id", "print_config"], file, config_arg or None)
        except ConfigError as error:
            fail(str(error))
        return
    if multirun:
        try:
            runs = mtrl_args.expand(words)
        except ConfigError as error:
            fail(str(error))
        failed = []
        for number, combination in enumerate(runs, start=1):
            print(f"multirun {number}/{len(runs)}: {' '.join(combination)}", flush=True)
            if subprocess.run([sys.executable, *flags_argv, *combination]).returncode:
                failed.append(" ".join(combination))
        if failed:
            fail(f"{len(failed)} of {len(runs)} runs failed: " + "; ".join(failed))
        return
    if words:
        try:
            argv = mtrl_args.translate(words, flags_argv, COMPOSE, functools.partial(config_keys, COMPOSE))
        except ConfigError as error:
            fail(str(error))
    sys.argv[:] = argv  # ml_collections finds the `--config.` overrides in sys.argv
    app.run(main, argv=argv, flags_parser=parse_flags)


if __name__ == "__main__":
    run(sys.argv)
