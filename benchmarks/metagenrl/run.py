"""The MetaGenRL benchmark's run: meta-training per training set, meta-test, the random-policy and on-policy
rows, then the tables, claims and figures."""
from __future__ import annotations

import os
import time

import numpy as np

from metarl.driver import write_text
from metarl.meta.metagenrl.protocol import get_scale
from benchmarks.metagenrl.tables import _final, _fmt, add_verdicts, build_table, plot_curves, to_markdown
from benchmarks.metagenrl.stages import (RUN_FILE, _arrays, _fresh, _sha, build_summary, check_out_dir, default_out,
                                         final_scores, run_settings, stage, write_finals_csv)
from benchmarks.metagenrl.ablations import _stamp, _write_csv


def run(scale_name: str, out_dir: str | None = None, progress: bool = True, resume: bool = False, stop=None):
    """Meta-train, meta-test (learned objective, fixed-objective baselines, random policy; the quick and
    paper scales also the on-policy rows) and write every output into ``out_dir``. Each finished stage
    is kept under ``stages/`` and the running one checkpoints as it goes, so ``resume=True`` continues
    an interrupted run (refused, in one line, if its settings differ)."""
    from metarl.train import Interrupted, write_json

    scale = get_scale(scale_name)
    out_dir = out_dir or default_out(scale_name)
    settings = run_settings(scale)
    stored = check_out_dir(out_dir, settings, resume)
    sha = _sha(settings)
    os.makedirs(out_dir, exist_ok=True)
    if not resume:
        _fresh(out_dir)
        stored = {}
    sessions = list(stored.get("sessions", []))
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    run_file = os.path.join(out_dir, RUN_FILE)

    def record(status, **kw):
        sess = sessions + [{"started": started, "wall_s": time.perf_counter() - t0, "status": status}]
        write_json(run_file, {"settings": settings, "settings_sha256": sha, "status": status, "sessions": sess,
                              "wall_s": sum(x["wall_s"] for x in sess), **kw})

    record("running")
    try:
        md = _run_stages(scale, scale_name, out_dir, progress, resume, stop, sha,
                         lambda: sum(x["wall_s"] for x in sessions) + time.perf_counter() - t0)
    except (Interrupted, KeyboardInterrupt):
        record("interrupted")
        raise
    except BaseException as e:
        record("failed", error=" ".join(f"{type(e).__name__}: {e}".split())[:500])
        raise
    record("finished")
    return md


