"""`soft_modularization`: a base network of L layers of n modules, soft-routed per sample by a
routing network on (state, task) (Yang et al. 2020, "Multi-Task Reinforcement Learning with Soft
Modularization", sec. 4.2).

With f(s) the state embedding and z_T the task embedding (a linear map of the one-hot in the
paper: a learned vector per task here, or a linear map of the context when a task encoder gives
one), the routing input is u = f(s) * z_T (eq. 3). Routing: p^1 = W_d^1 relu(u),
p^(l+1) = W_d^(l+1) relu(W_u^l p^l * u) (eq. 4-5), each a softmax over the modules it reads
from (eq. 6-7): an n x n matrix between module layers, an n-vector from the last layer to the
output. Base network: module j of layer l computes W_j^l g_j^l; module i of layer l+1 reads
g_i^(l+1) = sum_j p_ij^l relu(W_j^l g_j^l) (eq. 8), and the last layer's modules are summed with
the last routing vector before the output layer. Routing is per sample, so everything runs on
the folded batch (T*B, ...); module parameters carry a leading module axis and each module is a
plain matmul. Where the authors' code and the JAX baselines differ: routing layer l+1
reads all earlier routing outputs (skip connections), the task-state product goes through one
more layer, and the ReLU comes after the weighted sum; this follows the paper.

Run it:

    python train.py --config=configs/soft_modularization.py:mt10
"""

from __future__ import annotations

import flax.linen as nn

from mtsac_jax.networks import Network, StackedDense, TaskEmbedding, make_from_keys, output_layer


class SoftModularization(nn.Module):
    """(T, B, D), (T, E) | None -> (T, B, output_dim); `routing` probabilities are sown as
    intermediates, one per module layer."""

    hidden_dim: int  # D: state and task embeddings, routing width
    num_layers: int  # L: module layers
    output_dim: int
    multi_head: bool
    num_modules: int  # n
    module_hidden_dim: int  # d

    @nn.compact
    def __call__(self, x, context=None):
        num_tasks, batch = x.shape[:2]
        n = self.num_modules
        if context is None:
            task = TaskEmbedding(self.hidden_dim, name="task_embedding")(num_tasks)  # (T, D)
        else:
            task = nn.Dense(self.hidden_dim, name="task_projection")(context)
        state = nn.Dense(self.hidden_dim, name="state_embedding")(x.reshape(num_tasks * batch, -1))
        routing_input = (state.reshape(num_tasks, batch, -1) * task[:, None, :]).reshape(num_tasks * batch, -1)

        inputs, probs = nn.relu(state), None  # the first module layer's modules all read the state
        for layer in range(self.num_layers):
            last = layer == self.num_layers - 1
            hidden = routing_input
            if probs is not None:
                hidden = nn.Dense(self.hidden_dim, name=f"routing_up_{layer}")(probs.reshape(len(probs), -1)) * hidden
            logits = nn.Dense(n if last else n * n, name=f"routing_down_{layer}")(nn.relu(hidden))
            probs = nn.softmax(logits.reshape(-1, n) if last else logits.reshape(-1, n, n), axis=-1)
            self.sow("intermediates", "routing", probs)
            modules = StackedDense(self.module_hidden_dim, n, name=f"modules_{layer}")
            outputs = [nn.relu(output) for output in modules(inputs)]  # n x (T*B, d)
            if last:
                x = sum(probs[:, j, None] * outputs[j] for j in range(n))
            else:
                inputs = [sum(probs[:, i, j, None] * outputs[j] for j in range(n)) for i in range(n)]
        return output_layer(x, num_tasks, self.output_dim, per_task=self.multi_head)


def default_config() -> dict:
    """The paper's MT10 setting: n = 2 modules per layer of 128 units (4 of each on MT50); the
    number of module layers L is the actor's and critic's `num_layers`, D their `hidden_dim`."""
    return {"num_modules": 2, "module_hidden_dim": 128}


NETWORK = Network(make=make_from_keys(SoftModularization), default_config=default_config)
