"""MetaGenRL (Kirsch, van Steenkiste and Schmidhuber, ICLR 2020): a population of TD3 agents
meta-learns one LSTM objective function L_alpha that then trains fresh agents on unseen environments.

The defaults follow the paper and, where the paper is silent, the authors' code (louiskirsch/metagenrl);
every earlier behaviour of this module that differs is kept as a named option (see ``LEGACY_OBJECTIVE``
and ``LEGACY_TRAINING``), so objectives saved before the change load and behave as they did.

The pieces, all pure functions over pytrees:

* The objective ``L_alpha(tau, x(phi), V)`` (:func:`objective_steps`). Per 20-step window of a
  trajectory, each action dimension d gets ``[a_t[d], pi(s_t)[d]]`` embedded by a shared dense stack
  (a kernel-1 convolution over the action axis: 3 layers of 32, half ReLU / half square units, each
  followed by LayerNorm), averaged over d, so one objective serves any action size and does not care
  about the order of the dimensions. ``[z(r_t), t/T, z(V_t+1), z(V_t)]`` (t/T: the position in the
  window; V_t and V_t+1 standardised once over the stacked values of the window, then zeroed after a
  terminal step) go through a 32-32-8 MLP (ReLU/square, no LayerNorm, as the authors' input
  transform). The 40-d concatenation runs through an LSTM(32) *backwards* in time
  (``lax.scan(reverse=True)`` over a ``flax.linen.LSTMCell``), then a 32-32-1 MLP (ReLU/square,
  LayerNorm after each hidden activation) and ``eta * tanh(x / eta)`` per step (eta = 1000). Only
  ``pi(s_t)`` carries gradient to the policy parameters phi; ``V = Q1(s, pi(s))`` is a stop-gradient
  input.
* The meta-loss of one agent (:func:`meta_loss`, Eq. 6 and Eq. 8): ``k`` SGD steps (lr 1e-3) of the
  policy on the SUM of ``L_alpha``'s per-step values over ``k`` disjoint chunks of a separate batch
  of ``(k + 1) * batch_windows`` windows, then ``-mean Q1(s, pi_phi'(s))`` on that whole batch. Its
  gradient with respect to alpha is second order (through the policy steps and the critic).
* A population (:func:`make_population`): groups of agents, one group per environment, each agent
  with its own TD3 critic/policy, replay buffer and environment; the agents of a group are a vmapped
  axis, all groups are one compiled program. Each agent's objective gradient is clipped to global
  norm 1.0, then they are averaged over every agent of the population (Adam 1e-3, eps 1e-8).
* One update cycle of an agent (:func:`update_agent`): two TD3 critic steps on two window batches,
  then one policy step on the second with the objective (annealed from the TD3 actor loss over the
  first ``anneal_steps`` training steps: ``p * l_t - (1 - p) * Q1(s_t, pi(s_t))`` per step, one mean
  over the batch; the policy gradient clipped to global norm 1.0), then the meta-gradient at the
  updated policy. With p = 0 and no policy clipping this is exactly two calls of TD3's ``update``
  (policy delay 2). Two environment steps are taken per cycle, so there is one critic update per
  environment step, as in the paper.
* Diagnostics, per agent and meta-step: the meta-gradient norm, the share of the policy's actions
  with |pre-tanh| > 3 (saturation), the spread of the objective's per-step output, and the norms of
  the policy gradients of L_alpha and of the critic (TD3's actor loss). :class:`MetaGradMonitor`
  (host side) warns when an agent's meta-gradient norm stays below a threshold for N meta-steps.
* Meta-test (:func:`make_population` with ``meta_train=False``): fresh agents trained with a frozen
  objective (saved and loaded with orbax, :func:`save_objective` / :func:`load_objective`), no
  annealing. Every agent carries its own frozen alpha and a ``mix`` of (L_alpha, TD3 actor loss,
  off-policy REINFORCE with GAE), so the learned objectives and the two baselines (the paper's
  "same agent with the objective fixed", lambda = 0.97) on one environment are one vmapped axis.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from metarl import buffers, envs
from metarl.agents import make_agent


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} {value!r}: valid choices: {', '.join(choices)}")


# ----------------------------------------------------------------------------------------------------
# The learned objective
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectiveConfig:
    action_layers: Sequence[int] = (32, 32, 32)  # Table 3: 3 conv layers of 32 filters
    scalar_layers: Sequence[int] = (32, 32, 8)
    lstm_units: int = 32
    out_layers: Sequence[int] = (32, 32)
    eta: float = 1000.0  # error bound
    use_t: bool = True  # ablations of Section 5.2
    use_v: bool = True  # V_t (and V_t+1 unless use_v_next is False)
    use_v_next: bool = True
    # --- Architecture details from the authors' code (model.py, ray_configs.py); the second value
    # named in each comment is this module's earlier behaviour (LEGACY_OBJECTIVE), kept so that
    # objectives saved before the change load and compute the same function.
    # Hidden units of the scalar and output MLPs: "relu_square" (half ReLU, half square: the
    # authors' obj_func_activation for every objective MLP) or "relu".
    hidden_activation: str = "relu_square"
    # Where LayerNorm sits in the action branch: "after" the activation (the authors' mlp: dense ->
    # activation -> layer_norm) or "before" it (dense -> LayerNorm -> activation).
    layer_norm_order: str = "after"
    out_layer_norm: bool = True  # LayerNorm after the output MLP's hidden activations (authors: yes)
    # LayerNorm in the scalar MLP: the authors' input transform has none
    # (obj_func_input_transform_layernorm = False), although the issue that prompted this asked for it.
    scalar_layer_norm: bool = False
    # V_t and V_t+1: "stacked" (the authors': the window's values V(s_0..s_T-1) and V(s_T) standardised
    # once together, then V_t+1 zeroed after a terminal step) or "separate" (each standardised with its
    # own statistics, V_t+1 zeroed before).
    value_norm: str = "stacked"
    # t/T: "window" (the authors': the step's position in the 20-step window over the window length)
    # or "episode" (the step in the episode over the episode limit).
    time_input: str = "window"
    # Initial forget-gate bias of the LSTM: TF's LSTMCell adds forget_bias = 1.0; an initial offset of
    # the trainable bias is the same function class with the same gradients. Earlier: 0.0. Init only.
    lstm_forget_bias: float = 1.0
    # Dense kernels (and the LSTM's input kernels): "glorot_uniform" (TF1's default, the authors') or
    # "lecun_normal" (flax's default, used earlier). Init only.
    kernel_init: str = "glorot_uniform"

    def __post_init__(self):
        _check_choice("hidden_activation", self.hidden_activation, ("relu_square", "relu"))
        _check_choice("layer_norm_order", self.layer_norm_order, ("after", "before"))
        _check_choice("value_norm", self.value_norm, ("stacked", "separate"))
        _check_choice("time_input", self.time_input, ("window", "episode"))
        _check_choice("kernel_init", self.kernel_init, ("glorot_uniform", "lecun_normal"))

    @property
    def num_scalars(self) -> int:
        return 1 + int(self.use_t) + int(self.use_v) + int(self.use_v and self.use_v_next)


# The values this module used before it followed the authors' code (and which objectives saved then,
# whose objective.json lacks these keys, are loaded with).
LEGACY_OBJECTIVE = dict(hidden_activation="relu", layer_norm_order="before", out_layer_norm=False,
                        scalar_layer_norm=False, value_norm="separate", time_input="episode",
                        lstm_forget_bias=0.0, kernel_init="lecun_normal")


def _kernel_init(name):
    return nn.initializers.glorot_uniform() if name == "glorot_uniform" else nn.initializers.lecun_normal()


def _activation(x, kind):
    if kind == "relu":
        return nn.relu(x)
    h = x.shape[-1] // 2  # the authors' apply_mixed_activations: the first half ReLU, the second square
    return jnp.concatenate([nn.relu(x[..., :h]), jnp.square(x[..., h:])], axis=-1)


class ObjectiveMLP(nn.Module):
    """Dense layers with ``activation`` and optional LayerNorm ("after" the activation, "before" it, or
    "none"); with ``linear_output`` the last layer is a plain Dense. Parameters ``dense_i``, ``ln_i``."""

    features: Sequence[int]
    activation: str = "relu_square"
    layer_norm: str = "after"
    linear_output: bool = False
    kernel_init: str = "glorot_uniform"

    @nn.compact
    def __call__(self, x):
        n = len(self.features)
        for i, f in enumerate(self.features):
            x = nn.Dense(f, kernel_init=_kernel_init(self.kernel_init), name=f"dense_{i}")(x)
            if self.linear_output and i == n - 1:
                break
            if self.layer_norm == "before":
                x = nn.LayerNorm(name=f"ln_{i}")(x)
            x = _activation(x, self.activation)
            if self.layer_norm == "after":
                x = nn.LayerNorm(name=f"ln_{i}")(x)
        return x


def _modules(cfg: ObjectiveConfig):
    ki = cfg.kernel_init
    return dict(action=ObjectiveMLP(tuple(cfg.action_layers), "relu_square", cfg.layer_norm_order, False, ki),
                scalar=ObjectiveMLP(tuple(cfg.scalar_layers), cfg.hidden_activation,
                                    "after" if cfg.scalar_layer_norm else "none", True, ki),
                lstm=nn.LSTMCell(cfg.lstm_units, kernel_init=_kernel_init(ki)),
                out=ObjectiveMLP(tuple(cfg.out_layers) + (1,), cfg.hidden_activation,
                                 "after" if cfg.out_layer_norm else "none", True, ki))


def init_objective(key, cfg: ObjectiveConfig = ObjectiveConfig()):
    """The objective's parameters alpha: a dict of four flax parameter trees."""
    m = _modules(cfg)
    ka, ks, kl, ko = jax.random.split(key, 4)
    lstm_in = cfg.action_layers[-1] + cfg.scalar_layers[-1]
    carry = m["lstm"].initialize_carry(kl, (1, lstm_in))
    lstm = m["lstm"].init(kl, carry, jnp.zeros((1, lstm_in)))
    if cfg.lstm_forget_bias:
        p = lstm["params"]
        lstm = {**lstm, "params": {**p, "hf": {**p["hf"], "bias": p["hf"]["bias"] + cfg.lstm_forget_bias}}}
    return dict(action=m["action"].init(ka, jnp.zeros((1, 2))),
                scalar=m["scalar"].init(ks, jnp.zeros((1, cfg.num_scalars))),
                lstm=lstm,
                out=m["out"].init(ko, jnp.zeros((1, cfg.lstm_units))))


