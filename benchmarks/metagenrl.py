"""MetaGenRL benchmark: Table 2 of Kirsch et al. (2020) in the paper's layout, ours beside the paper's.

    python -m benchmarks.metagenrl --scale quick    # part of `make bench` (a few minutes on a 2-core CPU)
    python -m benchmarks.metagenrl --scale medium [--resume]   # <= 1 h on an idle 2-core CPU
    python -m benchmarks.metagenrl --scale paper    # the paper's budget: meant for an accelerator

Meta-trains one objective per training set (Table 2's rows), saving it at several stages, then
meta-tests it with fresh agents on every test environment together with the fixed-objective baselines
(TD3; quick and paper also off-policy REINFORCE+GAE) on the same seeds, evaluates the uniformly random
policy at the same evaluation points, and (quick, paper) trains the on-policy baselines (PPO,
REINFORCE+GAE) on the same step budget. Writes into results/metagenrl/ (quick) or
results/metagenrl_<scale>/: table.md, table.csv, results.json, summary.json (the seen / unseen claims:
IQM [95% CI] of learned, TD3 and random, the fraction of TD3's improvement over random, verdicts, the
meta-gradient norms), final_returns.csv (per seed), aggregate_seen.png, aggregate_unseen.png,
meta_test_curves.png, meta_train_curves.png, and run.json (settings, status, sessions).

Resumable: every finished stage (meta-training per training set, meta-test, random policy, on-policy
rows) is kept in stages/<stage>.json; meta-training and meta-test checkpoint their programs after
every evaluation (objectives/<set>/checkpoint.npz, checkpoints/meta_test/). Ctrl-C finishes the
running segment and its checkpoint and prints the command that continues the run (--resume), which
is refused in one line if the settings (scale, package versions) differ.

    python -m benchmarks.metagenrl --scale quick --ablations   # Section 5.2: ablations.md, .csv, .json, *.png
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time

import numpy as np

from benchmarks.common import write_text
from experiments import metagenrl as ex

OUT = os.path.join("results", "metagenrl")
PAPER_CSV = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                         "paper-tables", "metagenrl_table2.csv")
# The paper's Table 2 (mean return over 6 seeds at meta-test), kept here so the benchmark does not
# depend on a file outside the repository; checked against the shared CSV when it is present.
PAPER = [
    ("MetaGenRL", "Cheetah & Hopper", 2963, 2896, 25), ("MetaGenRL", "Cheetah & Lunar", 3132, 3308, 175),
    ("MetaGenRL", "Hopper & Lunar", 4843, 3012, 254), ("MetaGenRL", "Hopper", 3393, 2596, -204),
    ("MetaGenRL", "Lunar", 2701, 2793, 233), ("EPG", "Cheetah & Hopper", -657, 24, -322),
    ("EPG", "Lunar & Cheetah", -846, 14, -845), ("RL2", "Cheetah & Hopper", 2495, 360, -503),
    ("RL2", "Lunar & Cheetah", 1869, 4, 268), ("PPO", "-", 1455, 1894, 187), ("DDPG/TD3", "-", 8315, 2718, 288),
    ("off-policy REINFORCE", "-", -88, 1804, 168), ("on-policy REINFORCE", "-", 38, 565, 120),
]
PAPER_ENVS = ("Cheetah", "Hopper", "Lunar")
OURS_BASELINE = {"DDPG/TD3": "TD3", "off-policy REINFORCE": "off-policy REINFORCE", "PPO": "PPO",
                 "on-policy REINFORCE": "on-policy REINFORCE"}


def _paper_table():
    if os.path.exists(PAPER_CSV):
        with open(PAPER_CSV) as f:
            rows = [r for r in csv.reader(line for line in f if not line.startswith("#"))][1:]
        shared = [(r[0], r[1], *map(int, r[2:])) for r in rows if r]
        if shared != PAPER:
            raise RuntimeError(f"the paper table in {PAPER_CSV} differs from the one in this benchmark")
    return PAPER


def _fmt(x):
    """A Table 2 cell: IQM [95% stratified-bootstrap CI] over seeds of the per-seed final returns."""
    from metarl import stats

    r = stats.summary_row(np.asarray(x, float).reshape(-1))
    return iqm_cell(r["iqm"], r["ci"])


def iqm_cell(iqm, ci) -> str:
    from metarl.stats import interval_text

    big = max(abs(iqm), abs(ci[0]), abs(ci[1])) >= 100  # small returns (MountainCar) keep a decimal
    return interval_text(iqm, ci, ".0f" if big else ".1f")


VERDICT_COL = "verdict (ours)"


def add_verdicts(header: list, rows: list, summary: dict, learned_label: str, vs_baselines: dict | None = None):
    """Table 2's verdict column, from summary.json's intervals: the learned objective's row carries the seen /
    unseen claims; EPG's and RL^2's rows (where ours ran) the claim that MetaGenRL beats them, per test env
    (``vs_baselines``: benchmarks.metagenrl_baselines.learned_vs_baselines); reference rows have no claim;
    the paper's rows we did not run say so. ``header`` and ``rows`` gain the column in place."""
    header.append(VERDICT_COL)
    for row in rows:
        if row[0] == "MetaGenRL (ours)" and row[1] == learned_label:
            v = "; ".join(f"{summary[k]['env']} ({k}): {summary[k]['verdict']}" for k in ("seen", "unseen"))
        elif row[0] in ("EPG", "RL2") and "not run" not in row[2] and any(
                c["method"] == row[0] for c in (vs_baselines or {}).values()):
            v = "; ".join(f"MetaGenRL > {row[0]} on {c['env']}: {c['claim_verdict']}"
                          for c in vs_baselines.values() if c["method"] == row[0])
        elif all(c == "not run" for c in row[2:-len(PAPER_ENVS)]):
            v = "not run"
        else:
            v = "- (reference)" if row[0] != "MetaGenRL (ours)" else "- (no claim read)"
        row.append(v)
    return header, rows


