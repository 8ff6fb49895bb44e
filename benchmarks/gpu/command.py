"""The command line ``python -m benchmarks.gpu`` (``make bench-gpu``; ``--dry-run`` on the CPU)."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

from metarl.config_cli import OnlyFlag, PositiveFloat, PositiveInt

from benchmarks.gpu.kit import Kit
from benchmarks.gpu.report import _jsonable, plan_text


@dataclass(frozen=True)
class GPUKit:
    """The budget, the output folder and the plan's inputs."""

    budget_s: PositiveFloat | None = None
    """wall-time budget in seconds, imports and compilation included (None: 450; dry run 1800, a cap for a
    loaded CPU: the dry run's work is fixed)"""
    dry_run: OnlyFlag[bool] = False  # tiny sizes on the CPU: every part's code path, in seconds
    out: str = os.path.join("results", "gpu")  # output folder
    costs: str | None = None  # a measured cost file (a previous run's summary.json) for the plan
    workers: PositiveInt | None = None  # compile threads (None: 12 on the GPU machine's 16 cores; dry run 2)
    plan_only: OnlyFlag[bool] = False  # write plan.json, print it and stop

    def validate(self):
        if self.costs is not None and not os.path.isfile(self.costs):
            raise ValueError(f"argument --costs: {self.costs!r} is not a file")


PROG = "python -m benchmarks.gpu"


def main(argv=None):
    from metarl.cli import make_out_dir
    from metarl.config_cli import parse_command

    a = parse_command(PROG, __doc__.splitlines()[0], GPUKit(), argv)
    if a.budget_s is None:
        a = dataclasses.replace(a, budget_s=1800.0 if a.dry_run else 450.0)
    make_out_dir(PROG, a.out)
    if a.dry_run:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    kit = Kit(a)
    if a.plan_only:
        from metarl.driver import write_text

        write_text(os.path.join(a.out, "plan.json"), json.dumps(kit.plan, indent=1, default=_jsonable) + "\n")
        print(plan_text(kit.plan))
        return kit
    kit.run()
    return kit
