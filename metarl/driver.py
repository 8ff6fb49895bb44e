"""A resumable chunked driver for any pure training program, and the run machinery it shares with
:class:`metarl.train.Runner` (run records, atomic writes, checkpoints, resume validation, SIGINT).

A program is two pure functions: ``init(key) -> state`` and ``chunk(state) -> (state, metrics)``
(jitted; ``metrics`` a pytree of arrays for that chunk, every random key inside ``state``).
:class:`Driver` (or :func:`run_chunks`) calls ``init`` once and then ``chunk`` ``num_chunks`` times from
Python; after every chunk it appends the chunk's metrics and saves the state as a checkpoint, so that
``resume=True`` continues bit for bit as the uninterrupted run. The run directory holds:

- ``config.json``: the caller's config dict (the run's identity, with ``num_chunks`` and the key);
- ``meta.json``: status (running / finished / failed / interrupted), package versions, device, compile
  time apart from run time, chunks done, resumes;
- ``metrics.json``: every leaf of the metrics stacked over the chunks done (``[chunks, ...]``);
- ``checkpoint/``: the orbax state, the metrics of every chunk (``arrays.npz``), ``progress.json`` and
  ``COMPLETE.json`` (written last: sha256 of every file and every array, checked on restore).

Faults (the same rules as ``Runner``; docs/reliability.md): a resume with another config, key,
number of chunks or package versions is refused in one line naming the differences, before anything
is written; a new run refuses a directory holding an earlier run's record files unless
``overwrite``; every file is written whole (temp name, then ``os.replace``) and a checkpoint is swapped
in atomically (``checkpoint.partial`` -> ``checkpoint``, the previous one kept as ``checkpoint.old`` until
then), so a kill at any moment leaves complete files; after each chunk a NaN/inf anywhere in the state
or +-inf in a metric (NaN in a metric may mean "not computed", as for the A2C rows of the outer-value
experiments) stops the run with its leaf named and the state not saved; SIGINT finishes the chunk and
its checkpoint, then stops with status interrupted.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from metarl import cli


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


class NonFiniteError(RunError):
    """A run produced NaN/inf (``failures``: {run index or leaf name: details})."""

    def __init__(self, message, failures=None):
        super().__init__(message)
        self.failures = failures or {}


class Interrupted(RunError):
    """SIGINT: the run stopped at a chunk boundary with a complete checkpoint (or none yet)."""
    exit_code = 130


# ----------------------------------------------------------------------------------------------------
# Run records: versions, device, strict JSON, atomic writes
# ----------------------------------------------------------------------------------------------------
def now() -> str:
    """The current UTC time as the run records write it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def package_versions() -> dict:
    """Installed versions of the packages a run's numbers depend on (absent ones left out)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in ("jax", "jaxlib", "flax", "optax", "brax", "gymnax", "jumanji", "chex", "distrax",
              "orbax-checkpoint", "numpy"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


def device_info() -> dict:
    """The JAX backend and devices the run uses."""
    return {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "device_count": jax.device_count()}


def jsonable(obj):
    """Plain JSON types, with every non-finite float as None (so the file is valid JSON for any reader)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
        return jsonable(np.asarray(obj).tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_norm(obj):
    """``obj`` as it reads back from JSON (tuples become lists, non-finite floats None)."""
    return json.loads(json.dumps(jsonable(obj)))


def write_text(path: str, text: str | bytes):
    """Atomic write of text or bytes: a reader sees the old file or the whole new one, never a part."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb" if isinstance(text, bytes) else "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: str, obj):
    """Atomic write (a reader never sees a half-written file) of strict JSON: NaN/inf become null."""
    write_text(path, json.dumps(jsonable(obj), indent=2, allow_nan=False,
                                default=lambda o: jsonable(np.asarray(o).tolist())))


def read_json(path: str):
    """A JSON file, or a one-line :class:`CheckpointError` naming why it cannot be read."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {cli.one_line(e)}") from None


def as_array(x):
    """A JSON list back to an array (null -> NaN)."""
    a = np.asarray(x)
    return np.asarray(x, dtype=float) if a.dtype == object else a


