"""CARE (Sodhani et al. 2021) on Meta-World: mtrl's `moe` encoder type with attention, as a network.

k state encoders (k = 6 on MT10, 10 on MT50, as the paper) mixed by attention over the task's
context, the context a learned map of the task description's embedding (the shipped Meta-World
description embeddings; docs/task_descriptions.md), the mixture concatenated with the context
before the 3x400 actor and critics; no one-hot in the observation. Where mtrl's code differs: its
description embeddings come from RoBERTa (768 dimensions; its JSON file is accepted with
`--config.agent.multitask.task_encoder.description_embeddings=<path>`), and one task encoder
serves actor and critics.

    python train.py --config=configs/care.py:mt10 --config.seed=1
    python train.py --config=configs/care.py:mt50 --config.seed=1
    python train.py --config=configs/care.py:mt10,smoke
"""

from mtsac_jax.config import preset

COMMON = {
    "env.use_one_hot": False,
    "agent.multitask.should_use_task_encoder": True,
    "agent.multitask.task_encoder.description_embeddings": "metaworld",
}
SETTINGS = {
    "mt10": {"env": "metaworld-mt10", **COMMON, "agent.network.num_experts": 6},
    "mt50": {"env": "metaworld-mt50", **COMMON, "agent.network.num_experts": 10},
}


def get_config(arg=None):
    return preset(arg, SETTINGS, network="care")
