"""mtsac_jax as systems of the peer benchmark, and the agent set-up other benchmarks share.

    python bench/peer_update.py --systems numpy_matmul,mtsac_jax,mtsac_jax_multi_head

`make` and `make_multi_head` are bench/workers.py factories, which `bench/peer_update.py`
runs as `mtsac_jax` and `mtsac_jax_multi_head`; `make_glibc_malloc`, or another checkout's
`make`, joins a run with `--system NAME=<path>/bench/peer_plugin.py:<factory>`. Their
`train(G)` runs G full updates of the agent `train.py` uses (`state_sac`'s `update`, one update
per call as in the MT10 reference config) on its device-resident replay buffer, at the
benchmark's shape: MT10 (T=10 tasks), per-task temperatures, batch split evenly over the
tasks. `build` is that set-up, for any benchmark.
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from mtsac_jax import agents, replay_buffer  # noqa: E402
from mtsac_jax.config import compose  # noqa: E402
from mtsac_jax.cpu_runtime import keep_matmuls_in_xla, reuse_freed_memory  # noqa: E402

NUM_TASKS = 10


def build(shape: dict, multi_head: bool = False, critic_hidden: int | None = None, seed: int = 0,
          reuse_memory: bool = True):
    """The agent, a train state and a buffer filled with random transitions at `shape`, in a
    process tuned as `train.py` tunes it (before its first JAX computation), but for glibc's
    malloc, which keeps its defaults if not `reuse_memory`."""
    keep_matmuls_in_xla()
    if reuse_memory:
        reuse_freed_memory()
    config = compose("metaworld", "state_sac", "metaworld-mt10")
    config.unlock()
    section = config.agent
    section.actor.hidden_dim = shape["hidden"][0]
    section.actor.num_layers = len(shape["hidden"])
    section.critic.hidden_dim = critic_hidden or shape["hidden"][0]
    section.critic.num_layers = len(shape["hidden"])
    section.discount, section.critic_tau = shape["gamma"], shape["tau"]
    for optimizer in section.optimizers.values():
        optimizer.lr = shape["lr"]
    section.multitask.should_use_multi_head_policy = multi_head
    section.multitask.num_envs = NUM_TASKS
    obs_dim, action_dim = shape["obs_dim"], shape["act_dim"]
    agent = agents.build(section, agents.EnvSpec(NUM_TASKS, obs_dim, action_dim), shape["batch"] // NUM_TASKS)
    buffer = random_buffer(shape["buffer_fill"] // NUM_TASKS, obs_dim, action_dim, seed)
    return agent, agent.init(jax.random.key(seed)), buffer


def random_buffer(per_task: int, obs_dim: int, action_dim: int, seed: int = 0) -> replay_buffer.ReplayBuffer:
    """A replay buffer of NUM_TASKS tasks filled with `per_task` random transitions each."""
    buffer = replay_buffer.init(NUM_TASKS, per_task, obs_dim, action_dim)
    rng = np.random.default_rng(seed)
    for _ in range(per_task):
        buffer = replay_buffer.insert_jit(
            buffer,
            rng.normal(size=(NUM_TASKS, obs_dim)),
            rng.uniform(-1, 1, (NUM_TASKS, action_dim)),
            rng.normal(size=NUM_TASKS),
            rng.normal(size=(NUM_TASKS, obs_dim)),
            np.zeros(NUM_TASKS),
        )
    return buffer


def updating(agent, state, buffer) -> dict:
    """A bench/workers.py system of `agent.update` calls from `state` on `buffer`: its
    `train(G)` (G updates, one call each, as train.py makes them) and parameter counts."""
    holder = {"state": state}

    def train(num_updates: int) -> None:
        state = holder["state"]
        for _ in range(num_updates):
            state, _ = agent.update(state, buffer)
        jax.block_until_ready(state)
        holder["state"] = state

    sac_state = getattr(state, "sac", state)  # an agent's state that holds SAC's whole, or SAC's
    params = jax.tree.map(lambda x: x.size, (sac_state.actor.params, sac_state.critic.params))
    return {
        "train": train,
        "static_G": False,
        "param_counts": {"actor": sum(jax.tree.leaves(params[0])), "critics": sum(jax.tree.leaves(params[1]))},
    }


def _system(shape: dict, multi_head: bool, reuse_memory: bool = True) -> dict:
    agent, state, buffer = build(shape, multi_head, reuse_memory=reuse_memory)
    return {
        **updating(agent, state, buffer),
        "info": {"multi_head": multi_head, "reuse_memory": reuse_memory, "num_tasks": NUM_TASKS,
                 "jax": jax.__version__},
    }


def make(shape: dict) -> dict:
    """Shared heads (MT-SAC), the mtrl MT10 reference."""
    return _system(shape, multi_head=False)


def make_multi_head(shape: dict) -> dict:
    """One output head per task, each sample through its own head only."""
    return _system(shape, multi_head=True)


def make_glibc_malloc(shape: dict) -> dict:
    """`make` with glibc's default malloc: each update maps and page-faults its working memory
    afresh."""
    return _system(shape, multi_head=False, reuse_memory=False)
