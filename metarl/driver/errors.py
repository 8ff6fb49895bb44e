"""The run errors: each is one line, which the command lines print before exiting with its ``exit_code``."""
from __future__ import annotations


# ----------------------------------------------------------------------------------------------------
# Errors: each is one line; the CLIs print it and exit with ``exit_code``
# ----------------------------------------------------------------------------------------------------
class RunError(Exception):
    """A run that must not go on. ``str(e)`` is one line; the CLI prints it and exits with ``exit_code``."""
    exit_code = 1


class RunDirError(RunError, ValueError):
    """The run directory cannot be used (not empty, not writable, not a directory)."""
    exit_code = 2


class ConfigMismatch(RunError, ValueError):
    """``resume`` with a config (or package versions) other than the stored run's."""
    exit_code = 2


class CheckpointError(RunError):
    """A checkpoint that is corrupt, unreadable or inconsistent."""


class CheckpointMismatch(CheckpointError):
    """A readable, intact checkpoint whose arrays do not fit this program's state (count, shape, dtype)."""


class CheckpointMissing(CheckpointError, FileNotFoundError):
    """Nothing to resume from."""
    exit_code = 2


ON_NONFINITE = ("stop", "continue")  # what a run does when one of its runs goes NaN/inf


class NonFiniteError(RunError):
    """A run produced NaN/inf (``failures``: {run index or leaf name: details})."""

    def __init__(self, message, failures=None):
        super().__init__(message)
        self.failures = failures or {}


class Interrupted(RunError):
    """SIGINT: the run stopped at a chunk boundary with a complete checkpoint (or none yet)."""
    exit_code = 130