def _run_stages(scale, scale_name, out_dir, progress, resume, stop, sha, wall):
    from metarl import stats
    from metarl.meta.metagenrl import runs
    from metarl.train import Interrupted, device_info, package_versions, write_json

    def stage_done(name):  # Ctrl-C during a stage without segments (random, on-policy): stop after it
        if stop is not None and stop.requested:
            raise Interrupted(f"stopped after the {name} stage")

    objectives, meta_train = {}, {}
    for train in scale.train_sets:
        label = " & ".join(train)
        d = os.path.abspath(os.path.join(out_dir, "objectives", "_".join(train)))
        r, _ = stage(out_dir, f"meta_train_{'_'.join(train)}", sha,
                     lambda: runs.meta_train(scale, train, d, seed=0, progress=progress, resume=resume, stop=stop),
                     resume)
        r["metrics"] = _arrays(r["metrics"])
        r["meta_grad_norm"] = np.asarray(r["meta_grad_norm"], float)
        meta_train[label] = r
        objectives[label] = r["paths"]["final"]
        stage_done(f"meta-training on {label}")
    first = " & ".join(scale.train_sets[0])
    if scale.test_earlier_stages:  # Fig. 4: the first training set's objective at its earlier stages too
        stages_ = {k: v for k, v in meta_train[first]["paths"].items() if k.startswith("stage_")}
        for k in sorted(stages_)[:-1]:  # the last stage is the final objective
            objectives[f"{first} [{k.replace('_', ' ')}]"] = stages_[k]
    test = scale.tested
    ck = os.path.join(out_dir, "checkpoints", "meta_test")
    mt, _ = stage(out_dir, "meta_test", sha,
                  lambda: runs.meta_test(scale, objectives, test, seed=100, baselines=scale.baselines, progress=progress,
                                       ckpt_dir=ck, resume=resume, stop=stop), resume)
    results = _arrays(mt["results"])
    stage_done("meta-test")
    rnd, _ = stage(out_dir, "random", sha, lambda: runs.random_test(scale, test, seed=100), resume)
    stage_done("random-policy")
    zero, _ = stage(out_dir, "zero_action", sha, lambda: runs.random_test(scale, test, seed=100, policy="zero"), resume)
    stage_done("zero-action policy")
    for e in test:
        results[e].update(_arrays(rnd["results"][e]))
        results[e].update(_arrays(zero["results"][e]))
    onp = None
    if scale.onpolicy:
        onp, _ = stage(out_dir, "onpolicy", sha, lambda: runs.onpolicy_test(scale, test, seed=100, progress=progress),
                       resume)
        for e in test:
            results[e].update(_arrays(onp["results"][e]))
        stage_done("on-policy")
    header, rows = build_table(scale, results, list(objectives))
    # --- EPG and RL^2, Table 2's meta-learned baselines (benchmarks/metagenrl_baselines.py) -----------------
    # Quick and paper scales run them here; at the medium scale each has its own run of about an hour
    # (python -m benchmarks.metagenrl_baselines --scale medium), outside this benchmark's hour.
    base = None
    if scale_name != "medium":
        from benchmarks import metagenrl_baselines as baselines

        base, _ = stage(out_dir, "meta_baselines", sha,
                        lambda: baselines.run(scale_name, os.path.join(out_dir, "baselines"), progress=progress),
                        resume)
        rows = baselines.fill_rows(rows, base, list(test))
        stage_done("EPG and RL^2")
    # ----------------------------------------------------------------------------------------------------------
    w = wall()
    seeds = mt["seeds"]
    # The claims (summary.json): the first training set's final objective on a seen and an unseen env;
    # Table 2's verdict column reads them.
    finals = {e: {v: final_scores(results[e][v]) for v in results[e]} for e in test}
    roles = {scale.seen: "seen", scale.unseen: "unseen"}
    mgs = meta_train[first]["meta_grad_summary"]
    summary = build_summary(finals, scale.seen, scale.unseen, first, seeds, w, mgs, scale=scale_name,
                            meta_test_steps=scale.test.total_steps,
                            meta_train_steps_per_agent=scale.train.total_steps,
                            meta_train_agents=scale.total_agents, collapse_warnings=len(mgs.get("warnings", [])))
    vs = None
    if base:
        learned = {e: finals[e][first] for e in test}
        vs = baselines.learned_vs_baselines(base, learned)
        summary["learned_vs_baselines"] = vs
    add_verdicts(header, rows, summary, first, vs)
    note = (f"Scale `{scale_name}`: IQM [95% stratified-bootstrap CI] over {seeds} seeds of the final return (mean of the last "
            f"two evaluations) after {scale.test.total_steps} environment steps of meta-test training"
            + (" (PPO and on-policy REINFORCE: the same steps, all on-policy, no random warm-up)" if onp else "")
            + "; random policy: uniformly random actions, the same evaluation points and episodes. "
            + ("Quick scale: cheap gymnax stand-ins, tiny budgets; NOT comparable with the paper's numbers. "
               if scale_name == "quick" else "")
            + ("Medium scale: a CPU budget (about an hour); NOT comparable with the paper's numbers. "
               if scale_name == "medium" else "")
            + f"Wall time {w:.0f} s.")
    md = f"# MetaGenRL Table 2 ({scale_name} scale)\n\n{to_markdown(header, rows)}\n\n{note}\n"
    if base:
        md += f"\n{baselines.note(base)}\n"  # EPG and RL^2 (benchmarks/metagenrl_baselines.py)
    extra_rows = [[k] + [_fmt(_final(results[e][k])) for e in test] + ["descriptive (Fig. 4 is a curve, no claim read)"]
                  for k in objectives if "[" in k]
    if extra_rows:
        md += "\nObjective at earlier meta-training stages (Fig. 4):\n\n" + to_markdown(
            ["objective"] + list(test) + ["verdict"], extra_rows) + "\n"
    md += "\n" + claims_markdown(summary) + "\n"
    versions = package_versions()
    stamp = _stamp(scale_name, w, versions)
    cfg_line = (f"meta-train: {dict((k, v) for k, v in meta_train[first]['config'].items() if k != 'objective')}; "
                f"meta-test: total_steps={scale.test.total_steps}, seeds={seeds}; objective: "
                f"{meta_train[first]['config']['objective']}" + (f"; on-policy: {onp['config']}" if onp else ""))
    md += f"\n{stamp}\n\nConfig: {cfg_line}\n"
    write_json(os.path.join(out_dir, "summary.json"), summary)
    write_finals_csv(os.path.join(out_dir, "final_returns.csv"), finals, roles, stamp)
    for kind in ("seen", "unseen"):
        e = summary[kind]["env"]
        stats.plot_aggregate({f"learned ({first})": finals[e][first], "TD3": finals[e]["TD3"],
                              "random policy": finals[e]["random"],
                              **({"zero-action policy": finals[e]["zero action"]} if "zero action" in finals[e] else {})},
                             os.path.join(out_dir, f"aggregate_{kind}.png"),
                             title=f"{e} ({kind}): final return, {seeds} seeds, {scale_name} scale")
    write_text(os.path.join(out_dir, "table.md"), md)
    _write_csv(os.path.join(out_dir, "table.csv"), [stamp, cfg_line], [header] + rows)
    plot_curves(results, meta_train, os.path.join(out_dir, "meta_test_curves.png"),
                os.path.join(out_dir, "meta_train_curves.png"), stamp)
    write_json(os.path.join(out_dir, "results.json"), dict(
        scale=scale_name, wall_s=w, package_versions=versions, device=device_info(),
        train_config=meta_train[first]["config"], test_config=mt["config"],
        meta_train={k: dict(wall_s=v["wall_s"], metrics=v["metrics"], meta_grad_norm=v["meta_grad_norm"],
                            meta_grad_summary=v["meta_grad_summary"]) for k, v in meta_train.items()},
        meta_test=dict(wall_s=mt["wall_s"], results=results),
        onpolicy=dict(wall_s=onp["wall_s"], config=onp["config"]) if onp else None,
        table=dict(header=header, rows=rows), summary=summary))
    if base:  # EPG and RL^2 entries of summary.json (benchmarks/metagenrl_baselines.py)
        baselines.merge_summary(os.path.join(out_dir, "summary.json"), baselines.summary_entries(base, scale_name))
    print(md)
    return md


