"""What every command line of the suite shares: bad input is ONE line on stderr and exit status 2.

- :class:`ArgumentParser` is argparse's parser whose errors are one line (``prog: error: message``),
  without the usage block (``-h`` still prints it).
- :func:`positive_int`, :func:`nonneg_int`, :func:`positive_float` are argparse ``type=`` checks that
  name the bad value (zero is refused where it would be meaningless, never silently read as "unset").
- :func:`add_scale_argument` declares ``--scale`` with its valid choices, so a bad scale fails in
  argparse, before anything is imported, compiled or written.
- :func:`fail` prints one line and exits (for checks argparse cannot express).
- :func:`make_out_dir` creates the output folder as the last check, or fails in one line.
- :func:`run_module` runs an experiment's command line in this process, as a benchmark does: what binds
  the two is the command line and the files it writes, not the experiment's names.
"""
from __future__ import annotations

import argparse
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


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: argument --x: invalid ... (choose from ...)``.
    Without ``prog``, a module run as ``python -m pkg.mod`` is named so (not ``mod.py``)."""

    def __init__(self, *args, **kwargs):
        if not args and kwargs.get("prog") is None:
            spec = getattr(sys.modules.get("__main__"), "__spec__", None)
            if spec is not None and spec.name:
                kwargs["prog"] = f"python -m {spec.name.removesuffix('.__main__')}"
        super().__init__(*args, **kwargs)

    def error(self, message) -> NoReturn:
        fail(self.prog, f"{message} (see --help)")


def _int(text: str, what: str, low: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; {what}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"{text} is not allowed; {what}")
    return v


def positive_int(text: str) -> int:
    return _int(text, "give a whole number >= 1", 1)


def nonneg_int(text: str) -> int:
    return _int(text, "give a whole number >= 0", 0)


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a number > 0") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed; give a finite number > 0")
    return v


def unit_float(text: str) -> float:
    """A number in [0, 1] (a lambda, a probability)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a number in [0, 1]") from None
    if not (0.0 <= v <= 1.0):
        raise argparse.ArgumentTypeError(f"{text} is not allowed; give a number in [0, 1]")
    return v


def open_unit_float(text: str) -> float:
    """A number strictly inside (0, 1) (the start of a sigmoid-bounded meta-parameter)."""
    v = unit_float(text)
    if v in (0.0, 1.0):
        raise argparse.ArgumentTypeError(f"{text} is not allowed; give a number strictly between 0 and 1")
    return v


def existing_file(text: str) -> str:
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a file")
    return text


def make_out_dir(parser: argparse.ArgumentParser | str, path: str) -> str:
    """Create the output folder ``path`` (the last check, after every other input validated) or fail in
    one line (exit 2) naming why it cannot be (``parser.error``, or :func:`fail` when given a prog name).
    Returns path."""
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{path!r} is not writable")
    except OSError as e:
        message = f"output folder {path!r} cannot be used: {e.strerror or e}"
        if isinstance(parser, str):
            fail(parser, f"{message} (see --help)")
        parser.error(message)
    return path


def choice(choices: Iterable[str], what: str = "scale"):
    """An argparse ``type=`` accepting only ``choices``: ``unknown scale 'huge'; valid scales: quick, paper``."""
    choices = tuple(choices)

    def check(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; valid {what}s: {', '.join(choices)}")
        return text

    check.__name__ = what
    return check


def add_scale_argument(parser: argparse.ArgumentParser, choices: Iterable[str], default: str = "quick"):
    """``--scale`` restricted to ``choices``: a bad value is one line on stderr naming them, exit status 2."""
    choices = tuple(choices)
    parser.add_argument("--scale", default=default, type=choice(choices), metavar="{" + ",".join(choices) + "}",
                        help=f"one of {', '.join(choices)}")
    return parser


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
