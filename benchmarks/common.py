"""Small helpers shared by the benchmarks (``python -m benchmarks.<name> --scale quick|paper``).

- :func:`parse_scale` checks a ``--scale`` value and fails with a message naming the bad value and
  the valid choices.
- :func:`progress` is a tqdm bar on stderr (the benchmarks' progress display).
- :func:`write_result` writes a JSON result atomically (temp name, then ``os.replace``) with the
  config, package versions, device and wall time recorded beside the figures; :func:`write_text`
  writes any text file (a markdown table, a CSV) the same way.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from typing import Iterable

SCALES = ("quick", "paper")


def parse_scale(value: str, choices: Iterable[str] = SCALES) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise raise a ValueError naming both."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown scale {value!r}; valid scales: {', '.join(choices)}")
    return value


def progress(total: int, desc: str, unit: str = "it"):
    """A tqdm progress bar on stderr."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def _versions() -> dict:
    from metarl.train import package_versions

    return {**package_versions(), "python": platform.python_version()}


def _device() -> dict:
    from metarl.train import device_info

    info = device_info()
    info["cpu_count"] = os.cpu_count()
    try:
        info["loadavg_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    return info


def _jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    try:
        import numpy as np

        return np.asarray(obj).tolist()
    except Exception:
        return str(obj)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli_modules(root: str = ROOT) -> list[str]:
    """Every command-line module of the project (metarl/, experiments/, benchmarks/; the peers run in
    their own environments), as ``python -m`` names."""
    import glob
    import re

    main_guard = re.compile(r'^if __name__ == "__main__":', re.M)
    mods = []
    for pattern in ("metarl/*.py", "metarl/*/*.py", "experiments/*.py", "benchmarks/*.py", "benchmarks/*/__main__.py"):
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            with open(path) as f:
                if main_guard.search(f.read()):
                    name = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                    mods.append(name[:-len(".__main__")] if name.endswith(".__main__") else name)  # a package
    return mods


def help_times(modules: Iterable[str], runs: int = 1, root: str = ROOT) -> dict:
    """Wall seconds of ``python -m <module> --help`` per module, each in a fresh interpreter (the best of
    ``runs``), and whether it exited 0. Untimed first: the project's bytecode caches (``__pycache__``, absent in
    a fresh clone) and one ``--help`` of the first module, which reads JAX and flax from disk into the page
    cache (after a long benchmark that cache is cold: measured 3.9 s wall with 0.9 s of CPU, then 1.0 s), so
    that neither is charged to whichever CLI runs first."""
    import compileall
    import subprocess

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


class compile_report:
    """``with compile_report("benchmarks.x", out_dir): ...``: on a normal exit, prints one line with the
    part's compile time apart from its run time (metarl.compile_clock) and writes it to
    ``out_dir/<filename>``."""

    def __init__(self, name: str, out_dir: str, filename: str = "compile_time.json"):
        self.name, self.out_dir, self.filename = name, out_dir, filename

    def __enter__(self):
        from metarl.compile_clock import CompileClock

        self.clock = CompileClock().__enter__()
        return self.clock

    def __exit__(self, exc_type, *rest):
        self.clock.__exit__(exc_type, *rest)
        if exc_type is None:
            write_text(os.path.join(self.out_dir, self.filename),
                       json.dumps({"part": self.name, **self.clock.summary()}, indent=2) + "\n")
            print(f"{self.name}: {self.clock.line()}", flush=True)
        return False


def write_text(path: str, text: str):
    """Write ``text`` to ``path`` atomically (:func:`metarl.driver.write_text`)."""
    from metarl.driver.records import write_text as write

    write(path, text)


def write_result(path: str, results: dict, config=None, wall_time_s: float | None = None, **extra) -> dict:
    """Write ``{"config", "versions", "device", "wall_time_s", "written_at", **extra, **results}`` as JSON,
    atomically. ``config`` may be a dataclass. Returns the written object."""
    obj = {"config": _jsonable(config) if config is not None else None, "versions": _versions(),
           "device": _device(), "wall_time_s": wall_time_s,
           "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra, **results}
    write_text(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")
    return obj
