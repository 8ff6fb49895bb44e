"""Online Meta-Critic experiments (Zhou et al., NeurIPS 2020): Tables 1-3 and the tabular-MDP analysis.

Two parts, both pure JAX programs:

* ``tabular_*``: the Fig. 6 analysis. A 2-state, 2-action MDP of RL^2's random family (the paper's
  ref. [6]) with the authors' DDPG settings; DDPG and DDPG-MC (the same compiled
  program, ``aux_scale`` 0 or 1 as a vmapped axis next to the seeds) record L_critic, h_w and L_meta at
  every update and the actor's parameters at every episode end; the figure shows the loss curves and
  the 2-D PCA projection of the parameter trajectory over the exact average-reward surface. The actor
  reads the 2 actions either as DDPG's deterministic tanh mixture weight (``actor="tanh"``, default) or
  as a stochastic softmax policy with the expected Q as its objective (``actor="softmax"``).
* ``run_experiment``: {DDPG, TD3, SAC} x {vanilla, +updates, MC (Eq. 10, Eq. 11, MetaReg; Eq. 9 or Eq. 8;
  re-initialisation guard on), +params} on a Brax (or gymnax) task through ``metarl.train.Runner``.
  Variants that share parameter shapes (vanilla = MC with aux_scale 0, '+updates', MC with Eq. 9 or
  Eq. 8, MC with the guard) are one vmapped program with the seeds; Eq. 11, MetaReg and '+params' change
  shapes and are programs of their own. '+updates' runs K extra vanilla updates per update, each on a
  fresh batch, with K = the measured wall-time overhead of -MC (``measure_overhead``) unless given.

``python -m experiments.meta_critic --algo td3 --env brax/hopper --steps 100000`` runs one algorithm;
``python -m experiments.meta_critic --tabular [--tab-actor softmax]`` the analysis (tanh or softmax actor);
``python -m experiments.meta_critic --overhead --algo ddpg,td3,sac --env gymnax/Pendulum-v1`` the -MC cost per
update: XLA FLOP ratio and wall-time ratio to vanilla, at the paper's networks.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from metarl import buffers, nets, stats
from metarl.agents import Agent, make_agent
from metarl.envs import EnvSpec
from metarl.meta.meta_critic import GUARD_RESET_AFTER, MetaCriticConfig, make_meta_critic

# ----------------------------------------------------------------------------------------------------
# The tabular MDP (|S| = 2, |A| = 2), Fig. 6
# ----------------------------------------------------------------------------------------------------
# The paper cites the tabular MDPs of RL^2 (Duan et al. 2016, its ref. [6]): a random MDP whose mean
# rewards m(s, a) are drawn from N(1, 1), whose observed reward is m(s, a) + N(0, 1) noise, whose
# transition rows P(. | s, a) are drawn from a flat Dirichlet, with 10-step episodes from state 0.
# ``mdp="rl2"`` (default) draws one such 2x2 MDP from ``mdp_seed`` and trains every seed on it.
# ``mdp="chain"`` is a hand-made deceptive 2x2 MDP (state 0: action 0 pays 0.3 and stays, action 1 moves
# to state 1 w.p. 0.9; state 1: action 1 pays 1.0 and stays w.p. 0.9), deterministic rewards.
TAB_MDPS = ("rl2", "chain")
# The actor's reading of the 2 discrete actions. "tanh" (default): DDPG's deterministic actor
# a = tanh(.) in [-1, 1], read as the mixture weight P(a = 1 | s) = (a + 1) / 2, the critic learning
# Q(s, a) of that continuous action. "softmax": a stochastic policy pi(. | s) = softmax over the 2 actions,
# the critic Q(s, e_a) of the one-hot action, and the actor objective the expected Q under pi (see
# make_softmax_ddpg). The tanh reading's corner actions saturate (grad of tanh -> 0), the softmax's do not
# in the same way, which is what the comparison probes.
TAB_ACTORS = ("tanh", "softmax")
CHAIN_REWARD = np.array([[0.3, 0.0], [0.0, 1.0]], np.float32)  # [s, a]
CHAIN_P_NEXT1 = np.array([[0.0, 0.9], [0.1, 0.9]], np.float32)  # P(s' = 1 | s, a)


@dataclass(frozen=True)
class TabularConfig:
    seeds: int = 5
    episodes: int = 100  # the paper's n = 100 episodes
    horizon: int = 10  # steps per episode (RL^2's tabular MDPs)
    warmup_episodes: int = 10  # uniformly random actions first (100 steps: one batch)
    mdp: str = "rl2"  # rl2 | chain
    mdp_seed: int = 0
    # the authors' DDPG settings: 400-300 actor and critic, batch 100, Adam 1e-3, gamma 0.99, noise 0.1
    gamma: float = 0.99
    hidden: Sequence[int] = (400, 300)
    mc_hidden: Sequence[int] = (100, 100)
    batch_size: int = 100
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    expl_noise: float = 0.1
    weight_decay: str = "decoupled"  # "l2": the authors' coupled form (falls into the zero state)
    actor: str = "tanh"  # tanh (deterministic, DDPG) | softmax (stochastic over the 2 actions, expected Q)
    seed: int = 0

    def validate(self):
        if self.mdp not in TAB_MDPS:
            raise ValueError(f"unknown tabular mdp {self.mdp!r}; valid: {', '.join(TAB_MDPS)}")
        if self.actor not in TAB_ACTORS:
            raise ValueError(f"unknown tabular actor {self.actor!r}; valid: {', '.join(TAB_ACTORS)}")
        return self


def tab_mdp(cfg: TabularConfig):
    """(mean reward [s, a], transition P[s, a, s'], reward noise std) of the configured MDP."""
    cfg.validate()
    if cfg.mdp == "chain":
        P = np.stack([1 - CHAIN_P_NEXT1, CHAIN_P_NEXT1], -1)
        return CHAIN_REWARD, P.astype(np.float32), 0.0
    rng = np.random.default_rng(cfg.mdp_seed)
    R = rng.normal(1.0, 1.0, size=(2, 2))
    P = rng.dirichlet(np.ones(2), size=(2, 2))
    return R.astype(np.float32), P.astype(np.float32), 1.0


TAB_SPEC = EnvSpec(name="tabular-2x2", obs_shape=(2,), discrete=False, action_dim=1, max_episode_steps=10)


class SoftmaxActor(nn.Module):
    """pi(. | s) = softmax(head(pi_bar(s))) over ``n_actions`` discrete actions, split into ``features``
    (the meta-critic's pi_bar) and ``head`` like :class:`metarl.nets.DeterministicActor`."""

    n_actions: int = 2
    hidden: Sequence[int] = (400, 300)

    def setup(self):
        self.torso = nets.MLP(tuple(self.hidden), activate_final=True)
        self.out = nn.Dense(self.n_actions)

    def features(self, obs):
        return self.torso(obs)

    def logits(self, obs):
        return self.out(self.features(obs))

    def head(self, feats):
        return jax.nn.softmax(self.out(feats))

    def __call__(self, obs):
        return self.head(self.features(obs))


@dataclass(frozen=True)
class SoftmaxDDPGConfig:
    actor_hidden: Sequence[int] = (400, 300)
    critic_hidden: Sequence[int] = (400, 300)
    batch_size: int = 100
    n_actions: int = 2


def make_softmax_ddpg(spec: EnvSpec, config: SoftmaxDDPGConfig = SoftmaxDDPGConfig()) -> Agent:
    """DDPG's machinery with a stochastic softmax actor over ``n_actions`` discrete actions, stored one-hot:
    the critic Q(s, e_a) regresses on r + gamma * sum_a' pi_targ(a' | s') Q_targ(s', e_a') (expected SARSA
    under the target policy), the actor minimises -mean_s sum_a pi(a | s) Q(s, e_a) (the expected Q under
    pi), soft target updates and Adam as in DDPG (TD3_HP; expl_noise, policy_noise, noise_clip unused).
    Exploration samples from pi. The Fig. 6 "softmax" reading."""
    from metarl.agents.base import AgentState, adam, apply_grads, merge_hp, soft_update
    from metarl.agents.td3 import TD3_HP

    n_a = config.n_actions
    actor_net = SoftmaxActor(n_a, tuple(config.actor_hidden))
    critic_net = nets.Critic(tuple(config.critic_hidden))
    eye = jnp.eye(n_a)

    def q_all(params, obs):  # [batch, n_actions]
        return jnp.stack([critic_net.apply(params, obs, jnp.broadcast_to(eye[i], obs.shape[:-1] + (n_a,)))
                          for i in range(n_a)], -1)

    def init(key, hp=None) -> AgentState:
        hp = merge_hp(TD3_HP, hp)
        ka, kc = jax.random.split(key)
        obs = jnp.zeros((1,) + spec.obs_shape)
        actor = actor_net.init(ka, obs)
        critic = critic_net.init(kc, obs, jnp.zeros((1, n_a)))
        return AgentState(actor=actor, critic=critic, actor_target=actor, critic_target=critic,
                          actor_opt=adam(hp["actor_lr"]).init(actor), critic_opt=adam(hp["critic_lr"]).init(critic),
                          log_alpha=jnp.zeros(()), alpha_opt=(), hp=hp, step=jnp.zeros((), jnp.int32))

    def act(state: AgentState, obs, key, explore=True):
        logits = actor_net.apply(state.actor, obs, method="logits")
        idx = jax.random.categorical(key, logits) if explore else jnp.argmax(logits, -1)
        return jax.nn.one_hot(idx, n_a)

    def critic_loss(critic_params, state: AgentState, batch, key):
        del key
        next_p = actor_net.apply(state.actor_target, batch["next_obs"])
        q_next = jnp.sum(next_p * q_all(state.critic_target, batch["next_obs"]), -1)
        not_term = 1.0 - batch["terminated"].astype(jnp.float32)
        target = jax.lax.stop_gradient(batch["reward"] + state.hp["gamma"] * not_term * q_next)
        q = critic_net.apply(critic_params, batch["obs"], batch["action"])
        loss = jnp.mean((q - target) ** 2)
        return loss, {"critic_loss": loss, "q_mean": jnp.mean(q)}

    def actor_loss(actor_params, state: AgentState, batch, key):
        del key
        p = actor_net.apply(actor_params, batch["obs"])
        loss = -jnp.mean(jnp.sum(p * q_all(state.critic, batch["obs"]), -1))
        return loss, {"actor_loss": loss}

    def critic_step(state: AgentState, batch, key):
        grads, m = jax.grad(critic_loss, has_aux=True)(state.critic, state, batch, key)
        critic, opt = apply_grads(state.critic, state.critic_opt, grads)
        return state.replace(critic=critic, critic_opt=opt, step=state.step + 1), m

    def actor_step(state: AgentState, batch, key, loss_fn=None, extra_grads=None):
        grads, m = jax.grad(loss_fn or actor_loss, has_aux=True)(state.actor, state, batch, key)
        if extra_grads is not None:
            grads = jax.tree.map(jnp.add, grads, extra_grads)
        actor, opt = apply_grads(state.actor, state.actor_opt, grads)
        tau = state.hp["tau"]
        return state.replace(actor=actor, actor_opt=opt, actor_target=soft_update(state.actor_target, actor, tau),
                             critic_target=soft_update(state.critic_target, state.critic, tau)), m

    def update(state: AgentState, batch, key, loss_fn=None):
        kc, ka = jax.random.split(key)
        state, m = critic_step(state, batch, kc)
        state, ma = actor_step(state, batch, ka, loss_fn)
        return state, {**m, **ma}

    return Agent("ddpg-softmax", config, actor_net, critic_net, init, act, critic_loss, actor_loss, critic_step,
                 actor_step, update, dict(TD3_HP))


def tab_policy_probs(actor_net, params):
    """P(a = 1 | s) for s = 0, 1. The deterministic (tanh) actor: the action a in [-1, 1] is the mixture
    weight (a + 1) / 2 of discrete action 1. The softmax actor: pi(1 | s)."""
    if isinstance(actor_net, SoftmaxActor):
        return actor_net.apply(params, jnp.eye(2))[:, 1]
    a = actor_net.apply(params, jnp.eye(2))[:, 0]
    return (jnp.clip(a, -1.0, 1.0) + 1.0) / 2.0


def tab_expected_return(p1, horizon: int, R, P):
    """Exact expected undiscounted episode return from state 0, given P(a = 1 | s)."""
    R, P = jnp.asarray(R), jnp.asarray(P)
    pa = jnp.stack([1 - p1, p1], 1)  # [s, a]
    r = jnp.sum(pa * R, 1)
    T = jnp.einsum("sa,sat->st", pa, P)
    d = jnp.array([1.0, 0.0])
    ret = 0.0
    for _ in range(horizon):
        ret = ret + d @ r
        d = d @ T
    return ret


def tab_optimal_return(cfg: TabularConfig):
    """The best expected return over deterministic policies (the 4 corners of [0, 1]^2)."""
    R, P, _ = tab_mdp(cfg)
    return max(float(tab_expected_return(jnp.array([a, b], jnp.float32), cfg.horizon, R, P))
               for a in (0.0, 1.0) for b in (0.0, 1.0))


def make_tabular(cfg: TabularConfig):
    """(agent, fns, run(key, aux_scale) -> trace dict) for one seed and one variant."""
    cfg.validate()
    if cfg.actor == "softmax":
        base = make_softmax_ddpg(TAB_SPEC, SoftmaxDDPGConfig(actor_hidden=tuple(cfg.hidden),
                                                             critic_hidden=tuple(cfg.hidden), batch_size=cfg.batch_size))
        adim = 2  # the one-hot action
    else:
        base = make_agent("ddpg", TAB_SPEC, actor_hidden=tuple(cfg.hidden), critic_hidden=tuple(cfg.hidden),
                          batch_size=cfg.batch_size)
        adim = 1
    agent, fns = make_meta_critic(base, MetaCriticConfig(hidden=tuple(cfg.mc_hidden), weight_decay=cfg.weight_decay))
    steps = cfg.episodes * cfg.horizon
    warm = cfg.warmup_episodes * cfg.horizon
    R_np, P_np, noise = tab_mdp(cfg)
    R, P1 = jnp.asarray(R_np), jnp.asarray(P_np[..., 1])

    def env_step(s, a, t, key):
        k1, k2, k3 = jax.random.split(key, 3)
        if cfg.actor == "softmax":  # a: the one-hot of the action sampled from pi
            d = jnp.argmax(a).astype(jnp.int32)
        else:  # a in [-1, 1]: the mixture weight of action 1
            d = jax.random.bernoulli(k1, (jnp.clip(a[0], -1, 1) + 1) / 2).astype(jnp.int32)
        s2 = jax.random.bernoulli(k2, P1[s, d]).astype(jnp.int32)
        truncated = (t + 1) % cfg.horizon == 0
        return s2, R[s, d] + noise * jax.random.normal(k3), truncated

    def run(key, aux_scale):
        k_init, k_loop = jax.random.split(key)
        hp = dict(gamma=cfg.gamma, actor_lr=cfg.actor_lr, critic_lr=cfg.critic_lr, expl_noise=cfg.expl_noise,
                  aux_scale=aux_scale)
        state = agent.init(k_init, hp)
        ex = dict(obs=jnp.zeros(2), action=jnp.zeros(adim), reward=jnp.zeros(()), next_obs=jnp.zeros(2),
                  terminated=jnp.zeros((), bool), done=jnp.zeros((), bool))
        buf = buffers.init(ex, warm + steps)
        s = jnp.zeros((), jnp.int32)  # episodes start in state 0

        def step(carry, inp):
            state, buf, s = carry
            t, k = inp
            k_act, k_env, k_reset, k_b, k_u = jax.random.split(k, 5)
            obs = jax.nn.one_hot(s, 2)
            if cfg.actor == "softmax":
                rand = jax.nn.one_hot(jax.random.randint(k_act, (), 0, 2), 2)
            else:
                rand = jax.random.uniform(k_act, (1,), minval=-1.0, maxval=1.0)
            a = jnp.where(t < warm, rand, agent.act(state, obs, k_act, True))
            s2, r, trunc = env_step(s, a, t, k_env)
            buf = buffers.add(buf, dict(obs=obs, action=a, reward=r, next_obs=jax.nn.one_hot(s2, 2),
                                        terminated=jnp.zeros((), bool), done=trunc))

            def learn(st):
                batch = buffers.sample(buf, k_b, agent.config.batch_size)
                return agent.update(st, batch, k_u)

            skip_m = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), jax.eval_shape(learn, state)[1])
            state, m = jax.lax.cond(t >= warm, learn, lambda st: (st, skip_m), state)
            s_next = jnp.where(trunc, 0, s2)
            out = dict(L_critic=m["L_critic"], h_w=m["h_w"], L_meta=m["L_meta"], meta_grad_norm=m["meta_grad_norm"],
                       meta_grad_zero=m["meta_grad_zero"])
            return (state, buf, s_next), out

        def episode(carry, inp):  # one episode; the actor is kept at its end only (memory: n + 1 copies)
            t0, k = inp
            carry, out = jax.lax.scan(step, carry, (t0 + jnp.arange(cfg.horizon), jax.random.split(k, cfg.horizon)))
            return carry, (out, carry[0].base.actor)

        n_eps = cfg.warmup_episodes + cfg.episodes
        (state0, buf, s), _ = jax.lax.scan(  # the warm-up episodes: random actions, no learning
            episode, (state, buf, s), (jnp.arange(cfg.warmup_episodes) * cfg.horizon,
                                       jax.random.split(jax.random.fold_in(k_loop, 0), cfg.warmup_episodes)))
        (state, _, _), (tr, snaps) = jax.lax.scan(
            episode, (state0, buf, s), (jnp.arange(cfg.warmup_episodes, n_eps) * cfg.horizon,
                                        jax.random.split(jax.random.fold_in(k_loop, 1), cfg.episodes)))
        tr = jax.tree.map(lambda x: x.reshape((steps,) + x.shape[2:]), tr)  # [episodes, horizon] -> [updates]
        # the actor at the start of learning and at every episode end: phi_0 ... phi_n
        tr["actor"] = jax.tree.map(lambda a0, x: jnp.concatenate([a0[None], x], 0), state0.base.actor, snaps)
        tr["return"] = jax.vmap(lambda p: tab_expected_return(tab_policy_probs(base.actor_net, p), cfg.horizon,
                                                               R_np, P_np))(tr["actor"])
        tr["zero_total"] = state.zero_total
        return tr

    return base, agent, fns, run


