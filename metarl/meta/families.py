"""Task families for the meta-RL baselines (RL^2, EPG): what a trial draws its task from.

A :class:`Family` is static shapes plus three pure functions over one lane (vmap it):

* ``sample(key) -> task``: a task (a pytree; ``()`` where the family has no parameters beyond the
  environment's own initial-state distribution);
* ``reset(task, key) -> (state, obs)``;
* ``step(task, state, action, key) -> (state, obs, reward, done)``: ``obs`` is the observation to act
  on next; where ``done`` the episode has ended and ``obs`` is the first of a fresh episode of the
  *same* task (the environment auto-resets), so a trial of several episodes is a plain loop of steps.

Observations and actions are padded to a family-wide size (``obs_dim``, ``act_dim``) so one network
serves every member of a mixture of environments with different sizes (MetaGenRL's cross-environment
protocol): an observation fills the first ``env.obs_dim`` entries, the rest are zero; a continuous
action has ``act_dim`` entries of which the first ``env.action_dim`` reach the environment
(``action_mask`` marks them; the rest are dropped). Who reads the mask: RL^2 sums the log-probability
and entropy over the masked dimensions only and feeds back the masked action; EPG's loss network
sees the masked policy outputs.

Families here: :func:`bandit` (two-armed Bernoulli bandits, one good arm, drawn per trial; a pull is an
episode) and :func:`env_family` (one wrapped ``metarl.envs`` environment, padded).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metarl import envs


class Family(NamedTuple):
    name: str
    obs_dim: int  # padded observation size
    act_dim: int  # padded continuous action size, or the number of discrete actions
    discrete: bool
    episode_steps: int  # an episode's step limit (the environment auto-resets at its end)
    action_mask: Any  # [act_dim] float32 numpy: 1 where the action entry reaches the environment
    sample: Callable
    reset: Callable
    step: Callable
    env_name: str = ""  # the metarl.envs name (env_family only)


def bandit(arms: int = 2, p_good: float = 0.9, p_bad: float = 0.1) -> Family:
    """Bernoulli bandits with one good arm: a task is which arm pays with probability ``p_good`` (the
    others pay with ``p_bad``), uniform over arms. An episode is one pull; the observation is a
    constant zero (everything the agent learns about the task comes through the reward input)."""

    def sample(key):
        good = jax.random.randint(key, (), 0, arms)
        return jnp.where(jnp.arange(arms) == good, p_good, p_bad).astype(jnp.float32)

    def reset(task, key):
        del task, key
        return jnp.zeros(()), jnp.zeros((1,), jnp.float32)

    def step(task, state, action, key):
        reward = jax.random.bernoulli(key, task[action]).astype(jnp.float32)
        return state, jnp.zeros((1,), jnp.float32), reward, jnp.ones((), bool)

    return Family(f"bandit{arms}", 1, arms, True, 1, np.ones(arms, np.float32), sample, reset, step)


def env_family(name: str, obs_dim: int | None = None, act_dim: int | None = None,
               max_episode_steps: int | None = None) -> Family:
    """One ``metarl.envs`` environment (continuous actions) padded to ``obs_dim`` / ``act_dim``."""
    env = envs.make(name, max_episode_steps=max_episode_steps)
    spec = env.spec
    if spec.discrete or len(spec.obs_shape) != 1:
        raise ValueError(f"env_family needs a flat observation and continuous actions; {name} has "
                         f"obs_shape {spec.obs_shape}, discrete={spec.discrete}")
    d_obs, d_act = spec.obs_shape[0], spec.action_dim
    obs_dim = d_obs if obs_dim is None else obs_dim
    act_dim = d_act if act_dim is None else act_dim
    if obs_dim < d_obs or act_dim < d_act:
        raise ValueError(f"padding {name} (obs {d_obs}, action {d_act}) to obs {obs_dim}, action {act_dim}: "
                         f"the padded sizes must not be smaller")
    pad = lambda o: jnp.pad(o.astype(jnp.float32), (0, obs_dim - d_obs))

    def sample(key):
        del key
        return ()

    def reset(task, key):
        del task
        state, ts = env.reset(key)
        return state, pad(ts.obs)

    def step(task, state, action, key):
        del task
        state, ts = env.step(state, action[:d_act], key)
        return state, pad(ts.obs), ts.reward, ts.done

    mask = np.zeros(act_dim, np.float32)
    mask[:d_act] = 1.0
    return Family(name, obs_dim, act_dim, False, spec.max_episode_steps, mask, sample, reset, step, env_name=name)


def padded_sizes(names) -> tuple[int, int]:
    """The largest observation and action sizes over the named environments (the padding target)."""
    specs = [envs.make(n).spec for n in names]
    return max(s.obs_shape[0] for s in specs), max(s.action_dim for s in specs)
