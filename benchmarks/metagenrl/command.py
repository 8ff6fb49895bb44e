"""The command line ``python -m benchmarks.metagenrl`` (``make bench-metagenrl``)."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

from metarl.config_cli import OnlyFlag
from metarl.meta.metagenrl.protocol import SCALES
from benchmarks.metagenrl.stages import default_out
from benchmarks.metagenrl.run import run
from benchmarks.metagenrl.ablations import run_ablations


@dataclass(frozen=True)
class MetaGenRLBench:
    """The scale of the table's stages (or the ablations) and where they go."""

    scale: Literal[SCALES] = "quick"  # metarl.meta.metagenrl.protocol's scales
    out: str | None = None  # output folder (None: results/metagenrl for quick, results/metagenrl_<scale> otherwise)
    resume: bool = False
    """continue the interrupted run in --out: finished stages are read back from stages/, the running one
    continues from its checkpoint; refused if the settings differ"""
    ablations: OnlyFlag[bool] = False
    """run the Section 5.2 ablations (no t, no V, no V_t+1, 3 and 5 inner steps) instead"""

    def validate(self):
        if self.ablations and self.resume:
            raise ValueError("--resume is not available with --ablations (each ablation is a short quick-scale run)")


PROG = "python -m benchmarks.metagenrl"


def main(argv=None):
    from metarl.cli import fail
    from metarl.config_cli import parse_command
    from metarl.driver.segments import StopFlag

    args = parse_command(PROG, _pkg_doc(), MetaGenRLBench(), argv)
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a repeated or resumed run skips the compilation
    out = args.out or default_out(args.scale)
    if args.ablations:
        run_ablations(args.scale, out)
        return
    from metarl.train import Interrupted, RunError

    stop = StopFlag()
    try:
        from metarl.compile_clock import compile_report

        with stop.sigint(), compile_report("benchmarks.metagenrl", out):
            run(args.scale, out, resume=args.resume, stop=stop)
    except (Interrupted, KeyboardInterrupt) as e:
        cmd = f"python -m benchmarks.metagenrl --scale {args.scale} --out {out} --resume"
        why = f" ({e})" if str(e) else ""
        sys.stderr.write(f"{PROG}: interrupted{why}; finished stages and the last checkpoint are kept in {out}; "
                         f"continue with: {cmd}\n")
        raise SystemExit(130)
    except RunError as e:
        fail(PROG, e, getattr(e, "exit_code", 1))


def _pkg_doc() -> str:
    from benchmarks import metagenrl  # the package's docstring is the command's description

    return metagenrl.__doc__
