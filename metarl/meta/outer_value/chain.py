"""The Discounting Chain (bsuite; gymnax DiscountingChain-bsuite) as a :class:`Problem`: rollouts, the
analytic value function (or tabular critics learned by TD), the inner, outer and matching losses."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metarl.agents import a2c
from metarl.meta.outer_value.config import ChainConfig
from metarl.meta.outer_value.core import Problem, sg


# ================================================================================================
# Discounting Chain (bsuite; gymnax DiscountingChain-bsuite) with the analytic value function
# ================================================================================================
def chain_env_constants(optimal_arm: int = 3):
    """Reward timesteps and reward vector read from gymnax's DiscountingChain.

    gymnax 1.0.1 puts the 1.1 reward at index ``mapping_seed`` of the rewards array; the paper (and the
    authors' ``mapping_seed=3``) makes arm 3 (reward at t = 30) the 1.1 arm, so we pass
    ``mapping_seed=optimal_arm`` and read the vector back from the environment's reset state.
    """
    from metarl.envs import make

    env = make("gymnax/DiscountingChain-bsuite", mapping_seed=optimal_arm)
    inner, _ = env.raw.reset(jax.random.PRNGKey(0))
    timesteps = jnp.asarray(env.raw.params.reward_timestep, jnp.int32)
    return timesteps, jnp.asarray(inner.rewards, jnp.float32), env


def chain_policy_logits(params, obs):
    """The paper's linear softmax policy on the observation [context, t / 100]."""
    return obs @ params["w"] + params["b"]


def chain_init_params(key, num_actions: int = 5):
    w = jax.random.normal(key, (2, num_actions)) / jnp.sqrt(2.0)  # LeCun normal, zero bias
    return {"w": w, "b": jnp.zeros((num_actions,))}


def sample_categorical(key, logits):
    """Inverse-CDF sampling (one uniform per draw) from categorical logits ``[..., A]``."""
    u = jax.random.uniform(key, logits.shape[:-1])
    cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)
    return jnp.sum(u[..., None] > cdf[..., :-1], axis=-1).astype(jnp.int32)


def chain_true_value(obs, probs0, gamma, timesteps, rewards, horizon: int = 100, authors_first_step=False):
    """V^{pi, gamma}(s) of the Discounting Chain, exact.

    ``obs[..., 0]`` is the context (the first action, -1 before it), ``obs[..., 1] = t / horizon``.
    In gymnax arm ``a`` pays ``rewards[a]`` on the transition into time ``timesteps[a]``; from time
    ``t >= 1`` that is ``timesteps[a] - 1 - t`` discounts ahead (0 once it has been paid). At ``t = 0``
    the value averages the arms under the first-step action probabilities ``probs0``:
    ``sum_a probs0[a] * gamma^(timesteps[a] - 1) * rewards[a]``.
    """
    gamma = jnp.asarray(gamma, jnp.result_type(float))
    t = jnp.round(obs[..., 1] * horizon).astype(jnp.int32)
    ctx = obs[..., 0].astype(jnp.int32)
    first = ctx < 0
    c = jnp.where(first, 0, ctx)
    k = timesteps[c] - 1 - t
    later = jnp.where(k >= 0, rewards[c] * gamma ** jnp.maximum(k, 0).astype(gamma.dtype), 0.0)
    arm_values = rewards * gamma ** (timesteps - (0 if authors_first_step else 1)).astype(gamma.dtype)
    v0 = jnp.sum(probs0 * arm_values, axis=-1)
    return jnp.where(first, v0, later)


class ChainBatch(NamedTuple):
    """A batch of whole episodes, per sample (the reference form)."""

    obs: jax.Array  # [T, B, 2]
    actions: jax.Array  # [T, B]
    rewards: jax.Array  # [T, B]
    next_obs: jax.Array  # [T, B, 2]
    probs0: jax.Array  # [A] first-step action probabilities of the behaviour policy


class ChainCounts(NamedTuple):
    """The same batch as sufficient statistics: only the first action moves the chain, so a sample
    is fixed by (t, context, action) and the losses are sums over a [T, A, A] table of counts."""

    n0: jax.Array  # [A] episodes per first action (= per context)
    n: jax.Array  # [T - 1, A, A] counts of action a at time t >= 1 in episodes of context c: [t-1, c, a]
    probs0: jax.Array  # [A]


