"""The compiled pieces of an off-policy run: init / run_chunk / evaluate for one seed (make_functions),
the non-finite guard, the flat run axis of seeds x sweep combinations, make_train, and sharding."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from metarl import buffers, envs
from metarl.rollout import evaluate_episodes, random_warm_up
from metarl.agents import make_agent
from metarl.agents.base import scheduled_update
from metarl.train.config import TrainConfig, sweep_grid


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
    period, update_at = scheduled_update(agent, config.static_schedule)
    if config.eval_every % period:
        raise ValueError(f"eval_every={config.eval_every} must be a multiple of the agent's update period "
                         f"{period} (TD3's policy delay)")
    batch_size = agent.config.batch_size
    # What every update checks for NaN/inf in the agent state: the agent's probe (the plain agents: their online
    # parameters, metarl.agents.base.online_parameters, a quarter to a third of the state), else all of it;
    # the whole state is checked again at every evaluation point.
    probe = (agent.extras or {}).get("finite_probe", lambda state: state)
    capacity = buffer_capacity(config)
    adim = env.spec.action_dim

    def env_step(run: RunState, action):
        key, k_env = jax.random.split(run.key)
        env_state, ts = env.step(run.env_state, action, k_env)
        buf = buffers.add(run.buffer, _transition(run.obs, action, ts))
        return run.replace(env_state=env_state, obs=ts.obs, buffer=buf, key=key,
                           env_steps=run.env_steps + 1), ts

    def init_env(key):
        """The run before its agent: reset, buffer, ``learning_starts`` uniform random steps (agent None)."""
        _, k_env, k_run, k_warm = jax.random.split(key, 4)
        env_state, ts = env.reset(k_env)
        example = _transition(ts.obs, jnp.zeros((adim,)), ts)
        run = RunState(None, env_state, ts.obs, buffers.init(example, capacity), k_run, jnp.zeros((), jnp.int32))
        return random_warm_up(run, lambda run, a, k: env_step(run, a), k_warm, config.learning_starts, adim)

    def init_agent(key, hp):
        return agent.init(jax.random.split(key, 4)[0], hp)

    def init(key, hp):
        return init_env(key).replace(agent=init_agent(key, hp))

    # The warm-up never reads the agent: compiled on its own (Runner), one program serves every agent and
    # variant of a task (warm_up_identity).
    init.parts = (init_env, init_agent)

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
                # the update count stays a multiple of period at each group's start
                agent_state, m = update_at(agent_state, batch, k_u, i * ups + j)
            run = run.replace(agent=agent_state)
            # Non-finite guard: +-inf in a metric (NaN marks a metric not computed at this step, e.g.
            # TD3's delayed actor loss), or NaN/inf in the agent's probe (a non-finite gradient lands in the
            # parameters at this same update). Reading the whole state here cost SAC 256-256 about 7% of its
            # env steps/s on a 2-core CPU (it is read once per evaluation point instead, below).
            flags = [jnp.any(jnp.isinf(m[k])) for k in sorted(m)] + [_tree_nonfinite(probe(agent_state))]
            outs.append({**m, "episode_return": ts.episode_return, "episode_done": ts.done,
                         "_guard": jnp.stack(flags)})
        return run, jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

    def evaluate(agent_state, key):
        """Mean undiscounted return of ``eval_episodes`` deterministic episodes, run in parallel."""
        return evaluate_episodes(env, lambda obs, k: agent.act(agent_state, obs, k, False), key, config.eval_episodes)

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
            # At the evaluation point: the whole agent state (what the probe leaves out, e.g. an optimiser
            # moment that overflowed while its parameter stayed finite), the train and evaluation returns;
            # flagged at this point's env step, coded after the update metrics as GUARD_EXTRA orders them.
            late = jnp.stack([_tree_nonfinite(run.agent), ~jnp.isfinite(out["train_return"]),
                              ~jnp.isfinite(out["eval_return"])])
            out["nonfinite_step"] = jnp.where(jnp.any(bad), start + first + 1,
                                              jnp.where(jnp.any(late), run.env_steps, -1)).astype(jnp.int32)
            out["nonfinite_code"] = jnp.where(jnp.any(bad), jnp.argmax(guard[first]),
                                              jnp.where(jnp.any(late), guard.shape[1] - 1 + jnp.argmax(late), -1)
                                              ).astype(jnp.int32)
            return run.replace(key=key), out

        return jax.lax.scan(segment, run, None, length=config.evals_per_chunk)

    return env, agent, init, run_chunk, evaluate


def buffer_capacity(config: TrainConfig) -> int:
    """The replay buffer's size: no larger than the run's environment steps."""
    return min(config.buffer_size, config.total_steps)


def warm_up_identity(config: TrainConfig) -> tuple:
    """What ``init_env`` of :func:`make_functions` depends on (not the agent, its networks or hp)."""
    return (config.env, config.backend, config.max_episode_steps, config.normalize_obs, buffer_capacity(config),
            config.learning_starts)


def _tree_nonfinite(tree) -> jax.Array:
    """True when an inexact leaf of ``tree`` holds a NaN or an inf: the largest magnitude over the leaves is then
    non-finite (max propagates NaN). One max-reduction per leaf: a non-finite mask per leaf and any() over it
    cost SAC (256-256, Brax inverted_pendulum, one seed) ~3% more of its env steps/s on a 2-core CPU."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact) and jnp.size(x)]
    if not leaves:
        return jnp.zeros((), bool)
    return ~jnp.isfinite(jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in leaves])))


# The guard's reasons, after the update metrics (sorted by name): see ``run_chunk``'s ``nonfinite_code``.
GUARD_EXTRA = ("agent state (parameters/optimiser)", "train_return", "eval_return")
SPECIAL_METRICS = ("train_return", "eval_return", "env_steps", "nonfinite_step", "nonfinite_code")


def guard_names(metrics: dict) -> list[str]:
    """Names behind ``nonfinite_code``, from the keys of a chunk's metrics."""
    return sorted(k for k in metrics if k not in SPECIAL_METRICS) + list(GUARD_EXTRA)


def run_keys_and_hp(config: TrainConfig):
    """Flat run axis: (combo c, seed s) -> index c * seeds + s; every combo reuses the seeds' keys.

    With ``config.seed_index = i`` only run i is kept: the same key and hyperparameters as run i of the
    vmapped set. It is the same computation on a batch of one instead of N (the Runner keeps that batched
    program for it, where a plain one-run config compiles the run alone, ``metarl.runs.vmap_runs``), which
    XLA may lay out differently, so the two agree up to float drift. Measured on the CPU (jax 0.10.2, AMD
    EPYC Zen 5, TD3 on gymnax/Pendulum-v1, 32-32 networks, 3 seeds, 700 steps): losses within 1e-3
    absolute, one seed's evaluation return 0.56 apart (of ~-1000); in tests/test_reliability.py's case the
    batched program stays within its tolerances (losses rtol 1e-3) where the run alone does not (a critic
    loss 0.45% apart after 700 steps). Drift grows with training length as any float difference does in RL.
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