def _znorm(x, mask):
    """Standardise with the statistics of the valid steps of the batch (constants: inputs only)."""
    w = mask.astype(x.dtype)
    n = jnp.maximum(jnp.sum(w), 1.0)
    mean = jnp.sum(x * w) / n
    var = jnp.sum(jnp.square(x - mean) * w) / n
    return jax.lax.stop_gradient((x - mean) / jnp.sqrt(var + 1e-8))


def last_valid_step(mask):
    """One-hot [B, T] of each window's last valid step (mask is a valid prefix of every window)."""
    m = mask.astype(jnp.float32)
    after = jnp.concatenate([m[:, 1:], jnp.zeros_like(m[:, :1])], axis=1)
    return m * (1.0 - after)


def stacked_value_norm(v, v_next_raw, terminated, mask):
    """The authors' value inputs: per window the values V(s_0), ..., V(s_T-1) of its valid steps and
    V(s_T) (the next state of its last valid step) are stacked, standardised once with the statistics
    of the whole batch (mean, variance; 1e-8 inside the square root), then z(V_t+1) is zeroed where
    the step terminated. ``v_next_raw``: V(s_t+1) for every step, not zeroed. Returns (z(V_t), z(V_t+1)).

    Within a window V(s_t+1) of a non-final step is V_t+1 of the stack, so z(V_t+1) at step t is the
    standardised ``v_next_raw[t]``; with full windows this is exactly the authors'
    ``z([V_0..V_T])[:, 1:] * (1 - terminal)`` and ``z([V_0..V_T])[:, :-1]``."""
    m = mask.astype(v.dtype)
    last = last_valid_step(mask).astype(v.dtype)
    n = jnp.maximum(jnp.sum(m) + jnp.sum(last), 1.0)
    mean = (jnp.sum(v * m) + jnp.sum(v_next_raw * last)) / n
    var = (jnp.sum(jnp.square(v - mean) * m) + jnp.sum(jnp.square(v_next_raw - mean) * last)) / n
    z = lambda x: (x - mean) / jnp.sqrt(var + 1e-8)
    not_term = 1.0 - terminated.astype(v.dtype)
    return jax.lax.stop_gradient(z(v)), jax.lax.stop_gradient(z(v_next_raw) * not_term)


