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
    # algorithm-specific functions: TD3's target_action, update_phase and update_period (its delay laid out by
    # the training loop), finite_probe (what the loop checks for NaN/inf after every update: online_parameters)
    extras: dict | None = None


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


def init_actor_critic(actor_net, critic_net, key, obs_shape, action_width: int, hp: dict, log_alpha=None,
                      alpha_lr=None) -> "AgentState":
    """An actor-critic's first state: both networks initialised on a zero observation (and a zero action of
    ``action_width`` for the critic) from the two halves of ``key``, the targets equal to them, Adam states
    at ``hp``'s learning rates; ``log_alpha`` (SAC's temperature) with an Adam state at ``alpha_lr``."""
    ka, kc = jax.random.split(key)
    obs = jnp.zeros((1,) + tuple(obs_shape))
    actor = actor_net.init(ka, obs)
    critic = critic_net.init(kc, obs, jnp.zeros((1, action_width)))
    alpha_opt = () if log_alpha is None else adam(alpha_lr).init(log_alpha)
    return AgentState(actor=actor, critic=critic, actor_target=actor, critic_target=critic,
                      actor_opt=adam(hp["actor_lr"]).init(actor), critic_opt=adam(hp["critic_lr"]).init(critic),
                      log_alpha=jnp.zeros(()) if log_alpha is None else log_alpha, alpha_opt=alpha_opt, hp=hp,
                      step=jnp.zeros((), jnp.int32))


def online_parameters(state: AgentState):
    """The part of an :class:`AgentState` the training loop checks for NaN/inf after every update (an agent's
    ``extras["finite_probe"]``): the online networks and SAC's temperature, a quarter to a third of the state.

    Exact for a non-finite gradient: Adam's moments are convex combinations of their last value and the
    gradient, so a NaN gradient element makes its first moment NaN, an infinite one makes both moments
    infinite (their ratio NaN), and either way the parameter turns non-finite at the same update; the target
    networks are convex combinations of finite online and target values. The one state that stays behind the
    parameters is a finite gradient whose square overflows (|g| > 1.8e19): the second moment goes infinite and
    the step to zero, the parameter stays finite. The loop's full-state check at every evaluation point catches
    that one (``metarl.train.make_functions``)."""
    return (state.actor, state.critic, state.log_alpha)


def actor_grads(loss_fn, state, batch, key, extra_grads=None):
    """(grads, metrics) of ``loss_fn(actor, state, batch, key)`` with respect to ``state.actor``, plus
    ``extra_grads`` (a meta-method's added gradient, e.g. the Online Meta-Critic's) where given."""
    grads, m = jax.grad(loss_fn, has_aux=True)(state.actor, state, batch, key)
    if extra_grads is not None:
        grads = jax.tree.map(jnp.add, grads, extra_grads)
    return grads, m


def ddpg_steps(critic_loss, actor_loss):
    """(critic_step, actor_step) of DDPG and TD3: an Adam step of the critic on ``critic_loss`` (counting the
    update), and an Adam step of the actor on ``loss_fn or actor_loss`` (+ ``extra_grads``) followed by the
    soft update of both targets with ``tau`` (the targets move only with the policy, as TD3's delay has it)."""

    def critic_step(state, batch, key):
        grads, m = jax.grad(critic_loss, has_aux=True)(state.critic, state, batch, key)
        critic, opt = apply_grads(state.critic, state.critic_opt, grads)
        return state.replace(critic=critic, critic_opt=opt, step=state.step + 1), m

    def actor_step(state, batch, key, loss_fn=None, extra_grads=None):
        grads, m = actor_grads(loss_fn or actor_loss, state, batch, key, extra_grads)
        actor, opt = apply_grads(state.actor, state.actor_opt, grads)
        tau = state.hp["tau"]
        return state.replace(actor=actor, actor_opt=opt, actor_target=soft_update(state.actor_target, actor, tau),
                             critic_target=soft_update(state.critic_target, state.critic, tau)), m

    return critic_step, actor_step


def critic_then_actor(critic_step, actor_step):
    """``update(state, batch, key, loss_fn=None)``: one critic step, then one actor step (on ``loss_fn`` if
    given), each with its own half of ``key``; metrics of both."""

    def update(state, batch, key, loss_fn=None):
        kc, ka = jax.random.split(key)
        state, m = critic_step(state, batch, kc)
        state, ma = actor_step(state, batch, ka, loss_fn)
        return state, {**m, **ma}

    return update


def scheduled_update(agent: "Agent", static: bool = True):
    """``(period, update_at)``: the updates as the training loop lays them out. ``update_at(state, batch, key,
    i)`` is update ``i``, counted from a point where the update count is a multiple of ``period``. An agent
    with a delayed policy (TD3: ``extras["update_phase"]``) gets ``period`` = its delay and the policy step
    decided in Python (on every ``period``-th update), because under vmap ``agent.update``'s ``lax.cond``
    becomes a select that computes the policy step at every update; any other agent (or a delay of 1), or
    ``static=False``, gets ``period`` 1 and ``agent.update``."""
    extras = agent.extras or {}
    period = int(extras.get("update_period", 1)) if (static and "update_phase" in extras) else 1
    if period <= 1:
        return 1, lambda state, batch, key, i: agent.update(state, batch, key)

    def update_at(state, batch, key, i: int):
        return extras["update_phase"](state, batch, key, (i + 1) % period == 0)

    return period, update_at


def merge_hp(defaults: dict, overrides: dict | None) -> dict:
    hp = dict(defaults)
    for k, v in (overrides or {}).items():
        if k not in hp:
            raise ValueError(f"unknown hyperparameter {k!r}; valid: {', '.join(sorted(hp))}")
        hp[k] = v
    return {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}
