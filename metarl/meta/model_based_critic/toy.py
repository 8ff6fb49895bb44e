"""The analytic toy of Section 4.1 / Appendix A: f(s, a) = s + a, pi_theta(s) = theta, terminal cost
(s_T - g)^2, critic (s + a)^2 phi_1, and its three learning loops (Q-fitting, the Meta-Critic, Algorithm 2)."""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp


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
