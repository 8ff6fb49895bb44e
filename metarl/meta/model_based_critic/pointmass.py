"""The point-mass illustration (Section 4.2, Fig. 1): s' = s + a in 2-D, pi_theta(s) = [theta_1, theta_2],
terminal cost ||s_T - g||^2, a neural L_critic meta-learned by Algorithm 2 and a supervised Q_sup."""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metarl.nets import MLP


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
