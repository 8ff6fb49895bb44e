"""Drivers shared by the reacher and 7-DoF experiments: seeds vmapped, meta-iterations run as compiled
chunks with a progress bar, checkpointed after every chunk so that an interrupted run continues
(``checkpoint=(path, identity, resume)``: one hashed .npz, metarl.npz_checkpoint)."""
from __future__ import annotations

import os
import time

import jax
import numpy as np

from metarl.meta.model_based_critic.method import MBCConfig, Task, meta_init, meta_train_chunk
from metarl.meta.model_based_critic.baselines import (DDPGConfig, MetaCriticBaselineConfig, ddpg_init, ddpg_train_chunk,
                                                      mc_init, mc_train_chunk)


# ----------------------------------------------------------------------------------------------
# 4. Drivers shared by the reacher and 7-DoF experiments: seeds vmapped, chunks with a progress bar
# ----------------------------------------------------------------------------------------------


def run_chunks(run, states, n_chunks: int, chunk: int, pbar=None, checkpoint=None, max_chunks: int | None = None):
    """Call the compiled ``run(states) -> (states, {"train_error": [seeds, chunk]})`` ``n_chunks`` times.
    Returns (states, curve [seeds, iterations], seconds of each chunk).

    ``checkpoint``: None, or (path, identity, resume). After every chunk the states, the curve so far and
    the chunk times are saved to ``path`` with ``identity`` (a JSON-ready dict: what makes two runs the
    same run); with ``resume`` a checkpoint there continues the run (refused in one line if its identity
    differs; a corrupted file is a one-line CheckpointError), bit for bit as if never interrupted.
    ``max_chunks``: stop after that many chunks of this call (the checkpoint holds them).

    The NaN/Inf guard: after every chunk, a NaN or inf in any seed's state or an infinite metric stops the
    run with a one-line metarl.driver.NonFiniteError naming the seeds, the chunk and the first leaves, before
    the state is checkpointed (the checkpoint stays the last finite state)."""
    from metarl import npz_checkpoint
    from metarl.driver import ConfigMismatch, check_finite, identity_diff, json_norm

    curves, times, done = [], [], 0
    label = "meta-training"
    if checkpoint is not None:
        path, identity, resume = checkpoint
        identity = json_norm(identity)
        label = f"{identity.get('part', '')} {identity.get('method', '')} meta-training".strip()
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if resume and os.path.isfile(path):
            states, meta, arrays = npz_checkpoint.load(path, states)
            if meta["identity"] != identity:
                raise ConfigMismatch(f"cannot resume from {path}: it was written with other settings: "
                                     f"{identity_diff(meta['identity'], identity)}")
            done, times = meta["done"], list(meta["times"])
            curves = [arrays["curve"]] if done else []
            if pbar is not None:
                pbar.update(done * chunk)
    for i in range(done, n_chunks):
        if max_chunks is not None and i - done >= max_chunks:
            break
        t0 = time.time()
        states, m = run(states)
        jax.block_until_ready(m)
        times.append(time.time() - t0)
        check_finite(states, m, f"{label} chunk {i + 1} of {n_chunks} (iterations {i * chunk + 1}-{(i + 1) * chunk})",
                     runs=jax.tree.leaves(states)[0].shape[0])
        curves.append(np.asarray(jax.device_get(m["train_error"])))
        if checkpoint is not None:
            npz_checkpoint.save(path, states, {"identity": identity, "done": i + 1, "chunks": n_chunks,
                                               "times": times}, {"curve": np.concatenate(curves, axis=1)})
        if pbar is not None:
            pbar.update(chunk)
    return states, np.concatenate(curves, axis=1), times


def train_ours(cfg: MBCConfig, task: Task, dyn, goals, keys, chunk: int, pbar=None, checkpoint=None,
               max_chunks: int | None = None):
    """Algorithm 2 for every seed in ``keys`` (a vmapped axis), cfg.iterations meta-iterations run as
    compiled chunks (``checkpoint``, ``max_chunks``: :func:`run_chunks`). Returns the final MetaStates
    (leading seed axis), the training-error curves (seeds, iterations), the compile+first-chunk time and
    the wall time per meta-iteration after it."""
    states = jax.vmap(lambda k: meta_init(cfg, task, k))(keys)
    run = jax.jit(jax.vmap(lambda s: meta_train_chunk(cfg, task, s, goals, dyn, chunk)))
    states, curve, times = run_chunks(run, states, max(1, cfg.iterations // chunk), chunk, pbar, checkpoint,
                                      max_chunks)
    per_iter = sum(times[1:]) / (chunk * (len(times) - 1)) if len(times) > 1 else times[0] / chunk
    return states, curve, times[0], per_iter


def train_ddpg(cfg: DDPGConfig, task: Task, dyn, goals, keys, iterations: int, chunk: int, pbar=None,
               init_fn=None, chunk_fn=None, checkpoint=None, max_chunks: int | None = None):
    """The DDPG-style baseline for every seed (vmapped), in compiled chunks (``init_fn``/``chunk_fn``:
    another baseline's, e.g. the Meta-Critic's mc_init/mc_train_chunk; ``checkpoint``, ``max_chunks``:
    :func:`run_chunks`). Returns (states, curves, wall time per iteration after the first chunk)."""
    init_fn = init_fn or ddpg_init
    chunk_fn = chunk_fn or ddpg_train_chunk
    states = jax.vmap(lambda k: init_fn(cfg, task, k))(keys)
    run = jax.jit(jax.vmap(lambda s: chunk_fn(cfg, task, s, goals, dyn, chunk)))
    states, curve, times = run_chunks(run, states, max(1, iterations // chunk), chunk, pbar, checkpoint, max_chunks)
    return states, curve, (sum(times[1:]) / (chunk * (len(times) - 1)) if len(times) > 1 else float("nan"))


def train_meta_critic(cfg: MetaCriticBaselineConfig, task: Task, dyn, goals, keys, iterations: int, chunk: int,
                      pbar=None, checkpoint=None, max_chunks: int | None = None):
    """The Meta-Critic baseline for every seed (vmapped), in compiled chunks."""
    return train_ddpg(cfg, task, dyn, goals, keys, iterations, chunk, pbar, init_fn=mc_init, chunk_fn=mc_train_chunk,
                      checkpoint=checkpoint, max_chunks=max_chunks)
