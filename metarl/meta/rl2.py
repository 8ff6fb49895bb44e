"""RL^2 (Duan et al., 2016, "RL^2: Fast Reinforcement Learning via Slow Reinforcement Learning").

A recurrent agent whose *activations* do the fast learning: a GRU reads, at every step, the observation,
the previous action, the previous reward and the previous done flag (the end of an episode), and its
hidden state carries across the episodes of a trial; at a trial boundary it is reset to zero and a new
task is drawn from the family (:mod:`metarl.meta.families`). The slow learner is PPO on whole trials:
the trial is the episode of the meta-MDP, so returns and GAE traces run across the episode boundaries
inside a trial (an agent that explores in episode 1 is credited with what that earns in episode 2) and
stop at the trial's end (a termination of the meta-MDP: no bootstrap).

Everything is one pure program per seed (vmap it over seeds): ``init(key)``; ``update(state)`` draws
``lanes`` fresh trials per family (a trial is ``trial_episodes * episode_steps`` steps; an episode
that ends early auto-resets, so a trial always has that many steps and its episodes are counted in
order), computes GAE with the rollout's values, then ``epochs`` passes of Adam over minibatches of
lanes on PPO's clipped surrogate plus ``vf_coef`` times the value regression minus ``ent_coef`` times
the entropy. The loss re-runs the GRU over each lane from its trial starts with the current
parameters (the same :func:`RL2Net` step and the same reset rule as the rollout), so the gradient is
back-propagation through time over whole trials. Policy and value share the GRU (two heads).

Inputs at step t: ``[obs_t, a_{t-1}, reward_scale * r_{t-1}, done_{t-1}]``, all zero at a trial's first
step (``a`` one-hot for a discrete family, the masked continuous action clipped to [-1, 1] otherwise).

**Padding (MetaGenRL's cross-environment protocol).** One network must serve environments with
different observation and action sizes, so every family of a run is padded to the largest sizes
(:func:`metarl.meta.families.env_family`): an observation fills the first entries of the input and
the rest are zero; the policy outputs ``act_dim`` Gaussian means, of which the environment receives
the first ``action_dim`` (its ``action_mask``); the log-probability and entropy are summed over the
masked entries only (so unused outputs get no gradient and carry no exploration bonus), and the
previous-action input is the masked action. At meta-test on an **unseen** environment the padding
does nothing to align meanings: the new observation's entries land on input units that, during
meta-training, carried other quantities of other environments (MountainCar's position and velocity
fill the slots of Pendulum's cos and sin of the angle), the units it leaves at zero look like a
training environment with fewer dimensions, and its actions drive the first output units whatever
they meant before. The network gets no signal of the mismatch except through the reward it sees
during the trial, so whatever transfers must come from in-trial adaptation; a large drop on an unseen
environment is the expected outcome, as in MetaGenRL's Table 2 (RL^2 -503 on the unseen Lunar).

Deviations from Duan et al.: PPO instead of TRPO (as MetaGenRL's comparison ran it), a tanh embedding
layer before the GRU, a shared GRU for policy and value, a fixed number of steps per trial.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from metarl.meta.baseline_configs import RL2Config
from metarl.driver.segments import vmapped_run
from metarl.meta.families import Family
from metarl.agents.onpolicy import gae


class RL2Net(nn.Module):
    """One step of the recurrent agent: ``(h, x) -> (h', policy output, log_std, value)``.
    Policy output: logits (discrete) or Gaussian means (continuous, with a state-independent log-std)."""

    act_dim: int
    discrete: bool
    hidden: int = 64
    init_log_std: float = -0.5

    @nn.compact
    def __call__(self, h, x):
        e = nn.tanh(nn.Dense(self.hidden, name="embed")(x))
        h, y = nn.GRUCell(self.hidden, name="gru")(h, e)
        out = nn.Dense(self.act_dim, name="pi", kernel_init=nn.initializers.orthogonal(0.01))(y)
        v = nn.Dense(1, name="v")(y)[..., 0]
        if self.discrete:
            log_std = jnp.zeros_like(out)
        else:
            log_std = jnp.broadcast_to(self.param("log_std", nn.initializers.constant(self.init_log_std),
                                                  (self.act_dim,)), out.shape)
        return h, out, log_std, v


def check_families(families: Sequence[Family]):
    f0 = families[0]
    for f in families[1:]:
        if (f.obs_dim, f.act_dim, f.discrete) != (f0.obs_dim, f0.act_dim, f0.discrete):
            raise ValueError(f"families {f0.name} and {f.name} differ in padded sizes or action type: pad "
                             f"them to common sizes (families.env_family obs_dim/act_dim)")
    return f0


def input_size(family: Family) -> int:
    return family.obs_dim + family.act_dim + 2


def features(family: Family, obs, prev_action, prev_reward, prev_done, reward_scale):
    """The network input ``[obs, a_prev, scale * r_prev, done_prev]`` for one lane."""
    if family.discrete:
        a = jax.nn.one_hot(prev_action, family.act_dim)
    else:
        a = jnp.clip(prev_action, -1.0, 1.0) * jnp.asarray(family.action_mask)
    return jnp.concatenate([obs, a, jnp.stack([reward_scale * prev_reward, prev_done.astype(jnp.float32)])])


def log_prob(family: Family, out, log_std, action):
    if family.discrete:
        return jnp.take_along_axis(jax.nn.log_softmax(out), action[..., None].astype(jnp.int32), -1)[..., 0]
    z = (action - out) * jnp.exp(-log_std)
    per = -0.5 * jnp.square(z) - log_std - 0.5 * math.log(2 * math.pi)
    return jnp.sum(per * jnp.asarray(family.action_mask), axis=-1)


def entropy(family: Family, out, log_std):
    if family.discrete:
        lp = jax.nn.log_softmax(out)
        return -jnp.sum(jnp.exp(lp) * lp, axis=-1)
    return jnp.sum((log_std + 0.5 * math.log(2 * math.pi * math.e)) * jnp.asarray(family.action_mask), axis=-1)


def sample_action(family: Family, noise, out, log_std):
    """An action from pre-drawn ``noise`` (Gumbel for a discrete family, standard normal otherwise)."""
    if family.discrete:
        return jnp.argmax(out + noise, axis=-1)
    return (out + jnp.exp(log_std) * noise) * jnp.asarray(family.action_mask)


def rollout(net: RL2Net, params, family: Family, config: RL2Config, key, trials: int = 1):
    """``trials`` consecutive trials of one lane (vmap over lanes). Returns per-step arrays [S, ...] with
    S = trials * trial steps: x (input), action, logp, value, reward, reset (first step of a trial: task
    drawn, environment reset, hidden state zeroed), trial_end, done (episode end), episode (index of the
    episode inside its trial) and h_in (the hidden state the GRU step received).

    A trial is an outer step: draw a task, reset the environment and the hidden state, zero the
    previous action/reward/done; then an inner scan over the trial's steps carries the hidden state
    across episode ends (the environment auto-resets; only ``done`` in the input tells the agent).
    The randomness is drawn in bulk before the scans (fewer random ops to compile)."""
    trial_steps = config.trial_episodes * family.episode_steps
    zero_a = jnp.zeros((), jnp.int32) if family.discrete else jnp.zeros(family.act_dim)
    # The lane's randomness comes from an unsafe_rbg key seeded from ``key``: under the double vmap
    # (seeds x lanes) threefry's random ops dominated the compile time (13 s against 5 s for a bandit).
    key = jax.random.key(jax.random.bits(key, dtype=jnp.uint32), impl="unsafe_rbg")
    k_task, k_reset, k_step, k_noise = jax.random.split(key, 4)
    step_keys = jax.random.split(k_step, (trials, trial_steps))
    if family.discrete:
        noise = jax.random.gumbel(k_noise, (trials, trial_steps, family.act_dim))
    else:
        noise = jax.random.normal(k_noise, (trials, trial_steps, family.act_dim))

    def trial(_, inp):
        kt, kr, keys, eps = inp
        task = family.sample(kt)
        env_state, obs = family.reset(task, kr)

        def step(carry, inp):
            env_state, obs, prev_a, prev_r, prev_d, h, ep, t = carry
            k, e = inp
            reset = t == 0
            h_in = jnp.where(reset, jnp.zeros_like(h), h)  # the trial's first step: h is zero already
            x = features(family, obs, prev_a, prev_r, prev_d, config.reward_scale)
            h_out, out, log_std, v = net.apply(params, h_in, x)
            a = sample_action(family, e, out, log_std)
            env_state, next_obs, r, done = family.step(task, env_state, a, k)
            rec = dict(x=x, action=a, logp=log_prob(family, out, log_std, a), value=v, reward=r, reset=reset,
                       trial_end=t == trial_steps - 1, done=done, episode=ep, h_in=h_in)
            return (env_state, next_obs, a, r, done, h_out, ep + done.astype(jnp.int32), t + 1), rec

        init = (env_state, obs, zero_a, jnp.zeros(()), jnp.zeros((), bool), jnp.zeros(config.hidden),
                jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
        _, rec = jax.lax.scan(step, init, (keys, eps))
        return None, rec

    _, traj = jax.lax.scan(trial, None, (jax.random.split(k_task, trials), jax.random.split(k_reset, trials),
                                         step_keys, noise))
    return jax.tree.map(lambda x: x.reshape((trials * trial_steps,) + x.shape[2:]), traj)


def unroll(net: RL2Net, params, x, reset, hidden: int):
    """Re-run the GRU over one lane's inputs ``x [S, D]``, zeroing the hidden state where ``reset``:
    the rollout's computation with other parameters. Returns (out, log_std, value)."""

    def step(h, inp):
        xt, rt = inp
        h = jnp.where(rt, jnp.zeros_like(h), h)
        h, out, log_std, v = net.apply(params, h, xt)
        return h, (out, log_std, v)

    _, (out, log_std, v) = jax.lax.scan(step, jnp.zeros(hidden), (x, reset))
    return out, log_std, v


def episode_returns(traj, trial_episodes: int, trials: int = 1):
    """Per-lane return of each episode index inside its trial, [..., trials, trial_episodes], from
    per-step arrays [..., S]. Episodes past ``trial_episodes`` (after early terminations) are dropped."""
    trial_id = jnp.cumsum(traj["reset"].astype(jnp.int32), axis=-1) - 1
    onehot_t = jax.nn.one_hot(trial_id, trials)
    onehot_e = jax.nn.one_hot(traj["episode"], trial_episodes)
    return jnp.einsum("...s,...st,...se->...te", traj["reward"], onehot_t, onehot_e)


@struct.dataclass
class RL2State:
    params: Any
    opt_state: Any
    key: jax.Array
    updates: jax.Array


def make_rl2(config: RL2Config, families: Sequence[Family]):
    """(init(key) -> state, run_segment(state) -> (state, metrics), functions) for one seed; vmap over seeds.

    ``families``: the training families, padded to common sizes; each contributes ``lanes`` trials to
    every update (a stratified draw from the uniform mixture of the families). ``run_segment`` runs
    ``eval_every`` updates; metrics ``eval_episode_returns`` [families, trial_episodes] (see
    ``run_segment``) and the training means. ``functions["evaluate"]`` runs fresh trials on any
    family padded like the training ones (meta-test)."""
    config.validate()
    fam = check_families(families)
    net = RL2Net(fam.act_dim, fam.discrete, config.hidden, config.init_log_std)
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr))
    trial_steps = [config.trial_episodes * f.episode_steps for f in families]
    lanes_total = config.lanes * len(families)
    if lanes_total % config.minibatches:
        raise ValueError(f"lanes * families = {lanes_total} must be a multiple of minibatches {config.minibatches}")
    if len(set(trial_steps)) > 1:
        raise ValueError(f"every family needs the same trial length; got {trial_steps} steps")
    mb = lanes_total // config.minibatches

    def init(key):
        kp, kr = jax.random.split(key)
        params = net.init(kp, jnp.zeros(config.hidden), jnp.zeros(input_size(fam)))
        return RL2State(params, tx.init(params), kr, jnp.zeros((), jnp.int32))

    def collect(params, key, lanes, trials=1):
        """Trajectories of every family: a list of per-step dicts [lanes, S, ...]."""
        keys = jax.random.split(key, len(families))
        return [jax.vmap(lambda k, f=f: rollout(net, params, f, config, k, trials))(jax.random.split(kk, lanes))
                for f, kk in zip(families, keys)]

    def loss_fn(params, batch):
        out, log_std, v = jax.vmap(lambda x, r: unroll(net, params, x, r, config.hidden))(batch["x"], batch["reset"])
        # The action mask belongs to each lane's family (padded environments differ in it).
        lane_fam = fam._replace(action_mask=batch["mask"][:, None, :])
        logp = log_prob(lane_fam, out, log_std, batch["action"])
        ent = entropy(lane_fam, out, log_std)
        adv = batch["adv"]
        adv = (adv - jnp.mean(adv)) / (jnp.std(adv) + 1e-8)
        ratio = jnp.exp(logp - batch["logp"])
        pg = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - config.clip, 1 + config.clip) * adv))
        vf = jnp.mean(jnp.square(v - batch["target"]))
        ent = jnp.mean(ent)
        loss = pg + config.vf_coef * vf - config.ent_coef * ent
        return loss, dict(pg_loss=pg, vf_loss=vf, entropy=ent, approx_kl=jnp.mean(batch["logp"] - logp))

    def advantages(traj):
        r = config.reward_scale * traj["reward"]
        v = traj["value"]
        end = traj["trial_end"].astype(jnp.float32)
        v_next = jnp.concatenate([v[:, 1:], jnp.zeros_like(v[:, :1])], axis=1) * (1.0 - end)
        adv = gae(dict(reward=r, v=v, v_next=v_next, done=end, mask=jnp.ones(r.shape, bool)),
                  config.gamma, config.gae_lambda)
        return adv, adv + v

    def update(state: RL2State, _):
        key, kc = jax.random.split(state.key)
        trajs = collect(state.params, kc, config.lanes)
        masks = [jnp.broadcast_to(jnp.asarray(f.action_mask), (config.lanes, f.act_dim)) for f in families]
        traj = jax.tree.map(lambda *a: jnp.concatenate(a), *trajs)
        adv, target = advantages(traj)
        batch = dict(x=traj["x"], reset=traj["reset"], action=traj["action"], logp=traj["logp"], adv=adv,
                     target=target, mask=jnp.concatenate(masks))

        # Minibatches are fixed blocks of lanes: every update draws fresh i.i.d. trials, so a fixed split
        # is a random one (a permutation per epoch would add vmapped random ops, costly to compile).
        idx = jnp.arange(lanes_total).reshape(config.minibatches, mb)

        def epoch(carry, _):

            def mb_step(carry, i):
                params, opt_state = carry
                (_, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(params, jax.tree.map(lambda x: x[i], batch))
                upd, opt_state = tx.update(g, opt_state, params)
                return (optax.apply_updates(params, upd), opt_state), aux

            return jax.lax.scan(mb_step, carry, idx)

        (params, opt_state), aux = jax.lax.scan(epoch, (state.params, state.opt_state), None, length=config.epochs)
        ep_ret = jnp.stack([jnp.mean(episode_returns(t, config.trial_episodes)[:, 0], axis=0) for t in trajs])
        metrics = dict(episode_returns=ep_ret, **jax.tree.map(jnp.mean, aux))
        return state.replace(params=params, opt_state=opt_state, key=key, updates=state.updates + 1), metrics

    def evaluate(params, key, families_=None, lanes=None):
        """Mean return of each episode index of a trial over ``lanes`` fresh trials, per family:
        [families, trial_episodes] (frozen weights, stochastic policy: its sampling is how it explores)."""
        fams = families if families_ is None else families_
        lanes = lanes or config.eval_lanes
        keys = jax.random.split(key, len(fams))
        out = []
        for f, k in zip(fams, keys):
            traj = jax.vmap(lambda kk, f=f: rollout(net, params, f, config, kk))(jax.random.split(k, lanes))
            out.append(jnp.mean(episode_returns(traj, config.trial_episodes)[:, 0], axis=0))
        return jnp.stack(out)

    def run_segment(state: RL2State):
        """``eval_every`` updates. The evaluation is on-policy and free: the per-episode returns of the
        ``lanes`` fresh trials per family that the segment's last update collected (frozen weights within
        a trial, stochastic policy), i.e. the policy one update before the segment's final one. A separate
        evaluation rollout would double the program's compile time (``evaluate`` is there for meta-test)."""
        state, m = jax.lax.scan(update, state, None, length=config.eval_every)
        out = dict(eval_episode_returns=m["episode_returns"][-1], updates=state.updates,
                   **{k: jnp.mean(v, axis=0) for k, v in m.items() if k != "episode_returns"})
        return state, out

    fns = dict(net=net, collect=collect, loss_fn=loss_fn, advantages=advantages, update=update, evaluate=evaluate,
               tx=tx)
    return init, run_segment, fns


def train(config: RL2Config, families: Sequence[Family], key, seeds: int, ckpt_dir: str | None = None,
          identity: dict | None = None, resume: bool = False, on_segment=None, bar=None):
    """Meta-train ``seeds`` independent RL^2 agents (one vmapped program), segment by segment through
    metarl.driver.segments (checkpointed in ``ckpt_dir`` under ``identity``; ``resume`` continues from it;
    ``on_segment(i, metrics)`` after each segment, e.g. a progress postfix). Returns (state, history):
    history {metric: [seeds, evals, ...]} as numpy."""
    init, run_segment, _ = make_rl2(config, families)

    def keep(i, m):
        if on_segment is not None:
            on_segment(i, m)
        return m

    state, hist = vmapped_run(init, run_segment, key, seeds, config.num_evals, ckpt_dir, identity, resume=resume,
                              on_segment=keep, bar=bar)
    out = {k: np.stack([np.asarray(h[k]) for h in hist], axis=1) for k in hist[0]} if hist else {}
    return state, out


def meta_test(config: RL2Config, train_families: Sequence[Family], params, test_families: Sequence[Family], key,
              lanes: int | None = None):
    """Frozen RL^2 agents (``params`` stacked over seeds) on each test family: per-seed mean return of
    each episode index of a trial, {family name: [seeds, trial_episodes]} (numpy)."""
    _, _, fns = make_rl2(config, train_families)
    out = {}
    for f in test_families:
        check_families([train_families[0], f])
        ev = jax.jit(jax.vmap(lambda p, k, f=f: fns["evaluate"](p, k, [f], lanes)[0]))
        seeds = jax.tree.leaves(params)[0].shape[0]
        out[f.name] = np.asarray(ev(params, jax.random.split(key, seeds)))
    return out


def replace(config: RL2Config, **kw) -> RL2Config:
    return dataclasses.replace(config, **kw).validate()