def vmapped_segments(init, run_segment, key, seeds: int, num_segments: int, state=None, start: int = 0,
                     on_segment=None, progress=None, finite_ignore: tuple = ()):
    """The host loop of a program whose seeds are independent runs: ``init`` and ``run_segment`` vmapped
    over ``seeds`` and jitted, segments ``start .. num_segments - 1`` run in turn (``state`` given: a
    resumed run). After each segment the NaN/Inf guard (:func:`check_finite`: a one-line
    :class:`NonFiniteError` naming the seeds), then ``on_segment(i, state, metrics)`` (checkpointing) and
    ``progress(i, metrics)``. Returns (state, [metrics per segment as numpy])."""
    if state is None:
        state = jax.jit(jax.vmap(init))(jax.random.split(key, seeds))
    seg = jax.jit(jax.vmap(run_segment))
    hist = []
    for i in range(start, num_segments):
        state, m = seg(state)
        m = jax.tree.map(np.asarray, m)
        hist.append(m)
        check_finite(state, m, f"segment {i + 1}", runs=seeds, ignore=finite_ignore)  # before on_segment checkpoints it
        if on_segment:
            on_segment(i, state, m)
        if progress:
            progress(i, m)
    return state, hist


def flat_diff(old, new, prefix="") -> list[str]:
    """``name (old -> new)`` for every differing leaf of two JSON-like dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            name = f"{prefix}{k}"
            if k not in old:
                out.append(f"{name} (unset -> {new[k]!r})")
            elif k not in new:
                out.append(f"{name} ({old[k]!r} -> unset)")
            else:
                out.extend(flat_diff(old[k], new[k], name + "."))
        return out
    return [] if old == new else [f"{prefix.rstrip('.')} ({old!r} -> {new!r})"]


def identity_diff(old, new, first: int = 6) -> str:
    """:func:`flat_diff` of two run identities as one line: the first ``first`` differences, '; '-joined."""
    diffs = flat_diff(old, new)
    return "; ".join(diffs[:first]) + (f"; and {len(diffs) - first} more" if len(diffs) > first else "")


def version_diff(meta: dict) -> list[str]:
    """Package versions that differ between a stored meta.json and this process (one entry if unrecorded)."""
    old = meta.get("versions")
    if old is None:
        return ["(not recorded: meta.json missing or without versions)"]
    return flat_diff(old, package_versions())


def read_stored_run(d: str) -> tuple[dict, dict]:
    """(config.json, meta.json or {}) of the run in ``d``; a one-line :class:`CheckpointMissing` without
    config.json."""
    path = os.path.join(d, "config.json")
    if not os.path.isfile(path):
        raise CheckpointMissing(f"no checkpoint to resume from in {d!r}: no config.json there (not a run "
                                "directory, or a run that never started); start it without --resume")
    meta_path = os.path.join(d, "meta.json")
    return read_json(path), (read_json(meta_path) if os.path.isfile(meta_path) else {})


def refuse_resume(d: str, diffs: list[str], vdiff: list[str], allow_version_change: bool, flag: str,
                  what: str = "config") -> list[str]:
    """Raise a one-line :class:`ConfigMismatch` naming ``diffs`` (settings) or, unless
    ``allow_version_change``, ``vdiff`` (package versions). Returns ``vdiff`` (to record in meta.json)."""
    if diffs:
        raise ConfigMismatch(f"cannot resume {d}: the {what} differs from the stored run's in "
                             f"{'; '.join(diffs)}; resume with the stored settings (config.json), or start a "
                             f"new run (another {flag}, or --overwrite)")
    if vdiff and not allow_version_change:
        raise ConfigMismatch(f"cannot resume {d}: package versions differ from the stored run's: "
                             f"{'; '.join(vdiff)}; pass --allow-version-change (allow_version_change=True) to "
                             "resume anyway (it is recorded in meta.json)")
    return vdiff


# ----------------------------------------------------------------------------------------------------
# Checkpoints: written whole, swapped in atomically, hashed, restored from the newest complete one
# ----------------------------------------------------------------------------------------------------
MARKER = "COMPLETE.json"
CHECKPOINT_NAMES = ("checkpoint", "checkpoint.partial", "checkpoint.old")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def array_sha256(a) -> str:
    """sha256 of an array's bytes, with its dtype and shape."""
    a = np.ascontiguousarray(np.asarray(a))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def leaf_hashes(tree) -> dict:
    """sha256 of every array's bytes (with its dtype and shape), keyed by its path in the pytree."""
    return {jax.tree_util.keystr(path): array_sha256(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]}


