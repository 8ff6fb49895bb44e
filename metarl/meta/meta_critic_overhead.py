"""What the Online Meta-Critic costs per update against its base agent: XLA FLOPs, wall time, parameters.

:func:`measure_overhead` times the training loop's own update program for the base agent and its -MC
wrapper (the '+updates' control's K is the measured wall-time overhead); :func:`scaled_hidden` finds the
wider networks of the '+params' control. ``cfg`` is any object with ``algo``, ``agent`` (agent config
overrides), ``lookahead`` and ``weight_decay`` (``experiments.meta_critic.ExperimentConfig``).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from metarl.agents import make_agent
from metarl.agents.base import scheduled_update
from metarl.compile_clock import xla_flops
from metarl.meta.meta_critic import MetaCriticConfig, make_meta_critic


def runner_period(agent):
    """(period, f): ``f(state, batch, key)`` is the update work of ``period`` environment steps exactly as
    :func:`metarl.train.make_functions` lays it out (TD3: the delay's phases statically, one policy step
    per period; otherwise one ``update``), so its cost is the cost the training loop pays."""
    period, update_at = scheduled_update(agent)

    def f(state, batch, key):
        if period == 1:
            return agent.update(state, batch, key)[0]
        for i, k in enumerate(jax.random.split(key, period)):
            state = update_at(state, batch, k, i)[0]
        return state

    return period, f


def measure_overhead(cfg, spec, n_periods: int = 10, rounds: int = 15) -> dict:
    """Cost of -MC's updates against its base agent's: XLA FLOPs and wall time, and parameter count.

    What is measured is the training loop's own update program (:func:`runner_period`: TD3's delay laid
    out statically, so TD3-MC meta-steps on its policy steps only), vmapped over a run axis of 1 as in
    :class:`metarl.train.Runner`, with the same networks and batch size as the runs (``cfg.agent``) and the
    default meta-critic (no guard, no extra updates). FLOPs: XLA's cost analysis of one period (the timed
    program's loop body). Wall time: ``n_periods`` periods per timed call (a ``lax.scan``, so no per-update
    dispatch), compiled and warmed up before timing, the two programs timed in alternating order over
    ``rounds`` rounds so that load from other processes hits both alike; the ratio is the median of the
    per-round ratios.
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

        def loop(s, b=b, vf=vf):
            def body(s, key):
                return vf(s, b, key[None]), None
            return jax.lax.scan(body, s, jax.random.split(jax.random.PRNGKey(1), n_periods))[0]

        # One compile serves both measures: XLA's cost analysis counts a loop's body once, so the timed
        # program's FLOPs are one period's (tests/test_meta_critic.py checks them against the period alone).
        lf = jax.jit(loop).lower(state).compile()
        flops = xla_flops(lf)
        jax.block_until_ready(lf(state))  # first run, not timed
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


def scaled_hidden(cfg, spec, frac: float) -> dict:
    """Hidden layers of actor and critic scaled by one factor so the parameter count grows by ``frac``."""
    from metarl import nets

    base = make_agent(cfg.algo, spec, **cfg.agent)

    def count(scale):
        ah = tuple(max(1, int(round(h * scale))) for h in base.config.actor_hidden)
        ch = tuple(max(1, int(round(h * scale))) for h in base.config.critic_hidden)
        agent = make_agent(cfg.algo, spec, **{**cfg.agent, "actor_hidden": ah, "critic_hidden": ch})
        # shapes only: the bisection below evaluates ~30 sizes, and initialising each for real compiled
        # ~150 small programs per algorithm (~30 s of a 2-core CPU); the counts are the same
        st = jax.eval_shape(lambda: agent.init(jax.random.PRNGKey(0), {}))
        return nets.count_params(st.actor) + nets.count_params(st.critic), ah, ch

    n0 = count(1.0)[0]
    lo, hi = 1.0, 2.0
    for _ in range(30):  # bisection on the scale
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(mid)[0] < (1 + frac) * n0 else (lo, mid)
    n1, ah, ch = count(hi)
    return dict(actor_hidden=ah, critic_hidden=ch, params=n1, base_params=n0, growth=n1 / n0 - 1.0)