def _final(res):
    """Per-seed final return: the mean of the last two evaluations (less noisy than the last alone)."""
    r = np.asarray(res["eval_return"], float)
    return r[:, -min(2, r.shape[1]):].mean(1)


def build_table(scale, results, row_labels):
    """Rows: the paper's rows in order, ours filled where we ran the same thing; our own extra rows
    (quick-scale training sets) after the paper's MetaGenRL rows. Columns: our test envs, then the paper's."""
    test = list(results)
    header = ["method", "training"] + [f"{e} (ours)" for e in test] + [f"{e} (paper)" for e in PAPER_ENVS]
    ours_cell = lambda variant: [(_fmt(_final(results[e][variant])) if variant in results[e] else "not run")
                                 for e in test]
    rows, used = [], set()
    for method, train, *vals in _paper_table():
        label = None
        if method == "MetaGenRL" and train in row_labels:
            label = train
        elif method in OURS_BASELINE:
            label = OURS_BASELINE[method]
        cells = ours_cell(label) if label else ["not run"] * len(test)
        if label:
            used.add(label)
        rows.append([method, train] + cells + [str(v) for v in vals])
        if method == "MetaGenRL" and train == "Lunar":  # after the paper's last MetaGenRL row
            for lab in row_labels:
                if lab not in used and lab not in OURS_BASELINE.values():
                    rows.append(["MetaGenRL (ours)", lab] + ours_cell(lab) + ["n/a"] * len(PAPER_ENVS))
                    used.add(lab)
    if any("random" in results[e] for e in test):
        rows.append(["random policy (ours)", "-"] + ours_cell("random") + ["n/a"] * len(PAPER_ENVS))
    if any("zero action" in results[e] for e in test):
        rows.append(["zero-action policy (ours)", "-"] + ours_cell("zero action") + ["n/a"] * len(PAPER_ENVS))
    return header, rows


def to_markdown(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def plot_curves(test_results, meta_train, path_test, path_train, stamp=""):
    from metarl.plots import _plt, curves, save_fig

    plt = _plt()
    envs = list(test_results)
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.8), squeeze=False)
    for ax, e in zip(axes[0], envs):
        for k, v in test_results[e].items():  # on-policy rows evaluate from step eval_every on
            curves(ax, np.asarray(v["env_steps"])[0], {k: v["eval_return"]}, "evaluation return")
        ax.set_title(f"meta-test on {e}")
        ax.set_xlabel("environment steps")
    fig.text(0.0, -0.04, stamp, fontsize=6)
    save_fig(fig, path_test)
    plt.close(fig)
    if path_train is None:
        return
    fig, axes = plt.subplots(1, len(meta_train), figsize=(5 * len(meta_train), 3.8), squeeze=False)
    for ax, (label, r) in zip(axes[0], meta_train.items()):
        for env, m in r["metrics"].items():
            steps = np.asarray(m["env_steps"])[:, 0]
            curves(ax, steps, {env: np.asarray(m["eval_return"]).T}, "evaluation return")
        ax.set_title(f"meta-training on {label}")
        ax.set_xlabel("environment steps per agent")
    fig.text(0.0, -0.04, stamp, fontsize=6)
    save_fig(fig, path_train)


