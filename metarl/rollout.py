"""What every training loop does with an environment besides learning: fill the buffer with random actions
before the first update, and score a policy on fresh episodes.

The environments of :mod:`metarl.envs` auto-reset (an episode that ends is followed by a new one's first
observation), so a loop steps them without branching; these two functions are shared by the off-policy
loop (:mod:`metarl.train.program`), MetaGenRL's population and the on-policy agents.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def random_warm_up(run, step: Callable, key, steps: int, action_dim: int):
    """``steps`` environment steps with actions uniform on [-1, 1]^action_dim (the agents' action range):
    ``step(run, action, key) -> (run, ...)`` with the step's own key (the same one its action was drawn
    with). Returns the run after the last step."""

    def body(run, k):
        a = jax.random.uniform(k, (action_dim,), minval=-1.0, maxval=1.0)
        return step(run, a, k)[0], None

    return jax.lax.scan(body, run, jax.random.split(key, steps))[0]


def evaluate_episodes(env, act: Callable, key, episodes: int) -> jax.Array:
    """Mean undiscounted return of ``episodes`` episodes run in parallel, each from a fresh reset, for the
    environment's ``max_episode_steps``: ``act(obs [episodes, ...], key) -> actions`` (a deterministic
    policy ignores the key). The rewards after an episode's end (the auto-reset's next episode) do not count."""
    k_reset, k_steps = jax.random.split(key)
    states, tss = jax.vmap(env.reset)(jax.random.split(k_reset, episodes))

    def step(carry, k):
        states, obs, ret, alive = carry
        a = act(obs, k)
        states, ts = jax.vmap(env.step)(states, a, jax.random.split(k, episodes))
        ret = ret + alive * ts.reward
        return (states, ts.obs, ret, alive * (1.0 - ts.done.astype(jnp.float32))), None

    init = (states, tss.obs, jnp.zeros(episodes), jnp.ones(episodes))
    (_, _, ret, _), _ = jax.lax.scan(step, init, jax.random.split(k_steps, env.spec.max_episode_steps))
    return jnp.mean(ret)