def claims_markdown(summary: dict) -> str:
    """The two claims of summary.json as a small table."""
    fmt = lambda r: f"{r['iqm']:.1f} [{r['ci'][0]:.1f}, {r['ci'][1]:.1f}]"
    lines = ["| claim | env | learned | TD3 | random | share of TD3's improvement | verdict |", "|---|---|---|---|---|---|---|"]
    for kind in ("seen", "unseen"):
        c = summary[kind]
        frac = "n/a (TD3 not above random)" if c["fraction_of_td3_improvement"] is None \
            else f"{c['fraction_of_td3_improvement']:.2f}"
        lines.append(f"| {kind}: {c['claim']} | {c['env']} | {fmt(c['learned'])} | {fmt(c['td3'])} | "
                     f"{fmt(c['random'])} | {frac} | {c['verdict']} |")
    stricter = [f"{summary[k]['env']}: zero-action policy {fmt(summary[k]['zero_action'])}, "
                f"P(learned > zero-action) {summary[k]['beats_zero_action']['p_improvement']:.2f} "
                f"[{summary[k]['beats_zero_action']['p_improvement_ci'][0]:.2f}, "
                f"{summary[k]['beats_zero_action']['p_improvement_ci'][1]:.2f}]: {summary[k]['beats_zero_action']['verdict']}"
                for k in ("seen", "unseen") if "zero_action" in summary[k]]
    if stricter:
        lines.append("\nA stricter reference (not the paper's claim): the policy that always acts 0, which ignores "
                     "the observation and pays no action cost. " + "; ".join(stricter) + ".")
    m = summary["meta_grad_norm"]
    return ("Claims (IQM [95% stratified-bootstrap CI] of the per-seed final return; `summary.json`):\n\n"
            + "\n".join(lines) + f"\n\nMeta-gradient norm (meta-training, per agent): first {m['first']:.3g}, "
            f"last {m['last']:.3g}, min {m['min']:.3g}.\n")