def chain_observations(first_action, horizon: int = 100):
    """Observations [T, B, 2] and next observations of episodes with the given first actions [B]."""
    b = first_action.shape[0]
    t = jnp.arange(horizon + 1, dtype=jnp.float32)[:, None]
    ctx = jnp.where(t == 0, -1.0, first_action[None, :].astype(jnp.float32))
    all_obs = jnp.stack([ctx, jnp.broadcast_to(t / horizon, (horizon + 1, b))], axis=-1)
    return all_obs[:-1], all_obs[1:]


def _table_obs(num_actions: int, horizon: int):
    """Observations [T - 1, A, 2] for t = 1..T-1 and every context, and their successors."""
    t = jnp.arange(1, horizon + 1, dtype=jnp.float32)[:, None]
    c = jnp.arange(num_actions, dtype=jnp.float32)[None, :]
    grid = jnp.stack(jnp.broadcast_arrays(c, t / horizon), axis=-1)  # [T, A, 2] for t = 1..T
    return grid[:-1], grid[1:]


def chain_rollout(params, key, batch_size: int, horizon: int = 100, num_actions: int = 5,
                  sample_later: bool = True):
    """A batch of whole episodes under the linear policy, as counts (:class:`ChainCounts`).

    The later actions (t >= 1) do not move the chain but are sampled (their log-probabilities enter
    the policy-gradient losses). One key per time step, shared by the batch, in the same order as
    :func:`chain_rollout_env`, which steps the gymnax environment: the test suite checks that both
    draw the same actions.

    ``sample_later=False`` puts the expected counts ``n_c * pi(a | c, t)`` in place of the sampled
    ones for t >= 1. Only for losses whose advantage at t >= 1 is zero: with the exact value at the
    same discount as the TD target (the inner loss; the outer loss with the outer critic),
    ``r + gamma V(s') - V(s) = 0`` after the first step, so those counts multiply zero and the loss
    and its gradients are unchanged; the entropy term only uses ``n_c``. This skips the sampling.
    """
    keys = jax.random.split(key, horizon)
    logits0 = chain_policy_logits(params, jnp.array([-1.0, 0.0]))
    a0 = sample_categorical(keys[0], jnp.broadcast_to(logits0, (batch_size, num_actions)))
    ctx = jax.nn.one_hot(a0, num_actions)
    n0 = jnp.sum(ctx, axis=0)
    obs_tab, _ = _table_obs(num_actions, horizon)
    probs = jax.nn.softmax(chain_policy_logits(params, obs_tab), axis=-1)  # [T-1, C, A]
    if not sample_later:
        return ChainCounts(n0, sg(n0[None, :, None] * probs), jax.nn.softmax(logits0))
    cdf = jnp.cumsum(probs, axis=-1)
    u = jax.vmap(lambda k: jax.random.uniform(k, (batch_size,)))(keys[1:])  # [T-1, B]
    cdf_b = jnp.einsum("bc,tca->tba", ctx, cdf[..., :-1])  # each episode's context row
    a = jnp.sum(u[..., None] > cdf_b, axis=-1)
    n = jnp.einsum("tba,bc->tca", jax.nn.one_hot(a, num_actions), ctx)
    return ChainCounts(n0, n, jax.nn.softmax(logits0))


def chain_rollout_env(params, key, env, batch_size: int, horizon: int = 100):
    """The same episodes by stepping the wrapped gymnax environment, per sample (:class:`ChainBatch`)."""
    keys = jax.random.split(key, horizon)
    k_reset, k_env = jax.random.split(jax.random.fold_in(key, 1))
    state, ts = jax.vmap(env.reset)(jax.random.split(k_reset, batch_size))

    def body(carry, xs):
        state, obs = carry
        k, t = xs
        a = sample_categorical(k, chain_policy_logits(params, obs))
        state, ts = jax.vmap(env.step)(state, a, jax.random.split(jax.random.fold_in(k_env, t), batch_size))
        return (state, ts.obs), (obs, a, ts.reward, ts.next_obs)

    _, (obs, actions, r, next_obs) = jax.lax.scan(body, (state, ts.obs), (keys, jnp.arange(horizon)))
    probs0 = jax.nn.softmax(chain_policy_logits(params, jnp.array([-1.0, 0.0])))
    return ChainBatch(obs, actions, r, next_obs, probs0)


