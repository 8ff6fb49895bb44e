"""Optional TensorBoard event files for a run (``--tensorboard DIR``), written with tensorboardX.

Watch a long run with ``tensorboard --logdir DIR``. The run's own records (metrics.json, checkpoints)
stay the source of truth; the event files are a view of them, appended after every chunk (a resumed run
appends to the same folder, so its curves continue).

- :meth:`TensorBoardLog.evaluations` (``metarl.train``'s Runner): metrics [runs, evaluations] at the
  evaluation points' environment steps; the mean over the runs that are finite, and each run as
  ``<metric>/run_<i>`` when there are at most ``per_run_max`` runs.
- :meth:`TensorBoardLog.chunk` (``metarl.driver.Driver``): any metrics pytree after a chunk, one scalar
  per leaf (its mean over the finite values), at ``step`` (chunks x units per chunk).
"""
from __future__ import annotations

import numpy as np


def _writer(logdir: str):
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:  # one line for the CLI
        raise RuntimeError(f"--tensorboard needs tensorboardX (pip install tensorboardX): {e}") from None
    return SummaryWriter(logdir)


def _finite_mean(x) -> float | None:
    a = np.asarray(x, dtype=float)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


class TensorBoardLog:
    def __init__(self, logdir: str, per_run_max: int = 16):
        self.logdir = logdir
        self.per_run_max = per_run_max
        self.writer = _writer(logdir)

    def evaluations(self, metrics: dict, env_steps) -> None:
        """``metrics``: {name: [runs, evaluations]}; ``env_steps``: [evaluations] (or [runs, evaluations])."""
        steps = np.asarray(env_steps)
        steps = steps.reshape(-1, steps.shape[-1])[0] if steps.ndim > 1 else steps
        for name, v in metrics.items():
            a = np.asarray(v)
            if name == "env_steps" or a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
                continue
            for e, step in enumerate(steps[: a.shape[1]]):
                m = _finite_mean(a[:, e])
                if m is not None:
                    self.writer.add_scalar(name, m, int(step))
                if a.shape[0] <= self.per_run_max:
                    for r in range(a.shape[0]):
                        if np.isfinite(a[r, e]):
                            self.writer.add_scalar(f"{name}/run_{r}", float(a[r, e]), int(step))
        self.writer.flush()

    def chunk(self, metrics, step: int) -> None:
        import jax

        for path, leaf in jax.tree_util.tree_flatten_with_path(metrics)[0]:
            a = np.asarray(leaf)
            if not np.issubdtype(a.dtype, np.number):
                continue
            m = _finite_mean(a)
            if m is not None:
                name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path) or "value"
                self.writer.add_scalar(name, m, int(step))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def read_scalars(logdir: str) -> dict:
    """{tag: [(step, value), ...]} from the event files in ``logdir`` (no TensorBoard needed): each file is
    a sequence of records (8-byte length, 4-byte CRC, an ``Event`` protobuf, 4-byte CRC)."""
    import glob
    import os
    import struct

    from tensorboardX.proto import event_pb2

    out: dict = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos + 12 <= len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            ev = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for v in ev.summary.value:
                out.setdefault(v.tag, []).append((int(ev.step), float(v.simple_value)))
    return out
