"""The `make demo` run: MT1 reach-v3 with 2x256 networks and batch 256 for 30k steps,
evaluated every 5k steps over 10 episodes. A few minutes on a 2-core laptop CPU; success
climbs from 0, and the last evaluation came out between 0.2 and 0.7 for seeds 1-6 (README).

    python train.py --config=configs/demo.py --workdir=runs/demo
    python train.py --config=configs/demo.py:smoke      # tiny, every code path
"""

from mtsac_jax.config import compose, parse_config_arg


def get_config(arg=None):
    flags, _ = parse_config_arg(arg)
    config = compose("metaworld", "state_sac", "metaworld-mt1", task_name="reach-v3", smoke="smoke" in flags)
    if "smoke" in flags:
        return config
    for network in (config.agent.actor, config.agent.critic):
        network.hidden_dim = 256
        network.num_layers = 2
    config.replay_buffer.batch_size = 256
    config.experiment.num_train_steps = 30_000
    config.experiment.init_steps = 5000
    config.experiment.eval_freq = 5000
    config.experiment.num_eval_episodes = 10
    return config
