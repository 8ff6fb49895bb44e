"""``vmap_runs``: ``jax.vmap`` over a leading axis of independent runs (seeds, population members) that,
where the axis holds one run, runs the function on that run alone.

A run vmapped over an axis of size 1 computes the same values as the run alone, but XLA compiles a different
program: every matrix product gains a batch dimension of size 1, which its CPU backend lowers to slower
kernels (one SAC update with 256-256 networks at batch 256: ~6% slower on a 2-core CPU). Squeezing the
axis away and giving it back to the outputs removes that cost and keeps the callers' shapes.
"""
from __future__ import annotations

import functools


def vmap_runs(fn):
    """``jax.vmap(fn)`` (every argument mapped over its leading axis, the outputs stacked on theirs), except
    that when every argument's leading axis has size 1, ``fn`` runs on the single run and each output gains a
    leading axis of size 1: the same shapes, the same values (up to float reassociation in XLA's kernels)."""
    import jax  # here, not at the top: a command line imports this module to answer --help

    batched = jax.vmap(fn)

    @functools.wraps(fn)
    def call(*args):
        sizes = {x.shape[0] for x in jax.tree.leaves(args)}
        if sizes != {1}:
            return batched(*args)
        out = fn(*jax.tree.map(lambda x: x[0], args))
        return jax.tree.map(lambda x: x[None], out)

    return call
