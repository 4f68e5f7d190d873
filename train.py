"""Train multi-task SAC from a config file.

    python train.py --config=configs/metaworld_mt10.py --config.seed=1 --workdir=runs/mt10
    python train.py --config=configs/compose.py:setup=metaworld,agent=state_sac,env=metaworld-mt10,smoke
"""

from __future__ import annotations

import pathlib
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from mtsac_jax.checkpoint import CheckpointError
from mtsac_jax.cli import default_workdir, load_config_or_exit, parse_flags
from mtsac_jax.envs import EnvWorkerError
from mtsac_jax.cpu_runtime import tune_cpu_process
from mtsac_jax.training import TrainingError, train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with an argument: configs/metaworld_mt1.py:reach-v3,smoke"
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (default: runs/<env>_<agent>_seed<seed>).")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache",
    str(pathlib.Path.home() / ".cache" / "mtsac_jax" / "xla"),
    "Folder of JAX's persistent compilation cache, so a second start skips compiling ('' disables it).",
)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # keep JAX's backend probing off the console
    tune_cpu_process()  # memory reuse and the matmul backend (mtsac_jax/cpu_runtime.py)
    if _COMPILATION_CACHE.value:
        jax.config.update("jax_compilation_cache_dir", _COMPILATION_CACHE.value)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    config = load_config_or_exit(_CONFIG)
    workdir = pathlib.Path(_WORKDIR.value) if _WORKDIR.value else default_workdir(config)
    try:
        train_and_evaluate(config, workdir)
    except (TrainingError, EnvWorkerError, CheckpointError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
