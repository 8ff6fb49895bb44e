"""The on-policy baselines of MetaGenRL's Table 2: PPO and REINFORCE with a GAE baseline.

Both are one pure, jittable program per seed (vmap it over seeds): a Gaussian policy
``N(mu_phi(s), exp(log_std)^2)`` (an MLP mean and a state-independent log standard deviation) and a
separate value MLP ``V_psi(s)``; ``num_envs`` environments step ``rollout`` times with the current
policy, then the batch's advantages come from GAE (:func:`gae`, which
the off-policy REINFORCE baseline uses, on ``[env, time]`` arrays: the trace is cut where an episode
ends, a time-limit truncation bootstraps from ``V(s_reached)``, a termination does not, and the last
step of a rollout bootstraps from the state it reached), and the two networks are trained:

* PPO (Schulman et al., 2017): ``pi_epochs`` passes over the batch in shuffled minibatches (the shuffle:
  :func:`metarl.shuffle.permutation`, uniform as ``jax.random.permutation`` and cheaper on a CPU), each a
  step of Adam on the clipped surrogate ``-mean(min(r A, clip(r, 1-eps, 1+eps) A))`` with
  ``r = pi(a|s) / pi_old(a|s)`` and advantages standardised per minibatch; the value network takes
  a step on the same minibatch with ``mean((V(s) - (A + V_old(s)))^2)``.
* REINFORCE with a GAE baseline (the "vanilla policy gradient" of Spinning Up, which the paper ran):
  one full-batch Adam step on ``-mean(log pi(a|s) A)`` (standardised A) per batch, then ``vf_epochs``
  full-batch Adam steps of the value network on the same regression.

Because the advantages are fixed before the networks are trained and the networks share nothing,
PPO's steps of the two networks on shared minibatches are the same as one step of the summed loss
(with each network's own Adam), and the same as two separate loops with the same shuffles.

Defaults (:data:`PRESETS`): PPO uses the MuJoCo hyperparameters of Schulman et al. (2017, Table 3):
Adam 3e-4, 10 epochs, minibatches of 64, gamma 0.99, GAE lambda 0.95, clip 0.2, horizon 2048, 64-64
tanh networks, no entropy bonus. REINFORCE uses Spinning Up's VPG defaults: policy Adam 3e-4 (one
step per batch), value Adam 1e-3 for 80 steps per batch, gamma 0.99, lambda 0.97, 4000 steps per
batch, 64-64 tanh networks. Both start from log_std = -0.5 (Spinning Up).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl import envs
from metarl.nets import MLP
from metarl.rollout import evaluate_episodes
from metarl.runs import vmap_runs
from metarl.shuffle import permutation

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


ALGOS = ("ppo", "reinforce")


@dataclass(frozen=True)
class OnPolicyConfig:
    algo: str = "ppo"  # one of ALGOS
    total_steps: int = 1_000_000  # environment steps per seed
    num_envs: int = 1
    rollout: int = 2048  # steps per environment per update (batch = num_envs * rollout)
    eval_every: int = 10_240  # environment steps between evaluations (a multiple of the batch)
    eval_episodes: int = 5
    max_episode_steps: int | None = None
    hidden: Sequence[int] = (64, 64)
    init_log_std: float = -0.5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2  # PPO only
    pi_lr: float = 3e-4
    vf_lr: float = 3e-4
    pi_epochs: int = 10  # passes over the batch per update
    vf_epochs: int = 10
    minibatch_size: int | None = 64  # None: full-batch steps

    @property
    def batch(self) -> int:
        return self.num_envs * self.rollout

    @property
    def num_minibatches(self) -> int:
        return 1 if self.minibatch_size is None else self.batch // self.minibatch_size

    @property
    def updates_per_eval(self) -> int:
        return self.eval_every // self.batch

    @property
    def num_evals(self) -> int:
        return self.total_steps // self.eval_every

    def validate(self):
        if self.algo not in ALGOS:
            raise ValueError(f"unknown on-policy algo {self.algo!r}; valid choices: {', '.join(ALGOS)}")
        if self.eval_every % self.batch:
            raise ValueError(f"eval_every {self.eval_every} must be a multiple of the batch num_envs * rollout = "
                             f"{self.batch}")
        if self.total_steps % self.eval_every or self.total_steps <= 0:
            raise ValueError(f"total_steps {self.total_steps} must be a positive multiple of eval_every "
                             f"{self.eval_every}")
        if self.minibatch_size is not None and not 1 <= self.minibatch_size <= self.batch:
            raise ValueError(f"minibatch_size {self.minibatch_size} must be in [1, batch = {self.batch}] or None")
        return self


PRESETS = {
    "ppo": dict(algo="ppo", rollout=2048, gae_lambda=0.95, clip=0.2, pi_lr=3e-4, vf_lr=3e-4, pi_epochs=10,
                vf_epochs=10, minibatch_size=64),
    "reinforce": dict(algo="reinforce", rollout=4000, gae_lambda=0.97, pi_lr=3e-4, vf_lr=1e-3, pi_epochs=1,
                      vf_epochs=80, minibatch_size=None),
}


def make_config(algo: str, **overrides) -> OnPolicyConfig:
    """The algorithm's preset (:data:`PRESETS`) with ``overrides``; unknown names are an error."""
    if algo not in PRESETS:
        raise ValueError(f"unknown on-policy algo {algo!r}; valid choices: {', '.join(PRESETS)}")
    names = {f.name for f in dataclasses.fields(OnPolicyConfig)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValueError(f"unknown on-policy config field(s) {bad}; valid: {', '.join(sorted(names))}")
    return OnPolicyConfig(**{**PRESETS[algo], **overrides}).validate()


# ----------------------------------------------------------------------------------------------------
# Networks and losses
# ----------------------------------------------------------------------------------------------------
class GaussianPolicy(nn.Module):
    action_dim: int
    hidden: Sequence[int] = (64, 64)
    init_log_std: float = -0.5

    @nn.compact
    def __call__(self, obs):
        mean = MLP(tuple(self.hidden) + (self.action_dim,), activation=nn.tanh, name="mean")(obs)
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class ValueNet(nn.Module):
    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, obs):
        return MLP(tuple(self.hidden) + (1,), activation=nn.tanh, name="v")(obs)[..., 0]