def run_tabular(cfg: TabularConfig = TabularConfig()):
    """Traces [variant (0: DDPG, 1: DDPG-MC), seed, ...] from one vmapped program."""
    base, _, _, run = make_tabular(cfg)
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.seeds)
    aux = jnp.array([0.0, 1.0])
    f = jax.jit(jax.vmap(jax.vmap(run, in_axes=(0, None)), in_axes=(None, 0)))
    return base, jax.device_get(f(keys, aux))


def _flat_params(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)], axis=-1)


def tabular_pca(base, actor_snaps, cfg: TabularConfig, grid: int = 25):
    """The paper's 2-D slice: PCA of [phi_0 - phi_n, ..., phi_{n-1} - phi_n], the path projected on the
    two leading directions, and the exact expected return on a grid of that plane."""
    R, P, _ = tab_mdp(cfg)
    leaves, treedef = jax.tree.flatten(actor_snaps)
    flat = np.concatenate([np.reshape(x, (x.shape[0], -1)) for x in leaves], axis=1)  # [n+1, D]
    final = flat[-1]
    M = flat[:-1] - final
    _, sv, vt = np.linalg.svd(M, full_matrices=False)
    dirs = vt[:2]
    path = (flat - final) @ dirs.T  # [n+1, 2]
    span = np.abs(path).max() * 1.3 + 1e-6
    xs = np.linspace(-span, span, grid)
    pts = np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2)
    shapes = [x.shape[1:] for x in leaves]
    sizes = [int(np.prod(s)) for s in shapes]

    def unflat(v):
        out, i = [], 0
        for s, n in zip(shapes, sizes):
            out.append(jnp.reshape(v[i:i + n], s))
            i += n
        return jax.tree.unflatten(treedef, out)

    def ret_at(c):
        return tab_expected_return(tab_policy_probs(base.actor_net, unflat(final + c @ dirs)), cfg.horizon, R, P)

    surface = np.asarray(jax.jit(jax.vmap(ret_at))(jnp.asarray(pts, jnp.float32))).reshape(grid, grid)
    explained = (sv[:2] ** 2) / max(np.sum(sv ** 2), 1e-12)
    return dict(path=path, xs=xs, surface=surface, explained=explained)


