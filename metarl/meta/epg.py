"""EPG: Evolved Policy Gradients (Houthooft, Chen, Isola, Stadie, Wolski, Ho and Abbeel, NeurIPS 2018).

A learned loss ``L_phi`` trains fresh policies (the inner loop, gradient descent); its parameters ``phi``
are evolved by an evolution strategy (the outer loop) whose fitness is the final return of the agents
it trained.

**The loss network** reads a window of the agent's own experience, per step
``[s_t, a_t, r_t, d_t, pi_theta(.|s_t)]`` (observation, action, reward z-scored over the window, done
flag, and the policy's output at ``s_t``: its Gaussian mean, log standard deviation and
``log pi_theta(a_t|s_t)``). Temporal convolutions over the window (per environment lane) and a mean over
time give a context vector; a per-step MLP of ``[features_t, context]`` gives a scalar per step, and the
loss is their mean. The policy's gradient reaches ``theta`` only through the ``pi_theta`` features
(everywhere they enter, convolutions included), as in the paper.

**The inner loop** is :mod:`metarl.agents.onpolicy`'s agent (a Gaussian MLP policy, its rollouts and its
deterministic evaluation) with the policy update replaced: every ``window`` steps of ``num_envs``
environments it takes ``inner_epochs`` Adam steps on ``L_phi`` of that window. There is no value
function. After ``inner_steps`` environment steps, the fitness is the agent's final return: the mean
return of its training episodes that ended in the last quarter of the windows (an evaluation rollout
per member would add a program to compile for the same information); at meta-test the score is the
return of ``eval_episodes`` episodes of the mean action, as for every other row of Table 2. With the fixed loss :func:`policy_gradient_loss` in place of ``L_phi``
the inner update *is* our on-policy REINFORCE's policy update (``onpolicy``, algo "reinforce") with a
zero baseline and ``lambda = 1`` (checked in tests/test_epg.py).

**The outer loop** is OpenAI-ES (Salimans et al., 2017) from evosax (``Open_ES``: antithetic Gaussian
perturbations of the flattened ``phi`` with standard deviation ``es_sigma``, the search gradient
applied by Adam). Every member of the population trains ``agents_per_env`` agents on each training
environment; its fitness is the centered rank (evosax's ``centered_rank_fitness_shaping_fn``) of its
mean final return among the members, *per environment*, averaged over the environments (so an
environment with larger returns does not dominate the ranking). All members x agents of one
environment are one vmapped program; all environments and the ES step are one jitted generation.

**Padding** (MetaGenRL's cross-environment protocol): the loss network's input has fixed sizes, so
observations and actions (and the policy's per-dimension mean and log-std) are zero-padded to the
largest environment of the protocol (training and test). The inner policy has each environment's own
sizes; only the loss sees padded features. On an unseen environment the new observation entries fill
slots that carried other quantities during meta-training; a loss that learned to rely on those slots
gives a meaningless gradient there, one that relies on rewards, actions and ``log pi`` transfers.

Deviations from Houthooft et al. (2018), whose ES ran 256 workers x 64 inner agents for days: the
window is the last ``window`` steps only (the paper's buffer of N steps updated every M steps, with
N = M here); no memory units in the policy; no PPO auxiliary loss; reward z-scored within the window;
Adam (not SGD) inner updates; per-environment rank averaging for the multi-environment fitness (the
paper meta-trained on one task family).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from metarl import envs
from metarl.meta.baseline_configs import EPGConfig
from metarl.envs.core import strong_types
from metarl.driver.segments import vmapped_run
from metarl.agents import onpolicy as op





def with_inner_steps(config: EPGConfig, inner_steps: int) -> EPGConfig:
    return dataclasses.replace(config, inner_steps=inner_steps).validate()


# ----------------------------------------------------------------------------------------------------
# The loss
# ----------------------------------------------------------------------------------------------------
class LossNet(nn.Module):
    """Per-step features [N, T, F] -> per-step losses [N, T] (temporal convolutions give the context)."""

    conv_channels: Sequence[int] = (16, 16)
    conv_kernels: Sequence[int] = (8, 4)
    conv_strides: Sequence[int] = (4, 2)
    hidden: Sequence[int] = (32, 32)

    @nn.compact
    def __call__(self, f):
        c = f
        for i, (ch, k, s) in enumerate(zip(self.conv_channels, self.conv_kernels, self.conv_strides)):
            c = nn.tanh(nn.Conv(ch, (k,), strides=(s,), padding="VALID", name=f"conv_{i}")(c))
        context = jnp.mean(c, axis=-2, keepdims=True)  # [N, 1, C]
        x = jnp.concatenate([f, jnp.broadcast_to(context, f.shape[:-1] + context.shape[-1:])], axis=-1)
        for i, h in enumerate(self.hidden):
            x = nn.tanh(nn.Dense(h, name=f"dense_{i}")(x))
        return nn.Dense(1, name="out")(x)[..., 0]


def loss_net(config: EPGConfig) -> LossNet:
    return LossNet(tuple(config.conv_channels), tuple(config.conv_kernels), tuple(config.conv_strides),
                   tuple(config.loss_hidden))


def feature_size(obs_dim: int, act_dim: int) -> int:
    return obs_dim + 3 * act_dim + 3  # s, a, mean, log_std; r, d, log pi


def _pad(x, n):
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])


def loss_features(window, pi_out, obs_dim: int, act_dim: int):
    """Per-step features of a time-major window [T, N, ...] as [N, T, F] (padded to obs_dim/act_dim)."""
    r = window["reward"]
    r = (r - jnp.mean(r)) / (jnp.std(r) + 1e-8)
    f = jnp.concatenate([_pad(window["obs"], obs_dim), _pad(window["action"], act_dim), r[..., None],
                         window["done"].astype(jnp.float32)[..., None], _pad(pi_out["mean"], act_dim),
                         _pad(pi_out["log_std"], act_dim), pi_out["logp"][..., None]], axis=-1)
    return jnp.swapaxes(f, 0, 1)


def make_learned_loss(config: EPGConfig, obs_dim: int, act_dim: int) -> Callable:
    """``loss(phi, window, pi_out) -> scalar``: the mean over the window of L_phi's per-step outputs."""
    net = loss_net(config)

    def loss(phi, window, pi_out):
        return jnp.mean(net.apply(phi, loss_features(window, pi_out, obs_dim, act_dim)))

    return loss


