"""The run record of an experiment that is a chain of stages (metarl.driver.segments): config.json and
meta.json in its output folder, like the ones the Driver and the Runner write, so that every experiment's
folder says what ran, on what, how it ended, and how much of its time went into compiling.

    with RunRecord(out_dir, config, resume=False):  # the command: this process's, unless given
        ...  # the run

- ``config.json``: the run's settings (JSON), written first (``config=None``: the experiment writes its own); a
  resume whose settings differ from the stored ones is refused in one line (ConfigMismatch) before anything
  is written;
- ``meta.json``: ``status`` (running, then finished / failed / interrupted), the command, package versions,
  device, ``started_at``, and ``sessions``: the first run and each ``--resume``, each with its command and, once
  it ended, how (a session killed outright stays "running"), its wall, compile and run time
  (metarl.compile_clock: tracing + lowering + XLA compile, apart from the rest); ``wall_time_s`` /
  ``compile_time_s`` / ``run_time_s`` are the sums over the sessions that ended.

Every file is written whole (:func:`metarl.driver.write_json`). ``prefix`` names the files ``<prefix>config.json``
and ``<prefix>meta.json``, for experiments whose parts share one folder (the model-based critic's four).
"""
from __future__ import annotations

import os

from metarl import cli
from metarl.driver.errors import ConfigMismatch, Interrupted
from metarl.driver.records import device_info, flat_diff, json_norm, now, package_versions, read_json, write_json

__all__ = ["RunRecord", "record_files", "current_command", "start_session", "session_totals"]


def current_command() -> str:
    """This process's command line, as a user would type it (``python -m pkg.mod args``)."""
    import shlex
    import sys

    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = f"python -m {spec.name.removesuffix('.__main__')}" if spec is not None and spec.name else "python " + (
        sys.argv[0] if sys.argv else "")
    return " ".join([head] + [shlex.quote(a) for a in sys.argv[1:]])


def start_session(command: str, resume: bool, **extra) -> dict:
    """A session's entry in meta.json's ``sessions`` when it starts (status "running" until it ends)."""
    return {"started_at": now(), "command": command, "resume": bool(resume), **extra, "status": "running"}


def session_totals(sessions: list) -> dict:
    """``wall_time_s``, ``compile_time_s`` and ``run_time_s`` summed over the sessions that ended."""
    ended = [x for x in sessions if "wall_time_s" in x]
    return {k: sum(x[k] for x in ended) for k in ("wall_time_s", "compile_time_s", "run_time_s")}


def record_files(prefix: str = "") -> tuple[str, str]:
    """The two files of a run record: (config.json, meta.json), with ``prefix``."""
    return f"{prefix}config.json", f"{prefix}meta.json"


class RunRecord:
    """Context manager writing ``config.json`` and ``meta.json`` of one session of a run (see the module)."""

    def __init__(self, out_dir: str, config: dict | None, command: str | None = None, resume: bool = False,
                 prefix: str = ""):
        self.out_dir, self.config, self.resume = out_dir, config, resume
        self.command = command or current_command()
        self.config_path, self.meta_path = (os.path.join(out_dir, f) for f in record_files(prefix))
        self.meta: dict = {}

    def _write(self, status: str, **extra):
        self.meta.update(extra, status=status, updated_at=now())
        write_json(self.meta_path, self.meta)

    def check(self) -> "RunRecord":
        """Refuse (one-line ConfigMismatch, nothing written) a resume whose settings differ from the stored
        config.json. Called again on entering; a command line calls it with its other checks."""
        if self.resume and self.config is not None and os.path.isfile(self.config_path):
            diffs = flat_diff(read_json(self.config_path), json_norm(self.config))
            if diffs:
                raise ConfigMismatch(f"cannot resume {self.out_dir}: its {os.path.basename(self.config_path)} differs "
                                     f"in {'; '.join(diffs[:6])}; resume with the same settings, or start a new run")
        return self

    def __enter__(self):
        from metarl.compile_clock import CompileClock

        self.check()
        os.makedirs(self.out_dir, exist_ok=True)
        if self.resume and os.path.isfile(self.meta_path):
            self.meta = read_json(self.meta_path)
            self.meta["versions"] = package_versions()
        else:
            self.meta = {"command": self.command, "versions": package_versions(), "device": device_info(),
                         "started_at": now(), "sessions": []}
        if self.config is not None:
            write_json(self.config_path, json_norm(self.config))
        self._session = start_session(self.command, self.resume)
        self.meta["sessions"] = self.meta.get("sessions", []) + [self._session]  # a killed session stays "running"
        self._write("running")
        self.clock = CompileClock().__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.clock.__exit__(exc_type, exc, tb)
        s = self.clock.summary()
        if exc_type is None or (exc_type is SystemExit and exc.code in (0, None)):
            status = "finished"
        elif issubclass(exc_type, (KeyboardInterrupt, Interrupted)) or (exc_type is SystemExit and exc.code == 130):
            status = "interrupted"
        else:
            status = "failed"
        session = self._session
        session.update(status=status, ended_at=now(), wall_time_s=s["wall_s"], compile_time_s=s["compile_s"],
                       run_time_s=s["run_s"], programs_compiled=s["programs_compiled"], cache_hits=s["cache_hits"])
        if status == "failed":
            session["error"] = (f"exit status {exc.code}" if exc_type is SystemExit
                                else cli.one_line(f"{exc_type.__name__}: {exc}"))
        self._write(status, **session_totals(self.meta["sessions"]))
        return False
