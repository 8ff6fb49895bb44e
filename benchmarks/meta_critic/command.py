"""The command line ``python -m benchmarks.meta_critic`` (``make bench-meta-critic``)."""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile

from benchmarks.meta_critic.config import SCALES, TABLES, bench_config, job_config, plan, smoke_config
from benchmarks.meta_critic.run import _read_json, run_bench, tables_arg


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
