"""mtrl's MT10 reference: MT-SAC with disentangled alpha, 3x400 networks, batch 1280.

    python train.py --config=configs/metaworld_mt10.py --config.seed=1
    python train.py --config=configs/metaworld_mt10.py:mtrl      # mtrl's protocol: one fixed goal per task, 150-step episodes
    python train.py --config=configs/metaworld_mt10.py:smoke     # tiny, under a minute or two
"""

from mtsac_jax.config import compose, parse_config_arg


def get_config(arg=None):
    flags, _ = parse_config_arg(arg, flags=("smoke", "mtrl"))
    return compose("metaworld", "state_sac", "metaworld-mt10", smoke="smoke" in flags,
                   protocol="mtrl" if "mtrl" in flags else None)
