"""Table 2's meta-learned baselines, EPG and RL^2, on MetaGenRL's cross-environment protocol.

    python -m benchmarks.metagenrl_baselines --scale quick   # results/metagenrl_baselines/{epg,rl2}/*.json

:func:`run` runs the two experiments' command lines: each meta-trains on the training set that
experiments/metagenrl.py uses (quick: Pendulum & Reacher, standing for the paper's Cheetah & Hopper) and
meta-tests on every test environment (seen and unseen); it returns ``{"EPG": {env: IQM [CI] over seeds},
"RL2": {...}}``. benchmarks/metagenrl.py calls it so that Table 2's EPG and RL^2 rows (training set
"Cheetah & Hopper") show ours beside the paper's, and results/metagenrl/summary.json gains the entries "EPG" and "RL2".
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Literal

from metarl.meta import baselines_common as bc

OUT = os.path.join("results", "metagenrl_baselines")
METHODS = ("EPG", "RL2")
# Which paper row our run fills: the row whose training set has the same shape as ours (two training
# environments, the third unseen). The paper's second rows (Lunar & Cheetah) stay "not run".
PAPER_TRAINING = "Cheetah & Hopper"


def run(scale: str = "quick", out_dir: str = OUT, progress: bool = True) -> dict:
    """Both baselines at ``scale``, each its experiment's command line (``python -m experiments.epg`` and
    ``experiments.rl2``, run in this process into ``out_dir``/epg and ``out_dir``/rl2, replacing an earlier
    run there), read back from the records they write. Returns {"EPG": {env: summary}, "RL2": {env: summary},
    "_runs": raw} with summary = {"iqm", "ci", "n", "mean", "std", "per_seed", "seen"} (the return per seed:
    EPG's final return after meta-test training, RL^2's last-episode return of a trial)."""
    from metarl.cli import run_module

    t0 = time.perf_counter()
    runs = {}
    for method, name in (("EPG", "epg"), ("RL2", "rl2")):
        d = os.path.join(out_dir, name)
        run_module(f"experiments.{name}", ["--scale", scale, "--out", d, "--overwrite"]
                   + ([] if progress else ["--no-progress"]))
        with open(os.path.join(d, f"{name}.json")) as f:
            runs[method] = json.load(f)
    out = {m: {e: dict(s, seen=bool(r["results"][e]["seen"])) for e, s in r["summary"].items()}
           for m, r in runs.items()}
    out["_runs"] = runs
    out["_wall_s"] = time.perf_counter() - t0
    return out


def cell(summary: dict) -> str:
    """A Table 2 cell: IQM [95% CI] over seeds (as benchmarks.metagenrl's own cells)."""
    from benchmarks.metagenrl import iqm_cell

    return iqm_cell(summary["iqm"], summary["ci"])


def fill_rows(rows: list, baselines: dict, test: list) -> list:
    """Table 2 rows with our EPG / RL^2 cells filled in the "Cheetah & Hopper" rows (in place; returned)."""
    for row in rows:
        if row[0] in METHODS and row[1] == PAPER_TRAINING:
            row[2:2 + len(test)] = [cell(baselines[row[0]][e]) if e in baselines[row[0]] else "not run" for e in test]
    return rows


def summary_entries(baselines: dict, scale: str) -> dict:
    """{"EPG": {env: IQM [CI] row}, "RL2": {...}, "baselines_protocol": {...}} for summary.json."""
    runs = baselines["_runs"]
    r0 = runs["RL2"]
    from metarl import stats

    # No paper claim can be checked on stand-in environments: below the paper scale every row is inconclusive.
    verdict = {"verdict": stats.INCONCLUSIVE} if scale != "paper" else {}
    entries = {m: {e: {**s, **verdict} for e, s in baselines[m].items()} for m in METHODS}
    entries["baselines_protocol"] = {
        "scale": scale, "train": list(r0["protocol"]["train"]), "test": list(r0["protocol"]["test"]),
        "paper_row": PAPER_TRAINING,
        "metric": ("per seed: EPG = final return (deterministic policy) of fresh agents trained by the evolved loss, "
                   "mean over the seed's test agents; RL2 = return of the last episode of a trial (frozen agent, "
                   "after its in-trial adaptation), mean over trials; IQM [95% stratified-bootstrap CI] over seeds"),
        "seeds": {m: runs[m]["seeds"] for m in METHODS}, "wall_s": {m: runs[m]["wall_s"] for m in METHODS}}
    return entries


def learned_vs_baselines(baselines: dict, learned: dict) -> dict:
    """MetaGenRL's learned objective against EPG and RL^2 per test environment, from per-seed scores:
    ``baselines`` {"EPG"|"RL2": {env: {"per_seed": [...]}}}, ``learned`` {env: [per-seed final return]}.
    Rows "learned vs EPG" / "learned vs RL2" with both IQM [CI], P(learned > baseline) and its interval and
    the verdict on the paper's claim that the learned objective does better (Table 2; the scores are not the
    same statistic for RL^2, whose score is a trial's last episode, so read those rows as a rough reference)."""
    from metarl import stats

    out = {}
    for m in METHODS:
        for env, per_seed in learned.items():
            b = baselines.get(m, {}).get(env)
            if b is None:
                continue
            c = stats.compare(per_seed, b["per_seed"], claim="higher")
            out[f"learned vs {m} ({env})"] = {**c, "iqm": c["iqm_a"], "ci": c["ci_a"], "method": m, "env": env,
                                              "claim": f"MetaGenRL's learned objective beats {m} on {env}"}
    return out


def merge_summary(path: str, entries: dict):
    """Add ``entries`` to the JSON object in ``path`` (created if absent), atomically."""
    from metarl.train import write_json

    obj = {}
    if os.path.exists(path):
        with open(path) as f:
            obj = json.load(f)
    obj.update(entries)
    write_json(path, obj)


def note(baselines: dict) -> str:
    runs = baselines["_runs"]
    e, r = runs["EPG"], runs["RL2"]
    iq = lambda m: "; ".join(f"{k} {v['iqm']:.0f} [{v['ci'][0]:.0f}, {v['ci'][1]:.0f}]" for k, v in baselines[m].items())
    return (f"EPG and RL^2 (ours, row \"{PAPER_TRAINING}\"): meta-trained on {' & '.join(r['protocol']['train'])}, "
            f"tested on {', '.join(r['protocol']['test'])} (unseen: "
            f"{', '.join(x for x in r['protocol']['test'] if x not in r['protocol']['train']) or 'none'}). "
            f"EPG: {e['seeds']} ES runs of {e['config']['generations']} generations x {e['config']['population']} "
            f"members, fresh agents trained {e['config']['inner_steps']} steps by the evolved loss; RL^2: "
            f"{r['seeds']} agents, {r['config']['updates']} PPO updates, score = last episode of a "
            f"{r['config']['trial_episodes']}-episode trial. IQM [95% CI] over seeds: EPG {iq('EPG')}; RL2 {iq('RL2')}. "
            f"Wall time {baselines['_wall_s']:.0f} s.")


@dataclass(frozen=True)
class BaselinesBench:
    """The scale of EPG's and RL^2's runs and where their rows go."""

    scale: Literal[bc.SCALES] = "quick"  # MetaGenRL's protocol at this scale
    out: str = OUT  # output folder


def main(argv=None):
    from metarl.config_cli import parse_command

    a = parse_command("python -m benchmarks.metagenrl_baselines", __doc__.splitlines()[0], BaselinesBench(), argv)
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a repeated or resumed run skips the compilation
    from metarl.compile_clock import compile_report

    with compile_report("benchmarks.metagenrl_baselines", a.out):
        b = run(a.scale, a.out)
    print(note(b))
    return b


if __name__ == "__main__":
    main()
