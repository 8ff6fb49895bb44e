"""Driving the throughput benchmark's peers from our side: their virtual environments (created on first
use, reused while their pinned requirements match), the Brax SAC trainer as one subprocess, the eager
PyTorch TD3 and rejax processes kept alive and driven one JSON line at a time, and the one line printed
when a peer cannot be measured."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS = os.path.join(ROOT, "benchmarks", "peers")
BRAX_VENV = os.path.join(ROOT, ".venv-brax-peer")
TORCH_VENV = os.path.join(ROOT, ".venv-torch-peer")
REJAX_VENV = os.path.join(PEERS, ".venv-rejax")  # git-ignored (.venv-*/)


# ----------------------------------------------------------------------------------------------------
# Peer virtual environments
# ----------------------------------------------------------------------------------------------------
def _stamp_of(requirements: str) -> str:
    with open(requirements) as f:
        text = f.read()
    return hashlib.sha256((text + sys.version).encode()).hexdigest()


def venv_ready(path: str, requirements: str) -> bool:
    stamp = os.path.join(path, ".metarl-peer-stamp")
    if not os.path.exists(stamp) or not os.path.exists(os.path.join(path, "bin", "python")):
        return False
    with open(stamp) as f:
        return f.read().strip() == _stamp_of(requirements)


def start_venv(path: str, requirements: str, log_path: str):
    """Start creating ``path`` with the pinned ``requirements`` (no dependency resolution: the file pins
    the whole closure), logging to ``log_path``. Returns a Popen, or None if the venv is already there
    and matches."""
    if venv_ready(path, requirements):
        return None
    shutil.rmtree(path, ignore_errors=True)
    log = open(log_path, "w")
    cmd = (f"{sys.executable} -m venv {path} && {path}/bin/python -m pip install -q --no-deps "
           f"-r {requirements} && echo {_stamp_of(requirements)} > {path}/.metarl-peer-stamp")
    return subprocess.Popen(["bash", "-c", cmd], stdout=log, stderr=subprocess.STDOUT)


def finish_venv(proc, path: str, requirements: str, log_path: str) -> str | None:
    """Wait for ``proc``; returns None when the venv is usable, else the reason it is not."""
    if proc is not None:
        proc.wait()
    if venv_ready(path, requirements):
        return None
    tail = ""
    if os.path.exists(log_path):
        with open(log_path) as f:
            tail = f.read()[-600:]
    return f"could not create {os.path.relpath(path, ROOT)} (log: {log_path}): {tail}"


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def peer_unavailable_line(name: str, why: str) -> str:
    """The one line the benchmark prints when a peer cannot be measured (e.g. no network for its venv)."""
    return one_line(f"{name} peer not measured, the rest is written without it: {why}")


def _last_log_line(log_path: str) -> str:
    if not os.path.exists(log_path):
        return "no log"
    with open(log_path) as f:
        lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("WARNING")]
    return lines[-1] if lines else "empty log"


def _peer_env() -> dict:
    """Our environment without what would make a peer's python import our packages or our venv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


# ----------------------------------------------------------------------------------------------------
# The peers
# ----------------------------------------------------------------------------------------------------
def run_brax_peer(cfg, workdir: str, timeout_s: float | None = None, between=None) -> dict:
    """Brax's own SAC trainer (benchmarks/peers/brax_sac.py in .venv-brax-peer) on ``cfg``'s env and budget
    (a benchmarks.throughput.ThroughputConfig); returns its JSON record plus the subprocess wall time.

    ``between(record)``: the peer runs with ``--pause`` and this is called at each of its progress reports
    (after its first evaluation, then after each epoch; ``record`` has the epoch's ``training/sps``) while
    the peer waits, so the caller's own side runs between two of its epochs; the peer goes on when it
    returns. The records come back as ``"progress"``."""
    if timeout_s is None:  # generous: ~5 env steps/s on a loaded CPU, plus compilation (and our chunks)
        timeout_s = (600 + 0.2 * (cfg.sac_learning_starts + cfg.brax_epochs * cfg.sac_steps_per_chunk)) * (
            1 if between is None else 2)
    cmd = [os.path.join(BRAX_VENV, "bin", "python"), os.path.join(PEERS, "brax_sac.py"), "--env", cfg.sac_env,
           "--backend", cfg.backend, "--epochs", str(cfg.brax_epochs), "--steps-per-epoch",
           str(cfg.sac_steps_per_chunk), "--min-replay", str(cfg.sac_learning_starts), "--num-envs", "1",
           "--batch-size", "256", "--hidden", "256", "256", "--grad-updates-per-step", "1"]
    t = time.perf_counter()
    if between is None:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=_peer_env(), cwd=workdir)
        rc, stdout, stderr, progress = p.returncode, p.stdout, p.stderr, None
    else:
        rc, stdout, stderr, progress = _run_paused(cmd + ["--pause"], workdir, timeout_s, between)
    wall = time.perf_counter() - t
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]  # (_run_paused keeps the progress lines apart)
    if rc != 0 or not lines:
        raise RuntimeError(f"Brax peer failed (rc {rc}): {stderr[-1500:]}")
    out = json.loads(lines[-1])
    out["subprocess_wall_s"] = wall
    if progress is not None:
        out["progress"] = progress
    return out


