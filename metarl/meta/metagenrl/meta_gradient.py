"""MetaGenRL's meta-loss: the objective's inputs from an agent's critic, the fixed baseline objectives, the
second-order meta-gradient per agent and its per-agent clipping; then one agent's update cycle."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metarl.agents.onpolicy import gae
from metarl.meta.metagenrl.objective import ObjectiveConfig, _znorm, objective_steps, reduce_steps


# ----------------------------------------------------------------------------------------------------
# Objective inputs from an agent's critic, the fixed baseline objectives, the meta-loss
# ----------------------------------------------------------------------------------------------------
def q1(agent, critic_params, obs, action):
    return agent.critic_net.apply(critic_params, obs, action)[0]  # TD3's twin critic: (2, ...)


def pre_tanh(agent, actor_params, obs):
    """The deterministic actor's pre-activation: a = max_action * tanh(pre_tanh)."""
    return agent.actor_net.apply(actor_params, obs, method=lambda mod, o: mod.out(mod.features(o)))


def saturation_share(pre, threshold: float = 3.0):
    """Share of action entries whose pre-tanh value exceeds ``threshold`` in magnitude (tanh'(3) ~ 0.01)."""
    return jnp.mean((jnp.abs(pre) > threshold).astype(jnp.float32))


def objective_inputs(agent, state, windows: dict, mask):
    """Everything L_alpha reads except pi(s_t), as constants: V_t = Q1(s_t, pi(s_t)) and
    V(s_t+1) = Q1(s_t+1, pi(s_t+1)) with the agent's current actor and critic, both raw
    (``v_next_raw``) and zeroed after termination (``v_next``, as GAE uses it)."""
    v_of = lambda o: q1(agent, state.critic, o, agent.actor_net.apply(state.actor, o))
    terminated = windows["terminated"].astype(jnp.float32)
    v_next_raw = v_of(windows["next_obs"])
    inp = dict(obs=windows["obs"], action=windows["action"], reward=windows["reward"], t=windows["t"],
               v=v_of(windows["obs"]), v_next=v_next_raw * (1.0 - terminated), v_next_raw=v_next_raw,
               terminated=terminated, done=windows["done"].astype(jnp.float32), mask=mask)
    return jax.lax.stop_gradient(inp)


def learned_loss(alpha, cfg, agent, actor_params, inputs, reduction: str = "window_mean"):
    """L_alpha of the policy ``actor_params`` on ``inputs``, reduced over the batch (:func:`reduce_steps`)."""
    pi = agent.actor_net.apply(actor_params, inputs["obs"])
    return reduce_steps(objective_steps(alpha, cfg, inputs, pi), reduction)


def reinforce_loss(agent, actor_params, inputs, gamma, lam, sigma, reduction: str = "window_mean"):
    """Off-policy REINFORCE with a GAE baseline: -log N(a_t; pi(s_t), sigma^2) * A_t per step
    (standardised advantages, zero at invalid steps), reduced over the batch (:func:`reduce_steps`)."""
    mask = inputs["mask"].astype(jnp.float32)
    adv = gae(inputs, gamma, lam)
    adv = _znorm(adv, inputs["mask"]) * mask
    pi = agent.actor_net.apply(actor_params, inputs["obs"])
    logp = -jnp.sum(jnp.square(inputs["action"] - pi), axis=-1) / (2.0 * sigma ** 2)
    return reduce_steps(-logp * adv, reduction)


def _chunks(tree, k: int):
    """k disjoint chunks of the windows (leading axis), equal size B // (k + 1)."""
    b = jax.tree.leaves(tree)[0].shape[0]
    n = b // (k + 1)
    if n < 1:
        raise ValueError(f"{b} windows cannot give {k} disjoint inner batches; use batch_windows >= {k + 1}")
    return [jax.tree.map(lambda x: x[j * n:(j + 1) * n], tree) for j in range(k)]


def meta_loss(alpha, cfg: ObjectiveConfig, agent, actor_params, critic_params, inputs, inner_steps: int = 1,
              inner_lr=1e-3, inner_reduction: str = "sum"):
    """Eq. 6 (k = 1) and Eq. 8 (k > 1): k SGD steps phi <- phi - lr * grad_phi L_alpha on the first k
    of k + 1 disjoint chunks of the windows, then -mean Q1(s, pi_phi_k(s)) over every state of the
    batch. ``inner_reduction``: L_alpha of a chunk as the SUM of its per-step values (the authors'
    tf.gradients(objective * mask)) or "window_mean" (sum / windows; earlier behaviour)."""
    phi = actor_params
    for chunk in _chunks(inputs, inner_steps):
        g = jax.grad(lambda p: learned_loss(alpha, cfg, agent, p, chunk, inner_reduction))(phi)
        phi = jax.tree.map(lambda p, gi: p - inner_lr * gi, phi, g)
    obs = inputs["obs"]
    return -jnp.mean(q1(agent, critic_params, obs, agent.actor_net.apply(phi, obs)))


