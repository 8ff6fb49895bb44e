"""The baselines of the reacher and 7-DoF experiments: the DDPG-style supervised Q(s - g, a) and the
Meta-Critic (Zhou et al., 2020) on top of it, both evaluated by Algorithm 3 like ours."""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl.nets import MLP
from metarl.meta.model_based_critic.method import (GoalPolicy, Task, critic_policy_loss, evaluate_critics, final_error,
                                                   rollout)


# ----------------------------------------------------------------------------------------------
# 3. The DDPG-style baseline: a supervised Q(s - g, a), its policy learned by that Q
# ----------------------------------------------------------------------------------------------


class FoldedCritic(nn.Module):
    """Q(s, a, g) = MLP([q - g, qd, a]): the goal folded into the state as s - g (400-400 ELU, linear)."""

    hidden: tuple = (400, 400)
    goal_dim: int = 2

    @nn.compact
    def __call__(self, s, a, g):
        x = jnp.concatenate([s[..., : self.goal_dim] - g, s[..., self.goal_dim:], a], -1)
        return MLP(tuple(self.hidden) + (1,), activation=nn.elu)(x)[..., 0]


@dataclasses.dataclass(frozen=True)
class DDPGConfig:
    horizon: int = 50
    gamma: float = 0.98
    q_lr: float = 1e-3
    pi_lr: float = 1e-3
    tau: float = 0.01
    batch: int = 128
    buffer_episodes: int = 256
    explore_episodes: int = 2       # noisy episodes per training goal and iteration
    explore_std: float = 0.3
    q_updates: int = 5              # per iteration
    pi_updates: int = 2             # per iteration
    critic_hidden: tuple = (400, 400)
    policy_hidden: tuple = (64, 64)
    test_steps: int = 100           # Algorithm 3 with the frozen Q: Adam steps on sum_t Q(s_t, pi(s_t), g)
    test_lr: float = 1e-3


def ddpg_nets(cfg: DDPGConfig, task: Task):
    return FoldedCritic(tuple(cfg.critic_hidden), task.goal_dim), GoalPolicy(task.action_dim, tuple(cfg.policy_hidden))


class DDPGState(struct.PyTreeNode):
    q: Any
    q_targ: Any
    pi: Any
    q_opt: Any
    pi_opt: Any
    buf: Any        # dict of (capacity, ...) arrays: x, u, x2, g, c, last
    size: jax.Array
    ptr: jax.Array
    key: jax.Array


def ddpg_init(cfg: DDPGConfig, task: Task, key):
    q_net, pi_net = ddpg_nets(cfg, task)
    k1, k2, k3 = jax.random.split(key, 3)
    x, a, g = jnp.zeros(task.state_dim), jnp.zeros(task.action_dim), jnp.zeros(task.goal_dim)
    q = q_net.init(k1, x, a, g)
    pi = pi_net.init(k2, x, g)
    cap = cfg.buffer_episodes * cfg.horizon
    buf = {"x": jnp.zeros((cap, task.state_dim)), "u": jnp.zeros((cap, task.action_dim)),
           "x2": jnp.zeros((cap, task.state_dim)), "g": jnp.zeros((cap, task.goal_dim)),
           "c": jnp.zeros(cap), "last": jnp.zeros(cap)}
    return DDPGState(q, q, pi, optax.adam(cfg.q_lr).init(q), optax.adam(cfg.pi_lr).init(pi), buf,
                     jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), k3)


def noisy_rollout(task: Task, dyn, policy_apply, theta, goal, horizon, key, std):
    """Transitions of pi_theta + N(0, std) exploration (no gradient is taken through it)."""
    model = task.prepare(dyn)
    noise = std * jax.random.normal(key, (horizon, task.action_dim))

    def body(m, n):
        x = task.obs(m)
        u = jnp.clip(policy_apply(theta, x, goal) + n, -1.0, 1.0)
        m2 = task.step(model, m, u)
        return m2, (x, u, task.obs(m2))

    _, (xs, us, x2s) = jax.lax.scan(body, task.init(model), noise)
    return xs, us, x2s


