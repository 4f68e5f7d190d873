"""mtrl's hipbmdp setup on a DMControl task distribution: train on some env ids, evaluate on
them and on unseen ids (interpolation, extrapolation); headline metric episode reward.

    python train.py --config=configs/hipbmdp.py:cheetah-run          # state_sac, state observations
    python train.py --config=configs/hipbmdp.py:walker-walk-friction --config.seed=2
    python train.py --config=configs/hipbmdp.py:finger-spin,smoke    # tiny, about a minute

Distributions (mtsac_jax/envs/dmcontrol.py): finger-spin (mtenv's "size", whose dynamics are
those of every id), finger-spin-spinner, cheetah-run, walker-walk-friction, walker-walk-foot.
"""

from mtsac_jax.config import preset

DISTRIBUTIONS = ("finger-spin", "finger-spin-spinner", "cheetah-run", "walker-walk-friction", "walker-walk-foot")


def get_config(arg=None):
    return preset(arg, {name: {"env": f"dmcontrol-{name}-distribution-v0"} for name in DISTRIBUTIONS},
                  setup="hipbmdp")
