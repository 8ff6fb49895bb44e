"""MetaGenRL (Kirsch, van Steenkiste and Schmidhuber, ICLR 2020): a population of TD3 agents
meta-learns one LSTM objective function L_alpha that then trains fresh agents on unseen environments.

The pieces, all pure functions over pytrees:

* The objective ``L_alpha(tau, x(phi), V)`` (:func:`objective_value`). Per 20-step window of a
  trajectory, each action dimension d gets ``[a_t[d], pi(s_t)[d]]`` embedded by a shared dense stack
  (a kernel-1 convolution over the action axis: 3 layers of 32, LayerNorm, half ReLU / half square
  units), averaged over d, so one objective serves any action size and does not care about the
  order of the dimensions. ``[z(r_t), t/T, z(V_t+1), z(V_t)]`` go through a 32-32-8 MLP. The 40-d
  concatenation runs through an LSTM(32) *backwards* in time (``lax.scan(reverse=True)`` over a
  ``flax.linen.LSTMCell``), then a 32-32-1 MLP and ``eta * tanh(x / eta)`` per step (eta = 1000);
  the per-step values are summed over the window and averaged over windows. Only ``pi(s_t)``
  carries gradient to the policy parameters phi; ``V = Q1(s, pi(s))`` is a stop-gradient input.
* The meta-loss of one agent (:func:`meta_loss`, Eq. 6 and Eq. 8): ``k`` SGD steps of the policy on
  ``L_alpha`` over ``k`` disjoint chunks of the window batch, then ``-mean Q1(s, pi_phi'(s))`` on the
  whole batch. Its gradient with respect to alpha is second order (through the policy steps and
  the critic).
* A population (:func:`make_population`): groups of agents, one group per environment, each agent
  with its own TD3 critic/policy, replay buffer and environment; the agents of a group are a vmapped
  axis, all groups are one compiled program, and the objective's gradient is the mean over every
  agent of the population (Adam 1e-3 after global-norm clipping at 1.0).
* One update cycle of an agent (:func:`update_agent`): two TD3 critic steps on two window batches,
  then one policy step on the second with the objective (annealed from the TD3 actor loss over the
  first ``anneal_steps`` training steps: ``p * L_alpha - (1 - p) * mean Q1(s, pi(s))``). With p = 0
  this is exactly two calls of TD3's ``update`` (policy delay 2). Two environment steps are taken per
  cycle, so there is one critic update per environment step, as in the paper.
* Meta-test (:func:`make_population` with ``meta_train=False``): fresh agents trained with a frozen
  objective (saved and loaded with orbax, :func:`save_objective` / :func:`load_objective`), no
  annealing. Every agent carries its own frozen alpha and a ``mix`` of (L_alpha, TD3 actor loss,
  off-policy REINFORCE with GAE), so the learned objectives and the two baselines (the paper's
  "same agent with the objective fixed", lambda = 0.97) on one environment are one vmapped axis.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl import buffers, envs
from metarl.agents import make_agent



# ----------------------------------------------------------------------------------------------------
# The learned objective
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectiveConfig:
    action_layers: Sequence[int] = (32, 32, 32)  # Table 3: 3 conv layers of 32 filters
    scalar_layers: Sequence[int] = (32, 32, 8)
    lstm_units: int = 32
    out_layers: Sequence[int] = (32, 32)
    eta: float = 1000.0  # error bound
    use_t: bool = True  # ablations of Section 5.2
    use_v: bool = True  # V_t (and V_t+1 unless use_v_next is False)
    use_v_next: bool = True

    @property
    def num_scalars(self) -> int:
        return 1 + int(self.use_t) + int(self.use_v) + int(self.use_v and self.use_v_next)


class ReluSquareMLP(nn.Module):
    """Dense -> LayerNorm -> [ReLU on the first half of the units, square on the second half]."""

    features: Sequence[int]

    @nn.compact
    def __call__(self, x):
        for i, f in enumerate(self.features):
            x = nn.LayerNorm(name=f"ln_{i}")(nn.Dense(f, name=f"dense_{i}")(x))
            h = f // 2
            x = jnp.concatenate([nn.relu(x[..., :h]), jnp.square(x[..., h:])], axis=-1)
        return x


class ScalarMLP(nn.Module):
    features: Sequence[int]

    @nn.compact
    def __call__(self, x):
        for i, f in enumerate(self.features):
            x = nn.Dense(f, name=f"dense_{i}")(x)
            if i < len(self.features) - 1:
                x = nn.relu(x)
        return x


def _modules(cfg: ObjectiveConfig):
    return dict(action=ReluSquareMLP(tuple(cfg.action_layers)), scalar=ScalarMLP(tuple(cfg.scalar_layers)),
                lstm=nn.LSTMCell(cfg.lstm_units), out=ScalarMLP(tuple(cfg.out_layers) + (1,)))


def init_objective(key, cfg: ObjectiveConfig = ObjectiveConfig()):
    """The objective's parameters alpha: a dict of four flax parameter trees."""
    m = _modules(cfg)
    ka, ks, kl, ko = jax.random.split(key, 4)
    lstm_in = cfg.action_layers[-1] + cfg.scalar_layers[-1]
    carry = m["lstm"].initialize_carry(kl, (1, lstm_in))
    return dict(action=m["action"].init(ka, jnp.zeros((1, 2))),
                scalar=m["scalar"].init(ks, jnp.zeros((1, cfg.num_scalars))),
                lstm=m["lstm"].init(kl, carry, jnp.zeros((1, lstm_in))),
                out=m["out"].init(ko, jnp.zeros((1, cfg.lstm_units))))