def file_hashes(root: str) -> dict:
    """sha256 of every file under ``root`` but the marker, keyed by relative path."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            full = os.path.join(d, f)
            rel = os.path.relpath(full, root)
            if rel != MARKER:
                out[rel] = sha256_file(full)
    return out


def has_checkpoint(ckpt_dir: str) -> bool:
    """Whether any of checkpoint, checkpoint.partial, checkpoint.old exists (complete or not)."""
    return any(os.path.exists(ckpt_dir + s) for s in ("", ".partial", ".old"))


def save_checkpoint(ckpt_dir: str, state, chunk: int, progress: dict, arrays: dict | None = None,
                    on_open: Callable | None = None):
    """Write ``<ckpt_dir>.partial`` whole (orbax ``state``, ``arrays.npz`` if ``arrays``, ``progress.json``
    = {"chunk": chunk, **progress}, then COMPLETE.json with the sha256 of every file and array), then swap
    it in: checkpoint -> checkpoint.old, checkpoint.partial -> checkpoint. A kill at any moment leaves a
    complete checkpoint somewhere. ``on_open(checkpointer or None)`` lets a caller close an async write
    that a second SIGINT abandons."""
    import orbax.checkpoint as ocp

    tmp = ckpt_dir + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    ckpt = ocp.StandardCheckpointer()
    if on_open is not None:
        on_open(ckpt)
    try:
        ckpt.save(os.path.join(tmp, "state"), state)
        ckpt.wait_until_finished()
    finally:
        ckpt.close()
        if on_open is not None:
            on_open(None)
    if arrays is not None:
        with open(os.path.join(tmp, "arrays.npz"), "wb") as f:
            np.savez(f, **arrays)
    write_json(os.path.join(tmp, "progress.json"), {"chunk": chunk, **progress})
    write_json(os.path.join(tmp, MARKER), {"format": 1, "chunk": chunk, "files": file_hashes(tmp),
                                           "leaves": leaf_hashes(state)})
    old = ckpt_dir + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(ckpt_dir):
        os.replace(ckpt_dir, old)
    os.replace(tmp, ckpt_dir)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(ckpt_dir: str, where: str) -> tuple[str, dict]:
    """The newest complete checkpoint among checkpoint, checkpoint.partial, checkpoint.old: (path,
    marker). ``where`` names the run directory in the one-line :class:`CheckpointMissing`."""
    found, present = [], []
    for path in (ckpt_dir, ckpt_dir + ".partial", ckpt_dir + ".old"):
        if not os.path.exists(path):
            continue
        present.append(os.path.basename(path))
        if os.path.isfile(os.path.join(path, MARKER)):
            marker = read_json(os.path.join(path, MARKER))
            if not isinstance(marker, dict) or not {"chunk", "files", "leaves"} <= set(marker):
                raise CheckpointError(f"checkpoint marker {os.path.join(path, MARKER)} is malformed")
            found.append((marker["chunk"], -len(found), path, marker))
    if not found:
        what = (f" ({', '.join(present)} present but without {MARKER}: a save that did not finish)"
                if present else "")
        raise CheckpointMissing(f"no checkpoint to resume from in {where!r}{what}; start it again "
                                "with --overwrite")
    _, _, path, marker = max(found)
    return path, marker


def restore_checkpoint(ckpt_dir: str, abstract, where: str):
    """Restore the newest complete checkpoint into the shapes of ``abstract`` (a pytree of
    ShapeDtypeStruct), checking the sha256 of every file and array first. Returns (state, progress
    dict, arrays dict or None, path); any mismatch is a one-line :class:`CheckpointError`."""
    import orbax.checkpoint as ocp

    path, marker = find_checkpoint(ckpt_dir, where)
    name = os.path.relpath(path, os.path.dirname(ckpt_dir))
    for rel, digest in sorted(marker["files"].items()):
        full = os.path.join(path, rel)
        if not os.path.isfile(full):
            raise CheckpointError(f"checkpoint file {os.path.join(name, rel)} is missing")
        if sha256_file(full) != digest:
            raise CheckpointError(f"checkpoint file {os.path.join(name, rel)} does not match its recorded "
                                  f"sha256 (corrupted on disk); refusing to resume from it")
    try:
        with ocp.StandardCheckpointer() as ckpt:
            state = ckpt.restore(os.path.join(path, "state"), abstract)
    except Exception as e:  # orbax/tensorstore errors are long; the first line names the cause
        raise CheckpointError(f"cannot read checkpoint {name}: {cli.one_line(str(e).splitlines()[0] if str(e) else e)[:300]}") from None
    leaves = leaf_hashes(state)
    if set(leaves) != set(marker["leaves"]):
        raise CheckpointError(f"checkpoint {name} holds other arrays than recorded: "
                              f"{sorted(set(leaves) ^ set(marker['leaves']))[:3]}")
    for leaf, digest in leaves.items():
        if marker["leaves"][leaf] != digest:
            raise CheckpointError(f"checkpoint {name}: array {leaf} does not match its recorded sha256 "
                                  "(corrupted); refusing to resume from it")
    progress = read_json(os.path.join(path, "progress.json"))
    if progress.get("chunk") != marker["chunk"]:
        raise CheckpointError(f"checkpoint {name}: progress.json says chunk {progress.get('chunk')}, "
                              f"{MARKER} says {marker['chunk']}")
    arrays = None
    if os.path.isfile(os.path.join(path, "arrays.npz")):
        with np.load(os.path.join(path, "arrays.npz"), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    return state, progress, arrays, path


def promote_checkpoint(ckpt_dir: str, path: str):
    """After resuming from checkpoint.partial / .old, make it ``checkpoint`` again (drop the rest)."""
    if path != ckpt_dir:
        if os.path.exists(ckpt_dir):
            shutil.rmtree(ckpt_dir)
        os.replace(path, ckpt_dir)
    for other in (ckpt_dir + ".partial", ckpt_dir + ".old"):
        shutil.rmtree(other, ignore_errors=True)


def abandon_partial(ckpt_dir: str, checkpointer=None):
    """Drop a checkpoint.partial without its marker (a save cut short); complete ones stay."""
    if checkpointer is not None:
        with contextlib.suppress(BaseException):
            checkpointer.close()
    tmp = ckpt_dir + ".partial"
    if os.path.isdir(tmp) and not os.path.isfile(os.path.join(tmp, MARKER)):
        shutil.rmtree(tmp, ignore_errors=True)


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


# ----------------------------------------------------------------------------------------------------
# The driver
# ----------------------------------------------------------------------------------------------------
RECORD_FILES = ("config.json", "meta.json", "metrics.json") + CHECKPOINT_NAMES
ON_NONFINITE = ("stop", "continue")


def nonfinite_leaves(tree) -> list[str]:
    """Paths (``jax.tree_util.keystr``) of the floating leaves of ``tree`` holding a NaN or +-inf.
    The test runs on the device, one flag per leaf comes back."""
    paths, leaves = [], []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            paths.append(jax.tree_util.keystr(path))
            leaves.append(leaf)
    if not leaves:
        return []
    flags = np.asarray(_any_nonfinite(leaves))
    return [p for p, bad in zip(paths, flags) if bad]


@jax.jit
def _any_nonfinite(leaves):
    return jnp.stack([jnp.any(~jnp.isfinite(x)) for x in leaves])


def infinite_metrics(metrics) -> list[str]:
    """Paths of the metric leaves holding +-inf (NaN in a metric may mean "not computed")."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(metrics)[0]:
        a = np.asarray(leaf)
        if np.issubdtype(a.dtype, np.inexact) and np.isinf(a).any():
            out.append(jax.tree_util.keystr(path))
    return out


