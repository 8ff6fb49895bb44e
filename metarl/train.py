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
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from metarl import buffers, envs
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

    def validate(self):
        if self.algo not in OFF_POLICY:
            raise ValueError(f"unknown algo {self.algo!r}; valid: {', '.join(OFF_POLICY)}")
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
        return self

    @property
    def num_chunks(self) -> int:
        return (self.total_steps - self.learning_starts) // (self.eval_every * self.evals_per_chunk)


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
            outs.append({**m, "episode_return": ts.episode_return, "episode_done": ts.done})
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
            run, m = jax.lax.scan(train_steps, run, None, length=config.eval_every // period)
            m = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), m)
            done = m.pop("episode_done").astype(jnp.float32)
            rets = m.pop("episode_return")
            out = jax.tree.map(jnp.nanmean, m)  # NaN marks a metric not computed at a step (TD3's delay)
            out["train_return"] = jnp.sum(rets * done) / jnp.maximum(jnp.sum(done), 1.0)
            key, k_eval = jax.random.split(run.key)
            out["eval_return"] = evaluate(run.agent, k_eval)
            out["env_steps"] = run.env_steps
            return run.replace(key=key), out

        return jax.lax.scan(segment, run, None, length=config.evals_per_chunk)

    return env, agent, init, run_chunk, evaluate


def run_keys_and_hp(config: TrainConfig):
    """Flat run axis: (combo c, seed s) -> index c * seeds + s; every combo reuses the seeds' keys."""
    combos, grid = sweep_grid(config.hp)
    seed_keys = jax.random.split(jax.random.PRNGKey(config.seed), config.seeds)
    n = len(combos)
    keys = jnp.tile(seed_keys, (n, 1))
    hp = {k: jnp.repeat(jnp.asarray(v), config.seeds) for k, v in grid.items()}
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
def package_versions() -> dict:
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
    return {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "device_count": jax.device_count()}


