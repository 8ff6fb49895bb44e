"""What the off-policy agents (DDPG, TD3, SAC) share: their state pytree and their function table.

Every agent is a set of pure functions collected in an :class:`Agent`. Meta-methods wrap them:
``critic_loss`` and ``actor_loss`` are exposed so a meta-method can take look-ahead actor steps with
them, ``critic_step`` / ``actor_step`` apply one gradient step each, and ``update`` composes them with
the algorithm's schedule (TD3's policy delay, target updates). ``actor_step`` accepts an optional
``loss_fn`` with the signature of ``actor_loss`` to replace the actor objective (MetaGenRL), and
``extra_grads`` to add to its gradient (the Online Meta-Critic's auxiliary loss).

Numeric hyperparameters live in ``state.hp`` as arrays, so a sweep over them is a vmapped axis of one
compiled program, and the optimisers take their learning rate from their own state
(``optax.inject_hyperparams``) for the same reason.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

Params = Any
Batch = dict  # obs, action, reward, next_obs, terminated, (done)


@struct.dataclass
class AgentState:
    actor: Params
    critic: Params
    actor_target: Params
    critic_target: Params
    actor_opt: Any
    critic_opt: Any
    log_alpha: jax.Array  # SAC's temperature (unused by DDPG/TD3)
    alpha_opt: Any
    hp: dict  # traced numeric hyperparameters
    step: jax.Array  # number of critic updates so far


class Agent(NamedTuple):
    name: str
    config: Any
    actor_net: Any
    critic_net: Any
    init: Callable  # (key, hp) -> AgentState
    act: Callable  # (state, obs, key, explore) -> action
    critic_loss: Callable  # (critic_params, state, batch, key) -> (loss, metrics)
    actor_loss: Callable  # (actor_params, state, batch, key) -> (loss, metrics)
    critic_step: Callable  # (state, batch, key) -> (state, metrics)
    actor_step: Callable  # (state, batch, key, loss_fn=None, extra_grads=None) -> (state, metrics)
    update: Callable  # (state, batch, key) -> (state, metrics): one full update
    default_hp: dict
    extras: dict | None = None  # algorithm-specific functions (e.g. TD3's target_action)


def adam(lr) -> optax.GradientTransformation:
    return optax.inject_hyperparams(optax.adam)(learning_rate=lr)


def set_lr(opt_state, lr):
    """Write a (traced) learning rate into an inject_hyperparams optimiser state."""
    hps = dict(opt_state.hyperparams)
    hps["learning_rate"] = jnp.asarray(lr, jnp.float32)
    return opt_state._replace(hyperparams=hps)


def soft_update(target, online, tau):
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def apply_grads(params, opt_state, grads, lr_for_init=1.0):
    tx = adam(lr_for_init)  # the learning rate actually used is the one stored in opt_state
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def merge_hp(defaults: dict, overrides: dict | None) -> dict:
    hp = dict(defaults)
    for k, v in (overrides or {}).items():
        if k not in hp:
            raise ValueError(f"unknown hyperparameter {k!r}; valid: {', '.join(sorted(hp))}")
        hp[k] = v
    return {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}
