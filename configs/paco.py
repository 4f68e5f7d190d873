"""PaCo (Sun et al. 2022) on Meta-World: per-task networks composed from K shared parameter sets.

K = 5 parameter sets of the 3x400 actor and critics, a learned compositional vector per task, and
the paper's stabilisation: a task whose critic or actor loss exceeds 3000 is masked out of that
loss and its vector reset (`agent.network.loss_threshold`); no one-hot in the observation. K = 5
on MT50 too (the JAX baselines' default).

    python train.py --config=configs/paco.py:mt10 --config.seed=1
    python train.py --config=configs/paco.py:mt50 --config.seed=1
    python train.py --config=configs/paco.py:mt10,smoke
"""

from mtsac_jax.config import preset

COMMON = {"env.use_one_hot": False, "agent.network.num_parameter_sets": 5}
SETTINGS = {"mt10": {"env": "metaworld-mt10", **COMMON}, "mt50": {"env": "metaworld-mt50", **COMMON}}


def get_config(arg=None):
    return preset(arg, SETTINGS, network="paco")