def _run_paused(cmd: list, workdir: str, timeout_s: float, between):
    """Run a ``--pause`` peer: at each ``{"progress": ...}`` line call ``between`` with it, then let the peer
    go on (one line on its stdin). Its stderr goes to a temporary file (read on failure), so a full pipe
    never stalls it; a watchdog kills it after ``timeout_s``. Returns (rc, stdout, stderr, progress records)."""
    import contextlib
    import tempfile
    import threading

    progress, kept = [], []
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                env=_peer_env(), cwd=workdir)
        watchdog = threading.Timer(timeout_s, proc.kill)
        watchdog.start()
        try:
            for line in proc.stdout:
                if line.startswith('{"progress"'):
                    rec = json.loads(line)["progress"]
                    progress.append(rec)
                    between(rec)
                    try:
                        proc.stdin.write("\n")
                        proc.stdin.flush()
                    except BrokenPipeError:  # the peer is gone (killed by the watchdog): its rc says so
                        break
                else:
                    kept.append(line)
            rc = proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):  # a write to a dead peer may have left stdin's buffer unflushed
                with contextlib.suppress(OSError):
                    pipe.close()
        err.seek(0)
        return rc, "".join(kept), err.read(), progress


class LinePeer:
    """A peer process kept alive between measurements and driven one JSON line at a time: it prints one
    line of information when it starts, then answers each request line with one result line; an empty
    line ends it."""

    name = "peer"
    close_timeout_s = 30

    def __init__(self, cmd: list):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_peer_env(),
                                     cwd=ROOT)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} peer exited (rc {self.proc.poll()})")
        return json.loads(line)

    def send(self, req: dict):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=self.close_timeout_s)


class TorchPeer(LinePeer):
    """The eager PyTorch TD3 (benchmarks/peers/torch_td3.py in .venv-torch-peer) on ``cfg``'s sizes."""

    name = "torch"

    def __init__(self, cfg):
        super().__init__([os.path.join(TORCH_VENV, "bin", "python"), os.path.join(PEERS, "torch_td3.py"),
                          "--obs-dim", str(cfg.td3_obs_dim), "--act-dim", str(cfg.td3_act_dim), "--hidden", "400",
                          "300", "--batch-size", "100", "--buffer-size", str(cfg.td3_buffer_size), "--lr", "1e-3",
                          "--threads", str(cfg.torch_threads)])
        self.samples = []

    def round(self, seeds: int, updates: int, warmup: int) -> dict:
        self.send({"seeds": seeds, "updates": updates, "warmup": warmup})
        r = self._read()
        self.samples.append(r)
        return r


class RejaxPeer(LinePeer):
    """The rejax process (``benchmarks/peers/rejax_peer.py`` run by ``python``, its venv's interpreter)."""

    name = "rejax"
    close_timeout_s = 60

    def __init__(self, python: str):
        super().__init__([python, os.path.join(PEERS, "rejax_peer.py")])

    def receive(self) -> dict:
        out = self._read()
        if "error" in out:
            raise RuntimeError(f"rejax peer: {out['error']}")
        return out

    def run(self, req: dict) -> dict:
        self.send(req)
        return self.receive()


# ----------------------------------------------------------------------------------------------------
# `python3 -m benchmarks.peers.drivers brax torch`: the peers' venvs built ahead (make bench builds them
# beside our own venv, both mostly waiting on pip); the throughput part then finds them ready. Standard
# library only, so the system interpreter runs it before our venv exists.
# ----------------------------------------------------------------------------------------------------
PEER_VENVS = {"brax": (BRAX_VENV, "brax_requirements.txt"), "torch": (TORCH_VENV, "torch_requirements.txt"),
              "rejax": (REJAX_VENV, "rejax_requirements.txt")}


def venv_log(log_dir: str, name: str) -> str:
    return os.path.join(os.path.abspath(log_dir), f"{name}-peer-venv.log")


def build_venvs(names, log_dir: str) -> dict:
    """Build the named peers' venvs in parallel (those already matching their requirements are kept), each
    logging to :func:`venv_log`. Returns {name: (created by this call, None when usable else the reason)}."""
    os.makedirs(log_dir, exist_ok=True)
    jobs = {}
    for name in names:
        path, req = PEER_VENVS[name]
        req, log = os.path.join(PEERS, req), venv_log(log_dir, name)
        jobs[name] = (start_venv(path, req, log), path, req, log)
    return {name: (job[0] is not None, finish_venv(*job)) for name, job in jobs.items()}


if __name__ == "__main__":
    unknown = [n for n in sys.argv[1:] if n not in PEER_VENVS]
    if unknown:
        sys.exit(f"benchmarks.peers.drivers: unknown peer(s) {', '.join(unknown)}; valid: {', '.join(PEER_VENVS)}")
    # a failure is not fatal here: the throughput part tries again and reports it in its one line
    for name, (_, why) in build_venvs(sys.argv[1:], os.path.join(ROOT, "results", "throughput")).items():
        print(f"{name} peer venv: {'ready' if why is None else one_line(why)}", flush=True)