def tabular_figures(base, traces, cfg: TabularConfig, out_dir: str):
    from metarl.plots import _plt, curves, save_fig

    plt = _plt()
    os.makedirs(out_dir, exist_ok=True)
    x = np.arange(traces["L_critic"].shape[-1])
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    curves(axes[0], x, {"DDPG": traces["L_critic"][0], "DDPG-MC": traces["L_critic"][1]}, "L_critic (actor)")
    curves(axes[1], x, {"DDPG-MC h_w": traces["h_w"][1]}, "h_w")
    curves(axes[2], x, {"DDPG-MC L_meta_clip": traces["L_meta"][1]}, "L_meta_clip")
    axes[2].axhline(0.0, color="k", lw=0.5)
    for ax in axes:
        ax.set_xlabel("update step")
    fig.suptitle(f"tabular MDP |S|=2 |A|=2, {cfg.actor} actor, {cfg.seeds} seeds")
    p1 = os.path.join(out_dir, "tabular_losses.png")
    save_fig(fig, p1)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for v, (ax, name) in enumerate(zip(axes, ("DDPG", "DDPG-MC"))):
        snaps = jax.tree.map(lambda a: a[v, 0], traces["actor"])
        pca = tabular_pca(base, snaps, cfg)
        cs = ax.contourf(pca["xs"], pca["xs"], pca["surface"], levels=20, cmap="viridis")
        fig.colorbar(cs, ax=ax, label="expected episode return")
        ax.plot(pca["path"][:, 0], pca["path"][:, 1], ".", color="hotpink", ms=4)
        ax.plot(pca["path"][-1, 0], pca["path"][-1, 1], "*", color="red", ms=14)
        ax.set_title(f"{name} (seed 0; PCs explain {100 * pca['explained'].sum():.0f}%)")
    p2 = os.path.join(out_dir, "tabular_pca.png")
    save_fig(fig, p2)
    plt.close(fig)
    return [p1, p2]


