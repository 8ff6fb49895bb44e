"""Snake 6x6 (jumanji) as a :class:`Problem`, with the paper's CNN actor and critic (and the outer value
head or network)."""
from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metarl.agents import a2c
from metarl.nets import MLP, CNNTorso
from metarl.meta.outer_value.config import SnakeConfig
from metarl.meta.outer_value.core import Problem, sg


# ================================================================================================
# Snake 6x6 (jumanji) with the paper's CNN actor and critic
# ================================================================================================
class SnakeActor(nn.Module):
    num_actions: int = 4
    hidden: tuple = (64, 64)

    @nn.compact
    def __call__(self, obs):
        x = CNNTorso()(obs)
        return MLP(tuple(self.hidden) + (self.num_actions,))(x)


class SnakeCritic(nn.Module):
    """Value torso (CNN + MLP) with the inner head and an outer head on stop_gradient(torso)."""

    hidden: tuple = (128, 128)

    @nn.compact
    def __call__(self, obs):
        x = MLP(tuple(self.hidden), activate_final=True)(CNNTorso()(obs))
        v = nn.Dense(1, name="inner_head")(x)[..., 0]
        v_outer = nn.Dense(1, name="outer_head")(sg(x))[..., 0]
        return v, v_outer


class SnakeBatch(NamedTuple):
    obs: jax.Array  # [T, B, 6, 6, 5]
    actions: jax.Array
    rewards: jax.Array
    not_terminal: jax.Array
    next_obs: jax.Array


def make_snake_problem(cfg: SnakeConfig, env) -> Problem:
    """Snake with the paper's networks; ``env`` is ``metarl.envs.make("jumanji/Snake-6x6")``."""
    actor = SnakeActor(env.spec.num_actions, tuple(cfg.actor_hidden))
    critic = SnakeCritic(tuple(cfg.critic_hidden))
    dummy = jnp.zeros((1,) + tuple(env.spec.obs_shape))

    def init_params(key):
        ka, kc, ko = jax.random.split(key, 3)
        p = {"actor": actor.init(ka, dummy), "critic": critic.init(kc, dummy)}
        if cfg.separate_outer_network:
            p["outer"] = critic.init(ko, dummy)
        return p

    def values(params, obs):
        v, v_outer = critic.apply(params["critic"], obs)
        if cfg.separate_outer_network:
            v_outer = critic.apply(params["outer"], obs)[0]
        return v, v_outer

    def init_env(key):
        state, ts = jax.vmap(env.reset)(jax.random.split(key, cfg.num_envs))
        return state, ts.obs

    def rollout(params, env_state, key, use="inner"):
        del use

        def body(carry, k):
            state, obs = carry
            ka, ks = jax.random.split(k)
            a = jax.random.categorical(ka, actor.apply(params["actor"], obs))
            state, ts = jax.vmap(env.step)(state, a, jax.random.split(ks, cfg.num_envs))
            out = (obs, a, ts.reward, 1.0 - ts.terminated.astype(jnp.float32), ts.next_obs,
                   ts.done.astype(jnp.float32), ts.episode_return)
            return (state, ts.obs), out

        env_state, (obs, a, r, nt, nobs, done, ep_ret) = jax.lax.scan(body, env_state,
                                                                    jax.random.split(key, cfg.horizon))
        info = {"return_sum": jnp.sum(done * ep_ret), "return_count": jnp.sum(done)}
        return SnakeBatch(obs, a, r, nt, nobs), env_state, info

    def inner_loss(params, batch, gamma, lam=None):
        lam = cfg.lam if lam is None else lam
        logits = actor.apply(params["actor"], batch.obs)
        v, v_outer = values(params, batch.obs)
        nv, nv_outer = values(params, batch.next_obs)
        loss, m = a2c.a2c_loss(logits, batch.actions, v, nv, batch.rewards, batch.not_terminal, gamma, lam,
                               pg_cost=cfg.pg_cost, td_cost=cfg.td_cost, entropy_cost=cfg.entropy_cost,
                               normalize_advantages=cfg.normalize_advantages)
        outer_td = a2c.td_loss(v_outer, nv_outer, batch.rewards, batch.not_terminal, cfg.outer_gamma,
                               cfg.outer_lam)
        m["outer_td_loss"] = outer_td
        return loss + cfg.outer_td_cost * outer_td, m

    def outer_loss(params, batch, gamma, outer_critic):
        del gamma
        logits = actor.apply(params["actor"], batch.obs)
        v, v_outer = values(params, batch.obs)
        nv, nv_outer = values(params, batch.next_obs)
        if outer_critic:
            v, nv = v_outer, nv_outer
        return a2c.a2c_loss(logits, batch.actions, v, nv,
                            batch.rewards, batch.not_terminal, cfg.outer_gamma, cfg.outer_lam, pg_cost=1.0,
                            td_cost=0.0, entropy_cost=cfg.outer_entropy_cost,
                            normalize_advantages=cfg.normalize_advantages)

    def matching_loss(target, params, batch):
        return jnp.mean(a2c.kl_divergence(actor.apply(target["actor"], batch.obs),
                                          actor.apply(params["actor"], batch.obs)))

    opt = optax.rmsprop(cfg.lr, decay=cfg.rms_decay, eps=cfg.rms_eps)
    return Problem(init_params=init_params, init_env=init_env, rollout=rollout, inner_loss=inner_loss,
                   outer_loss=outer_loss, matching_loss=matching_loss, inner_opt=opt,
                   steps_per_rollout=cfg.num_envs * cfg.horizon, matching_fresh_rollout=True)