def chain_counts(batch: ChainBatch, num_actions: int = 5) -> ChainCounts:
    """Tabulate a per-sample batch into counts."""
    a0 = batch.actions[0]
    ctx = jax.nn.one_hot(a0, num_actions)
    n = jnp.einsum("tba,bc->tca", jax.nn.one_hot(batch.actions[1:], num_actions), ctx)
    return ChainCounts(jnp.sum(ctx, axis=0), n, batch.probs0)


class ChainValues(NamedTuple):
    """A value function of the chain as a table: ``v0 = V(s_0)``; ``v[t - 1, c] = V(context c, t)`` for
    t = 1..T-1 (the state at t = T is terminal, value 0)."""

    v0: jax.Array
    v: jax.Array  # [T - 1, A]


def chain_analytic_values(probs0, gamma, timesteps, rewards, horizon: int = 100, authors_first_step=False):
    """:func:`chain_true_value` on the whole table."""
    obs_tab, _ = _table_obs(rewards.shape[0], horizon)
    v = lambda o: chain_true_value(o, probs0, gamma, timesteps, rewards, horizon, authors_first_step)
    return ChainValues(v(jnp.array([-1.0, 0.0])), v(obs_tab))


def chain_init_critic(num_actions: int = 5, horizon: int = 100):
    """A tabular critic, zero-initialised."""
    return {"v0": jnp.zeros(()), "v": jnp.zeros((horizon - 1, num_actions))}


def chain_table_value(obs, critic, horizon: int = 100):
    """Look a tabular critic up at per-sample observations ``[..., 2]`` (0 at the terminal t = T)."""
    t = jnp.round(obs[..., 1] * horizon).astype(jnp.int32)
    ctx = obs[..., 0].astype(jnp.int32)
    v = critic["v"][jnp.clip(t - 1, 0, horizon - 2), jnp.clip(ctx, 0)]
    return jnp.where(ctx < 0, critic["v0"], jnp.where(t >= horizon, 0.0, v))


def chain_td_targets(values: ChainValues, gamma, lam, timesteps, rewards, horizon: int = 100):
    """TD(lambda) targets of every (t, context) entry, and of step 0 per first action.

    The chain is deterministic after the first action, so a whole episode is fixed by its context and
    the targets of :func:`metarl.agents.a2c.lambda_returns` can be computed on the table: rows
    t = 1..T-1 bootstrap from the next row (0 after the last), step 0 from the row t = 1 of the
    context the action leads to. Returns ``(g0 [A], g [T - 1, A])``.
    """
    na = rewards.shape[0]
    dt = jnp.result_type(values.v.dtype, jnp.asarray(gamma).dtype, jnp.asarray(lam).dtype, rewards.dtype)
    rewards = rewards.astype(dt)
    tt = jnp.arange(1, horizon)[:, None]
    r = jnp.where(tt + 1 == timesteps[None, :], rewards[None, :], 0.0)  # [T-1, C] reward of t -> t+1
    v_next = jnp.concatenate([values.v[1:], jnp.zeros((1, na), dt)], axis=0).astype(dt)
    gamma = jnp.asarray(gamma, dt)
    g = a2c.lambda_returns(r, jnp.broadcast_to(gamma, r.shape), v_next, lam)
    r0 = jnp.where(timesteps == 1, rewards, 0.0)
    lam = jnp.asarray(lam, dt)
    g0 = r0 + gamma * ((1.0 - lam) * values.v[0] + lam * g[0])
    return g0, g