def ddpg_step(cfg: DDPGConfig, task: Task, st: DDPGState, goals, dyn, pi_hook=None, hook_carry=None):
    """Algorithm 1 (DDPG-style): collect noisy episodes on every training goal, TD-fit Q (cost-to-go,
    target network), update the policy by descending Q; metrics: the greedy policy's final error.

    ``pi_hook(carry, pi, q, grad_q, buf, size, idx) -> (carry, extra_grad)`` (optional) runs at every
    policy update with the update's batch indices ``idx`` and the gradient of the Q-loss; ``extra_grad``
    is added to that gradient before Adam (the Meta-Critic baseline's auxiliary loss). Without a hook
    this is the plain DDPG step; with one, the step returns ``(state, metrics, carry)``."""
    q_net, pi_net = ddpg_nets(cfg, task)
    key, k_roll, k_q = jax.random.split(st.key, 3)
    n_goals = goals.shape[0]
    g_rep = jnp.repeat(goals, cfg.explore_episodes, 0)
    keys = jax.random.split(k_roll, g_rep.shape[0])
    xs, us, x2s = jax.vmap(lambda g, k: noisy_rollout(task, dyn, pi_net.apply, st.pi, g, cfg.horizon, k,
                                                      cfg.explore_std))(g_rep, keys)
    xs, us, x2s = jax.lax.stop_gradient((xs, us, x2s))
    n_new = g_rep.shape[0] * cfg.horizon
    gs = jnp.repeat(g_rep[:, None], cfg.horizon, 1)
    cost = jnp.sum((x2s[..., : task.goal_dim] - gs) ** 2, -1)
    last = jnp.zeros((g_rep.shape[0], cfg.horizon)).at[:, -1].set(1.0)
    new = {"x": xs, "u": us, "x2": x2s, "g": gs, "c": cost, "last": last}
    new = jax.tree.map(lambda a: a.reshape((n_new,) + a.shape[2:]), new)
    cap = cfg.buffer_episodes * cfg.horizon
    idx = (st.ptr + jnp.arange(n_new)) % cap
    buf = jax.tree.map(lambda b, a: b.at[idx].set(a), st.buf, new)
    size = jnp.minimum(st.size + n_new, cap)
    ptr = (st.ptr + n_new) % cap

    def q_update(carry, k):
        q, q_targ, q_opt = carry
        i = jax.random.randint(k, (cfg.batch,), 0, size)
        b = jax.tree.map(lambda a: a[i], buf)
        a2 = pi_net.apply(st.pi, b["x2"], b["g"])
        y = b["c"] + cfg.gamma * (1.0 - b["last"]) * q_net.apply(q_targ, b["x2"], a2, b["g"])
        loss_fn = lambda q: jnp.mean((q_net.apply(q, b["x"], b["u"], b["g"]) - jax.lax.stop_gradient(y)) ** 2)
        loss, gq = jax.value_and_grad(loss_fn)(q)
        upd, q_opt = optax.adam(cfg.q_lr).update(gq, q_opt, q)
        q = optax.apply_updates(q, upd)
        q_targ = jax.tree.map(lambda t, p: (1 - cfg.tau) * t + cfg.tau * p, q_targ, q)
        return (q, q_targ, q_opt), loss

    kq, kp = jax.random.split(k_q)
    (q, q_targ, q_opt), q_loss = jax.lax.scan(q_update, (st.q, st.q_targ, st.q_opt),
                                              jax.random.split(kq, cfg.q_updates))

    def pi_update(carry, k):
        pi, pi_opt, hc = carry
        i = jax.random.randint(k, (cfg.batch,), 0, size)
        x, g = buf["x"][i], buf["g"][i]
        gp = jax.grad(lambda p: jnp.mean(q_net.apply(q, x, pi_net.apply(p, x, g), g)))(pi)
        if pi_hook is not None:
            hc, extra = pi_hook(hc, pi, q, gp, buf, size, i)
            gp = jax.tree.map(jnp.add, gp, extra)
        upd, pi_opt = optax.adam(cfg.pi_lr).update(gp, pi_opt, pi)
        return (optax.apply_updates(pi, upd), pi_opt, hc), None

    (pi, pi_opt, hook_carry), _ = jax.lax.scan(pi_update, (st.pi, st.pi_opt, hook_carry),
                                               jax.random.split(kp, cfg.pi_updates))
    xT = jax.vmap(lambda g: rollout(task, dyn, pi_net.apply, pi, g, cfg.horizon)[0])(goals)
    err = jnp.mean(jax.vmap(lambda x, g: final_error(task, x, g))(xT, goals))
    del n_goals
    out = DDPGState(q, q_targ, pi, q_opt, pi_opt, buf, size, ptr, key), {"train_error": err,
                                                                        "q_loss": jnp.mean(q_loss)}
    return out if pi_hook is None else out + (hook_carry,)


def ddpg_train_chunk(cfg: DDPGConfig, task: Task, st: DDPGState, goals, dyn, length: int):
    return jax.lax.scan(lambda s, _: ddpg_step(cfg, task, s, goals, dyn), st, None, length=length)


def ddpg_learn_policy(cfg: DDPGConfig, task: Task, q, key, goal, dyn):
    """Algorithm 3 with the frozen supervised Q: a new policy from scratch by Adam steps on
    sum_t Q(s_t, pi(s_t), g) over its own (model-free) rollouts; returns its final-state error."""
    q_net, _ = ddpg_nets(cfg, task)
    return _learn_with_loss(cfg, task, q_net.apply, q, key, goal, dyn)


def _learn_with_loss(cfg, task: Task, loss_apply, params, key, goal, dyn):
    """A fresh policy, cfg.test_steps Adam steps on sum_t loss_apply(params, s_t, pi(s_t), g) over its
    own rollouts (states as data); returns the final-state error of the learned policy."""
    _, pi_net = ddpg_nets(cfg, task)
    pi = pi_net.init(key, jnp.zeros(task.state_dim), jnp.zeros(task.goal_dim))
    opt = optax.adam(cfg.test_lr)
    grad_fn = jax.grad(critic_policy_loss, argnums=3)

    def body(carry, _):
        pi, s = carry
        _, xs, _ = rollout(task, dyn, pi_net.apply, pi, goal, cfg.horizon)
        gp = grad_fn(loss_apply, pi_net.apply, jax.lax.stop_gradient(params), pi, jax.lax.stop_gradient(xs), goal)
        upd, s = opt.update(gp, s, pi)
        return (optax.apply_updates(pi, upd), s), None

    (pi, _), _ = jax.lax.scan(body, (pi, opt.init(pi)), None, length=cfg.test_steps)
    xT, _, _ = rollout(task, dyn, pi_net.apply, pi, goal, cfg.horizon)
    return final_error(task, xT, goal)


# ----------------------------------------------------------------------------------------------
# 3b. The Meta-Critic baseline (Zhou et al., 2020, as the paper uses it): the DDPG-style supervised Q,
#     plus an auxiliary meta-critic loss h_w on the policy, w learned bi-level by the supervised Q's
#     evaluation of the policy after a look-ahead step
# ----------------------------------------------------------------------------------------------

MC_META_LOSSES = ("clip", "plain")


class AuxCritic(nn.Module):
    """h_w(s, a, g) = softplus(MLP([q - g, qd, a])), MLP (100, 100) ReLU: the meta-critic. Zhou et al.'s
    h_w reads the actor's features (Eq. 10) or (features, s, a) (Eq. 11); a fresh policy is learned from
    scratch at meta-test here, so h_w reads (s - g, a) like the supervised Q."""

    hidden: tuple = (100, 100)
    goal_dim: int = 2

    @nn.compact
    def __call__(self, s, a, g):
        x = jnp.concatenate([s[..., : self.goal_dim] - g, s[..., self.goal_dim:], a], -1)
        return nn.softplus(MLP(tuple(self.hidden) + (1,), activation=nn.relu)(x)[..., 0])


