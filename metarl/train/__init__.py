"""The generic off-policy training loop: ``make_train(config) -> train(key)``.

Structure of a run (every line below is inside jit; seeds and sweeps are vmapped):

    init(key, hp):   agent init, env reset, buffer, then ``learning_starts`` uniformly random steps
    run_chunk(run):  ``evals_per_chunk`` x [ ``eval_every`` x (act, step env, store, update) ; evaluate ]

``train(key)`` is ``init`` followed by all chunks, one compiled program. :class:`Runner` drives the
same functions chunk by chunk from Python, so it can show a progress bar, write metrics and save an
orbax checkpoint between chunks; a resumed run continues bit for bit as the uninterrupted one, since
every random key lives in the state.

Numeric hyperparameters given as lists (``hp={"actor_lr": [1e-3, 3e-4]}``) become a sweep: the grid of
combinations times the seeds is one flat vmapped axis of runs. Where several devices exist, that axis
is sharded across them. A single run (one seed, no sweep) compiles as the run alone, not as a vmap over a
batch of one (:func:`metarl.runs.vmap_runs`: the same shapes, and on a CPU a faster program).

Runs that cannot lie (docs/reliability.md lists each fault and what happens; the functions behind
them live in :mod:`metarl.driver`, shared with its generic :class:`~metarl.driver.Driver`):

- a run's identity is its resolved config (defaults filled in), its sweep and the package versions;
  ``run(resume=True)`` refuses any difference in one line naming the fields, before writing anything;
- a new run refuses a non-empty run directory unless ``overwrite=True``; nothing is written before
  the config validates and the program compiles; every file is written whole (temp name, then
  ``os.replace``); meta.json's ``status`` is running / finished / failed / interrupted;
- a checkpoint is complete when its COMPLETE.json (written last) exists; it records the sha256 of every
  file and of every saved array, checked on restore; restore takes the newest complete one of
  ``checkpoint``, ``checkpoint.partial``, ``checkpoint.old``;
- inside the compiled program every update checks its metrics for +-inf and the agent's online
  parameters for NaN/inf, every evaluation point the whole agent state; each evaluation point reports
  ``nonfinite_step`` (the first bad environment step, -1 if none); the host stops
  (``on_nonfinite="stop"``) or marks the run failed and goes on ("continue");
- SIGINT finishes the chunk and its checkpoint, then stops with status interrupted (a second SIGINT
  abandons the checkpoint being written; the previous complete one stays).

Modules: config (TrainConfig, sweeps), program (the compiled functions), runner (Runner), command (the
command line); every name is re-exported here (loaded on first use), so ``from metarl import train as T; T.Runner`` works.
"""
from metarl.lazy import lazy_package

# the run machinery lives in metarl.driver (re-exported here); config first: it loads no jax
__getattr__, __dir__ = lazy_package(__name__, ("config", "program", "runner", "command"), extra=("_check_env_name",),
                                    reexport=("metarl.driver", (
    "MARKER", "ON_NONFINITE", "CheckpointError", "CheckpointMissing", "ConfigMismatch", "DeferredSigint", "Interrupted",
    "NonFiniteError", "RunDirError", "RunError", "abandon_partial", "as_array", "check_run_dir", "clear_run_files",
    "device_info", "find_checkpoint", "flat_diff", "has_checkpoint", "json_norm", "jsonable", "now", "package_versions",
    "promote_checkpoint", "read_stored_run", "refuse_resume", "restore_checkpoint", "save_checkpoint", "version_diff",
    "write_json", "write_text")))