def _znorm(x, mask):
    """Standardise with the statistics of the valid steps of the batch (constants: inputs only)."""
    w = mask.astype(x.dtype)
    n = jnp.maximum(jnp.sum(w), 1.0)
    mean = jnp.sum(x * w) / n
    var = jnp.sum(jnp.square(x - mean) * w) / n
    return jax.lax.stop_gradient((x - mean) / jnp.sqrt(var + 1e-8))


def scalar_features(inputs: dict, cfg: ObjectiveConfig):
    """[z(r_t), t/T, z(V_t+1), z(V_t)] (the ablated ones left out), shape [B, T, k]."""
    mask = inputs["mask"]
    feats = [_znorm(inputs["reward"], mask)]
    if cfg.use_t:
        feats.append(inputs["t"])
    if cfg.use_v and cfg.use_v_next:
        feats.append(_znorm(inputs["v_next"], mask))
    if cfg.use_v:
        feats.append(_znorm(inputs["v"], mask))
    return jnp.stack(feats, axis=-1)


def objective_value(alpha, cfg: ObjectiveConfig, inputs: dict, pi_action):
    """L_alpha for a batch of windows.

    ``inputs``: action [B, T, D] (from the buffer), reward, t, v, v_next, mask [B, T];
    ``pi_action`` [B, T, D]: the policy's action pi_phi(s_t), the only input carrying gradient.
    Returns a scalar: the per-step outputs eta*tanh(x/eta) summed over valid steps, averaged over B.
    """
    m = _modules(cfg)
    mask = inputs["mask"]
    act = jnp.stack([jax.lax.stop_gradient(inputs["action"]), pi_action], axis=-1)  # [B, T, D, 2]
    a_emb = jnp.mean(m["action"].apply(alpha["action"], act), axis=-2)  # [B, T, 32]
    s_emb = m["scalar"].apply(alpha["scalar"], scalar_features(inputs, cfg))  # [B, T, 8]
    x = jnp.concatenate([a_emb, s_emb], axis=-1)
    x_t = jnp.swapaxes(x, 0, 1)  # [T, B, 40]
    mask_t = jnp.swapaxes(mask, 0, 1)[..., None]  # [T, B, 1]
    zero = tuple(jnp.zeros((x_t.shape[1], cfg.lstm_units), x.dtype) for _ in range(2))  # (c, h)

    def cell(carry, xm):
        xt, mt = xm
        new, y = m["lstm"].apply(alpha["lstm"], carry, xt)
        # Steps after an episode ended inside the window are the last ones: running backwards they
        # come first, and the state stays at zero until the first valid step.
        new = jax.tree.map(lambda n, z: jnp.where(mt, n, z), new, zero)
        return new, y

    _, ys = jax.lax.scan(cell, zero, (x_t, mask_t), reverse=True)  # [T, B, 32]
    out = m["out"].apply(alpha["out"], ys)[..., 0]  # [T, B]
    per_step = cfg.eta * jnp.tanh(out / cfg.eta) * mask_t[..., 0]
    return jnp.sum(per_step) / mask.shape[0]


