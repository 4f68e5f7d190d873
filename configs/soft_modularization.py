"""Soft Modularization (Yang et al. 2020) on Meta-World.

The paper's shallow network on MT10 (L = 2 module layers of n = 2 modules) and its deep one on
MT50 (L = 4, n = 4), modules of 128 units, state and task embeddings and routing of D = 400; the
task reaches the network through its learned embedding (no one-hot in the observation). Not
included: the paper's reweighting of the task losses by the tasks' temperatures (sec. 4.3).

    python train.py --config=configs/soft_modularization.py:mt10 --config.seed=1
    python train.py --config=configs/soft_modularization.py:mt50 --config.seed=1
    python train.py --config=configs/soft_modularization.py:mt10,smoke
"""

from mtsac_jax.config import preset


def _setting(layers: int, modules: int) -> dict:
    return {
        "env.use_one_hot": False,
        "agent.network.num_modules": modules,
        "agent.network.module_hidden_dim": 128,
        **{f"agent.{net}.{key}": value for net in ("actor", "critic")
           for key, value in (("hidden_dim", 400), ("num_layers", layers))},
    }


SETTINGS = {"mt10": {"env": "metaworld-mt10", **_setting(2, 2)}, "mt50": {"env": "metaworld-mt50", **_setting(4, 4)}}


def get_config(arg=None):
    return preset(arg, SETTINGS, network="soft_modularization")