RUN_FILE = "run.json"


def default_out(scale_name: str) -> str:
    """results/metagenrl for the quick scale (make bench), results/metagenrl_<scale> for the others."""
    return OUT if scale_name == "quick" else f"{OUT}_{scale_name}"


def run_settings(scale) -> dict:
    """What makes two runs the same run: the scale's every setting and the package versions."""
    import dataclasses

    from metarl.train import package_versions

    return ex._json_norm({"scale": dataclasses.asdict(scale), "versions": package_versions()})


def _sha(obj) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _read_json(path):
    import json

    from metarl.train import CheckpointError

    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {' '.join(str(e).split())[:200]}") from None


def check_out_dir(out_dir: str, settings: dict, resume: bool) -> dict:
    """Refuse, in one line (a ``metarl.train.RunError``), before anything is compiled or written:
    ``--resume`` where there is no run or a run with other settings (naming the differences), and a
    new run over an unfinished one. Returns the stored run.json (or {})."""
    from metarl.driver import identity_diff
    from metarl.train import CheckpointMissing, ConfigMismatch, RunDirError

    path = os.path.join(out_dir, RUN_FILE)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise RunDirError(f"--out {out_dir!r} exists and is not a directory")
    stored = _read_json(path) if os.path.isfile(path) else {}
    if resume:
        if not stored:
            raise CheckpointMissing(f"nothing to resume in {out_dir!r}: no {RUN_FILE} there (no run was started "
                                    "in it); start without --resume")
        if stored.get("settings") != settings:
            raise ConfigMismatch(f"cannot resume {out_dir}: its run has other settings: "
                                 f"{identity_diff(stored.get('settings', {}), settings)}; resume with the same "
                                 "--scale and package versions, or give another --out")
    elif stored and stored.get("status") != "finished":
        raise RunDirError(f"{out_dir!r} holds an unfinished {stored.get('settings', {}).get('scale', {}).get('name', '')} "
                          f"run (status {stored.get('status')}): continue it with --resume (same settings), or give "
                          "another --out")
    return stored


def _fresh(out_dir: str):
    """A new run in ``out_dir``: drop the stage records and checkpoints of an earlier (finished) run."""
    import shutil

    shutil.rmtree(os.path.join(out_dir, "stages"), ignore_errors=True)
    shutil.rmtree(os.path.join(out_dir, "checkpoints"), ignore_errors=True)
    obj = os.path.join(out_dir, "objectives")
    if os.path.isdir(obj):
        for d in os.listdir(obj):
            ex.drop_checkpoint(os.path.join(obj, d))


def stage(out_dir: str, name: str, settings_sha: str, fn, resume: bool):
    """A finished stage's result is kept in ``stages/<name>.json`` (with the run's settings hash); on
    ``resume`` it is read back instead of running ``fn`` again. Fresh or read back, the result is the
    JSON form of ``fn()``, so a resumed run writes the same outputs as an uninterrupted one."""
    from metarl.train import ConfigMismatch, write_json

    path = os.path.join(out_dir, "stages", f"{name}.json")
    if resume and os.path.isfile(path):
        rec = _read_json(path)
        if rec.get("settings_sha256") != settings_sha:
            raise ConfigMismatch(f"cannot resume: stage record {path} belongs to a run with other settings")
        return rec["result"], True
    result = ex._json_norm(fn())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json(path, {"stage": name, "settings_sha256": settings_sha, "result": result})
    return result, False


def _arrays(tree):
    """Lists of numbers (JSON) back to arrays, null -> NaN, down a dict of dicts."""
    from metarl.driver import as_array as _as_array

    if isinstance(tree, dict):
        return {k: _arrays(v) for k, v in tree.items()}
    return _as_array(tree)


def final_scores(res) -> np.ndarray:
    """Per seed, the final return (:func:`_final`: the mean of the last two evaluations)."""
    return _final(res)


