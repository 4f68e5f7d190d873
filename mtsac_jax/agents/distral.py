"""`distral`: Distral on SAC, a policy per task regularised toward one distilled policy they share
(Teh et al. 2017, "Distral: Robust Multitask Reinforcement Learning").

Every task t has its own policy pi_t and twin critics (by default one disjoint network per task,
vmapped over the task axis); one distilled policy pi_0 (the actor's layers, its own log-std
bounds), shared by all tasks and reading only the observation (on Meta-World MT10 and MT50 it
carries the task's one-hot), is the centroid they are pulled towards. The paper's objective (eq. 2), with its
alpha in [0, 1] (`distral_alpha`, the share of the KL regulariser) and beta > 0 (`distral_beta`,
the inverse temperature), is

    sum_t E_{pi_t}[ sum_s gamma^s ( r_t + (alpha / beta) log pi_0(a|s) - (1 / beta) log pi_t(a|s) ) ],

that is a KL regulariser to pi_0 weighted by c_KL = alpha / beta and an entropy bonus weighted
by c_Ent = (1 - alpha) / beta. Each update, on one stratified batch:
- critic: SAC's soft Bellman residual with the regularised soft value of the next state,
  min Q - (1 / beta) log pi_t + (alpha / beta) log pi_0 (eq. 3); the `log pi_0` term enters as
  `gamma (1 - terminated) (alpha / beta) log pi_0(a'|s')` added to the reward, the next action
  a' being the one the critic loss samples (same noise);
- task actors: E_{a ~ pi_t}[(1 / beta) log pi_t(a|s) - (alpha / beta) log pi_0(a|s) - min Q(s, a)],
  the reparameterised action through both log-probabilities;
- distilled actor: pi_0 maximises (alpha / beta) E_{a ~ pi_t}[log pi_0(a|s)] over every task's
  states (eq. 5, on replay states), whose gradient is that of
  (alpha / beta) KL(pi_t || pi_0), computed exactly in closed form on the Gaussians before the
  tanh (a bijection leaves the KL unchanged);
- the target critics' polyak step, as SAC's.
The temperature is the paper's fixed 1 / beta (logged as `alpha`), not tuned. Training acts with
the task policies; evaluation with the distilled policy (`eval_policy="distilled"`, mtrl's
choice) or the task policies (`"task"`).

mtrl's `distral` differs: its `distral_alpha` is c_KL itself beside SAC's learned temperature as
c_Ent, its `distral_beta` is unused, the task actors' loss has no KL term, and pi_0 minimises the
reverse KL(pi_0 || pi_t); its default distral_alpha=0 leaves pi_0, the policy it evaluates,
untrained (here a ConfigError).

Run it:

    python train.py --config=configs/compose.py:env=metaworld-mt10,agent=distral
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mtsac_jax import gradients, networks, replay_buffer
from mtsac_jax.agents import Agent, AgentSpec, EnvSpec, sac, sac_losses, sac_section, scanned
from mtsac_jax.networks import heads
from mtsac_jax.registry import ConfigError, check_choice

EVAL_POLICIES = ("distilled", "task")


@flax.struct.dataclass
class DistralState:
    sac: sac.SACState  # the task policies pi_t, their critics, the fixed temperature 1 / beta (no optimizer)
    distilled: sac.Trained  # pi_0 (no gradient method: the mean of the tasks' KL)

    # Where checkpoint formats 1-3 (one flat state) kept each part: {today's path: saved path}.
    flat_fields = {
        **{("sac", *path): saved for path, saved in sac.SACState.flat_fields.items() if path[0] != "temperature"},
        ("sac", "temperature", "params"): ("log_alpha",),
        ("distilled", "params"): ("distilled_actor_params",),
        ("distilled", "opt_state"): ("distilled_opt_state",),
    }


@dataclasses.dataclass(frozen=True)
class Distral:
    """SAC on the task policies and critics, the distilled actor pi_0 and the coefficients."""

    sac: sac.SAC
    distilled_actor: heads.Actor
    distilled_optimizer: optax.GradientTransformation
    kl_weight: float  # c_KL = alpha / beta
    eval_policy: str


def sac_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The `agent` section SAC's builder reads: the task policies' and critics' keys, with the
    temperature fixed at 1 / beta (one per task, never tuned)."""
    section = ml_collections.ConfigDict(config.to_dict())
    for key in ("distral_alpha", "distral_beta", "eval_policy", "distilled_actor"):
        del section[key]
    section.init_temperature = 1.0 / config.distral_beta
    section.temperature_loss = "log_alpha"
    section.optimizers.alpha = {"lr": config.optimizers.actor.lr}
    section.multitask.should_use_disentangled_alpha = True
    section.reward_normalization = False
    return section


