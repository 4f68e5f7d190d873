"""`bronet`: BroNet (Nauman et al. 2024, "Bigger, Regularized, Optimistic", sec. 4; the critic
of BRC, Nauman et al. 2025): a Dense + LayerNorm + ReLU input layer, then residual blocks of
Dense-LayerNorm-ReLU-Dense-LayerNorm with a skip connection, then the output layer.

Its width is the section's `hidden_dim` and its depth `num_layers` residual blocks, each two
Dense layers (`agent.critic.num_layers=2`, `agent.actor.num_layers=1` are BRC's). Like `mlp`, a
context (the learned task embedding) is appended to every sample, the shared layers see the task
axis folded into the batch, and `should_use_multi_head_policy` gives each task its own output
layer.

Run it:

    python train.py --config=configs/scaled.py:mt10
    python train.py --config=configs/compose.py:env=metaworld-mt10,network=bronet
"""

from __future__ import annotations

import flax.linen as nn
import ml_collections

from mtsac_jax.networks import Network, broadcast_concat, output_layer


class BroNet(nn.Module):
    """(T, B, D), (T, E) | None -> (T, B, output_dim)."""

    hidden_dim: int
    num_layers: int  # residual blocks
    output_dim: int
    multi_head: bool = False

    @nn.compact
    def __call__(self, x, context=None):
        if context is not None:
            x = broadcast_concat(x, context)
        num_tasks, batch = x.shape[:2]
        x = x.reshape(num_tasks * batch, -1)
        x = nn.relu(nn.LayerNorm(name="input_norm")(nn.Dense(self.hidden_dim, name="input")(x)))
        for index in range(self.num_layers):
            y = nn.Dense(self.hidden_dim, name=f"block_{index}_dense_0")(x)
            y = nn.relu(nn.LayerNorm(name=f"block_{index}_norm_0")(y))
            y = nn.Dense(self.hidden_dim, name=f"block_{index}_dense_1")(y)
            x = x + nn.LayerNorm(name=f"block_{index}_norm_1")(y)
        return output_layer(x, num_tasks, self.output_dim, per_task=self.multi_head)


def make(config: ml_collections.ConfigDict, *, hidden_dim: int, num_layers: int, output_dim: int,
         multitask: ml_collections.ConfigDict) -> BroNet:
    return BroNet(hidden_dim, num_layers, output_dim, multi_head=multitask.should_use_multi_head_policy)


NETWORK = Network(make=make)
