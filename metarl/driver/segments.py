"""The stages of the experiments that keep host state between compiled segments (MetaGenRL's meta-training,
meta-test and baselines, EPG, RL^2, PPO-LIRPG, the model-based critic's reacher and arm meta-training): a
compiled ``segment(state) -> (state, metrics)`` run by the Driver's loop (:class:`metarl.driver.stage.SegmentDriver`:
the NaN/inf guard after each segment, a checkpoint every few segments and at SIGINT, a resume that continues
bit for bit), with the stage's identity, host history and extra state in the checkpoint folder (the Driver's
format, metarl.driver.checkpoints: the orbax state and ``segments.json``, hashed, swapped in whole).

:func:`run_segments` runs one stage; :class:`StopFlag` turns the first Ctrl-C into "finish this segment and
its checkpoint" across an experiment's stages; a stage's ``identity`` (its settings and package versions)
must match its checkpoint's for a resume. Such an experiment writes its own run record (metarl.driver.RunRecord);
the programs whose run directory is the Driver's alone (the off-policy trainer, the outer-value experiments)
use :class:`metarl.driver.Driver` directly.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from typing import Callable

import numpy as np

from metarl.driver.records import json_norm

CHECKPOINT = "checkpoint"  # a folder (metarl.driver.checkpoints), with its .partial / .old while one is swapped in
SEGMENTS = "segments.json"  # inside it: identity, segments done and total, history, extra (NaN kept)


class StopFlag:
    """SIGINT while a stage runs (:meth:`sigint`): the first Ctrl-C lets the running segment finish and
    be checkpointed, then :func:`run_segments` raises ``metarl.train.Interrupted``; a second one stops
    at once (KeyboardInterrupt). Every file is written whole (a temporary name, then a rename), so
    either way only complete files are on disk. ``requested`` may also be set by code (tests)."""

    def __init__(self):
        self.requested = False

    @contextlib.contextmanager
    def sigint(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            sys.stderr.write("\ninterrupt: finishing the current segment (or stage) and its checkpoint, then stopping "
                             "(Ctrl-C again stops at once; the last complete checkpoint stays)\n")

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def json_ready(tree):
    """Host metrics as plain lists and floats (NaN kept), so a history read back from a checkpoint or
    a stage record is the same, value for value, as one built in memory."""
    if isinstance(tree, dict):
        return {k: json_ready(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)) and not all(isinstance(x, (int, float)) for x in tree):
        return [json_ready(v) for v in tree]
    return np.asarray(tree).tolist()


def save_checkpoint(path: str, state, done: int, history: list, extra: dict, identity: dict,
                    total: int | None = None):
    """Checkpoint folder ``path`` (metarl.driver.save_checkpoint, swapped in whole): ``state`` (orbax, every
    leaf hashed) and segments.json: the segments ``done`` of ``total``, the host ``history`` and ``extra``
    (JSON, NaN kept, so a history reads back value for value) and the run's ``identity``."""
    from metarl.driver.checkpoints import save_checkpoint as save_folder

    body = json.dumps({"identity": identity, "done": done, "total": total, "history": history, "extra": extra},
                      default=lambda o: np.asarray(o).tolist())
    save_folder(path, state, done, {"total": total}, files={SEGMENTS: body})


def load_checkpoint(path: str, like, identity: dict):
    """(state, done, history, extra) from :func:`save_checkpoint`'s folder ``path``: :func:`restore_segments`."""
    state, meta, _ = restore_segments(path, like, identity)
    return state, meta["done"], meta["history"], meta["extra"]


def restore_segments(path: str, like, identity: dict):
    """(state, segments.json, the folder read) from :func:`save_checkpoint`'s folder ``path`` (the newest
    complete of it, its .partial and .old). ``like``: the state's abstract shape (``jax.eval_shape`` of the
    init); a checkpoint of other settings is refused with a one-line ``ConfigMismatch`` naming the
    differences, one of other shapes with a one-line ``CheckpointMismatch``, a corrupted one with a
    one-line ``CheckpointError``."""
    from metarl.driver.checkpoints import restore_checkpoint
    from metarl.driver.errors import CheckpointMismatch, ConfigMismatch
    from metarl.driver.records import identity_diff

    def check_identity(meta):
        if meta["identity"] != json_norm(identity):
            raise ConfigMismatch(f"cannot resume from {path}: it was written with other settings: "
                                 f"{identity_diff(meta['identity'], json_norm(identity))}")

    try:  # every file's sha256 is checked first
        state, _, _, found = restore_checkpoint(path, like, os.path.dirname(path))
    except CheckpointMismatch:  # a run of other settings is named as such, not by its first array of another shape
        check_identity(read_segments(path))
        raise
    meta = read_segments(path, found)
    check_identity(meta)
    return state, meta, found