def nonfinite_runs(tree, runs: int, ignore: tuple = ()) -> list[int]:
    """Indices along the leading (vmapped) axis of size ``runs`` whose slice of any floating leaf of
    ``tree`` holds a NaN or +-inf (leaves without that axis are not attributed to a run; leaves whose
    path contains a name in ``ignore`` are skipped)."""
    leaves = [x for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
              if jnp.issubdtype(jnp.result_type(x), jnp.inexact) and jnp.ndim(x) >= 1 and jnp.shape(x)[0] == runs
              and not any(n in jax.tree_util.keystr(path) for n in ignore)]
    if not leaves:
        return []
    bad = np.asarray(_runs_nonfinite(leaves)).any(axis=0)
    return [int(i) for i in np.nonzero(bad)[0]]


@jax.jit
def _runs_nonfinite(leaves):
    return jnp.stack([jnp.any(~jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1) for x in leaves])


def nonfinite_names(state, metrics, ignore: tuple = ()) -> list[str]:
    """``state[...]`` for every floating state leaf holding NaN/inf (except those whose path contains a
    name in ``ignore``), then ``metrics[...]`` for every metric leaf holding +-inf (a NaN metric may mean
    "not computed")."""
    bad = [f"state{p}" for p in nonfinite_leaves(state) if not any(n in p for n in ignore)]
    return bad + [f"metrics{p}" for p in infinite_metrics(metrics)]


