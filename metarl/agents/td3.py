"""TD3 (Fujimoto et al., 2018) and, with its tricks switched off, DDPG ('OurDDPG' of the same code).

TD3: twin critics (the target takes their minimum), target policy smoothing (Gaussian noise 0.2
clipped at 0.5) and a delayed policy (the actor and both targets move every 2nd critic update).
Actions are in [-1, 1]: environments rescale them to their own bounds.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from metarl import nets
from metarl.agents.configs import DDPGConfig, TD3_HP, TD3Config  # noqa: F401  (re-exported)
from metarl.agents.base import Agent, AgentState, ddpg_steps, init_actor_critic, merge_hp, online_parameters
from metarl.envs import EnvSpec


def make_td3(spec: EnvSpec, config: TD3Config = TD3Config(), name: str = "td3") -> Agent:
    if spec.discrete:
        raise ValueError(f"{name} needs a continuous action space; {spec.name} is discrete")
    adim = spec.action_dim
    actor_net = nets.DeterministicActor(adim, tuple(config.actor_hidden), layer_norm=config.layer_norm)
    critic_cls = nets.TwinCritic if config.twin else nets.Critic
    critic_net = critic_cls(tuple(config.critic_hidden), layer_norm=config.layer_norm)

    def q_values(params, obs, action):
        q = critic_net.apply(params, obs, action)
        return q if config.twin else q[None]  # always (n_critics, batch)

    def init(key, hp=None) -> AgentState:
        return init_actor_critic(actor_net, critic_net, key, spec.obs_shape, adim, merge_hp(TD3_HP, hp))

    def act(state: AgentState, obs, key, explore=True):
        a = actor_net.apply(state.actor, obs)
        if explore:
            a = a + state.hp["expl_noise"] * jax.random.normal(key, a.shape)
        return jnp.clip(a, -1.0, 1.0)

    def target_action(state: AgentState, next_obs, key):
        """The target policy's action, smoothed by clipped Gaussian noise (TD3) or not (DDPG)."""
        next_a = actor_net.apply(state.actor_target, next_obs)
        if config.target_smoothing:
            noise = state.hp["policy_noise"] * jax.random.normal(key, next_a.shape)
            noise = jnp.clip(noise, -state.hp["noise_clip"], state.hp["noise_clip"])
            next_a = jnp.clip(next_a + noise, -1.0, 1.0)
        return next_a

    def critic_loss(critic_params, state: AgentState, batch, key):
        next_a = target_action(state, batch["next_obs"], key)
        q_next = jnp.min(q_values(state.critic_target, batch["next_obs"], next_a), axis=0)
        not_term = 1.0 - batch["terminated"].astype(jnp.float32)
        target = jax.lax.stop_gradient(batch["reward"] + state.hp["gamma"] * not_term * q_next)
        q = q_values(critic_params, batch["obs"], batch["action"])
        loss = jnp.sum(jnp.mean((q - target[None]) ** 2, axis=-1))
        return loss, {"critic_loss": loss, "q_mean": jnp.mean(q[0])}

    def actor_loss(actor_params, state: AgentState, batch, key):
        del key
        a = actor_net.apply(actor_params, batch["obs"])
        q1 = q_values(state.critic, batch["obs"], a)[0]
        loss = -jnp.mean(q1)
        return loss, {"actor_loss": loss}

    critic_step, actor_step = ddpg_steps(critic_loss, actor_loss)

    def update_phase(state: AgentState, batch, key, do_actor: bool, loss_fn=None):
        """One update whose policy step is decided in Python (``do_actor`` static): critic step, then
        the actor and target step or none. The training loop uses it to lay out the delay schedule
        statically, because under vmap a ``lax.cond`` computes both branches."""
        kc, ka = jax.random.split(key)
        state, m = critic_step(state, batch, kc)
        with_actor = lambda s: actor_step(s, batch, ka, loss_fn)
        if do_actor:
            state, ma = with_actor(state)
        else:
            # No policy step: its metrics are NaN, which the loop's per-segment nanmean skips.
            ma = jax.tree.map(lambda x: jnp.full(x.shape, jnp.nan, x.dtype), jax.eval_shape(with_actor, state)[1])
        return state, {**m, **ma}

    def update(state: AgentState, batch, key, loss_fn=None):
        if config.policy_delay <= 1:
            return update_phase(state, batch, key, True, loss_fn)
        # Delayed policy: the actor and the targets move on every policy_delay-th critic update.
        do_actor = (state.step + 1) % config.policy_delay == 0
        return jax.lax.cond(do_actor, lambda s: update_phase(s, batch, key, True, loss_fn),
                            lambda s: update_phase(s, batch, key, False, loss_fn), state)

    return Agent(name, config, actor_net, critic_net, init, act, critic_loss, actor_loss, critic_step,
                 actor_step, update, dict(TD3_HP),
                 extras={"target_action": target_action, "update_phase": update_phase,
                         "update_period": max(config.policy_delay, 1), "finite_probe": online_parameters})


def make_ddpg(spec: EnvSpec, config: DDPGConfig = DDPGConfig()) -> Agent:
    """DDPG as Fujimoto et al.'s 'OurDDPG': 400-300 actor and critic, Adam 1e-3, batch 100, tau 0.005."""
    return make_td3(spec, config, name="ddpg")
