"""The Online Meta-Critic benchmark's tables and figures: Table 1 (IQM [95% CI] of the final return per
variant, ours / paper, verdicts), Tables 2 and 3 as comparisons, the tabular MDP's lines, the curves."""
from __future__ import annotations


import numpy as np

from benchmarks.meta_critic.config import (ALGOS, ENV_ROWS, FINAL_EVALS, PAIR_HEAD, BenchConfig, job_config, job_key,
                                           pair_line, paper_value, read_paper_table, table_note)


def curves_png(res, env, algo, path):
    from metarl.meta.meta_critic_runs import LABELS
    from metarl.plots import _plt, curves, save_fig

    plt = _plt()
    vs = [v for v in res if isinstance(res[v], dict) and "eval_return" in res[v]]
    if not vs:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = res[vs[0]]["env_steps"]
    curves(ax, steps, {LABELS[v].format(A=algo.upper()): res[v]["eval_return"] for v in vs}, "evaluation return")
    ax.set_xlabel("environment steps")
    ax.set_title(f"{env} ({res[vs[0]]['eval_return'].shape[0]} seeds)")
    save_fig(fig, path)
    plt.close(fig)


def tables(cfg: BenchConfig, summary: dict, rows=(), ablations=(), onp=None) -> str:
    """tables.md's paper tables: Table 1 (each algorithm's -MC vs its vanilla per task, and PPO-LIRPG vs PPO
    from ``onp`` = meta_critic_onpolicy.summary_entries), Tables 2 and 3 (the ablation pairs), every row
    with ours as IQM [95% CI] over seeds, both max average returns (ours / paper) and the verdict."""
    out = [f"## Online Meta-Critic, scale '{cfg.scale}'{' SMOKE RUN (a few steps; numbers mean nothing)' if cfg.smoke else ''}"
           f", {cfg.seeds} seeds"]
    if "1" in cfg.tables or onp:
        out += table1_lines(cfg, summary, rows, onp)
    for t in ("2", "3"):
        if t in cfg.tables:
            out += ablation_lines(cfg, t, [r for r in ablations if r["table"] == t])
    return "\n".join(out) + "\n"


def table1_lines(cfg, summary, rows, onp=None) -> list[str]:
    t1 = read_paper_table(1)
    out = ["", "### Table 1", "", table_note(), "", *PAIR_HEAD]
    by = {(r["env"], r["algo"]): r for r in rows}
    for env in (cfg.table1_envs if "1" in cfg.tables else ()):
        name = ENV_ROWS.get(env, env)
        for algo in cfg.table1_algos.get(env, ALGOS):
            pair = f"{algo.upper()}-MC vs {algo.upper()}"
            r = by.get((env, algo))
            if r is None:  # not (yet) run: the paper's figures alone
                out.append(pair_line(f"{name} ({env})", pair, None, None,
                                     {"paper": paper_value(t1, "environment", name, f"{algo.upper()}-MC")},
                                     {"paper": paper_value(t1, "environment", name, algo.upper())},
                                     None, "a >= b", "not run"))
                continue
            d = {v: {"iqm": r[v]["iqm"], "ci": r[v]["ci"], "max_avg": r[v]["max_avg"], "paper": r[v]["paper_max_avg"]}
                 for v in ("vanilla", "mc")}
            out.append(pair_line(f"{name} ({env})", pair, r["steps"], r["seeds"], d["mc"], d["vanilla"], r,
                                 "a >= b", r["claim_verdict"]))
    for env in (onp or {}).get("PPO", {}):
        a, b = onp["PPO-LIRPG"][env], onp["PPO"][env]
        c = onp["PPO-LIRPG vs PPO"].get(env)
        d = [{"iqm": x["iqm"], "ci": x["ci"], "max_avg": x["max_avg"], "paper": x["paper_max_avg"]} for x in (a, b)]
        out.append(pair_line(f"{ENV_ROWS.get(env, env)} ({env})", "PPO-LIRPG vs PPO", b["steps"], b["seeds"], *d, c,
                             "a > b (Zheng et al.)", c["claim_verdict"] if c else "-"))
    if onp and onp.get("PPO"):
        out += ["", "PPO / PPO-LIRPG: metarl/meta/lirpg.py, one vmapped program per task, the same seeds and environment "
                "steps as the off-policy rows (all on-policy). The paper's own Table 1 has PPO-LIRPG below PPO on "
                "most tasks; the claim read here is LIRPG's (Zheng et al. 2018)."]
    return out


