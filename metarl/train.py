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
is sharded across them.

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
- inside the compiled program every update checks its metrics for +-inf and the agent state for
  NaN/inf; each evaluation point reports ``nonfinite_step`` (the first bad environment step, -1 if
  none); the host stops (``on_nonfinite="stop"``) or marks the run failed and goes on ("continue");
- SIGINT finishes the chunk and its checkpoint, then stops with status interrupted (a second SIGINT
  abandons the checkpoint being written; the previous complete one stays).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
import shlex
import sys
import time
import typing
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from metarl import buffers, cli, envs
from metarl.driver import (  # noqa: F401  (the run machinery lives in metarl.driver; re-exported here)
    MARKER, ON_NONFINITE, CheckpointError, CheckpointMissing, ConfigMismatch, DeferredSigint, Interrupted,
    NonFiniteError, RunDirError, RunError, abandon_partial, as_array, check_run_dir, clear_run_files, device_info,
    find_checkpoint, flat_diff, has_checkpoint, json_norm, jsonable, now, package_versions, promote_checkpoint, read_stored_run,
    refuse_resume, restore_checkpoint, save_checkpoint, version_diff, write_json, write_text)
from metarl.agents import OFF_POLICY, agent_config, make_agent


@dataclass(frozen=True)
class TrainConfig:
    algo: str = "td3"
    env: str = "gymnax/Pendulum-v1"
    backend: str = "positional"
    seeds: int = 1
    seed: int = 0
    total_steps: int = 20_000  # environment steps per run, warm-up included
    learning_starts: int = 1_000  # uniformly random warm-up steps (the papers use 10k on MuJoCo)
    eval_every: int = 1_000
    eval_episodes: int = 5
    evals_per_chunk: int = 1  # evaluations per compiled chunk (progress/checkpoint granularity)
    buffer_size: int = 1_000_000
    updates_per_step: int = 1
    static_schedule: bool = True  # lay out TD3's policy delay statically (False: lax.cond per update)
    max_episode_steps: int | None = None
    normalize_obs: bool = False
    agent: dict = field(default_factory=dict)  # static agent config overrides (hidden sizes, batch_size)
    hp: dict = field(default_factory=dict)  # numeric hyperparameters; a list value is a sweep
    # Run only entry ``seed_index`` of the flat run axis (combo c, seed s) -> c * seeds + s, with the same
    # key and hyperparameters as in the vmapped set. See :func:`run_keys_and_hp` for how closely it matches.
    seed_index: int | None = None

    def validate(self):
        if self.algo not in OFF_POLICY:
            raise ValueError(f"unknown algo {self.algo!r}; valid: {', '.join(OFF_POLICY)}")
        check_agent_overrides(self.algo, self.agent)
        check_hp_values(self.hp)
        for name in ("seeds", "total_steps", "eval_every", "eval_episodes", "evals_per_chunk",
                     "buffer_size", "updates_per_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_starts < 0:
            raise ValueError(f"learning_starts must be >= 0, got {self.learning_starts}")
        train_steps = self.total_steps - self.learning_starts
        if train_steps <= 0 or train_steps % (self.eval_every * self.evals_per_chunk):
            raise ValueError(
                f"total_steps - learning_starts = {train_steps} must be a positive multiple of "
                f"eval_every * evals_per_chunk = {self.eval_every * self.evals_per_chunk}")
        batch = agent_config(self.algo, **self.agent).batch_size
        if batch > max(self.learning_starts, 1) or batch > self.buffer_size:
            raise ValueError(
                f"batch_size {batch} is larger than the filled buffer at the first update "
                f"(learning_starts={self.learning_starts}, buffer_size={self.buffer_size}); "
                f"use learning_starts >= {batch} or a smaller batch")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 (or None for the env's own), got {self.max_episode_steps}")
        if self.seed_index is not None:
            n = len(sweep_grid(self.hp)[0]) * self.seeds
            if not 0 <= self.seed_index < n:
                raise ValueError(f"seed_index {self.seed_index} is out of range: this config has {n} run(s), "
                                 f"valid seed_index 0..{n - 1}")
        return self

    @property
    def num_chunks(self) -> int:
        return (self.total_steps - self.learning_starts) // (self.eval_every * self.evals_per_chunk)


def _agent_field_types(algo: str) -> dict:
    cls = OFF_POLICY[algo][1]
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def _type_name(tp) -> str:
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number >= 1"
    if typing.get_origin(tp) is not None and typing.get_args(tp) and typing.get_args(tp)[0] is int:
        return "whole numbers >= 1 separated by commas (e.g. 64,64)"
    return getattr(tp, "__name__", str(tp))


def _value_ok(tp, v) -> bool:
    if tp is bool:
        return isinstance(v, (bool, np.bool_))
    if tp is int:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
    if typing.get_origin(tp) is not None and typing.get_args(tp) and typing.get_args(tp)[0] is int:
        return (isinstance(v, (list, tuple)) and len(v) > 0
                and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 1 for x in v))
    return True


def check_agent_overrides(algo: str, agent: dict):
    """Each agent-config override has its field's type (ints >= 1, bools, tuples of ints >= 1)."""
    types = _agent_field_types(algo)
    for name, v in agent.items():
        if name not in types:
            raise ValueError(f"unknown {algo} config field {name!r}; valid: {', '.join(sorted(types))}")
        if not _value_ok(types[name], v):
            raise ValueError(f"{algo} config field {name}={v!r} is invalid; {name} takes {_type_name(types[name])}")


def check_hp_values(hp: dict):
    """Hyperparameter values are finite numbers (a list of them is a sweep)."""
    for name, v in hp.items():
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(x, bool) or not isinstance(x, (int, float, np.number)) or not math.isfinite(x):
                raise ValueError(f"hyperparameter {name}={x!r} is invalid; {name} takes a finite number "
                                 "(a list of them is a sweep)")


def sweep_grid(hp: dict) -> tuple[list[dict], dict]:
    """Expand list-valued hyperparameters into their cartesian grid.

    Returns the list of combinations and the stacked arrays {name: [n_combos]} (only swept names)."""
    keys = sorted(hp)
    values = [v if isinstance(v, (list, tuple)) else [v] for v in (hp[k] for k in keys)]
    combos = [dict(zip(keys, c)) for c in itertools.product(*values)] or [{}]
    return combos, {k: np.asarray([c[k] for c in combos], np.float32) for k in keys}


@struct.dataclass
class RunState:
    agent: Any
    env_state: Any
    obs: jax.Array
    buffer: buffers.Buffer
    key: jax.Array
    env_steps: jax.Array


def _transition(obs, action, ts):
    return dict(obs=obs, action=action, reward=ts.reward, next_obs=ts.next_obs,
                terminated=ts.terminated, done=ts.done)


def make_functions(config: TrainConfig, agent_fn=None):
    """The pure pieces of a run for ONE seed: (env, agent, init, run_chunk, evaluate).

    ``agent_fn(spec) -> Agent`` replaces the plain agent with a wrapped one (a meta-method): the loop
    only calls its ``init(key, hp)``, ``act(state, obs, key, explore)``, ``update(state, batch, key)``
    and reads ``config.batch_size``, so the wrapped state can be any pytree.
    """
    config.validate()
    env = envs.make(config.env, backend=config.backend, max_episode_steps=config.max_episode_steps,
                    normalize_obs=config.normalize_obs)
    if agent_fn is None and env.spec.discrete:
        raise ValueError(f"{config.algo} needs a continuous action space; {config.env} is discrete (continuous "
                         "ones: gymnax/Pendulum-v1, gymnax/MountainCarContinuous-v0, every brax/* env; "
                         "python -m metarl.train --list-envs lists all)")
    agent = agent_fn(env.spec) if agent_fn is not None else make_agent(config.algo, env.spec, **config.agent)
    # With a delayed policy (TD3), ``period`` env steps form one scan iteration so that the delay
    # schedule is laid out statically (under vmap, a lax.cond would compute the actor step every time).
    extras = agent.extras or {}
    period = int(extras.get("update_period", 1)) if (config.static_schedule and "update_phase" in extras) else 1
    if config.eval_every % period:
        raise ValueError(f"eval_every={config.eval_every} must be a multiple of the agent's update period "
                         f"{period} (TD3's policy delay)")
    batch_size = agent.config.batch_size
    capacity = min(config.buffer_size, config.total_steps)
    adim = env.spec.action_dim

    def env_step(run: RunState, action):
        key, k_env = jax.random.split(run.key)
        env_state, ts = env.step(run.env_state, action, k_env)
        buf = buffers.add(run.buffer, _transition(run.obs, action, ts))
        return run.replace(env_state=env_state, obs=ts.obs, buffer=buf, key=key,
                           env_steps=run.env_steps + 1), ts

    def init(key, hp):
        k_agent, k_env, k_run, k_warm = jax.random.split(key, 4)
        agent_state = agent.init(k_agent, hp)
        env_state, ts = env.reset(k_env)
        example = _transition(ts.obs, jnp.zeros((adim,)), ts)
        run = RunState(agent_state, env_state, ts.obs, buffers.init(example, capacity), k_run,
                       jnp.zeros((), jnp.int32))

        def warm(run, k):
            a = jax.random.uniform(k, (adim,), minval=-1.0, maxval=1.0)
            return env_step(run, a)[0], None

        run, _ = jax.lax.scan(warm, run, jax.random.split(k_warm, config.learning_starts))
        return run

    ups = config.updates_per_step

    def train_steps(run: RunState, _):
        outs = []
        for i in range(period):
            key, k_act, k_upd = jax.random.split(run.key, 3)
            action = agent.act(run.agent, run.obs, k_act, True)
            run, ts = env_step(run.replace(key=key), action)
            agent_state = run.agent
            for j, k in enumerate(jax.random.split(k_upd, ups)):
                k_s, k_u = jax.random.split(k)
                batch = buffers.sample(run.buffer, k_s, batch_size)
                if period > 1:  # the update count stays a multiple of period at each group's start
                    agent_state, m = extras["update_phase"](agent_state, batch, k_u, (i * ups + j + 1) % period == 0)
                else:
                    agent_state, m = agent.update(agent_state, batch, k_u)
            run = run.replace(agent=agent_state)
            # Non-finite guard: +-inf in a metric (NaN marks a metric not computed at this step, e.g.
            # TD3's delayed actor loss), or NaN/inf anywhere in the agent's state (parameters, targets,
            # optimiser moments: a non-finite gradient lands there at this same update).
            flags = [jnp.any(jnp.isinf(m[k])) for k in sorted(m)] + [_tree_nonfinite(agent_state)]
            outs.append({**m, "episode_return": ts.episode_return, "episode_done": ts.done,
                         "_guard": jnp.stack(flags)})
        return run, jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

    def evaluate(agent_state, key):
        """Mean undiscounted return of ``eval_episodes`` deterministic episodes, run in parallel."""
        k_reset, k_steps = jax.random.split(key)
        states, tss = jax.vmap(env.reset)(jax.random.split(k_reset, config.eval_episodes))

        def step(carry, k):
            states, obs, ret, alive = carry
            a = agent.act(agent_state, obs, k, False)
            states, ts = jax.vmap(env.step)(states, a, jax.random.split(k, config.eval_episodes))
            ret = ret + alive * ts.reward
            alive = alive * (1.0 - ts.done.astype(jnp.float32))
            return (states, ts.obs, ret, alive), None

        init = (states, tss.obs, jnp.zeros(config.eval_episodes), jnp.ones(config.eval_episodes))
        (_, _, ret, _), _ = jax.lax.scan(step, init, jax.random.split(k_steps, env.spec.max_episode_steps))
        return jnp.mean(ret)

    def run_chunk(run: RunState):
        def segment(run, _):
            start = run.env_steps
            run, m = jax.lax.scan(train_steps, run, None, length=config.eval_every // period)
            m = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), m)
            done = m.pop("episode_done").astype(jnp.float32)
            rets = m.pop("episode_return")
            guard = m.pop("_guard")  # [eval_every, metrics + 1]: row j is environment step start + j + 1
            out = jax.tree.map(jnp.nanmean, m)  # NaN marks a metric not computed at a step (TD3's delay)
            out["train_return"] = jnp.sum(rets * done) / jnp.maximum(jnp.sum(done), 1.0)
            key, k_eval = jax.random.split(run.key)
            out["eval_return"] = evaluate(run.agent, k_eval)
            out["env_steps"] = run.env_steps
            bad = jnp.any(guard, axis=1)
            first = jnp.argmax(bad)
            late = jnp.stack([~jnp.isfinite(out["train_return"]), ~jnp.isfinite(out["eval_return"])])
            out["nonfinite_step"] = jnp.where(jnp.any(bad), start + first + 1,
                                              jnp.where(jnp.any(late), run.env_steps, -1)).astype(jnp.int32)
            out["nonfinite_code"] = jnp.where(jnp.any(bad), jnp.argmax(guard[first]),
                                              jnp.where(jnp.any(late), guard.shape[1] + jnp.argmax(late), -1)
                                              ).astype(jnp.int32)
            return run.replace(key=key), out

        return jax.lax.scan(segment, run, None, length=config.evals_per_chunk)

    return env, agent, init, run_chunk, evaluate


