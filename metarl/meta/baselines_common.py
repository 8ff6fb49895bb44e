"""What the MetaGenRL-protocol baselines (experiments/rl2.py, experiments/epg.py) share: the protocol
(environments, training set, test set; metarl.meta.metagenrl.protocol, so the baselines run where
MetaGenRL runs), the run directory and record, the per-seed summary and the command line (the segment loop
with its checkpoints is metarl.driver.segments)."""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from metarl.cli import progress_bar  # noqa: F401  (the experiments' bar: bc.progress_bar)
from metarl.meta.metagenrl import protocol as mgx

SCALES = ("quick", "medium", "paper")


def protocol(scale: str, train: tuple | None = None, test: tuple | None = None) -> dict:
    """MetaGenRL's cross-environment protocol at ``scale``: {envs: {label: name}, train: labels,
    test: labels (seen first, then unseen), max_episode_steps}. A scale experiments/metagenrl.py does
    not define (yet) uses its quick environments."""
    key = scale if scale in mgx.ENVS else "quick"
    envs = dict(mgx.ENVS[key])
    train = tuple(train or mgx.TRAIN_SETS[key][0])
    test = tuple(test or (list(train) + [e for e in envs if e not in train]))
    for label in train + test:
        if label not in envs:
            raise ValueError(f"unknown environment label {label!r} at scale {scale}; valid: {', '.join(envs)}")
    max_steps = mgx.get_scale(key).test.max_episode_steps if key in mgx.SCALES else None
    return dict(envs=envs, train=train, test=test, max_episode_steps=max_steps, env_scale=key)



def claim_out_dir(out_dir: str, name: str, resume: bool, overwrite: bool):
    """The run-directory policy (metarl.driver.prepare_out_dir): a new run refuses an --out holding an
    earlier run's checkpoint, <name>.json or run record (config.json, meta.json) unless ``overwrite``; ``resume`` needs a checkpoint.
    One-line RunError otherwise. Called after the settings validate, before anything is compiled."""
    from metarl.driver import CHECKPOINT_NAMES, metrics_files, prepare_out_dir

    prepare_out_dir(out_dir, resume, overwrite, CHECKPOINT_NAMES + (f"{name}.json", "config.json", "meta.json") +
                    metrics_files(),
                    resume_from=CHECKPOINT_NAMES)


def run_record(out_dir: str | None, record: dict, resume: bool):
    """The run's config.json and meta.json in ``out_dir`` (metarl.driver.RunRecord); a no-op without a folder."""
    import contextlib

    from metarl.driver import RunRecord

    return RunRecord(out_dir, record, resume=resume) if out_dir else contextlib.nullcontext()


def seed_summary(per_seed) -> dict:
    """IQM [95% stratified-bootstrap CI] over seeds plus the per-seed values (JSON-ready)."""
    from metarl import stats

    per_seed = np.asarray(per_seed, float).reshape(-1)
    return {**stats.summary_row(per_seed), "mean": float(per_seed.mean()), "std": float(per_seed.std()),
            "per_seed": [float(x) for x in per_seed]}


def asdict(cfg) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


def finish(out_dir: str | None, name: str, record: dict, results: dict, history: dict, t0: float,
           t_train: float, point: str = "eval_index") -> dict:
    """A baseline run's result: ``record`` (its settings) with the per-environment ``results``, their
    summary over seeds (IQM [95% CI] of ``final``), the meta-training ``history`` ({metric: [seeds, points,
    ...]}, each point a ``point``), wall times from ``t0`` (perf_counter) and of meta-training; written to
    ``<out_dir>/<name>.json``, and the history to ``<out_dir>/metrics.csv`` and ``metrics.json`` (a row per seed
    and point: metarl.driver.write_metrics).
    Returns it."""
    import time

    summary = {e: seed_summary(r["final"]) for e, r in results.items()}
    out = dict(record, results=results, summary=summary, history=history, wall_s=time.perf_counter() - t0,
               meta_train_wall_s=t_train)
    write_record(out_dir, name, out)
    if out_dir and history:
        from metarl.driver import write_metrics

        write_metrics(out_dir, [([{"seed": s} for s in range(record["seeds"])], history)], point)
    return out


def write_record(out_dir: str | None, name: str, out: dict):
    """``<out_dir>/<name>.json``: a baseline run's results with package versions and device (atomic)."""
    if out_dir:
        from metarl.train import device_info, package_versions, write_json

        os.makedirs(out_dir, exist_ok=True)
        write_json(os.path.join(out_dir, f"{name}.json"), dict(out, package_versions=package_versions(),
                                                               device=device_info()))


def main(name: str, doc: str, scales: dict, run, line, argv=None) -> dict:
    """The command line of a baseline, generated from its experiment dataclass (metarl.config_cli: every field
    an option, --scale picking the defaults from ``scales``) plus --out, --resume, --overwrite, --no-progress;
    calls ``run(exp, scale, out, resume=, progress=, overwrite=)`` and prints ``line(label, summary, result)``
    for each test environment. A bad setting or a refused run is one line on stderr."""
    from metarl import config_cli, enable_compilation_cache
    from metarl.cli import fail
    from metarl.driver import RunError

    prog = f"python -m experiments.{name}"
    a = config_cli.parse(prog, doc, scales, argv,
                         config_cli.RunOptions(out=os.path.join("results", "metagenrl_baselines", name)))
    o = a.options
    enable_compilation_cache()  # a resumed or repeated run skips the compilation
    try:
        r = run(a.exp, a.scale, o.out, resume=o.resume, progress=o.progress, overwrite=o.overwrite)
    except ValueError as e:
        fail(prog, e)
    except RunError as e:  # e.g. the NaN/Inf guard: one line naming the seeds and the segment
        fail(prog, e, e.exit_code)
    for label, s in r["summary"].items():
        print(line(label, s, r["results"][label]))
    return r