def time_feature(inputs: dict, cfg: ObjectiveConfig):
    if cfg.time_input == "episode":
        return inputs["t"]
    b, t = inputs["mask"].shape
    return jnp.broadcast_to(jnp.arange(t, dtype=jnp.float32) / t, (b, t))


def scalar_features(inputs: dict, cfg: ObjectiveConfig):
    """[z(r_t), t/T, z(V_t+1), z(V_t)] (the ablated ones left out), shape [B, T, k]."""
    mask = inputs["mask"]
    feats = [_znorm(inputs["reward"], mask)]
    if cfg.use_t:
        feats.append(time_feature(inputs, cfg))
    if cfg.use_v:
        if cfg.value_norm == "stacked":
            zv, zv_next = stacked_value_norm(inputs["v"], inputs["v_next_raw"], inputs["terminated"], mask)
        else:
            zv, zv_next = _znorm(inputs["v"], mask), _znorm(inputs["v_next"], mask)
        if cfg.use_v_next:
            feats.append(zv_next)
        feats.append(zv)
    return jnp.stack(feats, axis=-1)


def objective_steps(alpha, cfg: ObjectiveConfig, inputs: dict, pi_action):
    """The objective's per-step outputs l_t = eta * tanh(x_t / eta), zero at invalid steps, [B, T].

    ``inputs``: action [B, T, D] (from the buffer), reward, t, v, v_next, v_next_raw, terminated, mask
    [B, T]; ``pi_action`` [B, T, D]: the policy's action pi_phi(s_t), the only input carrying gradient.
    """
    m = _modules(cfg)
    mask = inputs["mask"]
    act = jnp.stack([jax.lax.stop_gradient(inputs["action"]), pi_action], axis=-1)  # [B, T, D, 2]
    a_emb = jnp.mean(m["action"].apply(alpha["action"], act), axis=-2)  # [B, T, 32]
    s_emb = m["scalar"].apply(alpha["scalar"], scalar_features(inputs, cfg))  # [B, T, 8]
    x = jnp.concatenate([a_emb, s_emb], axis=-1)
    x_t = jnp.swapaxes(x, 0, 1)  # [T, B, 40]
    mask_t = jnp.swapaxes(mask, 0, 1)[..., None]  # [T, B, 1]
    zero = tuple(jnp.zeros((x_t.shape[1], cfg.lstm_units), x.dtype) for _ in range(2))  # (c, h)

    def cell(carry, xm):
        xt, mt = xm
        new, y = m["lstm"].apply(alpha["lstm"], carry, xt)
        # Steps after an episode ended inside the window are the last ones: running backwards they
        # come first, and the state stays at zero until the first valid step.
        new = jax.tree.map(lambda n, z: jnp.where(mt, n, z), new, zero)
        return new, y

    _, ys = jax.lax.scan(cell, zero, (x_t, mask_t), reverse=True)  # [T, B, 32]
    out = m["out"].apply(alpha["out"], ys)[..., 0]  # [T, B]
    per_step = cfg.eta * jnp.tanh(out / cfg.eta) * mask_t[..., 0]
    return jnp.swapaxes(per_step, 0, 1)


REDUCTIONS = ("sum", "window_mean", "step_mean")


def reduce_steps(per_step, reduction: str):
    """A [B, T] per-step loss (zero at invalid steps) to a scalar: "sum" over every step, "window_mean"
    (summed over each window, averaged over windows: sum / B) or "step_mean" (sum / (B * T), the
    authors' reduce_mean over the masked batch)."""
    _check_choice("reduction", reduction, REDUCTIONS)
    if reduction == "sum":
        return jnp.sum(per_step)
    if reduction == "window_mean":
        return jnp.sum(per_step) / per_step.shape[0]
    return jnp.mean(per_step)


def objective_value(alpha, cfg: ObjectiveConfig, inputs: dict, pi_action):
    """L_alpha for a batch of windows: the per-step outputs summed over valid steps, averaged over B."""
    return reduce_steps(objective_steps(alpha, cfg, inputs, pi_action), "window_mean")


def masked_std(x, mask):
    w = mask.astype(x.dtype)
    n = jnp.maximum(jnp.sum(w), 1.0)
    mean = jnp.sum(x * w) / n
    return jnp.sqrt(jnp.sum(jnp.square(x - mean) * w) / n)


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


