"""The method on any differentiable model: the goal-conditioned critic and policy, Algorithm 2
(meta-training the critic through the model) and Algorithm 3 (a new policy learned with the frozen critic,
and its evaluation over (goal, dynamics) pairs)."""
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
