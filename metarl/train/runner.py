"""Runner: drives the vmapped (and sharded) off-policy run chunk by chunk: progress bar, metrics, run
records, checkpoints, --resume, the non-finite guard and SIGINT."""
from __future__ import annotations

import dataclasses
import os
import sys
import time

import jax
import numpy as np

from metarl import cli
from metarl.driver import (ON_NONFINITE, DeferredSigint, Interrupted, NonFiniteError, abandon_partial, as_array,
                           check_run_dir, clear_run_files, device_info, find_checkpoint, flat_diff, has_checkpoint,
                           json_norm, now, package_versions, promote_checkpoint, read_stored_run, refuse_resume,
                           restore_checkpoint, save_checkpoint, version_diff, write_json, write_text)
from metarl.agents import agent_config
from metarl.train.config import TrainConfig
from metarl.train.program import guard_names, make_functions, run_keys_and_hp, run_sharding, shard_runs


# ----------------------------------------------------------------------------------------------------
# Chunked driver: progress bar, metrics, checkpoints, resume
# ----------------------------------------------------------------------------------------------------
RUN_FILES = ("config.json", "meta.json", "metrics.json", "metrics.csv", "learning_curve.png",
             "checkpoint", "checkpoint.partial", "checkpoint.old")
STATUSES = ("running", "finished", "failed", "interrupted")

