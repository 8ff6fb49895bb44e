"""SegmentDriver: the Driver's loop for a stage inside an experiment whose run record is its own (MetaGenRL's
meta-training and meta-test, EPG, RL^2, PPO-LIRPG, the model-based critic's meta-training); built and run by
:func:`metarl.driver.segments.run_segments`."""
from __future__ import annotations

import os
from typing import Callable

from metarl.driver.checkpoints import promote_checkpoint
from metarl.driver.core import Driver
from metarl.driver.records import json_norm

__all__ = ["SegmentDriver"]


class _Bar:
    """A caller's progress bar (or none), which the Driver advances but leaves open."""

    def __init__(self, bar):
        self.bar = bar

    def update(self, n):
        if self.bar is not None:
            self.bar.update(n)

    def set_postfix(self, *a, **k):
        if self.bar is not None:
            self.bar.set_postfix(*a, **k)

    def clear(self):
        if self.bar is not None:
            self.bar.clear()

    def close(self):
        pass


class _Stop:
    """A caller's :class:`metarl.driver.segments.StopFlag` (its SIGINT handler spans the stages), or none."""

    def __init__(self, stop):
        self.stop = stop

    @property
    def requested(self) -> bool:
        return self.stop is not None and self.stop.requested

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class SegmentDriver(Driver):
    """The Driver for a stage inside an experiment whose run record is its own (metarl.driver.RunRecord):
    the same loop, guard, checkpoint schedule and SIGINT handling, with the stage's identity, host
    history and ``extra`` state kept in the checkpoint folder (metarl.driver.segments), a caller's
    progress bar and StopFlag, and no config.json / meta.json / metrics.json of its own.
    :func:`metarl.driver.segments.run_segments` builds and runs it (its arguments are documented there)."""

    def __init__(self, seg, init_state: Callable, like, total: int, path: str | None, identity: dict, *,
                 on_segment=None, extra=None, stop=None, checkpoint_every: int = 1, bar=None,
                 units_per_segment: int = 1, where=None, runs=None, ignore: tuple = (), unit: str = "seed",
                 place_runs: int | None = None):
        super().__init__(None, seg, None, total, None, identity, progress=False, units_per_chunk=units_per_segment,
                         checkpoint_every=checkpoint_every, runs=runs, run_unit=unit)
        self.path, self.like, self.make_state = path, like, init_state
        self.identity_record = identity
        self.on_segment, self.extra, self.bar = on_segment, extra, bar
        self.where, self.ignore = where, ignore
        if place_runs is not None:
            self.place_runs = place_runs
        self._sig = _Stop(stop)

    def checkpointing(self) -> bool:
        return self.path is not None

    def _ckpt_dir(self) -> str:
        return self.path

    def check_run_dir(self, resume: bool):
        pass  # the experiment's command line checked its --out

    def check_resume(self):
        return {}, []  # the identity is checked against the checkpoint's (restore)

    def init_state(self):
        from metarl.driver.checkpoints import remove_checkpoint

        if self.path:  # a new run: no earlier checkpoint (or half-written one) of this name may be resumed later
            remove_checkpoint(self.path)
        return self.make_state()

    def restore(self):
        from metarl.driver.segments import restore_segments

        state, meta, found = restore_segments(self.path, self.like, self.identity_record)
        promote_checkpoint(self.path, found)  # resumed from .partial / .old: `checkpoint` again
        if self.extra is not None:
            self.extra[1](meta["extra"])
        return state, meta["done"], meta["history"], found

    def make_bar(self, start: int):
        bar = _Bar(self.bar)
        bar.update(start * self.units_per_chunk)
        return bar

    def record(self, i: int, state, m, dt: float, history: list, bar, tb):
        from metarl.driver.guard import check_finite
        from metarl.driver.segments import json_ready

        where = self.where(i + 1) if self.where else f"segment {i + 1} of {self.num_chunks}"
        check_finite(state, m, where, runs=self.runs, ignore=self.ignore, unit=self.run_unit)  # before any save
        if self.on_segment is not None:
            m = self.on_segment(i + 1, m)
        history.append(json_ready(m))
        bar.update(self.units_per_chunk)

    def save(self, state, chunk: int, history: list):
        from metarl.driver.segments import save_checkpoint

        save_checkpoint(self.path, state, chunk, history, self.extra[0]() if self.extra is not None else {},
                        json_norm(self.identity_record), self.num_chunks)

    @staticmethod
    def stack(history: list):
        return history

    def _interrupt_message(self, saved: int) -> str:
        if not saved:
            return f"stopped before segment 1 of {self.num_chunks}"
        where = f", checkpoint in {os.path.dirname(self.path)}" if self.path else ""
        return f"stopped after segment {saved} of {self.num_chunks}{where}"
