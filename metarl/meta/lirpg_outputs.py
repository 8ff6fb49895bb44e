"""PPO-LIRPG's experiment helpers: a config from a step budget, and the summary of a run (IQM [95% CI] of the
final return per variant, the paper's max average return, P(PPO-LIRPG > PPO)); used by experiments/lirpg.py
and the meta-critic benchmark's PPO rows."""
from __future__ import annotations

import numpy as np

from metarl.meta.lirpg import LABELS, make_config

FINAL_EVALS = 3  # the final score of a run: its mean evaluation return over the last 3 evaluations


def build_config(num_envs: int, rollout: int, steps: int, eval_every: int, eval_episodes: int,
                 max_episode_steps: int | None = None, hidden=(64, 64), **lirpg):
    """A LIRPGConfig on PPO's preset with this budget; raises ValueError naming what does not fit."""
    ppo = dict(num_envs=num_envs, rollout=rollout, total_steps=steps, eval_every=eval_every,
               eval_episodes=eval_episodes, max_episode_steps=max_episode_steps, hidden=tuple(hidden),
               minibatch_size=min(64, num_envs * rollout))
    return make_config(ppo=ppo, **lirpg)


def final_scores(eval_return):
    r = np.asarray(eval_return, float)
    return r[:, -min(FINAL_EVALS, r.shape[1]):].mean(1)


def summarize(result: dict, variants=("ppo", "lirpg")) -> dict:
    """Per variant label: IQM [95% CI] of the final return over seeds, the paper's max average return
    (max over evaluations of the seed-average) and its std over seeds there, the per-seed finals; and,
    with both variants, P(PPO-LIRPG > PPO) with its interval and verdict (metarl.stats.compare)."""
    from metarl import stats

    out = {}
    for v in variants:
        r = np.asarray(result[v]["eval_return"], float)
        mean = r.mean(0)
        i = int(np.argmax(mean))
        fin = final_scores(r)
        out[LABELS[v]] = dict(stats.summary_row(fin), max_avg=float(mean[i]), std_at_max=float(r[:, i].std()),
                              final=fin.tolist(), env_steps=np.asarray(result[v]["env_steps"])[0].tolist())
    if {"ppo", "lirpg"} <= set(variants) and len(out["PPO"]["final"]) > 1:
        c = stats.compare(final_scores(result["lirpg"]["eval_return"]), final_scores(result["ppo"]["eval_return"]))
        out["lirpg_vs_ppo"] = dict(c, claim="PPO-LIRPG > PPO (Zheng et al. 2018)")
    return out
