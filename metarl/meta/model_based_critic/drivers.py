"""Drivers shared by the reacher and 7-DoF experiments: seeds vmapped, meta-iterations run as compiled
chunks with a progress bar."""
from __future__ import annotations

import jax

from metarl.meta.model_based_critic.method import MBCConfig, Task, meta_init, meta_train_chunk
from metarl.meta.model_based_critic.baselines import (DDPGConfig, MetaCriticBaselineConfig, ddpg_init, ddpg_train_chunk,
                                                      mc_init, mc_train_chunk)


# ----------------------------------------------------------------------------------------------
# 4. Drivers shared by the reacher and 7-DoF experiments: seeds vmapped, chunks with a progress bar
# ----------------------------------------------------------------------------------------------


def train_ours(cfg: MBCConfig, task: Task, dyn, goals, keys, chunk: int, pbar=None):
    """Algorithm 2 for every seed in ``keys`` (a vmapped axis), cfg.iterations meta-iterations run as
    compiled chunks. Returns the final MetaStates (leading seed axis), the training-error curves
    (seeds, iterations), the compile+first-chunk time and the wall time per meta-iteration after it."""
    import time
    states = jax.vmap(lambda k: meta_init(cfg, task, k))(keys)
    run = jax.jit(jax.vmap(lambda s: meta_train_chunk(cfg, task, s, goals, dyn, chunk)))
    curves, t_first, t_rest, n_rest = [], 0.0, 0.0, 0
    for i in range(max(1, cfg.iterations // chunk)):
        t0 = time.time()
        states, m = run(states)
        jax.block_until_ready(m)
        dt = time.time() - t0
        if i == 0:
            t_first = dt
        else:
            t_rest, n_rest = t_rest + dt, n_rest + chunk
        curves.append(jax.device_get(m["train_error"]))
        if pbar is not None:
            pbar.update(chunk)
    import numpy as np
    curve = np.concatenate(curves, axis=1)
    per_iter = t_rest / n_rest if n_rest else t_first / chunk
    return states, curve, t_first, per_iter


def train_ddpg(cfg: DDPGConfig, task: Task, dyn, goals, keys, iterations: int, chunk: int, pbar=None,
               init_fn=None, chunk_fn=None):
    """The DDPG-style baseline for every seed (vmapped), in compiled chunks (``init_fn``/``chunk_fn``:
    another baseline's, e.g. the Meta-Critic's mc_init/mc_train_chunk)."""
    import time
    import numpy as np
    init_fn = init_fn or ddpg_init
    chunk_fn = chunk_fn or ddpg_train_chunk
    states = jax.vmap(lambda k: init_fn(cfg, task, k))(keys)
    run = jax.jit(jax.vmap(lambda s: chunk_fn(cfg, task, s, goals, dyn, chunk)))
    curves, t_rest, n_rest = [], 0.0, 0
    for i in range(max(1, iterations // chunk)):
        t0 = time.time()
        states, m = run(states)
        jax.block_until_ready(m)
        if i:
            t_rest, n_rest = t_rest + time.time() - t0, n_rest + chunk
        curves.append(jax.device_get(m["train_error"]))
        if pbar is not None:
            pbar.update(chunk)
    return states, np.concatenate(curves, axis=1), (t_rest / n_rest if n_rest else float("nan"))


def train_meta_critic(cfg: MetaCriticBaselineConfig, task: Task, dyn, goals, keys, iterations: int, chunk: int,
                      pbar=None):
    """The Meta-Critic baseline for every seed (vmapped), in compiled chunks."""
    return train_ddpg(cfg, task, dyn, goals, keys, iterations, chunk, pbar, init_fn=mc_init, chunk_fn=mc_train_chunk)
