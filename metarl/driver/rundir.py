"""The run-directory policy (an earlier run is refused without --resume or --overwrite) and SIGINT handling
(finish the chunk and its checkpoint, then stop)."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading

from metarl.driver.errors import CheckpointMissing, RunDirError
from metarl.driver.records import read_json


# ----------------------------------------------------------------------------------------------------
# Run directory policy
# ----------------------------------------------------------------------------------------------------
def check_run_dir(d: str | None, resume: bool, overwrite: bool, blocking: tuple[str, ...] | None = None,
                  flag: str = "--run-dir"):
    """Refuse an unusable run directory before anything is compiled or written (one-line
    :class:`RunDirError`). A new run refuses a non-empty ``d`` (with ``blocking``: only one holding one
    of those names) unless ``overwrite``; ``flag`` is the option that names the directory."""
    if d is None:
        if resume:
            raise CheckpointMissing("no checkpoint to resume from: resume needs a run directory")
        return
    if os.path.exists(d) and not os.path.isdir(d):
        raise RunDirError(f"run directory {d!r} exists and is not a directory; choose another {flag}")
    probe = os.path.abspath(d)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise RunDirError(f"cannot create run directory {d!r}: {probe!r} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunDirError(f"cannot write run directory {d!r}: {probe!r} is not writable; choose another {flag}")
    if resume:
        return
    entries = sorted(os.listdir(d)) if os.path.isdir(d) else []
    if blocking is not None:  # names, or paths relative to d (e.g. "checkpoints/reacher_ours.npz")
        entries = [e for e in blocking if os.path.lexists(os.path.join(d, e))]
    if entries and not overwrite:
        status = ""
        if os.path.isfile(os.path.join(d, "meta.json")):
            with contextlib.suppress(Exception):
                status = f" (a {read_json(os.path.join(d, 'meta.json')).get('status', 'earlier')} run)"
        what = "is not empty" if blocking is None else "holds an earlier run"
        raise RunDirError(f"run directory {d!r} {what}{status}: {', '.join(entries[:5])}"
                          f"{', ...' if len(entries) > 5 else ''}; pass --resume to continue it, --overwrite "
                          f"to replace it, or choose another {flag}")


def prepare_out_dir(d: str, resume: bool, overwrite: bool, blocking: tuple[str, ...],
                    resume_from: tuple[str, ...] | None = None, flag: str = "--out") -> str:
    """The run-directory policy of a command line whose run writes ``blocking`` (names or paths relative
    to ``d``) into ``d``; call it after every other input is validated, before anything is compiled.

    A new run refuses a ``d`` that holds any of ``blocking`` unless ``overwrite`` (then they are removed,
    nothing else in ``d`` is touched); ``resume`` refuses a ``d`` holding none of ``resume_from`` (default
    ``blocking``): nothing to resume. Each refusal is one line (:class:`RunDirError`,
    :class:`CheckpointMissing`). Returns ``d``, created."""
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other")
    check_run_dir(d, resume, overwrite, blocking, flag)
    if resume:
        wanted = blocking if resume_from is None else resume_from
        if not any(os.path.lexists(os.path.join(d, p)) for p in wanted):
            raise CheckpointMissing(f"nothing to resume in {d!r}: none of {', '.join(wanted)} there; start the run "
                                    "without --resume")
    elif overwrite:
        for rel in blocking:
            if os.path.lexists(os.path.join(d, rel)):
                _remove(os.path.join(d, rel))
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create run directory {d!r}: {e.strerror or e}; choose another {flag}") from None
    return d


def clear_run_files(d: str, names: tuple[str, ...]):
    """Remove ``names`` (files or folders) and stray temp files from ``d``; everything else stays."""
    if not os.path.isdir(d):
        return
    for name in os.listdir(d):
        full = os.path.join(d, name)
        if name in names or ".tmp" in name:
            _remove(full)


def _remove(path: str):
    """Remove a file, a link or a whole folder."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


# ----------------------------------------------------------------------------------------------------
# SIGINT: finish the chunk and its checkpoint, then stop
# ----------------------------------------------------------------------------------------------------
class DeferredSigint:
    """Context manager: the first SIGINT sets ``requested`` (the loop stops at the next chunk boundary,
    after its checkpoint); a second raises KeyboardInterrupt at once. Off the main thread, a no-op."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
