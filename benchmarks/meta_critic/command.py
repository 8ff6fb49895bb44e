"""The command line ``python -m benchmarks.meta_critic`` (``make bench-meta-critic``)."""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Literal

from metarl.config_cli import OnlyFlag

from benchmarks.meta_critic.config import SCALES, TABLES, bench_config, job_config, plan, smoke_config
from benchmarks.meta_critic.run import _read_json, run_bench


@dataclass(frozen=True)
class MetaCriticBench:
    """The scale's plan of jobs (or a subset), the tables to produce and where."""

    scale: Literal[SCALES] = "quick"  # the plan: quick (minutes), medium (the claims' budget), paper
    out: str | None = None
    """output folder (None: results/meta_critic; with --smoke a temporary folder, so a smoke run never
    overwrites results)"""
    only: tuple[str, ...] = ()  # jobs to run, each 'env|algo' or 'env', space-separated (none: the whole plan)
    smoke: OnlyFlag[bool] = False
    """trace and run every planned program for a few steps only (1 seed, short episodes): checks that a scale
    runs end to end, measures nothing"""
    tables: tuple[Literal[TABLES], ...] = TABLES  # the parts to run, space-separated
    resume: bool = False
    """continue an interrupted run in --out: finished jobs are read back from runs/<job>/job.json, the
    unfinished one continues from its checkpoint; the settings must be the same"""

    def validate(self):
        if not self.tables:
            raise ValueError(f"argument --tables: give at least one of {', '.join(TABLES)}")


PROG = "python -m benchmarks.meta_critic"


def main(argv=None):
    from metarl.cli import fail
    from metarl.config_cli import parse_command

    a = parse_command(PROG, "Online Meta-Critic tables", MetaCriticBench(), argv)
    a = dataclasses.replace(a, tables=tuple(dict.fromkeys(a.tables)))
    cfg = bench_config(a.scale)  # raises on a bad scale, naming it and the valid ones
    cfg = dataclasses.replace(cfg, tables=a.tables)
    if a.only:
        cfg = dataclasses.replace(cfg, only=a.only)
    if a.smoke:
        cfg = smoke_config(cfg)
    if a.out is None:
        out = (os.path.join(tempfile.gettempdir(), f"meta_critic_smoke_{cfg.scale}") if cfg.smoke
               else os.path.join("results", "meta_critic" if cfg.scale == "quick" else f"meta_critic_{cfg.scale}"))
        a = dataclasses.replace(a, out=out)
    try:  # a bad --only: one line naming the valid jobs, before anything is compiled or written
        jobs = plan(cfg)
        for env, algo, variants in jobs:
            job_config(cfg, env, algo, variants)
    except ValueError as e:
        fail(PROG, f"{e} (see --help)")
    if not a.resume and os.path.isfile(os.path.join(a.out, "results.json")) and not cfg.smoke:
        prev = _read_json(os.path.join(a.out, "results.json"))
        if not prev.get("complete", True):
            fail(PROG, f"{a.out!r} holds an unfinished run: continue it with --resume (same settings), or give "
                       "another --out")
    from metarl.cli import make_out_dir
    from metarl.train import Interrupted, RunError

    make_out_dir(PROG, a.out)
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a repeated or resumed run skips the compilation
    try:
        from metarl.compile_clock import compile_report

        with compile_report("benchmarks.meta_critic", a.out):
            print(run_bench(cfg, jobs, a.out, a.resume))
    except Interrupted as e:
        cmd = " ".join(["python -m benchmarks.meta_critic"] + [x for x in (argv or sys.argv[1:]) if x != "--resume"]
                       + ["--resume"])
        sys.exit(f"benchmarks.meta_critic: interrupted ({e}); finished jobs are kept; continue with: {cmd}")
    except RunError as e:
        sys.exit(f"benchmarks.meta_critic: {e}")