def policy_gradient_loss(gamma: float) -> Callable:
    """The fixed loss of REINFORCE: ``-mean(log pi(a_t|s_t) * A_t)`` with ``A_t`` the standardised
    discounted return-to-go inside the window (cut at episode ends; GAE with V = 0 and lambda = 1, i.e.
    ``onpolicy.rollout_advantages``), exactly what ``onpolicy``'s REINFORCE minimises with a zero baseline."""

    def loss(phi, window, pi_out):
        del phi
        zero = jnp.zeros_like(window["reward"])
        adv, _ = op.rollout_advantages(window["reward"], zero, zero, window["terminated"], window["done"], gamma, 1.0)
        return op.reinforce_policy_loss(pi_out["logp"], op.standardise(adv))[0]

    return loss


def init_phi(key, config: EPGConfig, obs_dim: int, act_dim: int):
    return loss_net(config).init(key, jnp.zeros((1, config.window, feature_size(obs_dim, act_dim))))


# ----------------------------------------------------------------------------------------------------
# The inner loop: onpolicy's agent, its policy trained by a given loss
# ----------------------------------------------------------------------------------------------------
def inner_config(config: EPGConfig) -> op.OnPolicyConfig:
    return op.make_config("reinforce", total_steps=config.inner_steps, eval_every=config.inner_steps,
                          num_envs=config.num_envs, rollout=config.window, eval_episodes=config.eval_episodes,
                          max_episode_steps=config.max_episode_steps, hidden=tuple(config.hidden),
                          init_log_std=config.init_log_std, pi_lr=config.inner_lr, pi_epochs=config.inner_epochs,
                          minibatch_size=None)