def gae(inputs, gamma, lam):
    """Generalised advantage estimates inside each window, computed backwards; zero at invalid steps.
    A_t = delta_t + gamma * lam * (1 - done_t) * A_t+1, delta_t = r_t + gamma V_t+1 - V_t."""
    delta = inputs["reward"] + gamma * inputs["v_next"] - inputs["v"]
    mask = inputs["mask"].astype(jnp.float32)

    def back(adv_next, x):
        d, done, m = x
        adv = m * (d + gamma * lam * (1.0 - done) * adv_next)
        return adv, adv

    xs = tuple(jnp.swapaxes(a, 0, 1) for a in (delta, inputs["done"], mask))
    _, adv = jax.lax.scan(back, jnp.zeros(delta.shape[0]), xs, reverse=True)
    return jnp.swapaxes(adv, 0, 1)


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


# ----------------------------------------------------------------------------------------------------
# The population
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetaGenRLConfig:
    """Defaults: the paper's Tables 3 and 4 (per agent) and, where they are silent, the authors' code.
    The second value named in a comment is this module's earlier behaviour (LEGACY_TRAINING)."""

    envs: tuple = ("brax/halfcheetah", "gymnax/MountainCarContinuous-v0")
    agents_per_env: int = 10  # 20 agents in all
    total_steps: int = 1_000_000  # environment steps per agent, warm-up included
    learning_starts: int = 10_000  # random exploration steps
    anneal_steps: int = 10_000  # training steps from the TD3 actor loss to L_alpha
    eval_every: int = 10_000  # environment steps between evaluations
    eval_episodes: int = 5
    buffer_size: int = 1_000_000
    window: int = 20  # truncated episode length
    batch_windows: int = 100  # batch size (in windows)
    hidden: Sequence[int] = (350, 350)  # critic and policy: 3 layers (2 hidden + output) of 350, LayerNorm
    inner_steps: int = 1  # Eq. 6 (1) or Eq. 8 (3, 5)
    inner_lr: float = 1e-3  # second-order learning rate
    objective_lr: float = 1e-3
    clip_norm: float = 1.0  # global-norm clip of the objective's gradient
    # Adam's epsilon for alpha: the default (the authors' tf.train.AdamOptimizer). Earlier 1e-20, which
    # hid a vanishing meta-gradient by scaling float32 round-off up to full-size steps.
    objective_adam_eps: float = 1e-8
    # The meta-gradient's clip: "agent" (each agent's gradient clipped to clip_norm, then the mean over
    # the population: the authors' workers clip, their server averages) or "mean" (the mean clipped).
    meta_clip: str = "agent"
    # The meta-gradient's batch: "separate" (a fresh batch of (inner_steps + 1) * batch_windows windows,
    # the first inner_steps chunks of batch_windows for the inner steps, the whole for the outer
    # loss: the authors' large batch) or "policy" (the policy step's batch, cut into inner_steps + 1
    # chunks: cheaper, half the inner batch).
    meta_batch: str = "separate"
    # L_alpha in the inner step(s): "sum" of its per-step values over the chunk (the authors') or
    # "window_mean" (the sum over the chunk's windows' steps divided by the number of windows).
    inner_loss_reduction: str = "sum"
    # The policy at which the meta-gradient is taken: "after_policy" (after this cycle's policy step;
    # the authors compute it after the critic and policy updates) or "before_policy".
    meta_grad_state: str = "after_policy"
    # The policy step's loss: "step_mean" (per step p * l_t - (1 - p) * Q1_t [+ REINFORCE term], one mean
    # over the B * T steps, l_t zero at invalid steps: the authors' reduce_mean(obj * mask)) or
    # "window_mean" (L_alpha and REINFORCE summed over each window and averaged over windows, mixed with
    # TD3's per-transition mean: L_alpha then weighs T = 20 times more).
    policy_loss_reduction: str = "step_mean"
    # Global-norm clip of the policy gradient (paper Table 4 / the authors' _clipped_minimize, for the
    # objective and the TD3 loss alike); None: no clipping (plain TD3's actor step).
    policy_clip_norm: float | None = 1.0
    # MetaGradMonitor: warn when an agent's meta-gradient norm (before clipping) stays below
    # collapse_threshold for collapse_patience consecutive meta-steps.
    collapse_threshold: float = 1e-6
    collapse_patience: int = 100
    gamma: float = 0.99
    tau: float = 0.005
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    expl_noise: float = 0.1
    gae_lambda: float = 0.97  # the off-policy REINFORCE baseline
    max_episode_steps: int | None = None
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    def validate(self):
        if self.eval_every % 2:
            raise ValueError(f"eval_every must be even (two env steps per update cycle), got {self.eval_every}")
        train = self.total_steps - self.learning_starts
        if train <= 0 or train % self.eval_every:
            raise ValueError(f"total_steps - learning_starts = {train} must be a positive multiple of "
                             f"eval_every = {self.eval_every}")
        if self.learning_starts < self.window:
            raise ValueError(f"learning_starts {self.learning_starts} < window {self.window}: nothing to sample")
        if self.batch_windows < self.inner_steps + 1:
            raise ValueError(f"batch_windows {self.batch_windows} < inner_steps + 1 = {self.inner_steps + 1}")
        _check_choice("meta_clip", self.meta_clip, ("agent", "mean"))
        _check_choice("meta_batch", self.meta_batch, ("separate", "policy"))
        _check_choice("inner_loss_reduction", self.inner_loss_reduction, ("sum", "window_mean"))
        _check_choice("meta_grad_state", self.meta_grad_state, ("after_policy", "before_policy"))
        _check_choice("policy_loss_reduction", self.policy_loss_reduction, ("step_mean", "window_mean"))
        return self

    @property
    def num_evals(self) -> int:
        return (self.total_steps - self.learning_starts) // self.eval_every

    @property
    def hp(self) -> dict:
        return dict(actor_lr=self.actor_lr, critic_lr=self.critic_lr, gamma=self.gamma, tau=self.tau,
                    expl_noise=self.expl_noise)