def _tree_nonfinite(tree) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if not leaves:
        return jnp.zeros((), bool)
    return jnp.any(jnp.stack([jnp.any(~jnp.isfinite(x)) for x in leaves]))


# The guard's reasons, after the update metrics (sorted by name): see ``run_chunk``'s ``nonfinite_code``.
GUARD_EXTRA = ("agent state (parameters/optimiser)", "train_return", "eval_return")
SPECIAL_METRICS = ("train_return", "eval_return", "env_steps", "nonfinite_step", "nonfinite_code")


def guard_names(metrics: dict) -> list[str]:
    """Names behind ``nonfinite_code``, from the keys of a chunk's metrics."""
    return sorted(k for k in metrics if k not in SPECIAL_METRICS) + list(GUARD_EXTRA)


def run_keys_and_hp(config: TrainConfig):
    """Flat run axis: (combo c, seed s) -> index c * seeds + s; every combo reuses the seeds' keys.

    With ``config.seed_index = i`` only run i is kept: the same key and hyperparameters as run i of the
    vmapped set. It is the same computation on a batch of one instead of N, which XLA may lay out
    differently, so the two agree up to float drift. Measured on the CPU (jax 0.10.2, TD3 on
    gymnax/Pendulum-v1, 32-32 networks, 3 seeds, 700 steps): bit-identical (max difference 0 on every
    metric and every seed); tests/test_reliability.py checks it with rtol 1e-4. Drift, where it
    appears, grows with training length as any float difference does in RL.
    """
    combos, grid = sweep_grid(config.hp)
    seed_keys = jax.random.split(jax.random.PRNGKey(config.seed), config.seeds)
    n = len(combos)
    keys = jnp.tile(seed_keys, (n, 1))
    hp = {k: jnp.repeat(jnp.asarray(v), config.seeds) for k, v in grid.items()}
    if config.seed_index is not None:
        i = config.seed_index
        keys = keys[i:i + 1]
        hp = {k: v[i:i + 1] for k, v in hp.items()}
    return combos, keys, hp


