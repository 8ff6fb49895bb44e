"""Part (f) of the throughput benchmark: the wall time of every command line's ``--help`` (target: < 2 s on an
idle 2-core CPU), each in a fresh interpreter."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Iterable

from metarl.cli import ROOT


def help_times(modules: Iterable[str], runs: int = 1, root: str = ROOT) -> dict:
    """Wall seconds of ``python -m <module> --help`` per module, each in a fresh interpreter (the best of
    ``runs``), and whether it exited 0. Untimed first: the project's bytecode caches (``__pycache__``, absent in
    a fresh clone) and one ``--help`` of the first module, which reads JAX and flax from disk into the page
    cache (after a long benchmark that cache is cold: measured 3.9 s wall with 0.9 s of CPU, then 1.0 s), so
    that neither is charged to whichever CLI runs first."""
    import compileall

    modules = list(modules)
    for pkg in ("metarl", "experiments", "benchmarks"):
        compileall.compile_dir(os.path.join(root, pkg), quiet=1)
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    if modules:
        subprocess.run([sys.executable, "-m", modules[0], "--help"], cwd=root, capture_output=True, env=env)
    out = {}
    for m in modules:
        best, ok = None, True
        for _ in range(runs):
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", m, "--help"], cwd=root, capture_output=True, env=env)
            dt = time.perf_counter() - t
            ok = ok and r.returncode == 0
            best = dt if best is None else min(best, dt)
        out[m] = {"wall_s": best, "ok": ok}
    return out