# The claims of summary.json (Table 2 of the paper: objectives meta-trained on some environments train
# fresh agents on those environments and on unseen ones).
SEEN_FRACTION = 0.7  # seen: learned reaches >= 70% of TD3's improvement over the random policy (IQM)


def _margin_stat(frac):
    """IQM(learned) - frac * IQM(TD3) - (1 - frac) * IQM(random) over x [..., runs, 3] (columns learned,
    TD3, random): >= 0 exactly when learned reaches ``frac`` of TD3's improvement over random."""
    from metarl import stats

    def stat(x, axis=(-2, -1)):
        q = stats.iqm(x, axis=-2)
        return q[..., 0] - frac * q[..., 1] - (1.0 - frac) * q[..., 2]

    return stat


def env_claims(env: str, learned, td3, random, kind: str, seed: int = 0, reps: int = 2000, zero=None) -> dict:
    """One environment's entry of summary.json: IQM [95% stratified-bootstrap CI] of the per-seed final
    returns of the learned objective, TD3 and the random policy (same seeds, same budget), TD3's
    improvement over random reached by the learned objective (IQM; None where TD3 is not above random),
    and both claims' evidence, with ``verdict`` for this environment's claim (``kind``):

    * "seen": learned >= random + 0.7 (TD3 - random) in IQM. Decided on the bootstrap interval of
      IQM(learned) - 0.7 IQM(TD3) - 0.3 IQM(random) against 0 (``stats.verdict``; no division, so the
      interval exists even where TD3 barely improves). Inconclusive where TD3's IQM is not above random's.
    * "unseen": learned beats random: ``stats.compare`` (the interval of P(learned > random) must
      exclude 1/2; the rows are paired by seed but resampled independently, which is conservative).

    ``zero`` (per-seed returns of the zero-action policy, optional) adds ``zero_action`` (its IQM row)
    and ``beats_zero_action``: the same comparison against a policy that ignores the observation and
    does nothing, a stricter reference where doing nothing is cheap (MountainCar: about 0 against
    random's -6.7, so "beats random" alone can be met without learning anything).
    """
    from metarl import stats

    learned, td3, random = (np.asarray(x, float).reshape(-1) for x in (learned, td3, random))
    rows = {k: stats.summary_row(v, seed, reps) for k, v in (("learned", learned), ("td3", td3), ("random", random))}
    L, T, R = (rows[k]["iqm"] for k in ("learned", "td3", "random"))
    frac = (L - R) / (T - R) if T > R else None
    n = min(len(learned), len(td3), len(random))
    point, lo, hi = stats.stratified_bootstrap_ci(np.stack([learned[:n], td3[:n], random[:n]], 1),
                                                  _margin_stat(SEEN_FRACTION), reps, 0.05, seed)
    seen_verdict = stats.verdict((lo, hi), paper_value=0.0) if T > R else stats.INCONCLUSIVE
    beat = stats.compare(learned, random, seed, reps)
    out = {"env": env, **rows, "fraction_of_td3_improvement": frac,
           "margin_70": {"value": float(point), "ci": [float(lo), float(hi)],
                         "claim": f"IQM(learned) - {SEEN_FRACTION} IQM(TD3) - {1 - SEEN_FRACTION:.1f} IQM(random) >= 0",
                         "verdict": seen_verdict},
           "beats_random": {"p_improvement": beat["p_improvement"], "p_improvement_ci": beat["p_improvement_ci"],
                            "outcome": beat["verdict"], "verdict": beat["claim_verdict"]},
           "td3_above_random": T > R}
    if kind == "seen":
        out["claim"] = (f"learned reaches >= {SEEN_FRACTION:.0%} of TD3's improvement over the random policy "
                        "(IQM of the final return)")
        out["verdict"] = seen_verdict
    else:
        out["claim"] = "learned beats the random policy (interval of P(learned > random) excludes 1/2)"
        out["verdict"] = beat["claim_verdict"]
    # The row as the results pages show it: ours (the learned objective) beside the claim's reference
    # (seen: TD3, whose improvement over random is the bar; unseen: the random policy).
    ref = "td3" if kind == "seen" else "random"
    out.update({k: rows["learned"][k] for k in ("iqm", "ci", "n")}, iqm_b=rows[ref]["iqm"], ci_b=rows[ref]["ci"],
               baseline_name="TD3" if ref == "td3" else "random policy")
    if kind != "seen":
        out.update(p_improvement=beat["p_improvement"], p_improvement_ci=beat["p_improvement_ci"])
    if zero is not None:
        zero = np.asarray(zero, float).reshape(-1)
        z = stats.compare(learned, zero, seed, reps)
        out["zero_action"] = stats.summary_row(zero, seed, reps)
        out["beats_zero_action"] = {"p_improvement": z["p_improvement"], "p_improvement_ci": z["p_improvement_ci"],
                                    "outcome": z["verdict"], "verdict": z["claim_verdict"]}
    return out


