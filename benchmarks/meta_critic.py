"""Online Meta-Critic benchmark: the paper's Tables 1, 2 and 3 with our numbers beside theirs.

    python -m benchmarks.meta_critic --scale quick   # minutes on a 2-core CPU (make bench-meta-critic)
    python -m benchmarks.meta_critic --scale medium --tables 1 [--resume]   # ~1 h on a 2-core CPU
    python -m benchmarks.meta_critic --scale paper   # the paper's budget, for an accelerator

Writes into results/meta_critic/ (results/meta_critic_<scale>/ for the other scales): tables.md (the
three tables, ours / paper), results.json (every number, the config, package versions, device, wall
time), summary.json (Table 1 rows: IQM [95% CI] of the final return per variant, the paper's max
average return, P(MC > vanilla) with its interval and the verdict from it), overhead.json,
learning-curve PNGs per environment and algorithm, table1_aggregate.png, and the tabular-MDP figures
(Fig. 6). Every finished job is kept in runs/<job>/job.json and each program checkpoints as it goes, so
an interrupted run continues with ``--resume``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from metarl.agents import agent_config

SCALES = ("quick", "medium", "paper")
ENV_ROWS = {"brax/halfcheetah": "HalfCheetah", "brax/hopper": "Hopper", "brax/walker2d": "Walker2d",
            "brax/ant": "Ant", "brax/reacher": "Reacher", "brax/inverted_pendulum": "InvPend",
            "brax/inverted_double_pendulum": "InvDouPend"}
ALGOS = ("ddpg", "td3", "sac")
TABLES = ("1", "2", "3", "fig6", "ppo")  # "ppo": Table 1's PPO and PPO-LIRPG columns

# The paper's tables (Zhou et al. 2020, Tables 1-3), as published; the reference column of our tables.
PAPER_TABLES = {
    1: """\
# Online Meta-Critic (NeurIPS 2020) Table 1: max average return over 5 trials over all time steps (MuJoCo-Gym v2, rllab, TORCS)
environment,DDPG,DDPG-MC,TD3,TD3-MC,SAC,SAC-MC,PPO,PPO-LIRPG
HalfCheetah,8440.2,15808.9,12735.7,15064.0,16651.8,16815.9,2061.5,1882.6
Hopper,1871.1,2776.7,3580.3,3670.4,3610.6,3738.4,3762.0,2750.0
Walker2d,2920.2,4543.5,5942.7,6298.0,6398.8,7164.9,4432.6,3652.9
Ant,2375.4,3661.1,5914.8,6280.0,6954.4,7204.3,684.2,23.6
Reacher,-3.6,-3.7,-3.0,-2.9,-2.8,-2.7,-6.08,-7.53
InvPend,1000.0,1000.0,1000.0,1000.0,1000.0,1000.0,988.2,971.6
InvDouPend,9307.5,9326.5,9357.4,9358.8,9359.6,9359.6,7266.0,6974.9
HalfCheetah(rllab),6245.6,7239.1,7648.2,8552.1,10011.0,10597.0,,
Ant(rllab),2300.8,2929.4,3672.6,4776.8,8014.8,8353.8,,
TORCS,6188.1,9353.3,14841.7,33684.2,24674.7,32869.0,,
""",
    2: """\
# Online Meta-Critic Table 2: ablation on SAC-Walker2d, 5 trials. Columns: SAC; L_meta_clip with h(pi_bar), h(pi_bar,s,a), h(phi) [MetaReg]; L_meta with h(pi_bar)
metric,SAC,clip_h_feature,clip_h_feature_sa,clip_h_metareg,plain_h_feature
max_average_return,6398.8,7164.9,7423.8,6644.3,6456.1
max_average_return_std,289.2,151.3,780.2,1815.6,424.8
sum_average_return,53695678,61672039,57364405,58875184,52446717
""",
    3: """\
