"""metarl.rollout: the evaluation every loop shares, against an explicit per-episode Python loop."""
import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np

from metarl import envs
from metarl.rollout import evaluate_episodes, random_warm_up


def test_evaluation_counts_each_episode_once_up_to_its_end():
    """Episodes end at the 10-step limit while the scan runs 25 steps: the auto-reset's next episode must
    not count. The reference steps each episode by hand with the same keys and stops at its end."""
    env = envs.make("gymnax/Pendulum-v1", max_episode_steps=10)
    long = types.SimpleNamespace(reset=env.reset, step=env.step,
                                 spec=dataclasses.replace(env.spec, max_episode_steps=25))
    n, key = 3, jax.random.PRNGKey(7)
    act = lambda obs, k: jnp.tanh(obs[:, :1])  # a deterministic policy of the observation
    got = float(jax.jit(lambda k: evaluate_episodes(long, act, k, n))(key))
    k_reset, k_steps = jax.random.split(key)
    reset_keys, step_keys = jax.random.split(k_reset, n), jax.random.split(k_steps, 25)
    returns = []
    for i in range(n):
        state, ts = env.reset(reset_keys[i])
        obs, ret = ts.obs, 0.0
        for t in range(25):
            state, ts = env.step(state, act(obs[None], None)[0], jax.random.split(step_keys[t], n)[i])
            obs, ret = ts.obs, ret + float(ts.reward)
            if bool(ts.done):
                assert t == 9  # the time limit
                break
        returns.append(ret)
    np.testing.assert_allclose(got, np.mean(returns), rtol=1e-5)


def test_warm_up_steps_with_uniform_actions_drawn_with_the_steps_key():
    """Every one of the ``steps`` steps gets an action uniform on [-1, 1]^d drawn with the key it is given
    (the MetaGenRL population steps its environment with that same key)."""

    def step(run, a, k):
        n, mismatch, lo, hi, total = run
        redrawn = jax.random.uniform(k, a.shape, minval=-1.0, maxval=1.0)
        return (n + 1, jnp.maximum(mismatch, jnp.max(jnp.abs(a - redrawn))), jnp.minimum(lo, a.min()),
                jnp.maximum(hi, a.max()), total + a), None

    run0 = (jnp.zeros((), jnp.int32), 0.0, 1.0, -1.0, jnp.zeros(3))
    n, mismatch, lo, hi, total = jax.jit(lambda k: random_warm_up(run0, step, k, 400, 3))(jax.random.PRNGKey(0))
    assert int(n) == 400 and float(mismatch) == 0.0
    assert -1.0 <= float(lo) < -0.95 and 0.95 < float(hi) <= 1.0 and np.all(np.abs(np.asarray(total) / 400) < 0.1)
