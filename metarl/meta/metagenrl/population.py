"""MetaGenRL's population as one compiled program: the mixed objective, the meta-gradient monitor and
make_population (meta-training and meta-test)."""
from __future__ import annotations

import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metarl import buffers
from metarl.rollout import evaluate_episodes, random_warm_up
from metarl.meta.metagenrl.objective import init_objective, masked_std, objective_steps, reduce_steps
from metarl.meta.metagenrl.meta_gradient import (MixedObjective, clip_per_agent, objective_inputs, population_meta_grads,
                                             reinforce_loss, td3_actor_objective, update_agent)
from metarl.meta.metagenrl.config import MetaGenRLConfig
from metarl.meta.metagenrl.state import AgentRun, Group, PopState


def _transition(obs, action, ts, t):
    return dict(obs=obs, action=action, reward=ts.reward, next_obs=ts.next_obs, terminated=ts.terminated,
                done=ts.done, t=t)


def mixed_objective(agent, alpha, ocfg, mix, gae_lambda, reduction: str = "step_mean", reinforce: bool = True):
    """mix[0] * L_alpha + mix[1] * TD3 actor loss + mix[2] * off-policy REINFORCE+GAE. One compiled
    program then serves the learned objective, both baselines and the annealing (mix = [p, 1-p, 0]).
    ``reduction`` ("step_mean" or "window_mean", :func:`reduce_steps`) reduces L_alpha's and
    REINFORCE's per-step losses; TD3's is always the mean over the B * T transitions, so with
    "step_mean" the mix is per step, then one mean. ``reinforce=False`` leaves the third term out
    (mix[2] must then be 0). Term names (diagnostics ``pg_norm_<name>``): objective, critic, reinforce."""
    td3 = td3_actor_objective(agent)

    def learned(actor_params, state, inputs):
        steps = objective_steps(alpha, ocfg, inputs, agent.actor_net.apply(actor_params, inputs["obs"]))
        return reduce_steps(steps, reduction), {"objective_std": masked_std(steps, inputs["mask"])}

    def critic(actor_params, state, inputs):
        return td3(actor_params, state, inputs), {}

    def reinforce_term(actor_params, state, inputs):
        return reinforce_loss(agent, actor_params, inputs, state.hp["gamma"], gae_lambda, state.hp["expl_noise"],
                              reduction), {}

    terms = (("objective", mix[0], learned), ("critic", mix[1], critic))
    if reinforce:
        terms += (("reinforce", mix[2], reinforce_term),)
    return MixedObjective(terms)


