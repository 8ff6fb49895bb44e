"""Advantage actor-critic (A2C) as pure functions, differentiable in its hyper-parameters.

The discount ``gamma`` and the trace parameter ``lam`` are ordinary array inputs of the loss, so
``jax.grad`` of anything computed from an A2C update reaches them: this is what meta-gradient
methods (``metarl.meta.outer_value``) differentiate through.

Conventions: every per-step array is time-major ``[T, ...]`` (any trailing batch shape). For a
transition ``t`` the caller provides the value of the state acted in (``values[t]``) and of the state
reached (``next_values[t]``), the reward and ``not_terminal[t]`` (0 where the episode terminated:
no bootstrap; time-limit truncation keeps 1 and bootstraps from the state reached).

The loss (Appendix A of Bonnet et al., 2022, and the A2C of Mnih et al., 2016):

    G_t   = r_t + gamma * nt_t * ((1 - lam) * V(s_{t+1}) + lam * G_{t+1}),   G_T := V(s_T)
    A_t   = G_t - V(s_t)
    L     = c_pg * mean(-log pi(a_t|s_t) * A_t) + c_td * mean((G_t - V(s_t))^2) - c_ent * mean(H(pi(.|s_t)))

Gradients: the targets ``G_t`` stop the gradient into the *parameters* through ``V(s_{t+1})`` and the
advantage stops it through ``V(s_t)``, but neither stops the gradient into ``gamma`` and ``lam``: a
meta-gradient reaches gamma through the policy-gradient term *and* through the critic's TD update.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


# -- distributions ----------------------------------------------------------------------------
def log_prob(logits, actions):
    """log pi(a|s) of a categorical policy; ``logits [..., A]``, integer ``actions [...]``."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]


def entropy(logits):
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def kl_divergence(p_logits, q_logits):
    """KL(p || q) between categorical distributions given by logits."""
    logp = jax.nn.log_softmax(p_logits, axis=-1)
    logq = jax.nn.log_softmax(q_logits, axis=-1)
    return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


# -- returns and advantages ---------------------------------------------------------------------
def lambda_returns(rewards, discounts, next_values, lam):
    """TD(lambda) targets, time-major, by a reverse scan.

    ``discounts[t] = gamma * not_terminal[t]``; ``next_values[t] = V(s_{t+1})``. The last target
    bootstraps fully from ``next_values[-1]``. Differentiable in every input (``lam`` included).
    """
    lam = jnp.asarray(lam, rewards.dtype)

    def body(g_next, xs):
        r, d, v = xs
        g = r + d * ((1.0 - lam) * v + lam * g_next)
        return g, g

    _, g = jax.lax.scan(body, next_values[-1], (rewards, discounts, next_values), reverse=True)
    return g


def normalize(adv, eps: float = 1e-5):
    """Batch standardisation of advantages (mean and scale held constant in the gradient)."""
    mean = jnp.mean(adv)
    var = jnp.mean(jnp.square(adv)) - jnp.square(mean)
    return (adv - jax.lax.stop_gradient(mean)) * jax.lax.stop_gradient(jax.lax.rsqrt(var + eps))


def advantages(rewards, not_terminal, values, next_values, gamma, lam, normalize_advantages=False):
    """TD(lambda) targets and advantages; values carry no parameter gradient, gamma and lam do."""
    targets = lambda_returns(rewards, gamma * not_terminal, jax.lax.stop_gradient(next_values), lam)
    adv = targets - jax.lax.stop_gradient(values)
    if normalize_advantages:
        adv = normalize(adv)
    return targets, adv


def a2c_loss(logits, actions, values, next_values, rewards, not_terminal, gamma, lam, *, pg_cost=1.0,
             td_cost=0.5, entropy_cost=0.01, normalize_advantages=False):
    """The A2C loss and its metrics (see the module docstring). Returns ``(loss, metrics)``.

    ``logits [T, ..., A]`` and ``values [T, ...]`` are functions of the parameters being trained;
    ``next_values`` may be too (their gradient is stopped). ``gamma`` and ``lam`` may be traced.
    """
    targets, adv = advantages(rewards, not_terminal, values, next_values, gamma, lam, normalize_advantages)
    pg = -jnp.mean(log_prob(logits, actions) * adv)
    td = jnp.mean(jnp.square(targets - values))  # targets: no parameter gradient, but gamma's
    ent = jnp.mean(entropy(logits))
    loss = pg_cost * pg + td_cost * td - entropy_cost * ent
    metrics = {"loss": loss, "pg_loss": pg, "td_loss": td, "entropy": ent, "advantage": jnp.mean(adv),
               "advantage_step0": jnp.mean(adv[0])}
    return loss, metrics


def td_loss(values, next_values, rewards, not_terminal, gamma, lam):
    """Mean squared TD(lambda) error of a critic (used for the outer critic with gamma', lambda')."""
    targets = lambda_returns(rewards, gamma * not_terminal, jax.lax.stop_gradient(next_values), lam)
    return jnp.mean(jnp.square(targets - values))


def update(params, opt_state, optimizer, loss_fn, *args):
    """One optimiser step on ``loss_fn(params, *args) -> (loss, metrics)``; differentiable in ``args``."""
    grads, metrics = jax.grad(loss_fn, has_aux=True)(params, *args)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics
