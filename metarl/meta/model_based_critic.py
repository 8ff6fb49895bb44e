"""Model-based meta-learning of critics (Bechtle, Righetti and Meier, 2022).

Three parts, all pure functions over pytrees:

1. The analytic toy of Section 4.1 / Appendix A: f(s, a) = s + a, pi_theta(s) = theta, horizon T,
   terminal cost (s_T - g)^2, critic (s + a)^2 phi_1. The three learning loops of the appendix run
   themselves (no closed form inside them): supervised Q-fitting (Algorithm 1 with the residual TD
   error of Eq. 22), the Meta-Critic of Appendix A.3 and model-based meta-learning (Algorithm 2).
   ``toy_sweep`` vmaps them over a sweep of initial theta.
2. The method on any differentiable model ``step(dyn, x, u) -> x'`` (Brax systems in
   ``metarl.meta.arm_models``): a goal-conditioned critic L_phi(s, a, g) (MLP 400-400 ELU), a policy
   pi_theta(s, g) (MLP 64-64 tanh), Algorithm 2 (``meta_train``: inner policy step(s) with the
   critic on model-free data, task loss ||q_T - g||^2 of the updated policy unrolled through the
   model, critic updated by the gradient through the inner step) and Algorithm 3 (``learn_policy``:
   with the critic frozen, a new policy learned from scratch model-free, on any goal and dynamics).
3. The DDPG-style baseline: a supervised Q(s - g, a) fitted by TD on rollouts, its policy learned
   by that Q; at test time the frozen Q trains new policies exactly as ours does (Algorithm 3).

Costs are minimised throughout (the paper's rewards are squared errors).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl.nets import MLP

# ----------------------------------------------------------------------------------------------
# 1. The analytic toy (Section 4.1, Appendix A)
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    s0: float = -6.0
    g: float = 0.0
    horizon: int = 2
    mb_alpha: float = 0.5          # inner step of the model-based loop and of the Meta-Critic (paper: 1/2)
    q_policy_lr: float = 0.1       # policy step of the Q-fitting loop (stable for < 1/3 near theta = 4)
    critic_solver: str = "newton"  # "newton": critic fitted to convergence each iteration (the appendix's
                                   # assumption); "damped": critic_steps Newton steps scaled by critic_lr
                                   # (a slow online critic, warm-started); "gd": plain gradient steps
    critic_steps: int = 3
    critic_lr: float = 1e-3
    iterations: int = 300


def toy_rollout(theta, s0, horizon):
    """s_t = s_0 + t theta, t = 0..T, under f(s, a) = s + a and pi(s) = theta."""
    return s0 + jnp.arange(horizon + 1, dtype=jnp.result_type(theta, float)) * theta


def toy_critic(phi, s, a):
    """L_critic(s, a) = Q(s, a) = (s + a)^2 phi_1."""
    return (s + a) ** 2 * phi


def toy_td_error(phi, states, theta, g):
    """The residual TD error delta of Eq. 22 (gamma = 1, both Q's differentiated as in Eq. 26).

    Rewards are r_t = 0 for t < T and r_T = (s_T - g)^2; the target of the last step is r_{T-1} + r_T.
    """
    horizon = states.shape[0] - 1
    q = toy_critic(phi, states[:-1], theta)                       # Q(s_t, a_t), t = 0..T-1
    r_T = (states[-1] - g) ** 2
    nxt = jnp.concatenate([q[1:], r_T[None]])                    # Q(s_{t+1}, a_{t+1}) or r_T
    return jnp.sum((q - nxt) ** 2) if horizon > 0 else 0.0


def toy_policy_objective(theta, phi, states):
    """sum_{t<T} Q_phi(s_t, pi_theta(s_t)) with the states as data (Eq. 31 / Eq. 36)."""
    return jnp.sum(toy_critic(phi, states[:-1], theta))


def toy_q_phi_closed_form(theta, s0, g):
    """Eq. 30: the supervised phi_1 for the rollout of theta (T = 2)."""
    s1 = s0 + theta
    a = theta
    r2 = (s0 + 2 * theta - g) ** 2
    return (s1 + a) ** 2 * r2 / (((s0 + a) ** 2 - (s1 + a) ** 2) ** 2 + (s1 + a) ** 4)


def toy_mb_phi_closed_form(theta, s0, g):
    """Eq. 46: the model-based loop's phi_1 at convergence of the outer loop (alpha = 1/2, T = 2)."""
    s1 = s0 + theta
    return (s0 + 2 * theta - g) / (2 * (s0 + s1 + 2 * theta))


def _fit_scalar(loss_fn, x0, solver, steps, lr):
    """Minimise a scalar quadratic loss in x: Newton steps (exact for a quadratic) or plain GD."""
    grad = jax.grad(loss_fn)
    hess = jax.grad(grad)

    def newton(x, _):
        gx, hx = grad(x), hess(x)
        ok = hx > 1e-30
        return jnp.where(ok, x - gx / jnp.where(ok, hx, 1.0), x), None

    def damped(x, _):
        gx, hx = grad(x), hess(x)
        ok = hx > 1e-30
        return jnp.where(ok, x - lr * gx / jnp.where(ok, hx, 1.0), x), None

    def gd(x, _):
        return x - lr * grad(x), None

    if solver not in ("newton", "damped", "gd"):
        raise ValueError(f"unknown critic solver {solver!r}; valid: newton, damped, gd")
    x, _ = jax.lax.scan({"newton": newton, "damped": damped, "gd": gd}[solver], x0, None, length=steps)
    return x


class ToyCarry(NamedTuple):
    theta: jax.Array
    phi: jax.Array
    beta: jax.Array


def toy_q_fitting_iteration(cfg: ToyConfig, carry: ToyCarry) -> ToyCarry:
    """Algorithm 1 on the toy: roll out, fit phi_1 on the TD error, one policy step on sum Q."""
    states = toy_rollout(carry.theta, cfg.s0, cfg.horizon)
    phi = _fit_scalar(lambda p: toy_td_error(p, states, carry.theta, cfg.g), carry.phi,
                      cfg.critic_solver, cfg.critic_steps, cfg.critic_lr)
    theta = carry.theta - cfg.q_policy_lr * jax.grad(toy_policy_objective)(carry.theta, phi, states)
    return ToyCarry(theta, phi, carry.beta)


def _inner_step(theta, phi, states, alpha):
    return theta - alpha * jax.grad(toy_policy_objective)(theta, phi, states)


def toy_meta_critic_iteration(cfg: ToyConfig, carry: ToyCarry) -> ToyCarry:
    """Appendix A.3: Q (phi_1) fitted by TD; the meta-critic beta_1 minimises the main critic's cost of
    the policy updated with both critics, l(beta) = sum_t Q_phi(s_t, theta_new(beta)); theta <- theta_new."""
    states = toy_rollout(carry.theta, cfg.s0, cfg.horizon)
    phi = _fit_scalar(lambda p: toy_td_error(p, states, carry.theta, cfg.g), carry.phi,
                      cfg.critic_solver, cfg.critic_steps, cfg.critic_lr)

    def theta_new(beta):
        return _inner_step(carry.theta, phi + beta, states, cfg.mb_alpha)

    def meta_loss(beta):
        return toy_policy_objective(theta_new(beta), phi, states)

    beta = _fit_scalar(meta_loss, carry.beta, cfg.critic_solver, cfg.critic_steps, cfg.critic_lr)
    return ToyCarry(theta_new(beta), phi, beta)


def toy_model_based_iteration(cfg: ToyConfig, carry: ToyCarry) -> ToyCarry:
    """Algorithm 2 on the toy: inner step theta_new(phi) on model-free data, task loss (s_T - g)^2 of
    theta_new unrolled through f, phi updated by the gradient through the inner step; theta <- theta_new."""
    states = toy_rollout(carry.theta, cfg.s0, cfg.horizon)

    def task_loss(phi):
        th = _inner_step(carry.theta, phi, states, cfg.mb_alpha)
        return (toy_rollout(th, cfg.s0, cfg.horizon)[-1] - cfg.g) ** 2

    phi = _fit_scalar(task_loss, carry.phi, cfg.critic_solver, cfg.critic_steps, cfg.critic_lr)
    return ToyCarry(_inner_step(carry.theta, phi, states, cfg.mb_alpha), phi, carry.beta)


TOY_LOOPS = {"q_fitting": toy_q_fitting_iteration, "meta_critic": toy_meta_critic_iteration,
             "model_based": toy_model_based_iteration}


def toy_run(cfg: ToyConfig, loop: str, theta0, phi0=0.0):
    """Run one loop from theta0 for cfg.iterations; returns the final carry and the theta trajectory."""
    it = TOY_LOOPS[loop]
    theta0 = jnp.asarray(theta0)
    carry = ToyCarry(theta0, jnp.zeros_like(theta0) + phi0, jnp.zeros_like(theta0))

    def body(c, _):
        c = it(cfg, c)
        return c, c.theta

    return jax.lax.scan(body, carry, None, length=cfg.iterations)


def toy_sweep(cfg: ToyConfig, loop: str, thetas0, phi0=0.0):
    """The loop from every initial theta at once (a vmapped axis)."""
    return jax.vmap(lambda t: toy_run(cfg, loop, t, phi0))(thetas0)


def toy_stationary_points(cfg: ToyConfig) -> dict:
    """Closed-form stationary points of the loops at (s0, g), T = 2.

    Q-fitting: theta = -(s0 + s1)/2 with s1 = s0 + theta (Eq. 35), i.e. theta = -2 s0 / 3, and the points
    where phi_1 of Eq. 30 vanishes (r_2 = 0: theta = (g - s0)/2; s_1 + a = 0: theta = -s0/2).
    Model-based: theta = (g - s0)/2 (Eq. 49), plus the degenerate point s0 + s1 + 2 theta = 0 where the
    inner gradient vanishes for every phi (theta = -2 s0 / 3, the same place as Eq. 35).
    """
    s0, g = cfg.s0, cfg.g
    return {"optimal": (g - s0) / 2, "eq35": -2 * s0 / 3, "phi_zero": -s0 / 2}


# ----------------------------------------------------------------------------------------------
# 2. Networks and the method on a differentiable model
# ----------------------------------------------------------------------------------------------


class GoalCritic(nn.Module):
    """L_critic(s, a, g): MLP (400, 400) with ELU; linear or softplus output. ``zero_out`` starts the
    output layer at zero, so the first inner steps leave the policy where it is (the critic then grows
    from a flat landscape instead of first undoing a random one)."""

    hidden: tuple = (400, 400)
    output: str = "linear"
    zero_out: bool = False

    @nn.compact
    def __call__(self, s, a, g):
        x = jnp.concatenate([s, a, g], -1)
        h = MLP(tuple(self.hidden), activation=nn.elu, activate_final=True)(x)
        init = nn.initializers.zeros if self.zero_out else nn.initializers.lecun_normal()
        y = nn.Dense(1, kernel_init=init, name="out")(h)[..., 0]
        return nn.softplus(y) if self.output == "softplus" else y


class GoalPolicy(nn.Module):
    """pi_theta(s, g) = max_action * tanh(MLP(64, 64, tanh)([s, g]))."""

    action_dim: int
    hidden: tuple = (64, 64)
    max_action: float = 1.0

    @nn.compact
    def __call__(self, s, g):
        x = jnp.concatenate([s, g], -1)
        x = MLP(tuple(self.hidden), activation=nn.tanh, activate_final=True)(x)
        return self.max_action * jnp.tanh(nn.Dense(self.action_dim)(x))


class Task(NamedTuple):
    """A differentiable model and its task. ``init(dyn) -> m`` and ``step(dyn, m, u) -> m`` act on the
    model's own state m (a pytree, e.g. a Brax pipeline state); ``obs(m)`` is the flat state x = [q, qd]
    the critic and policy see; goals live in joint-angle space (the first ``goal_dim`` entries of x).
    ``prepare(dyn)`` turns dynamics parameters into what init/step take (done once per rollout)."""

    init: Callable
    step: Callable
    obs: Callable
    state_dim: int
    action_dim: int
    goal_dim: int
    prepare: Callable = lambda dyn: dyn


@dataclasses.dataclass(frozen=True)
class MBCConfig:
    horizon: int = 50
    inner_lr: float = 1e-3          # alpha of the inner policy step (SGD, as Algorithm 2)
    inner_steps: int = 1
    grad_through_data: bool = False # with several inner steps, let the outer gradient see that later
                                    # rollouts depend on phi (through the model)
    critic_lr: float = 1e-3         # Adam on phi
    meta_clip: float = 10.0         # global-norm clip of the meta-gradient
    inner_clip: float = 0.0         # optional clip of the inner policy gradient (0: none)
    critic_hidden: tuple = (400, 400)
    critic_output: str = "linear"
    critic_zero_out: bool = False
    policy_hidden: tuple = (64, 64)
    n_policy_inits: int = 2         # fresh policies per goal and meta-iteration
    iterations: int = 300
    vel_cost: float = 0.0           # optional ||qd_T||^2 weight in the task loss


def make_nets(cfg: MBCConfig, task: Task):
    critic = GoalCritic(tuple(cfg.critic_hidden), cfg.critic_output, cfg.critic_zero_out)
    policy = GoalPolicy(task.action_dim, tuple(cfg.policy_hidden))
    return critic, policy


def rollout(task: Task, dyn, policy_apply, theta, goal, horizon):
    """Final state x_T, states x_0..x_{T-1} and actions of pi_theta through the model (differentiable)."""
    model = task.prepare(dyn)

    def body(m, _):
        x = task.obs(m)
        u = policy_apply(theta, x, goal)
        return task.step(model, m, u), (x, u)

    mT, (xs, us) = jax.lax.scan(body, task.init(model), None, length=horizon)
    return task.obs(mT), xs, us


def final_error(task: Task, xT, goal):
    """Mean squared error between the last state's joint angles and the goal."""
    return jnp.mean((xT[: task.goal_dim] - goal) ** 2)


def task_loss(task: Task, cfg: MBCConfig, xT, goal):
    """||q_T - g||^2 (+ vel_cost ||qd_T||^2)."""
    q, qd = xT[: task.goal_dim], xT[task.goal_dim:]
    return jnp.sum((q - goal) ** 2) + cfg.vel_cost * jnp.sum(qd ** 2)


def critic_policy_loss(critic_apply, policy_apply, phi, theta, xs, goal):
    """sum_t L_critic(s_t, pi_theta(s_t, g), g) on given states (model-free: no gradient to the states
    is taken by the caller's d/dtheta)."""
    us = jax.vmap(lambda x: policy_apply(theta, x, goal))(xs)
    gs = jnp.broadcast_to(goal, (xs.shape[0],) + goal.shape)
    return jnp.sum(critic_apply(phi, xs, us, gs))


def _clip_tree(tree, max_norm):
    if not max_norm:
        return tree
    norm = optax.tree.norm(tree)
    scale = jnp.minimum(1.0, max_norm / (norm + 1e-12))
    return jax.tree.map(lambda x: x * scale, tree)


def policy_update(cfg: MBCConfig, task: Task, critic_apply, policy_apply, phi, theta, goal, dyn,
                  lr=None, steps=None, stop_data=False):
    """Algorithm 3's loop (also the inner loop of Algorithm 2): roll pi_theta out through the system,
    take theta <- theta - lr grad_theta sum_t L_critic(s_t, pi_theta(s_t), g) with the states as data."""
    lr = cfg.inner_lr if lr is None else lr
    steps = cfg.inner_steps if steps is None else steps
    grad_fn = jax.grad(critic_policy_loss, argnums=3)

    def body(theta, _):
        _, xs, _ = rollout(task, dyn, policy_apply, theta, goal, cfg.horizon)
        if stop_data or not cfg.grad_through_data:
            xs = jax.lax.stop_gradient(xs)
        g = _clip_tree(grad_fn(critic_apply, policy_apply, phi, theta, xs, goal), cfg.inner_clip)
        return jax.tree.map(lambda p, d: p - lr * d, theta, g), None

    theta, _ = jax.lax.scan(body, theta, None, length=steps)
    return theta


class MetaState(struct.PyTreeNode):
    phi: Any
    opt_state: Any
    key: jax.Array
    step: jax.Array


def meta_init(cfg: MBCConfig, task: Task, key):
    critic, policy = make_nets(cfg, task)
    k1, k2 = jax.random.split(key)
    x = jnp.zeros(task.state_dim)
    phi = critic.init(k1, x, jnp.zeros(task.action_dim), jnp.zeros(task.goal_dim))
    opt = optax.adam(cfg.critic_lr)
    return MetaState(phi, opt.init(phi), k2, jnp.zeros((), jnp.int32))


def init_policies(cfg: MBCConfig, task: Task, key, n):
    _, policy = make_nets(cfg, task)
    x = jnp.zeros(task.state_dim)
    return jax.vmap(lambda k: policy.init(k, x, jnp.zeros(task.goal_dim)))(jax.random.split(key, n))


def meta_loss(cfg: MBCConfig, task: Task, phi, thetas, goals, dyn, inner_lr=None):
    """Mean over goals x policy inits of the task loss of the policy after the inner step(s).

    thetas: policy params with leading axes (n_goals, n_inits); goals: (n_goals, goal_dim)."""
    critic, policy = make_nets(cfg, task)

    def one(theta, goal):
        th = policy_update(cfg, task, critic.apply, policy.apply, phi, theta, goal, dyn, lr=inner_lr)
        xT, _, _ = rollout(task, dyn, policy.apply, th, goal, cfg.horizon)
        return task_loss(task, cfg, xT, goal), final_error(task, xT, goal)

    per_goal = jax.vmap(jax.vmap(one, in_axes=(0, None)), in_axes=(0, 0))
    losses, errs = per_goal(thetas, goals)
    return jnp.mean(losses), jnp.mean(errs)


def meta_step(cfg: MBCConfig, task: Task, state: MetaState, goals, dyn, inner_lr=None):
    """One iteration of Algorithm 2 over all training goals (their gradients averaged).

    ``inner_lr`` (default cfg.inner_lr) may be a traced scalar, so a sweep over it is a vmapped axis."""
    key, kp = jax.random.split(state.key)
    n_goals = goals.shape[0]
    thetas = init_policies(cfg, task, kp, n_goals * cfg.n_policy_inits)
    thetas = jax.tree.map(lambda x: x.reshape((n_goals, cfg.n_policy_inits) + x.shape[1:]), thetas)
    (loss, err), grads = jax.value_and_grad(meta_loss, argnums=2, has_aux=True)(
        cfg, task, state.phi, thetas, goals, dyn, inner_lr)
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    grads = _clip_tree(jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grads), cfg.meta_clip)
    opt = optax.adam(cfg.critic_lr)
    updates, opt_state = opt.update(grads, state.opt_state, state.phi)
    phi = optax.apply_updates(state.phi, updates)
    return MetaState(phi, opt_state, key, state.step + 1), {"task_loss": loss, "train_error": err,
                                                           "finite": finite}