def gaussian_logp(mean, log_std, action):
    """log N(action; mean, diag(exp(log_std)^2)), summed over the last axis."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * jnp.square(z) - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def standardise(x):
    return (x - jnp.mean(x)) / (jnp.std(x) + 1e-8)


def ppo_policy_loss(logp, logp_old, adv, clip):
    """Clipped surrogate, to be minimised: -mean(min(r A, clip(r, 1 - clip, 1 + clip) A))."""
    ratio = jnp.exp(logp - logp_old)
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * adv)
    return -jnp.mean(surrogate), dict(approx_kl=jnp.mean(logp_old - logp),
                                      clip_frac=jnp.mean((jnp.abs(ratio - 1.0) > clip).astype(jnp.float32)))


def reinforce_policy_loss(logp, adv):
    return -jnp.mean(logp * adv), {}


def rollout_advantages(reward, v, v_reached, terminated, done, gamma, lam):
    """GAE over a rollout, time-major ``[T, N]`` arrays. ``v_reached[t] = V(state reached at t)``
    (the true next state, also at an auto-reset); bootstrapping stops at termination only, the trace is
    cut at every episode end, and the last step bootstraps from the state it reached.
    Returns (advantages, value targets A + V), both ``[T, N]``."""
    tr = lambda x: jnp.swapaxes(x, 0, 1)
    v_next = v_reached * (1.0 - terminated.astype(v.dtype))
    inputs = dict(reward=tr(reward), v=tr(v), v_next=tr(v_next), done=tr(done.astype(v.dtype)),
                  mask=jnp.ones(tr(reward).shape, bool))
    adv = tr(gae(inputs, gamma, lam))
    return adv, adv + v


def minibatch_indices(config: OnPolicyConfig, key) -> jax.Array:
    """One epoch's shuffle of the flat batch into minibatches: indices ``[num_minibatches, size]`` (size: the
    minibatch size, or the whole batch when it is None), a batch that does not divide leaving its last
    samples out. PPO's fits and PPO-LIRPG's (which shares PPO's minibatches) both draw them here."""
    m = config.num_minibatches
    size = config.batch if config.minibatch_size is None else config.minibatch_size
    return permutation(key, config.batch)[: m * size].reshape(m, size)


# ----------------------------------------------------------------------------------------------------
# The training program
# ----------------------------------------------------------------------------------------------------
@struct.dataclass
class OnPolicyState:
    pi: Any
    vf: Any
    pi_opt: Any
    vf_opt: Any
    env_state: Any
    obs: jax.Array  # [num_envs, ...]
    key: jax.Array
    env_steps: jax.Array


def make_onpolicy(config: OnPolicyConfig, env):
    """(init(key) -> state, run_segment(state) -> (state, metrics), functions) for one seed; vmap over seeds.

    ``run_segment`` runs ``eval_every / batch`` updates, then evaluates the deterministic policy (its mean
    action) over ``eval_episodes`` fresh episodes. ``functions`` exposes the pieces for tests."""
    config.validate()
    spec = env.spec
    if spec.discrete:
        raise ValueError(f"the on-policy baselines need a continuous action space; {spec.name} is discrete")
    policy = GaussianPolicy(spec.action_dim, tuple(config.hidden), config.init_log_std)
    value = ValueNet(tuple(config.hidden))
    pi_tx, vf_tx = optax.adam(config.pi_lr), optax.adam(config.vf_lr)
    n, T = config.num_envs, config.rollout

    def init(key):
        kp, kv, ke, kr = jax.random.split(key, 4)
        obs0 = jnp.zeros((1,) + tuple(spec.obs_shape))
        pi, vf = policy.init(kp, obs0), value.init(kv, obs0)
        env_state, ts = jax.vmap(env.reset)(jax.random.split(ke, n))
        return OnPolicyState(pi, vf, pi_tx.init(pi), vf_tx.init(vf), env_state, ts.obs, kr, jnp.zeros((), jnp.int32))

    def collect(state: OnPolicyState):
        """``rollout`` steps of the ``num_envs`` environments with the current policy. The action noise and the
        environments' keys of the whole rollout are drawn before the loop (two draws instead of three per
        step; the loop is bound by its per-step overhead on a CPU), and log pi(a|s) is computed over the
        batch after it, from each step's mean and log std."""
        def step(carry, x):
            env_state, obs = carry
            noise, keys = x
            mean, log_std = policy.apply(state.pi, obs)
            a = mean + jnp.exp(log_std) * noise
            env_state, ts = jax.vmap(env.step)(env_state, a, keys)
            out = dict(obs=obs, action=a, mean=mean, log_std=log_std, reward=ts.reward, next_obs=ts.next_obs,
                       terminated=ts.terminated, done=ts.done, episode_return=ts.episode_return)
            return (env_state, ts.obs), out

        key, ka, ke = jax.random.split(state.key, 3)
        xs = (jax.random.normal(ka, (T, n, spec.action_dim)), jax.random.split(ke, (T, n)))
        (env_state, obs), traj = jax.lax.scan(step, (state.env_state, state.obs), xs)
        traj["logp"] = gaussian_logp(traj.pop("mean"), traj.pop("log_std"), traj["action"])
        return state.replace(env_state=env_state, obs=obs, key=key, env_steps=state.env_steps + n * T), traj

    def pi_loss(pi, mb):
        mean, log_std = policy.apply(pi, mb["obs"])
        logp = gaussian_logp(mean, log_std, mb["action"])
        adv = standardise(mb["adv"])
        if config.algo == "ppo":
            return ppo_policy_loss(logp, mb["logp"], adv, config.clip)
        return reinforce_policy_loss(logp, adv)

    def vf_loss(vf, mb):
        return jnp.mean(jnp.square(value.apply(vf, mb["obs"]) - mb["target"])), {}

    def minibatches(data, k):
        """One epoch's shuffled minibatches: every array of ``data`` gathered once, [m, size, ...]."""
        idx = minibatch_indices(config, k)
        return jax.tree.map(lambda x: x[idx], data)

    def adam_step(params, opt_state, tx, loss_fn, mb):
        (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(params, mb)
        upd, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, upd), opt_state, dict(loss=loss, **aux)

    def fit(params, opt_state, tx, loss_fn, data, epochs, key):
        """``epochs`` passes of Adam over ``data`` (flat [batch, ...]) in shuffled minibatches."""
        def epoch(carry, k):
            def mb_step(carry, mb):
                params, opt_state, met = adam_step(*carry, tx, loss_fn, mb)
                return (params, opt_state), met

            return jax.lax.scan(mb_step, carry, minibatches(data, k))

        (params, opt_state), metrics = jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, epochs))
        return params, opt_state, jax.tree.map(jnp.mean, metrics)

    def fit_both(state: OnPolicyState, data, key):
        """PPO's fits: each epoch, one shuffle of the batch into minibatches, and on each minibatch one Adam
        step of the policy and one of the value net (PPO's one loss over a minibatch, Schulman et al. 2017,
        with the two networks apart). The two steps share no value, so this is the same arithmetic as
        ``fit`` of the policy, then ``fit`` of the value net, both with ``key``, in half the loop steps and
        one gather per minibatch (a loop step on 64 samples costs more in overhead than in arithmetic)."""
        def epoch(carry, k):
            def mb_step(carry, mb):
                pi, pi_opt, vf, vf_opt = carry
                pi, pi_opt, mp = adam_step(pi, pi_opt, pi_tx, pi_loss, mb)
                vf, vf_opt, mv = adam_step(vf, vf_opt, vf_tx, vf_loss, mb)
                return (pi, pi_opt, vf, vf_opt), (mp, mv)

            return jax.lax.scan(mb_step, carry, minibatches(data, k))

        (pi, pi_opt, vf, vf_opt), (mp, mv) = jax.lax.scan(epoch, (state.pi, state.pi_opt, state.vf, state.vf_opt),
                                                           jax.random.split(key, config.pi_epochs))
        return pi, pi_opt, jax.tree.map(jnp.mean, mp), vf, vf_opt, jax.tree.map(jnp.mean, mv)

    def update(state: OnPolicyState, _):
        state, traj = collect(state)
        v = value.apply(state.vf, traj["obs"])
        v_reached = value.apply(state.vf, traj["next_obs"])
        adv, target = rollout_advantages(traj["reward"], v, v_reached, traj["terminated"], traj["done"],
                                         config.gamma, config.gae_lambda)
        flat = lambda x: x.reshape((-1,) + x.shape[2:])
        data = jax.tree.map(flat, dict(obs=traj["obs"], action=traj["action"], logp=traj["logp"], adv=adv,
                                       target=target))
        key, kp, kv = jax.random.split(state.key, 3)
        if config.pi_epochs == config.vf_epochs:  # PPO: one loop steps both networks on the same minibatches
            pi, pi_opt, mp, vf, vf_opt, mv = fit_both(state, data, kp)
        else:  # REINFORCE: one policy step, 80 value steps
            pi, pi_opt, mp = fit(state.pi, state.pi_opt, pi_tx, pi_loss, data, config.pi_epochs, kp)
            vf, vf_opt, mv = fit(state.vf, state.vf_opt, vf_tx, vf_loss, data, config.vf_epochs, kv)
        done = traj["done"].astype(jnp.float32)
        metrics = dict(pi_loss=mp.pop("loss"), vf_loss=mv["loss"], **mp,
                       ret_sum=jnp.sum(traj["episode_return"] * done), ret_n=jnp.sum(done))
        return state.replace(pi=pi, vf=vf, pi_opt=pi_opt, vf_opt=vf_opt, key=key), metrics

    def evaluate(pi, key):  # the deterministic policy: the Gaussian's mean
        return evaluate_episodes(env, lambda obs, k: policy.apply(pi, obs)[0], key, config.eval_episodes)

    def run_segment(state: OnPolicyState):
        state, m = jax.lax.scan(update, state, None, length=config.updates_per_eval)
        key, ke = jax.random.split(state.key)
        state = state.replace(key=key)
        out = dict(eval_return=evaluate(state.pi, ke), env_steps=state.env_steps,
                   train_return=jnp.sum(m["ret_sum"]) / jnp.maximum(jnp.sum(m["ret_n"]), 1.0),
                   **{k: jnp.mean(v) for k, v in m.items() if k not in ("ret_sum", "ret_n")})
        return state, out

    fns = dict(policy=policy, value=value, collect=collect, update=update, evaluate=evaluate, fit=fit,
               fit_both=fit_both, pi_loss=pi_loss, vf_loss=vf_loss)
    return init, run_segment, fns


def train(config: OnPolicyConfig, env_name: str, key, seeds: int, progress=None):
    """Train ``seeds`` independent runs (one vmapped program) on ``env_name``. Returns numpy arrays
    {eval_return [seeds, evals], train_return, env_steps, ...}; ``progress(i)`` is called per evaluation."""
    import numpy as np

    env = envs.make(env_name, max_episode_steps=config.max_episode_steps)
    init, run_segment, _ = make_onpolicy(config, env)
    state = jax.jit(vmap_runs(init))(jax.random.split(key, seeds))
    seg = jax.jit(vmap_runs(run_segment))
    hist = []
    for i in range(config.num_evals):
        state, m = seg(state)
        hist.append(jax.tree.map(np.asarray, m))
        if progress:
            progress(i)
    return {k: np.stack([h[k] for h in hist], axis=1) for k in hist[0]}