def make_inner(config: EPGConfig, env, loss_fn: Callable):
    """(init(key) -> onpolicy state, update(state, phi) -> (state, metrics), train(phi, key) -> metrics,
    functions). ``update`` collects one window with ``onpolicy``'s rollout and takes ``inner_epochs``
    Adam steps of the policy on ``loss_fn(phi, window, pi_out)``; ``train`` runs ``inner_updates`` of them
    from a fresh agent (final_return: the fitness; see ``train``)."""
    ocfg = inner_config(config)
    init, _, fns = op.make_onpolicy(ocfg, env)
    policy = fns["policy"]
    tx = optax.adam(ocfg.pi_lr)  # onpolicy's policy optimiser (same state layout)

    def pi_outputs(pi, window):
        mean, log_std = policy.apply(pi, window["obs"])
        return dict(mean=mean, log_std=log_std, logp=op.gaussian_logp(mean, log_std, window["action"]))

    def update(state, phi):
        state, traj = fns["collect"](state)
        window = {k: traj[k] for k in ("obs", "action", "reward", "done", "terminated")}

        def step(carry, _):
            pi, opt_state = carry
            loss, g = jax.value_and_grad(lambda p: loss_fn(phi, window, pi_outputs(p, window)))(pi)
            upd, opt_state = tx.update(g, opt_state, pi)
            return (optax.apply_updates(pi, upd), opt_state), loss

        (pi, pi_opt), losses = jax.lax.scan(step, (state.pi, state.pi_opt), None, length=config.inner_epochs)
        done = traj["done"].astype(jnp.float32)
        metrics = dict(loss=jnp.mean(losses), ret_sum=jnp.sum(traj["episode_return"] * done), ret_n=jnp.sum(done))
        return state.replace(pi=pi, pi_opt=pi_opt), metrics

    def train(phi, key, evaluate: bool = True):
        """A fresh agent trained by ``loss_fn(phi, ...)``. ``final_return``: with ``evaluate``, the mean
        return of ``eval_episodes`` episodes of the mean action after training; without, the mean return
        of the training episodes that ended in the last quarter of the windows (no evaluation rollout:
        one program less to compile). ``train_return``: over all training episodes."""
        k_init, k_eval = jax.random.split(key)
        state = init(k_init)
        state, m = jax.lax.scan(lambda s, _: update(s, phi), state, None, length=config.inner_updates)
        late = slice(config.inner_updates - max(1, config.inner_updates // 4), None)
        late_return = jnp.sum(m["ret_sum"][late]) / jnp.maximum(jnp.sum(m["ret_n"][late]), 1.0)
        return dict(final_return=fns["evaluate"](state.pi, k_eval) if evaluate else late_return,
                    late_return=late_return,
                    train_return=jnp.sum(m["ret_sum"]) / jnp.maximum(jnp.sum(m["ret_n"]), 1.0),
                    loss=jnp.mean(m["loss"]))

    return init, update, train, dict(fns, pi_outputs=pi_outputs, tx=tx, onpolicy_config=ocfg)


# ----------------------------------------------------------------------------------------------------
# The outer loop: evosax's OpenAI-ES
# ----------------------------------------------------------------------------------------------------
def make_es(config: EPGConfig, template):
    """evosax ``Open_ES`` over the pytree ``template``'s shape; fitness is minimised (pass -score)."""
    from evosax.algorithms import Open_ES  # evosax loads on first use (~0.5 s), not on a CLI's --help
    from evosax.core.fitness_shaping import identity_fitness_shaping_fn

    es = Open_ES(config.population, template, use_antithetic_sampling=True, optimizer=optax.adam(config.es_lr),
                 std_schedule=optax.constant_schedule(config.es_sigma), fitness_shaping_fn=identity_fitness_shaping_fn)
    return es, es.default_params


def centered_ranks(scores):
    """evosax's centered ranks in [-0.5, 0.5] (higher score, higher rank) along the last axis."""
    from evosax.core.fitness_shaping import centered_rank_fitness_shaping_fn

    return centered_rank_fitness_shaping_fn(None, scores, None, None)


def es_generation(es, es_params, es_state, key, scores_fn):
    """One ES step: ask for a population, score it (``scores_fn(population) -> [envs, P]``, higher is
    better), rank per environment, average the ranks and tell (evosax minimises: minus the mean rank).
    Returns (es_state, scores)."""
    k_ask, k_tell = jax.random.split(key)
    pop, es_state = es.ask(k_ask, es_state, es_params)
    scores = scores_fn(pop)
    fitness = -jnp.mean(centered_ranks(scores), axis=0)
    es_state, _ = es.tell(k_tell, pop, fitness, es_state, es_params)
    return es_state, scores


@struct.dataclass
class EPGState:
    es: Any
    key: jax.Array
    generation: jax.Array


def make_epg(config: EPGConfig, env_names: Sequence[str], pad: tuple[int, int] | None = None):
    """(init(key) -> state, run_segment(state) -> (state, metrics), functions) for one seed (vmap over seeds).

    ``env_names``: the training environments; ``pad``: (obs_dim, act_dim) of the loss's input (default:
    the largest of ``env_names``; give the protocol's largest when unseen test environments are larger).
    ``run_segment`` runs ``eval_every`` generations; metrics per generation: ``member_return`` [envs]
    (the population's mean final return per environment) and ``best_return`` [envs] (the best member's)."""
    from metarl.meta.families import padded_sizes

    config.validate()
    obs_dim, act_dim = pad or padded_sizes(env_names)
    loss_fn = make_learned_loss(config, obs_dim, act_dim)
    env_objs = [envs.make(n, max_episode_steps=config.max_episode_steps) for n in env_names]
    inner = [make_inner(config, e, loss_fn) for e in env_objs]
    template = init_phi(jax.random.PRNGKey(0), config, obs_dim, act_dim)
    es, es_params = make_es(config, template)
    P, A = config.population, config.agents_per_env

    def init(key):
        k_phi, k_es, k = jax.random.split(key, 3)
        phi0 = init_phi(k_phi, config, obs_dim, act_dim)
        # evosax's state has weakly typed leaves; strong ones keep a resumed state's types (no retrace)
        return EPGState(strong_types(es.init(k_es, phi0, es_params)), k, jnp.zeros((), jnp.int32))

    def scores_fn(pop, key):
        # members x agents flattened into one vmapped axis (a nested vmap costs much more to compile)
        rep = jax.tree.map(lambda x: jnp.repeat(x, A, axis=0), pop)
        out = []
        for i, (_, _, train_fn, _) in enumerate(inner):
            keys = jax.random.split(jax.random.fold_in(key, i), P * A)
            ret = jax.vmap(lambda phi, k, f=train_fn: f(phi, k, evaluate=False)["final_return"])(rep, keys)
            out.append(jnp.mean(ret.reshape(P, A), axis=1))
        return jnp.stack(out)  # [envs, P]

    def generation(state: EPGState, _):
        key, k_es, k_inner = jax.random.split(state.key, 3)
        es_state, scores = es_generation(es, es_params, state.es, k_es, lambda pop: scores_fn(pop, k_inner))
        metrics = dict(member_return=jnp.mean(scores, axis=1), best_return=jnp.max(scores, axis=1))
        return EPGState(strong_types(es_state), key, state.generation + 1), metrics

    def run_segment(state: EPGState):
        state, m = jax.lax.scan(generation, state, None, length=config.eval_every)
        return state, dict(generation=state.generation, **m)

    def mean_phi(state: EPGState):
        return es.get_mean(state.es)

    fns = dict(es=es, es_params=es_params, loss_fn=loss_fn, inner=inner, generation=generation, mean_phi=mean_phi,
               pad=(obs_dim, act_dim))
    return init, run_segment, fns


def train(config: EPGConfig, env_names: Sequence[str], key, seeds: int, pad=None, ckpt_dir: str | None = None,
          identity: dict | None = None, resume: bool = False, on_segment=None, bar=None):
    """Meta-train ``seeds`` independent EPG runs (one vmapped program), segment by segment through
    metarl.driver.segments (checkpointed in ``ckpt_dir`` under ``identity``; ``resume`` continues from it;
    ``on_segment(i, metrics)`` after each segment, e.g. a progress postfix). Returns (state, history, phi):
    history {metric: [seeds, generations, ...]} (numpy), phi the ES mean of each seed (the learned losses
    that :func:`meta_test` trains fresh agents with)."""
    init, run_segment, fns = make_epg(config, env_names, pad)

    def keep(i, m):
        if on_segment is not None:
            on_segment(i, m)
        return {k: v for k, v in m.items() if k != "generation"}

    state, hist = vmapped_run(init, run_segment, key, seeds, config.num_evals, ckpt_dir, identity, resume=resume,
                              on_segment=keep, bar=bar, ignore=("best_fitness",))  # evosax: +inf before any fitness
    out = {k: np.concatenate([np.asarray(h[k]) for h in hist], axis=1) for k in hist[0]} if hist else {}
    return state, out, jax.jit(jax.vmap(fns["mean_phi"]))(state)


def meta_test(config: EPGConfig, phi, env_names: Sequence[str], pad: tuple[int, int], key, agents: int,
              inner_steps: int | None = None):
    """Fresh agents trained by the frozen losses ``phi`` (stacked over seeds) on each environment:
    {env: {"final_return": [seeds, agents], "train_return": ...}} (numpy). ``inner_steps`` defaults to
    the meta-training budget."""
    cfg = with_inner_steps(config, inner_steps or config.inner_steps)
    loss_fn = make_learned_loss(cfg, *pad)
    seeds = jax.tree.leaves(phi)[0].shape[0]
    out = {}
    for i, name in enumerate(env_names):
        _, _, train_one, _ = make_inner(cfg, envs.make(name, max_episode_steps=cfg.max_episode_steps), loss_fn)
        keys = jax.random.split(jax.random.fold_in(key, i), seeds * agents)
        rep = jax.tree.map(lambda x: jnp.repeat(x, agents, axis=0), phi)  # one vmapped axis: seeds x agents
        res = jax.jit(jax.vmap(train_one))(rep, keys)
        out[name] = jax.tree.map(lambda x: np.asarray(x).reshape(seeds, agents), res)
    return out
