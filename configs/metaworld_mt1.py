"""MT1: one Meta-World task with mtrl's state_sac networks, batch 128, no one-hot.

    python train.py --config=configs/metaworld_mt1.py:reach-v3
    python train.py --config=configs/metaworld_mt1.py:push-v3,smoke
    python train.py --config=configs/metaworld_mt1.py:push-v3,mtrl   # mtrl's protocol: a fixed goal, 150-step episodes
"""

from mtsac_jax.config import ConfigError, compose, parse_config_arg


def get_config(arg=None):
    flags, _ = parse_config_arg(arg, flags=None)  # a task name, smoke and mtrl (its protocol)
    tasks = [flag for flag in flags if flag not in ("smoke", "mtrl")]
    if len(tasks) > 1:
        raise ConfigError(
            f"configs/metaworld_mt1.py trains one task, and its argument names {len(tasks)}: {', '.join(tasks)}. "
            "Fix: one task per run (--config=configs/metaworld_mt1.py:push-v3), or configs/compose.py for a "
            "multi-task env."
        )
    return compose(
        "metaworld", "state_sac", "metaworld-mt1", task_name=tasks[0] if tasks else None, smoke="smoke" in flags,
        protocol="mtrl" if "mtrl" in flags else None,
    )
