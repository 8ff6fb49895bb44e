"""MetaGenRL's runs at a scale (metarl.meta.metagenrl.protocol): meta-train a population's objective, meta-test
saved objectives on fresh agents beside the fixed-objective baselines, and the random-policy and on-policy
rows. Each is a resumable stage on the shared segment loop (metarl.driver.segments). The command line
(``experiments/metagenrl.py``) and the benchmark (``benchmarks/metagenrl``) both call these.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from metarl.agents import onpolicy as op
from metarl.driver.segments import StopFlag, drop_checkpoint, run_segments
from metarl.meta import metagenrl as mg
from metarl.cli import progress_bar
from metarl.meta.metagenrl.protocol import BASELINES, Scale

__all__ = ["meta_train", "meta_test", "random_test", "onpolicy_test", "alpha_digest", "TEST_METRICS"]


def _np(tree):
    return jax.tree.map(lambda x: np.asarray(x), tree)


def _stack(history: list, name: str, axis: int = 0) -> dict:
    """{metric: array} of one group, the segments stacked along ``axis``."""
    return {k: np.stack([np.asarray(h[name][k]) for h in history], axis=axis) for k in history[0][name]}


def metrics_blocks(result: dict, mode: str) -> list:
    """:func:`meta_train`'s or :func:`meta_test`'s result as blocks for metarl.driver.write_metrics (a row
    per agent and evaluation): meta-train, per environment, its agents' metrics; meta-test, per environment
    and variant (learned objectives, baselines, on-policy rows), its seeds'."""
    def two_d(m):  # the metrics with a row axis and a point axis
        return {k: np.asarray(v) for k, v in m.items() if np.ndim(v) == 2}

    def block(m, label):  # a row per entry of the first axis
        return [label(i) for i in range(next(iter(m.values())).shape[0] if m else 0)], m

    if mode == "meta-train":  # {env: {metric: [evals, agents]}}
        return [block({k: v.T for k, v in two_d(m).items()}, lambda i, env=env: {"env": env, "agent": i})
                for env, m in result["metrics"].items()]
    # {env: {variant: {metric: [seeds, evals]}}}
    return [block(two_d(m), lambda s, env=env, variant=variant: {"env": env, "variant": variant, "seed": s})
            for env, per in result["results"].items() for variant, m in per.items()]