# This module's training before it followed the authors' code (with LEGACY_OBJECTIVE: ``legacy(cfg)``).
LEGACY_TRAINING = dict(objective_adam_eps=1e-20, meta_clip="mean", meta_batch="policy",
                       inner_loss_reduction="window_mean", meta_grad_state="before_policy",
                       policy_loss_reduction="window_mean", policy_clip_norm=None)


def legacy(config: MetaGenRLConfig) -> MetaGenRLConfig:
    """``config`` with every option set to this module's earlier behaviour (to reproduce older runs)."""
    import dataclasses

    return dataclasses.replace(config, **LEGACY_TRAINING,
                               objective=dataclasses.replace(config.objective, **LEGACY_OBJECTIVE))


@struct.dataclass
class AgentRun:
    agent: Any
    env_state: Any
    obs: jax.Array
    buffer: buffers.Buffer
    key: jax.Array
    train_steps: jax.Array  # environment steps after the warm-up
    alpha: Any  # this agent's frozen objective (meta-test; unused while meta-training)
    mix: jax.Array  # [3] weights of (L_alpha, TD3 actor loss, off-policy REINFORCE+GAE) (meta-test)


@struct.dataclass
class PopState:
    groups: tuple  # one AgentRun per environment, batched over that group's agents
    alpha: Any  # the shared objective being meta-trained
    alpha_opt: Any
    cycles: jax.Array


class Group(NamedTuple):
    name: str
    env: Any
    agent: Any
    n: int


VARIANTS = {"learned": (1.0, 0.0, 0.0), "td3": (0.0, 1.0, 0.0), "reinforce": (0.0, 0.0, 1.0)}


def make_agent_for(spec, config: MetaGenRLConfig):
    return make_agent("td3", spec, actor_hidden=tuple(config.hidden), critic_hidden=tuple(config.hidden),
                      layer_norm=True, batch_size=config.batch_windows)


def track_env(max_episode_steps: int | None = None):
    """``toy/track``: a tiny continuous task for learning tests. Observe s ~ U(-1, 1), act a in [-1, 1],
    reward -(a - s)^2, a fresh s every step, 10-step episodes (no termination). Per episode: the
    optimum is 0, uniformly random actions score -20/3 (E(a - s)^2 = 2/3), and the best action that
    ignores s (a = 0) scores -10/3, so a return above -10/3 needs a policy that reads its observation.
    TD3 with 16-16 networks is within 0.5 of the optimum after ~1k environment steps (500 random)."""
    from metarl.envs.core import Env, RawEnv

    spec = envs.EnvSpec(name="toy/track", obs_shape=(1,), discrete=False, action_dim=1, action_low=(-1.0,),
                        action_high=(1.0,), max_episode_steps=10)

    def reset(key):
        s = jax.random.uniform(key, (1,), minval=-1.0, maxval=1.0)
        return s, s

    def step(s, a, key):
        s2 = jax.random.uniform(key, (1,), minval=-1.0, maxval=1.0)
        return s2, s2, -jnp.sum(jnp.square(a - s)), jnp.zeros((), bool)

    return Env(RawEnv(spec, reset, step), max_episode_steps=max_episode_steps)


# Environments of this module only (tests, sanity checks): name -> constructor(max_episode_steps).
TOY_ENVS = {"toy/track": track_env}


def make_env(name: str, max_episode_steps: int | None = None):
    """``metarl.envs.make(name)``, or one of :data:`TOY_ENVS`."""
    if name in TOY_ENVS:
        return TOY_ENVS[name](max_episode_steps)
    return envs.make(name, max_episode_steps=max_episode_steps)


def make_groups(config: MetaGenRLConfig, envs_: Sequence[str] | None = None, n: int | None = None):
    out = []
    for name in (envs_ or config.envs):
        env = make_env(name, config.max_episode_steps)
        out.append(Group(name, env, make_agent_for(env.spec, config), n or config.agents_per_env))
    return out


def random_policy_return(env, key, episodes: int):
    """Mean return of ``episodes`` episodes (vmapped) of the uniformly random policy (every action
    entry uniform on [-1, 1], the agents' action range), each episode run to its end or its limit.
    The random-policy rows of the meta-test: the same number of episodes per evaluation as the
    agents' evaluation, at every evaluation point, from each seed's own keys."""
    return fixed_policy_return(env, key, episodes,
                               lambda k, shape: jax.random.uniform(k, shape, minval=-1.0, maxval=1.0))


def zero_action_return(env, key, episodes: int):
    """Mean return of ``episodes`` episodes of the policy that always acts 0 (the centre of the action
    range; the stochasticity is the environment's own reset). A reference that ignores the observation:
    on MountainCarContinuous it pays no energy cost, so it scores about 0 without ever reaching the goal."""
    return fixed_policy_return(env, key, episodes, lambda k, shape: jnp.zeros(shape))


def fixed_policy_return(env, key, episodes: int, act):
    """Mean return of ``episodes`` vmapped episodes of a policy that does not look at the observation:
    ``act(key, (episodes, action_dim))`` gives each step's actions; each episode runs to its end or limit."""
    k_reset, k_steps = jax.random.split(key)
    sts, tss = jax.vmap(env.reset)(jax.random.split(k_reset, episodes))
    dim = env.spec.action_dim

    def step(carry, k):
        sts, ret, alive = carry
        ka, ke = jax.random.split(k)
        a = act(ka, (episodes, dim))
        sts, ts = jax.vmap(env.step)(sts, a, jax.random.split(ke, episodes))
        ret = ret + alive * ts.reward
        return (sts, ret, alive * (1.0 - ts.done.astype(jnp.float32))), None

    init = (sts, jnp.zeros(episodes), jnp.ones(episodes))
    (_, ret, _), _ = jax.lax.scan(step, init, jax.random.split(k_steps, env.spec.max_episode_steps))
    return jnp.mean(ret)


