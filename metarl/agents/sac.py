"""SAC (Haarnoja et al., 2018) with twin Q and automatic temperature (target entropy -|A|).

256-256 networks, Adam 3e-4, batch 256, tau 0.005. The temperature is learned as log(alpha) with
loss -log(alpha) * (log pi(a|s) + target_entropy).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from metarl import nets
from metarl.agents.configs import SAC_HP, SACConfig  # noqa: F401  (re-exported)
from metarl.agents.base import (Agent, AgentState, actor_grads, apply_grads, critic_then_actor, init_actor_critic,
                               merge_hp, online_parameters, soft_update)
from metarl.envs import EnvSpec


def make_sac(spec: EnvSpec, config: SACConfig = SACConfig()) -> Agent:
    if spec.discrete:
        raise ValueError(f"sac needs a continuous action space; {spec.name} is discrete")
    adim = spec.action_dim
    target_entropy = -float(adim) if config.target_entropy is None else float(config.target_entropy)
    actor_net = nets.GaussianActor(adim, tuple(config.actor_hidden))
    critic_net = nets.TwinCritic(tuple(config.critic_hidden))

    def init(key, hp=None) -> AgentState:
        hp = merge_hp(SAC_HP, hp)
        return init_actor_critic(actor_net, critic_net, key, spec.obs_shape, adim, hp,
                                 log_alpha=jnp.log(hp["init_alpha"]), alpha_lr=hp["alpha_lr"])

    def act(state: AgentState, obs, key, explore=True):
        if explore:
            return actor_net.apply(state.actor, obs).sample(seed=key)
        return actor_net.apply(state.actor, obs, method="mode")

    def sample_with_logp(actor_params, obs, key):
        a, logp = actor_net.apply(actor_params, obs).sample_and_log_prob(seed=key)
        return a, logp

    def critic_loss(critic_params, state: AgentState, batch, key):
        alpha = jnp.exp(state.log_alpha)
        next_a, next_logp = sample_with_logp(state.actor, batch["next_obs"], key)
        q_next = jnp.min(critic_net.apply(state.critic_target, batch["next_obs"], next_a), axis=0)
        not_term = 1.0 - batch["terminated"].astype(jnp.float32)
        soft_v = q_next - alpha * next_logp
        target = jax.lax.stop_gradient(batch["reward"] + state.hp["gamma"] * not_term * soft_v)
        q = critic_net.apply(critic_params, batch["obs"], batch["action"])
        loss = jnp.sum(jnp.mean((q - target[None]) ** 2, axis=-1))
        return loss, {"critic_loss": loss, "q_mean": jnp.mean(q[0])}

    def actor_loss(actor_params, state: AgentState, batch, key):
        alpha = jax.lax.stop_gradient(jnp.exp(state.log_alpha))
        a, logp = sample_with_logp(actor_params, batch["obs"], key)
        q = jnp.min(critic_net.apply(state.critic, batch["obs"], a), axis=0)
        loss = jnp.mean(alpha * logp - q)
        return loss, {"actor_loss": loss, "entropy": -jnp.mean(logp), "logp": jnp.mean(logp)}

    def alpha_loss(log_alpha, logp):
        return -jnp.mean(log_alpha * jax.lax.stop_gradient(logp + target_entropy))

    def critic_step(state: AgentState, batch, key):
        grads, m = jax.grad(critic_loss, has_aux=True)(state.critic, state, batch, key)
        critic, opt = apply_grads(state.critic, state.critic_opt, grads)
        state = state.replace(critic=critic, critic_opt=opt, step=state.step + 1,
                              critic_target=soft_update(state.critic_target, critic, state.hp["tau"]))
        return state, m

    def actor_step(state: AgentState, batch, key, loss_fn=None, extra_grads=None):
        grads, m = actor_grads(loss_fn or actor_loss, state, batch, key, extra_grads)
        actor, opt = apply_grads(state.actor, state.actor_opt, grads)
        state = state.replace(actor=actor, actor_opt=opt)
        if config.auto_alpha:
            # The temperature follows the entropy of the policy the actor step just evaluated
            # (the loss is linear in log pi, so the batch mean is all it needs).
            logp = m["logp"] if "logp" in m else sample_with_logp(actor, batch["obs"], key)[1]
            g = jax.grad(alpha_loss)(state.log_alpha, logp)
            log_alpha, aopt = apply_grads(state.log_alpha, state.alpha_opt, g)
            state = state.replace(log_alpha=log_alpha, alpha_opt=aopt)
        return state, {**m, "alpha": jnp.exp(state.log_alpha)}

    update = critic_then_actor(critic_step, actor_step)

    return Agent("sac", config, actor_net, critic_net, init, act, critic_loss, actor_loss, critic_step,
                 actor_step, update, dict(SAC_HP), extras={"finite_probe": online_parameters})