def make_distral(config: ml_collections.ConfigDict, env_spec: EnvSpec) -> Distral:
    shared = ml_collections.ConfigDict({
        "should_use_multi_head_policy": False, "should_use_disjoint_policy": False,
        "should_use_task_encoder": False, "task_encoder": {"embedding_dim": 0},
    })
    make_network = functools.partial(
        networks.build, networks.network_config("mlp"), shared, config.actor.hidden_dim, config.actor.num_layers
    )
    return Distral(
        sac=sac.make_sac(sac_config(config), env_spec),
        distilled_actor=heads.Actor(
            env_spec.action_dim, make_network, config.distilled_actor.log_std_min, config.distilled_actor.log_std_max
        ),
        distilled_optimizer=optax.adam(config.optimizers.actor.lr),
        kl_weight=config.distral_alpha / config.distral_beta,
        eval_policy=config.eval_policy,
    )


def init_state(distral: Distral, key: jax.Array) -> DistralState:
    sac_key, distilled_key = jax.random.split(key)
    state = sac.init_state(distral.sac, sac_key)
    obs = jnp.zeros((distral.sac.num_tasks, 1, *distral.sac.obs_shape), distral.sac.obs_dtype)
    distilled_params = distral.distilled_actor.init(distilled_key, obs)
    return DistralState(
        sac=state.replace(temperature=sac.Trained(state.temperature.params, None, None)),
        distilled=sac.Trained(distilled_params, distral.distilled_optimizer.init(distilled_params), None),
    )


def log_prob_at(mean, log_std, pre_tanh):
    """log pi(tanh(u)|s) of the tanh-Gaussian (mean, log_std) at the pre-tanh action u: (T, B)."""
    return heads.tanh_gaussian(mean, log_std, (pre_tanh - mean) * jnp.exp(-log_std))[1]


def gaussian_kl(mean_p, log_std_p, mean_q, log_std_q):
    """KL(p || q) of diagonal Gaussians, summed over the last axis."""
    variance_ratio = jnp.exp(2.0 * (log_std_p - log_std_q))
    squared_distance = (mean_p - mean_q) ** 2 * jnp.exp(-2.0 * log_std_q)
    return jnp.sum(log_std_q - log_std_p + 0.5 * (variance_ratio + squared_distance - 1.0), axis=-1)


def regularised_rewards(distral: Distral, state: DistralState, batch, key):
    """The batch with r + gamma (1 - terminated) c_KL log pi_0(a'|s') as its reward, a' the
    next action the critic loss samples with `key`: SAC's critic loss on it bootstraps from the
    regularised soft value of eq. 3."""
    agent = distral.sac
    next_obs = batch["next_obs"]
    features = sac.encode(agent, state.sac.critic.params, next_obs)
    mean, log_std = agent.actor.apply(state.sac.actor.params, features, agent.descriptions)
    pre_tanh = mean + jnp.exp(log_std) * sac.action_noise(agent, key, next_obs)
    prior_mean, prior_log_std = distral.distilled_actor.apply(state.distilled.params, next_obs)
    prior_log_prob = log_prob_at(prior_mean, prior_log_std, pre_tanh)
    bonus = agent.discount * (1.0 - batch["terminated"]) * distral.kl_weight * prior_log_prob
    return {**batch, "reward": batch["reward"] + jax.lax.stop_gradient(bonus)}


@flax.struct.dataclass
class ActorInputs(sac_losses.ActorInputs):
    distilled_actor_params: dict = gradients.loss_input("shared")  # pi_0's, which every task reads whole
    obs: jax.Array = gradients.loss_input()  # (T, B, D): pi_0 reads the observations


