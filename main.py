"""mtrl's entry point: a command line pasted from mtrl's documentation runs as typed.

    python3 -u main.py setup=metaworld agent=state_sac env=metaworld-mt10 agent.multitask.num_envs=10 \\
        agent.multitask.should_use_disentangled_alpha=True experiment.num_train_steps=2000000 setup.seed=1

It is `train.py` (README.md, "From mtrl's command lines", lists how mtrl's keys map).
"""

import sys

from train import run

if __name__ == "__main__":
    run(sys.argv)
