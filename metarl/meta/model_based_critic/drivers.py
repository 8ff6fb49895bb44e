"""Drivers shared by the reacher and 7-DoF experiments: seeds vmapped, meta-iterations run as compiled
chunks with a progress bar, checkpointed after every chunk so that an interrupted run continues
(``checkpoint=(path, identity, resume)``: a checkpoint folder, metarl.driver.segments)."""
from __future__ import annotations

import os
import time

import jax
import numpy as np

from metarl.runs import vmap_runs
from metarl.meta.model_based_critic.method import MBCConfig, Task, meta_init, meta_train_chunk
from metarl.meta.model_based_critic.baselines import (DDPGConfig, MetaCriticBaselineConfig, ddpg_init, ddpg_train_chunk,
                                                      mc_init, mc_train_chunk)


# ----------------------------------------------------------------------------------------------
# 4. Drivers shared by the reacher and 7-DoF experiments: seeds vmapped, chunks with a progress bar
# ----------------------------------------------------------------------------------------------


def run_chunks(run, states, n_chunks: int, chunk: int, pbar=None, checkpoint=None, max_chunks: int | None = None):
    """Call the compiled ``run(states) -> (states, {"train_error": [seeds, chunk]})`` ``n_chunks`` times through
    the shared segment loop (metarl.driver.segments.run_segments). Returns (states, curve [seeds,
    iterations], seconds of each chunk).

    ``checkpoint``: None, or (path, identity, resume). After every chunk the states, the curve so far and
    the chunk times are saved to ``path`` with ``identity`` (a JSON-ready dict: what makes two runs the
    same run; the package versions are added); with ``resume`` a checkpoint there continues the run
    (refused in one line if its identity differs; a corrupted file is a one-line CheckpointError), bit for
    bit as if never interrupted. ``max_chunks``: stop after that many chunks of this call (the checkpoint
    holds them).

    The NaN/Inf guard: after every chunk, a NaN or inf in any seed's state or an infinite metric stops the
    run with a one-line metarl.driver.NonFiniteError naming the seeds, the chunk and the first leaves, before
    the state is checkpointed (the checkpoint stays the last finite state)."""
    from metarl.driver.records import json_norm
    from metarl.driver.segments import run_segments

    path, identity, resume = checkpoint if checkpoint is not None else (None, {}, False)
    identity = json_norm(identity)
    label = f"{identity.get('part', '')} {identity.get('method', '')} meta-training".strip()
    times = []

    def timed(s):
        t0 = time.time()
        s, m = run(s)
        jax.block_until_ready(m)
        times.append(time.time() - t0)
        return s, m

    def keep_curve(i, m):
        if pbar is not None:  # the headline: the latest training error, mean over seeds
            pbar.set_postfix({"train_error": f"{float(np.mean(np.asarray(m['train_error'])[:, -1])):.3g}"})
        return {"train_error": np.asarray(m["train_error"])}

    states, history = run_segments(
        timed, lambda: states, jax.eval_shape(lambda: states), n_chunks,
        (os.path.dirname(path) or ".") if path else None, identity, resume=resume, name=os.path.basename(path or "x"),
        on_segment=keep_curve, extra=(lambda: {"times": list(times)}, lambda d: times.extend(d["times"])),
        bar=pbar, units_per_segment=chunk, runs=jax.tree.leaves(states)[0].shape[0], max_segments=max_chunks,
        where=lambda i: f"{label} chunk {i} of {n_chunks} (iterations {(i - 1) * chunk + 1}-{i * chunk})")
    curve = np.concatenate([np.asarray(h["train_error"], np.float32) for h in history], axis=1)
    return states, curve, times


def train_ours(cfg: MBCConfig, task: Task, dyn, goals, keys, chunk: int, pbar=None, checkpoint=None,
               max_chunks: int | None = None):
    """Algorithm 2 for every seed in ``keys`` (a vmapped axis), cfg.iterations meta-iterations run as
    compiled chunks (``checkpoint``, ``max_chunks``: :func:`run_chunks`). Returns the final MetaStates
    (leading seed axis), the training-error curves (seeds, iterations), the compile+first-chunk time and
    the wall time per meta-iteration after it."""
    states = jax.vmap(lambda k: meta_init(cfg, task, k))(keys)
    run = jax.jit(vmap_runs(lambda s: meta_train_chunk(cfg, task, s, goals, dyn, chunk)))
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
    run = jax.jit(vmap_runs(lambda s: chunk_fn(cfg, task, s, goals, dyn, chunk)))
    states, curve, times = run_chunks(run, states, max(1, iterations // chunk), chunk, pbar, checkpoint, max_chunks)
    return states, curve, (sum(times[1:]) / (chunk * (len(times) - 1)) if len(times) > 1 else float("nan"))


def train_meta_critic(cfg: MetaCriticBaselineConfig, task: Task, dyn, goals, keys, iterations: int, chunk: int,
                      pbar=None, checkpoint=None, max_chunks: int | None = None):
    """The Meta-Critic baseline for every seed (vmapped), in compiled chunks."""
    return train_ddpg(cfg, task, dyn, goals, keys, iterations, chunk, pbar, init_fn=mc_init, chunk_fn=mc_train_chunk,
                      checkpoint=checkpoint, max_chunks=max_chunks)