def listing(names: list[str], first: int = 3) -> str:
    """The first ``first`` names, comma-separated, and how many more there are."""
    more = f" (and {len(names) - first} more)" if len(names) > first else ""
    return ", ".join(names[:first]) + more


def check_finite(state, metrics, where: str, runs: int | None = None, unit: str = "seed",
                 ignore: tuple = ()) -> None:
    """The NaN/Inf guard of the segment loops (EPG, RL^2, MetaGenRL, PPO-LIRPG): raise a one-line
    :class:`NonFiniteError` naming ``where`` (e.g. "segment 3"), the first leaves and, with ``runs``
    (the vmapped axis), the runs concerned, when a floating leaf of ``state`` is NaN/inf or a metric is
    +-inf (a NaN metric may mean "not computed"). Call it before the state is checkpointed, so that the
    last checkpoint stays the last finite state. ``ignore``: names of state leaves that may legitimately
    hold an infinity (e.g. evosax's ``best_fitness``, +inf until the first generation)."""
    bad = nonfinite_names(state, metrics, ignore)
    if not bad:
        return
    which = nonfinite_runs(state, runs, ignore) if runs else []
    who = f" of {unit}(s) {', '.join(map(str, which))}" if which else ""
    raise NonFiniteError(f"non-finite values{who} in {where}: {listing(bad)}; stopped (the state after "
                         f"{where} is not saved; the last checkpoint is the last finite state)",
                         {"where": where, "leaves": bad, "runs": which})