def make_train(config: TrainConfig, agent_fn=None):
    """``train(key, hp=None) -> (final RunState, metrics [num_evals])`` for one seed, jit/vmap-able."""
    _, _, init, run_chunk, _ = make_functions(config, agent_fn)

    def train(key, hp=None):
        run = init(key, hp or {})

        def chunk(run, _):
            return run_chunk(run)

        run, metrics = jax.lax.scan(chunk, run, None, length=config.num_chunks)
        return run, jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), metrics)

    return train


# ----------------------------------------------------------------------------------------------------
# Sharding across devices
# ----------------------------------------------------------------------------------------------------
def run_sharding(num_runs: int, devices=None):
    """A NamedSharding that splits the leading run axis across devices (None if it cannot)."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = devices if devices is not None else jax.devices()
    if len(devices) <= 1 or num_runs % len(devices):
        return None
    mesh = Mesh(np.asarray(devices), ("runs",))
    return NamedSharding(mesh, PartitionSpec("runs"))


def shard_runs(tree, sharding):
    return tree if sharding is None else jax.device_put(tree, sharding)


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


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------
PROG = "python -m metarl.train"
_BOOL = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _parse_value(s: str):
    for cast in (int, float):
        try:
            return cast(s)
        except ValueError:
            pass
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    return s


def _parse_field(algo: str, name: str, value: str, tp):
    """One agent-config override from text, by the field's declared type."""
    def bad():
        return ValueError(f"--set {name}={value}: invalid value for {algo}'s {name}; it takes {_type_name(tp)}")

    if tp is bool:
        if value.lower() not in _BOOL:
            raise bad()
        return _BOOL[value.lower()]
    if tp is int:
        try:
            v = int(value)
        except ValueError:
            raise bad() from None
        if v < 1:
            raise bad()
        return v
    if typing.get_origin(tp) is not None and typing.get_args(tp) and typing.get_args(tp)[0] is int:
        try:
            v = tuple(int(x) for x in value.split(","))
        except ValueError:
            raise bad() from None
        if not v or min(v) < 1:
            raise bad()
        return v
    return _parse_value(value)