def ablation_lines(cfg, table: str, rows: list[dict]) -> list[str]:
    if table == "2":
        out = ["", f"### Table 2 (SAC ablation; paper: Walker2d, ours: {cfg.table2_env})", "",
               table_note(" (Walker2d, ± std over its 5 seeds)")]
    else:
        out = ["", "### Table 3 (compute and parameter controls)", "",
               table_note(" on the same task where the paper has it")]
    out += ["", *PAIR_HEAD]
    for r in rows:
        a = {"iqm": r["iqm_a"], "ci": r["ci_a"], "max_avg": r.get("max_avg_a"), "paper": r.get("paper_max_avg_a"),
             "paper_std": r.get("paper_std_a")}
        b = {"iqm": r["iqm_b"], "ci": r["ci_b"], "max_avg": r.get("max_avg_b"), "paper": r.get("paper_max_avg_b"),
             "paper_std": r.get("paper_std_b")}
        out.append(pair_line(f"{ENV_ROWS.get(r['env'], r['env'])} ({r['env']})", f"{r['a_name']} vs {r['b_name']}",
                             r.get("steps"), r["seeds"], a, b, r, "a > b" if r["paper_claim"] else "-",
                             r["verdict_on_claim"]))
    return out


def final_scores(eval_return) -> np.ndarray:
    """Per seed, the mean evaluation return over the last FINAL_EVALS evaluation points."""
    r = np.asarray(eval_return, float)
    return r[:, -min(FINAL_EVALS, r.shape[1]):].mean(1)


def table1_summary(cfg: BenchConfig, summary: dict, finals: dict, jobs) -> list[dict]:
    """Table 1 rows: per (env, algo), vanilla and -MC as IQM [95% stratified-bootstrap CI] of the final
    return and the paper's max average return, P(MC > vanilla) with its interval, and the verdict from that
    interval (better / worse / inconclusive; the paper's claim is 'better or equal')."""
    from metarl import stats

    if "1" not in cfg.tables:  # Tables 2-3 alone: their vanilla/-MC runs are not Table 1's programs
        return []
    t1 = read_paper_table(1)
    rows = []
    for env, algo, variants in jobs:
        key = job_key(env, algo)
        if env not in cfg.table1_envs or key not in finals or not {"vanilla", "mc"} <= set(finals[key]):
            continue
        van, mc = finals[key]["vanilla"], finals[key]["mc"]
        c = stats.compare(mc, van, claim="higher")
        name = ENV_ROWS.get(env, env)
        ecfg = job_config(cfg, env, algo, variants)
        row = {"label": f"Table 1 {name} {algo.upper()}-MC vs {algo.upper()}", "env": env, "algo": algo,
               "steps": ecfg.total_steps, "seeds": cfg.seeds, "final_evals": FINAL_EVALS}
        for v, col in (("vanilla", algo.upper()), ("mc", f"{algo.upper()}-MC")):
            sr = stats.summary_row(finals[key][v])
            row[v] = {"iqm": sr["iqm"], "ci": sr["ci"], "max_avg": summary[key][v]["max_avg"],
                      "paper_max_avg": paper_value(t1, "environment", name, col)}
        row.update(c)  # iqm_a/ci_a (MC), iqm_b/ci_b (vanilla), p_improvement(_ci), verdict, claim_verdict
        row["iqm"], row["ci"] = row["mc"]["iqm"], row["mc"]["ci"]  # the method's row, as in every summary
        row["p_mc_better"] = c["p_improvement"]
        row["p_mc_better_ci"] = c["p_improvement_ci"]
        rows.append(row)
    return rows


# Tables 2 and 3 as comparisons of per-seed final returns: (table, algo, a, b, the paper's claim about a vs b).
# claim "higher": the paper reads a above b; None: no claim (our own ablation, or the paper reports a tie).
ABLATION_PAIRS = (
    ("2", "sac", "mc", "vanilla", "higher"),         # L_meta_clip h(pi_bar) vs SAC: 7164.9 vs 6398.8
    ("2", "sac", "mc_sa", "vanilla", "higher"),      # h(pi_bar, s, a): 7423.8
    ("2", "sac", "metareg", "vanilla", "higher"),    # h(phi), MetaReg: 6644.3
    ("2", "sac", "mc_plain", "vanilla", None),       # L_meta without the clip: 6456.1, about SAC's
    ("2", "sac", "mc", "mc_plain", "higher"),        # the clip is what helps: 7164.9 vs 6456.1
    ("2", "sac", "mc_guard", "mc", None),            # our re-initialisation guard (not in the paper)
    ("3", None, "mc", "updates", "higher"),          # -MC beats the compute control ...
    ("3", None, "mc", "params", "higher"),           # ... and the parameter control
)


# Our variant -> the paper's column: Table 2 (SAC on Walker2d; the guard is ours, not in the paper), Table 3
# (the suffix after the algorithm's name).
TABLE2_COLS = {"vanilla": "SAC", "mc": "clip_h_feature", "mc_sa": "clip_h_feature_sa", "metareg": "clip_h_metareg",
               "mc_plain": "plain_h_feature"}
TABLE3_COLS = {"vanilla": "", "updates": "+updates", "params": "+params", "mc": "-MC"}


