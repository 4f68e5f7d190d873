"""Non-finite updates are detected inside the jitted update, never adopted, and named."""

import chex
import jax
import numpy as np

from mtsac_jax import numerics
from tests.test_sac import host_copy, setup_agent


def guarded_update(agent):
    return jax.jit(numerics.guarded(agent.update))


def test_a_nan_reward_of_one_task_drops_the_update_and_names_the_loss_and_the_task():
    _, agent, buffer = setup_agent()
    update = guarded_update(agent)
    state = agent.init(jax.random.key(0))
    before = host_copy(state)
    poisoned = buffer.replace(reward=buffer.reward.at[1].set(np.nan))
    after, metrics, fault = update(state, poisoned)
    assert bool(fault["any"])
    assert not np.isfinite(metrics["critic_loss"][1]) and np.isfinite(metrics["critic_loss"][0])
    chex.assert_trees_all_equal(host_copy(after), before)  # the state given, unchanged
    message = numerics.describe(fault, 7, ("reach-v3", "push-v3"))
    # push-v3's NaN critic loss; through the shared critic it reached every task's actor loss
    assert message.startswith("step 7: non-finite "), message
    assert "critic_loss (task push-v3)" in message and "actor_loss (tasks reach-v3, push-v3)" in message
    # the next, clean batch is adopted as usual
    after, _, fault = update(after, buffer)
    assert not bool(fault["any"]) and int(after.step) == 1


def test_a_non_finite_state_under_finite_losses_is_named_by_its_fields():
    """NaN Adam moments of the actor: every loss is computed before the actor's step, so only
    the new actor parameters and moments are not finite."""
    _, agent, buffer = setup_agent()
    state = agent.init(jax.random.key(0))
    poison = lambda leaf: leaf * np.nan if np.issubdtype(leaf.dtype, np.floating) else leaf  # noqa: E731
    broken = state.replace(actor=state.actor.replace(opt_state=jax.tree.map(poison, state.actor.opt_state)))
    after, metrics, fault = guarded_update(agent)(broken, buffer)
    assert bool(fault["any"]) and all(np.isfinite(value).all() for value in metrics.values())
    assert numerics.describe(fault, 3, ("a", "b")) == "step 3: non-finite values in the new actor.opt_state, actor.params"
    assert int(after.step) == 0


def test_a_finite_update_is_the_plain_update():
    _, agent, buffer = setup_agent()
    state = agent.init(jax.random.key(0))
    guarded_state, guarded_metrics, fault = guarded_update(agent)(state, buffer)
    plain_state, plain_metrics = agent.update(agent.init(jax.random.key(0)), buffer)
    assert not bool(fault["any"])
    chex.assert_trees_all_equal(host_copy(guarded_state), host_copy(plain_state))
    chex.assert_trees_all_equal(host_copy(guarded_metrics), host_copy(plain_metrics))
