"""MetaGenRL's learned objective L_alpha: its config, networks, inputs, per-step values and reductions, and
saving / loading a frozen objective."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from metarl.meta.metagenrl.config import LEGACY_OBJECTIVE, ObjectiveConfig, _check_choice  # noqa: F401  (re-exported)


# ----------------------------------------------------------------------------------------------------
# The learned objective
# ----------------------------------------------------------------------------------------------------
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
