"""Meta-gradient discount tuning with an outer value function (Bonnet et al., 2022).

Self-tuning A2C: the discount ``gamma = low + (high - low) * sigmoid(logit)`` is a meta-parameter.

* **MG**: one inner A2C update with ``gamma`` (differentiable in it), a fresh rollout with the updated
  policy, outer loss = policy gradient with ``gamma'`` (and ``lambda'``, entropy'); the meta-gradient
  flows through the inner update into ``gamma``.
* **BMG**: after the inner update, one target step with the outer loss on fresh data, then the
  matching loss ``KL(pi_target || pi_new)``; its gradient reaches ``gamma`` through ``pi_new``.
* **Outer critic**: the outer loss's advantage uses a value of the policy at ``gamma'`` instead of the
  inner critic's value at ``gamma``. Here: the analytic value at ``gamma' = 1`` on the Discounting
  Chain; on Snake a second value head on ``stop_gradient(critic torso)`` trained by TD(lambda') with
  ``gamma'`` (the paper's design), or a separate outer network (the authors' Snake code).

Optionally the inner TD trace parameter ``lambda`` is a second meta-parameter (``MetaConfig.meta_lambda``),
through its own bounded sigmoid and the same meta-optimiser. On the chain the critics are the analytic
values (the paper) or, as an option, tabular critics learned by TD inside the inner loss
(``ChainConfig.critic = "learned"``).

The method is written once over a :class:`Problem` (rollout, inner loss, outer loss, matching loss,
inner optimiser); ``make_chain_problem`` and ``make_snake_problem`` build the two environments of the
paper. ``make_agent_step`` turns a problem into a pure ``step(state, key)`` for the methods
``"a2c"`` (fixed gamma), ``"mg"`` and ``"bmg"``, with or without the outer critic;
``make_population`` puts all agents, each vmapped over seeds, into one step of one compiled program.
Every rollout counts in ``env_steps`` (A2C one per update, MG two, BMG two or three).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl.agents import a2c
from metarl.nets import MLP, CNNTorso

sg = jax.lax.stop_gradient
METHODS = ("a2c", "mg", "bmg")


# -- meta-parameter bijector ---------------------------------------------------------------------
def to_gamma(logit, low, high):
    return low + (high - low) * jax.nn.sigmoid(logit)


def from_gamma(gamma, low, high):
    u = (gamma - low) / (high - low)
    return jnp.log(u) - jnp.log1p(-u)


# -- the problem interface -----------------------------------------------------------------------
class Problem(NamedTuple):
    """What the meta-learner needs from an environment + agent.

    rollout(params, env_state, key, use) -> (batch, env_state, info): ``use`` names the loss the batch
      feeds ("inner", "outer" or "outer_critic": the outer loss with the outer critic), so a problem may
      skip work that loss does not need; ``info`` holds ``return_sum`` and ``return_count`` (completed
      episodes) and any extra scalar diagnostics.
    inner_loss(params, batch, gamma, lam) -> (loss, metrics): ``lam`` is the meta-learned lambda, or None
      for the problem's fixed lambda.
    outer_loss(params, batch, gamma, outer_critic: bool) -> (loss, metrics): ``gamma`` is the inner
      discount (that of the inner critic); metrics hold ``advantage`` and ``advantage_step0``.
    matching_loss(target_params, params, batch) -> scalar KL(pi_target || pi_params)
    """

    init_params: Callable
    init_env: Callable
    rollout: Callable
    inner_loss: Callable
    outer_loss: Callable
    matching_loss: Callable
    inner_opt: optax.GradientTransformation
    steps_per_rollout: int
    matching_fresh_rollout: bool = True


@dataclass(frozen=True)
class MetaConfig:
    """Meta-parameters and their optimiser.

    ``gamma = gamma_low + (gamma_high - gamma_low) * sigmoid(logit)``; with ``meta_lambda`` the trace
    parameter of the inner TD(lambda) targets is a second meta-parameter,
    ``lambda = lam_low + (lam_high - lam_low) * sigmoid(lam_logit)`` from ``lam_init`` (otherwise the
    problem's fixed lambda is used). Both share one Adam (and one global-norm clip).
    """

    gamma_low: float = 0.0
    gamma_high: float = 1.0
    gamma_init: float = 0.8
    meta_lr: float = 3e-3
    meta_clip: float | None = None  # global-norm clip of the meta-gradient
    meta_lambda: bool = False
    lam_low: float = 0.0
    lam_high: float = 1.0
    lam_init: float = 0.95

    def __post_init__(self):
        for name, lo, hi, init in (("gamma", self.gamma_low, self.gamma_high, self.gamma_init),
                                   ("lambda", self.lam_low, self.lam_high, self.lam_init)):
            if not lo < init < hi:
                raise ValueError(f"{name} initial value {init} must lie strictly inside its sigmoid bounds "
                                 f"({lo}, {hi})")

    def optimizer(self):
        adam = optax.adam(self.meta_lr)
        return adam if self.meta_clip is None else optax.chain(optax.clip_by_global_norm(self.meta_clip), adam)

    def decode(self, eta):
        """``(gamma, lam)`` from the meta-parameters ``eta`` (a dict, or a bare gamma logit); ``lam`` is
        None when lambda is not meta-learned."""
        if not isinstance(eta, dict):
            eta = {"gamma": eta}
        gamma = to_gamma(eta["gamma"], self.gamma_low, self.gamma_high)
        lam = to_gamma(eta["lam"], self.lam_low, self.lam_high) if "lam" in eta else None
        return gamma, lam


@struct.dataclass
class AgentState:
    params: Any
    opt_state: Any
    logit: jax.Array  # unconstrained meta-parameter of gamma
    meta_opt_state: Any
    env_state: Any
    env_steps: jax.Array
    lam_logit: jax.Array  # unconstrained meta-parameter of lambda (used only with MetaConfig.meta_lambda)


def meta_params(state: AgentState, mcfg: MetaConfig) -> dict:
    """The meta-parameters being learned: ``{"gamma": logit}`` (+ ``"lam"`` with ``meta_lambda``)."""
    eta = {"gamma": state.logit}
    if mcfg.meta_lambda:
        eta["lam"] = state.lam_logit
    return eta


def init_agent(problem: Problem, mcfg: MetaConfig, key) -> AgentState:
    kp, ke = jax.random.split(key)
    params = problem.init_params(kp)
    logit = from_gamma(jnp.asarray(mcfg.gamma_init, jnp.float32), mcfg.gamma_low, mcfg.gamma_high)
    lam_logit = from_gamma(jnp.asarray(mcfg.lam_init, jnp.float32), mcfg.lam_low, mcfg.lam_high)
    state = AgentState(params, problem.inner_opt.init(params), logit, None, problem.init_env(ke),
                       jnp.zeros((), jnp.float32), lam_logit)
    return state.replace(meta_opt_state=mcfg.optimizer().init(meta_params(state, mcfg)))


def inner_update(problem: Problem, params, opt_state, batch, gamma, lam=None):
    """theta' = theta + optimiser step on the inner loss; differentiable in gamma (and lam; None: the
    problem's fixed lambda)."""
    grads, metrics = jax.grad(problem.inner_loss, has_aux=True)(params, batch, gamma, lam)
    updates, opt_state = problem.inner_opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics


def _outer_use(outer_critic: bool) -> str:
    return "outer_critic" if outer_critic else "outer"


def mg_meta_loss(eta, problem: Problem, mcfg: MetaConfig, state: AgentState, key, outer_critic: bool):
    """MG: outer loss after one inner update. ``eta``: meta-parameters (:func:`meta_params`, or a bare
    gamma logit). Returns (loss, (state', info, outer_metrics))."""
    gamma, lam = mcfg.decode(eta)
    k1, k2 = jax.random.split(key)
    batch, env_state, info = problem.rollout(state.params, state.env_state, k1, "inner")
    params, opt_state, _ = inner_update(problem, state.params, state.opt_state, batch, gamma, lam)
    batch2, env_state, _ = problem.rollout(sg(params), env_state, k2, _outer_use(outer_critic))
    loss, m_out = problem.outer_loss(params, batch2, gamma, outer_critic)
    new = state.replace(params=params, opt_state=opt_state, env_state=env_state,
                        env_steps=state.env_steps + 2 * problem.steps_per_rollout)
    return loss, (new, info, m_out)


def bmg_target(problem: Problem, params, opt_state, batch, gamma, outer_critic: bool):
    """One target step with the outer loss from (stopped) updated parameters: the BMG target."""
    params, opt_state = sg(params), sg(opt_state)
    grads, m_out = jax.grad(problem.outer_loss, has_aux=True)(params, batch, sg(gamma), outer_critic)
    updates, _ = problem.inner_opt.update(grads, opt_state, params)
    return sg(optax.apply_updates(params, updates)), m_out


def bmg_meta_loss(eta, problem: Problem, mcfg: MetaConfig, state: AgentState, key, outer_critic: bool):
    """BMG: matching loss KL(target || theta'(eta)). Returns (loss, (state', info, outer_metrics))."""
    gamma, lam = mcfg.decode(eta)
    k1, k2, k3 = jax.random.split(key, 3)
    batch, env_state, info = problem.rollout(state.params, state.env_state, k1, "inner")
    params, opt_state, _ = inner_update(problem, state.params, state.opt_state, batch, gamma, lam)
    batch2, env_state, _ = problem.rollout(sg(params), env_state, k2, _outer_use(outer_critic))
    target, m_out = bmg_target(problem, params, opt_state, batch2, gamma, outer_critic)
    n_rollouts = 2
    if problem.matching_fresh_rollout:
        batch2, env_state, _ = problem.rollout(sg(params), env_state, k3, "matching")
        n_rollouts = 3
    loss = problem.matching_loss(target, params, batch2)
    new = state.replace(params=params, opt_state=opt_state, env_state=env_state,
                        env_steps=state.env_steps + n_rollouts * problem.steps_per_rollout)
    return loss, (new, info, m_out)


def make_agent_step(problem: Problem, mcfg: MetaConfig, method: str, outer_critic: bool = False):
    """A pure ``step(state, key) -> (state, metrics)`` for one agent and one seed."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    meta_opt = mcfg.optimizer()

    def a2c_step(state: AgentState, key):
        gamma = to_gamma(state.logit, mcfg.gamma_low, mcfg.gamma_high)
        batch, env_state, info = problem.rollout(state.params, state.env_state, key, "inner")
        params, opt_state, _ = inner_update(problem, state.params, state.opt_state, batch, gamma)
        state = state.replace(params=params, opt_state=opt_state, env_state=env_state,
                              env_steps=state.env_steps + problem.steps_per_rollout)
        nan = jnp.full((), jnp.nan)
        return state, {"gamma": gamma, "meta_grad": jnp.zeros(()), "outer_advantage": nan,
                       "outer_advantage_step0": nan, **info}

    meta_loss = mg_meta_loss if method == "mg" else bmg_meta_loss

    def meta_step(state: AgentState, key):
        eta = meta_params(state, mcfg)
        grad, (new, info, m_out) = jax.grad(meta_loss, has_aux=True)(eta, problem, mcfg, state, key, outer_critic)
        updates, meta_opt_state = meta_opt.update(grad, state.meta_opt_state, eta)
        eta = optax.apply_updates(eta, updates)
        new = new.replace(logit=eta["gamma"], lam_logit=eta.get("lam", state.lam_logit),
                          meta_opt_state=meta_opt_state)
        gamma, lam = mcfg.decode(eta)
        metrics = {"gamma": gamma, "meta_grad": grad["gamma"], "outer_advantage": m_out["advantage"],
                   "outer_advantage_step0": m_out["advantage_step0"], **info}
        if lam is not None:
            metrics.update(lam=lam, meta_grad_lam=grad["lam"])
        return new, metrics

    return a2c_step if method == "a2c" else meta_step


# -- a population of agents in one program --------------------------------------------------------
@dataclass(frozen=True)
class AgentSpec:
    name: str
    method: str
    outer_critic: bool = False


PAPER_AGENTS = (AgentSpec("A2C", "a2c"), AgentSpec("MG", "mg"), AgentSpec("MG+outer critic", "mg", True),
                AgentSpec("BMG", "bmg"), AgentSpec("BMG+outer critic", "bmg", True))


def make_population(problem: Problem, mcfg_for: Callable[[str], MetaConfig], agents: Sequence[AgentSpec],
                    num_seeds: int, seed_axis: str = "vmap"):
    """All agents and seeds as one pair of pure functions (compiled together by the caller).

    Seeds are a vmapped axis of every agent; the agents are branches of the same program (a vmapped
    agent axis would make every agent pay for the most expensive method's rollouts).
    Returns ``(init(key) -> states, step(states, key) -> (states, metrics))``, both keyed by agent
    name; metrics are ``{agent: {metric: [num_seeds]}}``. Every agent gets the same seeds.

    ``seed_axis="map"`` runs the seeds one after another (``lax.map``) instead of vmapping them (a
    convolution vmapped over per-seed weights compiles to a grouped convolution); same results.
    On this CPU, Snake 6x6 with 2 seeds, it was only ~10% cheaper in CPU time.
    """
    if seed_axis not in ("vmap", "map"):
        raise ValueError(f"unknown seed_axis {seed_axis!r}; valid: vmap, map")

    def over_seeds(f):
        if seed_axis == "vmap":
            return jax.vmap(f)
        return lambda states, keys: jax.lax.map(lambda sk: f(*sk), (states, keys))

    steps = {a.name: over_seeds(make_agent_step(problem, mcfg_for(a.method), a.method, a.outer_critic))
             for a in agents}

    def init(key):
        keys = jax.random.split(key, num_seeds)
        return {a.name: jax.vmap(lambda k: init_agent(problem, mcfg_for(a.method), k))(keys) for a in agents}

    def step(states, key):
        new, metrics = {}, {}
        for i, a in enumerate(agents):
            keys = jax.random.split(jax.random.fold_in(key, i), num_seeds)
            new[a.name], metrics[a.name] = steps[a.name](states[a.name], keys)
            metrics[a.name]["env_steps"] = new[a.name].env_steps
        return new, metrics

    return init, step


def make_chunk_runner(step, updates_per_log: int, logs_per_chunk: int):
    """Jitted ``run(states, key) -> (states, logs)`` doing ``updates_per_log * logs_per_chunk`` updates.

    Each log row averages the metrics of its ``updates_per_log`` updates (returns are averaged over
    completed episodes: sum of returns / number of episodes; gamma and env_steps are the last value).
    """

    def window(states, key):
        states, ms = jax.lax.scan(step, states, jax.random.split(key, updates_per_log))

        def reduce(name, x):
            if name in ("gamma", "env_steps"):  # lambda (when meta-learned) is averaged like the rest
                return x[-1]
            if name in ("return_sum", "return_count"):
                return jnp.sum(x, axis=0)
            return jnp.mean(x, axis=0)

        out = {}
        for agent, d in ms.items():
            r = {k: reduce(k, v) for k, v in d.items()}
            r["return"] = r.pop("return_sum") / jnp.maximum(r.pop("return_count"), 1.0)
            out[agent] = r
        return states, out

    @jax.jit
    def run(states, key):
        return jax.lax.scan(window, states, jax.random.split(key, logs_per_chunk))

    return run


# ================================================================================================
# Discounting Chain (bsuite; gymnax DiscountingChain-bsuite) with the analytic value function
# ================================================================================================
CHAIN_CRITICS = ("analytic", "learned")


@dataclass(frozen=True)
class ChainConfig:
    """The paper's Discounting Chain setting (Table 1, Appendix C.1)."""

    batch_size: int = 128
    horizon: int = 100  # one whole episode per rollout
    lr: float = 0.5  # inner SGD
    entropy_cost: float = 0.005
    outer_gamma: float = 1.0
    outer_entropy_cost: float = 0.005
    normalize_advantages: bool = False
    # The authors' code values the first state with gamma^{t_a} instead of gamma^{t_a - 1} (one
    # discount too many: gymnax pays arm 0 on the first transition). False: the exact value.
    authors_first_step_value: bool = False
    lam: float = 0.0  # inner TD(lambda) when lambda is not meta-learned (Table 1: 0)
    outer_lam: float = 0.0  # lambda' of the outer loss (Table 1: 0)
    # "analytic": the exact values (the paper); "learned": tabular critics over (context, t) trained by
    # TD(lambda) inside the inner loss, the inner one with the inner gamma, the outer one with gamma'.
    critic: str = "analytic"
    critic_cost: float = 1.0  # weight of each learned critic's TD loss (summed over time, mean over episodes)

    def __post_init__(self):
        if self.critic not in CHAIN_CRITICS:
            raise ValueError(f"unknown chain critic {self.critic!r}; valid: {', '.join(CHAIN_CRITICS)}")


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

# ================================================================================================
# Snake 6x6 (jumanji) with the paper's CNN actor and critic
# ================================================================================================
@dataclass(frozen=True)
class SnakeConfig:
    """The paper's Snake setting (Table 1, Appendix C.2)."""

    num_envs: int = 512
    horizon: int = 5
    lr: float = 5e-4  # inner RMSProp
    rms_decay: float = 0.9
    rms_eps: float = 1e-8
    lam: float = 0.95
    pg_cost: float = 1.0
    td_cost: float = 0.5
    entropy_cost: float = 0.01
    outer_gamma: float = 1.0
    outer_lam: float = 1.0
    outer_entropy_cost: float = 0.0
    outer_td_cost: float = 1.0  # weight of the outer critic's TD(lambda') loss inside the inner loss
    separate_outer_network: bool = False  # False: second head on stop_gradient(torso) (the paper)
    normalize_advantages: bool = False
    actor_hidden: tuple = (64, 64)
    critic_hidden: tuple = (128, 128)


class SnakeActor(nn.Module):
    num_actions: int = 4
    hidden: tuple = (64, 64)

    @nn.compact
    def __call__(self, obs):
        x = CNNTorso()(obs)
        return MLP(tuple(self.hidden) + (self.num_actions,))(x)


class SnakeCritic(nn.Module):
    """Value torso (CNN + MLP) with the inner head and an outer head on stop_gradient(torso)."""

    hidden: tuple = (128, 128)

    @nn.compact
    def __call__(self, obs):
        x = MLP(tuple(self.hidden), activate_final=True)(CNNTorso()(obs))
        v = nn.Dense(1, name="inner_head")(x)[..., 0]
        v_outer = nn.Dense(1, name="outer_head")(sg(x))[..., 0]
        return v, v_outer


class SnakeBatch(NamedTuple):
    obs: jax.Array  # [T, B, 6, 6, 5]
    actions: jax.Array
    rewards: jax.Array
    not_terminal: jax.Array
    next_obs: jax.Array


def make_snake_problem(cfg: SnakeConfig, env) -> Problem:
    """Snake with the paper's networks; ``env`` is ``metarl.envs.make("jumanji/Snake-6x6")``."""
    actor = SnakeActor(env.spec.num_actions, tuple(cfg.actor_hidden))
    critic = SnakeCritic(tuple(cfg.critic_hidden))
    dummy = jnp.zeros((1,) + tuple(env.spec.obs_shape))

    def init_params(key):
        ka, kc, ko = jax.random.split(key, 3)
        p = {"actor": actor.init(ka, dummy), "critic": critic.init(kc, dummy)}
        if cfg.separate_outer_network:
            p["outer"] = critic.init(ko, dummy)
        return p

    def values(params, obs):
        v, v_outer = critic.apply(params["critic"], obs)
        if cfg.separate_outer_network:
            v_outer = critic.apply(params["outer"], obs)[0]
        return v, v_outer

    def init_env(key):
        state, ts = jax.vmap(env.reset)(jax.random.split(key, cfg.num_envs))
        return state, ts.obs

    def rollout(params, env_state, key, use="inner"):
        del use

        def body(carry, k):
            state, obs = carry
            ka, ks = jax.random.split(k)
            a = jax.random.categorical(ka, actor.apply(params["actor"], obs))
            state, ts = jax.vmap(env.step)(state, a, jax.random.split(ks, cfg.num_envs))
            out = (obs, a, ts.reward, 1.0 - ts.terminated.astype(jnp.float32), ts.next_obs,
                   ts.done.astype(jnp.float32), ts.episode_return)
            return (state, ts.obs), out

        env_state, (obs, a, r, nt, nobs, done, ep_ret) = jax.lax.scan(body, env_state,
                                                                    jax.random.split(key, cfg.horizon))
        info = {"return_sum": jnp.sum(done * ep_ret), "return_count": jnp.sum(done)}
        return SnakeBatch(obs, a, r, nt, nobs), env_state, info

    def inner_loss(params, batch, gamma, lam=None):
        lam = cfg.lam if lam is None else lam
        logits = actor.apply(params["actor"], batch.obs)
        v, v_outer = values(params, batch.obs)
        nv, nv_outer = values(params, batch.next_obs)
        loss, m = a2c.a2c_loss(logits, batch.actions, v, nv, batch.rewards, batch.not_terminal, gamma, lam,
                               pg_cost=cfg.pg_cost, td_cost=cfg.td_cost, entropy_cost=cfg.entropy_cost,
                               normalize_advantages=cfg.normalize_advantages)
        outer_td = a2c.td_loss(v_outer, nv_outer, batch.rewards, batch.not_terminal, cfg.outer_gamma,
                               cfg.outer_lam)
        m["outer_td_loss"] = outer_td
        return loss + cfg.outer_td_cost * outer_td, m

    def outer_loss(params, batch, gamma, outer_critic):
        del gamma
        logits = actor.apply(params["actor"], batch.obs)
        v, v_outer = values(params, batch.obs)
        nv, nv_outer = values(params, batch.next_obs)
        if outer_critic:
            v, nv = v_outer, nv_outer
        return a2c.a2c_loss(logits, batch.actions, v, nv,
                            batch.rewards, batch.not_terminal, cfg.outer_gamma, cfg.outer_lam, pg_cost=1.0,
                            td_cost=0.0, entropy_cost=cfg.outer_entropy_cost,
                            normalize_advantages=cfg.normalize_advantages)

    def matching_loss(target, params, batch):
        return jnp.mean(a2c.kl_divergence(actor.apply(target["actor"], batch.obs),
                                          actor.apply(params["actor"], batch.obs)))

    opt = optax.rmsprop(cfg.lr, decay=cfg.rms_decay, eps=cfg.rms_eps)
    return Problem(init_params=init_params, init_env=init_env, rollout=rollout, inner_loss=inner_loss,
                   outer_loss=outer_loss, matching_loss=matching_loss, inner_opt=opt,
                   steps_per_rollout=cfg.num_envs * cfg.horizon, matching_fresh_rollout=True)


# ================================================================================================
# Running a population in compiled chunks
# ================================================================================================
def make_population_program(problem: Problem, mcfg_for: Callable[[str], MetaConfig], agents: Sequence[AgentSpec],
                            num_seeds: int, updates_per_log: int, logs_per_chunk: int, seed_axis: str = "vmap"):
    """The population as a program for :class:`metarl.driver.Driver`: ``(init(key) -> state,
    chunk(state) -> (state, logs))``.

    ``state`` holds the agents' states (:func:`make_population`), the run key and the number of chunks
    done; chunk ``i`` runs :func:`make_chunk_runner`'s ``updates_per_log * logs_per_chunk`` updates with
    key ``fold_in(run key, i)``, so a resumed run draws the same keys. ``logs[agent][metric]`` is
    ``[logs_per_chunk, num_seeds]``.
    """
    init_agents, step = make_population(problem, mcfg_for, agents, num_seeds, seed_axis)
    run = make_chunk_runner(step, updates_per_log, logs_per_chunk)

    def init(key):
        k_init, k_run = jax.random.split(key)
        return {"agents": init_agents(k_init), "key": k_run, "chunk": jnp.zeros((), jnp.int32)}

    @jax.jit
    def chunk(state):
        states, logs = run(state["agents"], jax.random.fold_in(state["key"], state["chunk"]))
        return {"agents": states, "key": state["key"], "chunk": state["chunk"] + 1}, logs

    return init, chunk


def train_population(problem: Problem, mcfg_for: Callable[[str], MetaConfig], agents: Sequence[AgentSpec],
                     num_seeds: int, num_updates: int, updates_per_log: int, logs_per_chunk: int, key,
                     seed_axis: str = "vmap", out_dir: str | None = None, config: dict | None = None,
                     resume: bool = False, **driver_options):
    """Train every agent and seed together through :class:`metarl.driver.Driver`: one compiled chunk
    at a time, with a progress bar, run records and a checkpoint after each chunk in ``out_dir`` (if
    given), from which ``resume=True`` continues bit for bit. ``config`` is the run's identity (a
    resume with another is refused); ``driver_options`` go to the Driver (progress, desc, overwrite,
    resume_hint, ...).

    Returns ``(states, logs)`` with ``logs[agent][metric]`` a numpy array ``[num_updates //
    updates_per_log, num_seeds]``. ``num_updates`` must be a multiple of ``updates_per_log *
    logs_per_chunk``.
    """
    from metarl.driver import Driver

    chunk_updates = updates_per_log * logs_per_chunk
    if num_updates % chunk_updates:
        raise ValueError(f"num_updates={num_updates} is not a multiple of the chunk "
                         f"updates_per_log * logs_per_chunk = {chunk_updates}")
    init, chunk = make_population_program(problem, mcfg_for, agents, num_seeds, updates_per_log, logs_per_chunk,
                                          seed_axis)
    driver_options = {"unit": "upd", "units_per_chunk": chunk_updates, "postfix": _headline, **driver_options}
    state, logs = Driver(init, chunk, key, num_updates // chunk_updates, out_dir, config or {},
                         **driver_options).run(resume)
    # [chunks, logs, seeds] -> [logs, seeds], the agents in the given order (pytrees sort dict keys)
    logs = {a.name: {m: x.reshape((-1,) + x.shape[2:]) for m, x in logs[a.name].items()} for a in agents}
    return state["agents"], logs


def _headline(logs) -> dict:
    """The progress bar's numbers: each agent's latest discount, mean over seeds."""
    return {name: f"{float(d['gamma'][-1].mean()):.3f}" for name, d in logs.items()}
