"""mtrl's hipbmdp setup on a DMControl task distribution: train on some env ids, evaluate on
them and on unseen ids (interpolation, extrapolation); headline metric episode reward.

    python train.py --config=configs/hipbmdp.py:cheetah-run                  # state_sac on states
    python train.py --config=configs/hipbmdp.py:walker-walk-friction,hipbmdp --config.seed=2
    python train.py --config=configs/hipbmdp.py:finger-spin,sac_ae,pixels    # SAC-AE on 84x84 frames
    python train.py --config=configs/hipbmdp.py:finger-spin,smoke            # tiny, about a minute

The first word names the distribution (mtsac_jax/envs/dmcontrol.py): finger-spin (mtenv's
"size", whose dynamics are those of every id), finger-spin-spinner, cheetah-run,
walker-walk-friction, walker-walk-foot. Then the agent: state_sac (the default), sac_ae,
deepmdp, state_deepmdp, hipbmdp; `pixels` trains on stacked frames (sac_ae, deepmdp and hipbmdp
read them) with a 100k-transition buffer (12.7 GB of uint8 frames; mtrl's 1M would be 127 GB).
"""

from mtsac_jax.config import preset

DISTRIBUTIONS = ("finger-spin", "finger-spin-spinner", "cheetah-run", "walker-walk-friction", "walker-walk-foot")
AGENTS = ("state_sac", "sac_ae", "deepmdp", "state_deepmdp", "hipbmdp")


def get_config(arg=None):
    return preset(
        arg, {name: {"env": f"dmcontrol-{name}-distribution-v0"} for name in DISTRIBUTIONS},
        {**{name: {"agent": name} for name in AGENTS},
         "pixels": {"env.from_pixels": True, "replay_buffer.capacity": 100_000}},
        setup="hipbmdp")
