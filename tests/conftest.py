"""Shared fixtures: tiny configs, and real Meta-World envs built once per session."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest

from mtsac_jax import envs
from mtsac_jax.config import compose


def tiny_config(env="metaworld-mt1", **multitask):
    """The smoke config, unlocked so a test can switch agent.multitask variants."""
    config = compose("metaworld", "state_sac", env, smoke=True)
    config.unlock()
    config.agent.multitask.update(multitask)
    return config


@pytest.fixture(scope="session")
def mt1_envs():
    config = tiny_config()
    config.env.max_episode_steps = 5
    vector_env = envs.make_vector_env(config.env, seed=0)
    yield vector_env
    vector_env.close()


@pytest.fixture(scope="session")
def mt10_config():
    return tiny_config("metaworld-mt10")


@pytest.fixture(scope="session")
def mt10_envs(mt10_config):
    vector_env = envs.make_vector_env(mt10_config.env, seed=0)
    yield vector_env
    vector_env.close()
