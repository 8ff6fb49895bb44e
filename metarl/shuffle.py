"""A uniformly random permutation at a fraction of ``jax.random.permutation``'s cost on a CPU.

``jax.random.permutation(key, n)`` sorts the indices by random 32-bit keys: a sort of two arrays (the keys and
the indices), ``ceil(3 ln n / ln 2^32)`` rounds of it (two for n = 2048). XLA's CPU runtime sorts two arrays
with a comparator called through a pointer per comparison (~0.3 ms per round at n = 2048 on a 2-core CPU);
one array of a plain integer type it sorts with the built-in comparison. :func:`permutation` sorts one array:
each index packed into the low ``b = bit_length(n - 1)`` bits of its random 32-bit key, so that the sorted
keys' low bits are the permutation, with as many rounds as the same rule gives for ``32 - b`` random bits
(each round a stable shuffle of the last: keys that tie in their random bits keep their order, as in jax's).
PPO's minibatch shuffle of a 2048-step batch: ~0.19 ms against ~0.67 ms (10 of them per update).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def rounds_for(n: int) -> int:
    """Sorting rounds for ``n`` indices: jax.random.permutation's rule, ``ceil(3 ln n / ln 2^bits)``, with the
    random bits left beside the packed index."""
    bits = 32 - index_bits(n)
    return max(1, math.ceil(3 * math.log(max(n, 2)) / math.log(2.0 ** bits)))


def index_bits(n: int) -> int:
    return max(1, (int(n) - 1).bit_length())


def permutation(key, n: int) -> jax.Array:
    """A uniformly random permutation of ``range(n)`` (int32; ``n`` static, 1 <= n <= 2**24): the sort of
    random keys, as ``jax.random.permutation``, with a different random stream."""
    n = int(n)
    if not 1 <= n <= 2 ** 24:
        raise ValueError(f"permutation size {n} must be in [1, 2**24] (8 random bits beside the index)")
    b = index_bits(n)
    low = jnp.uint32((1 << b) - 1)
    iota = jnp.arange(n, dtype=jnp.uint32)
    perm = None
    for k in jax.random.split(key, rounds_for(n)):
        packed = (jax.random.bits(k, (n,), jnp.uint32) & ~low) | iota
        order = (jax.lax.sort(packed, is_stable=False) & low).astype(jnp.int32)  # keys are distinct
        perm = order if perm is None else perm[order]
    return perm