def alpha_digest(alpha) -> str:
    """sha256 over an objective's arrays (shape, dtype, bytes): part of a meta-test stage's identity."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(jax.device_get(alpha)):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def meta_train(scale: Scale, train: tuple, out_dir: str, seed: int = 0, objective: mg.ObjectiveConfig | None = None,
               inner_steps: int | None = None, progress: bool = True, config: mg.MetaGenRLConfig | None = None,
               resume: bool = False, stop: StopFlag | None = None, checkpoint_every: int | None = None):
    """Meta-train one objective on the named training environments; saves it (orbax) before meta-training
    as ``out_dir/initial``, at ``scale.stages`` evenly spaced points under ``out_dir/stage_<i>`` and the
    last one also as ``out_dir/final``.
    The population is checkpointed in ``out_dir/checkpoint/`` every ``checkpoint_every`` evaluations
    (default ``scale.checkpoint_every``); ``resume=True`` continues from it (SIGINT through ``stop``:
    :func:`run_segments`); the checkpoint is removed when the objective is final.
    Returns a dict: per-environment metrics [evals, agents] (see ``mg.make_population``), meta_grad_norm
    [evals] (the averaged gradient's), meta_grad_summary (per-agent first / last / min meta-gradient
    norms and any collapse warnings, from ``mg.MetaGradMonitor``), wall times, paths."""
    cfg = config or scale.train
    names = [scale.envs[n] for n in train]
    cfg = dataclasses.replace(cfg, envs=tuple(names), agents_per_env=max(scale.total_agents // len(names), 1),
                              objective=objective or cfg.objective, inner_steps=inner_steps or cfg.inner_steps)
    groups = mg.make_groups(cfg)
    init, segment, _ = mg.make_population(cfg, groups, meta_train=True)
    monitor = mg.MetaGradMonitor(cfg, groups)
    t0 = time.perf_counter()
    key = jax.random.PRNGKey(seed)
    n = cfg.num_evals
    save_at = sorted({max(1, round(n * (i + 1) / scale.stages)) for i in range(scale.stages)})
    paths = {f"stage_{j + 1}": os.path.join(out_dir, f"stage_{j + 1}") for j in range(len(save_at))}
    bar = progress_bar(n, f"meta-train {'&'.join(train)}", progress)

    def on_segment(i, m):
        monitor.update(m)  # warns on a collapsed meta-gradient; drops the per-step norms from m
        bar.set_postfix({k[-12:]: f"{np.mean(v['eval_return']):.0f}" for k, v in m.items() if isinstance(v, dict)})
        if i in save_at:
            j = save_at.index(i) + 1
            mg.save_objective(paths[f"stage_{j}"], state_box[0].alpha, cfg.objective,
                              {"train": list(train), "env_steps_per_agent": cfg.learning_starts + i * cfg.eval_every,
                               "inner_steps": cfg.inner_steps, "seed": seed})
        return m

    # on_segment needs the state after the segment: wrap the segment to keep it.
    state_box = [None]
    seg_c = jax.jit(segment)

    def seg(state):
        state, m = seg_c(state)
        state_box[0] = state
        return state, m

    identity = {"stage": "meta-train", "train": list(train), "seed": seed, "config": dataclasses.asdict(cfg),
                "stages": save_at}
    # The objective before any meta-update (the population's initial alpha): meta-testing it beside the
    # final one shows what meta-training changed, on the same seeds.
    paths["initial"] = os.path.join(out_dir, "initial")
    if not (resume and os.path.isdir(paths["initial"])):
        mg.save_objective(paths["initial"], jax.jit(init)(key).alpha, cfg.objective,
                          {"train": list(train), "env_steps_per_agent": 0, "inner_steps": cfg.inner_steps,
                           "seed": seed, "stage": "initial (before meta-training)"})
    state, history = run_segments(
        seg, lambda: jax.jit(init)(key), jax.eval_shape(init, key), n, out_dir, identity, resume=resume,
        on_segment=on_segment, extra=(monitor.state_dict, monitor.load_state_dict), stop=stop,
        checkpoint_every=checkpoint_every or scale.checkpoint_every, bar=bar,
        place_runs=cfg.agents_per_env)  # each group's agents split across devices, if there are several
    bar.close()
    final = os.path.join(out_dir, "final")
    mg.save_objective(final, state.alpha, cfg.objective, {"train": list(train), "inner_steps": cfg.inner_steps,
                                                          "seed": seed})
    paths["final"] = final
    drop_checkpoint(out_dir)
    metrics = {g.name: _stack(history, g.name) for g in groups}
    return dict(metrics=metrics, meta_grad_norm=np.asarray([h["meta_grad_norm"] for h in history]),
                meta_grad_summary=monitor.summary(), wall_s=time.perf_counter() - t0, paths=paths,
                config=dataclasses.asdict(cfg), alpha_sha256=alpha_digest(state.alpha))


# Kept per meta-test agent and evaluation ([seeds, evals]); the diagnostics are segment means.
TEST_METRICS = ("eval_return", "train_return", "env_steps", "saturation", "objective_std", "pg_norm_objective",
                "pg_norm_critic")


def meta_test(scale: Scale, objectives: dict, test: tuple, seed: int = 100, baselines=True,
              progress: bool = True, seeds: int | None = None, config: mg.MetaGenRLConfig | None = None,
              ckpt_dir: str | None = None, resume: bool = False, stop: StopFlag | None = None):
    """Train fresh agents on each test environment: ``seeds`` agents per objective (frozen, loaded
    with orbax; all must share one ObjectiveConfig) plus the fixed-objective ``baselines`` (True: TD3
    and off-policy REINFORCE+GAE; or a tuple of labels of :data:`BASELINES`; False: none), all
    variants of one environment vmapped in one program, on the same seeds. With ``ckpt_dir`` the
    program is checkpointed there as it runs and ``resume=True`` continues it (:func:`run_segments`).

    ``objectives``: {label: path}. Returns {env_label: {variant_label: {eval_return [seeds, evals], ...}}}.
    """
    cfg = config or scale.test
    seeds = seeds or scale.test_seeds
    loaded = {k: mg.load_objective(p) for k, p in objectives.items()}
    ocfgs = {c for _, c, _ in loaded.values()}
    if len(ocfgs) > 1:
        raise ValueError("meta_test: all objectives of one run must share an ObjectiveConfig; run ablations separately")
    ocfg = ocfgs.pop() if ocfgs else cfg.objective
    cfg = dataclasses.replace(cfg, objective=ocfg, envs=tuple(scale.envs[n] for n in test))
    variants = [(k, loaded[k][0], mg.VARIANTS["learned"]) for k in objectives]
    fixed = BASELINES if baselines is True else tuple(baselines or ())
    bad = [b for b in fixed if b not in BASELINES]
    if bad:
        raise ValueError(f"unknown baseline(s) {bad}; valid: {', '.join(BASELINES)}")
    if fixed:
        dummy = next(iter(loaded.values()))[0] if loaded else mg.init_objective(jax.random.PRNGKey(0), ocfg)
        mix = {"TD3": mg.VARIANTS["td3"], "off-policy REINFORCE": mg.VARIANTS["reinforce"]}
        variants += [(b, dummy, mix[b]) for b in fixed]
    n = len(variants) * seeds
    alphas = jax.tree.map(lambda *a: jnp.stack([x for x in a for _ in range(seeds)]), *[v[1] for v in variants])
    mixes = jnp.asarray([v[2] for v in variants for _ in range(seeds)], jnp.float32)
    groups = mg.make_groups(cfg, n=n)
    init, segment, _ = mg.make_population(cfg, groups, meta_train=False)
    t0 = time.perf_counter()
    key = jax.random.PRNGKey(seed)

    def init_state(k):
        # Every variant on an environment uses the same seeds (agent/env keys): paired comparisons.
        state = init(k, variants=[(alphas, mixes)] * len(groups))
        return state.replace(groups=tuple(_same_seeds(r, len(variants), seeds) for r in state.groups))

    identity = {"stage": "meta-test", "test": list(test), "seed": seed, "seeds": seeds,
                "variants": [v[0] for v in variants], "mixes": [list(v[2]) for v in variants],
                "objectives": {k: alpha_digest(loaded[k][0]) for k in objectives}, "config": dataclasses.asdict(cfg)}
    bar = progress_bar(cfg.num_evals, f"meta-test on {'&'.join(test)}", progress)
    _, history = run_segments(jax.jit(segment), lambda: jax.jit(init_state)(key), jax.eval_shape(init_state, key),
                              cfg.num_evals, ckpt_dir, identity, resume=resume, stop=stop,
                              checkpoint_every=scale.checkpoint_every, bar=bar, place_runs=n)
    bar.close()
    drop_checkpoint(ckpt_dir)
    out = {}
    for label, g in zip(test, groups):
        per = {k: v for k, v in _stack(history, g.name, axis=1).items() if k in TEST_METRICS}
        out[label] = {v[0]: {k: x[i * seeds:(i + 1) * seeds] for k, x in per.items()} for i, v in enumerate(variants)}
    return dict(results=out, wall_s=time.perf_counter() - t0, config=dataclasses.asdict(cfg),
                variants=[v[0] for v in variants], seeds=seeds)


def random_test(scale: Scale, test: tuple, seed: int = 100, seeds: int | None = None, config=None,
                policy: str = "random"):
    """The random-policy rows: on each test environment, ``seeds`` runs of the uniformly random policy
    (``mg.random_policy_return``), evaluated at the meta-test's evaluation points with its number of
    episodes (the random policy does not learn, so the budget only sets how many evaluations there
    are), each seed and evaluation with keys of its own from ``seed``.
    ``policy="zero"``: the zero-action policy (``mg.zero_action_return``) instead, label "zero action".
    Returns {env_label: {"random": {eval_return [seeds, evals], env_steps [seeds, evals]}}}."""
    fixed = {"random": (mg.random_policy_return, "random"), "zero": (mg.zero_action_return, "zero action")}
    if policy not in fixed:
        raise ValueError(f"unknown policy {policy!r}; valid: {', '.join(fixed)}")
    policy_return, label_out = fixed[policy]
    cfg = config or scale.test
    seeds = seeds or scale.test_seeds
    out, t0 = {}, time.perf_counter()
    steps = cfg.learning_starts + cfg.eval_every * np.arange(1, cfg.num_evals + 1)
    for j, label in enumerate(test):
        env = mg.make_env(scale.envs[label], cfg.max_episode_steps)
        keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), j), seeds * cfg.num_evals)
        f = jax.jit(jax.vmap(lambda k: policy_return(env, k, cfg.eval_episodes)))
        ret = np.asarray(f(keys)).reshape(seeds, cfg.num_evals)
        out[label] = {label_out: {"eval_return": ret, "env_steps": np.tile(steps, (seeds, 1))}}
    return dict(results=out, wall_s=time.perf_counter() - t0, seeds=seeds)


def onpolicy_test(scale: Scale, test: tuple, seed: int = 100, seeds: int | None = None, progress: bool = True):
    """The on-policy baselines (PPO, REINFORCE+GAE) on each test environment, ``seeds`` runs each (one
    vmapped program per algorithm and environment; seed keys from ``seed`` as in :func:`meta_test`).
    Returns {env_label: {variant_label: {eval_return [seeds, evals], train_return, env_steps}}}."""
    seeds = seeds or scale.test_seeds
    out, t0 = {}, time.perf_counter()
    for label in test:
        out[label] = {}
        for name, cfg in scale.onpolicy.items():
            bar = progress_bar(cfg.num_evals, f"{name} on {label}", progress)
            r = op.train(cfg, scale.envs[label], jax.random.PRNGKey(seed), seeds, progress=lambda i: bar.update(1))
            bar.close()
            out[label][name] = {k: r[k] for k in ("eval_return", "train_return", "env_steps")}
    return dict(results=out, wall_s=time.perf_counter() - t0, seeds=seeds,
                config={k: dataclasses.asdict(c) for k, c in scale.onpolicy.items()})


def _same_seeds(run, n_variants, seeds):
    """Give variant v's seed s the initial agent, environment, buffer and key of variant 0's seed s."""
    idx = jnp.asarray([s for _ in range(n_variants) for s in range(seeds)])
    keep = {"alpha": run.alpha, "mix": run.mix}
    run = jax.tree.map(lambda x: x[idx], run)
    return run.replace(**keep)
