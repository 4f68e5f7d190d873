"""The scaled-critic recipe on Meta-World's own protocol: a wide BroNet critic trained with a
categorical loss on per-task normalised rewards, learned task embeddings, AdamW and two updates
per env step (BRC, Nauman et al. 2025; the critic widths of McLean et al. 2025).

    python train.py --config=configs/scaled.py:mt10 --config.seed=1     # the papers' sizes (an accelerator)
    python train.py --config=configs/scaled.py:mt50 --config.seed=1
    python train.py --config=configs/scaled.py:mt10-cpu --config.seed=1 # a 2-core CPU: MT10, 100k steps per task
    python train.py --config=configs/scaled.py:mt10-cpu,mse             # an ablation (see ABLATIONS)
    python train.py --config=configs/scaled.py:mt10,smoke

`mt10` and `mt50`: BRC's critic, BroNet of width 4096 with 2 residual blocks, and actor, BroNet
of width 256 with 1 block; 32-d learned task embeddings; a categorical critic loss with 101
bins on [-10, 10] and each task's rewards scaled so its returns are bounded by 10; AdamW 3e-4
with weight decay 1e-4; 2 updates per env step; batch 1280 on MT10 (128 per task) and 1250 on
MT50 (25 per task), near BRC's 1024. `mt10-cpu`: the same with the widest critic that trains
MT10 for 100k steps per task (200k updates at 2 per step) in about 4 hours on a 2-core CPU:
`python bench/scaled.py` measured 14.2 updates/s at width 256 (3.9 h for 200k updates; the
env steps and evaluations add about half an hour) and 9.3 at 384 (6.0 h)
(bench/results/scaled.json, docs/performance.md section 4).
"""

from mtsac_jax.config import preset

RECIPE = {
    "agent.actor.hidden_dim": 256,
    "agent.actor.num_layers": 1,  # residual blocks
    "agent.critic.hidden_dim": 4096,
    "agent.critic.num_layers": 2,
    "agent.critic_loss": "categorical",
    "agent.reward_normalization": True,
    "agent.multitask.should_use_task_encoder": True,
    "agent.multitask.task_encoder.embedding_dim": 32,
    "agent.optimizers.actor.weight_decay": 1e-4,
    "agent.optimizers.critic.weight_decay": 1e-4,
    "experiment.num_updates_per_step": 2,
}
CPU_CRITIC_WIDTH = 256
SETTINGS = {
    "mt10": {"env": "metaworld-mt10", **RECIPE, "replay_buffer.batch_size": 1280},
    "mt50": {"env": "metaworld-mt50", **RECIPE, "replay_buffer.batch_size": 1250},
    "mt10-cpu": {"env": "metaworld-mt10", **RECIPE, "replay_buffer.batch_size": 1280,
                 "agent.critic.hidden_dim": CPU_CRITIC_WIDTH, "experiment.num_train_steps": 100_000},
}
# Each takes one piece away: a plain MLP of as many layers (no LayerNorm, no residual), the
# squared-error loss, no reward normalisation, one update per env step.
ABLATIONS = {
    "mlp": {"network": "mlp", "agent.actor.num_layers": 3, "agent.critic.num_layers": 5},
    "mse": {"agent.critic_loss": "mse"},
    "no-reward-norm": {"agent.reward_normalization": False},
    "one-update": {"experiment.num_updates_per_step": 1},
}


def get_config(arg=None):
    return preset(arg, SETTINGS, ABLATIONS, network="bronet")