def actor_losses(distral: Distral, agent: sac.SAC, actor_params, inputs: ActorInputs):
    """The task actors' loss: E[(1 / beta) log pi_t - c_KL log pi_0 - min Q] at a ~ pi_t,
    reparameterised; aux (log pi_t, mean, log_std) of the task policies."""
    features, descriptions = inputs.features, inputs.descriptions
    mean, log_std = agent.actor.apply(actor_params, features, descriptions)
    action, log_prob = heads.tanh_gaussian(mean, log_std, inputs.noise)
    pre_tanh = mean + jnp.exp(log_std) * inputs.noise
    prior_mean, prior_log_std = distral.distilled_actor.apply(inputs.distilled_actor_params, inputs.obs)
    prior_log_prob = log_prob_at(prior_mean, prior_log_std, pre_tanh)
    q = agent.critic.apply(inputs.critic_params, features, action, descriptions, method="q").min(axis=0)
    temperature = jax.lax.stop_gradient(sac_losses.temperature(inputs.log_alpha, inputs.value_scale, features.shape[0]))
    losses = (temperature * log_prob - distral.kl_weight * prior_log_prob - q).mean(axis=-1)
    return losses, (log_prob, mean, log_std)


def actor_inputs(distral: Distral, state: DistralState, obs, key) -> ActorInputs:
    """SAC's actor-loss inputs at `state` on `obs`, and what pi_0 reads."""
    sac_inputs = sac.actor_inputs(distral.sac, state.sac, obs, key)
    return ActorInputs(**{field.name: getattr(sac_inputs, field.name) for field in dataclasses.fields(sac_inputs)},
                       distilled_actor_params=state.distilled.params, obs=obs)


def actor_step(distral: Distral, state: DistralState, obs, key):
    """Updates the task policies; returns their (log pi_t, mean, log_std) on `obs`."""
    agent = distral.sac
    inputs = actor_inputs(distral, state, obs, key)
    loss = sac.task_loss(agent, functools.partial(actor_losses, distral), agent.actor_axes, inputs)
    losses, aux, actor, masked = sac.descend_network(agent, state.sac.actor, loss, agent.actor_optimizer, "actor")
    state = state.replace(sac=state.sac.replace(actor=actor))
    return state, {"actor_loss": losses, "entropy": -aux[0].mean(axis=-1), **masked}, aux


def distill_step(distral: Distral, state: DistralState, obs, task_mean, task_log_std):
    """Moves pi_0 towards every task policy: c_KL * mean over tasks of E_s KL(pi_t || pi_0)."""

    def loss(params):
        mean, log_std = distral.distilled_actor.apply(params, obs)
        kl = gaussian_kl(task_mean, task_log_std, mean, log_std).mean(axis=-1)  # (T,)
        return distral.kl_weight * kl.mean(), kl

    distilled = state.distilled
    (_, kl), grads = jax.value_and_grad(loss, has_aux=True)(distilled.params)
    updates, opt_state = distral.distilled_optimizer.update(grads, distilled.opt_state, distilled.params)
    distilled = distilled.replace(params=optax.apply_updates(distilled.params, updates), opt_state=opt_state)
    return state.replace(distilled=distilled), {"kl": kl}


def distral_update(distral: Distral, batch_size_per_task: int, state: DistralState,
                   buffer: replay_buffer.ReplayBuffer):
    """One Distral update on a stratified batch: critics, task actors, distilled actor, targets."""
    agent = distral.sac
    sac_state, (sample_key, critic_key, actor_key) = sac.next_key(state.sac, 3)
    batch = replay_buffer.sample(buffer, sample_key, batch_size_per_task)
    batch = regularised_rewards(distral, state, batch, critic_key)
    sac_state, critic_metrics = sac.critic_step(agent, sac_state, batch, critic_key)
    state, actor_metrics, (_, mean, log_std) = actor_step(distral, state.replace(sac=sac_state), batch["obs"],
                                                          actor_key)
    state, distill_metrics = distill_step(
        distral, state, batch["obs"], jax.lax.stop_gradient(mean), jax.lax.stop_gradient(log_std)
    )
    state = state.replace(sac=sac.target_step(agent, state.sac))
    temperature = {"alpha": sac_losses.alpha(state.sac.temperature.params, agent.num_tasks)[:, 0]}
    return state, {**critic_metrics, **actor_metrics, **distill_metrics, **temperature}