def tabular_summary(traces, early: int = 200, cfg: TabularConfig | None = None):
    """The numbers behind the Fig. 6 claims, per variant [DDPG, DDPG-MC], over seeds.

    L_critic is each run's own actor loss -Q_theta(s, pi(s)) on its training batch (lower is better), as
    the paper plots it; the comparison is at the same update step, averaged over seeds."""
    lc, lm, ret = traces["L_critic"], traces["L_meta"], traces["return"]
    T = lc.shape[-1]
    checkpoints = [T // 4, T // 2, T - 1]
    last = slice(T - max(T // 10, 1), T)  # the last 10% of the updates
    per_seed_last = lc[:, :, last].mean(-1)  # [variant, seed]
    out = dict(
        L_meta_early_mean=float(lm[1, :, :early].mean()),
        L_meta_early_negative_seeds=int(np.sum(lm[1, :, :early].mean(-1) < 0)),
        L_meta_late_mean=float(lm[1, :, -early:].mean()),
        L_critic_at={int(t): [float(lc[0, :, t].mean()), float(lc[1, :, t].mean())] for t in checkpoints},
        L_critic_mean_over_training=[float(lc[0].mean()), float(lc[1].mean())],
        L_critic_last10pct=[float(per_seed_last[0].mean()), float(per_seed_last[1].mean())],
        L_critic_last10pct_mc_lower_seeds=int(np.sum(per_seed_last[1] < per_seed_last[0])),
        # Claim (i), DDPG-MC reaches a lower L_critic: per-seed last-10% values, IQM with 95% stratified
        # bootstrap intervals and P(MC lower); the verdict comes from that probability's interval.
        L_critic_claim=stats.compare(per_seed_last[1], per_seed_last[0], claim="lower"),
        seeds=int(lc.shape[1]),
        final_expected_return=[float(ret[0, :, -1].mean()), float(ret[1, :, -1].mean())],
        mean_expected_return_over_episodes=[float(ret[0].mean()), float(ret[1].mean())],
        zero_meta_grad_steps=int(np.sum(traces["zero_total"][1])),
        meta_steps=int(lc.shape[1] * T),
    )
    if cfg is not None:
        out["optimal_return"] = tab_optimal_return(cfg)
    return out


# ----------------------------------------------------------------------------------------------------
# Brax experiments: {DDPG, TD3, SAC} x {vanilla, +updates, MC variants, +params} (Tables 1-3)
# ----------------------------------------------------------------------------------------------------
# Variants of the main program (one compiled program, vmapped with the seeds): their traced meta-hp.
# The program is compiled with extra updates only if "updates" is asked for (max_extra_updates = ceil(K))
# and with the re-initialisation guard only if "mc_guard" is (reset_after = GUARD_RESET_AFTER, armed by the
# traced hp ``guard`` in that member only); otherwise neither costs anything.
SHARED_VARIANTS = {
    "vanilla": dict(aux_scale=0.0, extra_updates=0.0, meta_clip=1.0, guard=0.0),
    "updates": dict(aux_scale=0.0, extra_updates=None, meta_clip=1.0, guard=0.0),  # None: K, the measured overhead
    "mc": dict(aux_scale=1.0, extra_updates=0.0, meta_clip=1.0, guard=0.0),  # Eq. 10, Eq. 9 (the default)
    "mc_plain": dict(aux_scale=1.0, extra_updates=0.0, meta_clip=0.0, guard=0.0),  # Eq. 10, Eq. 8
    "mc_guard": dict(aux_scale=1.0, extra_updates=0.0, meta_clip=1.0, guard=1.0),  # "mc" + the guard (ablation)
}
OWN_PROGRAM_VARIANTS = ("mc_sa", "metareg", "params")  # Eq. 11, MetaReg, '+params'
VARIANTS = tuple(SHARED_VARIANTS) + OWN_PROGRAM_VARIANTS
LABELS = {"vanilla": "{A}", "updates": "{A}+updates", "params": "{A}+params", "mc": "{A}-MC",
          "mc_plain": "{A}-MC L_meta", "mc_guard": "{A}-MC +guard", "mc_sa": "{A}-MC h(pi,s,a)",
          "metareg": "{A}-MC MetaReg"}
K_SOURCES = ("wall", "flops")


@dataclass(frozen=True)
class ExperimentConfig:
    algo: str = "td3"
    env: str = "brax/halfcheetah"
    variants: tuple = ("vanilla", "updates", "params", "mc")
    seeds: int = 5
    seed: int = 0
    total_steps: int = 1_000_000
    learning_starts: int = 10_000
    eval_every: int = 1_000
    eval_episodes: int = 10
    evals_per_chunk: int = 10
    max_episode_steps: int | None = None
    agent: dict = field(default_factory=dict)  # base agent config overrides (hidden sizes, batch size)
    lookahead: str = "all"  # the look-ahead's actor parameters (all | features | first_layer)
    weight_decay: str = "decoupled"
    updates_k: float | None = None  # '+updates' K (extra updates per update); None: measured (updates_k_from)
    # What K measures when it is measured (measure_overhead at the run's networks): "wall" (default; the
    # paper's "K% more compute": K = wall_ratio - 1) or "flops" (K = flop_ratio - 1; deterministic).
    updates_k_from: str = "wall"
    params_n: float | None = None  # '+params' fraction N; None: the measured parameter overhead

    def validate(self):
        bad = sorted(set(self.variants) - set(VARIANTS))
        if bad:
            raise ValueError(f"unknown variant(s) {bad}; valid: {', '.join(VARIANTS)}")
        if self.updates_k_from not in K_SOURCES:
            raise ValueError(f"unknown updates_k_from {self.updates_k_from!r}; valid: {', '.join(K_SOURCES)}")
        return self

    def train_config(self, **agent_overrides):
        from metarl.train import TrainConfig

        return TrainConfig(algo=self.algo, env=self.env, seeds=self.seeds, seed=self.seed,
                           total_steps=self.total_steps, learning_starts=self.learning_starts,
                           eval_every=self.eval_every, eval_episodes=self.eval_episodes,
                           evals_per_chunk=self.evals_per_chunk, max_episode_steps=self.max_episode_steps,
                           agent={**self.agent, **agent_overrides})


def runner_period(agent):
    """(period, f): ``f(state, batch, key)`` is the update work of ``period`` environment steps exactly as
    :func:`metarl.train.make_functions` lays it out (TD3: the delay's phases statically, one policy step
    per period; otherwise one ``update``), so its cost is the cost the training loop pays."""
    ex = agent.extras or {}
    period = int(ex.get("update_period", 1)) if "update_phase" in ex else 1

    def f(state, batch, key):
        if period == 1:
            return agent.update(state, batch, key)[0]
        for i, k in enumerate(jax.random.split(key, period)):
            state = ex["update_phase"](state, batch, k, (i + 1) % period == 0)[0]
        return state

    return period, f


def xla_flops(fn, *args) -> float:
    """FLOPs of ``fn(*args)`` as XLA's cost analysis of the compiled program counts them."""
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"])


def measure_overhead(cfg: ExperimentConfig, spec, n_periods: int = 10, rounds: int = 15) -> dict:
    """Cost of -MC's updates against its base agent's: XLA FLOPs and wall time, and parameter count.

    What is measured is the training loop's own update program (:func:`runner_period`: TD3's delay laid
    out statically, so TD3-MC meta-steps on its policy steps only), vmapped over a run axis of 1 as in
    :class:`metarl.train.Runner`, with the same networks and batch size as the runs (``cfg.agent``) and the
    default meta-critic (no guard, no extra updates). FLOPs: XLA's cost analysis of one period. Wall
    time: ``n_periods`` periods per timed call (a ``lax.scan``, so no per-update dispatch), compiled and
    warmed up before timing, the two programs timed in alternating order over ``rounds`` rounds so that
    load from other processes hits both alike; the ratio is the median of the per-round ratios.
    ``time_overhead`` = wall_ratio - 1 is the '+updates' control's K when it is measured."""
    from metarl.meta.meta_critic import param_overhead

    base = make_agent(cfg.algo, spec, **cfg.agent)
    agent = make_meta_critic(base, MetaCriticConfig(lookahead=cfg.lookahead, weight_decay=cfg.weight_decay))[0]
    n = base.config.batch_size
    k = jax.random.PRNGKey(0)
    adim = spec.action_dim

    def batch_of(m):
        ks = jax.random.split(k, 4)
        return dict(obs=jax.random.normal(ks[0], (1, m) + spec.obs_shape),
                    action=jax.random.uniform(ks[1], (1, m, adim), minval=-1.0, maxval=1.0),
                    reward=jax.random.normal(ks[2], (1, m)), next_obs=jax.random.normal(ks[3], (1, m) + spec.obs_shape),
                    terminated=jnp.zeros((1, m), bool), done=jnp.zeros((1, m), bool))

    progs, period = {}, 1
    for name, ag in (("base", base), ("mc", agent)):
        period, f = runner_period(ag)
        vf = jax.vmap(f)
        state = jax.vmap(lambda kk: ag.init(kk, {}))(jax.random.split(k, 1))
        b = batch_of(ag.config.batch_size)
        flops = xla_flops(vf, state, b, jax.random.split(k, 1))

        def loop(s, b=b, vf=vf):
            def body(s, key):
                return vf(s, b, key[None]), None
            return jax.lax.scan(body, s, jax.random.split(jax.random.PRNGKey(1), n_periods))[0]

        lf = jax.jit(loop)
        jax.block_until_ready(lf(state))  # compile + first run, not timed
        jax.block_until_ready(lf(state))  # one more warm-up call
        progs[name] = (lf, state, flops)
    times = {"base": [], "mc": []}
    cpu = {"base": [], "mc": []}
    for r in range(rounds):
        for name in (("base", "mc") if r % 2 == 0 else ("mc", "base")):
            lf, state, _ = progs[name]
            t, c = time.perf_counter(), time.process_time()
            jax.block_until_ready(lf(state))
            times[name].append((time.perf_counter() - t) / (n_periods * period))
            cpu[name].append((time.process_time() - c) / (n_periods * period))
    out = {f"{name}_s_per_update": float(np.median(v)) for name, v in times.items()}
    out.update({f"params_{k}": v for k, v in param_overhead(jax.tree.map(lambda x: x[0], progs["mc"][1])).items()})
    ratios = np.asarray(times["mc"]) / np.asarray(times["base"])
    out["flops_per_update"] = {name: progs[name][2] / period for name in progs}
    out["flop_ratio"] = progs["mc"][2] / progs["base"][2]
    out["wall_ratio"] = float(np.median(ratios))
    # Two checks on the median that are less sensitive to load from other processes: the ratio of the
    # fastest calls, and the ratio of this process's CPU time (all threads).
    out["wall_ratio_min"] = float(np.min(times["mc"]) / np.min(times["base"]))
    out["cpu_ratio"] = float(np.median(np.asarray(cpu["mc"]) / np.asarray(cpu["base"])))
    out["wall_over_flop_ratio"] = out["wall_ratio"] / out["flop_ratio"]
    out["time_overhead"] = out["wall_ratio"] - 1.0
    out["time_overhead_rounds"] = (ratios - 1.0).tolist()
    out["timing"] = dict(n_periods=n_periods, period=period, rounds=rounds, backend=jax.default_backend(),
                         hidden=dict(actor=list(base.config.actor_hidden), critic=list(base.config.critic_hidden)),
                         batch_size=n, meta_critic_hidden=list(MetaCriticConfig().hidden), lookahead=cfg.lookahead)
    return out


def scaled_hidden(cfg: ExperimentConfig, spec, frac: float) -> dict:
    """Hidden layers of actor and critic scaled by one factor so the parameter count grows by ``frac``."""
    from metarl import nets

    base = make_agent(cfg.algo, spec, **cfg.agent)

    def count(scale):
        ah = tuple(max(1, int(round(h * scale))) for h in base.config.actor_hidden)
        ch = tuple(max(1, int(round(h * scale))) for h in base.config.critic_hidden)
        st = make_agent(cfg.algo, spec, **{**cfg.agent, "actor_hidden": ah, "critic_hidden": ch}).init(
            jax.random.PRNGKey(0), {})
        return nets.count_params(st.actor) + nets.count_params(st.critic), ah, ch

    n0 = count(1.0)[0]
    lo, hi = 1.0, 2.0
    for _ in range(30):  # bisection on the scale
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(mid)[0] < (1 + frac) * n0 else (lo, mid)
    n1, ah, ch = count(hi)
    return dict(actor_hidden=ah, critic_hidden=ch, params=n1, base_params=n0, growth=n1 / n0 - 1.0)


def _set_runs(runner, combos: list[dict]):
    """Point a Runner at an explicit list of hp combinations (not a cartesian grid), times the seeds."""
    from metarl.train import run_sharding

    c = runner.config
    seed_keys = jax.random.split(jax.random.PRNGKey(c.seed), c.seeds)
    runner.combos = combos
    runner.keys = jnp.tile(seed_keys, (len(combos), 1))
    runner.hp = {k: jnp.repeat(jnp.asarray([cb[k] for cb in combos], jnp.float32), c.seeds) for k in combos[0]}
    runner.num_runs = len(combos) * c.seeds
    runner.sharding = run_sharding(runner.num_runs)


MC_METRICS = ("L_critic", "h_w", "L_meta", "meta_grad_norm", "meta_grad_zero", "meta_absorbed", "meta_resets",
              "extra_updates_done")


def run_experiment(cfg: ExperimentConfig, out_dir: str | None = None, progress: bool = True, overhead=None,
                   resume: bool = False) -> dict:
    """Train every requested variant; returns {variant: {eval_return [seeds, evals], ...}, 'overhead': ...}.

    ``resume``: each program whose run directory under ``out_dir`` holds a started run continues from its
    checkpoint (the Runner refuses, in one line, a run directory whose config differs); the others start
    fresh. Pass the ``overhead`` measured by the interrupted call (results.json keeps it) so that '+updates'
    and '+params' get the same K and N as before."""
    from metarl import envs
    from metarl.train import Runner

    cfg.validate()
    spec = envs.make(cfg.env, max_episode_steps=cfg.max_episode_steps).spec
    need_overhead = ("updates" in cfg.variants and cfg.updates_k is None) or \
                    ("params" in cfg.variants and cfg.params_n is None)
    overhead = overhead or (measure_overhead(cfg, spec) if need_overhead else {})
    measured_k = overhead.get("wall_ratio" if cfg.updates_k_from == "wall" else "flop_ratio", 1.0) - 1.0
    k_updates = cfg.updates_k if cfg.updates_k is not None else max(measured_k, 0.0)
    n_params = cfg.params_n if cfg.params_n is not None else overhead.get("params_overhead", 0.0)
    results = {"overhead": overhead, "updates_k": k_updates, "params_n": n_params, "wall_s": {}}
    tc = cfg.train_config()

    def sub(name):
        return os.path.join(out_dir, name) if out_dir else None

    def collect(metrics, names, seeds):
        for i, v in enumerate(names):
            sl = slice(i * seeds, (i + 1) * seeds)
            results[v] = {"eval_return": np.asarray(metrics["eval_return"][sl]),
                          "env_steps": np.asarray(metrics["env_steps"][0])}
            for m in MC_METRICS:
                if m in metrics:
                    results[v][m] = np.asarray(metrics[m][sl]).mean(0)

    def run(name, agent_fn, combos, names, train_cfg=tc):
        t = time.perf_counter()
        # The experiment owns its output folder: a re-run replaces each variant's run directory.
        d = sub(name)
        r = Runner(train_cfg, d, agent_fn=agent_fn, progress=progress, overwrite=True)
        if combos is not None:
            _set_runs(r, combos)
        _, metrics = r.run(resume=bool(resume and d and os.path.isfile(os.path.join(d, "config.json"))))
        results["wall_s"][name] = time.perf_counter() - t
        collect(metrics, names, train_cfg.seeds)

    def mc_fn(form, max_extra=0, reset_after=0):
        return lambda spec: make_meta_critic(make_agent(cfg.algo, spec, **cfg.agent),
                                             MetaCriticConfig(form=form, lookahead=cfg.lookahead,
                                                              weight_decay=cfg.weight_decay, reset_after=reset_after,
                                                              max_extra_updates=max_extra))[0]

    shared = [v for v in SHARED_VARIANTS if v in cfg.variants]
    if shared:
        combos = [{k: (k_updates if val is None else val) for k, val in SHARED_VARIANTS[v].items()} for v in shared]
        max_extra = int(np.ceil(k_updates)) if "updates" in shared else 0
        reset_after = GUARD_RESET_AFTER if "mc_guard" in shared else 0
        run("main", mc_fn("feature", max_extra, reset_after), combos, shared)
    for v, form in (("mc_sa", "feature_sa"), ("metareg", "metareg")):
        if v in cfg.variants:
            run(v, mc_fn(form), None, [v])
    if "params" in cfg.variants:
        hid = scaled_hidden(cfg, spec, n_params)
        results["params_hidden"] = hid
        run("params", None, None, ["params"], cfg.train_config(actor_hidden=hid["actor_hidden"],
                                                                critic_hidden=hid["critic_hidden"]))
    return results


# The run directories run_experiment writes under its output folder (one per compiled program).
RUN_DIRS = ("main", "mc_sa", "metareg", "params")


def paper_metrics(eval_return) -> dict:
    """Max over evaluation points of the seed-average return (std over seeds there), and the sum."""
    r = np.asarray(eval_return, float)
    mean = r.mean(0)
    i = int(np.argmax(mean))
    return dict(max_avg=float(mean[i]), std_at_max=float(r[:, i].std()), sum_avg=float(mean.sum()),
                final_avg=float(mean[-1]))


LOOKAHEADS = ("all", "features", "first_layer")


def _comma_choices(choices, what):
    """argparse type: a comma list whose items are all in ``choices``."""
    import argparse

    def check(text):
        items = tuple(x.strip() for x in text.split(",") if x.strip())
        bad = [x for x in items if x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {bad or [text]}; valid: {', '.join(choices)}")
        return items

    check.__name__ = what
    return check


def _hidden(text):
    import argparse

    try:
        h = tuple(int(x) for x in text.split(","))
    except ValueError:
        h = ()
    if not h or min(h) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of layer sizes >= 1, e.g. 64,64")
    return h


def main(argv=None):
    from metarl.agents import OFF_POLICY
    from metarl.cli import ArgumentParser, choice, fail, nonneg_int, positive_int

    algos = tuple(OFF_POLICY)
    prog = "python -m experiments.meta_critic"
    p = ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    p.add_argument("--tabular", action="store_true", help="run the tabular-MDP analysis (Fig. 6) only")
    p.add_argument("--algo", default=("td3",), type=_comma_choices(algos, "algorithm"),
                   help=f"one of {', '.join(algos)} (a comma list with --overhead)")
    p.add_argument("--env", default="brax/halfcheetah")
    p.add_argument("--variants", default=("vanilla", "updates", "params", "mc"), type=_comma_choices(VARIANTS, "variant"),
                   help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--seed", type=nonneg_int, default=0, help="the run's key: seed i of --seeds trains from key "
                                                                  "split(PRNGKey(seed), seeds)[i]")
    p.add_argument("--seeds", type=positive_int, default=5, help="independent runs, vmapped in one program")
    p.add_argument("--steps", type=positive_int, default=1_000_000)
    p.add_argument("--learning-starts", type=nonneg_int, default=10_000)
    p.add_argument("--eval-every", type=positive_int, default=1_000)
    p.add_argument("--eval-episodes", type=positive_int, default=10)
    p.add_argument("--lookahead", default="all", type=choice(LOOKAHEADS, "lookahead"))
    p.add_argument("--max-episode-steps", type=positive_int, default=None, help="episode length (default: the env's own)")
    p.add_argument("--mdp", default="rl2", type=choice(("rl2", "chain"), "mdp"),
                   help="--tabular: the 2x2 MDP, one of rl2 (default), chain")
    p.add_argument("--tab-actor", default="tanh", type=choice(TAB_ACTORS, "tabular actor"),
                   help=f"--tabular: the actor's reading of the 2 actions, one of {', '.join(TAB_ACTORS)} (default tanh)")
    p.add_argument("--tab-seeds", action="store_true", help="--tabular: use --seeds seeds (default: the paper's 5)")
    p.add_argument("--overhead", action="store_true",
                   help="only measure -MC's XLA FLOP and wall-time ratio to vanilla per update, and its parameter "
                        "overhead (the paper's networks unless --hidden is given; --algo may be a comma list) and "
                        "write overhead_<algo>.json")
    p.add_argument("--hidden", default=None, type=_hidden,
                   help="actor and critic hidden sizes, e.g. 64,64 (default: the paper's)")
    p.add_argument("--sac-batch", type=positive_int, default=None, help="SAC's batch size (default: its own, 256)")
    p.add_argument("--rounds", type=positive_int, default=15, help="--overhead: alternating timing rounds")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out from its checkpoints (same settings)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run's files in --out")
    p.add_argument("--out", default="results/meta_critic/experiment")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    a = p.parse_args(argv)
    from metarl.train import Interrupted, RunError, _check_env_name, write_json

    if len(a.algo) > 1 and not a.overhead:
        p.error(f"argument --algo: one algorithm unless --overhead, got {','.join(a.algo)}")
    agent = dict(actor_hidden=a.hidden, critic_hidden=a.hidden) if a.hidden else {}
    sac_agent = dict(agent, batch_size=a.sac_batch) if a.sac_batch else agent
    # Everything that can refuse the run, before anything is compiled or written.
    try:
        if a.tabular:
            tcfg = TabularConfig(mdp=a.mdp, actor=a.tab_actor, seed=a.seed,
                                 **({"seeds": a.seeds} if a.tab_seeds else {})).validate()
        else:
            _check_env_name(a.env, "positional")
            from metarl import envs

            if not a.env.startswith("brax/") and envs.make(a.env).spec.discrete:  # every brax env is continuous
                raise ValueError(f"--env {a.env!r} is discrete; the meta-critic wraps continuous-action agents "
                                 "(e.g. gymnax/Pendulum-v1, every brax/* env)")
            cfgs = [ExperimentConfig(algo=algo, env=a.env, variants=a.variants, seed=a.seed, seeds=a.seeds,
                                     total_steps=a.steps,
                                     learning_starts=a.learning_starts, eval_every=a.eval_every,
                                     eval_episodes=a.eval_episodes, lookahead=a.lookahead,
                                     max_episode_steps=a.max_episode_steps,
                                     agent=sac_agent if algo == "sac" else agent).validate() for algo in a.algo]
            if not a.overhead:
                cfgs[0].train_config().validate()
        if a.resume and (a.tabular or a.overhead):
            raise ValueError("--resume applies to training runs (--tabular and --overhead runs are short; rerun them)")
    except (ValueError, TypeError) as e:
        fail(prog, e)
    # The run directory: a folder holding an earlier run of this mode is refused unless --resume or --overwrite.
    files = (("tabular.json",) if a.tabular else tuple(f"overhead_{c.algo}.json" for c in cfgs) if a.overhead
             else ("summary.json",) + RUN_DIRS) + ("config.json", "meta.json")
    from metarl.driver import RunRecord, prepare_out_dir

    settings = (dict(mode="tabular", config=dataclasses.asdict(tcfg)) if a.tabular else
                dict(mode="overhead" if a.overhead else "train", configs=[dataclasses.asdict(c) for c in cfgs],
                     rounds=a.rounds if a.overhead else None))
    record = RunRecord(a.out, settings, resume=a.resume)
    try:
        prepare_out_dir(a.out, a.resume, a.overwrite, files, resume_from=RUN_DIRS)
        record.check()
    except RunError as e:
        fail(prog, e, e.exit_code)
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a repeated or resumed run skips the compilation
    with record:  # config.json, meta.json (status, versions, device, compile time apart)
        if a.tabular:
            base, traces = run_tabular(tcfg)
            summary = tabular_summary(traces, cfg=tcfg)
            tabular_figures(base, traces, tcfg, a.out)
            write_json(os.path.join(a.out, "tabular.json"), {"config": dataclasses.asdict(tcfg), **summary})
            print(summary)
            return
        if a.overhead:
            from metarl import envs

            spec = envs.make(a.env).spec
            for cfg in cfgs:
                o = measure_overhead(cfg, spec, rounds=a.rounds)
                write_json(os.path.join(a.out, f"overhead_{cfg.algo}.json"), {"config": dataclasses.asdict(cfg), **o})
                print(f"{cfg.algo} on {a.env}: {1e3 * o['base_s_per_update']:.2f} ms -> {1e3 * o['mc_s_per_update']:.2f} ms "
                      f"per update; FLOP ratio {o['flop_ratio']:.3f}, wall ratio {o['wall_ratio']:.3f} "
                      f"(wall/FLOP {o['wall_over_flop_ratio']:.3f}; fastest-call ratio {o['wall_ratio_min']:.3f}, CPU-time "
                      f"ratio {o['cpu_ratio']:.3f}); parameters {o['params_base']} + "
                      f"{o['params_meta_critic']} (+{100 * o['params_overhead']:.0f}%; paper ~10%)", flush=True)
            return
        cfg = cfgs[0]
        prev = os.path.join(a.out, "summary.json")
        overhead = None
        if a.resume and os.path.isfile(prev):
            import json

            with open(prev) as f:
                overhead = json.load(f).get("overhead") or None
        try:
            res = run_experiment(cfg, a.out, progress=not a.no_progress, overhead=overhead, resume=a.resume)
        except Interrupted as e:
            import shlex

            again = [x for x in (argv if argv is not None else sys.argv[1:]) if x != "--resume"] + ["--resume"]
            fail(prog, f"{e}; continue with: {prog} {shlex.join(again)}", 130)
        except RunError as e:
            fail(prog, e, getattr(e, "exit_code", 2))
        table = {v: paper_metrics(res[v]["eval_return"]) for v in cfg.variants}
        write_json(os.path.join(a.out, "summary.json"), {"config": dataclasses.asdict(cfg), "table": table,
                                                           "overhead": res["overhead"], "wall_s": res["wall_s"]})
        for v, m in table.items():
            print(f"{LABELS[v].format(A=cfg.algo.upper()):>20s}  max {m['max_avg']:9.1f} +- {m['std_at_max']:7.1f}")


if __name__ == "__main__":
    main()