class Driver:
    """Runs ``init(key)`` then ``chunk`` ``num_chunks`` times, recording and checkpointing every chunk.

    ``config``: a JSON-able dict, the run's identity (written to config.json; a resume with any other
    value is refused). ``out_dir`` None: nothing is written (and nothing can be resumed).
    ``overwrite``: a new run may replace an earlier run's record files in ``out_dir`` (other files there,
    e.g. an experiment's tables, are never touched). ``allow_version_change``: resume although package
    versions differ (recorded in meta.json). ``progress``: a tqdm bar on stderr counting
    ``units_per_chunk`` ``unit`` per chunk (its rate is units/s), with ``postfix(metrics) -> dict`` of the
    latest chunk's headline numbers. ``resume_hint``: the command that resumes (put in the one-line
    message of an interrupted run); ``flag``: the option naming the run directory in error messages.
    ``tensorboard``: a folder for TensorBoard event files (metarl.tensorboard; each metric leaf's mean
    after every chunk, at chunks x ``units_per_chunk``), or None.
    ``on_nonfinite``: "stop" (default) raises :class:`NonFiniteError` after the first chunk with a NaN/inf in
    the state or an infinite metric; "continue" (needs ``runs``, the size of the state's leading vmapped
    axis, whose entries are independent runs, each a ``run_unit``) marks the runs concerned failed
    (meta.json ``failed_runs``, one warning line each) and goes on while any run is finite.

    ``run(resume)`` returns (final state, metrics) with every metric leaf stacked over the chunks:
    ``[num_chunks, ...]`` (numpy).
    """

    def __init__(self, init: Callable, chunk: Callable, key, num_chunks: int, out_dir: str | None,
                 config: dict, *, progress: bool = True, desc: str = "run", unit: str = "chunk",
                 units_per_chunk: int = 1, postfix: Callable | None = None, overwrite: bool = False,
                 allow_version_change: bool = False, resume_hint: str | None = None, flag: str = "--out",
                 tensorboard: str | None = None, on_nonfinite: str = "stop", runs: int | None = None,
                 run_unit: str = "seed"):
        if num_chunks < 1:
            raise ValueError(f"num_chunks must be >= 1, got {num_chunks}")
        if on_nonfinite not in ON_NONFINITE:
            raise ValueError(f"on_nonfinite={on_nonfinite!r}; valid: {', '.join(ON_NONFINITE)}")
        self.on_nonfinite, self.runs, self.run_unit = on_nonfinite, runs, run_unit
        self.failed_runs: dict = {}
        self.init, self.chunk, self.key = init, chunk, key
        self.num_chunks = num_chunks
        self.out_dir = out_dir
        self.config = json_norm(config)
        self.progress, self.desc, self.unit, self.units_per_chunk = progress, desc, unit, units_per_chunk
        self.postfix = postfix
        self.overwrite = overwrite
        self.allow_version_change = allow_version_change
        self.resume_hint = resume_hint or "the same command with --resume"
        self.flag = flag
        self.tensorboard = tensorboard
        self.compile_time: dict = {}
        self._meta: dict = {}
        self._sig = DeferredSigint()
        self._checkpointer = None

    # -- identity -----------------------------------------------------------------------------------
    def _ckpt_dir(self) -> str:
        return os.path.join(os.path.abspath(self.out_dir), "checkpoint")

    def identity(self) -> dict:
        """What a resume must match: the config, the number of chunks and the key."""
        return {"config": self.config, "num_chunks": self.num_chunks,
                "key": json_norm(np.asarray(jax.random.key_data(self.key)))}

    def check_resume(self) -> tuple[dict, list[str]]:
        """Compare with the stored run; raise a one-line :class:`ConfigMismatch` naming every
        difference. Returns (stored meta.json or {}, package version changes allowed through)."""
        stored, meta = read_stored_run(self.out_dir)
        old = {"config": stored, "num_chunks": meta.get("num_chunks"), "key": meta.get("key")}
        vdiff = refuse_resume(self.out_dir, flat_diff(old, self.identity()), version_diff(meta),
                              self.allow_version_change, self.flag)
        return meta, vdiff

    # -- records ------------------------------------------------------------------------------------
    def _write_meta(self, status: str, **extra):
        self._meta.update(extra)
        self._meta.update(status=status, updated_at=now())
        if self.out_dir:
            write_json(os.path.join(self.out_dir, "meta.json"), self._meta)

    @staticmethod
    def stack(history: list):
        """Per-chunk metric pytrees -> one pytree with each leaf stacked: ``[chunks, ...]``."""
        if not history:
            return {}
        return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *history)

    def _write_metrics(self, history: list):
        write_json(os.path.join(self.out_dir, "metrics.json"),
                   {"chunks_done": len(history), "metrics": self.stack(history)})

    def _save(self, state, chunk: int, history: list):
        leaves = jax.tree.leaves(self.stack(history))
        save_checkpoint(self._ckpt_dir(), state, chunk, {}, {f"m{j:04d}": x for j, x in enumerate(leaves)},
                        on_open=lambda c: setattr(self, "_checkpointer", c))

    def _restore(self, abstract_state, metrics_def):
        state, _, arrays, path = restore_checkpoint(self._ckpt_dir(), abstract_state, self.out_dir)
        n = int(read_json(os.path.join(path, MARKER))["chunk"])
        leaves = [arrays[f"m{j:04d}"] for j in range(len(arrays))] if arrays else []
        if n and len(leaves) != metrics_def.num_leaves:
            raise CheckpointError(f"checkpoint {os.path.basename(path)} holds {len(leaves)} metric arrays, the "
                                  f"chunk function returns {metrics_def.num_leaves}")
        history = [metrics_def.unflatten([x[c] for x in leaves]) for c in range(n)]
        return state, n, history, path

    # -- driving ------------------------------------------------------------------------------------
    def run(self, resume: bool = False, stop_after: int | None = None):
        """Run to the end (or for ``stop_after`` more chunks). Returns (state, stacked metrics).

        Raises a one-line :class:`RunError` for a refused directory or resume, a bad checkpoint, a
        non-finite state or metric (:class:`NonFiniteError`) or SIGINT (:class:`Interrupted`)."""
        with self._sig:
            return self._run(resume, stop_after)

    def _run(self, resume: bool, stop_after: int | None):
        from tqdm import tqdm

        t_start = time.perf_counter()
        # 1. Everything that can refuse the run, before compiling or writing anything.
        check_run_dir(self.out_dir, resume, self.overwrite, RECORD_FILES, self.flag)
        meta, vdiff = self.check_resume() if resume else ({}, [])
        t = time.perf_counter()
        init = jax.jit(self.init).lower(self.key).compile()
        self.compile_time["init"] = time.perf_counter() - t
        abstract = jax.eval_shape(self.init, self.key)
        metrics_def = jax.tree.structure(jax.eval_shape(self.chunk, abstract)[1])
        restored_from = None
        if resume and has_checkpoint(self._ckpt_dir()):
            state, start, history, restored_from = self._restore(abstract, metrics_def)
        else:  # a new run, or one stopped before its first checkpoint: start from the beginning
            state, start, history = init(self.key), 0, []
        end = self.num_chunks if stop_after is None else min(self.num_chunks, start + stop_after)
        # 2. Compile the chunk (the long part), still without writing.
        chunk_fn = self.chunk
        if start < end and hasattr(self.chunk, "lower"):
            t = time.perf_counter()
            chunk_fn = self.chunk.lower(state).compile()
            self.compile_time["chunk"] = time.perf_counter() - t
        # 3. Now the run directory.
        if self.out_dir:
            if resume:
                self._meta = meta
                self._meta.setdefault("resumes", []).append(
                    {"from_chunk": start, "at": now(),
                     "checkpoint": os.path.basename(restored_from) if restored_from else None})
                if vdiff:
                    self._meta.setdefault("version_changes", []).append({"at_chunk": start, "changes": vdiff})
                self._meta["versions"] = package_versions()
                self._write_meta("running", compile_time_s=self.compile_time)
                if restored_from:
                    promote_checkpoint(self._ckpt_dir(), restored_from)
            else:
                if self.overwrite:
                    clear_run_files(self.out_dir, RECORD_FILES)
                os.makedirs(self.out_dir, exist_ok=True)
                write_json(os.path.join(self.out_dir, "config.json"), self.config)
                ident = self.identity()
                self._meta = {"num_chunks": ident["num_chunks"], "key": ident["key"], "versions": package_versions(),
                              "device": device_info(), "started_at": now()}
                self._write_meta("running", compile_time_s=self.compile_time, chunks_done=0)
        bar = tqdm(total=self.num_chunks * self.units_per_chunk, initial=start * self.units_per_chunk,
                   disable=not self.progress, unit=self.unit, desc=self.desc, file=sys.stderr, dynamic_ncols=True)
        run_time, saved, i = 0.0, start, start
        tb = None
        if self.tensorboard:
            from metarl.tensorboard import TensorBoardLog

            tb = TensorBoardLog(self.tensorboard)
        try:
            if self._sig.requested:
                raise Interrupted(self._interrupt_message(saved))
            for i in range(start, end):
                t = time.perf_counter()
                state, m = chunk_fn(state)
                m = jax.device_get(m)
                run_time += time.perf_counter() - t
                bad = nonfinite_names(state, m)
                history.append(m)
                if bad and not self._tolerate(state, bad, i + 1, bar):
                    bar.clear()
                    raise NonFiniteError(f"non-finite values in chunk {i + 1}: {listing(bad)}; stopped, "
                                         "status failed (the state after this chunk is not saved)",
                                         {"chunk": i + 1, "leaves": bad})
                if self.postfix is not None:
                    bar.set_postfix(self.postfix(m))
                bar.update(self.units_per_chunk)
                if tb is not None:
                    tb.chunk(m, (i + 1) * self.units_per_chunk)
                if self.out_dir:
                    self._save(state, i + 1, history)
                    saved = i + 1
                    self._write_metrics(history)
                    self._write_meta("running", chunks_done=saved)
                if self._sig.requested and i + 1 < end:
                    raise Interrupted(self._interrupt_message(saved))
        except (KeyboardInterrupt, Interrupted) as e:
            bar.close()
            if self.out_dir:
                abandon_partial(self._ckpt_dir(), self._checkpointer)
                self._finish_meta("interrupted", t_start, run_time, chunks_done=saved)
            if isinstance(e, Interrupted):
                raise
            raise Interrupted(self._interrupt_message(saved)) from None
        except BaseException as e:
            bar.close()
            if self.out_dir:
                if history:
                    self._write_metrics(history)
                self._finish_meta("failed", t_start, run_time, chunks_done=saved,
                                  error=cli.one_line(f"{type(e).__name__}: {e}"))
            raise
        finally:
            if tb is not None:
                tb.close()
        bar.close()
        if self.out_dir:
            self._finish_meta("finished" if end == self.num_chunks else "interrupted", t_start, run_time,
                              chunks_done=end)
        return state, self.stack(history)

    def _tolerate(self, state, bad: list[str], chunk: int, bar) -> bool:
        """With ``on_nonfinite="continue"`` and ``runs``: mark the runs (leading axis) that went non-finite
        failed, warn once per run in one line, and go on while some run is still finite (True). Otherwise,
        or when the non-finite values cannot be pinned on some of the runs, the run stops (False)."""
        if self.on_nonfinite != "continue" or not self.runs:
            return False
        which = nonfinite_runs(state, self.runs)
        if not which or len(which) == self.runs:
            return False
        for r in which:
            if r not in self.failed_runs:
                self.failed_runs[r] = {"chunk": chunk, "leaves": bad[:3]}
                bar.clear()
                print(f"warning: {self.run_unit} {r} went non-finite in chunk {chunk}: {listing(bad)}; marked "
                      "failed, the others go on", file=sys.stderr)
        self._meta["failed_runs"] = {str(k): v for k, v in self.failed_runs.items()}
        return True

    def _interrupt_message(self, saved: int) -> str:
        if saved == 0 and not (self.out_dir and os.path.exists(self._ckpt_dir())):
            return ("interrupted before the first checkpoint; nothing to resume yet, resume restarts from the "
                    f"beginning: {self.resume_hint}")
        return f"interrupted after chunk {saved}; resume with: {self.resume_hint}"

    def _finish_meta(self, status: str, t_start: float, run_time: float, **extra):
        self._write_meta(status, wall_time_s=time.perf_counter() - t_start, compile_time_s=self.compile_time,
                         run_time_s=run_time, **extra)


def run_chunks(init: Callable, chunk: Callable, key, num_chunks: int, out_dir: str | None, config: dict,
               resume: bool = False, **options):
    """``Driver(init, chunk, key, num_chunks, out_dir, config, **options).run(resume)``: (state, metrics)."""
    return Driver(init, chunk, key, num_chunks, out_dir, config, **options).run(resume)