def build_summary(finals: dict, seen: str, unseen: str, learned_label: str, seeds: int, wall_s: float,
                  meta_grad: dict, **extra) -> dict:
    """summary.json (read by automated checks). ``finals``: {env: {variant: per-seed final returns}} with
    variants ``learned_label``, "TD3" and "random"; ``meta_grad``: the meta-training monitor's summary
    (first / last: population means of the agents' first and last meta-gradient norms; min: the
    smallest of any agent)."""
    def entry(env, kind):
        f = finals[env]
        return env_claims(env, f[learned_label], f["TD3"], f["random"], kind, zero=f.get("zero action"))

    out = {"seen": entry(seen, "seen"), "unseen": entry(unseen, "unseen")}
    for kind in ("seen", "unseen"):  # a row of its own on the results pages: learned vs doing nothing
        c = out[kind]
        if "zero_action" in c:
            out[f"{kind}_vs_zero_action"] = {
                "env": c["env"], **{k: c["learned"][k] for k in ("iqm", "ci", "n")},
                "iqm_b": c["zero_action"]["iqm"], "ci_b": c["zero_action"]["ci"],
                "baseline_name": "zero-action policy", "p_improvement": c["beats_zero_action"]["p_improvement"],
                "p_improvement_ci": c["beats_zero_action"]["p_improvement_ci"],
                "claim": "(a stricter reference, not the paper's claim) learned beats the policy that always acts 0",
                "verdict": c["beats_zero_action"]["verdict"]}
    return {**out, "seeds": int(seeds),
            "wall_s": float(wall_s), "meta_grad_norm": {k: float(meta_grad[k]) for k in ("first", "last", "min")},
            "learned": learned_label, **extra}


def write_finals_csv(path: str, finals: dict, roles: dict, stamp: str):
    """Per-seed final returns: env, role (seen / unseen / test), variant, seed, final_return."""
    rows = [["env", "role", "variant", "seed", "final_return"]]
    for env, per in finals.items():
        for variant, x in per.items():
            rows += [[env, roles.get(env, "test"), variant, i, f"{v:.6g}"] for i, v in enumerate(np.asarray(x))]
    _write_csv(path, [stamp, "final_return: mean of the last two evaluations of each seed"], rows)


