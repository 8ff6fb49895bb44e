"""``metarl.runs.vmap_runs``: jax.vmap over runs, except that one run is computed as the run alone."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl import train as T
from metarl.runs import vmap_runs


def _layer(p, x):
    return {"y": jnp.tanh(x["obs"] @ p["w"] + p["b"]), "n": jnp.sum(x["obs"] ** 2)}


def _args(n):
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    return ({"w": jax.random.normal(k[0], (n, 8, 5)), "b": jax.random.normal(k[1], (n, 5))},
            {"obs": jax.random.normal(k[2], (n, 16, 8))})


@pytest.mark.parametrize("n", [1, 3])
def test_vmap_runs_has_vmaps_shapes_and_values(n):
    args = _args(n)
    ours, ref = jax.jit(vmap_runs(_layer))(*args), jax.jit(jax.vmap(_layer))(*args)
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        assert a.shape == b.shape and a.shape[0] == n
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_vmap_runs_traces_one_run_without_the_axis():
    """One run: the function sees the run's own shapes (no batch axis in the compiled program); several: vmap's."""
    seen = []

    def f(p, x):
        seen.append(x["obs"].shape)
        return _layer(p, x)

    jax.jit(vmap_runs(f)).lower(*_args(1))
    jax.jit(vmap_runs(f)).lower(*_args(3))
    assert seen == [(16, 8), (16, 8)]  # traced unbatched, then per run inside vmap
    alone = jax.jit(vmap_runs(_layer)).lower(*_args(1))
    assert not _batched_dots(alone) and "dot_general" in str(alone.compiler_ir("stablehlo"))  # the run's own product
    assert _batched_dots(jax.jit(jax.vmap(_layer)).lower(*_args(1)))  # what vmap over a batch of 1 compiles


def test_vmap_runs_keeps_vmaps_errors():
    p, x = _args(1)
    with pytest.raises(ValueError, match="inconsistent sizes"):
        vmap_runs(_layer)(p, {"obs": jnp.zeros((2, 16, 8))})


def _batched_dots(lowered) -> bool:
    return "batching_dims" in str(lowered.compiler_ir("stablehlo"))


@pytest.mark.parametrize("seeds", [1, 2])
def test_runner_compiles_one_seed_as_the_run_alone(seeds):
    """The Runner's programs at one seed are the run's own (no matrix product with a batch axis, which a vmap over a
    batch of 1 leaves and which the CPU backend runs slower); at two, vmap's."""
    cfg = T.TrainConfig(algo="td3", env="gymnax/Pendulum-v1", seeds=seeds, total_steps=300, learning_starts=100,
                        eval_every=100, eval_episodes=2, max_episode_steps=50,
                        agent=dict(actor_hidden=(16, 16), critic_hidden=(16, 16), batch_size=32))
    runner = T.Runner(cfg, None, progress=False)
    abstract = jax.eval_shape(runner.init, runner.keys, runner.hp)
    assert _batched_dots(runner.chunk.lower(abstract)) == (seeds > 1)


def test_seed_index_runner_does_not_reuse_the_one_seed_warm_up():
    """A --seed-index run keeps the vmapped set's batched programs, its warm-up too: the warm-up a one-seed
    Runner compiled (the run alone) on the same task is not reused for it."""
    cfg = T.TrainConfig(algo="td3", env="gymnax/Pendulum-v1", seeds=1, total_steps=300, learning_starts=100,
                        eval_every=100, eval_episodes=2, max_episode_steps=50,
                        agent=dict(actor_hidden=(16, 16), critic_hidden=(16, 16), batch_size=32))
    T.Runner(cfg, None, progress=False).init_state()
    held = dict(T.Runner._warm_ups)
    T.Runner(dataclasses.replace(cfg, seeds=2, seed_index=1), None, progress=False).init_state()
    assert len(T.Runner._warm_ups) == len(held) + 1