def eval_actions(distral: Distral, policy_params, obs):
    """tanh(mean) of the distilled policy, or of each task's own policy."""
    if distral.eval_policy == "task":
        return sac.eval_actions(distral.sac, policy_params, obs)
    return distilled_actions(distral, policy_params, obs)


def distilled_actions(distral: Distral, policy_params, obs):
    """tanh(mean) of the distilled policy pi_0, which all tasks share: rows of any envs, seen or not."""
    mean, _ = distral.distilled_actor.apply(policy_params["distilled"], obs[:, None, :])
    return jnp.tanh(mean[:, 0])


def default_config() -> dict:
    """SAC's `state_sac` keys for the task policies and critics (a disjoint network per task by
    default), less the tuned temperature's, plus the paper's alpha and beta."""
    config = sac_section.default_config()
    for key in ("init_temperature", "temperature_loss"):
        del config[key]
    del config["optimizers"]["alpha"]
    del config["reward_normalization"]
    del config["multitask"]["should_use_disentangled_alpha"]
    config["multitask"]["should_use_disjoint_policy"] = True
    return {
        **config,
        "distral_alpha": 0.5,  # share of the KL regulariser in [0, 1] (the paper's alpha)
        # the paper's beta, the inverse temperature: 1 / 20 = 0.05 is about where MT-SAC's tuned
        # temperature settles on MT10 (docs/results.md)
        "distral_beta": 20.0,
        "eval_policy": "distilled",  # or "task"
        # pi_0 has the actor's layers; its log-std bounds are its own: SAC's (-20, 2) start the
        # policy at std exp(-9), and a pi_0 that narrow scores the task policies' actions at
        # log pi_0 ~ -1e5, which swamps the rewards until it has widened; (-5, 2) start it at
        # std exp(-1.5)
        "distilled_actor": {"log_std_min": -5.0, "log_std_max": 2.0},
    }


def validate(config: ml_collections.ConfigDict) -> None:
    check_choice("agent.eval_policy", config.eval_policy, EVAL_POLICIES)
    if not 0.0 <= config.distral_alpha <= 1.0:
        raise ConfigError(
            f"agent.distral_alpha={config.distral_alpha} must lie in [0, 1]: it is the share of the KL "
            "regulariser (Teh et al. 2017, eq. 2). Fix: e.g. --config.agent.distral_alpha=0.5."
        )
    if not config.distral_beta > 0.0:
        raise ConfigError(
            f"agent.distral_beta={config.distral_beta} must be positive: it is the inverse temperature. "
            "Fix: e.g. --config.agent.distral_beta=20."
        )
    if config.distral_alpha == 0.0 and config.eval_policy == "distilled":
        raise ConfigError(
            "agent.distral_alpha=0 leaves the distilled policy untrained (its loss is weighted by alpha / beta), "
            "but agent.eval_policy='distilled' evaluates it. Fix: pass --config.agent.distral_alpha=<a value in "
            "(0, 1]>, or --config.agent.eval_policy=task."
        )
    if config.distilled_actor.log_std_min >= config.distilled_actor.log_std_max:
        raise ConfigError(
            f"agent.distilled_actor.log_std_min={config.distilled_actor.log_std_min} must be below "
            f"agent.distilled_actor.log_std_max={config.distilled_actor.log_std_max}."
        )
    sac_section.validate(sac_config(config))


def make_agent(
    config: ml_collections.ConfigDict, env_spec: EnvSpec, batch_size_per_task: int, num_updates_per_call: int = 1
) -> Agent:
    distral = make_distral(config, env_spec)
    one_update = functools.partial(distral_update, distral, batch_size_per_task)
    return Agent(
        init=jax.jit(functools.partial(init_state, distral)),
        update=jax.jit(scanned(one_update, num_updates_per_call), donate_argnums=0),
        policy_params=lambda state: {**sac.policy_params(distral.sac, state.sac), "distilled": state.distilled.params},
        sample_actions=jax.jit(functools.partial(sac.sample_actions, distral.sac)),
        eval_actions=jax.jit(functools.partial(eval_actions, distral)),
        unseen_eval_actions=jax.jit(functools.partial(distilled_actions, distral)),  # in envs no pi_t trained on
    )


DISTRAL = AgentSpec(make=make_agent, default_config=default_config, validate=validate, **sac_section.HOOKS)