def ablation_summary(cfg: BenchConfig, finals: dict, summary: dict | None = None, jobs=()) -> list[dict]:
    """Tables 2 and 3 with intervals: per pair of ABLATION_PAIRS that ran, both variants' IQM [95% CI] of
    the final return, P(a > b) with its interval, the outcome (better / worse / inconclusive, from that
    interval) and, where the paper makes a claim, the verdict on it; with ``summary`` (paper_metrics per job
    and variant) also both max average returns beside the paper's (Table 2: Walker2d, with its std)."""
    from metarl.meta.meta_critic_runs import LABELS
    from metarl import stats

    t2, t3 = read_paper_table(2), read_paper_table(3)
    steps = {job_key(env, algo): job_config(cfg, env, algo, variants).total_steps for env, algo, variants in jobs}
    rows = []
    for table, algo, a, b, claim in ABLATION_PAIRS:
        if table not in cfg.tables:
            continue
        envs = (cfg.table2_env,) if table == "2" else cfg.table3_envs
        for env in envs:
            for al in ((algo,) if algo else ALGOS):
                f = finals.get(job_key(env, al), {})
                if a not in f or b not in f:
                    continue
                c = stats.compare(f[a], f[b], claim=claim or "higher")
                name = lambda v: LABELS[v].format(A=al.upper())  # noqa: E731
                row = {"label": f"Table {table} {ENV_ROWS.get(env, env)} {name(a)} vs {name(b)}",
                       "table": table, "env": env, "algo": al, "a": a, "b": b, "a_name": name(a),
                       "b_name": name(b), "seeds": len(f[a]),
                       "final_evals": FINAL_EVALS, "paper_claim": f"{a} > {b}" if claim else None, **c,
                       "iqm": c["iqm_a"], "ci": c["ci_a"]}
                row["verdict_on_claim"] = c["claim_verdict"] if claim else "no claim (outcome only)"
                row["steps"] = steps.get(job_key(env, al))
                for side, v in (("a", a), ("b", b)):
                    row[f"max_avg_{side}"] = (summary or {}).get(job_key(env, al), {}).get(v, {}).get("max_avg")
                    if table == "2":
                        col = TABLE2_COLS.get(v)
                        row[f"paper_max_avg_{side}"] = col and paper_value(t2, "metric", "max_average_return", col)
                        row[f"paper_std_{side}"] = col and paper_value(t2, "metric", "max_average_return_std", col)
                    else:
                        row[f"paper_max_avg_{side}"] = paper_value(t3, "environment", ENV_ROWS.get(env, env),
                                                                   al.upper() + TABLE3_COLS[v])
                rows.append(row)
    return rows


def aggregate_png(cfg: BenchConfig, finals: dict, firsts: dict, rows: list[dict], path: str):
    """Table 1 pooled over its tasks: IQM [CI] and performance profile of the final return, each task
    normalised as (x - x0) / (paper - x0), x0 = the untrained agents' first evaluation (both variants);
    1 = the paper's max average return of vanilla."""
    from metarl import stats

    by_algo = {}
    for r in rows:
        key = job_key(r["env"], r["algo"])
        ref = r["vanilla"]["paper_max_avg"]
        x0 = float(np.median(np.concatenate([firsts[key][v] for v in ("vanilla", "mc")])))
        if ref is None or ref == x0:
            continue
        for v, lab in (("vanilla", r["algo"].upper()), ("mc", r["algo"].upper() + "-MC")):
            by_algo.setdefault(lab, []).append((finals[key][v] - x0) / (ref - x0))
    if by_algo:
        data = {k: np.stack(v, 1) for k, v in by_algo.items() if len({len(x) for x in v}) == 1}
        stats.plot_aggregate(data, path, title=f"Online Meta-Critic Table 1, scale '{cfg.scale}' "
                             f"({len(rows) // max(1, len(ALGOS))} tasks, {cfg.seeds} seeds; paper vanilla = 1)")
        return path
    return None


def tabular_lines(actor: str, tab: dict) -> list[str]:
    return ["", f"### Tabular MDP (Fig. 6), actor '{actor}'", "",
            f"- mean L_meta_clip over the first 200 updates: {tab['L_meta_early_mean']:.3g} (paper: below 0)",
            f"- L_critic (DDPG, DDPG-MC) averaged over training: "
            f"{np.round(tab['L_critic_mean_over_training'], 3).tolist()}; over the last 10% of updates: "
            f"{np.round(tab['L_critic_last10pct'], 3).tolist()}, DDPG-MC lower in "
            f"{tab['L_critic_last10pct_mc_lower_seeds']} of {tab['seeds']} seeds (paper: DDPG-MC lower); "
            f"P(MC higher) {tab['L_critic_claim']['p_improvement']:.2f} "
            f"{np.round(tab['L_critic_claim']['p_improvement_ci'], 2).tolist()}: "
            f"{tab['L_critic_claim']['claim_verdict']}",
            f"- expected return (DDPG, DDPG-MC), final: {np.round(tab['final_expected_return'], 2).tolist()}, "
            f"mean over episodes: {np.round(tab['mean_expected_return_over_episodes'], 2).tolist()}, "
            f"optimum {tab['optimal_return']:.2f}",
            f"- meta-steps with a zero meta-gradient: {tab['zero_meta_grad_steps']} of {tab['meta_steps']}"]