def meta_train_chunk(cfg: MBCConfig, task: Task, state: MetaState, goals, dyn, length: int, inner_lr=None):
    """``length`` meta-iterations as one lax.scan; metrics stacked over iterations."""
    return jax.lax.scan(lambda s, _: meta_step(cfg, task, s, goals, dyn, inner_lr), state, None, length=length)


def learn_policy(cfg: MBCConfig, task: Task, phi, key, goal, dyn, steps=None, lr=None):
    """Algorithm 3: a new policy from scratch learned model-free with the frozen critic; returns the
    final-state error of the learned policy under ``dyn``."""
    critic, policy = make_nets(cfg, task)
    theta = init_policies(cfg, task, key, 1)
    theta = jax.tree.map(lambda x: x[0], theta)
    theta = policy_update(cfg, task, critic.apply, policy.apply, jax.lax.stop_gradient(phi), theta, goal,
                          dyn, lr=lr, steps=steps, stop_data=True)
    xT, _, _ = rollout(task, dyn, policy.apply, theta, goal, cfg.horizon)
    return final_error(task, xT, goal)


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

# ----------------------------------------------------------------------------------------------
# 4. Drivers shared by the reacher and 7-DoF experiments: seeds vmapped, chunks with a progress bar
# ----------------------------------------------------------------------------------------------