class Runner:
    """Drives a vmapped (and, with several devices, sharded) run chunk by chunk.

    ``Runner(config, run_dir).run()`` trains all seeds and sweep combinations, writing into ``run_dir``:
    config.json, meta.json (status, versions, device, compile and wall time), metrics.json and
    metrics.csv (per run and evaluation point; written with every checkpoint and at the end),
    learning_curve.png, and an orbax checkpoint after every ``checkpoint_every`` chunks, from which
    ``run(resume=True)`` continues.

    ``overwrite``: a new run may replace the run files of a non-empty ``run_dir`` (else refused).
    ``on_nonfinite``: "stop" (default) raises :class:`NonFiniteError` after the chunk in which any run
    went NaN/inf; "continue" marks those runs failed and trains the others to the end.
    ``allow_version_change``: resume although package versions differ (recorded in meta.json).
    """

    def __init__(self, config: TrainConfig, run_dir: str | None = None, checkpoint_every: int = 1,
                 progress: bool = True, devices=None, agent_fn=None, overwrite: bool = False,
                 on_nonfinite: str = "stop", allow_version_change: bool = False, tensorboard: str | None = None):
        self.config = config.validate()
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
        if on_nonfinite not in ON_NONFINITE:
            raise ValueError(f"on_nonfinite={on_nonfinite!r}; valid: {', '.join(ON_NONFINITE)}")
        self.run_dir = run_dir
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self.overwrite = overwrite
        self.on_nonfinite = on_nonfinite
        self.allow_version_change = allow_version_change
        self.tensorboard = tensorboard  # a folder for TensorBoard event files (metarl.tensorboard), or None
        self.resume_hint = "Runner(config, run_dir).run(resume=True)"  # the CLI puts its command line here
        self.env, self.agent, init, run_chunk, _ = make_functions(config, agent_fn)
        self._init_fn = init
        self.combos, self.keys, self.hp = run_keys_and_hp(config)
        self.num_runs = self.keys.shape[0]
        self.sharding = run_sharding(self.num_runs, devices)
        self._init = jax.jit(jax.vmap(init), out_shardings=self.sharding)
        self._chunk = jax.jit(jax.vmap(run_chunk), out_shardings=self.sharding, donate_argnums=0)
        self.compile_time = {}
        self.failures: dict[int, dict] = {}
        self._meta: dict = {}
        self._sig = DeferredSigint()

    # -- identity -----------------------------------------------------------------------------------
    def run_labels(self) -> list[tuple[int, int]]:
        """(combo index, seed index) of each run of the flat axis."""
        s = self.config.seeds
        idx = [self.config.seed_index] if self.config.seed_index is not None else range(self.num_runs)
        return [(i // s, i % s) for i in idx]

    def _resolved(self, cfg: dict) -> dict:
        """A stored or current config dict with the agent's defaults filled in (so that giving a value
        equal to its default is the same run)."""
        cfg = dict(cfg)
        try:
            defaults = dataclasses.asdict(agent_config(cfg.get("algo"), **cfg.get("agent", {})))
            cfg["agent"] = json_norm({**defaults, **cfg.get("agent", {})})
        except (ValueError, TypeError):
            pass
        cfg["hp"] = json_norm({**dict(self.agent.default_hp or {}), **cfg.get("hp", {})})
        cfg.setdefault("seed_index", None)
        return cfg

    def identity(self) -> dict:
        return {"config": json_norm(dataclasses.asdict(self.config)), "sweep": json_norm(self.combos),
                "versions": package_versions()}

    def check_resume(self) -> dict:
        """Compare this run's identity with the stored one; raise a one-line :class:`ConfigMismatch`
        naming every difference. Returns the stored meta.json (or {})."""
        stored, meta = read_stored_run(self.run_dir)
        mine = self.identity()
        diffs = flat_diff(self._resolved(stored), self._resolved(mine["config"]))
        if not diffs and "sweep" in meta and json_norm(meta["sweep"]) != mine["sweep"]:
            diffs.append(f"sweep ({meta['sweep']!r} -> {mine['sweep']!r})")
        self._version_change = refuse_resume(self.run_dir, diffs, version_diff(meta), self.allow_version_change,
                                             "--run-dir")
        return meta

    # -- run directory ------------------------------------------------------------------------------
    def check_run_dir(self, resume: bool):
        """Refuse an unusable run directory before anything is compiled or written."""
        check_run_dir(self.run_dir, resume, self.overwrite)

    def _write_meta(self, status: str, **extra):
        assert status in STATUSES
        self._meta.update(extra)
        self._meta.update(status=status, updated_at=now())
        if self.run_dir:
            write_json(os.path.join(self.run_dir, "meta.json"), self._meta)

    # -- state --------------------------------------------------------------------------------------
    def init_state(self):
        t = time.perf_counter()
        args = shard_runs((self.keys, self.hp), self.sharding)
        compiled = self._init.lower(*args).compile()
        self.compile_time["init"] = time.perf_counter() - t
        return compiled(*args)

    def _ckpt_dir(self):
        return os.path.join(os.path.abspath(self.run_dir), "checkpoint")

    def save(self, run, chunk_idx: int, history: list):
        """Checkpoint ``run`` with the history and failures so far (:func:`metarl.driver.save_checkpoint`:
        written whole, then swapped in atomically)."""
        save_checkpoint(self._ckpt_dir(), run, chunk_idx, {"history": history, "failures": self.failures},
                        on_open=lambda c: setattr(self, "_ckptr", c))

    def find_checkpoint(self) -> tuple[str, dict]:
        """The newest complete checkpoint among checkpoint, checkpoint.partial, checkpoint.old."""
        return find_checkpoint(self._ckpt_dir(), self.run_dir)

    def restore(self):
        """Restore the newest complete checkpoint, checking the sha256 of every file and array first.
        Returns (run state, chunk, history); a mismatch is a one-line :class:`CheckpointError`."""
        abstract = jax.eval_shape(jax.vmap(self._init_fn), self.keys, self.hp)
        if self.sharding is not None:
            abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.sharding), abstract)
        run, prog, _, self._restored_from = restore_checkpoint(self._ckpt_dir(), abstract, self.run_dir)
        self.failures = {int(k): v for k, v in prog.get("failures", {}).items()}
        history = [{k: as_array(v).tolist() for k, v in h.items()} for h in prog["history"]]
        return run, prog["chunk"], history

    # -- driving ------------------------------------------------------------------------------------
    def run(self, resume: bool = False, stop_after: int | None = None):
        """Train to the end (or for ``stop_after`` chunks). Returns (final state, metrics dict of
        arrays shaped [num_runs, num_evals]).

        Raises a :class:`RunError` (one-line message) for a refused run directory or resume, a bad
        checkpoint, a non-finite run (``on_nonfinite="stop"``) or SIGINT (:class:`Interrupted`)."""
        with self._sig:
            return self._run(resume, stop_after)

    def _run(self, resume, stop_after):
        from tqdm import tqdm

        cfg = self.config
        t_start = time.perf_counter()
        # 1. Everything that can refuse the run, before compiling or writing anything.
        self.check_run_dir(resume)
        self._version_change = []
        meta = self.check_resume() if resume else {}
        if resume:
            has_ckpt = has_checkpoint(self._ckpt_dir())
            if has_ckpt:
                run, start, history = self.restore()
            else:  # config.json written, stopped before the first checkpoint: start from scratch
                self._restored_from = None
                run, start, history = self.init_state(), 0, []
        else:
            self.failures = {}
            run, start, history = self.init_state(), 0, []
        end = cfg.num_chunks if stop_after is None else min(cfg.num_chunks, start + stop_after)
        # 2. Compile the chunk (the long part), still without writing.
        if start < end:
            t = time.perf_counter()
            chunk_fn = self._chunk.lower(run).compile()
            self.compile_time["chunk"] = time.perf_counter() - t
        # 3. Now the run directory.
        if self.run_dir:
            if resume:
                self._meta = meta
                self._meta.setdefault("resumes", []).append(
                    {"from_chunk": start, "at": now(),
                     "checkpoint": os.path.basename(self._restored_from) if self._restored_from else None})
                if self._version_change:
                    self._meta.setdefault("version_changes", []).append(
                        {"at_chunk": start, "changes": self._version_change})
                self._meta["versions"] = package_versions()
                self._write_meta("running", compile_time_s=self.compile_time)
                if self._restored_from:
                    promote_checkpoint(self._ckpt_dir(), self._restored_from)
            else:
                if self.overwrite:
                    clear_run_files(self.run_dir, RUN_FILES)
                os.makedirs(self.run_dir, exist_ok=True)
                write_json(os.path.join(self.run_dir, "config.json"), dataclasses.asdict(cfg))
                self._meta = {"config": dataclasses.asdict(cfg), "versions": package_versions(),
                              "device": device_info(), "num_runs": self.num_runs, "sweep": self.combos,
                              "started_at": now()}
                self._write_meta("running", compile_time_s=self.compile_time, chunks_done=0)
        bar = tqdm(total=cfg.num_chunks, initial=start, disable=not self.progress, unit="chunk",
                   desc=f"{cfg.algo} {cfg.env}", file=sys.stderr)
        steps_per_chunk = cfg.eval_every * cfg.evals_per_chunk * self.num_runs
        tb = None
        if self.tensorboard:
            from metarl.tensorboard import TensorBoardLog

            tb = TensorBoardLog(self.tensorboard)  # per evaluation point, at its environment step
        train_time = 0.0
        saved = start
        i = start
        try:
            if self._sig.requested:
                raise Interrupted(self._interrupt_message(saved))
            for i in range(start, end):
                t = time.perf_counter()
                run, m = chunk_fn(run)
                m = jax.device_get(m)
                dt = time.perf_counter() - t
                train_time += dt
                new_failures = self._check_finite(m, i)
                m.pop("nonfinite_code", None)
                history.append({k: np.asarray(v).tolist() for k, v in m.items()})
                if tb is not None:
                    tb.evaluations({k: v for k, v in m.items() if k != "nonfinite_step"}, m["env_steps"])
                last = np.asarray(m["eval_return"])[:, -1]
                last = last[np.isfinite(last)]
                bar.set_postfix(sps=f"{steps_per_chunk / dt:,.0f}", ret=f"{last.mean() if last.size else float('nan'):.1f}")
                bar.update(1)
                if new_failures:
                    bar.clear()
                    if self.on_nonfinite == "stop" or len(self.failures) == self.num_runs:
                        raise NonFiniteError(self._failure_message(), self.failures)
                    for r in sorted(new_failures):
                        sys.stderr.write(f"warning: {self._failure_line(r)}; run marked failed, the others go on\n")
                if self.run_dir and ((i + 1) % self.checkpoint_every == 0 or i + 1 == end or self._sig.requested):
                    self.save(run, i + 1, history)
                    saved = i + 1
                    self._write_metrics(self.stack(history))
                    self._write_meta("running", chunks_done=saved)
                if self._sig.requested and i + 1 < end:
                    raise Interrupted(self._interrupt_message(saved))
        except (KeyboardInterrupt, Interrupted) as e:
            bar.close()
            self._abandon_partial()
            if self.run_dir:
                self._finish_meta("interrupted", t_start, train_time, i - start, chunks_done=saved)
            if isinstance(e, Interrupted):
                raise
            raise Interrupted(self._interrupt_message(saved)) from None
        except BaseException as e:
            bar.close()
            if self.run_dir:
                if history:
                    self._write_metrics(self.stack(history))
                self._finish_meta("failed", t_start, train_time, i - start, chunks_done=saved,
                                  error=cli.one_line(f"{type(e).__name__}: {e}"))
            raise
        bar.close()
        if tb is not None:
            tb.close()
        metrics = self.stack(history)
        if self.run_dir:
            self._write_metrics(metrics, plot=True)
            status = "finished" if end == cfg.num_chunks else "interrupted"
            self._finish_meta(status, t_start, train_time, end - start, chunks_done=end)
        return run, metrics

    def _interrupt_message(self, saved: int) -> str:
        if saved == 0 and not (self.run_dir and os.path.exists(self._ckpt_dir())):
            return ("interrupted before the first checkpoint; nothing to resume yet, resume restarts from the "
                    f"beginning: {self.resume_hint}")
        return f"interrupted after chunk {saved}; resume with: {self.resume_hint}"

    def _abandon_partial(self):
        """Drop a checkpoint.partial without its marker (a save cut short); complete ones stay."""
        if self.run_dir:
            abandon_partial(self._ckpt_dir(), getattr(self, "_ckptr", None))

    def _finish_meta(self, status, t_start, train_time, chunks_run, **extra):
        cfg = self.config
        steps = chunks_run * cfg.eval_every * cfg.evals_per_chunk * self.num_runs
        self._write_meta(status, wall_time_s=time.perf_counter() - t_start, compile_time_s=self.compile_time,
                         train_time_s=train_time, env_steps_per_s=steps / max(train_time, 1e-9),
                         failed_runs={str(k): v for k, v in sorted(self.failures.items())}, **extra)

    # -- non-finite guard ---------------------------------------------------------------------------
    def _check_finite(self, m: dict, chunk: int) -> dict:
        """Record runs whose first non-finite value appeared in this chunk. Returns the new ones."""
        names = guard_names(m)
        steps = np.asarray(m["nonfinite_step"])
        codes = np.asarray(m["nonfinite_code"])
        new = {}
        for r in range(steps.shape[0]):
            if r in self.failures:
                continue
            hit = np.nonzero(steps[r] >= 0)[0]
            if hit.size:
                e = hit[0]
                combo, seed = self.run_labels()[r]
                new[r] = {"step": int(steps[r, e]), "metric": names[int(codes[r, e])], "chunk": chunk + 1,
                          "seed": seed, "combo": self.combos[combo]}
        self.failures.update(new)
        return new

    def _run_name(self, r: int) -> str:
        combo, seed = self.run_labels()[r]
        extra = ", ".join(f"{k}={v:g}" for k, v in self.combos[combo].items() if isinstance(v, (int, float)))
        return f"run {r} (seed {seed}{', ' + extra if extra and len(self.combos) > 1 else ''})"

    def _failure_line(self, r: int) -> str:
        f = self.failures[r]
        return f"{self._run_name(r)} went non-finite: {f['metric']} at env step {f['step']}"

    def _failure_message(self) -> str:
        first = min(self.failures, key=lambda r: (self.failures[r]["step"], r))
        more = len(self.failures) - 1
        return (f"{self._failure_line(first)}{f' (and {more} more run(s))' if more else ''}; stopped, status "
                "failed (--on-nonfinite=continue keeps the other runs going)")

    # -- results ------------------------------------------------------------------------------------
    @staticmethod
    def stack(history):
        if not history:
            return {}
        keys = history[0].keys()
        return {k: np.concatenate([as_array(h[k]) for h in history], axis=1) for k in keys}

    def _write_metrics(self, metrics, plot: bool = False):
        if not metrics:
            return
        cfg = self.config
        labels = self.run_labels()
        runs = []
        for r, (c, s) in enumerate(labels):
            f = self.failures.get(r)
            runs.append({"combo": self.combos[c], "seed": s, "status": "failed" if f else "ok",
                         "nonfinite": ({"step": f["step"], "metric": f["metric"]} if f else None)})
        write_json(os.path.join(self.run_dir, "metrics.json"), {"runs": runs, **metrics})
        names = sorted(metrics)
        lines = ["combo,seed,eval_index," + ",".join(names)]
        for r, (c, s) in enumerate(labels):
            for e in range(metrics["eval_return"].shape[1]):
                vals = ",".join(f"{float(metrics[k][r, e]):.6g}" for k in names)
                lines.append(f"{c},{s},{e},{vals}")
        write_text(os.path.join(self.run_dir, "metrics.csv"), "\n".join(lines) + "\n")
        if plot:
            from metarl.plots import learning_curve

            if cfg.seed_index is None:
                learning_curve(metrics, cfg, self.combos, os.path.join(self.run_dir, "learning_curve.png"))
            else:
                learning_curve(metrics, dataclasses.replace(cfg, seeds=1), [self.combos[labels[0][0]]],
                               os.path.join(self.run_dir, "learning_curve.png"))

    def write_results(self, metrics, wall, train_time, chunks_run):
        """Write metrics.json/csv, the plot and meta.json (status finished) for ``metrics``."""
        self._write_metrics(metrics, plot=True)
        self._finish_meta("finished", time.perf_counter() - wall, train_time, chunks_run)