class MetaGradMonitor:
    """Host-side watch of the per-agent meta-gradient norms of a meta-training run.

    ``update(segment_metrics)`` takes (and removes) each group's ``meta_grad_norm_steps`` [cycles, n]
    from a ``run_segment`` output, keeps every agent's first / last / minimum norm, and warns
    (:class:`MetaGradientCollapseWarning`, also returned as strings) when an agent's norm has stayed
    below ``config.collapse_threshold`` for ``config.collapse_patience`` consecutive meta-steps,
    naming the agent, the meta-step and the agent's environment step."""

    def __init__(self, config: MetaGenRLConfig, groups: Sequence[Group]):
        self.threshold, self.patience = config.collapse_threshold, config.collapse_patience
        self.learning_starts = config.learning_starts
        self.names = [g.name for g in groups]
        self.streak = {g.name: np.zeros(g.n, np.int64) for g in groups}
        self.first = self.last = self.min = None
        self.meta_steps = 0
        self.warnings: list[str] = []

    def update(self, metrics: dict) -> list[str]:
        out, firsts, lasts, mins = [], {}, {}, {}
        n_steps = 0
        for name in self.names:
            norms = np.asarray(metrics[name].pop("meta_grad_norm_steps"), np.float64)  # [cycles, n]
            n_steps = norms.shape[0]
            firsts[name], lasts[name], mins[name] = norms[0], norms[-1], norms.min(0)
            below = norms < self.threshold
            idx = np.arange(n_steps)[:, None]
            last_reset = np.maximum.accumulate(np.where(below, -1, idx), axis=0)
            streak = np.where(last_reset < 0, self.streak[name][None] + idx + 1, idx - last_reset)
            for t, i in zip(*np.nonzero(streak == self.patience)):
                step = self.meta_steps + int(t) + 1
                msg = (f"MetaGenRL: meta-gradient collapse: agent {i} of {name} has had a meta-gradient norm "
                       f"below {self.threshold:g} for {self.patience} consecutive meta-steps, at meta-step "
                       f"{step} (its environment step {self.learning_starts + 2 * step}); last norm "
                       f"{norms[t, i]:.3g}")
                warnings.warn(msg, MetaGradientCollapseWarning, stacklevel=2)
                out.append(msg)
            self.streak[name] = streak[-1]
        if self.first is None:
            self.first = firsts
        self.last = lasts
        self.min = mins if self.min is None else {k: np.minimum(self.min[k], v) for k, v in mins.items()}
        self.meta_steps += n_steps
        self.warnings += out
        return out

    def state_dict(self) -> dict:
        """Everything the monitor has seen, as plain JSON types (kept in a meta-training checkpoint)."""
        arr = lambda d: None if d is None else {k: np.asarray(v).tolist() for k, v in d.items()}
        return dict(streak=arr(self.streak), first=arr(self.first), last=arr(self.last), min=arr(self.min),
                    meta_steps=self.meta_steps, warnings=list(self.warnings))

    def load_state_dict(self, d: dict):
        """Continue from :meth:`state_dict` (a resumed meta-training warns exactly as an uninterrupted one)."""
        arr = lambda x, dt=np.float64: None if x is None else {k: np.asarray(v, dt) for k, v in x.items()}
        self.streak = arr(d["streak"], np.int64)
        self.first, self.last, self.min = arr(d["first"]), arr(d["last"]), arr(d["min"])
        self.meta_steps, self.warnings = int(d["meta_steps"]), list(d["warnings"])
        return self

    def summary(self) -> dict:
        """Per group: first, last and minimum meta-gradient norm of every agent (lists), and over the
        population (mean of the first / last, minimum of the minima)."""
        per = {k: dict(first=self.first[k].tolist(), last=self.last[k].tolist(), min=self.min[k].tolist())
               for k in self.names}
        cat = lambda d: np.concatenate([d[k] for k in self.names])
        return dict(per_agent=per, first=float(cat(self.first).mean()), last=float(cat(self.last).mean()),
                    min=float(cat(self.min).min()), meta_steps=self.meta_steps, warnings=list(self.warnings))


class MetaGradientCollapseWarning(RuntimeWarning):
    """An agent's meta-gradient norm stayed below the threshold for the configured number of meta-steps."""