def _transition(obs, action, ts, t):
    return dict(obs=obs, action=action, reward=ts.reward, next_obs=ts.next_obs, terminated=ts.terminated,
                done=ts.done, t=t)


def mixed_objective(agent, alpha, ocfg, mix, gae_lambda, reduction: str = "step_mean", reinforce: bool = True):
    """mix[0] * L_alpha + mix[1] * TD3 actor loss + mix[2] * off-policy REINFORCE+GAE. One compiled
    program then serves the learned objective, both baselines and the annealing (mix = [p, 1-p, 0]).
    ``reduction`` ("step_mean" or "window_mean", :func:`reduce_steps`) reduces L_alpha's and
    REINFORCE's per-step losses; TD3's is always the mean over the B * T transitions, so with
    "step_mean" the mix is per step, then one mean. ``reinforce=False`` leaves the third term out
    (mix[2] must then be 0). Term names (diagnostics ``pg_norm_<name>``): objective, critic, reinforce."""
    td3 = td3_actor_objective(agent)

    def learned(actor_params, state, inputs):
        steps = objective_steps(alpha, ocfg, inputs, agent.actor_net.apply(actor_params, inputs["obs"]))
        return reduce_steps(steps, reduction), {"objective_std": masked_std(steps, inputs["mask"])}

    def critic(actor_params, state, inputs):
        return td3(actor_params, state, inputs), {}

    def reinforce_term(actor_params, state, inputs):
        return reinforce_loss(agent, actor_params, inputs, state.hp["gamma"], gae_lambda, state.hp["expl_noise"],
                              reduction), {}

    terms = (("objective", mix[0], learned), ("critic", mix[1], critic))
    if reinforce:
        terms += (("reinforce", mix[2], reinforce_term),)
    return MixedObjective(terms)


class MetaGradMonitor:
    """Host-side watch of the per-agent meta-gradient norms of a meta-training run.

    ``update(segment_metrics)`` takes (and removes) each group's ``meta_grad_norm_steps`` [cycles, n]
    from a ``run_segment`` output, keeps every agent's first / last / minimum norm, and warns
    (:class:`MetaGradientCollapseWarning`, also returned as strings) when an agent's norm has stayed
    below ``config.collapse_threshold`` for ``config.collapse_patience`` consecutive meta-steps,
    naming the agent, the meta-step and the agent's environment step."""

    def __init__(self, config: MetaGenRLConfig, groups: Sequence[Group]):
        self.threshold, self.patience = config.collapse_threshold, config.collapse_patience
        self.learning_starts = config.learning_starts
        self.names = [g.name for g in groups]
        self.streak = {g.name: np.zeros(g.n, np.int64) for g in groups}
        self.first = self.last = self.min = None
        self.meta_steps = 0
        self.warnings: list[str] = []

    def update(self, metrics: dict) -> list[str]:
        out, firsts, lasts, mins = [], {}, {}, {}
        n_steps = 0
        for name in self.names:
            norms = np.asarray(metrics[name].pop("meta_grad_norm_steps"), np.float64)  # [cycles, n]
            n_steps = norms.shape[0]
            firsts[name], lasts[name], mins[name] = norms[0], norms[-1], norms.min(0)
            below = norms < self.threshold
            idx = np.arange(n_steps)[:, None]
            last_reset = np.maximum.accumulate(np.where(below, -1, idx), axis=0)
            streak = np.where(last_reset < 0, self.streak[name][None] + idx + 1, idx - last_reset)
            for t, i in zip(*np.nonzero(streak == self.patience)):
                step = self.meta_steps + int(t) + 1
                msg = (f"MetaGenRL: meta-gradient collapse: agent {i} of {name} has had a meta-gradient norm "
                       f"below {self.threshold:g} for {self.patience} consecutive meta-steps, at meta-step "
                       f"{step} (its environment step {self.learning_starts + 2 * step}); last norm "
                       f"{norms[t, i]:.3g}")
                warnings.warn(msg, MetaGradientCollapseWarning, stacklevel=2)
                out.append(msg)
            self.streak[name] = streak[-1]
        if self.first is None:
            self.first = firsts
        self.last = lasts
        self.min = mins if self.min is None else {k: np.minimum(self.min[k], v) for k, v in mins.items()}
        self.meta_steps += n_steps
        self.warnings += out
        return out

    def state_dict(self) -> dict:
        """Everything the monitor has seen, as plain JSON types (kept in a meta-training checkpoint)."""
        arr = lambda d: None if d is None else {k: np.asarray(v).tolist() for k, v in d.items()}
        return dict(streak=arr(self.streak), first=arr(self.first), last=arr(self.last), min=arr(self.min),
                    meta_steps=self.meta_steps, warnings=list(self.warnings))

    def load_state_dict(self, d: dict):
        """Continue from :meth:`state_dict` (a resumed meta-training warns exactly as an uninterrupted one)."""
        arr = lambda x, dt=np.float64: None if x is None else {k: np.asarray(v, dt) for k, v in x.items()}
        self.streak = arr(d["streak"], np.int64)
        self.first, self.last, self.min = arr(d["first"]), arr(d["last"]), arr(d["min"])
        self.meta_steps, self.warnings = int(d["meta_steps"]), list(d["warnings"])
        return self

    def summary(self) -> dict:
        """Per group: first, last and minimum meta-gradient norm of every agent (lists), and over the
        population (mean of the first / last, minimum of the minima)."""
        per = {k: dict(first=self.first[k].tolist(), last=self.last[k].tolist(), min=self.min[k].tolist())
               for k in self.names}
        cat = lambda d: np.concatenate([d[k] for k in self.names])
        return dict(per_agent=per, first=float(cat(self.first).mean()), last=float(cat(self.last).mean()),
                    min=float(cat(self.min).min()), meta_steps=self.meta_steps, warnings=list(self.warnings))


