"""metarl.shuffle.permutation: a permutation, uniform over the orders, the same under vmap as one key at a time."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from metarl.shuffle import index_bits, permutation, rounds_for


@pytest.mark.parametrize("n", [1, 2, 3, 64, 1000, 2048, 4097])
def test_is_a_permutation(n):
    for k in jax.random.split(jax.random.PRNGKey(n), 3):
        p = np.asarray(jax.jit(permutation, static_argnums=1)(k, n))
        assert p.dtype == np.int32 and sorted(p.tolist()) == list(range(n))


def test_rounds_follow_jax_rule():
    # jax.random.permutation: ceil(3 ln n / ln 2^32) rounds of 32-bit keys; here 32 - bit_length(n - 1) bits
    assert index_bits(2048) == 11 and rounds_for(2048) == math.ceil(3 * math.log(2048) / math.log(2.0 ** 21)) == 2
    assert rounds_for(5) == 1 and rounds_for(2 ** 24) == 9
    with pytest.raises(ValueError, match="permutation size 0"):
        permutation(jax.random.PRNGKey(0), 0)


def test_uniform_over_all_orders():
    """Every one of the 5! orders of 5 items about equally often over 24,000 keys (chi-square)."""
    keys = jax.random.split(jax.random.PRNGKey(0), 24_000)
    perms = np.asarray(jax.jit(jax.vmap(lambda k: permutation(k, 5)))(keys))
    index = {p: i for i, p in enumerate(itertools.permutations(range(5)))}
    counts = np.bincount([index[tuple(p)] for p in perms.tolist()], minlength=120)
    assert counts.min() > 0
    assert stats.chisquare(counts).pvalue > 1e-3


def test_uniform_positions_at_ppo_batch():
    """n = 2048 (PPO's batch, two rounds): where an item lands is uniform (16 bins, chi-square), and the
    relative order of two neighbours is a fair coin."""
    n, draws = 2048, 4000
    perms = np.asarray(jax.jit(jax.vmap(lambda k: permutation(k, n)))(jax.random.split(jax.random.PRNGKey(1), draws)))
    where = np.argsort(perms, axis=1)  # where[d, i]: the position item i landed at in draw d
    for item in (0, 1, n // 2, n - 1):
        assert stats.chisquare(np.bincount(where[:, item] * 16 // n, minlength=16)).pvalue > 1e-3
    before = np.mean(where[:, 10] < where[:, 11])
    assert abs(before - 0.5) < 4 * 0.5 / math.sqrt(draws)


def test_vmapped_equals_one_key_at_a_time():
    keys = jax.random.split(jax.random.PRNGKey(2), 4)
    batched = np.asarray(jax.jit(jax.vmap(lambda k: permutation(k, 2048)))(keys))
    single = np.stack([np.asarray(permutation(k, 2048)) for k in keys])
    np.testing.assert_array_equal(batched, single)
    assert len({tuple(r) for r in batched.tolist()}) == 4
