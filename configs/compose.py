"""Any setup x agent x env (and network, gradient method), as mtrl composed them on its command line.

    python train.py --config=configs/compose.py:setup=metaworld,agent=state_sac,env=metaworld-mt10
    python train.py --config=configs/compose.py:setup=metaworld,agent=state_sac,env=metaworld-mt10,network=mlp,gradient=mean
    python train.py --config=configs/compose.py:setup=metaworld,agent=state_sac,env=metaworld-mt1,task=push-v3,smoke
    python train.py --config=configs/compose.py:env=metaworld-mt10,protocol=mtrl   # mtrl's env protocol
"""

from mtsac_jax.config import compose, parse_config_arg

KEYS = ("setup", "agent", "env", "task", "network", "gradient", "protocol")


def get_config(arg=None):
    flags, pairs = parse_config_arg(arg, keys=KEYS)
    return compose(
        pairs.get("setup", "metaworld"),
        pairs.get("agent", "state_sac"),
        pairs.get("env", "metaworld-mt10"),
        task_name=pairs.get("task"),
        smoke="smoke" in flags,
        network=pairs.get("network", "mlp"),
        gradient=pairs.get("gradient", "mean"),
        protocol=pairs.get("protocol"),
    )