class MetaGradientCollapseWarning(RuntimeWarning):
    """An agent's meta-gradient norm stayed below the threshold for the configured number of meta-steps."""


def make_population(config: MetaGenRLConfig, groups: Sequence[Group], meta_train: bool = True):
    """(init, run_segment, evaluate_agent) for a population.

    Meta-training (``meta_train=True``): every agent follows the shared objective alpha, annealed from
    the TD3 actor loss over ``anneal_steps``, and alpha takes one Adam step per update cycle on the
    mean over every agent of its (clipped) Eq. 6/8 gradient. ``init(key, alpha=None)``.

    Meta-testing (``meta_train=False``): alpha is frozen and per agent, and each agent has its own
    ``mix`` of (L_alpha, TD3, REINFORCE), so learned objectives and both baselines on one environment
    are one vmapped axis of one program. ``init(key, variants=[(alphas [n, ...], mixes [n, 3]) per group])``.

    ``run_segment`` runs ``eval_every / 2`` update cycles of every agent (2 env steps each), then
    evaluates every agent (deterministic policy, ``eval_episodes`` episodes). Its metrics, per group
    and agent (segment means unless named otherwise): eval_return, train_return, critic_loss,
    actor_loss, saturation, objective_std, pg_norm_objective, pg_norm_critic, env_steps; meta-training
    adds meta_loss, meta_grad_norm (the agent's own, before clipping), meta_grad_norm_min and
    meta_grad_norm_steps [cycles, n] (for :class:`MetaGradMonitor`, which removes it), and at the
    top level meta_grad_norm (the norm of the averaged gradient Adam receives, segment mean).
    """
    config.validate()
    ocfg = config.objective
    adam = optax.adam(config.objective_lr, eps=config.objective_adam_eps)
    tx = adam if config.meta_clip == "agent" else optax.chain(optax.clip_by_global_norm(config.clip_norm), adam)
    n_total = sum(g.n for g in groups)
    meta_windows = (config.inner_steps + 1) * config.batch_windows

    def env_step(g: Group, run: AgentRun, action, key):
        env = g.env
        t = run.env_state.t.astype(jnp.float32) / env.spec.max_episode_steps
        env_state, ts = env.step(run.env_state, action, key)
        buf = buffers.add(run.buffer, _transition(run.obs, action, ts, t))
        return run.replace(env_state=env_state, obs=ts.obs, buffer=buf, train_steps=run.train_steps + 1), ts

    def agent_init(g: Group, key, alpha, mix):
        env, agent = g.env, g.agent
        k_agent, k_env, k_run, k_warm = jax.random.split(key, 4)
        st = agent.init(k_agent, config.hp)
        env_state, ts = env.reset(k_env)
        example = _transition(ts.obs, jnp.zeros((env.spec.action_dim,)), ts, jnp.zeros(()))
        buf = buffers.init(example, min(config.buffer_size, config.total_steps))
        run = AgentRun(st, env_state, ts.obs, buf, k_run, jnp.zeros((), jnp.int32), alpha, mix)

        def warm(run, k):
            a = jax.random.uniform(k, (env.spec.action_dim,), minval=-1.0, maxval=1.0)
            return env_step(g, run, a, k)[0], None

        run, _ = jax.lax.scan(warm, run, jax.random.split(k_warm, config.learning_starts))
        return run.replace(train_steps=jnp.zeros((), jnp.int32))

    def agent_cycle(g: Group, run: AgentRun, shared_alpha):
        agent = g.agent
        key, ka1, ke1, ka2, ke2, kw1, kw2, ku = jax.random.split(run.key, 8)
        run = run.replace(key=key)
        rets, dones = [], []
        for ka, ke in ((ka1, ke1), (ka2, ke2)):
            a = agent.act(run.agent, run.obs, ka, True)
            run, ts = env_step(g, run, a, ke)
            rets.append(ts.episode_return)
            dones.append(ts.done.astype(jnp.float32))
        w1, _ = buffers.sample_windows(run.buffer, kw1, config.batch_windows, config.window)
        w2, m2 = buffers.sample_windows(run.buffer, kw2, config.batch_windows, config.window)
        if meta_train:
            p = jnp.clip(run.train_steps.astype(jnp.float32) / max(config.anneal_steps, 1), 0.0, 1.0)
            objective = mixed_objective(agent, shared_alpha, ocfg, jnp.stack([p, 1.0 - p, 0.0]), config.gae_lambda,
                                        config.policy_loss_reduction, reinforce=False)
        else:
            objective = mixed_objective(agent, run.alpha, ocfg, run.mix, config.gae_lambda,
                                        config.policy_loss_reduction)
        new, pre, inputs, m = update_agent(agent, run.agent, w1, w2, m2, ku, objective, config.policy_clip_norm)
        m["ret_sum"] = rets[0] * dones[0] + rets[1] * dones[1]
        m["ret_n"] = dones[0] + dones[1]
        meta_state, meta_inputs = pre, inputs
        if meta_train:
            if config.meta_grad_state == "after_policy":
                meta_state = new
            if config.meta_batch == "separate":
                # A key of its own (folded, so the other keys of the cycle are those of earlier versions).
                w3, m3 = buffers.sample_windows(run.buffer, jax.random.fold_in(kw2, 1), meta_windows, config.window)
                meta_inputs = objective_inputs(agent, meta_state, w3, m3)
        return run.replace(agent=new), meta_state, meta_inputs, m

    def cycle(state: PopState, _):
        groups_out, grad_sum, metrics = [], None, {}
        for g, run in zip(groups, state.groups):
            run, meta_state, inputs, m = jax.vmap(lambda r: agent_cycle(g, r, state.alpha))(run)
            groups_out.append(run)
            if meta_train:
                grads, losses = population_meta_grads(state.alpha, ocfg, g.agent, meta_state.actor, meta_state.critic,
                                                      inputs, config.inner_steps, config.inner_lr,
                                                      config.inner_loss_reduction)
                if config.meta_clip == "agent":
                    grads, norms = clip_per_agent(grads, config.clip_norm)
                else:
                    norms = jax.vmap(optax.tree.norm)(grads)
                gs = jax.tree.map(lambda x: jnp.sum(x, 0), grads)
                grad_sum = gs if grad_sum is None else jax.tree.map(jnp.add, grad_sum, gs)
                m["meta_loss"] = losses
                m["meta_grad_norm"] = norms
            metrics[g.name] = m
        alpha, alpha_opt = state.alpha, state.alpha_opt
        if meta_train:
            g_mean = jax.tree.map(lambda x: x / n_total, grad_sum)
            upd, alpha_opt = tx.update(g_mean, alpha_opt, alpha)
            alpha = optax.apply_updates(alpha, upd)
            metrics["meta_grad_norm"] = optax.tree.norm(g_mean)
        return state.replace(groups=tuple(groups_out), alpha=alpha, alpha_opt=alpha_opt,
                             cycles=state.cycles + 1), metrics

    def evaluate_agent(g: Group, agent_state, key):
        env, agent, n = g.env, g.agent, config.eval_episodes
        k_reset, k_steps = jax.random.split(key)
        sts, tss = jax.vmap(env.reset)(jax.random.split(k_reset, n))

        def step(carry, k):
            sts, obs, ret, alive = carry
            a = agent.act(agent_state, obs, k, False)
            sts, ts = jax.vmap(env.step)(sts, a, jax.random.split(k, n))
            ret = ret + alive * ts.reward
            return (sts, ts.obs, ret, alive * (1.0 - ts.done.astype(jnp.float32))), None

        init = (sts, tss.obs, jnp.zeros(n), jnp.ones(n))
        (_, _, ret, _), _ = jax.lax.scan(step, init, jax.random.split(k_steps, env.spec.max_episode_steps))
        return jnp.mean(ret)

    def run_segment(state: PopState):
        state, m = jax.lax.scan(cycle, state, None, length=config.eval_every // 2)
        out, new_groups = {}, []
        for g, run in zip(groups, state.groups):
            mg = m[g.name]
            keys = jax.vmap(lambda k: jax.random.split(k))(run.key)
            ev = jax.vmap(lambda s, k: evaluate_agent(g, s, k))(run.agent, keys[:, 1])
            new_groups.append(run.replace(key=keys[:, 0]))
            mean = lambda k: jnp.mean(mg[k], 0)
            diag = {k: mean(k) for k in ("saturation", "objective_std", "pg_norm_objective", "pg_norm_critic")}
            if meta_train:
                diag.update(meta_loss=mean("meta_loss"), meta_grad_norm=mean("meta_grad_norm"),
                            meta_grad_norm_min=jnp.min(mg["meta_grad_norm"], 0),
                            meta_grad_norm_steps=mg["meta_grad_norm"])
            out[g.name] = dict(
                eval_return=ev,
                train_return=jnp.sum(mg["ret_sum"], 0) / jnp.maximum(jnp.sum(mg["ret_n"], 0), 1.0),
                critic_loss=mean("critic_loss"), actor_loss=mean("actor_loss"), **diag,
                env_steps=config.learning_starts + run.train_steps)
        if meta_train:
            out["meta_grad_norm"] = jnp.mean(m["meta_grad_norm"])
        return state.replace(groups=tuple(new_groups)), out

    def init(key, alpha=None, variants=None):
        k_alpha, *k_groups = jax.random.split(key, len(groups) + 1)
        if alpha is None:
            alpha = init_objective(k_alpha, ocfg)
        if variants is None:
            if not meta_train:
                raise ValueError("meta-test needs variants: per group (alphas [n, ...], mixes [n, 3])")
            variants = [(jax.tree.map(lambda x: jnp.broadcast_to(x, (g.n,) + x.shape), alpha),
                         jnp.zeros((g.n, 3))) for g in groups]
        runs = tuple(jax.vmap(lambda k, a, mx: agent_init(g, k, a, mx))(jax.random.split(kg, g.n), va, vm)
                     for g, kg, (va, vm) in zip(groups, k_groups, variants))
        return PopState(runs, alpha, tx.init(alpha), jnp.zeros((), jnp.int32))

    return init, run_segment, evaluate_agent


# ----------------------------------------------------------------------------------------------------
# Saving and loading the frozen objective
# ----------------------------------------------------------------------------------------------------
def save_objective(path: str, alpha, cfg: ObjectiveConfig, extra: dict | None = None):
    """Write alpha with orbax plus its config as JSON, atomically (a temp dir, then a rename)."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    tmp = path + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    ck = ocp.StandardCheckpointer()
    ck.save(os.path.join(tmp, "alpha"), alpha)
    ck.wait_until_finished()
    with open(os.path.join(tmp, "objective.json"), "w") as f:
        json.dump({"objective": asdict(ObjectiveConfig(**asdict(cfg))), **(extra or {})}, f, indent=2,
                  default=list)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def load_objective(path: str):
    """(alpha, ObjectiveConfig, extra) written by :func:`save_objective`."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    with open(os.path.join(path, "objective.json")) as f:
        meta = json.load(f)
    # Keys a file lacks were written before they existed: that version's behaviour (LEGACY_OBJECTIVE).
    c = {**LEGACY_OBJECTIVE, **meta.pop("objective")}
    cfg = ObjectiveConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()})
    abstract = jax.eval_shape(lambda: init_objective(jax.random.PRNGKey(0), cfg))
    alpha = ocp.StandardCheckpointer().restore(os.path.join(path, "alpha"), abstract)
    return alpha, cfg, meta