# ----------------------------------------------------------------------------------------------------
# Objective inputs from an agent's critic, the fixed baseline objectives, the meta-loss
# ----------------------------------------------------------------------------------------------------
def q1(agent, critic_params, obs, action):
    return agent.critic_net.apply(critic_params, obs, action)[0]  # TD3's twin critic: (2, ...)


def objective_inputs(agent, state, windows: dict, mask):
    """Everything L_alpha reads except pi(s_t), as constants: V_t = Q1(s_t, pi(s_t)) and
    V_t+1 = Q1(s_t+1, pi(s_t+1)) (zero after termination) with the agent's current actor and critic."""
    v_of = lambda o: q1(agent, state.critic, o, agent.actor_net.apply(state.actor, o))
    not_term = 1.0 - windows["terminated"].astype(jnp.float32)
    inp = dict(obs=windows["obs"], action=windows["action"], reward=windows["reward"], t=windows["t"],
               v=v_of(windows["obs"]), v_next=v_of(windows["next_obs"]) * not_term,
               done=windows["done"].astype(jnp.float32), mask=mask)
    return jax.lax.stop_gradient(inp)


def learned_loss(alpha, cfg, agent, actor_params, inputs):
    return objective_value(alpha, cfg, inputs, agent.actor_net.apply(actor_params, inputs["obs"]))


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


def reinforce_loss(agent, actor_params, inputs, gamma, lam, sigma):
    """Off-policy REINFORCE with a GAE baseline: -sum_t log N(a_t; pi(s_t), sigma^2) * A_t (standardised
    advantages), summed over valid steps, averaged over windows."""
    mask = inputs["mask"].astype(jnp.float32)
    adv = gae(inputs, gamma, lam)
    adv = _znorm(adv, inputs["mask"]) * mask
    pi = agent.actor_net.apply(actor_params, inputs["obs"])
    logp = -jnp.sum(jnp.square(inputs["action"] - pi), axis=-1) / (2.0 * sigma ** 2)
    return -jnp.sum(logp * adv) / mask.shape[0]


def _chunks(tree, k: int):
    """k disjoint chunks of the windows (leading axis), equal size B // (k + 1)."""
    b = jax.tree.leaves(tree)[0].shape[0]
    n = b // (k + 1)
    if n < 1:
        raise ValueError(f"{b} windows cannot give {k} disjoint inner batches; use batch_windows >= {k + 1}")
    return [jax.tree.map(lambda x: x[j * n:(j + 1) * n], tree) for j in range(k)]


def meta_loss(alpha, cfg: ObjectiveConfig, agent, actor_params, critic_params, inputs, inner_steps: int = 1,
              inner_lr=1e-3):
    """Eq. 6 (k = 1) and Eq. 8 (k > 1): k SGD steps phi <- phi - lr * grad_phi L_alpha on disjoint
    chunks of the windows, then -mean Q1(s, pi_phi_k(s)) over every state of the batch."""
    phi = actor_params
    for chunk in _chunks(inputs, inner_steps):
        g = jax.grad(lambda p: learned_loss(alpha, cfg, agent, p, chunk))(phi)
        phi = jax.tree.map(lambda p, gi: p - inner_lr * gi, phi, g)
    obs = inputs["obs"]
    return -jnp.mean(q1(agent, critic_params, obs, agent.actor_net.apply(phi, obs)))