@dataclasses.dataclass(frozen=True)
class MetaCriticBaselineConfig(DDPGConfig):
    """DDPGConfig plus the meta-critic's settings. ``aux_scale`` multiplies h_w everywhere (0: DDPG
    exactly); ``meta_loss``: "clip" = tanh(L_val(new) - L_val(old)) (Zhou et al.'s Eq. 9) or "plain" =
    L_val(new) (Eq. 8); the look-ahead is plain SGD with ``lookahead_lr`` (default: pi_lr)."""

    aux_hidden: tuple = (100, 100)
    aux_scale: float = 1.0
    meta_lr: float = 1e-3
    meta_loss: str = "clip"
    lookahead_lr: float = 0.0       # 0: pi_lr

    def __post_init__(self):
        if self.meta_loss not in MC_META_LOSSES:
            raise ValueError(f"unknown meta-critic meta_loss {self.meta_loss!r}; valid: {', '.join(MC_META_LOSSES)}")


class MCBaselineState(struct.PyTreeNode):
    base: DDPGState     # the supervised Q, its target, the policy, the replay buffer (DDPG's own key chain)
    w: Any
    w_opt: Any
    key: jax.Array      # the meta-step's validation batches (a key chain of its own)


def mc_aux_net(cfg: MetaCriticBaselineConfig, task: Task):
    return AuxCritic(tuple(cfg.aux_hidden), task.goal_dim)


def mc_init(cfg: MetaCriticBaselineConfig, task: Task, key):
    k_base, k_w, k_meta = jax.random.split(key, 3)
    base = ddpg_init(cfg, task, k_base)
    w = mc_aux_net(cfg, task).init(k_w, jnp.zeros(task.state_dim), jnp.zeros(task.action_dim), jnp.zeros(task.goal_dim))
    return MCBaselineState(base, w, optax.adam(cfg.meta_lr).init(w), k_meta)


def mc_aux_loss(cfg: MetaCriticBaselineConfig, task: Task, w, pi, x, g):
    """aux_scale * mean_i h_w(s_i, pi(s_i), g_i) over a batch."""
    _, pi_net = ddpg_nets(cfg, task)
    return cfg.aux_scale * jnp.mean(mc_aux_net(cfg, task).apply(w, x, pi_net.apply(pi, x, g), g))


def mc_meta_objective(cfg: MetaCriticBaselineConfig, task: Task, w, q, pi, trn, val):
    """The meta-critic's loss for w: look-ahead pi_old = pi - eta grad_pi L_Q(trn), pi_new = pi_old -
    eta grad_pi h_w(trn) (gradients at pi, as Zhou et al.'s Eq. 6-7), evaluated by the supervised Q on an
    independent batch: L_val(p) = mean Q(s, p(s), g) over ``val``; "clip": tanh(L_val(pi_new) -
    L_val(pi_old)), "plain": L_val(pi_new). trn/val: (x, g) batches."""
    q_net, pi_net = ddpg_nets(cfg, task)
    eta = cfg.lookahead_lr or cfg.pi_lr
    lq = lambda p, b: jnp.mean(q_net.apply(q, b[0], pi_net.apply(p, b[0], b[1]), b[1]))
    g_q = jax.grad(lq)(pi, trn)
    g_h = jax.grad(lambda p: mc_aux_loss(cfg, task, w, p, trn[0], trn[1]))(pi)
    pi_old = jax.tree.map(lambda p, d: p - eta * d, pi, g_q)
    pi_new = jax.tree.map(lambda p, d: p - eta * d, pi_old, g_h)
    l_new = lq(pi_new, val)
    if cfg.meta_loss == "plain":
        return l_new
    return jnp.tanh(l_new - jax.lax.stop_gradient(lq(pi_old, val)))


