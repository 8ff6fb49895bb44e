"""Table 1's on-policy columns of the Online Meta-Critic benchmark: PPO and PPO-LIRPG.

The paper's Table 1 (Zhou et al. 2020) has PPO and PPO-LIRPG (Zheng et al. 2018) columns on the MuJoCo
tasks. ``benchmarks/meta_critic.py`` calls :func:`run_onpolicy` after its off-policy jobs (when Table 1
is planned) and passes the result to :func:`summary_entries` (summary.json's "PPO", "PPO-LIRPG" and "PPO-LIRPG vs PPO") and
benchmarks.meta_critic.tables (the PPO-LIRPG vs PPO rows of tables.md's Table 1).

What runs: on every task of the scale's Table 1 (quick: gymnax Pendulum-v1, not a paper task; medium:
InvPend, InvDouPend, Reacher; paper: all seven), PPO and PPO-LIRPG as one vmapped program
(metarl/meta/lirpg.py; PPO is the same program with the intrinsic reward off) on the same seeds,
environment steps, evaluation interval, evaluation episodes and episode length as the off-policy
columns of that task (all steps on-policy: no random warm-up). PPO's MuJoCo hyperparameters, with the
batch scaled to the budget (:data:`BATCH`). Every finished task is kept in
``runs/<env>_onpolicy/job.json``; an unfinished one continues from its checkpoint with ``--resume``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

LABELS = ("PPO", "PPO-LIRPG")
# (num_envs, rollout) per scale: batches that divide the 1000-step evaluation interval; the paper scale
# uses PPO's single environment with a 2000-step batch (PPO's MuJoCo setting is 2048).
BATCH = {"quick": (4, 125), "medium": (4, 250), "paper": (1, 2000), "smoke": (2, 25)}


def onpolicy_envs(cfg) -> list[str]:
    """The tasks of the scale's Table 1 (with --only: those named there as a bare env)."""
    out = list(cfg.table1_envs)
    if cfg.only:
        out = [e for e in out if e in cfg.only]
    return out


def onpolicy_config(cfg, env: str):
    """The LIRPGConfig of one task at the benchmark's scale (same steps, evaluations, episode length)."""
    from metarl.meta.lirpg_outputs import build_config

    num_envs, rollout = BATCH["smoke" if cfg.smoke else cfg.scale]
    batch = num_envs * rollout
    eval_every = -(-cfg.eval_every // batch) * batch
    steps = max(cfg.env_steps.get(env, cfg.total_steps) // eval_every, 1) * eval_every
    return build_config(num_envs, rollout, steps, eval_every, cfg.eval_episodes,
                        cfg.episode_steps.get(env, cfg.max_episode_steps))


def _read(path):
    with open(path) as f:
        return json.load(f)


def run_onpolicy(cfg, out: str, resume: bool = False, progress: bool = True) -> dict:
    """Run PPO and PPO-LIRPG on :func:`onpolicy_envs`; returns {env: {wall_s, steps, seeds, config,
    variants: {ppo|lirpg: {eval_return [seeds, evals], env_steps, ...}}, summary: {PPO|PPO-LIRPG: {final
    (per seed), iqm, ci, max_avg, std_at_max}, lirpg_vs_ppo}}} (metarl.meta.lirpg_outputs.summarize)."""
    import jax
    from metarl.cli import progress_bar

    from metarl.meta.lirpg_outputs import summarize
    from metarl.meta import lirpg as lp
    from metarl.train import jsonable, write_json

    results = {}
    for i, env in enumerate(onpolicy_envs(cfg)):
        lcfg = onpolicy_config(cfg, env)
        job_dir = os.path.join(out, "runs", f"{env.replace('/', '_')}_onpolicy")
        job_file = os.path.join(job_dir, "job.json")
        conf = jsonable(dataclasses.asdict(lcfg))
        stored = _read(job_file) if resume and os.path.isfile(job_file) else None
        if stored is not None and (stored["config"] != conf or stored["seeds"] != cfg.seeds):
            raise SystemExit(f"benchmarks.meta_critic: cannot resume {job_dir}: it was run with other settings "
                             "(job.json); resume with the same --scale/--only, or give another --out")
        if stored is None:
            bar = progress_bar(lcfg.ppo.num_evals, f"PPO/PPO-LIRPG on {env}", progress, unit="eval")
            t = time.perf_counter()
            try:
                res = lp.train(lcfg, env, jax.random.PRNGKey(1000 + i), cfg.seeds, lp.VARIANTS, run_dir=job_dir,
                               resume=resume, progress=lambda i, m: bar.update(1))
            except lp.ResumeMismatch as e:
                raise SystemExit(f"benchmarks.meta_critic: {e}; resume with the same --scale/--only, or give "
                                 "another --out") from None
            finally:
                bar.close()
            stored = dict(config=conf, seeds=cfg.seeds, steps=lcfg.ppo.total_steps, wall_s=time.perf_counter() - t,
                          variants={v: {k: np.asarray(res[v][k]).tolist() for k in ("eval_return", "env_steps",
                                                                                      "meta_loss", "r_in_std")}
                                    for v in lp.VARIANTS})
            write_json(job_file, stored)
        res = {v: {k: np.asarray(x) for k, x in d.items()} for v, d in stored["variants"].items()}
        results[env] = dict(stored, summary=summarize(res))
    return results


def summary_entries(cfg, onpolicy: dict) -> dict:
    """summary.json's on-policy entries (written at its top level, the metric as "onpolicy_metric"): {"PPO": {env: {iqm, ci, max_avg, std_at_max, final, paper_max_avg,
    steps, seeds}}, "PPO-LIRPG": {...}, "PPO-LIRPG vs PPO": {env: P(LIRPG > PPO), its CI, verdict}}."""
    from benchmarks.meta_critic import ENV_ROWS, paper_value, read_paper_table
    from metarl.meta.lirpg_outputs import FINAL_EVALS, summarize

    t1 = read_paper_table(1)
    out = {"metric": f"final return = mean of the last {FINAL_EVALS} evaluations per seed, IQM [95% stratified-"
                     "bootstrap CI] over seeds; max_avg = the paper's (max over evaluations of the seed-average)",
           "PPO": {}, "PPO-LIRPG": {}, "PPO-LIRPG vs PPO": {}}
    for env, job in onpolicy.items():
        s = job.get("summary") or summarize({v: {k: np.asarray(x) for k, x in d.items()}
                                             for v, d in job["variants"].items()})
        for lab in LABELS:
            out[lab][env] = dict(s[lab], paper_max_avg=paper_value(t1, "environment", ENV_ROWS.get(env, env), lab),
                                 steps=job["steps"], seeds=job["seeds"], wall_s=job["wall_s"],
                                 verdict="descriptive (no claim)")  # the claim is the "vs" row
        if "lirpg_vs_ppo" in s:
            out["PPO-LIRPG vs PPO"][env] = s["lirpg_vs_ppo"]
    return out