# Online Meta-Critic Table 3: controlling for compute (+updates) and parameter count (+params). Max average return over 5 trials.
environment,DDPG,DDPG+updates,DDPG+params,DDPG-MC,TD3,TD3+updates,TD3+params,TD3-MC,SAC,SAC+updates,SAC+params,SAC-MC
HalfCheetah,8440.2,15004.5,15153.9,15808.9,12735.7,11585.2,11980.7,15064.0,16651.8,16309.9,16339.3,16815.9
Hopper,1871.1,1753.0,2438.0,2776.7,3580.3,2903.1,1460.0,3670.4,3610.6,3510.8,3441.6,3738.4
Walker2d,2920.2,3826.5,2964.3,4543.5,5942.7,3414.0,3185.4,6298.0,6398.8,6363.7,6423.7,7164.9
Ant,2375.4,1504.2,3615.1,3661.1,5914.8,1262.3,984.7,6280.0,6954.4,6253.6,5999.1,7204.3
HalfCheetah(rllab),6245.6,6526.0,6589.0,7239.1,7648.2,8021.8,9003.0,8552.1,10011.0,9008.3,9122.0,10597.0
Ant(rllab),2300.8,2875.4,2763.7,2929.4,3672.6,2838.1,3714.3,4776.8,8014.8,6464.4,6868.8,8353.8
TORCS,6188.1,4932.5,8104.7,9353.3,14841.7,20473.2,27850.4,33684.2,24674.7,11946.7,24932.4,32869.0
""",
}


@dataclass(frozen=True)
class BenchConfig:
    scale: str = "quick"
    # Quick: Table 1 on the paper's brax/inverted_pendulum (all three algorithms, vanilla vs MC). Brax
    # programs compile for minutes on a 2-core CPU, so Tables 2 and 3 (their +params, Eq. 11 and MetaReg
    # programs compile on their own) run on gymnax's Pendulum-v1, NOT a paper task, labelled as such.
    table1_envs: tuple = ("brax/inverted_pendulum", "gymnax/Pendulum-v1")
    table1_algos: dict = field(default_factory=dict)  # {env: algos}; default: all three
    table3_envs: tuple = ("gymnax/Pendulum-v1",)  # '+updates' / '+params' rows
    table2_env: str = "gymnax/Pendulum-v1"  # the paper: SAC on Walker2d
    env_steps: dict = field(default_factory=lambda: {"brax/inverted_pendulum": 4_000})  # total_steps overrides
    seeds: int = 2
    total_steps: int = 4_000
    learning_starts: int = 1_000
    eval_every: int = 1_000
    eval_episodes: int = 3
    evals_per_chunk: int = 3
    agent: dict = field(default_factory=lambda: dict(actor_hidden=(64, 64), critic_hidden=(64, 64)))
    sac_agent: dict = field(default_factory=lambda: dict(actor_hidden=(64, 64), critic_hidden=(64, 64),
                                                         batch_size=100))
    lookahead: str = "all"
    tabular: bool = True
    tabular_episodes: int | None = None  # None: the paper's 100
    max_episode_steps: int | None = None  # None: the environment's own (Brax: 1000)
    episode_steps: dict = field(default_factory=dict)  # {env: max_episode_steps} overrides
    tables: tuple = TABLES  # which parts to run: Tables "1", "2", "3", the tabular MDP "fig6", Table 1's PPO columns "ppo"
    tab_actors: tuple = ("tanh", "softmax")  # Fig. 6 under each reading of the 2 actions
    only: tuple = ()  # run only these jobs ('env|algo' or 'env'); empty: all
    smoke: bool = False


def bench_config(scale: str) -> BenchConfig:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(SCALES)}")
    if scale == "quick":
        return BenchConfig()
    if scale == "medium":
        # The smallest CPU budget at which Table 1 can show on the paper's cheap tasks: 5 seeds, the
        # paper's 100-100 meta-critic and batch 100, 64-64 agents (the paper's 400-300 costs ~10x per
        # update here). Steps per task: the vanilla agents clearly learn by then (TD3's own start of
        # 1000 random steps for these three tasks); Reacher has Gym's 50-step episodes (Brax's default is
        # 1000), so its returns are on the paper's scale. Tables 2-3 on InvPend at the same scale.
        small = dict(actor_hidden=(64, 64), critic_hidden=(64, 64))
        return BenchConfig(scale="medium", table1_envs=("brax/inverted_pendulum", "brax/inverted_double_pendulum",
                                                        "brax/reacher"),
                           table3_envs=("brax/inverted_pendulum",), table2_env="brax/inverted_pendulum",
                           env_steps={"brax/inverted_pendulum": 20_000, "brax/inverted_double_pendulum": 30_000,
                                      "brax/reacher": 20_000},
                           episode_steps={"brax/reacher": 50}, seeds=5, total_steps=20_000, learning_starts=1_000,
                           eval_every=1_000, eval_episodes=5, evals_per_chunk=1, agent=small,
                           sac_agent=dict(small, batch_size=100), table1_algos={})
    locomotion = ("brax/halfcheetah", "brax/hopper", "brax/walker2d", "brax/ant")
    return BenchConfig(scale="paper", table1_envs=tuple(ENV_ROWS), table3_envs=locomotion,
                       table2_env="brax/walker2d", seeds=5, total_steps=1_000_000, learning_starts=10_000,
                       eval_every=1_000, eval_episodes=10, evals_per_chunk=45, agent={}, sac_agent={},
                       table1_algos={}, env_steps={}, episode_steps={"brax/reacher": 50})


def read_paper_table(n: int) -> list[dict]:
    rows = [r for r in PAPER_TABLES[n].splitlines() if r and not r.startswith("#")]
    return list(csv.DictReader(rows))


def paper_value(table, row_key, row, col):
    for r in table:
        if r.get(row_key) == row:
            v = r.get(col, "")
            return float(v) if v not in ("", None) else None
    return None


def pair_line(task, pair, steps, seeds, a: dict, b: dict, cmp: dict | None, claim: str, verdict: str) -> str:
    """One row of a paper-layout table: a method a against its reference b. a, b: {"iqm", "ci", "max_avg",
    "paper" (the paper's max average return), optional "paper_std"}; cmp: metarl.stats.compare's P(a > b)
    with its interval and outcome (None: not run, or too few seeds to compare)."""
    def max_avg(d):
        paper = d.get("paper")
        ours = "-" if d.get("max_avg") is None else f"{d['max_avg']:.1f}"
        ref = "-" if paper is None else (f"{paper:g}" if d.get("paper_std") is None else f"{paper:g} ± {d['paper_std']:g}")
        return f"{ours} / {ref}"

    from metarl.stats import interval_text

    p = interval_text(cmp["p_improvement"], cmp["p_improvement_ci"], ".2f") if cmp else "-"
    return (f"| {task} | {pair} | {steps if steps is not None else '-'} | {seeds if seeds is not None else '-'} | "
            f"{interval_text(a.get('iqm'), a.get('ci'))} | {interval_text(b.get('iqm'), b.get('ci'))} | {max_avg(a)} | "
            f"{max_avg(b)} | {p} | {cmp['verdict'] if cmp else '-'} | {claim} | {verdict} |")


PAIR_HEAD = ("| task | a vs b | steps | seeds | a: final, IQM [95% CI] | b: final, IQM [95% CI] | a: max avg, ours / paper | "
             "b: max avg, ours / paper | P(a > b) [95% CI] | outcome | paper's claim | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|")


def table_note(paper_task: str = "") -> str:
    return (f"final = a seed's mean return over its last {FINAL_EVALS} evaluations, IQM [95% stratified-bootstrap "
            "CI] over seeds; max avg = the paper's metric (max over evaluations of the seed-average return), ours / "
            f"the paper's{paper_task}; outcome = better / worse / inconclusive from the interval of P(a > b); "
            "verdict = that outcome read against the paper's claim")


def plan(cfg: BenchConfig) -> list[tuple]:
    """(env, algo, variants) programs to run: each is one experiments.meta_critic.run_experiment call."""
    jobs = {}
    if "1" in cfg.tables:
        for env in cfg.table1_envs:
            for algo in cfg.table1_algos.get(env, ALGOS):
                jobs.setdefault((env, algo), set()).update({"vanilla", "mc"})
    if "3" in cfg.tables:
        for env in cfg.table3_envs:
            for algo in ALGOS:
                jobs.setdefault((env, algo), set()).update({"vanilla", "mc", "updates", "params"})
    if "2" in cfg.tables:  # the ablation, plus the re-initialisation guard on (not in the paper; off elsewhere)
        jobs.setdefault((cfg.table2_env, "sac"), set()).update(
            {"vanilla", "mc", "mc_plain", "mc_guard", "mc_sa", "metareg"})
    from experiments.meta_critic import VARIANTS

    out = [(env, algo, tuple(v for v in VARIANTS if v in vs)) for (env, algo), vs in jobs.items()]
    if cfg.only:
        known = {f"{e}|{a}" for e, a, _ in out} | {e for e, _, _ in out}
        bad = sorted(set(cfg.only) - known)
        if bad:
            raise ValueError(f"unknown job(s) {bad} for scale {cfg.scale!r}; valid: {', '.join(sorted(known))}")
        out = [j for j in out if j[0] in cfg.only or f"{j[0]}|{j[1]}" in cfg.only]
    return out


def job_config(cfg: BenchConfig, env: str, algo: str, variants: tuple):
    """The experiments.meta_critic.ExperimentConfig of one planned job (validated, with its TrainConfig)."""
    from experiments.meta_critic import ExperimentConfig

    agent = cfg.sac_agent if algo == "sac" else cfg.agent
    steps = cfg.env_steps.get(env, cfg.total_steps)
    n_evals = (steps - cfg.learning_starts) // cfg.eval_every
    per_chunk = cfg.evals_per_chunk if n_evals % cfg.evals_per_chunk == 0 else 1
    ecfg = ExperimentConfig(algo=algo, env=env, variants=variants, seeds=cfg.seeds, total_steps=steps,
                            learning_starts=cfg.learning_starts, eval_every=cfg.eval_every,
                            eval_episodes=cfg.eval_episodes, evals_per_chunk=per_chunk, agent=agent,
                            lookahead=cfg.lookahead,
                            max_episode_steps=cfg.episode_steps.get(env, cfg.max_episode_steps)).validate()
    ecfg.train_config().validate()
    return ecfg


def smoke_config(cfg: BenchConfig) -> BenchConfig:
    """The same plan, networks and variants, but 1 seed, a few hundred steps and 50-step episodes: every
    program is traced, compiled and run (a check that the scale runs end to end; the numbers mean nothing)."""
    batch = max(agent_config(a, **(cfg.sac_agent if a == "sac" else cfg.agent)).batch_size for a in ALGOS)
    starts = 3 * batch  # the meta-critic samples 2 base batches (d_trn, d_val), + 1 per extra update
    return dataclasses.replace(cfg, seeds=1, learning_starts=starts, total_steps=starts + 100, eval_every=50,
                               evals_per_chunk=1, eval_episodes=1, env_steps={}, max_episode_steps=50,
                               episode_steps={},
                               tabular_episodes=2, smoke=True)


def curves_png(res, env, algo, path):
    from experiments.meta_critic import LABELS
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


def main(argv=None):
    from metarl.cli import ArgumentParser, add_scale_argument

    p = ArgumentParser(prog="python -m benchmarks.meta_critic", description="Online Meta-Critic tables")
    add_scale_argument(p, SCALES)  # a bad scale: one line on stderr, exit status 2
    p.add_argument("--out", default=None, help="output folder (default results/meta_critic; with --smoke a "
                                                "temporary folder, so a smoke run never overwrites results)")
    p.add_argument("--only", default=None,
                   help="comma list of jobs to run, each 'env|algo' or 'env' (default: the scale's whole plan)")
    p.add_argument("--smoke", action="store_true",
                   help="trace and run every planned program for a few steps only (1 seed, short episodes): "
                        "checks that a scale runs end to end, measures nothing")
    p.add_argument("--tables", default=",".join(TABLES), type=tables_arg,
                   help=f"comma list of the parts to run, of {', '.join(TABLES)} (default: all)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out: finished jobs are read back from runs/<job>/job.json, "
                        "the unfinished one continues from its checkpoint; the settings must be the same")
    a = p.parse_args(argv)
    cfg = bench_config(a.scale)  # raises on a bad scale, naming it and the valid ones
    cfg = dataclasses.replace(cfg, tables=a.tables)
    if a.only:
        cfg = dataclasses.replace(cfg, only=tuple(x.strip() for x in a.only.split(",") if x.strip()))
    if a.smoke:
        cfg = smoke_config(cfg)
    if a.out is None:
        a.out = (os.path.join(tempfile.gettempdir(), f"meta_critic_smoke_{cfg.scale}") if cfg.smoke
                 else os.path.join("results", "meta_critic" if cfg.scale == "quick" else f"meta_critic_{cfg.scale}"))
    try:  # a bad --only: one line naming the valid jobs, before anything is compiled or written
        jobs = plan(cfg)
        for env, algo, variants in jobs:
            job_config(cfg, env, algo, variants)
    except ValueError as e:
        p.error(str(e))
    if not a.resume and os.path.isfile(os.path.join(a.out, "results.json")) and not cfg.smoke:
        prev = _read_json(os.path.join(a.out, "results.json"))
        if not prev.get("complete", True):
            p.error(f"{a.out!r} holds an unfinished run: continue it with --resume (same settings), or give "
                    "another --out")
    from metarl.cli import make_out_dir
    from metarl.train import Interrupted, RunError

    make_out_dir(p, a.out)
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a repeated or resumed run skips the compilation
    try:
        from benchmarks.common import compile_report

        with compile_report("benchmarks.meta_critic", a.out):
            print(run_bench(cfg, jobs, a.out, a.resume))
    except Interrupted as e:
        cmd = " ".join(["python -m benchmarks.meta_critic"] + [x for x in (argv or sys.argv[1:]) if x != "--resume"]
                       + ["--resume"])
        sys.exit(f"benchmarks.meta_critic: interrupted ({e}); finished jobs are kept; continue with: {cmd}")
    except RunError as e:
        sys.exit(f"benchmarks.meta_critic: {e}")


def tables_arg(text: str) -> tuple:
    """--tables: a comma list of TABLES (argparse turns the ValueError into one line on stderr)."""
    parts = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in parts if x not in TABLES]
    if bad or not parts:
        raise argparse.ArgumentTypeError(f"unknown part(s) {bad or [text]}; valid: {', '.join(TABLES)}")
    return parts


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def job_key(env, algo):
    return f"{env}|{algo}"


def run_bench(cfg: BenchConfig, jobs, out: str, resume: bool = False) -> str:
    """Run the planned jobs (and Fig. 6) into ``out``; outputs are rewritten after every job."""
    from tqdm import tqdm

    from experiments.meta_critic import (MC_METRICS, TabularConfig, paper_metrics,
                                         run_experiment, run_tabular, tabular_figures, tabular_summary)
    from metarl.train import jsonable, write_json

    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    summary, diagnostics, overheads, walls, finals, firsts = {}, {}, {}, {}, {}, {}
    tab_on = cfg.tabular and "fig6" in cfg.tables
    bar = tqdm(total=len(jobs) + (len(cfg.tab_actors) if tab_on else 0), desc="meta-critic programs", unit="job",
               file=sys.stderr)
    tab = {}
    if tab_on:
        for actor in cfg.tab_actors:
            t = time.perf_counter()
            kw = {"actor": actor} | ({} if cfg.tabular_episodes is None else {"episodes": cfg.tabular_episodes})
            tcfg = TabularConfig(**kw).validate()
            fig_dir = out if actor == "tanh" else os.path.join(out, f"tabular_{actor}")
            base, traces = run_tabular(tcfg)
            tab[actor] = dict(config=dataclasses.asdict(tcfg), **tabular_summary(traces, cfg=tcfg),
                              figures=tabular_figures(base, traces, tcfg, fig_dir), wall_s=time.perf_counter() - t)
            bar.update(1)
        write_json(os.path.join(out, "tabular.json"), tab)
    for env, algo, variants in jobs:
        bar.set_postfix(env=env, algo=algo)
        ecfg = job_config(cfg, env, algo, variants)
        job_dir = os.path.join(out, "runs", f"{env.replace('/', '_')}_{algo}")
        job_file = os.path.join(job_dir, "job.json")
        key = job_key(env, algo)
        stored = _read_json(job_file) if resume and os.path.isfile(job_file) else None
        if stored is not None and stored["config"] != jsonable(dataclasses.asdict(ecfg)):
            raise SystemExit(f"benchmarks.meta_critic: cannot resume {job_dir}: its job was run with other settings "
                             "(job.json); resume with the same --scale/--tables/--only, or give another --out")
        if stored is None:
            t = time.perf_counter()
            prev = _read_json(os.path.join(out, "results.json")).get("overhead", {}).get(key) \
                if resume and os.path.isfile(os.path.join(out, "results.json")) else None
            overhead = {k: v for k, v in prev.items() if k not in ("updates_k", "params_n", "params_hidden")} \
                if prev else None
            res = run_experiment(ecfg, job_dir, progress=False, overhead=overhead, resume=resume)
            stored = {"config": jsonable(dataclasses.asdict(ecfg)), "wall_s": time.perf_counter() - t,
                      "overhead": dict(res["overhead"], updates_k=res["updates_k"], params_n=res["params_n"],
                                       params_hidden=res.get("params_hidden")),
                      "variants": {v: {m: np.asarray(res[v][m]).tolist()
                                       for m in ("eval_return", "env_steps", *MC_METRICS) if m in res[v]}
                                   for v in variants}}
            write_json(job_file, stored)
        res = {v: {m: np.asarray(x) for m, x in d.items()} for v, d in stored["variants"].items()}
        walls[key] = stored["wall_s"]
        summary[key] = {v: paper_metrics(res[v]["eval_return"]) for v in variants}
        finals[key] = {v: final_scores(res[v]["eval_return"]) for v in variants}
        firsts[key] = {v: np.asarray(res[v]["eval_return"], float)[:, 0] for v in variants}
        diagnostics[key] = {v: {m: res[v][m].tolist() for m in MC_METRICS if m in res[v]}
                            for v in variants if v.startswith("mc") or v == "metareg"}
        overheads[key] = stored["overhead"]
        curves_png(res, env, algo, os.path.join(out, f"curves_{env.replace('/', '_')}_{algo}.png"))
        write_outputs(out, cfg, summary, diagnostics, overheads, walls, tab, time.perf_counter() - t0, final=False,
                      finals=finals, firsts=firsts, jobs=jobs)
        bar.update(1)
    bar.close()
    # --- Table 1's PPO and PPO-LIRPG columns (benchmarks/meta_critic_onpolicy.py) ---
    onpolicy = {}
    if "ppo" in cfg.tables:
        from benchmarks.meta_critic_onpolicy import run_onpolicy
        onpolicy = run_onpolicy(cfg, out, resume)
    # ---
    return write_outputs(out, cfg, summary, diagnostics, overheads, walls, tab, time.perf_counter() - t0,
                         finals=finals, firsts=firsts, jobs=jobs, onpolicy=onpolicy)


FINAL_EVALS = 3  # the final score of a run: its mean return over the last 3 evaluations


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
    from experiments.meta_critic import LABELS
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


OVERHEAD_DIR = "overhead_paper_nets"


def paper_net_overhead(out: str) -> dict:
    """{algo: {"flop_ratio", "wall_ratio", ...}} of -MC over vanilla per update at the paper's networks, read
    from ``out``/overhead_paper_nets/overhead_<algo>.json as written by
    ``python -m experiments.meta_critic --overhead --algo ddpg,td3,sac --env E --out <out>/overhead_paper_nets``
    (a separate command: it times compiled updates in alternating rounds and wants a quiet machine)."""
    res = {}
    for algo in ALGOS:
        path = os.path.join(out, OVERHEAD_DIR, f"overhead_{algo}.json")
        if os.path.isfile(path):
            o = _read_json(path)
            res[algo] = {k: o.get(k) for k in ("flop_ratio", "wall_ratio", "wall_over_flop_ratio", "wall_ratio_min",
                                               "cpu_ratio", "params_overhead")}
            res[algo]["env"] = o.get("config", {}).get("env")
    return res


def write_outputs(out, cfg, summary, diagnostics, overheads, walls, tab, wall, final=True, finals=None,
                  firsts=None, jobs=(), onpolicy=None):
    """tables.md, summary.json, overhead.json and results.json (rewritten after every job, atomically)."""
    from metarl.train import device_info, package_versions, write_json

    rows = table1_summary(cfg, summary, finals or {}, jobs)
    ablations = ablation_summary(cfg, finals or {}, summary, jobs)
    # --- Table 1's PPO and PPO-LIRPG rows (benchmarks/meta_critic_onpolicy.py) ---
    onp = {}
    if onpolicy:
        from benchmarks import meta_critic_onpolicy

        e = meta_critic_onpolicy.summary_entries(cfg, onpolicy)
        # top-level entries "PPO", "PPO-LIRPG", "PPO-LIRPG vs PPO" (as "EPG", "RL2" in MetaGenRL's summary)
        onp = {k: e[k] for k in ("PPO", "PPO-LIRPG", "PPO-LIRPG vs PPO")}
        onp["onpolicy_metric"] = e["metric"]
    # ---
    md = tables(cfg, summary, rows, ablations, onp)
    ov_lines = []
    measured = [(key, o) for key, o in overheads.items() if "mc_s_per_update" in o]
    if measured:
        ov_lines += ["", "### Measured overhead of -MC (per update, compiled, one seed; parameters: actor+critic)", ""]
    for key, o in measured:
        ov_lines.append(f"- {key}: {1e3 * o['base_s_per_update']:.2f} ms -> {1e3 * o['mc_s_per_update']:.2f} ms "
                        f"per update (+{100 * o['time_overhead']:.0f}%; paper 15-30%; XLA FLOP ratio "
                        f"{o.get('flop_ratio', float('nan')):.2f}, '+updates' K {o.get('updates_k', float('nan')):.2f}), "
                        f"parameters "
                        f"{o['params_base']} + {o['params_meta_critic']} (+{100 * o['params_overhead']:.0f}%; "
                        f"paper ~10%)")
    paper_ov = paper_net_overhead(out)
    if paper_ov:
        ov_lines += ["", "### Overhead of -MC at the paper's networks (400-300; SAC 256-256), per update", ""]
        for algo, o in paper_ov.items():
            ov_lines.append(f"- {algo.upper()} on {o['env']}: XLA FLOP ratio {o['flop_ratio']:.2f}, wall-time ratio "
                            f"{o['wall_ratio']:.2f} (wall/FLOP {o['wall_over_flop_ratio']:.2f}), parameters "
                            f"+{100 * o['params_overhead']:.0f}% (paper: 15-30% time, ~10% parameters)")
    for actor, t in (tab or {}).items():
        ov_lines += tabular_lines(actor, t)
    figure = None
    if final and rows:
        figure = aggregate_png(cfg, finals, firsts, rows, os.path.join(out, "table1_aggregate.png"))
    md += "\n".join(ov_lines) + f"\n\nwall time {wall:.0f} s{'' if final else ' (partial: still running)'}\n"
    tmp = os.path.join(out, "tables.md.tmp")
    with open(tmp, "w") as f:
        f.write(md)
    os.replace(tmp, os.path.join(out, "tables.md"))
    write_json(os.path.join(out, "overhead.json"), overheads)
    record = {"scale": cfg.scale, "seeds": cfg.seeds, "versions": package_versions(), "device": device_info(),
              "wall_time_s": wall, "complete": final, "job_wall_s": walls}
    write_json(os.path.join(out, "summary.json"), {
        **record, "paper": "Online Meta-Critic (Zhou et al., NeurIPS 2020)", "metric": (
            f"final return = mean of the last {FINAL_EVALS} evaluations per seed; IQM [95% stratified-bootstrap CI] "
            "over seeds; max_avg = the paper's metric (max over evaluations of the seed-average return)"),
        "table1": rows, "tables23": ablations, "figure": os.path.basename(figure) if figure else None,
        "overhead": paper_net_overhead(out),
        "tabular": {a: {"L_critic_claim": t["L_critic_claim"], "L_meta_early_mean": t["L_meta_early_mean"],
                        "zero_meta_grad_steps": t["zero_meta_grad_steps"], "meta_steps": t["meta_steps"]}
                    for a, t in (tab or {}).items()}, **onp})
    write_json(os.path.join(out, "results.json"), {
        "config": dataclasses.asdict(cfg), **record, "summary": summary,
        "diagnostics": diagnostics, "overhead": overheads, "tabular": tab})
    return md


if __name__ == "__main__":
    main()
