"""Each architecture's formulation against its alternatives, and numpy at the architectures' own
matmul shapes, in one run.

    python bench/ceiling.py --json bench/results/ceiling.json

Every network of bench/architectures.py at its MT10 preset (the formulation the package uses)
beside other formulations of the same network (same parameters, same function), each a full SAC
update per call in its own worker process, timed in interleaved rounds with numpy's float32
matmul at the reference shape (1280x400 @ 400x400) and at the shapes that bound the
architectures: ten 128-row products batched over the task axis (PaCo's composed layers, a
multi-head or per-task layer), and 1280x128 @ 128x128 (soft modularization's modules). Reported
per system: updates/s, relative to the package's formulation of that network, and the achieved
FLOP rate as a fraction of numpy's reference rate; per numpy shape, its rate as a fraction of the
reference's. The alternatives:

- film `bias_in_product`: relu(gamma * (W h + b) + beta), the bias added in the product's epilogue;
- care `batched_encoders`, moore `batched_experts`, soft_modularization `batched_modules`: the
  experts (encoders, modules) as one contraction batched over a leading expert axis
  (`nn.vmap`), mixed by a contraction; moore's with Gram-Schmidt per sample as eq. 4-5 write it;
- care `wide_encoders`: the encoders' first layer as one (N, D) @ (D, k*H) product (they all read
  the state), their output layer and the attention mixture folded into one (N, k*H) @ (k*H, F)
  product (sum_k w_k (h_k W_k + b_k) = [w_1 h_1, ..., w_k h_k] [W_1; ...; W_k] + w b);
- moore `plain_experts_gram_schmidt`: plain matmuls per expert, Gram-Schmidt per sample;
- soft_modularization `broadcast_mixing`: the batched modules mixed by broadcast products and sums;
- paco `contracted_composition`: the composed kernels as a contraction over the set axis of
  (K, D, F); paco `per_task_loop`: a plain 128-row matmul per task instead of one batched product.
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from architectures import arguments, build, flop_per_update, measure  # noqa: E402

ALTERNATIVES = {  # system name: (network, alternative registered under "<network>_<alternative>")
    "film_bias_in_product": "film",
    "care_batched_encoders": "care",
    "care_wide_encoders": "care",
    "moore_batched_experts": "moore",
    "moore_plain_experts_gram_schmidt": "moore",
    "paco_contracted_composition": "paco",
    "paco_per_task_loop": "paco",
    "soft_modularization_batched_modules": "soft_modularization",
    "soft_modularization_broadcast_mixing": "soft_modularization",
}
PRESETS = ("mlp", "film", "care", "soft_modularization", "moore", "paco")
NUMPY_SHAPES = {  # system name: (batch, M, K, N) of numpy's batched (M x K) @ (K x N)
    "numpy_per_task": (10, 128, 400, 400),
    "numpy_narrow": (1, 1280, 128, 128),
}


def _numpy(batch: int, m: int, k: int, n: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((batch, m, k), np.float32), rng.standard_normal((batch, k, n), np.float32)
    out = np.empty((batch, m, n), np.float32)

    def train(count: int) -> None:
        for _ in range(count):
            np.matmul(a, b, out=out)

    return {"train": train, "flop_per_call": 2.0 * batch * m * k * n}


def numpy_per_task(shape):
    return _numpy(*NUMPY_SHAPES["numpy_per_task"])


def numpy_narrow(shape):
    return _numpy(*NUMPY_SHAPES["numpy_narrow"])


def _register_alternatives() -> None:
    """Registers each alternative formulation as a network named after its system."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from mtsac_jax import networks
    from mtsac_jax.networks import (
        Network, PerTaskDense, TaskEmbedding, broadcast_concat, hidden_stack, make_from_keys, output_layer,
        stacked_parameters, task_encoding,
    )
    from mtsac_jax.networks import care, film, moore, paco, soft_modularization
    from mtsac_jax.registry import NETWORKS

    def experts(module_class, num: int, shared_input: bool):
        return nn.vmap(module_class, variable_axes={"params": 0}, split_rngs={"params": True},
                       in_axes=None if shared_input else 0, out_axes=0, axis_size=num)

    class FeedForward(nn.Module):
        hidden_dim: int
        num_layers: int
        output_dim: int

        @nn.compact
        def __call__(self, x):
            return nn.Dense(self.output_dim, name="output")(hidden_stack(x, self.hidden_dim, self.num_layers - 1))

    def gram_schmidt(u):
        basis = []
        for vector in u:
            for earlier in basis:
                vector = vector - jnp.sum(vector * earlier, axis=-1, keepdims=True) * earlier
            norm = jnp.sqrt(jnp.sum(vector * vector, axis=-1, keepdims=True) + moore.NORM_EPSILON**2)
            basis.append(vector / norm)
        return basis

    class FiLMBiasInProduct(film.FiLM):
        @nn.compact
        def __call__(self, x, context=None):
            num_tasks, batch = x.shape[:2]
            encoding = task_encoding(context, num_tasks, self.embedding_dim)
            width = self.hidden_dim if self.per_feature else 1
            generated = nn.Dense(2 * self.num_layers * width, kernel_init=nn.initializers.zeros, name="film")(encoding)
            generated = generated.reshape(num_tasks, self.num_layers, 2, 1, width)
            scale, shift = 1.0 + generated[:, :, 0], generated[:, :, 1]
            x = x.reshape(num_tasks * batch, -1)
            for index in range(self.num_layers):
                x = nn.Dense(self.hidden_dim, name=f"hidden_{index}")(x).reshape(num_tasks, batch, -1)
                x = nn.relu(scale[:, index] * x + shift[:, index]).reshape(num_tasks * batch, -1)
            return output_layer(x, num_tasks, self.output_dim, per_task=self.multi_head)

    class CAREBatchedEncoders(care.CARE):
        @nn.compact
        def __call__(self, x, context=None):
            num_tasks, batch = x.shape[:2]
            weights, context = self.attention(context, num_tasks)
            encoders = experts(FeedForward, self.num_experts, shared_input=True)(
                self.encoder_hidden_dim, self.encoder_num_layers, self.encoder_output_dim, name="encoders")
            encoded = encoders(x.reshape(num_tasks * batch, -1)).reshape(self.num_experts, num_tasks, batch, -1)
            mixed = jnp.einsum("tk,ktbf->tbf", weights, encoded)
            x = hidden_stack(broadcast_concat(mixed, context).reshape(num_tasks * batch, -1), self.hidden_dim,
                             self.num_layers)
            return output_layer(x, num_tasks, self.output_dim, per_task=self.multi_head)

    class StackedParameters(nn.Module):
        """A `StackedDense`'s parameters, kernel (num, D, F) and bias (num, F), not applied."""

        features: int
        num: int
        inputs: int

        @nn.compact
        def __call__(self):
            return stacked_parameters(self, self.num, self.inputs, self.features)

    class WideEncoders(nn.Module):
        """care's two-layer encoders and their mixture: (N, D), (N, k) -> (N, F) in two products."""

        hidden_dim: int
        output_dim: int
        num: int

        @nn.compact
        def __call__(self, x, sample_weights):
            kernel, bias = StackedParameters(self.hidden_dim, self.num, x.shape[-1], name="hidden_0")()
            hidden = nn.relu(x @ kernel.transpose(1, 0, 2).reshape(x.shape[-1], -1) + bias.reshape(-1))
            kernel, bias = StackedParameters(self.output_dim, self.num, self.hidden_dim, name="output")()
            weighted = hidden.reshape(len(x), self.num, -1) * sample_weights[:, :, None]
            return weighted.reshape(len(x), -1) @ kernel.reshape(-1, self.output_dim) + sample_weights @ bias

    class CAREWideEncoders(care.CARE):
        @nn.compact
        def __call__(self, x, context=None):
            assert self.encoder_num_layers == 2, "the wide formulation is written for two-layer encoders"
            num_tasks, batch = x.shape[:2]
            weights, context = self.attention(context, num_tasks)
            encoders = WideEncoders(self.encoder_hidden_dim, self.encoder_output_dim, self.num_experts,
                                    name="encoders")
            mixed = encoders(x.reshape(num_tasks * batch, -1), jnp.repeat(weights, batch, axis=0))
            x = broadcast_concat(mixed.reshape(num_tasks, batch, -1), context).reshape(num_tasks * batch, -1)
            x = hidden_stack(x, self.hidden_dim, self.num_layers)
            return output_layer(x, num_tasks, self.output_dim, per_task=self.multi_head)

    def moore_kind(batched: bool):
        class MOOREGramSchmidt(moore.MOORE):
            @nn.compact
            def __call__(self, x, context=None):
                num_tasks, batch = x.shape[:2]
                task_weights = TaskEmbedding(self.num_experts, name="task_weights")(num_tasks)
                folded = x.reshape(num_tasks * batch, -1)
                if batched:
                    representations = list(experts(FeedForward, self.num_experts, shared_input=True)(
                        self.hidden_dim, self.num_layers, self.hidden_dim, name="experts")(folded))
                else:
                    representations = networks.StackedFeedForward(
                        self.hidden_dim, self.num_layers, self.hidden_dim, self.num_experts, name="experts")(folded)
                basis = jnp.stack(gram_schmidt(representations)).reshape(self.num_experts, num_tasks, batch, -1)
                mixed = jax.nn.tanh(jnp.einsum("tk,ktbh->tbh", task_weights, basis))
                return output_layer(mixed, num_tasks, self.output_dim, per_task=self.multi_head)

        return MOOREGramSchmidt

    def paco_kind(kind: str):
        class Dense(nn.Module):
            features: int
            num_sets: int

            @nn.compact
            def __call__(self, x, composition):
                kernels, biases = stacked_parameters(self, self.num_sets, x.shape[-1], self.features)
                bias = composition @ biases
                if kind == "contracted":
                    kernel = jnp.einsum("tk,kdf->tdf", composition, kernels)
                    return jnp.einsum("tbd,tdf->tbf", x, kernel) + bias[:, None, :]
                kernel = (composition @ kernels.reshape(self.num_sets, -1)).reshape(-1, *kernels.shape[1:])
                return jnp.stack([x[task] @ kernel[task] + bias[task] for task in range(x.shape[0])])

        class PaCoAlternative(paco.PaCo):
            @nn.compact
            def __call__(self, x, context=None):
                num_sets = self.num_parameter_sets
                composition = TaskEmbedding(num_sets, name=paco.COMPOSITION)(x.shape[0]) * num_sets**-0.5
                for index in range(self.num_layers):
                    x = nn.relu(Dense(self.hidden_dim, num_sets, name=f"hidden_{index}")(x, composition))
                if self.multi_head:
                    return PerTaskDense(self.output_dim, name="head")(x)
                return Dense(self.output_dim, num_sets, name="head")(x, composition)

        return PaCoAlternative

    def soft_modularization_kind(broadcast: bool):
        class SoftModularizationBatched(soft_modularization.SoftModularization):
            @nn.compact
            def __call__(self, x, context=None):
                num_tasks, batch = x.shape[:2]
                n = self.num_modules
                task = TaskEmbedding(self.hidden_dim, name="task_embedding")(num_tasks)
                state = nn.Dense(self.hidden_dim, name="state_embedding")(x.reshape(num_tasks * batch, -1))
                routing_input = (state.reshape(num_tasks, batch, -1) * task[:, None, :]).reshape(num_tasks * batch, -1)
                inputs, shared_input, probs = nn.relu(state), True, None
                for layer in range(self.num_layers):
                    last = layer == self.num_layers - 1
                    hidden = routing_input
                    if probs is not None:
                        up = nn.Dense(self.hidden_dim, name=f"routing_up_{layer}")
                        hidden = up(probs.reshape(len(probs), -1)) * hidden
                    logits = nn.Dense(n if last else n * n, name=f"routing_down_{layer}")(nn.relu(hidden))
                    probs = nn.softmax(logits.reshape(-1, n) if last else logits.reshape(-1, n, n), axis=-1)
                    modules = experts(nn.Dense, n, shared_input)(self.module_hidden_dim, name=f"modules_{layer}")
                    outputs = nn.relu(modules(inputs))  # (n, T*B, d)
                    if last and broadcast:
                        x = jnp.sum(probs.T[:, :, None] * outputs, axis=0)
                    elif last:
                        x = jnp.einsum("bj,jbd->bd", probs, outputs)
                    elif broadcast:
                        inputs = jnp.sum(jnp.transpose(probs, (1, 2, 0))[:, :, :, None] * outputs[None], axis=1)
                    else:
                        inputs = jnp.einsum("bij,jbd->ibd", probs, outputs)
                    shared_input = False
                return output_layer(x, num_tasks, self.output_dim, per_task=self.multi_head)

        return SoftModularizationBatched

    modules = {
        "film_bias_in_product": (FiLMBiasInProduct, film.NETWORK),
        "care_batched_encoders": (CAREBatchedEncoders, care.NETWORK),
        "care_wide_encoders": (CAREWideEncoders, care.NETWORK),
        "moore_batched_experts": (moore_kind(batched=True), moore.NETWORK),
        "moore_plain_experts_gram_schmidt": (moore_kind(batched=False), moore.NETWORK),
        "paco_contracted_composition": (paco_kind("contracted"), paco.NETWORK),
        "paco_per_task_loop": (paco_kind("loop"), paco.NETWORK),
        "soft_modularization_batched_modules": (soft_modularization_kind(broadcast=False), soft_modularization.NETWORK),
        "soft_modularization_broadcast_mixing": (soft_modularization_kind(broadcast=True), soft_modularization.NETWORK),
    }
    for name, (module_class, network) in modules.items():
        if name not in NETWORKS:
            NETWORKS.register(name, Network(make=make_from_keys(module_class), default_config=network.default_config,
                                            uses_context=network.uses_context, loss_guard=network.loss_guard))


