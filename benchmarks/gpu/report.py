"""The GPU kit's outputs: the plan as text, summary.md and figures.png."""
from __future__ import annotations


import json

import numpy as np

from benchmarks.gpu.plan import PARTS


# ----------------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------------
def _jsonable(o):
    try:
        import numpy as np

        return np.asarray(o).tolist()
    except Exception:
        return str(o)


def plan_text(plan: dict) -> str:
    lines = [f"GPU run kit plan ({plan['mode']}, budget {plan['budget_s']:.0f} s, predicted "
             f"{plan['total_predicted_s']:.0f} s):"]
    for p in plan["parts"]:
        lines.append(f"  {p['title']:<42s} box {p['box_s']:6.1f} s  predicted {p['predicted_s']:6.1f} s  "
                     f"{json.dumps(p['planned']) if p['planned'] else ''}")
    return "\n".join(lines)


def _fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return str(x)


def summary_markdown(plan: dict, s: dict) -> str:
    P = s["parts"]
    dev = s.get("device") or {}
    out = [f"# GPU run kit: {s['mode']}", "",
           f"Device: {dev.get('devices')} ({dev.get('backend')}); jax {(s.get('versions') or {}).get('jax')}; "
           f"budget {s['budget_s']:.0f} s; wall {_fmt(s.get('wall_s'))} s; "
           f"{'complete' if s['complete'] else 'NOT complete (cut off or still running)'}.", "",
           "| part | status | box (s) | predicted (s) | wall (s) |", "|---|---|---|---|---|"]
    for name in PARTS:
        p = P[name]
        out.append(f"| {p['title']} | {p['status']}{': ' + p['error'] if p.get('error') else ''} | {p['box_s']} | "
                   f"{p['predicted_s']} | {_fmt(p['wall_s'])} |")
    out += ["", "## 0. Smoke (one line per check)", "", "```"] + P["smoke"]["results"].get("lines", []) + ["```"]
    rows = P["throughput"]["results"].get("rows", {})
    if rows:
        out += ["", "## (a) Throughput (metarl.train loop; aggregate over vmapped seeds)", "",
                "| algo | env | seeds | updates/s | per seed | vs 1 seed | random env steps/s | compile (s) |",
                "|---|---|---|---|---|---|---|---|"]
        for k, r in rows.items():
            if r.get("status") == "done":
                out.append(f"| {r['algo']} | {r['env']} | {r['seeds']} | {r['updates_per_s']:,.0f} | "
                           f"{r['updates_per_s_per_seed']:,.0f} | {_fmt(r.get('speedup_vs_1_seed'), 2)} | "
                           f"{r['random_env_steps_per_s']:,.0f} | {sum(r['compile_s'].values()):.1f} |")
            else:
                out.append(f"| {k.replace('|', ' | ')} | {r.get('status')}: {r.get('reason') or r.get('error')} | | | | |")
    progs = P["meta_critic"]["results"].get("programs", {})
    if progs:
        from benchmarks.meta_critic import FINAL_EVALS, final_scores
        from metarl import stats

        out += ["", f"## (b) Meta-Critic Table 1 rows (final = a seed's mean return over its last {FINAL_EVALS} "
                "evaluations, IQM [95% stratified-bootstrap CI] over seeds; max avg = the paper's metric, ours / "
                "paper; verdict on the paper's claim MC >= vanilla from the interval of P(MC > vanilla))", "",
                "| env | algo | steps per run | vanilla: final | MC: final | vanilla: max avg | MC: max avg | "
                "P(MC > vanilla) [95% CI] | verdict | env steps/s (all runs) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for k, p in progs.items():
            env, algo = k.split("|")
            if p.get("status") == "done":
                t1 = p["table1"]
                van, mc = t1.get(algo.upper()), t1.get(algo.upper() + "-MC")
                fin = {c: final_scores(v["eval_return"]) for c, v in (("van", van), ("mc", mc)) if v}
                ci = lambda c: (lambda r: stats.interval_text(r["iqm"], r["ci"]))(  # noqa: E731
                    stats.summary_row(fin[c])) if c in fin else "-"
                mx = lambda v: f"{v['max_avg']:.1f} / {_fmt(v['paper'])}" if v else "-"  # noqa: E731
                cmp = stats.compare(fin["mc"], fin["van"]) if len(fin) == 2 and len(fin["mc"]) > 1 else None
                pc = stats.interval_text(cmp["p_improvement"], cmp["p_improvement_ci"], ".2f") if cmp else "-"
                out.append(f"| {env} | {algo} | {p['env_steps_per_run']:,} | {ci('van')} | {ci('mc')} | {mx(van)} | "
                           f"{mx(mc)} | {pc} | {cmp['claim_verdict'] if cmp else '-'} | "
                           f"{p['env_steps_per_s_all_runs']:,.0f} |")
            else:
                out.append(f"| {env} | {algo} | {p.get('status')}: {p.get('reason') or p.get('error')} | | | | | | | |")
    sn = P["snake"]["results"]
    if sn.get("summary"):
        out += ["", f"## (c) Snake 6x6: {sn['updates']:,} updates x {sn['seeds']} seeds "
                    f"({sn['updates_per_s']:.2f} updates/s of all five agents; paper 29,200 updates)", "",
                "IQM [95% stratified-bootstrap CI] over seeds; the verdicts read the paper's claims (metarl.meta.outer_value_outputs.claim_rows)",
                "", "| agent | final gamma | return (last 10%) | paper return | paper gamma | verdict |",
                "|---|---|---|---|---|---|"]
        from metarl.meta.outer_value_outputs import agent_verdicts, fmt as ms

        verdicts = agent_verdicts({"summary": sn["summary"]}, "Snake")
        for a, v in sn["summary"].items():
            pp = sn["paper"].get(a, {})
            out.append(f"| {a} | {ms(v, 'final_gamma', 3)} | {ms(v, 'return', 2)} | {pp.get('return', '')} | "
                       f"{pp.get('final_gamma', '')} | {verdicts.get(a, '-')} |")
    mg = P["metagenrl"]["results"]
    if mg.get("meta_train"):
        tr = mg["meta_train"]
        out += ["", "## (d) MetaGenRL", "",
                f"Meta-training: {tr['agents']} agents on {' + '.join(tr['groups'])}, "
                f"{len(tr['segment_s'])} segments, {tr.get('env_steps_per_agent', 0):,} env steps per agent, "
                f"{_fmt(tr.get('cycles_per_s'))} update cycles/s (compile {sum(tr['compile_s'].values()):.0f} s)."]
        for g, ev in tr["eval_return"].items():
            if ev:
                out.append(f"- {g}: last evaluation {np.mean(ev[-1]):.1f} (mean over agents)")
        te = mg.get("meta_test")
        if te and te.get("final"):
            out.append(f"Meta-test on {te['env']} ({te['seeds']} seeds, {te.get('env_steps_per_agent', 0):,} steps): "
                       + ", ".join(f"{v} {x:.1f}" for v, x in te["final"].items()))
    pr = P["projection"]["results"].get("rows")
    if pr:
        out += ["", "## (e) Projected time of paper-scale tables on this device", "",
                "| workload | projected | basis |", "|---|---|---|"]
        for r in pr:
            t = "-" if r["seconds"] is None else (f"{r['seconds'] / 3600:.1f} h" if r["seconds"] > 5400
                                                  else f"{r['seconds'] / 60:.1f} min")
            out.append(f"| {r['workload']} | {t} | {r.get('basis') or 'not measured'}"
                       f"{' (' + r['note'] + ')' if r.get('note') else ''} |")
    if s["warnings"]:
        out += ["", "## Warnings seen (deprecations here may be removals in the next jax)", ""]
        out += [f"- {w['category']}: {w['message']} ({w['where']})" for w in s["warnings"][:40]]
    return "\n".join(out) + "\n"


def figures(s: dict, path: str):
    from metarl.plots import _plt, save_fig

    plt = _plt()
    P = s["parts"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0, 0]
    rows = [r for r in P["throughput"]["results"].get("rows", {}).values() if r.get("status") == "done"]
    for key in sorted({(r["algo"], r["env"]) for r in rows}):
        rs = sorted((r for r in rows if (r["algo"], r["env"]) == key), key=lambda r: r["seeds"])
        ax.plot([r["seeds"] for r in rs], [r["updates_per_s"] for r in rs], "o-", label=f"{key[0]} {key[1]}")
    ax.set(xscale="log", yscale="log", xlabel="vmapped seeds", ylabel="updates/s (aggregate)", title="(a) throughput")
    if rows:
        ax.legend(fontsize=7)
    ax = axes[0, 1]
    for k, p in P["meta_critic"]["results"].get("programs", {}).items():
        for col, v in (p.get("table1") or {}).items():
            ev = np.asarray(v["eval_return"])
            ax.plot(np.arange(1, ev.shape[1] + 1), ev.mean(0), label=f"{k.split('|')[0].split('/')[-1]} {col}")
    ax.set(xlabel="evaluation", ylabel="return (seed mean)", title="(b) Meta-Critic Table 1 programs")
    if ax.lines:
        ax.legend(fontsize=6)
    ax = axes[1, 0]
    for a, c in (P["snake"]["results"].get("curves") or {}).items():
        ax.plot(np.arange(1, len(c["return"]) + 1), c["return"], label=a)
    ax.set(xlabel="log window", ylabel="training return", title="(c) Snake 6x6")
    if ax.lines:
        ax.legend(fontsize=7)
    ax = axes[1, 1]
    tr = P["metagenrl"]["results"].get("meta_train") or {}
    for g, ev in (tr.get("eval_return") or {}).items():
        if ev:
            ax.plot(np.arange(1, len(ev) + 1), np.mean(ev, axis=1), label=f"meta-train {g}")
    te = P["metagenrl"]["results"].get("meta_test") or {}
    if te.get("eval_return"):
        ev, sd = np.asarray(te["eval_return"]), te["seeds"]
        for j, v in enumerate(te["variants"]):
            ax.plot(np.arange(1, ev.shape[0] + 1), ev[:, j * sd:(j + 1) * sd].mean(1), "o--", label=f"test {v}")
    ax.set(xlabel="segment", ylabel="eval return", title="(d) MetaGenRL")
    if ax.lines:
        ax.legend(fontsize=6)
    fig.suptitle(f"GPU run kit ({s['mode']}): {(s.get('device') or {}).get('devices')}")
    fig.tight_layout()
    save_fig(fig, path)
    plt.close(fig)
