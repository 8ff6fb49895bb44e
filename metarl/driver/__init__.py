"""A resumable chunked driver for any pure training program, and the run machinery it shares with
:class:`metarl.train.Runner` (run records, atomic writes, checkpoints, resume validation, SIGINT).

A program is two pure functions: ``init(key) -> state`` and ``chunk(state) -> (state, metrics)``
(jitted; ``metrics`` a pytree of arrays for that chunk, every random key inside ``state``).
:class:`Driver` (or :func:`run_chunks`) calls ``init`` once and then ``chunk`` ``num_chunks`` times from
Python; after every chunk it appends the chunk's metrics and saves the state as a checkpoint, so that
``resume=True`` continues bit for bit as the uninterrupted run. The run directory holds:

- ``config.json``: the caller's config dict (the run's identity, with ``num_chunks`` and the key);
- ``meta.json``: status (running / finished / failed / interrupted), package versions, device, chunks
  done, and ``sessions`` (the first run and each resume: command, the chunk it started from, how it ended,
  its wall, compile and run time; a session killed outright stays "running") with their sums, as in every
  experiment's run record (runrecord);
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

Modules: errors, records (versions, device, atomic JSON, identity), checkpoints, rundir (run-directory
policy, SIGINT), guard (NaN / inf), core (Driver, run_chunks), stage (SegmentDriver) and segments
(run_segments: the Driver's loop for a stage of an experiment with host state between segments),
runrecord (config.json and meta.json of the experiments that are chains of such stages); every name is
re-exported here (loaded on first use), so ``from metarl.driver import Driver, write_json`` works.
"""
from metarl.lazy import lazy_package

# jax-free modules first: ``from metarl.driver import write_json`` loads no jax
__getattr__, __dir__ = lazy_package(__name__, ("errors", "records", "rundir", "runrecord", "checkpoints", "guard", "core", "stage"))
