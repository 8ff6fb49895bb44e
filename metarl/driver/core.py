"""The Driver: any pure init(key) / chunk(state) program run chunk by chunk with progress, run records,
checkpoints, --resume and the guard; run_chunks, its shorter form. (SegmentDriver, the same loop for a stage
of an experiment, is in metarl.driver.stage.)"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable

import jax
import numpy as np

from metarl import cli
from metarl.driver.errors import ON_NONFINITE, CheckpointError, Interrupted, NonFiniteError
from metarl.driver.records import (device_info, flat_diff, json_norm, now, package_versions, read_json, read_stored_run,
                                   metrics_files, refuse_resume, version_diff, write_json, write_metrics)
from metarl.driver.checkpoints import (CHECKPOINT_NAMES, MARKER, abandon_partial, has_checkpoint, promote_checkpoint,
                                       restore_checkpoint, save_checkpoint)
from metarl.driver.rundir import DeferredSigint, check_run_dir, clear_run_files
from metarl.driver.guard import listing, nonfinite_names, nonfinite_runs
from metarl.driver.runrecord import current_command, session_totals, start_session


RECORD_FILES = ("config.json", "meta.json") + metrics_files() + CHECKPOINT_NAMES


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
    after every chunk, at chunks x ``units_per_chunk``), or None. ``checkpoint_every``: chunks between
    checkpoints (the last chunk and a chunk that ends under SIGINT are always checkpointed).
    ``on_nonfinite``: "stop" (default) raises :class:`NonFiniteError` after the first chunk with a NaN/inf in
    the state or an infinite metric; "continue" (needs ``runs``, the size of the state's leading vmapped
    axis, whose entries are independent runs, each a ``run_unit``) marks the runs concerned failed
    (meta.json ``failed_runs``, one warning line each) and goes on while any run is finite.
    ``metrics_blocks``: ``(stacked metrics) -> (blocks, point)`` for :func:`metarl.driver.write_metrics`: the
    metrics per run and evaluation point in the layout every experiment writes (metrics.json and metrics.csv);
    without it metrics.json holds the stacked leaves (``{"chunks_done", "metrics"}``) and there is no CSV.

    ``run(resume)`` returns (final state, metrics) with every metric leaf stacked over the chunks:
    ``[num_chunks, ...]`` (numpy).

    One loop for every program: a subclass changes what it records through the hooks below (the
    off-policy :class:`metarl.train.Runner` does: sharded runs, its in-graph guard, metrics per evaluation
    point and a learning curve; so does :class:`metarl.driver.stage.SegmentDriver`, a stage of an
    experiment: its identity and history in the checkpoint, the experiment's progress bar and StopFlag),
    never the order of checks, compilation, writes, checkpoints and SIGINT.
    """

    RECORD_FILES = RECORD_FILES  # what a new run refuses to replace (None: any file) and --overwrite removes
    CLEAR_FILES = RECORD_FILES
    STATUSES = ("running", "finished", "failed", "interrupted")

    def __init__(self, init: Callable, chunk: Callable, key, num_chunks: int, out_dir: str | None,
                 config: dict, *, progress: bool = True, desc: str = "run", unit: str = "chunk",
                 units_per_chunk: int = 1, postfix: Callable | None = None, overwrite: bool = False,
                 allow_version_change: bool = False, resume_hint: str | None = None, flag: str = "--out",
                 tensorboard: str | None = None, on_nonfinite: str = "stop", runs: int | None = None,
                 run_unit: str = "seed", checkpoint_every: int = 1, metrics_blocks: Callable | None = None):
        if num_chunks < 1:
            raise ValueError(f"num_chunks must be >= 1, got {num_chunks}")
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
        if on_nonfinite not in ON_NONFINITE:
            raise ValueError(f"on_nonfinite={on_nonfinite!r}; valid: {', '.join(ON_NONFINITE)}")
        self.on_nonfinite, self.runs, self.run_unit = on_nonfinite, runs, run_unit
        self.place_runs = runs  # the run axis that place() splits across devices
        self.failed_runs: dict = {}
        self.init, self.chunk, self.key = init, chunk, key
        self.num_chunks = num_chunks
        self.checkpoint_every = checkpoint_every
        self.out_dir = out_dir
        self.record_config = json_norm(config)
        self.progress, self.desc, self.unit, self.units_per_chunk = progress, desc, unit, units_per_chunk
        self.postfix = postfix
        self.overwrite = overwrite
        self.allow_version_change = allow_version_change
        self.resume_hint = resume_hint or "the same command with --resume"
        self.flag = flag
        self.tensorboard = tensorboard
        self.metrics_blocks = metrics_blocks
        self.compile_time: dict = {}
        self._meta: dict = {}
        self._sig = DeferredSigint()
        self._checkpointer = None

    # -- identity -----------------------------------------------------------------------------------
    def _ckpt_dir(self) -> str:
        return os.path.join(os.path.abspath(self.out_dir), "checkpoint")

    def identity(self) -> dict:
        """What a resume must match: the config, the number of chunks and the key."""
        return {"config": self.record_config, "num_chunks": self.num_chunks,
                "key": json_norm(np.asarray(jax.random.key_data(self.key)))}

    def check_resume(self) -> tuple[dict, list[str]]:
        """Compare with the stored run; raise a one-line :class:`ConfigMismatch` naming every
        difference. Returns (stored meta.json or {}, package version changes allowed through)."""
        stored, meta = read_stored_run(self.out_dir)
        old = {"config": stored, "num_chunks": meta.get("num_chunks"), "key": meta.get("key")}
        vdiff = refuse_resume(self.out_dir, flat_diff(old, self.identity()), version_diff(meta),
                              self.allow_version_change, self.flag)
        return meta, vdiff

    def check_run_dir(self, resume: bool):
        """Refuse an unusable run directory before anything is compiled or written."""
        check_run_dir(self.out_dir, resume, self.overwrite, self.RECORD_FILES, self.flag)

    # -- hooks: a subclass's records ----------------------------------------------------------------
    def initial_meta(self) -> dict:
        """meta.json of a new run, before its status and times."""
        ident = self.identity()
        return {"num_chunks": ident["num_chunks"], "key": ident["key"], "command": current_command(),
                "versions": package_versions(), "device": device_info(), "started_at": now()}

    def init_state(self):
        """The initial state (compiling ``init`` first; its time goes to compile_time["init"])."""
        t = time.perf_counter()
        init = jax.jit(self.init).lower(self.key).compile()
        self.compile_time["init"] = time.perf_counter() - t
        return init(self.key)

    def record(self, i: int, state, m, dt: float, history: list, bar, tb):
        """After chunk ``i`` (0-based) ran in ``dt`` s with metrics ``m`` (on the host): append to
        ``history``, apply the non-finite policy (raise :class:`NonFiniteError` to stop), update ``bar``
        and ``tb``."""
        bad = nonfinite_names(state, m)
        history.append(m)
        if bad and not self._tolerate(state, bad, i + 1, bar):
            bar.clear()
            raise NonFiniteError(f"non-finite values in chunk {i + 1}: {listing(bad)}; stopped, status failed "
                                 "(the state after this chunk is not saved)", {"chunk": i + 1, "leaves": bad})
        if self.postfix is not None:
            bar.set_postfix(self.postfix(m))
        bar.update(self.units_per_chunk)
        if tb is not None:
            tb.chunk(m, (i + 1) * self.units_per_chunk)

    def checkpointing(self) -> bool:
        """Whether chunks are checkpointed (a run directory was given)."""
        return bool(self.out_dir)

    def place(self, state):
        """The state on the devices: with ``place_runs`` (default ``runs``) and several devices that divide
        it, every leaf whose leading axis has that size split across them (the others replicated), so each
        chunk runs its runs in parallel on every device; on one device (or when they do not divide it) the
        state as it is. A restored state is placed the same way as a fresh one."""
        devices, n = jax.devices(), self.place_runs
        if not n or len(devices) < 2 or n % len(devices):
            return state
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.asarray(devices), ("runs",))
        split, whole = NamedSharding(mesh, PartitionSpec("runs")), NamedSharding(mesh, PartitionSpec())
        return jax.tree.map(lambda x: jax.device_put(x, split if np.ndim(x) and np.shape(x)[0] == n else whole),
                            state)

    def make_bar(self, start: int):
        """The progress bar (tqdm on stderr; disabled without ``progress``), at ``start`` chunks done."""
        from metarl.cli import progress_bar

        return progress_bar(self.num_chunks * self.units_per_chunk, self.desc, self.progress, self.unit,
                            initial=start * self.units_per_chunk)

    def finish_extra(self, run_time: float, chunks_run: int) -> dict:
        """What meta.json records when a session ends, besides its status and the sessions' times."""
        return {}

    @staticmethod
    def stack(history: list):
        """Per-chunk metric pytrees -> one pytree with each leaf stacked: ``[chunks, ...]``."""
        if not history:
            return {}
        return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *history)

    def write_metrics(self, history: list, final: bool = False):
        """metrics.json (and with ``metrics_blocks`` metrics.csv) after every checkpoint, on failure, and
        ``final``-ly at the end."""
        if self.metrics_blocks is not None:
            if history:
                write_metrics(self.out_dir, *self.metrics_blocks(self.stack(history)))
            return
        write_json(os.path.join(self.out_dir, "metrics.json"),
                   {"chunks_done": len(history), "metrics": self.stack(history)})

    def save(self, state, chunk: int, history: list):
        """Checkpoint ``state`` after ``chunk`` chunks with the metrics so far (written whole, swapped in)."""
        leaves = jax.tree.leaves(self.stack(history))
        save_checkpoint(self._ckpt_dir(), state, chunk, {}, {f"m{j:04d}": x for j, x in enumerate(leaves)},
                        on_open=lambda c: setattr(self, "_checkpointer", c))

    def restore(self):
        """(state, chunks done, history, checkpoint path) from the newest complete checkpoint."""
        abstract = jax.eval_shape(self.init, self.key)
        metrics_def = jax.tree.structure(jax.eval_shape(self.chunk, abstract)[1])
        state, _, arrays, path = restore_checkpoint(self._ckpt_dir(), abstract, self.out_dir)
        n = int(read_json(os.path.join(path, MARKER))["chunk"])
        leaves = [arrays[f"m{j:04d}"] for j in range(len(arrays))] if arrays else []
        if n and len(leaves) != metrics_def.num_leaves:
            raise CheckpointError(f"checkpoint {os.path.basename(path)} holds {len(leaves)} metric arrays, the "
                                  f"chunk function returns {metrics_def.num_leaves}")
        history = [metrics_def.unflatten([x[c] for x in leaves]) for c in range(n)]
        return state, n, history, path

    # -- records ------------------------------------------------------------------------------------
    def _write_meta(self, status: str, **extra):
        assert status in self.STATUSES
        self._meta.update(extra)
        self._meta.update(status=status, updated_at=now())
        if self.out_dir:
            write_json(os.path.join(self.out_dir, "meta.json"), self._meta)

    # -- driving ------------------------------------------------------------------------------------
    def run(self, resume: bool = False, stop_after: int | None = None):
        """Run to the end (or for ``stop_after`` more chunks). Returns (state, stacked metrics).

        Raises a one-line :class:`RunError` for a refused directory or resume, a bad checkpoint, a
        non-finite state or metric (:class:`NonFiniteError`) or SIGINT (:class:`Interrupted`)."""
        with self._sig:
            return self._run(resume, stop_after)

    def _run(self, resume: bool, stop_after: int | None):
        t_start = time.perf_counter()
        # 1. Everything that can refuse the run, before compiling or writing anything.
        self.check_run_dir(resume)
        meta, vdiff = self.check_resume() if resume else ({}, [])
        restored_from = None
        if resume and self.checkpointing() and has_checkpoint(self._ckpt_dir()):
            state, start, history, restored_from = self.restore()
        else:  # a new run, or one stopped before its first checkpoint: start from the beginning
            state, start, history = self.init_state(), 0, []
        state = self.place(state)
        end = self.num_chunks if stop_after is None else min(self.num_chunks, start + stop_after)
        # 2. Compile the chunk (the long part), still without writing.
        chunk_fn = self.chunk
        if start < end and hasattr(self.chunk, "lower"):
            t = time.perf_counter()
            chunk_fn = self.chunk.lower(state).compile()
            self.compile_time["chunk"] = time.perf_counter() - t
        # 3. Now the run directory. meta.json's sessions: the first run and each resume, like every
        # experiment's run record (metarl.driver.RunRecord); a session killed outright stays "running".
        self._session = start_session(current_command(), resume, from_chunk=start,
                                      compile_time_by_program=dict(self.compile_time))
        if self.out_dir:
            if resume and meta:
                self._meta = meta
                self._session["checkpoint"] = os.path.basename(restored_from) if restored_from else None
                if vdiff:
                    self._meta.setdefault("version_changes", []).append({"at_chunk": start, "changes": vdiff})
                self._meta["versions"] = package_versions()
                self._meta["sessions"] = self._meta.get("sessions", []) + [self._session]
                self._write_meta("running")
                if restored_from:
                    promote_checkpoint(self._ckpt_dir(), restored_from)
            else:
                if self.overwrite:
                    clear_run_files(self.out_dir, self.CLEAR_FILES)
                os.makedirs(self.out_dir, exist_ok=True)
                write_json(os.path.join(self.out_dir, "config.json"), self.record_config)
                self._meta = dict(self.initial_meta(), sessions=[self._session])
                self._write_meta("running", chunks_done=0)
        bar = self.make_bar(start)
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
                dt = time.perf_counter() - t
                run_time += dt
                self.record(i, state, m, dt, history, bar, tb)
                if self.checkpointing() and ((i + 1) % self.checkpoint_every == 0 or i + 1 == end or
                                             self._sig.requested):
                    self.save(state, i + 1, history)
                    saved = i + 1
                    if self.out_dir:
                        self.write_metrics(history)
                        self._write_meta("running", chunks_done=saved)
                if self._sig.requested and i + 1 < end:
                    raise Interrupted(self._interrupt_message(saved))
        except (KeyboardInterrupt, Interrupted) as e:
            bar.close()
            if self.checkpointing():
                abandon_partial(self._ckpt_dir(), self._checkpointer)
            if self.out_dir:
                self._finish_meta("interrupted", t_start, run_time, i - start, chunks_done=saved)
            if isinstance(e, Interrupted):
                raise
            raise Interrupted(self._interrupt_message(saved)) from None
        except BaseException as e:
            bar.close()
            if self.out_dir:
                if history:
                    self.write_metrics(history)
                self._finish_meta("failed", t_start, run_time, i - start, chunks_done=saved,
                                  error=cli.one_line(f"{type(e).__name__}: {e}"))
            raise
        finally:
            if tb is not None:
                tb.close()
        bar.close()
        if self.out_dir:
            self.write_metrics(history, final=True)
            self._finish_meta("finished" if end == self.num_chunks else "interrupted", t_start, run_time, end - start,
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

    def _finish_meta(self, status: str, t_start: float, run_time: float, chunks_run: int, **extra):
        """The session's end: its status and times (compile apart from run), and the sums over every session
        that ended (``wall_time_s``, ``compile_time_s``, ``run_time_s``), as in every run record."""
        self._session.update(status=status, ended_at=now(), wall_time_s=time.perf_counter() - t_start,
                             compile_time_s=sum(self.compile_time.values()),
                             compile_time_by_program=dict(self.compile_time), run_time_s=run_time,
                             chunks_run=chunks_run)
        if "error" in extra:
            self._session["error"] = extra["error"]
        self._write_meta(status, **session_totals(self._meta.get("sessions", [])),
                         **self.finish_extra(run_time, chunks_run), **extra)


def run_chunks(init: Callable, chunk: Callable, key, num_chunks: int, out_dir: str | None, config: dict,
               resume: bool = False, **options):
    """``Driver(init, chunk, key, num_chunks, out_dir, config, **options).run(resume)``: (state, metrics)."""
    return Driver(init, chunk, key, num_chunks, out_dir, config, **options).run(resume)
