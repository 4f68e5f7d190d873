"""FiLM (Perez et al. 2018) on Meta-World: mtrl's `film` encoder type as a network.

Hidden layers of the 3x400 actor and critics are scaled and shifted per task from a learned task
embedding (mtrl's task encoder, 50 dimensions); one scalar scale and shift per layer, as mtrl
(`--config.agent.network.per_feature=True` for FiLM's per-feature form). The task reaches the
network through the embedding only (no one-hot in the observation), as in mtrl.

    python train.py --config=configs/film.py:mt10 --config.seed=1
    python train.py --config=configs/film.py:mt50 --config.seed=1
    python train.py --config=configs/film.py:mt10,smoke
"""

from mtsac_jax.config import preset

COMMON = {"env.use_one_hot": False, "agent.multitask.should_use_task_encoder": True}
SETTINGS = {"mt10": {"env": "metaworld-mt10", **COMMON}, "mt50": {"env": "metaworld-mt50", **COMMON}}


def get_config(arg=None):
    return preset(arg, SETTINGS, network="film")
