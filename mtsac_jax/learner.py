"""Multi-task SAC as pure functions over one explicit TrainState.

Equations cite Haarnoja et al. 2018b, "Soft Actor-Critic Algorithms and Applications".
Choices that peers make differently, as mtrl makes them:
- update order: critic first, then actor and alpha on the freshly updated critic, then the
  polyak update of the target critics, all in one jitted call;
- target entropy: -|A| for every task;
- temperature loss (eq. 18) optimised in log-alpha: by default log_alpha times the detached
  entropy error, as the authors' softlearning code (and SB3, SBX), whose gradient in log-alpha
  is the error itself; `agent.temperature_loss="alpha"` takes mtrl's alpha times the error,
  whose gradient is alpha times the error (on MT1 reach-v3, seed 1, with 3x400 networks it ran
  alpha up to 60 and the critic loss to 1e6 within 50k steps; docs/results.md);
- one log-alpha per task with `should_use_disentangled_alpha`, else one shared;
- rewards are not rescaled.
Per-task losses are (T,) vectors; the optimised loss is their mean, which equals mtrl's
mean over the whole batch because every task has the same number of samples.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mtsac_jax import networks, replay_buffer


@flax.struct.dataclass
class TrainState:
    actor_params: dict
    critic_params: dict
    target_critic_params: dict
    log_alpha: jax.Array  # (T,) with disentangled alpha, else (1,)
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    key: jax.Array  # raw uint32 key data (plain array: easy to checkpoint and copy)
    step: jax.Array  # () int32: gradient updates done


class SACLearner:
    """Builds the networks and the jitted init/update/act functions from an agent config."""

    def __init__(
        self,
        agent_config: ml_collections.ConfigDict,
        obs_dim: int,
        action_dim: int,
        batch_size_per_task: int,
        num_updates_per_call: int = 1,
    ):
        multitask = agent_config.multitask
        self.num_tasks = multitask.num_envs
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.discount = agent_config.discount
        self.tau = agent_config.critic_tau
        self.init_temperature = agent_config.init_temperature
        self.temperature_loss = agent_config.temperature_loss
        self.target_entropy = -float(action_dim)
        self.batch_size_per_task = batch_size_per_task
        self.num_updates_per_call = num_updates_per_call
        self.num_alphas = self.num_tasks if multitask.should_use_disentangled_alpha else 1
        structure = dict(
            multi_head=multitask.should_use_multi_head_policy,
            disjoint=multitask.should_use_disjoint_policy,
            task_embedding_dim=multitask.task_encoder.embedding_dim if multitask.should_use_task_encoder else 0,
        )
        self.actor = networks.Actor(
            action_dim,
            agent_config.actor.hidden_dim,
            agent_config.actor.num_layers,
            agent_config.actor.log_std_min,
            agent_config.actor.log_std_max,
            **structure,
        )
        self.critic = networks.TwinCritic(agent_config.critic.hidden_dim, agent_config.critic.num_layers, **structure)
        self.actor_optimizer = optax.adam(agent_config.optimizers.actor.lr)
        self.critic_optimizer = optax.adam(agent_config.optimizers.critic.lr)
        self.alpha_optimizer = optax.adam(agent_config.optimizers.alpha.lr)

        self.init = jax.jit(self._init)
        self.update = jax.jit(self._update, donate_argnums=0)
        self.sample_actions = jax.jit(self._sample_actions)
        self.deterministic_actions = jax.jit(self._deterministic_actions)

    # ----- state -----

    def _init(self, key: jax.Array) -> TrainState:
        key, actor_key, critic_key = jax.random.split(key, 3)
        obs = jnp.zeros((self.num_tasks, 1, self.obs_dim))
        action = jnp.zeros((self.num_tasks, 1, self.action_dim))
        actor_params = self.actor.init(actor_key, obs)
        critic_params = self.critic.init(critic_key, obs, action)
        log_alpha = jnp.full((self.num_alphas,), jnp.log(self.init_temperature), jnp.float32)
        return TrainState(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=critic_params,
            log_alpha=log_alpha,
            actor_opt_state=self.actor_optimizer.init(actor_params),
            critic_opt_state=self.critic_optimizer.init(critic_params),
            alpha_opt_state=self.alpha_optimizer.init(log_alpha),
            key=jax.random.key_data(key),
            step=jnp.zeros((), jnp.int32),
        )

    def _alpha(self, log_alpha):  # (T, 1): broadcasts against (T, B)
        return jnp.broadcast_to(jnp.exp(log_alpha), (self.num_tasks,))[:, None]

    # ----- per-task losses, each returning ((T,) loss vector, aux) -----

    def critic_losses(self, critic_params, state: TrainState, batch, key):
        """Soft Bellman residual (eq. 5) with the soft target of eq. 3 through min of twin
        target critics. Bootstraps through truncation: only `terminated` cuts the target."""
        mean, log_std = self.actor.apply(state.actor_params, batch["next_obs"])
        next_action, next_log_prob = networks.sample_tanh_gaussian(mean, log_std, key)
        target_q = self.critic.apply(state.target_critic_params, batch["next_obs"], next_action).min(axis=0)
        soft_value = target_q - self._alpha(state.log_alpha) * next_log_prob
        target = batch["reward"] + self.discount * (1.0 - batch["terminated"]) * soft_value
        q = self.critic.apply(critic_params, batch["obs"], batch["action"])  # (2, T, B)
        squared_error = (q - jax.lax.stop_gradient(target)[None]) ** 2
        return squared_error.sum(axis=0).mean(axis=-1), q.mean(axis=(0, 2))

    def actor_losses(self, actor_params, critic_params, log_alpha, obs, key):
        """Policy loss of eq. 7 with the reparameterised tanh-Gaussian: E[alpha log pi - min Q]."""
        mean, log_std = self.actor.apply(actor_params, obs)
        action, log_prob = networks.sample_tanh_gaussian(mean, log_std, key)
        q = self.critic.apply(critic_params, obs, action).min(axis=0)
        alpha = jax.lax.stop_gradient(self._alpha(log_alpha))
        return (alpha * log_prob - q).mean(axis=-1), log_prob

    def alpha_losses(self, log_alpha, log_prob):
        """Temperature loss of eq. 18, log pi detached: log_alpha_t * (-log pi - target_entropy)
        (or alpha_t * (...) with `temperature_loss="alpha"`); both push alpha the same way."""
        entropy_error = jax.lax.stop_gradient(-log_prob - self.target_entropy)
        if self.temperature_loss == "alpha":
            return (self._alpha(log_alpha) * entropy_error).mean(axis=-1)
        log_alpha = jnp.broadcast_to(log_alpha, (self.num_tasks,))[:, None]
        return (log_alpha * entropy_error).mean(axis=-1)

    # ----- the update -----

    def _one_update(self, state: TrainState, buffer: replay_buffer.ReplayBuffer):
        key, sample_key, critic_key, actor_key = jax.random.split(jax.random.wrap_key_data(state.key), 4)
        batch = replay_buffer.sample(buffer, sample_key, self.batch_size_per_task)

        def critic_objective(params):
            losses, q = self.critic_losses(params, state, batch, critic_key)
            return losses.mean(), (losses, q)

        (_, (critic_losses, q)), critic_grads = jax.value_and_grad(critic_objective, has_aux=True)(
            state.critic_params
        )
        critic_updates, critic_opt_state = self.critic_optimizer.update(critic_grads, state.critic_opt_state)
        critic_params = optax.apply_updates(state.critic_params, critic_updates)

        def actor_objective(params):
            losses, log_prob = self.actor_losses(params, critic_params, state.log_alpha, batch["obs"], actor_key)
            return losses.mean(), (losses, log_prob)

        (_, (actor_losses, log_prob)), actor_grads = jax.value_and_grad(actor_objective, has_aux=True)(
            state.actor_params
        )
        actor_updates, actor_opt_state = self.actor_optimizer.update(actor_grads, state.actor_opt_state)
        actor_params = optax.apply_updates(state.actor_params, actor_updates)

        def alpha_objective(log_alpha):
            losses = self.alpha_losses(log_alpha, log_prob)
            return losses.mean(), losses

        (_, alpha_losses), alpha_grads = jax.value_and_grad(alpha_objective, has_aux=True)(state.log_alpha)
        alpha_updates, alpha_opt_state = self.alpha_optimizer.update(alpha_grads, state.alpha_opt_state)
        log_alpha = optax.apply_updates(state.log_alpha, alpha_updates)

        target_critic_params = optax.incremental_update(critic_params, state.target_critic_params, self.tau)
        new_state = TrainState(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=target_critic_params,
            log_alpha=log_alpha,
            actor_opt_state=actor_opt_state,
            critic_opt_state=critic_opt_state,
            alpha_opt_state=alpha_opt_state,
            key=jax.random.key_data(key),
            step=state.step + 1,
        )
        metrics = {  # each (T,)
            "critic_loss": critic_losses,
            "actor_loss": actor_losses,
            "alpha_loss": alpha_losses,
            "alpha": self._alpha(log_alpha)[:, 0],
            "entropy": -log_prob.mean(axis=-1),
            "q": q,
        }
        return new_state, metrics

    def _update(self, state: TrainState, buffer: replay_buffer.ReplayBuffer):
        """`num_updates_per_call` gradient updates in one `lax.scan`; metrics of the last."""
        state, metrics = jax.lax.scan(
            lambda carry, _: self._one_update(carry, buffer), state, None, length=self.num_updates_per_call
        )
        return state, jax.tree.map(lambda m: m[-1], metrics)

    # ----- acting on a (T, obs_dim) batch, one observation per task -----

    def _sample_actions(self, actor_params, obs, key, step):
        """Actions sampled with the key `fold_in(key, step)`: reproducible at any step."""
        mean, log_std = self.actor.apply(actor_params, obs[:, None, :])
        action, _ = networks.sample_tanh_gaussian(mean, log_std, jax.random.fold_in(key, step))
        return action[:, 0]

    def _deterministic_actions(self, actor_params, obs):
        mean, _ = self.actor.apply(actor_params, obs[:, None, :])
        return jnp.tanh(mean[:, 0])