def run(scale_name: str, out_dir: str | None = None, progress: bool = True, resume: bool = False, stop=None):
    """Meta-train, meta-test (learned objective, fixed-objective baselines, random policy; the quick and
    paper scales also the on-policy rows) and write every output into ``out_dir``. Each finished stage
    is kept under ``stages/`` and the running one checkpoints as it goes, so ``resume=True`` continues
    an interrupted run (refused, in one line, if its settings differ)."""
    from metarl.train import Interrupted, write_json

    scale = ex.get_scale(scale_name)
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
    from metarl.train import Interrupted, device_info, package_versions, write_json

    def stage_done(name):  # Ctrl-C during a stage without segments (random, on-policy): stop after it
        if stop is not None and stop.requested:
            raise Interrupted(f"stopped after the {name} stage")

    objectives, meta_train = {}, {}
    for train in scale.train_sets:
        label = " & ".join(train)
        d = os.path.abspath(os.path.join(out_dir, "objectives", "_".join(train)))
        r, _ = stage(out_dir, f"meta_train_{'_'.join(train)}", sha,
                     lambda: ex.meta_train(scale, train, d, seed=0, progress=progress, resume=resume, stop=stop),
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
                  lambda: ex.meta_test(scale, objectives, test, seed=100, baselines=scale.baselines, progress=progress,
                                       ckpt_dir=ck, resume=resume, stop=stop), resume)
    results = _arrays(mt["results"])
    stage_done("meta-test")
    rnd, _ = stage(out_dir, "random", sha, lambda: ex.random_test(scale, test, seed=100), resume)
    stage_done("random-policy")
    zero, _ = stage(out_dir, "zero_action", sha, lambda: ex.random_test(scale, test, seed=100, policy="zero"), resume)
    stage_done("zero-action policy")
    for e in test:
        results[e].update(_arrays(rnd["results"][e]))
        results[e].update(_arrays(zero["results"][e]))
    onp = None
    if scale.onpolicy:
        onp, _ = stage(out_dir, "onpolicy", sha, lambda: ex.onpolicy_test(scale, test, seed=100, progress=progress),
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


# Section 5.2 ablations (Fig. 5: the objective's inputs; Fig. 6: inner gradient steps). The paper shows
# them as curves only (meta-training on Lunar & Cheetah, testing on Cheetah, Hopper); what it reports:
ABLATIONS = [
    ("full", {}, {}, "reference"),
    ("no t", {"use_t": False}, {}, "performs well; slightly slower convergence in meta-training (Fig. 5)"),
    ("no V (V_t, V_t+1)", {"use_v": False}, {}, "large variance in meta-training; no meaningful progress at "
                                                 "test time (Fig. 5)"),
    ("no V_t+1", {"use_v_next": False}, {}, "no effect on performance (Fig. 5)"),
    ("3 inner steps", {}, {"inner_steps": 3}, "better test-time training on Hopper and Cheetah (Fig. 6)"),
    ("5 inner steps", {}, {"inner_steps": 5}, "worse than 3 steps (Fig. 6)"),
]


def _plot_ablation_training(trained, path, stamp=""):
    """Fig. 5a: the meta-training population's evaluation return, one panel per training environment."""
    from metarl.plots import _plt, curves, save_fig

    plt = _plt()
    env_names = list(next(iter(trained.values()))["metrics"])
    fig, axes = plt.subplots(1, len(env_names), figsize=(5 * len(env_names), 3.8), squeeze=False)
    for ax, env in zip(axes[0], env_names):
        for label, r in trained.items():
            m = r["metrics"][env]
            curves(ax, np.asarray(m["env_steps"])[:, 0], {label: np.asarray(m["eval_return"]).T}, "evaluation return")
        ax.set_title(f"meta-training agents on {env.split('/')[-1]}")
        ax.set_xlabel("environment steps per agent")
    fig.text(0.0, -0.04, stamp, fontsize=6)
    save_fig(fig, path)
    plt.close(fig)


def run_ablations(scale_name: str, out_dir: str = OUT, progress: bool = True):
    """Meta-train one objective per ablation on the first training set (same seed and budget as the main
    row), then meta-test each on every test environment (same seeds; one program per objective input
    layout). Writes ablations.md / .csv / .json and ablation_curves.png into ``out_dir``."""
    from metarl.meta import metagenrl as mg
    from metarl.train import device_info, package_versions, write_json

    scale = ex.get_scale(scale_name)
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    train = scale.train_sets[0]
    test = tuple(scale.envs)
    trained, by_cfg = {}, {}
    for label, obj_kw, cfg_kw, _ in ABLATIONS:
        ocfg = mg.ObjectiveConfig(**obj_kw)
        d = os.path.abspath(os.path.join(out_dir, "ablations", label.replace(" ", "_").replace("(", "")
                                         .replace(")", "").replace(",", "")))
        r = ex.meta_train(scale, train, d, seed=0, objective=ocfg, inner_steps=cfg_kw.get("inner_steps"),
                          progress=progress)
        trained[label] = r
        by_cfg.setdefault(ocfg, {})[label] = r["paths"]["final"]
    results = {e: {} for e in test}
    for ocfg, objs in by_cfg.items():
        mt = ex.meta_test(scale, objs, test, seed=100, baselines=False, progress=progress)
        for e in test:
            results[e].update(mt["results"][e])
    wall = time.perf_counter() - t0
    header = (["objective", "meta-training (" + " & ".join(train) + ")"] + [f"meta-test {e}" for e in test]
              + ["paper (Sec. 5.2, curves only)"])
    rows = []
    for label, _, _, paper in ABLATIONS:
        m = trained[label]["metrics"]
        # Meta-training: the population's final evaluation return per training env, mean over its agents.
        mt_cell = ", ".join(f"{k.split('/')[-1]} {np.mean(np.asarray(v['eval_return'])[-min(2, len(v['eval_return'])):]):.0f}"
                            for k, v in m.items())
        rows.append([label, mt_cell] + [_fmt(_final(results[e][label])) for e in test] + [paper])
    table = to_markdown(header, rows)
    versions = package_versions()
    stamp = _stamp(scale_name, wall, versions)
    md = (f"# MetaGenRL ablations, Section 5.2 ({scale_name} scale)\n\n{table}\n\n"
          f"Meta-training: every objective trained on {' & '.join(train)} with the main row's budget and seed "
          f"({scale.train.total_steps} steps per agent, {scale.total_agents} agents); the column gives the "
          f"population's evaluation return at the end (mean of the last two evaluations and of the agents). "
          f"Meta-test: mean ± std over {scale.test_seeds} seeds of the final return after "
          f"{scale.test.total_steps} steps, fresh agents, frozen objective, the same seeds for every row. "
          + ("Quick scale: NOT comparable with the paper. " if scale_name == "quick" else "")
          + f"Wall time {wall:.0f} s.\n\n{stamp}\n")
    write_text(os.path.join(out_dir, "ablations.md"), md)
    _write_csv(os.path.join(out_dir, "ablations.csv"), [stamp], [header] + rows)
    plot_curves(results, {}, os.path.join(out_dir, "ablation_test_curves.png"), None, stamp)
    _plot_ablation_training(trained, os.path.join(out_dir, "ablation_train_curves.png"), stamp)
    write_json(os.path.join(out_dir, "ablations.json"), dict(
        scale=scale_name, wall_s=wall, package_versions=versions, device=device_info(),
        meta_train={k: dict(wall_s=v["wall_s"], metrics=v["metrics"], meta_grad_norm=v["meta_grad_norm"],
                            config=v["config"]) for k, v in trained.items()},
        meta_test=results, table=dict(header=header, rows=rows)))
    print(md)
    return md


def _stamp(scale_name, wall, versions):
    from metarl.train import device_info

    return (f"scale={scale_name} wall={wall:.0f}s device={device_info()['devices']} "
            + " ".join(f"{k}={v}" for k, v in versions.items()))


def _write_csv(path, comments, rows):
    """``rows`` as CSV after one ``# comment`` line each, written atomically (via common.write_text)."""
    buf = io.StringIO()
    buf.write("".join(f"# {c}\n" for c in comments))
    csv.writer(buf).writerows(rows)
    write_text(path, buf.getvalue())


def main(argv=None):
    from metarl.cli import ArgumentParser, add_scale_argument, fail

    p = ArgumentParser(prog="python -m benchmarks.metagenrl", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scale_argument(p, ex.SCALES)  # a bad scale: one line on stderr, exit status 2
    p.add_argument("--out", default=None, help="output folder (default results/metagenrl for quick, "
                                               "results/metagenrl_<scale> otherwise)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out: finished stages are read back from stages/, the "
                        "running one continues from its checkpoint; refused if the settings differ")
    p.add_argument("--ablations", action="store_true",
                   help="run the Section 5.2 ablations (no t, no V, no V_t+1, 3 and 5 inner steps) instead")
    args = p.parse_args(argv)
    ex.get_scale(args.scale)  # a bad value fails here, naming the valid choices
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a repeated or resumed run skips the compilation
    out = args.out or default_out(args.scale)
    if args.ablations:
        if args.resume:
            p.error("--resume is not available with --ablations (each ablation is a short quick-scale run)")
        run_ablations(args.scale, out)
        return
    from metarl.train import Interrupted, RunError

    stop = ex.StopFlag()
    try:
        from benchmarks.common import compile_report

        with stop.sigint(), compile_report("benchmarks.metagenrl", out):
            run(args.scale, out, resume=args.resume, stop=stop)
    except (Interrupted, KeyboardInterrupt) as e:
        cmd = f"python -m benchmarks.metagenrl --scale {args.scale} --out {out} --resume"
        why = f" ({e})" if str(e) else ""
        sys.stderr.write(f"{p.prog}: interrupted{why}; finished stages and the last checkpoint are kept in {out}; "
                         f"continue with: {cmd}\n")
        raise SystemExit(130)
    except RunError as e:
        fail(p.prog, e, getattr(e, "exit_code", 1))


if __name__ == "__main__":
    main()
