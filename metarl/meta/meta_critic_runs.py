"""The Online Meta-Critic experiment (Zhou et al., NeurIPS 2020, Tables 1-3): {DDPG, TD3, SAC} x {vanilla,
+updates, MC variants, +params} on one task through ``metarl.train.Runner``: its settings
(:class:`ExperimentConfig`), the variants' traced meta-hyperparameters, :func:`run_experiment` and the paper's
metrics. The command line (``experiments/meta_critic.py``) and the benchmark (``benchmarks/meta_critic``)
both call these.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from metarl.agents import make_agent
# the settings, jax-free (re-exported for this module's callers)
from metarl.meta.meta_critic_config import (ALGOS, K_SOURCES, LABELS, LOOKAHEADS, MC_METRICS, MEASURED_OVERHEAD,  # noqa: F401
                                            OWN_PROGRAM_VARIANTS, RUN_DIRS, SHARED_VARIANTS, VARIANTS, ExperimentConfig)
from metarl.meta.meta_critic import GUARD_RESET_AFTER, MetaCriticConfig, make_meta_critic
from metarl.meta.meta_critic_overhead import measure_overhead, scaled_hidden

# ----------------------------------------------------------------------------------------------------
# Brax experiments: {DDPG, TD3, SAC} x {vanilla, +updates, MC variants, +params} (Tables 1-3)
# ----------------------------------------------------------------------------------------------------


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





def run_experiment(cfg: ExperimentConfig, out_dir: str | None = None, progress: bool = True, overhead=None,
                   resume: bool = False) -> dict:
    """Train every requested variant; returns {variant: {eval_return [seeds, evals], ...}, 'overhead': ...}.

    ``resume``: each program whose run directory under ``out_dir`` holds a started run continues from its
    checkpoint (the Runner refuses, in one line, a run directory whose config differs); the others start
    fresh. The overhead measured for '+updates' (K) and '+params' (N) is written to ``out_dir``/
    ``MEASURED_OVERHEAD`` before any training, and a resumed call of the same config reads it back, so the
    resumed programs get the same K and N as before (a wall-time K measured again would differ). An
    ``overhead`` passed in is used as it is."""
    from metarl import envs
    from metarl.train import Runner, jsonable, write_json

    cfg.validate()
    spec = envs.make(cfg.env, max_episode_steps=cfg.max_episode_steps).spec
    need_overhead = ("updates" in cfg.variants and cfg.updates_k is None) or \
                    ("params" in cfg.variants and cfg.params_n is None)
    stored = os.path.join(out_dir, MEASURED_OVERHEAD) if out_dir else None
    identity = jsonable(dataclasses.asdict(cfg))
    if not overhead and need_overhead and resume and stored and os.path.isfile(stored):
        with open(stored) as f:
            prev = json.load(f)
        if prev.get("config") == identity:
            overhead = prev["overhead"]
    if not overhead and need_overhead:
        overhead = measure_overhead(cfg, spec)
        if stored:
            os.makedirs(out_dir, exist_ok=True)  # (a benchmark's job folder does not exist yet)
            write_json(stored, {"config": identity, "overhead": overhead})
    overhead = overhead or {}
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


# The run directories run_experiment writes under its output folder (one per compiled program), and the
# file that keeps the measured overhead (K, N) for a resume.



def paper_metrics(eval_return) -> dict:
    """Max over evaluation points of the seed-average return (std over seeds there), and the sum."""
    r = np.asarray(eval_return, float)
    mean = r.mean(0)
    i = int(np.argmax(mean))
    return dict(max_avg=float(mean[i]), std_at_max=float(r[:, i].std()), sum_avg=float(mean.sum()),
                final_avg=float(mean[-1]))
