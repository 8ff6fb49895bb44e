"""Runner: the vmapped (and sharded) off-policy run on the Driver's loop (metarl.driver: progress bar, run
records, checkpoints, --resume, SIGINT), with its own records: the in-graph non-finite guard per run, metrics
per run and evaluation point (json, csv) and the learning curve."""
from __future__ import annotations

import dataclasses
import os
import sys
import time

import jax
import numpy as np

from metarl.driver import (Driver, NonFiniteError, as_array, current_command, device_info, find_checkpoint, flat_diff,
                           json_norm, now, package_versions, read_stored_run, refuse_resume, restore_checkpoint,
                           metrics_files, save_checkpoint, version_diff, write_metrics)
from metarl.agents import agent_config
from metarl.train.config import TrainConfig
from metarl.train.program import (guard_names, make_functions, run_keys_and_hp, run_sharding, shard_runs,
                                  warm_up_identity)
from metarl.runs import vmap_runs


RUN_FILES = ("config.json", "meta.json") + metrics_files() + ("learning_curve.png", "checkpoint", "checkpoint.partial",
                                                            "checkpoint.old")
STATUSES = Driver.STATUSES


class Runner(Driver):
    """Drives a vmapped (and, with several devices, sharded) run chunk by chunk: the :class:`metarl.driver.Driver`
    loop (checks, compilation, records, checkpoints, --resume, SIGINT) with the off-policy program's records.

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

    RECORD_FILES = None  # a new run refuses any non-empty run directory
    CLEAR_FILES = RUN_FILES

    def __init__(self, config: TrainConfig, run_dir: str | None = None, checkpoint_every: int = 1,
                 progress: bool = True, devices=None, agent_fn=None, overwrite: bool = False,
                 on_nonfinite: str = "stop", allow_version_change: bool = False, tensorboard: str | None = None):
        config = config.validate()
        self.env, self.agent, init, run_chunk, _ = make_functions(config, agent_fn)
        self._init_fn = init
        self.combos, self.keys, self.hp = run_keys_and_hp(config)
        self.num_runs = self.keys.shape[0]
        self.sharding = run_sharding(self.num_runs, devices)
        init_env, init_agent = init.parts
        # One run compiles as the run alone (faster on a CPU), except a --seed-index run: that one is run i of a
        # vmapped set, so it keeps the set's batched program (the closest match to it; see run_keys_and_hp)
        self._batched = config.seed_index is not None  # (part of the warm-up cache's key: it is another program)
        vmap = jax.vmap if self._batched else vmap_runs
        self._init_env = jax.jit(vmap(init_env), out_shardings=self.sharding)
        self._init_agent = jax.jit(vmap(init_agent), out_shardings=self.sharding)
        super().__init__(jax.jit(vmap(init), out_shardings=self.sharding),
                         jax.jit(vmap(run_chunk), out_shardings=self.sharding, donate_argnums=0), None,
                         config.num_chunks, run_dir, dataclasses.asdict(config), progress=progress,
                         desc=f"{config.algo} {config.env}", overwrite=overwrite,
                         allow_version_change=allow_version_change,
                         resume_hint="Runner(config, run_dir).run(resume=True)",  # the CLI puts its command line here
                         flag="--run-dir", tensorboard=tensorboard, on_nonfinite=on_nonfinite, runs=self.num_runs,
                         checkpoint_every=checkpoint_every)
        self.config = config
        self.failures: dict[int, dict] = {}

    @property
    def run_dir(self) -> str | None:
        return self.out_dir

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

    def check_resume(self) -> tuple[dict, list[str]]:
        """Compare this run's identity with the stored one; raise a one-line :class:`ConfigMismatch`
        naming every difference. Returns (stored meta.json or {}, package version changes let through)."""
        stored, meta = read_stored_run(self.run_dir)
        mine = self.identity()
        diffs = flat_diff(self._resolved(stored), self._resolved(mine["config"]))
        if not diffs and "sweep" in meta and json_norm(meta["sweep"]) != mine["sweep"]:
            diffs.append(f"sweep ({meta['sweep']!r} -> {mine['sweep']!r})")
        return meta, refuse_resume(self.run_dir, diffs, version_diff(meta), self.allow_version_change, self.flag)

    # -- the Driver's hooks -------------------------------------------------------------------------
    def initial_meta(self) -> dict:
        return {"config": dataclasses.asdict(self.config), "command": current_command(), "versions": package_versions(),
                "device": device_info(), "num_runs": self.num_runs, "sweep": self.combos, "started_at": now()}

    def place(self, run):
        return run  # placed by init and restore themselves (run_sharding)

    # The compiled warm-ups of this process, by task, run count, sharding and vmap form (a --seed-index run's
    # batched program is not the one-run program of a one-seed config): a Brax warm-up compiles for ~10 s on a
    # CPU, and a benchmark runs several agents and variants on one task.
    _warm_ups: dict = {}

    def init_state(self):
        """The initial runs: the warm-up (compiled once per task in this process) and the agents, two programs
        that compute what ``init`` does."""
        self.failures = {}
        t = time.perf_counter()
        keys, hp = shard_runs((self.keys, self.hp), self.sharding)
        ident = (warm_up_identity(self.config), self.num_runs, self.sharding, self._batched)
        warm = Runner._warm_ups.get(ident)
        if warm is None:
            warm = Runner._warm_ups[ident] = self._init_env.lower(keys).compile()
        agent = self._init_agent.lower(keys, hp).compile()
        self.compile_time["init"] = time.perf_counter() - t
        return warm(keys).replace(agent=agent(keys, hp))

    def save(self, run, chunk_idx: int, history: list):
        """Checkpoint ``run`` with the history and failures so far (:func:`metarl.driver.save_checkpoint`:
        written whole, then swapped in atomically)."""
        save_checkpoint(self._ckpt_dir(), run, chunk_idx, {"history": history, "failures": self.failures},
                        on_open=lambda c: setattr(self, "_checkpointer", c))

    def find_checkpoint(self) -> tuple[str, dict]:
        """The newest complete checkpoint among checkpoint, checkpoint.partial, checkpoint.old."""
        return find_checkpoint(self._ckpt_dir(), self.run_dir)

    def restore(self):
        """Restore the newest complete checkpoint, checking the sha256 of every file and array first.
        Returns (run state, chunk, history, path); a mismatch is a one-line :class:`CheckpointError`."""
        abstract = jax.eval_shape(jax.vmap(self._init_fn), self.keys, self.hp)
        if self.sharding is not None:
            abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.sharding), abstract)
        run, prog, _, path = restore_checkpoint(self._ckpt_dir(), abstract, self.run_dir)
        self.failures = {int(k): v for k, v in prog.get("failures", {}).items()}
        history = [{k: as_array(v).tolist() for k, v in h.items()} for h in prog["history"]]
        return run, prog["chunk"], history, path

    def record(self, i: int, run, m, dt: float, history: list, bar, tb):
        """The in-graph guard's verdict (runs whose first NaN/inf fell in this chunk), the metrics of every
        evaluation point as lists, the bar's env steps/s and latest mean return, TensorBoard at env steps."""
        new_failures = self._check_finite(m, i)
        m.pop("nonfinite_code", None)
        history.append({k: np.asarray(v).tolist() for k, v in m.items()})
        if tb is not None:
            tb.evaluations({k: v for k, v in m.items() if k != "nonfinite_step"}, m["env_steps"])
        last = np.asarray(m["eval_return"])[:, -1]
        last = last[np.isfinite(last)]
        bar.set_postfix(sps=f"{self._steps_per_chunk() / dt:,.0f}",
                        ret=f"{last.mean() if last.size else float('nan'):.1f}")
        bar.update(1)
        if new_failures:
            bar.clear()
            if self.on_nonfinite == "stop" or len(self.failures) == self.num_runs:
                raise NonFiniteError(self._failure_message(), self.failures)
            for r in sorted(new_failures):
                sys.stderr.write(f"warning: {self._failure_line(r)}; run marked failed, the others go on\n")

    def _steps_per_chunk(self) -> int:
        return self.config.eval_every * self.config.evals_per_chunk * self.num_runs

    def finish_extra(self, train_time: float, chunks_run: int) -> dict:
        return {"train_time_s": train_time,
                "env_steps_per_s": chunks_run * self._steps_per_chunk() / max(train_time, 1e-9),
                "failed_runs": {str(k): v for k, v in sorted(self.failures.items())}}

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

    def write_metrics(self, history: list, final: bool = False):
        """metrics.json and metrics.csv (per run and evaluation point, metarl.driver.write_metrics: each run's
        combination index into ``sweep``, seed, status and the metric that went non-finite, if one did);
        ``final``: the learning curve too."""
        metrics = self.stack(history)
        if not metrics:
            return
        cfg = self.config
        labels = self.run_labels()
        runs = []
        for r, (c, s) in enumerate(labels):
            f = self.failures.get(r)
            runs.append({"combo": c, "seed": s, "status": "failed" if f else "ok",
                         "nonfinite_metric": f["metric"] if f else ""})
        write_metrics(self.run_dir, [(runs, metrics)], sweep=self.combos)
        if final:
            from metarl.plots import learning_curve

            if cfg.seed_index is None:
                learning_curve(metrics, cfg, self.combos, os.path.join(self.run_dir, "learning_curve.png"))
            else:
                learning_curve(metrics, dataclasses.replace(cfg, seeds=1), [self.combos[labels[0][0]]],
                               os.path.join(self.run_dir, "learning_curve.png"))
