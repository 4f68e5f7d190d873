"""MOORE (Hendawy et al. 2024) on Meta-World: k orthogonal experts mixed per task.

k = 4 experts on MT10 and 6 on MT50 (the paper's), each a 3x400 MLP as the actor and critics of
mtrl, with one output head per task (the paper's multi-head MOORE); the task reaches the network
through its learned mixing weights (no one-hot in the observation).

    python train.py --config=configs/moore.py:mt10 --config.seed=1
    python train.py --config=configs/moore.py:mt50 --config.seed=1
    python train.py --config=configs/moore.py:mt10,smoke
"""

from mtsac_jax.config import preset

COMMON = {"env.use_one_hot": False, "agent.multitask.should_use_multi_head_policy": True}
SETTINGS = {
    "mt10": {"env": "metaworld-mt10", **COMMON, "agent.network.num_experts": 4},
    "mt50": {"env": "metaworld-mt50", **COMMON, "agent.network.num_experts": 6},
}


def get_config(arg=None):
    return preset(arg, SETTINGS, network="moore")