def write_json(path: str, obj):
    """Atomic write: a reader never sees a half-written file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=lambda o: np.asarray(o).tolist())
    os.replace(tmp, path)


class Runner:
    """Drives a vmapped (and, with several devices, sharded) run chunk by chunk.

    ``Runner(config, run_dir).run()`` trains all seeds and sweep combinations, writing into ``run_dir``:
    config.json, meta.json (versions, device, compile and wall time), metrics.json and metrics.csv (per
    run and evaluation point), learning_curve.png, and an orbax checkpoint after every
    ``checkpoint_every`` chunks, from which ``run(resume=True)`` continues.
    """

    def __init__(self, config: TrainConfig, run_dir: str | None = None, checkpoint_every: int = 1,
                 progress: bool = True, devices=None, agent_fn=None):
        self.config = config.validate()
        self.run_dir = run_dir
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self.env, self.agent, init, run_chunk, _ = make_functions(config, agent_fn)
        self._init_fn = init
        self.combos, self.keys, self.hp = run_keys_and_hp(config)
        self.num_runs = self.keys.shape[0]
        self.sharding = run_sharding(self.num_runs, devices)
        self._init = jax.jit(jax.vmap(init), out_shardings=self.sharding)
        self._chunk = jax.jit(jax.vmap(run_chunk), out_shardings=self.sharding, donate_argnums=0)
        self.compile_time = {}

    # -- state ------------------------------------------------------------------------------------
    def init_state(self):
        t = time.perf_counter()
        args = shard_runs((self.keys, self.hp), self.sharding)
        compiled = self._init.lower(*args).compile()
        self.compile_time["init"] = time.perf_counter() - t
        return compiled(*args)

    def _ckpt_dir(self):
        return os.path.join(os.path.abspath(self.run_dir), "checkpoint")

    def save(self, run, chunk_idx: int, history: list):
        import orbax.checkpoint as ocp

        final = self._ckpt_dir()
        tmp = final + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        ckpt = ocp.StandardCheckpointer()
        ckpt.save(os.path.join(tmp, "state"), run)
        ckpt.wait_until_finished()
        write_json(os.path.join(tmp, "progress.json"), {"chunk": chunk_idx, "history": history})
        # Swap in the complete checkpoint; an interrupted save leaves the previous one intact.
        old = final + ".old"
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(final):
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)

    def restore(self):
        import orbax.checkpoint as ocp

        final = self._ckpt_dir()
        if not os.path.exists(os.path.join(final, "progress.json")):
            raise FileNotFoundError(f"no checkpoint to resume from in {self.run_dir!r}")
        abstract = jax.eval_shape(jax.vmap(self._init_fn), self.keys, self.hp)
        if self.sharding is not None:
            abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.sharding), abstract)
        run = ocp.StandardCheckpointer().restore(os.path.join(final, "state"), abstract)
        with open(os.path.join(final, "progress.json")) as f:
            prog = json.load(f)
        return run, prog["chunk"], prog["history"]

    # -- driving ----------------------------------------------------------------------------------
    def run(self, resume: bool = False, stop_after: int | None = None):
        """Train to the end (or for ``stop_after`` chunks). Returns (final state, metrics dict of
        arrays shaped [num_runs, num_evals])."""
        from tqdm import tqdm

        cfg = self.config
        t_start = time.perf_counter()
        if self.run_dir:
            os.makedirs(self.run_dir, exist_ok=True)
            write_json(os.path.join(self.run_dir, "config.json"), dataclasses.asdict(cfg))
        if resume:
            run, start, history = self.restore()
        else:
            run, start, history = self.init_state(), 0, []
        t = time.perf_counter()
        chunk_fn = self._chunk.lower(run).compile()
        self.compile_time["chunk"] = time.perf_counter() - t
        end = cfg.num_chunks if stop_after is None else min(cfg.num_chunks, start + stop_after)
        bar = tqdm(total=cfg.num_chunks, initial=start, disable=not self.progress, unit="chunk",
                   desc=f"{cfg.algo} {cfg.env}", file=sys.stderr)
        steps_per_chunk = cfg.eval_every * cfg.evals_per_chunk * self.num_runs
        train_time = 0.0
        for i in range(start, end):
            t = time.perf_counter()
            run, m = chunk_fn(run)
            m = jax.device_get(m)
            dt = time.perf_counter() - t
            train_time += dt
            history.append({k: np.asarray(v).tolist() for k, v in m.items()})
            bar.set_postfix(sps=f"{steps_per_chunk / dt:,.0f}", ret=f"{np.mean(m['eval_return'][:, -1]):.1f}")
            bar.update(1)
            if self.run_dir and ((i + 1) % self.checkpoint_every == 0 or i + 1 == end):
                self.save(run, i + 1, history)
        bar.close()
        metrics = self.stack(history)
        if self.run_dir:
            self.write_results(metrics, time.perf_counter() - t_start, train_time, end - start)
        return run, metrics

    @staticmethod
    def stack(history):
        if not history:
            return {}
        keys = history[0].keys()
        return {k: np.concatenate([np.asarray(h[k]) for h in history], axis=1) for k in keys}

    def write_results(self, metrics, wall, train_time, chunks_run):
        cfg = self.config
        steps = chunks_run * cfg.eval_every * cfg.evals_per_chunk * self.num_runs
        write_json(os.path.join(self.run_dir, "meta.json"), {
            "config": dataclasses.asdict(cfg), "versions": package_versions(), "device": device_info(),
            "wall_time_s": wall, "compile_time_s": self.compile_time, "train_time_s": train_time,
            "env_steps_per_s": steps / max(train_time, 1e-9), "num_runs": self.num_runs,
            "sweep": self.combos})
        write_json(os.path.join(self.run_dir, "metrics.json"),
                   {"runs": [{"combo": self.combos[i // cfg.seeds], "seed": i % cfg.seeds} for i in range(self.num_runs)],
                    **{k: v for k, v in metrics.items()}})
        names = sorted(metrics)
        lines = ["combo,seed,eval_index," + ",".join(names)]
        for r in range(self.num_runs):
            for e in range(metrics["eval_return"].shape[1]):
                vals = ",".join(f"{float(metrics[k][r, e]):.6g}" for k in names)
                lines.append(f"{r // cfg.seeds},{r % cfg.seeds},{e},{vals}")
        tmp = os.path.join(self.run_dir, "metrics.csv.tmp")
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, os.path.join(self.run_dir, "metrics.csv"))
        from metarl.plots import learning_curve

        learning_curve(metrics, cfg, self.combos, os.path.join(self.run_dir, "learning_curve.png"))


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------
def _parse_value(s: str):
    for cast in (int, float):
        try:
            return cast(s)
        except ValueError:
            pass
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    return s


def parse_overrides(items: list[str], algo: str) -> tuple[dict, dict]:
    """``name=value`` or ``name=v1,v2`` -> (numeric hp dict, static agent-config dict)."""
    hp_names = set(make_agent_defaults(algo))
    agent_names = {f.name for f in dataclasses.fields(OFF_POLICY[algo][1])}
    hp, agent = {}, {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"override {item!r} must look like name=value")
        if name in hp_names:
            vals = [float(v) for v in value.split(",")]
            hp[name] = vals if len(vals) > 1 else vals[0]
        elif name in agent_names:
            if "," in value:
                agent[name] = tuple(_parse_value(v) for v in value.split(","))
            else:
                agent[name] = _parse_value(value)
        else:
            raise ValueError(f"unknown override {name!r} for {algo}; hyperparameters: {', '.join(sorted(hp_names))}; "
                             f"config fields: {', '.join(sorted(agent_names))}")
    return hp, agent


def make_agent_defaults(algo: str) -> dict:
    from metarl.agents.sac import SAC_HP
    from metarl.agents.td3 import TD3_HP

    if algo not in OFF_POLICY:
        raise ValueError(f"unknown algo {algo!r}; valid: {', '.join(OFF_POLICY)}")
    return SAC_HP if algo == "sac" else TD3_HP


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m metarl.train", description="Train an off-policy agent on any env.")
    p.add_argument("--algo", default="td3", help=f"one of {', '.join(OFF_POLICY)}")
    p.add_argument("--env", default="gymnax/Pendulum-v1", help="e.g. brax/hopper, gymnax/Pendulum-v1")
    p.add_argument("--backend", default="positional", help=f"Brax backend: {', '.join(envs.BRAX_BACKENDS)}")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=20_000, help="environment steps per run, warm-up included")
    p.add_argument("--learning-starts", type=int, default=1_000)
    p.add_argument("--eval-every", type=int, default=1_000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--evals-per-chunk", type=int, default=1)
    p.add_argument("--updates-per-step", type=int, default=1)
    p.add_argument("--max-episode-steps", type=int, default=None)
    p.add_argument("--normalize-obs", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="NAME=V[,V2]",
                   help="hyperparameter (a list is a vmapped sweep) or agent config field (e.g. actor_hidden=64,64)")
    p.add_argument("--run-dir", default=None, help="default: runs/<algo>-<env>")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    from metarl import enable_compilation_cache

    enable_compilation_cache()
    items = [x for s in a.set for x in s.split(";") if x]
    try:
        hp, agent = parse_overrides(items, a.algo)
        cfg = TrainConfig(algo=a.algo, env=a.env, backend=a.backend, seeds=a.seeds, seed=a.seed, total_steps=a.steps,
                          learning_starts=a.learning_starts, eval_every=a.eval_every, eval_episodes=a.eval_episodes,
                          evals_per_chunk=a.evals_per_chunk, updates_per_step=a.updates_per_step,
                          max_episode_steps=a.max_episode_steps, normalize_obs=a.normalize_obs, agent=agent, hp=hp)
        cfg.validate()
    except ValueError as e:
        p.error(str(e))
    run_dir = a.run_dir or os.path.join("runs", f"{a.algo}-{a.env.replace('/', '_')}")
    runner = Runner(cfg, run_dir, progress=not a.no_progress)
    _, metrics = runner.run(resume=a.resume)
    final = metrics["eval_return"][:, -1]
    print(f"final eval return per run: {np.round(final, 1).tolist()}  (mean {final.mean():.1f})")
    print(f"compile time: {runner.compile_time}; results in {run_dir}")


if __name__ == "__main__":
    main()