def alternative(name: str, shape: dict) -> dict:
    """A timed system of the alternative `name` at its network's MT10 preset."""
    from peer_plugin import updating

    _register_alternatives()
    agent, state, buffer = build(ALTERNATIVES[name], shape, overrides={"agent.network.name": name})
    return {**updating(agent, state, buffer), "flop_per_update": flop_per_update(agent, state, buffer)}


def preset(name: str, shape: dict) -> dict:
    """A timed system of the network `name` at its MT10 preset, as the package formulates it."""
    from architectures import system

    return system(name, shape)


for _name in ALTERNATIVES:  # the workers' factories, one per system name
    globals()[_name] = lambda shape, _name=_name: alternative(_name, shape)
for _name in PRESETS:
    globals()[_name] = lambda shape, _name=_name: preset(_name, shape)


def main(argv: list[str] | None = None) -> None:
    choices = [*PRESETS, *ALTERNATIVES]
    args, names = arguments(__doc__, choices, "systems", argv)
    bases = {name: ALTERNATIVES.get(name, name) for name in choices}
    labels = {name: [ALTERNATIVES[name], name.removeprefix(ALTERNATIVES[name] + "_")] for name in ALTERNATIVES}
    labels.update({name: [name, "the package's"] for name in PRESETS})
    measure(HERE / "ceiling.py", names, args, bases=bases, rows=labels, header=["network", "formulation"],
            base_label="x the package's", described={"alternatives": ALTERNATIVES, "numpy_shapes": NUMPY_SHAPES},
            references=tuple(NUMPY_SHAPES))

if __name__ == "__main__":
    main()
