"""A replay buffer as a pytree: fixed capacity, circular writes, uniform transitions, trajectory windows.

Written by hand rather than taken from a library: it is ~80 lines, vmaps over seeds and populations
as a plain pytree, and the one feature a library would add (prioritised replay) is used by none of
the four papers. Transitions are dicts of arrays; the buffer stores them along a leading axis.

Window sampling (MetaGenRL trains on 20-step windows) returns contiguous time slices of the stored
stream plus a ``mask``: ``mask[b, k]`` is False for steps that lie after an episode ended inside the
window, so a window never crosses an episode boundary without saying so.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Buffer:
    data: Any  # pytree of arrays, each of shape [capacity, ...]
    pos: jax.Array  # next write index
    size: jax.Array  # number of valid entries
    capacity: int = struct.field(pytree_node=False)


def init(example: Any, capacity: int) -> Buffer:
    """An empty buffer whose entries look like ``example`` (one transition, no leading axis)."""
    if capacity <= 0:
        raise ValueError(f"buffer capacity must be positive, got {capacity}")
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example)
    return Buffer(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), capacity)


def add(buf: Buffer, item: Any) -> Buffer:
    """Write one transition at the head, overwriting the oldest when full."""
    data = jax.tree.map(lambda d, x: d.at[buf.pos].set(x), buf.data, item)
    return buf.replace(data=data, pos=(buf.pos + 1) % buf.capacity,
                       size=jnp.minimum(buf.size + 1, buf.capacity))


def add_batch(buf: Buffer, items: Any) -> Buffer:
    """Write a batch of transitions (leading axis) in order."""
    n = jax.tree.leaves(items)[0].shape[0]
    idx = (buf.pos + jnp.arange(n)) % buf.capacity
    data = jax.tree.map(lambda d, x: d.at[idx].set(x), buf.data, items)
    return buf.replace(data=data, pos=(buf.pos + n) % buf.capacity,
                       size=jnp.minimum(buf.size + n, buf.capacity))


def _check_filled(buf: Buffer, needed: int, what: str):
    # Only possible when the size is concrete (outside jit); configs check it statically too.
    try:
        size = int(buf.size)
    except (jax.errors.ConcretizationTypeError, TypeError):
        return
    if size < needed:
        raise ValueError(f"cannot sample {what} of {needed} from a buffer holding {size} transitions; "
                         f"fill it first (warm-up steps >= {needed})")


def sample(buf: Buffer, key, batch_size: int) -> Any:
    """``batch_size`` transitions drawn uniformly (with replacement) from the filled part."""
    _check_filled(buf, batch_size, "a batch")
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buf.size, 1))
    return jax.tree.map(lambda d: d[idx], buf.data)


def window_indices(buf: Buffer, key, batch_size: int, length: int) -> jax.Array:
    """Start-to-end indices [batch, length] of contiguous windows that stay in written data."""
    oldest = (buf.pos - buf.size) % buf.capacity
    n_starts = jnp.maximum(buf.size - length + 1, 1)
    offset = jax.random.randint(key, (batch_size,), 0, n_starts)
    return (oldest + offset[:, None] + jnp.arange(length)[None, :]) % buf.capacity


def sample_windows(buf: Buffer, key, batch_size: int, length: int, done_key: str = "done"):
    """Contiguous windows [batch, length, ...] and a validity mask [batch, length].

    Step k of a window is valid iff no episode ended at steps 0..k-1 of that window (the step that
    ends an episode is itself valid). ``done_key`` names the per-step episode-end flag.
    """
    _check_filled(buf, length, "a window")
    idx = window_indices(buf, key, batch_size, length)
    windows = jax.tree.map(lambda d: d[idx], buf.data)
    done = windows[done_key].astype(jnp.int32)
    ended_before = jnp.cumsum(done, axis=1) - done
    return windows, ended_before == 0