def read_segments(path: str, found: str | None = None) -> dict:
    """segments.json of the newest complete checkpoint at ``path`` (or of the folder ``found``): identity,
    done, total, history, extra. One-line CheckpointError if it cannot be read."""
    from metarl.driver.checkpoints import find_checkpoint
    from metarl.driver.errors import CheckpointError

    found = found or find_checkpoint(path, os.path.dirname(path))[0]
    try:
        with open(os.path.join(found, SEGMENTS)) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint {found}: {' '.join(str(e).split())[:200]}") from None
    if not isinstance(meta, dict) or not {"identity", "done", "history", "extra"} <= set(meta):
        raise CheckpointError(f"checkpoint {found} has no segment record ({SEGMENTS}); start the run again "
                              "without --resume")
    return meta


def run_segments(seg, init_state: Callable, like, total: int, ckpt_dir: str | None, identity: dict, *,
                 resume: bool = False, on_segment: Callable | None = None, extra: tuple | None = None,
                 stop: StopFlag | None = None, checkpoint_every: int = 1, bar=None, name: str = CHECKPOINT,
                 units_per_segment: int = 1, where: Callable | None = None, runs: int | None = None,
                 max_segments: int | None = None, ignore: tuple = (), unit: str = "seed",
                 place_runs: int | None = None):
    """Drive the compiled ``seg`` (state -> (state, metrics)) ``total`` times (the Driver's loop:
    :class:`metarl.driver.stage.SegmentDriver`; a jitted ``seg`` is compiled ahead, its time apart). After each segment the NaN/Inf
    guard (``metarl.driver.check_finite``) raises a one-line ``NonFiniteError`` before anything is saved,
    naming the segment (``where(i)``, default "segment i of total") and, with ``runs`` (the state's leading
    vmapped axis), the runs concerned (each a ``unit``, e.g. "seed"); leaves named in ``ignore`` may be
    infinite (e.g. evosax's best fitness before any fitness).

    ``identity`` (with the package versions added) must match the checkpoint's for a resume.
    ``init_state()`` builds the first state (not called when resuming); ``like`` is its abstract shape.
    After each segment the metrics go to the host, through ``on_segment(i, metrics) -> metrics`` (side
    effects such as saving an objective stage happen there), into the history. With ``ckpt_dir`` the
    state, history and ``extra`` (a pair ``(get() -> dict, set(dict))``, e.g. a monitor's state) are
    checkpointed in ``ckpt_dir/name`` every ``checkpoint_every`` segments, at the last one and when ``stop``
    is requested; then ``metarl.driver.Interrupted`` is raised (also at a second Ctrl-C, the segment
    abandoned, and before the first segment when ``stop`` was requested earlier). ``resume=True`` continues from the
    checkpoint there (from the start if there is none). ``bar`` advances ``units_per_segment`` per segment;
    ``max_segments`` stops after that many segments of this call (their checkpoint written; tests).
    With several devices the state's run axis (``place_runs``, default ``runs``: the leaves whose leading
    axis has that size) is split across them (metarl.driver.Driver.place).
    Returns (state, history: a list of per-segment JSON-ready dicts). A resumed run gives the same states
    and history as an uninterrupted one: every key is in the state.
    """
    from metarl.driver.stage import SegmentDriver
    from metarl.driver.records import package_versions

    identity = dict(identity, versions=package_versions())  # a resume under other package versions is refused
    driver = SegmentDriver(seg, init_state, like, total, os.path.join(ckpt_dir, name) if ckpt_dir else None, identity,
                           on_segment=on_segment, extra=extra, stop=stop, checkpoint_every=checkpoint_every, bar=bar,
                           units_per_segment=units_per_segment, where=where, runs=runs, ignore=ignore, unit=unit,
                           place_runs=place_runs)
    return driver.run(resume, stop_after=max_segments)


def vmapped_run(init, run_segment, key, seeds: int, total: int, ckpt_dir: str | None = None,
                identity: dict | None = None, *, resume: bool = False, on_segment: Callable | None = None, bar=None,
                ignore: tuple = ()):
    """:func:`run_segments` for a program whose seeds are independent runs (EPG, RL^2): ``init(key)`` and
    ``run_segment(state)`` vmapped over ``seeds`` keys split from ``key`` and jitted, ``total`` segments,
    checkpointed in ``ckpt_dir`` (None: no checkpoint) under ``identity``; the guard names the seeds.
    Returns (state, history) as :func:`run_segments`."""
    import jax

    from metarl.runs import vmap_runs

    init_v = jax.jit(vmap_runs(init))
    keys = jax.random.split(key, seeds)
    return run_segments(jax.jit(vmap_runs(run_segment)), lambda: init_v(keys), jax.eval_shape(init_v, keys), total,
                        ckpt_dir, identity or {}, resume=resume, on_segment=on_segment, bar=bar, runs=seeds,
                        ignore=ignore)


def drop_checkpoint(ckpt_dir: str | None):
    """Remove a finished stage's checkpoint (its result is on disk by then)."""
    from metarl.driver.checkpoints import has_checkpoint, remove_checkpoint

    if ckpt_dir and has_checkpoint(os.path.join(ckpt_dir, CHECKPOINT)):
        remove_checkpoint(os.path.join(ckpt_dir, CHECKPOINT))
        with contextlib.suppress(OSError):  # a folder of its own (meta-test) goes too; an objective's stays
            os.rmdir(ckpt_dir)