def mc_step(cfg: MetaCriticBaselineConfig, task: Task, st: MCBaselineState, goals, dyn):
    """One iteration: DDPG's (collect, TD-fit Q, policy updates), where every policy update descends
    Q + h_w and first updates w by Adam on the gradient of ``mc_meta_objective`` (d_trn: the policy
    update's batch; d_val: an independent batch from the same buffer)."""
    key, k_meta = jax.random.split(st.key)
    opt = optax.adam(cfg.meta_lr)

    def hook(carry, pi, q, _gq, buf, size, idx):
        w, w_opt, k = carry
        k, kv = jax.random.split(k)
        iv = jax.random.randint(kv, (cfg.batch,), 0, size)
        trn, val = (buf["x"][idx], buf["g"][idx]), (buf["x"][iv], buf["g"][iv])
        g_aux = jax.grad(lambda p: mc_aux_loss(cfg, task, w, p, trn[0], trn[1]))(pi)
        m_loss, g_w = jax.value_and_grad(mc_meta_objective, argnums=2)(cfg, task, w, q, pi, trn, val)
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(g_w)]))
        g_w = jax.tree.map(lambda a: jnp.where(finite, a, 0.0), g_w)
        upd, w_opt = opt.update(g_w, w_opt, w)
        return (optax.apply_updates(w, upd), w_opt, k), g_aux

    base, m, (w, w_opt, _) = ddpg_step(cfg, task, st.base, goals, dyn, pi_hook=hook,
                                       hook_carry=(st.w, st.w_opt, k_meta))
    return MCBaselineState(base, w, w_opt, key), m


def mc_train_chunk(cfg: MetaCriticBaselineConfig, task: Task, st: MCBaselineState, goals, dyn, length: int):
    return jax.lax.scan(lambda s, _: mc_step(cfg, task, s, goals, dyn), st, None, length=length)


def mc_learn_policy(cfg: MetaCriticBaselineConfig, task: Task, params, key, goal, dyn):
    """Algorithm 3 with the frozen Q and meta-critic: a new policy from scratch by Adam steps on
    sum_t [Q(s_t, pi(s_t), g) + aux_scale h_w(s_t, pi(s_t), g)], model-free; params = (q, w) or
    (q, w, scale) with a traced extra factor on h_w (scale 0: the DDPG baseline's Algorithm 3, so both
    baselines' meta-tests can run as one program)."""
    q_net, _ = ddpg_nets(cfg, task)
    h_net = mc_aux_net(cfg, task)

    def loss_apply(p, s, a, g):
        scale = cfg.aux_scale * (p[2] if len(p) > 2 else 1.0)
        return q_net.apply(p[0], s, a, g) + scale * h_net.apply(p[1], s, a, g)

    return _learn_with_loss(cfg, task, loss_apply, params, key, goal, dyn)


def evaluate_baselines(cfg: MetaCriticBaselineConfig, task: Task, q_ddpg, mc_states: MCBaselineState, goals, dyns,
                       key, n_inits: int):
    """Algorithm 3 for the DDPG critics (h_w scaled by 0) and the Meta-Critic's (Q, h_w) in one compiled
    program (the seeds of both stacked); returns (errors DDPG, errors Meta-Critic), each (P, seeds, inits)."""
    n_d = jax.tree.leaves(q_ddpg)[0].shape[0]
    n_m = jax.tree.leaves(mc_states.w)[0].shape[0]
    w_d = jax.tree.map(lambda x: jnp.broadcast_to(x[:1], (n_d,) + x.shape[1:]), mc_states.w)
    params = (jax.tree.map(lambda a, b: jnp.concatenate([a, b]), q_ddpg, mc_states.base.q),
              jax.tree.map(lambda a, b: jnp.concatenate([a, b]), w_d, mc_states.w),
              jnp.concatenate([jnp.zeros(n_d), jnp.ones(n_m)]))
    err = evaluate_critics(lambda p, k, g, d: mc_learn_policy(cfg, task, p, k, g, d), params, goals, dyns, key,
                           n_inits)
    return err[:, :n_d], err[:, n_d:]