def chain_loss(params, counts: ChainCounts, values: ChainValues, gamma, lam, entropy_cost, timesteps, rewards,
               horizon=100, normalize_advantages=False):
    """Policy gradient with the TD(lambda) advantage ``G_t - V(s_t)`` and an entropy bonus, from counts.

    ``values`` are held constant (stop-gradient) while ``gamma`` and ``lam`` stay differentiable; the
    loss is the mean over the batch's samples, as :func:`metarl.agents.a2c.a2c_loss` on the same
    episodes (tested).
    """
    na = rewards.shape[0]
    batch = jnp.sum(counts.n0)
    total = batch * horizon
    values = jax.tree.map(sg, values)
    g0, g = chain_td_targets(values, gamma, lam, timesteps, rewards, horizon)
    adv0, adv = g0 - values.v0, g - values.v  # [A], [T-1, C]
    o0 = jnp.array([-1.0, 0.0])
    logits0 = chain_policy_logits(params, o0)
    obs_tab, _ = _table_obs(na, horizon)  # [T-1, C, 2]
    logits = chain_policy_logits(params, obs_tab)  # [T-1, C, A]
    n_ct = jnp.sum(counts.n, axis=-1)  # [T-1, C] samples per (t, c)
    if normalize_advantages:
        mean = (jnp.sum(counts.n0 * adv0) + jnp.sum(n_ct * adv)) / total
        sq = (jnp.sum(counts.n0 * adv0 ** 2) + jnp.sum(n_ct * adv ** 2)) / total
        scale = jax.lax.rsqrt(sq - mean ** 2 + 1e-5)
        adv0 = (adv0 - sg(mean)) * sg(scale)
        adv = (adv - sg(mean)) * sg(scale)
    pg0 = jnp.sum(counts.n0 * jax.nn.log_softmax(logits0) * adv0)
    pg = jnp.sum(counts.n * jax.nn.log_softmax(logits, axis=-1) * adv[..., None])
    pg_loss = -(pg0 + pg) / total
    ent = (batch * a2c.entropy(logits0) + jnp.sum(n_ct * a2c.entropy(logits))) / total
    loss = pg_loss - entropy_cost * ent
    adv_sum = jnp.sum(counts.n0 * adv0) + jnp.sum(n_ct * adv)
    metrics = {"loss": loss, "pg_loss": pg_loss, "td_loss": jnp.zeros(()), "entropy": ent,
               "advantage": adv_sum / total, "advantage_step0": jnp.sum(counts.n0 * adv0) / batch}
    return loss, metrics


def chain_td_loss(critic, counts: ChainCounts, gamma, lam, timesteps, rewards, horizon=100):
    """Squared TD(lambda) error of a tabular critic, summed over each episode's steps, mean over episodes.

    The targets carry no gradient into the table but do into ``gamma`` and ``lam``. Summing over time
    makes an SGD step move entry (t, c) by ``2 * lr * cost * (share of episodes in context c)`` of its
    error (stable for ``lr * cost <= 0.5``).
    """
    values = ChainValues(critic["v0"], critic["v"])
    g0, g = chain_td_targets(jax.tree.map(sg, values), gamma, lam, timesteps, rewards, horizon)
    n_ct = jnp.sum(counts.n, axis=-1)
    sq = jnp.sum(counts.n0 * (g0 - values.v0) ** 2) + jnp.sum(n_ct * (g - values.v) ** 2)
    return sq / jnp.sum(counts.n0)


def chain_pg_loss_samples(params, batch: ChainBatch, gamma_value, gamma_target, entropy_cost, timesteps, rewards,
                          horizon=100, authors_first_step=False, normalize_advantages=False, lam=0.0, critic=None):
    """Reference loss on a per-sample batch with :func:`metarl.agents.a2c.a2c_loss` (TD(lambda), no critic
    loss); ``critic``: a tabular critic in place of the analytic value at ``gamma_value``."""
    if critic is None:
        v = lambda o: chain_true_value(o, batch.probs0, sg(gamma_value), timesteps, rewards, horizon,
                                       authors_first_step)
    else:
        v = lambda o: chain_table_value(o, sg(critic), horizon)
    logits = chain_policy_logits(params, batch.obs)
    ones = jnp.ones_like(batch.rewards)
    return a2c.a2c_loss(logits, batch.actions, v(batch.obs), v(batch.next_obs), batch.rewards, ones, gamma_target,
                        lam, pg_cost=1.0, td_cost=0.0, entropy_cost=entropy_cost,
                        normalize_advantages=normalize_advantages)


