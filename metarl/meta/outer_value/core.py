"""The method, written once over a :class:`Problem`: the bounded discount (and lambda) meta-parameters,
A2C's inner update, the MG and BMG meta-losses with or without the outer critic, and one step of a
population of agents (each vmapped over seeds)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import struct


sg = jax.lax.stop_gradient
from metarl.meta.outer_value.config import METHODS, MetaConfig  # noqa: E402,F401  (re-exported)


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
