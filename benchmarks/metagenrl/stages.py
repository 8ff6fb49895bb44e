"""The MetaGenRL benchmark's run folder: its settings and identity, stages kept as they finish (resume), and
the claims of summary.json (seen / unseen: learned against TD3 and the random policy)."""
from __future__ import annotations

import os

import numpy as np

from metarl.driver.segments import drop_checkpoint, json_norm
from benchmarks.metagenrl.tables import OUT, _final
from benchmarks.metagenrl.ablations import _write_csv


RUN_FILE = "run.json"


def default_out(scale_name: str) -> str:
    """results/metagenrl for the quick scale (make bench), results/metagenrl_<scale> for the others."""
    return OUT if scale_name == "quick" else f"{OUT}_{scale_name}"


def run_settings(scale) -> dict:
    """What makes two runs the same run: the scale's every setting and the package versions."""
    import dataclasses

    from metarl.train import package_versions

    return json_norm({"scale": dataclasses.asdict(scale), "versions": package_versions()})


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
            drop_checkpoint(os.path.join(obj, d))


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
    result = json_norm(fn())
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