def population_meta_grad(alpha, cfg, agent, actor_params, critic_params, inputs, inner_steps=1, inner_lr=1e-3):
    """Gradient of the SUMMED meta-loss of a vmapped group of agents (leading axis on everything but alpha),
    one backward pass; by linearity it equals the sum of the per-agent objective gradients."""
    def total(a):
        per_agent = jax.vmap(lambda p, c, i: meta_loss(a, cfg, agent, p, c, i, inner_steps, inner_lr))
        losses = per_agent(actor_params, critic_params, inputs)
        return jnp.sum(losses), losses

    return jax.grad(total, has_aux=True)(alpha)


# ----------------------------------------------------------------------------------------------------
# One agent's update cycle
# ----------------------------------------------------------------------------------------------------
def flatten_windows(windows: dict) -> dict:
    """[B, T, ...] windows -> [B*T, ...] transitions for the critic (every stored step is a real transition)."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), windows)


def update_agent(agent, state, w1, w2, m2, key, actor_objective):
    """Critic on w1, critic on w2, then one policy step on w2 with ``actor_objective(actor_params,
    state, inputs) -> loss``. With the TD3 actor loss as objective this equals
    ``agent.update(agent.update(state, flat(w1), k1), flat(w2), k2)`` for ``k1, k2 = split(key)`` from a
    state whose step counter is even (TD3's policy delay 2).

    Returns (new state, state after the critic steps, the objective inputs, metrics)."""
    k1, k2 = jax.random.split(key)
    kc1, _ = jax.random.split(k1)
    kc2, ka2 = jax.random.split(k2)
    state, _ = agent.critic_step(state, flatten_windows(w1), kc1)
    state, mc = agent.critic_step(state, flatten_windows(w2), kc2)
    inputs = objective_inputs(agent, state, w2, m2)

    def loss_fn(actor_params, st, batch, key):
        del batch, key
        loss = actor_objective(actor_params, st, inputs)
        return loss, {"actor_loss": loss}

    new, ma = agent.actor_step(state, None, ka2, loss_fn)
    return new, state, inputs, {**mc, **ma}


def td3_actor_objective(agent):
    def f(actor_params, state, inputs):
        return agent.actor_loss(actor_params, state, flatten_windows({"obs": inputs["obs"]}), None)[0]
    return f


# ----------------------------------------------------------------------------------------------------
# The population
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetaGenRLConfig:
    """Defaults: the paper's Tables 3 and 4 (per agent)."""

    envs: tuple = ("brax/halfcheetah", "gymnax/MountainCarContinuous-v0")
    agents_per_env: int = 10  # 20 agents in all
    total_steps: int = 1_000_000  # environment steps per agent, warm-up included
    learning_starts: int = 10_000  # random exploration steps
    anneal_steps: int = 10_000  # training steps from the TD3 actor loss to L_alpha
    eval_every: int = 10_000  # environment steps between evaluations
    eval_episodes: int = 5
    buffer_size: int = 1_000_000
    window: int = 20  # truncated episode length
    batch_windows: int = 100  # batch size (in windows)
    hidden: Sequence[int] = (350, 350)  # critic and policy: 3 layers (2 hidden + output) of 350, LayerNorm
    inner_steps: int = 1  # Eq. 6 (1) or Eq. 8 (3, 5)
    inner_lr: float = 1e-3  # second-order learning rate
    objective_lr: float = 1e-3
    clip_norm: float = 1.0
    # Adam's epsilon for alpha. The second-order gradients are tiny in absolute size (an SGD step of
    # 1e-3 inside them; ~1e-11 on Pendulum at our scale), far below Adam's default 1e-8, which would
    # silence them; with a negligible epsilon Adam stays scale-free, as the paper's runs (critics of
    # size ~100s, larger gradients) presumably were with the default.
    objective_adam_eps: float = 1e-20
    gamma: float = 0.99
    tau: float = 0.005
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    expl_noise: float = 0.1
    gae_lambda: float = 0.97  # the off-policy REINFORCE baseline
    max_episode_steps: int | None = None
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    def validate(self):
        if self.eval_every % 2:
            raise ValueError(f"eval_every must be even (two env steps per update cycle), got {self.eval_every}")
        train = self.total_steps - self.learning_starts
        if train <= 0 or train % self.eval_every:
            raise ValueError(f"total_steps - learning_starts = {train} must be a positive multiple of "
                             f"eval_every = {self.eval_every}")
        if self.learning_starts < self.window:
            raise ValueError(f"learning_starts {self.learning_starts} < window {self.window}: nothing to sample")
        if self.batch_windows < self.inner_steps + 1:
            raise ValueError(f"batch_windows {self.batch_windows} < inner_steps + 1 = {self.inner_steps + 1}")
        return self

    @property
    def num_evals(self) -> int:
        return (self.total_steps - self.learning_starts) // self.eval_every

    @property
    def hp(self) -> dict:
        return dict(actor_lr=self.actor_lr, critic_lr=self.critic_lr, gamma=self.gamma, tau=self.tau,
                    expl_noise=self.expl_noise)


@struct.dataclass
class AgentRun:
    agent: Any
    env_state: Any
    obs: jax.Array
    buffer: buffers.Buffer
    key: jax.Array
    train_steps: jax.Array  # environment steps after the warm-up
    alpha: Any  # this agent's frozen objective (meta-test; unused while meta-training)
    mix: jax.Array  # [3] weights of (L_alpha, TD3 actor loss, off-policy REINFORCE+GAE) (meta-test)


@struct.dataclass
class PopState:
    groups: tuple  # one AgentRun per environment, batched over that group's agents
    alpha: Any  # the shared objective being meta-trained
    alpha_opt: Any
    cycles: jax.Array


class Group(NamedTuple):
    name: str
    env: Any
    agent: Any
    n: int


VARIANTS = {"learned": (1.0, 0.0, 0.0), "td3": (0.0, 1.0, 0.0), "reinforce": (0.0, 0.0, 1.0)}


def make_agent_for(spec, config: MetaGenRLConfig):
    return make_agent("td3", spec, actor_hidden=tuple(config.hidden), critic_hidden=tuple(config.hidden),
                      layer_norm=True, batch_size=config.batch_windows)


def make_groups(config: MetaGenRLConfig, envs_: Sequence[str] | None = None, n: int | None = None):
    out = []
    for name in (envs_ or config.envs):
        env = envs.make(name, max_episode_steps=config.max_episode_steps)
        out.append(Group(name, env, make_agent_for(env.spec, config), n or config.agents_per_env))
    return out


def _transition(obs, action, ts, t):
    return dict(obs=obs, action=action, reward=ts.reward, next_obs=ts.next_obs, terminated=ts.terminated,
                done=ts.done, t=t)


def mixed_objective(agent, alpha, ocfg, mix, gae_lambda):
    """mix[0] * L_alpha + mix[1] * TD3 actor loss + mix[2] * off-policy REINFORCE+GAE. One compiled
    program then serves the learned objective, both baselines and the annealing (mix = [p, 1-p, 0])."""
    td3 = td3_actor_objective(agent)

    def f(actor_params, state, inputs):
        return (mix[0] * learned_loss(alpha, ocfg, agent, actor_params, inputs)
                + mix[1] * td3(actor_params, state, inputs)
                + mix[2] * reinforce_loss(agent, actor_params, inputs, state.hp["gamma"], gae_lambda,
                                          state.hp["expl_noise"]))
    return f


def make_population(config: MetaGenRLConfig, groups: Sequence[Group], meta_train: bool = True):
    """(init, run_segment, evaluate_agent) for a population.

    Meta-training (``meta_train=True``): every agent follows the shared objective alpha, annealed from
    the TD3 actor loss over ``anneal_steps``, and alpha takes one Adam step per update cycle on the
    mean of every agent's Eq. 6/8 gradient. ``init(key, alpha=None)``.

    Meta-testing (``meta_train=False``): alpha is frozen and per agent, and each agent has its own
    ``mix`` of (L_alpha, TD3, REINFORCE), so learned objectives and both baselines on one environment
    are one vmapped axis of one program. ``init(key, variants=[(alphas [n, ...], mixes [n, 3]) per group])``.

    ``run_segment`` runs ``eval_every / 2`` update cycles of every agent (2 env steps each), then
    evaluates every agent (deterministic policy, ``eval_episodes`` episodes).
    """
    config.validate()
    ocfg = config.objective
    tx = optax.chain(optax.clip_by_global_norm(config.clip_norm),
                     optax.adam(config.objective_lr, eps=config.objective_adam_eps))
    n_total = sum(g.n for g in groups)

    def env_step(g: Group, run: AgentRun, action, key):
        env = g.env
        t = run.env_state.t.astype(jnp.float32) / env.spec.max_episode_steps
        env_state, ts = env.step(run.env_state, action, key)
        buf = buffers.add(run.buffer, _transition(run.obs, action, ts, t))
        return run.replace(env_state=env_state, obs=ts.obs, buffer=buf, train_steps=run.train_steps + 1), ts

    def agent_init(g: Group, key, alpha, mix):
        env, agent = g.env, g.agent
        k_agent, k_env, k_run, k_warm = jax.random.split(key, 4)
        st = agent.init(k_agent, config.hp)
        env_state, ts = env.reset(k_env)
        example = _transition(ts.obs, jnp.zeros((env.spec.action_dim,)), ts, jnp.zeros(()))
        buf = buffers.init(example, min(config.buffer_size, config.total_steps))
        run = AgentRun(st, env_state, ts.obs, buf, k_run, jnp.zeros((), jnp.int32), alpha, mix)

        def warm(run, k):
            a = jax.random.uniform(k, (env.spec.action_dim,), minval=-1.0, maxval=1.0)
            return env_step(g, run, a, k)[0], None

        run, _ = jax.lax.scan(warm, run, jax.random.split(k_warm, config.learning_starts))
        return run.replace(train_steps=jnp.zeros((), jnp.int32))

    def agent_cycle(g: Group, run: AgentRun, shared_alpha):
        agent = g.agent
        key, ka1, ke1, ka2, ke2, kw1, kw2, ku = jax.random.split(run.key, 8)
        run = run.replace(key=key)
        rets, dones = [], []
        for ka, ke in ((ka1, ke1), (ka2, ke2)):
            a = agent.act(run.agent, run.obs, ka, True)
            run, ts = env_step(g, run, a, ke)
            rets.append(ts.episode_return)
            dones.append(ts.done.astype(jnp.float32))
        w1, _ = buffers.sample_windows(run.buffer, kw1, config.batch_windows, config.window)
        w2, m2 = buffers.sample_windows(run.buffer, kw2, config.batch_windows, config.window)
        if meta_train:
            p = jnp.clip(run.train_steps.astype(jnp.float32) / max(config.anneal_steps, 1), 0.0, 1.0)
            objective = mixed_objective(agent, shared_alpha, ocfg, jnp.stack([p, 1.0 - p, 0.0]),
                                        config.gae_lambda)
        else:
            objective = mixed_objective(agent, run.alpha, ocfg, run.mix, config.gae_lambda)
        new, pre, inputs, m = update_agent(agent, run.agent, w1, w2, m2, ku, objective)
        m["ret_sum"] = rets[0] * dones[0] + rets[1] * dones[1]
        m["ret_n"] = dones[0] + dones[1]
        return run.replace(agent=new), pre, inputs, m

    def cycle(state: PopState, _):
        groups_out, grads, metrics = [], [], {}
        for g, run in zip(groups, state.groups):
            run, pre, inputs, m = jax.vmap(lambda r: agent_cycle(g, r, state.alpha))(run)
            groups_out.append(run)
            if meta_train:
                gr, losses = population_meta_grad(state.alpha, ocfg, g.agent, pre.actor, pre.critic, inputs,
                                                  config.inner_steps, config.inner_lr)
                grads.append(gr)
                m["meta_loss"] = losses
            metrics[g.name] = m
        alpha, alpha_opt = state.alpha, state.alpha_opt
        if meta_train:
            g_mean = jax.tree.map(lambda *x: sum(x) / n_total, *grads)
            upd, alpha_opt = tx.update(g_mean, alpha_opt, alpha)
            alpha = optax.apply_updates(alpha, upd)
            metrics["meta_grad_norm"] = optax.global_norm(g_mean)
        return state.replace(groups=tuple(groups_out), alpha=alpha, alpha_opt=alpha_opt,
                             cycles=state.cycles + 1), metrics

    def evaluate_agent(g: Group, agent_state, key):
        env, agent, n = g.env, g.agent, config.eval_episodes
        k_reset, k_steps = jax.random.split(key)
        sts, tss = jax.vmap(env.reset)(jax.random.split(k_reset, n))

        def step(carry, k):
            sts, obs, ret, alive = carry
            a = agent.act(agent_state, obs, k, False)
            sts, ts = jax.vmap(env.step)(sts, a, jax.random.split(k, n))
            ret = ret + alive * ts.reward
            return (sts, ts.obs, ret, alive * (1.0 - ts.done.astype(jnp.float32))), None

        init = (sts, tss.obs, jnp.zeros(n), jnp.ones(n))
        (_, _, ret, _), _ = jax.lax.scan(step, init, jax.random.split(k_steps, env.spec.max_episode_steps))
        return jnp.mean(ret)

    def run_segment(state: PopState):
        state, m = jax.lax.scan(cycle, state, None, length=config.eval_every // 2)
        out, new_groups = {}, []
        for g, run in zip(groups, state.groups):
            mg = m[g.name]
            keys = jax.vmap(lambda k: jax.random.split(k))(run.key)
            ev = jax.vmap(lambda s, k: evaluate_agent(g, s, k))(run.agent, keys[:, 1])
            new_groups.append(run.replace(key=keys[:, 0]))
            out[g.name] = dict(
                eval_return=ev,
                train_return=jnp.sum(mg["ret_sum"], 0) / jnp.maximum(jnp.sum(mg["ret_n"], 0), 1.0),
                critic_loss=jnp.mean(mg["critic_loss"], 0), actor_loss=jnp.mean(mg["actor_loss"], 0),
                **({"meta_loss": jnp.mean(mg["meta_loss"], 0)} if meta_train else {}),
                env_steps=config.learning_starts + run.train_steps)
        if meta_train:
            out["meta_grad_norm"] = jnp.mean(m["meta_grad_norm"])
        return state.replace(groups=tuple(new_groups)), out

    def init(key, alpha=None, variants=None):
        k_alpha, *k_groups = jax.random.split(key, len(groups) + 1)
        if alpha is None:
            alpha = init_objective(k_alpha, ocfg)
        if variants is None:
            if not meta_train:
                raise ValueError("meta-test needs variants: per group (alphas [n, ...], mixes [n, 3])")
            variants = [(jax.tree.map(lambda x: jnp.broadcast_to(x, (g.n,) + x.shape), alpha),
                         jnp.zeros((g.n, 3))) for g in groups]
        runs = tuple(jax.vmap(lambda k, a, mx: agent_init(g, k, a, mx))(jax.random.split(kg, g.n), va, vm)
                     for g, kg, (va, vm) in zip(groups, k_groups, variants))
        return PopState(runs, alpha, tx.init(alpha), jnp.zeros((), jnp.int32))

    return init, run_segment, evaluate_agent


# ----------------------------------------------------------------------------------------------------
# Saving and loading the frozen objective
# ----------------------------------------------------------------------------------------------------
def save_objective(path: str, alpha, cfg: ObjectiveConfig, extra: dict | None = None):
    """Write alpha with orbax plus its config as JSON, atomically (a temp dir, then a rename)."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    tmp = path + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    ck = ocp.StandardCheckpointer()
    ck.save(os.path.join(tmp, "alpha"), alpha)
    ck.wait_until_finished()
    with open(os.path.join(tmp, "objective.json"), "w") as f:
        json.dump({"objective": asdict(ObjectiveConfig(**asdict(cfg))), **(extra or {})}, f, indent=2,
                  default=list)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def load_objective(path: str):
    """(alpha, ObjectiveConfig, extra) written by :func:`save_objective`."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    with open(os.path.join(path, "objective.json")) as f:
        meta = json.load(f)
    c = meta.pop("objective")
    cfg = ObjectiveConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()})
    abstract = jax.eval_shape(lambda: init_objective(jax.random.PRNGKey(0), cfg))
    alpha = ocp.StandardCheckpointer().restore(os.path.join(path, "alpha"), abstract)
    return alpha, cfg, meta
