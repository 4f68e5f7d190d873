"""MT50: all 50 Meta-World tasks, mtrl's state_sac networks, batch 1280 split over 50 tasks
would not divide, so the batch is 1300 (26 per task).

    python train.py --config=configs/metaworld_mt50.py --config.seed=1
    python train.py --config=configs/metaworld_mt50.py:smoke
"""

from mtsac_jax.config import compose, parse_config_arg


def get_config(arg=None):
    flags, _ = parse_config_arg(arg)
    config = compose("metaworld", "state_sac", "metaworld-mt50", smoke="smoke" in flags)
    if "smoke" not in flags:
        config.replay_buffer.batch_size = 1300
    return config