def population_meta_grads(alpha, cfg, agent, actor_params, critic_params, inputs, inner_steps=1, inner_lr=1e-3,
                          inner_reduction: str = "sum"):
    """Per-agent meta-gradients of a vmapped group of agents (leading axis on everything but alpha):
    (grads with a leading agent axis, meta-losses [n])."""
    def one(p, c, i):
        loss, g = jax.value_and_grad(lambda a: meta_loss(a, cfg, agent, p, c, i, inner_steps, inner_lr,
                                                         inner_reduction))(alpha)
        return g, loss

    return jax.vmap(one)(actor_params, critic_params, inputs)


def clip_per_agent(grads, max_norm: float):
    """Clip each agent's gradient (leading axis) to global norm ``max_norm`` as optax's
    clip_by_global_norm does. Returns (clipped grads, norms before clipping [n])."""
    norms = jax.vmap(optax.tree.norm)(grads)
    scale = jnp.where(norms < max_norm, 1.0, max_norm / jnp.maximum(norms, 1e-30))
    clipped = jax.tree.map(lambda g: g * scale.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype), grads)
    return clipped, norms


# ----------------------------------------------------------------------------------------------------
# One agent's update cycle
# ----------------------------------------------------------------------------------------------------
def flatten_windows(windows: dict) -> dict:
    """[B, T, ...] windows -> [B*T, ...] transitions for the critic (every stored step is a real transition)."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), windows)


class MixedObjective(NamedTuple):
    """A policy objective sum_i weight_i * loss_i. ``terms``: (name, weight, fn) with
    ``fn(actor_params, state, inputs) -> (loss, aux metrics)``; each term's gradient is taken
    separately (its norm is a diagnostic, ``pg_norm_<name>``), then they are mixed."""

    terms: tuple


def _terms(actor_objective):
    if isinstance(actor_objective, MixedObjective):
        return actor_objective.terms
    return (("loss", 1.0, lambda p, st, inp: (actor_objective(p, st, inp), {})),)


def policy_gradient(actor_objective, actor_params, state, inputs):
    """The mixed policy gradient sum_i weight_i * grad loss_i and metrics: ``actor_loss`` (the mixed
    loss), ``pg_norm_<term>`` (each term's own gradient norm, before weighting), ``pg_norm`` (the mixed
    gradient's) and the terms' aux metrics."""
    total, loss, m = None, 0.0, {}
    for name, weight, fn in _terms(actor_objective):
        (li, aux), g = jax.value_and_grad(fn, has_aux=True)(actor_params, state, inputs)
        wg = jax.tree.map(lambda x: weight * x, g)
        total = wg if total is None else jax.tree.map(jnp.add, total, wg)
        loss = loss + weight * li
        m[f"pg_norm_{name}"] = optax.tree.norm(g)
        m.update(aux)
    m["pg_norm"] = optax.tree.norm(total)
    m["actor_loss"] = loss
    return total, m


def update_agent(agent, state, w1, w2, m2, key, actor_objective, clip_norm: float | None = None):
    """Critic on w1, critic on w2, then one policy step on w2 with ``actor_objective`` (a
    :class:`MixedObjective` or a function ``(actor_params, state, inputs) -> loss``), its gradient
    clipped to global norm ``clip_norm`` if given. With the TD3 actor loss as objective and no
    clipping this equals ``agent.update(agent.update(state, flat(w1), k1), flat(w2), k2)`` for
    ``k1, k2 = split(key)`` from a state whose step counter is even (TD3's policy delay 2).

    Returns (new state, state after the critic steps, the objective inputs, metrics): critic metrics,
    ``actor_loss``, ``pg_norm_<term>`` (each term's own policy-gradient norm, before weighting),
    ``pg_norm`` (the mixed gradient's, before clipping), ``saturation`` (share of |pre-tanh| > 3 of the
    policy's actions on w2 before the step) and the terms' aux metrics."""
    k1, k2 = jax.random.split(key)
    kc1, _ = jax.random.split(k1)
    kc2, ka2 = jax.random.split(k2)
    state, _ = agent.critic_step(state, flatten_windows(w1), kc1)
    state, mc = agent.critic_step(state, flatten_windows(w2), kc2)
    inputs = objective_inputs(agent, state, w2, m2)

    total, m = policy_gradient(actor_objective, state.actor, state, inputs)
    if clip_norm is not None:
        total, _ = optax.clip_by_global_norm(clip_norm).update(total, optax.EmptyState())
    m["saturation"] = saturation_share(pre_tanh(agent, state.actor, inputs["obs"]))
    # The gradient is already computed: the agent's actor step gets a constant loss plus these grads.
    no_loss = lambda p, st, b, k: (jnp.zeros((), jnp.float32), {})
    new, _ = agent.actor_step(state, None, ka2, no_loss, extra_grads=total)
    return new, state, inputs, {**mc, **m}


def td3_actor_objective(agent):
    def f(actor_params, state, inputs):
        return agent.actor_loss(actor_params, state, flatten_windows({"obs": inputs["obs"]}), None)[0]
    return f