def make_population(config: MetaGenRLConfig, groups: Sequence[Group], meta_train: bool = True):
    """(init, run_segment, evaluate_agent) for a population.

    Meta-training (``meta_train=True``): every agent follows the shared objective alpha, annealed from
    the TD3 actor loss over ``anneal_steps``, and alpha takes one Adam step per update cycle on the
    mean over every agent of its (clipped) Eq. 6/8 gradient. ``init(key, alpha=None)``.

    Meta-testing (``meta_train=False``): alpha is frozen and per agent, and each agent has its own
    ``mix`` of (L_alpha, TD3, REINFORCE), so learned objectives and both baselines on one environment
    are one vmapped axis of one program. ``init(key, variants=[(alphas [n, ...], mixes [n, 3]) per group])``.

    ``run_segment`` runs ``eval_every / 2`` update cycles of every agent (2 env steps each), then
    evaluates every agent (deterministic policy, ``eval_episodes`` episodes). Its metrics, per group
    and agent (segment means unless named otherwise): eval_return, train_return, critic_loss,
    actor_loss, saturation, objective_std, pg_norm_objective, pg_norm_critic, env_steps; meta-training
    adds meta_loss, meta_grad_norm (the agent's own, before clipping), meta_grad_norm_min and
    meta_grad_norm_steps [cycles, n] (for :class:`MetaGradMonitor`, which removes it), and at the
    top level meta_grad_norm (the norm of the averaged gradient Adam receives, segment mean).
    """
    config.validate()
    ocfg = config.objective
    adam = optax.adam(config.objective_lr, eps=config.objective_adam_eps)
    tx = adam if config.meta_clip == "agent" else optax.chain(optax.clip_by_global_norm(config.clip_norm), adam)
    n_total = sum(g.n for g in groups)
    meta_windows = (config.inner_steps + 1) * config.batch_windows

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
        run = random_warm_up(run, lambda run, a, k: env_step(g, run, a, k), k_warm, config.learning_starts,
                             env.spec.action_dim)
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
            objective = mixed_objective(agent, shared_alpha, ocfg, jnp.stack([p, 1.0 - p, 0.0]), config.gae_lambda,
                                        config.policy_loss_reduction, reinforce=False)
        else:
            objective = mixed_objective(agent, run.alpha, ocfg, run.mix, config.gae_lambda,
                                        config.policy_loss_reduction)
        new, pre, inputs, m = update_agent(agent, run.agent, w1, w2, m2, ku, objective, config.policy_clip_norm)
        m["ret_sum"] = rets[0] * dones[0] + rets[1] * dones[1]
        m["ret_n"] = dones[0] + dones[1]
        meta_state, meta_inputs = pre, inputs
        if meta_train:
            if config.meta_grad_state == "after_policy":
                meta_state = new
            if config.meta_batch == "separate":
                # A key of its own (folded, so the other keys of the cycle are those of earlier versions).
                w3, m3 = buffers.sample_windows(run.buffer, jax.random.fold_in(kw2, 1), meta_windows, config.window)
                meta_inputs = objective_inputs(agent, meta_state, w3, m3)
        return run.replace(agent=new), meta_state, meta_inputs, m

    def cycle(state: PopState, _):
        groups_out, grad_sum, metrics = [], None, {}
        for g, run in zip(groups, state.groups):
            run, meta_state, inputs, m = jax.vmap(lambda r: agent_cycle(g, r, state.alpha))(run)
            groups_out.append(run)
            if meta_train:
                grads, losses = population_meta_grads(state.alpha, ocfg, g.agent, meta_state.actor, meta_state.critic,
                                                      inputs, config.inner_steps, config.inner_lr,
                                                      config.inner_loss_reduction)
                if config.meta_clip == "agent":
                    grads, norms = clip_per_agent(grads, config.clip_norm)
                else:
                    norms = jax.vmap(optax.tree.norm)(grads)
                gs = jax.tree.map(lambda x: jnp.sum(x, 0), grads)
                grad_sum = gs if grad_sum is None else jax.tree.map(jnp.add, grad_sum, gs)
                m["meta_loss"] = losses
                m["meta_grad_norm"] = norms
            metrics[g.name] = m
        alpha, alpha_opt = state.alpha, state.alpha_opt
        if meta_train:
            g_mean = jax.tree.map(lambda x: x / n_total, grad_sum)
            upd, alpha_opt = tx.update(g_mean, alpha_opt, alpha)
            alpha = optax.apply_updates(alpha, upd)
            metrics["meta_grad_norm"] = optax.tree.norm(g_mean)
        return state.replace(groups=tuple(groups_out), alpha=alpha, alpha_opt=alpha_opt,
                             cycles=state.cycles + 1), metrics

    def evaluate_agent(g: Group, agent_state, key):
        return evaluate_episodes(g.env, lambda obs, k: g.agent.act(agent_state, obs, k, False), key,
                                 config.eval_episodes)

    def run_segment(state: PopState):
        state, m = jax.lax.scan(cycle, state, None, length=config.eval_every // 2)
        out, new_groups = {}, []
        for g, run in zip(groups, state.groups):
            mg = m[g.name]
            keys = jax.vmap(lambda k: jax.random.split(k))(run.key)
            ev = jax.vmap(lambda s, k: evaluate_agent(g, s, k))(run.agent, keys[:, 1])
            new_groups.append(run.replace(key=keys[:, 0]))
            mean = lambda k: jnp.mean(mg[k], 0)
            diag = {k: mean(k) for k in ("saturation", "objective_std", "pg_norm_objective", "pg_norm_critic")}
            if meta_train:
                diag.update(meta_loss=mean("meta_loss"), meta_grad_norm=mean("meta_grad_norm"),
                            meta_grad_norm_min=jnp.min(mg["meta_grad_norm"], 0),
                            meta_grad_norm_steps=mg["meta_grad_norm"])
            out[g.name] = dict(
                eval_return=ev,
                train_return=jnp.sum(mg["ret_sum"], 0) / jnp.maximum(jnp.sum(mg["ret_n"], 0), 1.0),
                critic_loss=mean("critic_loss"), actor_loss=mean("actor_loss"), **diag,
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