# Ranges of the numeric hyperparameters the CLI checks (name suffix or name -> (low, high, inclusive?)).
_HP_RANGES = {"gamma": (0.0, 1.0, "[0, 1]"), "tau": (0.0, 1.0, "(0, 1]")}


def _check_hp_range(name: str, v: float, text: str):
    if not math.isfinite(v):
        raise ValueError(f"--set {name}={text}: {name} must be a finite number")
    if name.endswith("_lr") or name == "init_alpha":
        if v <= 0:
            raise ValueError(f"--set {name}={text}: {name} must be > 0")
    elif name == "gamma":
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"--set {name}={text}: gamma must be in [0, 1]")
    elif name == "tau":
        if not 0.0 < v <= 1.0:
            raise ValueError(f"--set {name}={text}: tau must be in (0, 1]")
    elif v < 0:
        raise ValueError(f"--set {name}={text}: {name} must be >= 0")


def parse_overrides(items: list[str], algo: str) -> tuple[dict, dict]:
    """``name=value`` or ``name=v1,v2`` -> (numeric hp dict, static agent-config dict).

    A hyperparameter given as a comma list is a vmapped sweep (``critic_lr=1e-3,3e-4``); an agent
    config field is type-checked against its dataclass (``actor_hidden=64,64``, ``batch_size=256``).
    Two overrides are two ``--set`` (or one ``--set "a=1;b=2"``); ``a=1,b=2`` is refused as ambiguous.
    A name given again replaces its earlier value."""
    hp_names = set(make_agent_defaults(algo))
    types = _agent_field_types(algo)
    hp, agent = {}, {}
    for item in items:
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name or not value:
            raise ValueError(f"--set {item!r} must look like name=value (e.g. --set critic_lr=3e-4)")
        if "=" in value:
            raise ValueError(f"--set {item!r} looks like two overrides; use --set twice (--set "
                             f"{item.split(',')[0]} --set {item.split(',', 1)[1]}) or --set \"a=1;b=2\"")
        hp.pop(name, None), agent.pop(name, None)  # given again: the last one counts (as for every option)
        if name in hp_names:
            vals = []
            for v in value.split(","):
                try:
                    x = float(v)
                except ValueError:
                    raise ValueError(f"--set {name}={value}: {v!r} is not a number; {name} takes a number "
                                     "(a comma list of numbers is a sweep)") from None
                _check_hp_range(name, x, v)
                vals.append(x)
            hp[name] = vals if len(vals) > 1 else vals[0]
        elif name in types:
            agent[name] = _parse_field(algo, name, value, types[name])
        else:
            raise ValueError(f"unknown override {name!r} for {algo}; hyperparameters: {', '.join(sorted(hp_names))}; "
                             f"config fields: {', '.join(sorted(types))}")
    return hp, agent


