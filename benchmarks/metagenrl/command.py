"""The command line ``python -m benchmarks.metagenrl`` (``make bench-metagenrl``)."""
from __future__ import annotations

import argparse
import sys


from benchmarks.metagenrl.stages import default_out
from benchmarks.metagenrl.run import run
from benchmarks.metagenrl.ablations import run_ablations


def main(argv=None):
    from metarl.cli import ArgumentParser, add_scale_argument, fail

    p = ArgumentParser(prog="python -m benchmarks.metagenrl", description=_pkg_doc(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    from metarl.meta.metagenrl.protocol import SCALES, get_scale
    from metarl.driver.segments import StopFlag

    add_scale_argument(p, SCALES)  # a bad scale: one line on stderr, exit status 2
    p.add_argument("--out", default=None, help="output folder (default results/metagenrl for quick, "
                                               "results/metagenrl_<scale> otherwise)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out: finished stages are read back from stages/, the "
                        "running one continues from its checkpoint; refused if the settings differ")
    p.add_argument("--ablations", action="store_true",
                   help="run the Section 5.2 ablations (no t, no V, no V_t+1, 3 and 5 inner steps) instead")
    args = p.parse_args(argv)
    get_scale(args.scale)  # a bad value fails here, naming the valid choices
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a repeated or resumed run skips the compilation
    out = args.out or default_out(args.scale)
    if args.ablations:
        if args.resume:
            p.error("--resume is not available with --ablations (each ablation is a short quick-scale run)")
        run_ablations(args.scale, out)
        return
    from metarl.train import Interrupted, RunError

    stop = StopFlag()
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


def _pkg_doc() -> str:
    from benchmarks import metagenrl  # the package's docstring is the command's description

    return metagenrl.__doc__
