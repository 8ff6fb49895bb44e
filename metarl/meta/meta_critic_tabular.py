"""The Online Meta-Critic's tabular-MDP analysis (Zhou et al., NeurIPS 2020, Fig. 6).

A 2-state, 2-action MDP; DDPG and DDPG-MC with the authors' settings as one vmapped program (``aux_scale``
0 or 1 beside the seeds), recording L_critic, h_w and L_meta at every update and the actor's parameters at
every episode end; the figure shows the loss curves and the 2-D PCA projection of the parameter path over
the exact expected-return surface. Run by ``python -m experiments.meta_critic --tabular`` and the
meta-critic benchmark.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from metarl import buffers, nets, stats
from metarl.agents import Agent, make_agent
from metarl.envs import EnvSpec
from metarl.meta.meta_critic import MetaCriticConfig, make_meta_critic
from metarl.meta.meta_critic_config import TAB_ACTORS, TAB_MDPS, TabularConfig  # noqa: F401  (re-exported)

CHAIN_REWARD = np.array([[0.3, 0.0], [0.0, 1.0]], np.float32)  # [s, a]
CHAIN_P_NEXT1 = np.array([[0.0, 0.9], [0.1, 0.9]], np.float32)  # P(s' = 1 | s, a)


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
    from metarl.agents.base import AgentState, critic_then_actor, ddpg_steps, init_actor_critic, merge_hp
    from metarl.agents.td3 import TD3_HP

    n_a = config.n_actions
    actor_net = SoftmaxActor(n_a, tuple(config.actor_hidden))
    critic_net = nets.Critic(tuple(config.critic_hidden))
    eye = jnp.eye(n_a)

    def q_all(params, obs):  # [batch, n_actions]
        return jnp.stack([critic_net.apply(params, obs, jnp.broadcast_to(eye[i], obs.shape[:-1] + (n_a,)))
                          for i in range(n_a)], -1)

    def init(key, hp=None) -> AgentState:
        return init_actor_critic(actor_net, critic_net, key, spec.obs_shape, n_a, merge_hp(TD3_HP, hp))

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

    critic_step, actor_step = ddpg_steps(critic_loss, actor_loss)
    update = critic_then_actor(critic_step, actor_step)

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
