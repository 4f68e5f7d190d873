"""MT50: all 50 Meta-World tasks with mtrl's state_sac networks, 128 samples per task per batch.

    python train.py --config=configs/metaworld_mt50.py --config.seed=1
    python train.py --config=configs/metaworld_mt50.py:mtrl      # mtrl's protocol: one fixed goal per task, 150-step episodes
    python train.py --config=configs/metaworld_mt50.py:smoke
"""

from mtsac_jax.config import compose, parse_config_arg


def get_config(arg=None):
    flags, _ = parse_config_arg(arg, flags=("smoke", "mtrl"))
    return compose("metaworld", "state_sac", "metaworld-mt50", smoke="smoke" in flags,
                   protocol="mtrl" if "mtrl" in flags else None)