def chain_pg_loss(params, counts: ChainCounts, gamma_value, gamma_target, entropy_cost, timesteps, rewards,
                  horizon=100, authors_first_step=False, normalize_advantages=False, lam=0.0):
    """:func:`chain_loss` with the analytic critic: the same loss as :func:`chain_pg_loss_samples`,
    computed exactly from counts.

    Policy gradient with the TD(lambda) advantage (TD(0) by default, ``r + gamma_target * V(s') - V(s)``);
    the analytic critic ``V`` at ``gamma_value`` is held constant (stop-gradient, as in the authors'
    code) while ``gamma_target`` (and ``lam``) stay differentiable; minus ``entropy_cost`` times the
    mean entropy.
    """
    values = chain_analytic_values(counts.probs0, sg(gamma_value), timesteps, rewards, horizon, authors_first_step)
    return chain_loss(params, counts, values, gamma_target, lam, entropy_cost, timesteps, rewards, horizon,
                      normalize_advantages)


def make_chain_problem(cfg: ChainConfig, optimal_arm: int = 3) -> Problem:
    timesteps, rewards, _ = chain_env_constants(optimal_arm)
    h, na = cfg.horizon, int(rewards.shape[0])
    learned = cfg.critic == "learned"

    def rollout(params, env_state, key, use="outer"):
        # With the analytic critics only the outer loss without the outer critic has non-zero advantages
        # after the first step (elsewhere expected counts give the same loss); learned critics: sample all.
        counts = chain_rollout(params, key, cfg.batch_size, h, na, sample_later=learned or use == "outer")
        info = {"return_sum": jnp.sum(counts.n0 * rewards), "return_count": jnp.asarray(float(cfg.batch_size)),
                "expected_return": jnp.sum(counts.probs0 * rewards), "p_best": counts.probs0[optimal_arm]}
        return counts, env_state, info

    def pg(params, counts, values, gamma, lam, entropy_cost):
        return chain_loss(params, counts, values, gamma, lam, entropy_cost, timesteps, rewards, h,
                          cfg.normalize_advantages)

    def analytic(counts, gamma):
        return chain_analytic_values(counts.probs0, sg(gamma), timesteps, rewards, h, cfg.authors_first_step_value)

    def table(critic):
        return ChainValues(critic["v0"], critic["v"])

    def inner_loss(params, counts, gamma, lam=None):
        lam = cfg.lam if lam is None else lam
        if not learned:
            return pg(params, counts, analytic(counts, gamma), gamma, lam, cfg.entropy_cost)
        loss, m = pg(params, counts, table(params["critic"]), gamma, lam, cfg.entropy_cost)
        td = chain_td_loss(params["critic"], counts, gamma, lam, timesteps, rewards, h)
        td_outer = chain_td_loss(params["outer_critic"], counts, cfg.outer_gamma, cfg.outer_lam, timesteps, rewards, h)
        m.update(td_loss=td, outer_td_loss=td_outer)
        return loss + cfg.critic_cost * (td + td_outer), m

    def outer_loss(params, counts, gamma, outer_critic):
        # The inner critic values the inner gamma; the outer critic gamma'.
        if learned:
            values = table(params["outer_critic" if outer_critic else "critic"])
        else:
            values = analytic(counts, cfg.outer_gamma if outer_critic else gamma)
        return pg(params, counts, values, cfg.outer_gamma, cfg.outer_lam, cfg.outer_entropy_cost)

    def matching_loss(target, params, counts):
        o = jnp.array([-1.0, 0.0])  # every episode's step-0 observation
        return a2c.kl_divergence(chain_policy_logits(target, o), chain_policy_logits(params, o))

    def init_params(key):
        p = chain_init_params(key, na)
        if learned:
            p.update(critic=chain_init_critic(na, h), outer_critic=chain_init_critic(na, h))
        return p

    return Problem(init_params=init_params, init_env=lambda key: jnp.zeros(()),
                   rollout=rollout, inner_loss=inner_loss, outer_loss=outer_loss, matching_loss=matching_loss,
                   inner_opt=optax.sgd(cfg.lr), steps_per_rollout=cfg.batch_size * h,
                   matching_fresh_rollout=False)
