"""The representation-learning agents (sac_ae, deepmdp, state_deepmdp, hipbmdp): their losses,
mtrl's update schedule, frames kept as uint8, and each agent trained through train.py and resumed
exactly after a SIGKILL."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtsac_jax import agents, replay_buffer
from mtsac_jax.agents import EnvSpec, deepmdp
from mtsac_jax.checkpoint import Checkpointer
from mtsac_jax.config import ConfigError, compose
from mtsac_jax.networks import encoders
from tests.conftest import assert_killed_run_resumes_exactly

T, ACT, STATE = 3, 2, 5
FRAMES = (6, 20, 20)  # 2 stacked 20x20 frames
CHEETAH = "dmcontrol-cheetah-run-distribution-v0"
PIXELS = ["--config.env.from_pixels=True", "--config.env.height=32", "--config.env.width=32",
          "--config.replay_buffer.capacity=400",
          # Software rendering costs ~20 ms a frame at any size: two training envs and one of each
          # unseen set keep every path (pairs of envs, three evaluation sets) at half the frames.
          "--config.env.train_ids=(3, 4)", "--config.env.interpolation_ids=(5,)", "--config.env.extrapolation_ids=(2,)"]


def agent_config(name, **keys):
    config = compose("hipbmdp", name, CHEETAH, smoke=True)
    config.unlock()
    config.agent.update(keys)
    config.agent.multitask.num_envs = T
    return config.agent


def env_spec(pixels):
    if pixels:
        return EnvSpec(T, int(np.prod(FRAMES)), ACT, (), FRAMES, "uint8")
    return EnvSpec(T, STATE, ACT)


def filled_buffer(spec, size=16):
    buffer = replay_buffer.init(T, size, spec.observation_shape, ACT, jnp.dtype(spec.obs_dtype))
    rng = np.random.default_rng(0)
    draw = ((lambda: rng.integers(0, 256, (T, *FRAMES), dtype=np.uint8)) if spec.pixels
            else (lambda: rng.normal(size=(T, STATE)).astype(np.float32)))
    for _ in range(size):
        buffer = replay_buffer.insert_jit(buffer, draw(), rng.uniform(-1, 1, (T, ACT)), rng.normal(size=T), draw(),
                                          np.zeros(T))
    return buffer


def test_the_task_metric_is_zero_when_embedding_and_prediction_distances_agree():
    rng = np.random.default_rng(0)
    embedding, paired = jnp.asarray(rng.normal(size=(T, 4))), jnp.asarray(rng.normal(size=(T, 4)))
    prediction = jnp.asarray(rng.normal(size=(T, 6, 8)))
    direction = jnp.asarray(rng.normal(size=(T, 6, 8)))
    direction /= jnp.linalg.norm(direction, axis=-1, keepdims=True)
    distance = jnp.linalg.norm(embedding - paired, axis=-1)
    agreeing = prediction + distance[:, None, None] * direction  # every sample at the embeddings' distance
    np.testing.assert_allclose(deepmdp.task_metric_loss(embedding, paired, prediction, agreeing), 0.0, atol=1e-10)
    farther = prediction + 2 * distance[:, None, None] * direction
    np.testing.assert_allclose(deepmdp.task_metric_loss(embedding, paired, prediction, farther), distance**2, rtol=1e-6)
    # the predictions' distance is held fixed: the gradient reaches the embedding only
    grads = jax.grad(lambda e, p: deepmdp.task_metric_loss(e, paired, p, farther).sum(), argnums=(0, 1))(
        embedding, prediction)
    assert jnp.abs(grads[0]).sum() > 0 and jnp.abs(grads[1]).sum() == 0


def test_the_reconstruction_target_is_the_5_bit_frame_centred_and_the_decoder_restores_the_shape():
    frames = jnp.arange(256, dtype=jnp.uint8).reshape(1, 1, 1, 16, 16)
    target = encoders.reconstruction_target(frames, jax.random.key(0))
    assert target.min() >= -0.5 and target.max() <= 0.5
    np.testing.assert_allclose(target, jnp.floor(frames / 8) / 32 - 0.5, atol=1 / 32)
    encoder, decoder = encoders.PixelEncoder(2, 4, 8), encoders.PixelDecoder(2, 4, FRAMES)
    obs = jnp.zeros((T, 5, *FRAMES), jnp.uint8)
    features = encoder.apply(encoder.init(jax.random.key(0), obs), obs)
    assert features.shape == (T, 5, 8)
    assert decoder.apply(decoder.init(jax.random.key(1), features), features).shape == (T, 5, *FRAMES)


@pytest.mark.parametrize("name, pixels", [("sac_ae", True), ("state_deepmdp", False), ("hipbmdp", True)])
def test_actor_every_other_update_targets_at_their_taus_and_the_models_train(name, pixels):
    """mtrl's schedule: the actor and temperature on every second update (metrics of the last
    one kept in between); the targets every second update, the critics at critic_tau and the
    encoder at encoder_tau; the auxiliary step on every update, on the models and the encoder."""
    config = agent_config(name, actor_update_freq=2, critic_target_update_freq=2, critic_tau=0.25, encoder_tau=0.5)
    config.optimizers.encoder.lr = 1e-12  # the auxiliary step leaves the encoder where the critic step put it
    spec = env_spec(pixels)
    agent = agents.build(config, spec, batch_size_per_task=4)
    buffer = filled_buffer(spec)
    first = agent.init(jax.random.key(0))
    second, metrics = agent.update(jax.tree.map(jnp.copy, first), buffer)  # the update donates its state
    chex.assert_trees_all_equal(second.sac.actor.params, first.sac.actor.params)
    chex.assert_trees_all_equal(second.sac.critic.target_params, first.sac.critic.target_params)
    np.testing.assert_array_equal(metrics["actor_loss"], 0.0)  # no actor update yet
    assert not np.allclose(jax.tree.leaves(second.models.params)[0], jax.tree.leaves(first.models.params)[0])
    third, metrics = agent.update(jax.tree.map(jnp.copy, second), buffer)
    assert not np.allclose(jax.tree.leaves(third.sac.actor.params)[0], jax.tree.leaves(second.sac.actor.params)[0])
    assert np.all(metrics["actor_loss"] != 0.0)
    critic, target = third.sac.critic.params["params"], second.sac.critic.target_params["params"]
    new_target = third.sac.critic.target_params["params"]
    for part, tau in (("ensemble", 0.25), ("encoder", 0.5)):
        chex.assert_trees_all_close(new_target[part], jax.tree.map(lambda c, t: tau * c + (1 - tau) * t,
                                                                   critic[part], target[part]), rtol=1e-5, atol=1e-6)
    assert {"model_loss", "transition_loss" if name != "sac_ae" else "reconstruction_loss"} <= set(metrics)
    if name == "hipbmdp":
        assert metrics["task_metric_loss"].shape == (T,) and (metrics["task_metric_loss"] > 0).all()


@pytest.mark.parametrize("name, pixels, message", [
    ("sac_ae", False, "reconstructs frames"), ("deepmdp", False, "reconstructs frames"),
    ("state_deepmdp", True, "reads state vectors")])
def test_an_agent_given_the_wrong_observations_says_which_to_use(name, pixels, message):
    with pytest.raises(ConfigError, match=message):
        agents.build(agent_config(name), env_spec(pixels), batch_size_per_task=4)


def test_the_representation_agents_act_in_unseen_envs_with_their_shared_policy():
    agent = agents.build(agent_config("hipbmdp"), env_spec(False), batch_size_per_task=4)
    params = agent.policy_params(agent.init(jax.random.key(0)))
    obs = np.random.default_rng(0).normal(size=(5, STATE)).astype(np.float32)  # five envs, none of them trained on
    unseen = agent.unseen_eval_actions(params, obs)
    assert unseen.shape == (5, ACT)
    np.testing.assert_allclose(unseen[:T], agent.eval_actions(params, obs[:T]), rtol=1e-6)


@pytest.mark.e2e
@pytest.mark.parametrize("name, overrides", [("sac_ae", PIXELS), ("state_deepmdp", []), ("hipbmdp", PIXELS)])
def test_each_agent_trains_and_resumes_exactly_after_sigkill(tmp_path, name, overrides):
    """(deepmdp is hipbmdp without the env embedding: its frames path is hipbmdp's.)"""
    assert_killed_run_resumes_exactly(  # 30-step episodes: the checkpoint at step 50 is mid-episode
        tmp_path, f"configs/compose.py:setup=hipbmdp,agent={name},env={CHEETAH},smoke",
        overrides=[*overrides, "--config.env.episode_length=60"])
    if overrides:  # frames are stored as they come, uint8
        checkpointer = Checkpointer(tmp_path / "whole", 2)
        try:
            stored = checkpointer.array_metadata(checkpointer.steps()[-1])["buffer"]["obs"]
        finally:
            checkpointer.close()
        assert stored.dtype == np.uint8 and tuple(stored.shape[2:]) == (9, 32, 32)