def make_agent_defaults(algo: str) -> dict:
    from metarl.agents.sac import SAC_HP
    from metarl.agents.td3 import TD3_HP

    if algo not in OFF_POLICY:
        raise ValueError(f"unknown algo {algo!r}; valid: {', '.join(OFF_POLICY)}")
    return SAC_HP if algo == "sac" else TD3_HP


def _check_env_name(name: str, backend: str):
    """The env id and Brax backend, checked by name (nothing is built)."""
    source, _, env_name = name.partition("/")
    if source not in envs.SOURCES or not env_name:
        raise ValueError(f"--env {name!r}: names are '<source>/<env>' with source one of {', '.join(envs.SOURCES)} "
                         "(e.g. gymnax/Pendulum-v1, brax/hopper); --list-envs lists all")
    valid = {"brax": envs.brax_names, "gymnax": envs.gymnax_names, "jumanji": lambda: list(envs.JUMANJI_NAMES)}[source]()
    if env_name not in valid:
        import difflib

        close = difflib.get_close_matches(env_name, valid, n=3)
        hint = f"did you mean {', '.join(source + '/' + c for c in close)}? " if close else ""
        raise ValueError(f"--env {name!r}: unknown {source} environment; {hint}valid: "
                         f"{', '.join(source + '/' + v for v in valid[:6])}, ... ({len(valid)} in all; "
                         "--list-envs lists them)")


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(
        prog=PROG, description="Train an off-policy agent on any env.",
        epilog="Several overrides: --set actor_lr=3e-4 --set critic_lr=3e-4, or --set \"actor_lr=3e-4;critic_lr=3e-4\". "
               "A comma list is a sweep of ONE name (--set critic_lr=1e-3,3e-4) or a tuple field "
               "(--set actor_hidden=64,64). Exit status: 0 done, 1 failed (non-finite values, bad checkpoint), "
               "2 bad input or refused directory/resume, 130 interrupted.")
    p.add_argument("--algo", default="td3", choices=tuple(OFF_POLICY), help=f"one of {', '.join(OFF_POLICY)}")
    p.add_argument("--env", default="gymnax/Pendulum-v1", help="e.g. brax/hopper, gymnax/Pendulum-v1 (--list-envs)")
    p.add_argument("--list-envs", action="store_true", help="print every valid --env and exit")
    p.add_argument("--backend", default="positional", choices=tuple(envs.BRAX_BACKENDS),
                   help=f"Brax backend: {', '.join(envs.BRAX_BACKENDS)}")
    p.add_argument("--seeds", type=cli.positive_int, default=1)
    p.add_argument("--seed", type=cli.nonneg_int, default=0)
    p.add_argument("--seed-index", type=cli.nonneg_int, default=None,
                   help="run only run i of the vmapped set (seed i without a sweep), with its key and "
                        "hyperparameters; see metarl.train.run_keys_and_hp for how closely it matches")
    p.add_argument("--steps", type=cli.positive_int, default=20_000, help="environment steps per run, warm-up included")
    p.add_argument("--learning-starts", type=cli.nonneg_int, default=1_000)
    p.add_argument("--eval-every", type=cli.positive_int, default=1_000)
    p.add_argument("--eval-episodes", type=cli.positive_int, default=5)
    p.add_argument("--evals-per-chunk", type=cli.positive_int, default=1)
    p.add_argument("--updates-per-step", type=cli.positive_int, default=1)
    p.add_argument("--buffer-size", type=cli.positive_int, default=1_000_000)
    p.add_argument("--max-episode-steps", type=cli.positive_int, default=None)
    p.add_argument("--normalize-obs", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="NAME=V[,V2]",
                   help="hyperparameter (a comma list is a vmapped sweep) or agent config field "
                        "(e.g. actor_hidden=64,64); repeat --set for several, or separate them with ';' "
                        "(a name given again: the last value counts)")
    p.add_argument("--run-dir", default=None, help="default: runs/<algo>-<env>")
    p.add_argument("--resume", action="store_true", help="continue the run directory's run (same settings only)")
    p.add_argument("--overwrite", action="store_true", help="replace the run files of a non-empty --run-dir")
    p.add_argument("--allow-version-change", action="store_true",
                   help="with --resume: go on although package versions differ (recorded in meta.json)")
    p.add_argument("--on-nonfinite", default="stop", choices=ON_NONFINITE,
                   help="a run going NaN/inf: stop everything (default) or mark it failed and continue the others")
    p.add_argument("--checkpoint-every", type=cli.positive_int, default=1, help="chunks between checkpoints")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write TensorBoard event files there (each metric per evaluation point, mean over "
                        "runs and per run); watch with: tensorboard --logdir DIR")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    p = build_parser()
    a = p.parse_args(argv)
    if a.list_envs:
        print("\n".join(envs.registered()))
        return
    if a.resume and a.overwrite:
        cli.fail(PROG, "--resume and --overwrite exclude each other")
    items = [x for s in a.set for x in s.split(";") if x.strip()]
    run_dir = a.run_dir or os.path.join("runs", f"{a.algo}-{a.env.replace('/', '_')}")
    try:
        _check_env_name(a.env, a.backend)
        hp, agent = parse_overrides(items, a.algo)
        cfg = TrainConfig(algo=a.algo, env=a.env, backend=a.backend, seeds=a.seeds, seed=a.seed, total_steps=a.steps,
                          learning_starts=a.learning_starts, eval_every=a.eval_every, eval_episodes=a.eval_episodes,
                          evals_per_chunk=a.evals_per_chunk, updates_per_step=a.updates_per_step,
                          buffer_size=a.buffer_size, max_episode_steps=a.max_episode_steps,
                          normalize_obs=a.normalize_obs, agent=agent, hp=hp, seed_index=a.seed_index)
        cfg.validate()
        runner = Runner(cfg, run_dir, progress=not a.no_progress, checkpoint_every=a.checkpoint_every,
                        tensorboard=a.tensorboard,
                        overwrite=a.overwrite, on_nonfinite=a.on_nonfinite,
                        allow_version_change=a.allow_version_change)
        runner.check_run_dir(a.resume)
        if a.tensorboard:  # the last check: creates the folder or fails in one line (nothing else written)
            cli.make_out_dir(p, a.tensorboard)
    except (ValueError, TypeError, RunError) as e:
        cli.fail(PROG, e, getattr(e, "exit_code", 2))
    resume_argv = [x for x in argv if x != "--overwrite"] + ([] if a.resume else ["--resume"])
    runner.resume_hint = f"{PROG} {shlex.join(resume_argv)}"
    from metarl import enable_compilation_cache

    enable_compilation_cache()
    try:
        _, metrics = runner.run(resume=a.resume)
    except RunError as e:
        cli.fail(PROG, e, e.exit_code)
    except KeyboardInterrupt:  # a second SIGINT while compiling: nothing was written yet
        cli.fail(PROG, "interrupted before the run started; nothing was written", 130)
    final = metrics["eval_return"][:, -1] if metrics else np.zeros(0)
    failed = f"; {len(runner.failures)} of {runner.num_runs} run(s) failed (non-finite)" if runner.failures else ""
    print(f"final eval return per run: {[None if not np.isfinite(x) else round(float(x), 1) for x in final]}{failed}")
    print(f"compile time: {runner.compile_time}; results in {run_dir}")


if __name__ == "__main__":
    main()