def train_ours(cfg: MBCConfig, task: Task, dyn, goals, keys, chunk: int, pbar=None):
    """Algorithm 2 for every seed in ``keys`` (a vmapped axis), cfg.iterations meta-iterations run as
    compiled chunks. Returns the final MetaStates (leading seed axis), the training-error curves
    (seeds, iterations), the compile+first-chunk time and the wall time per meta-iteration after it."""
    import time
    states = jax.vmap(lambda k: meta_init(cfg, task, k))(keys)
    run = jax.jit(jax.vmap(lambda s: meta_train_chunk(cfg, task, s, goals, dyn, chunk)))
    curves, t_first, t_rest, n_rest = [], 0.0, 0.0, 0
    for i in range(max(1, cfg.iterations // chunk)):
        t0 = time.time()
        states, m = run(states)
        jax.block_until_ready(m)
        dt = time.time() - t0
        if i == 0:
            t_first = dt
        else:
            t_rest, n_rest = t_rest + dt, n_rest + chunk
        curves.append(jax.device_get(m["train_error"]))
        if pbar is not None:
            pbar.update(chunk)
    import numpy as np
    curve = np.concatenate(curves, axis=1)
    per_iter = t_rest / n_rest if n_rest else t_first / chunk
    return states, curve, t_first, per_iter


def train_ddpg(cfg: DDPGConfig, task: Task, dyn, goals, keys, iterations: int, chunk: int, pbar=None,
               init_fn=None, chunk_fn=None):
    """The DDPG-style baseline for every seed (vmapped), in compiled chunks (``init_fn``/``chunk_fn``:
    another baseline's, e.g. the Meta-Critic's mc_init/mc_train_chunk)."""
    import time
    import numpy as np
    init_fn = init_fn or ddpg_init
    chunk_fn = chunk_fn or ddpg_train_chunk
    states = jax.vmap(lambda k: init_fn(cfg, task, k))(keys)
    run = jax.jit(jax.vmap(lambda s: chunk_fn(cfg, task, s, goals, dyn, chunk)))
    curves, t_rest, n_rest = [], 0.0, 0
    for i in range(max(1, iterations // chunk)):
        t0 = time.time()
        states, m = run(states)
        jax.block_until_ready(m)
        if i:
            t_rest, n_rest = t_rest + time.time() - t0, n_rest + chunk
        curves.append(jax.device_get(m["train_error"]))
        if pbar is not None:
            pbar.update(chunk)
    return states, np.concatenate(curves, axis=1), (t_rest / n_rest if n_rest else float("nan"))


def train_meta_critic(cfg: MetaCriticBaselineConfig, task: Task, dyn, goals, keys, iterations: int, chunk: int,
                      pbar=None):
    """The Meta-Critic baseline for every seed (vmapped), in compiled chunks."""
    return train_ddpg(cfg, task, dyn, goals, keys, iterations, chunk, pbar, init_fn=mc_init, chunk_fn=mc_train_chunk)


def evaluate_critics(learn_fn, critic_params, goals, dyns, key, n_inits: int):
    """Algorithm 3 for every (goal, dynamics) pair x seed x policy initialisation, one program.

    learn_fn(params, key, goal, dyn) -> final error; critic_params has a leading seed axis; goals is
    (P, goal_dim) and dyns a pytree with leading axis P. Returns errors of shape (P, seeds, n_inits)."""
    n_seeds = jax.tree.leaves(critic_params)[0].shape[0]
    keys = jax.random.split(key, n_seeds * n_inits).reshape(n_seeds, n_inits, -1)
    per_init = jax.vmap(learn_fn, in_axes=(None, 0, None, None))
    per_seed = jax.vmap(per_init, in_axes=(0, 0, None, None))
    per_pair = jax.vmap(per_seed, in_axes=(None, None, 0, 0))
    return jax.jit(per_pair)(critic_params, keys, goals, dyns)


# ----------------------------------------------------------------------------------------------
# 5. The point-mass illustration (Section 4.2, Fig. 1): s' = s + a in 2-D, pi_theta(s) = [theta_1, theta_2],
#    terminal cost ||s_T - g||^2, a neural L_critic meta-learned by Algorithm 2 and a supervised Q_sup
# ----------------------------------------------------------------------------------------------

PM_CRITIC_INPUTS = ("raw", "folded")


@dataclasses.dataclass(frozen=True)
class PointMassConfig:
    horizon: int = 2
    s0s: tuple = ((-1.0, -0.5), (-0.5, -1.0))   # the two initial states of training and test
    box: float = 3.0                            # theta in [-box, box]^2 (sampling and the plotted grid)
    hidden: tuple = (64, 64)                    # both critics: MLP, ELU, linear output
    critic_input: str = "raw"                   # L_critic(s, a, g) ("raw", the paper's) or L_critic(s - g, a)
    # Algorithm 2
    inner_lr: float = 0.1
    mb_batch: int = 32                          # fresh policies (theta ~ U(box)) per meta-iteration
    mb_iterations: int = 2000
    critic_lr: float = 1e-3
    # Algorithm 1 (Q_sup, goal folded into the state as s - g)
    q_policies: int = 16                        # policies learned by Q_sup at once (starts ~ U(box))
    q_iterations: int = 2000
    q_updates: int = 5                          # TD steps per iteration, on the iteration's rollouts
    q_lr: float = 1e-3
    q_policy_lr: float = 0.02                   # Adam on theta, descending sum_t Q_sup(s_t, theta)
    explore_std: float = 0.5
    tau: float = 0.05                           # target network

    def __post_init__(self):
        if self.critic_input not in PM_CRITIC_INPUTS:
            raise ValueError(f"unknown point-mass critic_input {self.critic_input!r}; valid: {', '.join(PM_CRITIC_INPUTS)}")


class PointCritic(nn.Module):
    """A point-mass critic: MLP(hidden, ELU) -> 1 of [s, a, g] ("raw") or [s - g, a] ("folded")."""

    hidden: tuple = (64, 64)
    inputs: str = "raw"

    @nn.compact
    def __call__(self, s, a, g):
        x = jnp.concatenate([s, a, g], -1) if self.inputs == "raw" else jnp.concatenate([s - g, a], -1)
        return MLP(tuple(self.hidden) + (1,), activation=nn.elu)(x)[..., 0]


def pm_rollout(cfg: PointMassConfig, theta):
    """States s_0..s_T of pi_theta = theta from every initial state: (n_s0, T + 1, 2)."""
    s0 = jnp.asarray(cfg.s0s, jnp.result_type(theta, float))
    t = jnp.arange(cfg.horizon + 1, dtype=s0.dtype)
    return s0[:, None, :] + t[None, :, None] * theta


def pm_optimal_theta(cfg: PointMassConfig, goal):
    """argmin_theta sum_i ||s0_i + T theta - g||^2 = (g - mean_i s0_i) / T."""
    return (jnp.asarray(goal) - jnp.mean(jnp.asarray(cfg.s0s), 0)) / cfg.horizon


def pm_q_true(cfg: PointMassConfig, s, a, g, theta_future, t):
    """Eq. 1 in closed form: the cost-to-go of taking a at s_t, then pi = theta_future: ||s + a +
    (T - t - 1) theta_future - g||^2."""
    steps_left = (cfg.horizon - 1 - jnp.asarray(t))[..., None]
    return jnp.sum((s + a + steps_left * theta_future - g) ** 2, -1)


def pm_objective(cfg: PointMassConfig, critic_fn, theta, g, states=None):
    """sum_i sum_{t<T} critic(s_t^i, theta, g, t) over the rollouts of pi_theta (``states``: given as data,
    e.g. stopped, for the model-free policy gradient; default: the rollout of theta itself)."""
    xs = pm_rollout(cfg, theta)[:, :-1] if states is None else states
    t = jnp.arange(cfg.horizon)
    a = jnp.broadcast_to(theta, xs.shape)
    gs = jnp.broadcast_to(g, xs.shape)
    return jnp.sum(critic_fn(xs, a, gs, jnp.broadcast_to(t[None, :], xs.shape[:2])))


def pm_landscape_and_field(cfg: PointMassConfig, critic_for, thetas, g):
    """Over a batch of thetas: the landscape sum_t critic(s_t, pi_theta) (states the rollout of theta) and
    the policy-gradient field d/dtheta with the rollout states as data (model-free, as Algorithm 3 uses
    it). ``critic_for(theta) -> critic_fn``: the critic evaluating pi_theta (Q_true depends on the policy
    it evaluates, held fixed in the gradient as in the deterministic policy gradient; learned critics do not)."""
    def one(theta):
        fn = critic_for(jax.lax.stop_gradient(theta))
        xs = jax.lax.stop_gradient(pm_rollout(cfg, theta)[:, :-1])
        return (pm_objective(cfg, fn, theta, g), jax.grad(lambda th: pm_objective(cfg, fn, th, g, xs))(theta))
    return jax.vmap(one)(thetas)


def pm_true_critic(cfg: PointMassConfig):
    """critic_for of Q_true: Eq. 1 for the policy being evaluated."""
    return lambda theta_future: (lambda s, a, g, t: pm_q_true(cfg, s, a, g, theta_future, t))


def pm_descend(cfg: PointMassConfig, critic_for, theta0, g, steps=300, lr=0.05):
    """Algorithm 3 on the point mass: Adam on theta along the model-free policy gradient of the critic
    (rollout states as data, re-rolled every step); returns the end point."""
    opt = optax.adam(lr)

    def body(c, _):
        th, s = c
        fn = critic_for(jax.lax.stop_gradient(th))
        xs = jax.lax.stop_gradient(pm_rollout(cfg, th)[:, :-1])
        gr = jax.grad(lambda x: pm_objective(cfg, fn, x, g, xs))(th)
        u, s = opt.update(gr, s, th)
        return (th + u, s), None

    (th, _), _ = jax.lax.scan(body, (theta0, opt.init(theta0)), None, length=steps)
    return th


def pm_meta_train(cfg: PointMassConfig, goal, key):
    """Algorithm 2 on the point mass: every meta-iteration, mb_batch fresh thetas ~ U([-box, box]^2), one
    inner step theta_new = theta - inner_lr grad sum_t L(s_t, theta, g) (states as data), task loss
    sum_i ||s0_i + T theta_new - g||^2 through the model, Adam on phi. Returns phi and the loss curve."""
    net = PointCritic(tuple(cfg.hidden), cfg.critic_input)
    k0, key = jax.random.split(key)
    z = jnp.zeros(2)
    phi = net.init(k0, z, z, z)
    opt = optax.adam(cfg.critic_lr)
    goal = jnp.asarray(goal)

    def task(phi, theta):
        fn = lambda s, a, g, t: net.apply(phi, s, a, g)
        xs = jax.lax.stop_gradient(pm_rollout(cfg, theta)[:, :-1])
        th = theta - cfg.inner_lr * jax.grad(lambda x: pm_objective(cfg, fn, x, goal, xs))(theta)
        return jnp.sum((pm_rollout(cfg, th)[:, -1] - goal) ** 2)

    def body(c, k):
        phi, s = c
        thetas = jax.random.uniform(k, (cfg.mb_batch, 2), minval=-cfg.box, maxval=cfg.box)
        loss, gr = jax.value_and_grad(lambda p: jnp.mean(jax.vmap(lambda th: task(p, th))(thetas)))(phi)
        u, s = opt.update(gr, s, phi)
        return (optax.apply_updates(phi, u), s), loss

    (phi, _), curve = jax.lax.scan(body, (phi, opt.init(phi)), jax.random.split(key, cfg.mb_iterations))
    return phi, curve


def pm_q_sup_train(cfg: PointMassConfig, goal, key):
    """Algorithm 1 on the point mass: q_policies policies (starts ~ U(box)) roll out from both initial
    states with N(0, explore_std) action noise; Q_sup(s - g, a) is TD-fitted (gamma 1, terminal cost
    ||s_T - g||^2, bootstrapped at the next state with the policy's own action, target network); each
    policy takes an Adam step on sum_t Q_sup(s_t, theta). Returns Q_sup's params, the policies' end points
    and the curve of their mean task loss."""
    net = PointCritic(tuple(cfg.hidden), "folded")
    kq, kth, key = jax.random.split(key, 3)
    z = jnp.zeros(2)
    q = net.init(kq, z, z, z)
    thetas = jax.random.uniform(kth, (cfg.q_policies, 2), minval=-cfg.box, maxval=cfg.box)
    q_opt, p_opt = optax.adam(cfg.q_lr), optax.adam(cfg.q_policy_lr)
    goal = jnp.asarray(goal)
    T = cfg.horizon
    s0 = jnp.asarray(cfg.s0s)

    def noisy(theta, k):
        a = theta + cfg.explore_std * jax.random.normal(k, (s0.shape[0], T, 2))
        xs = s0[:, None, :] + jnp.concatenate([jnp.zeros_like(a[:, :1]), jnp.cumsum(a, 1)], 1)
        return xs[:, :-1], a, xs[:, 1:]

    def body(c, k):
        q, q_t, qs, thetas, ps = c
        k1, _ = jax.random.split(k)
        xs, a, x2 = jax.vmap(noisy)(thetas, jax.random.split(k1, cfg.q_policies))   # (P, n_s0, T, 2)
        th_b = jnp.broadcast_to(thetas[:, None, None, :], a.shape)
        last = (jnp.arange(T) == T - 1)[None, None, :]
        cost = jnp.sum((x2 - goal) ** 2, -1)
        gs = jnp.broadcast_to(goal, xs.shape)

        def td(c2, _):
            q, q_t, qs = c2
            y = jnp.where(last, cost, net.apply(q_t, x2, th_b, gs))
            loss_fn = lambda p: jnp.mean((net.apply(p, xs, a, gs) - jax.lax.stop_gradient(y)) ** 2)
            gq = jax.grad(loss_fn)(q)
            u, qs = q_opt.update(gq, qs, q)
            q = optax.apply_updates(q, u)
            return (q, jax.tree.map(lambda t_, p: (1 - cfg.tau) * t_ + cfg.tau * p, q_t, q), qs), None

        (q, q_t, qs), _ = jax.lax.scan(td, (q, q_t, qs), None, length=cfg.q_updates)
        fn = lambda s, a_, g, t: net.apply(q, s, a_, g)

        def pg(theta):
            xs_ = jax.lax.stop_gradient(pm_rollout(cfg, theta)[:, :-1])
            return jax.grad(lambda th: pm_objective(cfg, fn, th, goal, xs_))(theta)

        u, ps = jax.vmap(p_opt.update)(jax.vmap(pg)(thetas), ps, thetas)
        thetas = thetas + u
        err = jnp.mean(jax.vmap(lambda th: jnp.sum((pm_rollout(cfg, th)[:, -1] - goal) ** 2))(thetas))
        return (q, q_t, qs, thetas, ps), err

    init = (q, q, q_opt.init(q), thetas, jax.vmap(p_opt.init)(thetas))
    (q, _, _, thetas, _), curve = jax.lax.scan(body, init, jax.random.split(key, cfg.q_iterations))
    return q, thetas, curve


def pm_learned_critics(cfg: PointMassConfig, phi, q):
    """critic_for's of the meta-learned L_critic and of Q_sup (neither depends on the evaluated policy)."""
    ln = PointCritic(tuple(cfg.hidden), cfg.critic_input)
    qn = PointCritic(tuple(cfg.hidden), "folded")
    return (lambda _th: (lambda s, a, g, t: ln.apply(phi, s, a, g)),
            lambda _th: (lambda s, a, g, t: qn.apply(q, s, a, g)))
