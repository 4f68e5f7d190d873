"""`care`: CARE's mixture of state encoders, weighted by attention over a context from the task's
description (Sodhani et al. 2021, "Multi-Task Reinforcement Learning
with Context-based Representations", sec. 4).

k encoders (MLPs on the state) are mixed by attention weights computed from the task's context
embedding z: alpha = softmax(W z / temperature) over the k encoders (eq. 1-2), the mixed encoding
is concatenated with z, and an MLP maps the pair to the output. The context is the task encoder's
(T, E) output: in the paper, and with `agent.multitask.task_encoder.description_embeddings`, a
learned map of the task description's language-model embedding; without a task encoder, a
learned embedding per task (the paper's ablation without metadata). The attention runs once per
task on (T, ...); the encoders' parameters are stacked on a leading expert axis and applied as
plain matmuls on the folded batch (`networks.StackedFeedForward`). Where mtrl differs: its actor
and critics share one task encoder updated by the critic loss; here each network learns its own
(as the rest of this project's networks do).

Run it:

    python train.py --config=configs/care.py:mt10
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mtsac_jax.networks import (
    Network, StackedFeedForward, broadcast_concat, hidden_stack, make_from_keys, output_layer, task_encoding,
)


class CARE(nn.Module):
    """(T, B, D), (T, E) | None -> (T, B, output_dim); the (T, k) attention weights are sown as
    intermediates (`attention_weights`)."""

    hidden_dim: int
    num_layers: int
    output_dim: int
    multi_head: bool
    num_experts: int
    encoder_hidden_dim: int
    encoder_num_layers: int
    encoder_output_dim: int
    temperature: float
    embedding_dim: int

    def attention(self, context, num_tasks: int):
        """The (T, k) attention weights over the encoders, each row summing to 1."""
        context = task_encoding(context, num_tasks, self.embedding_dim)
        return nn.softmax(nn.Dense(self.num_experts, name="attention")(context) / self.temperature, axis=-1), context

    @nn.compact
    def __call__(self, x, context=None):
        num_tasks, batch = x.shape[:2]
        weights, context = self.attention(context, num_tasks)
        self.sow("intermediates", "attention_weights", weights)  # (T, k), read by tests and analyses
        encoders = StackedFeedForward(self.encoder_hidden_dim, self.encoder_num_layers, self.encoder_output_dim,
                                      self.num_experts, name="encoders")
        encoded = encoders(x.reshape(num_tasks * batch, -1))  # k x (T*B, F)
        sample_weights = jnp.repeat(weights, batch, axis=0)  # (T*B, k)
        mixed = sum(sample_weights[:, index, None] * e for index, e in enumerate(encoded))
        x = broadcast_concat(mixed.reshape(num_tasks, batch, -1), context).reshape(num_tasks * batch, -1)
        x = hidden_stack(x, self.hidden_dim, self.num_layers)
        return output_layer(x, num_tasks, self.output_dim, per_task=self.multi_head)


def default_config() -> dict:
    """The paper's MT10 setting: k = 6 encoders of two 50-unit layers, attention temperature 1;
    embedding_dim: the learned task embedding's size when no task encoder gives the context."""
    return {
        "num_experts": 6,
        "encoder_hidden_dim": 50,
        "encoder_num_layers": 2,
        "encoder_output_dim": 50,
        "temperature": 1.0,
        "embedding_dim": 50,
    }


NETWORK = Network(make=make_from_keys(CARE), default_config=default_config)
