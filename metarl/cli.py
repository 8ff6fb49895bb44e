"""What every command line of the suite shares: bad input is ONE line on stderr and exit status 2 (the
command lines themselves are generated from dataclasses: metarl/config_cli.py).

- :func:`fail` prints one line and exits (for checks the parser cannot express).
- :func:`make_out_dir` creates the output folder as the last check, or fails in one line.
- :func:`progress_bar` is the progress bar every command line shows (on stderr; none with ``--no-progress``).
- :func:`cli_modules` lists every command line of the project (what the --help checks and timings visit).
- :func:`run_module` runs an experiment's command line in this process, as a benchmark does: what binds
  the two is the command line and the files it writes, not the experiment's names.
"""
from __future__ import annotations

import os
import sys
from typing import Iterable, NoReturn


def one_line(message) -> str:
    """Collapse a message onto one line (an exception text may hold newlines)."""
    return " ".join(str(message).split())


def fail(prog: str, message, code: int = 2) -> NoReturn:
    """Print ``prog: error: message`` as one line on stderr and exit with ``code``."""
    sys.stderr.write(f"{prog}: error: {one_line(message)}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def make_out_dir(prog: str, path: str) -> str:
    """Create the output folder ``path`` (the last check, after every other input validated) or fail in
    one line (exit 2, ``prog: error: ...``) naming why it cannot be. Returns path."""
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{path!r} is not writable")
    except OSError as e:
        fail(prog, f"output folder {path!r} cannot be used: {e.strerror or e} (see --help)")
    return path


def run_module(module: str, args: Iterable[str]) -> None:
    """Run ``python -m module *args`` in this process: the module's ``__main__`` block, with ``sys.argv``
    set for it (restored afterwards). A refused input or a failed run raises its SystemExit (one line
    on stderr already printed, the module's exit status); SystemExit(0) and None return normally."""
    import runpy

    saved = sys.argv
    sys.argv = [module, *map(str, args)]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        sys.argv = saved


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "it", initial: int = 0):
    """A tqdm bar on stderr (a no-op when not ``enabled``); tqdm is imported here, when a run starts.

    Its ``set_postfix`` redraws at most every ``mininterval`` seconds, as ``update`` does (tqdm's own redraws
    at every call): with ``TQDM_MININTERVAL=60`` (make bench's lanes, whose output goes to a log) a bar
    writes a line a minute at most."""
    from tqdm.auto import tqdm

    class Bar(tqdm):
        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
            if self.disable:  # a disabled bar has no clock
                return
            due = refresh and self._time() - self.last_print_t >= self.mininterval
            super().set_postfix(ordered_dict, due, **kwargs)

    return Bar(total=total, initial=initial, desc=desc, disable=not enabled, unit=unit, file=sys.stderr,
               dynamic_ncols=True)


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
