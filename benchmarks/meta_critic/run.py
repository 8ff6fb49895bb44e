"""The Online Meta-Critic benchmark's run: its jobs kept as they finish (resume), the paper-net overhead,
and the outputs written after every job."""
from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

from benchmarks.meta_critic.config import ALGOS, FINAL_EVALS, BenchConfig, job_config, job_key
from benchmarks.meta_critic.tables import (ablation_summary, aggregate_png, curves_png, final_scores, table1_summary,
                                           tables, tabular_lines)


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def run_bench(cfg: BenchConfig, jobs, out: str, resume: bool = False) -> str:
    """Run the planned jobs (and Fig. 6) into ``out``; outputs are rewritten after every job."""
    from metarl.cli import progress_bar

    from metarl.meta.meta_critic_runs import MC_METRICS, paper_metrics, run_experiment
    from metarl.meta.meta_critic_tabular import TabularConfig, run_tabular, tabular_figures, tabular_summary
    from metarl.train import jsonable, write_json

    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    summary, diagnostics, overheads, walls, finals, firsts = {}, {}, {}, {}, {}, {}
    tab_on = cfg.tabular and "fig6" in cfg.tables
    bar = progress_bar(len(jobs) + (len(cfg.tab_actors) if tab_on else 0), "meta-critic programs", unit="job")
    tab = {}
    if tab_on:
        for actor in cfg.tab_actors:
            t = time.perf_counter()
            kw = {"actor": actor} | ({} if cfg.tabular_episodes is None else {"episodes": cfg.tabular_episodes}) | (
                {} if cfg.tabular_seeds is None else {"seeds": cfg.tabular_seeds})
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
            # a resumed job reads its measured overhead (K, N) back from its folder (run_experiment)
            res = run_experiment(ecfg, job_dir, progress=False, resume=resume)
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


OVERHEAD_DIR = "overhead_paper_nets"


def paper_net_overhead(out: str) -> dict:
    """{algo: {"flop_ratio", "wall_ratio", ...}} of -MC over vanilla per update at the paper's networks, read
    from ``out``/overhead_paper_nets/overhead_<algo>.json as written by
    ``python -m experiments.meta_critic --overhead --algo ddpg td3 sac --env E --out <out>/overhead_paper_nets``
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
    from metarl.train import device_info, package_versions, write_json, write_text

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
    write_text(os.path.join(out, "tables.md"), md)
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
