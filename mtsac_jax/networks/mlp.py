"""`mlp`: mtrl's state_sac network, a ReLU MLP over (T, B, D) (Haarnoja et al. 2018a, sec. 5).

With `should_use_multi_head_policy` its output layer is per task (a shared trunk, one head per
task); with `should_use_disjoint_policy` every layer is per task (a separate network per task,
mtrl's disjoint policy). A context (the learned task embedding) is appended to every sample.

Run it:

    python train.py --config=configs/metaworld_mt10.py
    python train.py --config=configs/compose.py:env=metaworld-mt10,network=mlp
"""

from __future__ import annotations

import flax.linen as nn
import ml_collections

from mtsac_jax.networks import Network, PerTaskDense, broadcast_concat, output_layer


class MLP(nn.Module):
    """ReLU MLP: (T, B, D), (T, E) | None -> (T, B, output_dim).

    Shared layers see the task axis folded into the batch, (T*B, D)."""

    hidden_dim: int
    num_layers: int
    output_dim: int
    multi_head: bool = False
    disjoint: bool = False

    @nn.compact
    def __call__(self, x, context=None):
        if context is not None:
            x = broadcast_concat(x, context)
        num_tasks, batch = x.shape[:2]
        if not self.disjoint:
            x = x.reshape(num_tasks * batch, -1)
        hidden = PerTaskDense if self.disjoint else nn.Dense
        for index in range(self.num_layers):
            x = nn.relu(hidden(self.hidden_dim, name=f"hidden_{index}")(x))
        return output_layer(x, num_tasks, self.output_dim, per_task=self.disjoint or self.multi_head)


def make(
    config: ml_collections.ConfigDict,
    *,
    hidden_dim: int,
    num_layers: int,
    output_dim: int,
    multitask: ml_collections.ConfigDict,
) -> MLP:
    return MLP(
        hidden_dim,
        num_layers,
        output_dim,
        multi_head=multitask.should_use_multi_head_policy,
        disjoint=multitask.should_use_disjoint_policy,
    )


NETWORK = Network(make=make, supports_disjoint=True)
