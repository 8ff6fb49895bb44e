"""The command line ``python -m benchmarks.gpu`` (``make bench-gpu``; ``--dry-run`` on the CPU)."""
from __future__ import annotations


import json
import os

from benchmarks.gpu.kit import Kit
from benchmarks.gpu.report import _jsonable, plan_text


def main(argv=None):
    from metarl.cli import ArgumentParser, existing_file, make_out_dir, positive_float, positive_int

    p = ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--budget-s", type=positive_float, default=None,
                   help="wall-time budget in seconds, imports and compilation included (default 450; dry run 1800, "
                        "a cap for a loaded CPU: the dry run's work is fixed)")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: every part's code path, in seconds")
    p.add_argument("--out", default=os.path.join("results", "gpu"), help="output folder (default results/gpu)")
    p.add_argument("--costs", default=None, type=existing_file, help="a measured cost file (a previous run's summary.json) for the plan")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="compile threads (default 12 on the GPU machine's 16 cores; dry run 2)")
    p.add_argument("--plan-only", action="store_true", help="write plan.json, print it and stop")
    a = p.parse_args(argv)
    if a.budget_s is None:
        a.budget_s = 1800.0 if a.dry_run else 450.0
    make_out_dir(p, a.out)
    if a.dry_run:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    kit = Kit(a)
    if a.plan_only:
        from benchmarks.common import write_text

        write_text(os.path.join(a.out, "plan.json"), json.dumps(kit.plan, indent=1, default=_jsonable) + "\n")
        print(plan_text(kit.plan))
        return kit
    kit.run()
    return kit
