"""One functional environment interface over Brax, Gymnax and Jumanji.

Every environment, whatever its source, is an :class:`Env`: a static :class:`EnvSpec` and two pure
functions ``reset(key) -> (state, timestep)`` and ``step(state, action, key) -> (state, timestep)``.
The state is a pytree, so an environment vmaps over seeds and scans over time.

The wrapped environment auto-resets: when an episode ends (termination or time-limit truncation) the
returned ``timestep.obs`` is the first observation of a *freshly drawn* episode (a new key every time,
unlike Brax's AutoResetWrapper, which replays one cached initial state), while ``timestep.next_obs``
keeps the observation actually reached, so an off-policy learner stores the true transition and
bootstraps through truncation (``terminated`` is False there) but not through termination.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class EnvSpec:
    """Static description of an environment (hashable: no arrays)."""

    name: str = struct.field(pytree_node=False)
    obs_shape: tuple = struct.field(pytree_node=False)
    discrete: bool = struct.field(pytree_node=False)
    # Continuous: action dimension and the bounds the *agent* sees ([-1, 1] when rescaled).
    action_dim: int = struct.field(pytree_node=False, default=0)
    action_low: tuple = struct.field(pytree_node=False, default=())
    action_high: tuple = struct.field(pytree_node=False, default=())
    # Discrete: number of actions.
    num_actions: int = struct.field(pytree_node=False, default=0)
    max_episode_steps: int = struct.field(pytree_node=False, default=1000)

    @property
    def action_shape(self) -> tuple:
        return () if self.discrete else (self.action_dim,)


class TimeStep(NamedTuple):
    obs: jax.Array  # observation to act on next (a new episode's first one after an auto-reset)
    reward: jax.Array
    terminated: jax.Array  # true terminal state: do not bootstrap
    truncated: jax.Array  # time limit: bootstrap from next_obs
    next_obs: jax.Array  # the observation this step actually reached
    episode_return: jax.Array  # return of the episode that just ended (valid where done)
    episode_length: jax.Array

    @property
    def done(self) -> jax.Array:
        return jnp.logical_or(self.terminated, self.truncated)


class RawEnv(NamedTuple):
    """What a source adapter provides: no time limit, no reset inside step."""

    spec: EnvSpec
    reset: Callable[[jax.Array], tuple[Any, jax.Array]]  # key -> (inner_state, obs)
    # (inner_state, action, key) -> (inner_state, obs, reward, terminated)
    step: Callable[[Any, jax.Array, jax.Array], tuple[Any, jax.Array, jax.Array, jax.Array]]
    # Optional: the source's own static parameters (e.g. a Brax system) for callers that vary them.
    params: Any = None


@struct.dataclass
class ObsStats:
    mean: jax.Array
    var: jax.Array
    count: jax.Array


@struct.dataclass
class EnvState:
    inner: Any
    obs: jax.Array  # raw (unnormalised) current observation
    t: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    obs_stats: ObsStats | None = None


def strong_types(tree):
    """``tree`` with every weakly typed leaf (e.g. gymnax's ``time``, set from a Python int) made strongly
    typed in its own dtype; the values are unchanged. A weak leaf does not survive a checkpoint (arrays
    read back are strongly typed), so a program traced on a weak state would be traced and compiled
    again for the resumed one; with strong leaves the resumed state has the same types."""
    def strong(x):
        t = jax.typeof(x)
        return jnp.asarray(x, t.dtype) if getattr(t, "weak_type", False) else x  # an explicit dtype: strong

    return jax.tree.map(strong, tree)


class Env:
    """A wrapped environment: time limit, auto-reset, episode stats, action rescaling, obs norm.

    Args:
      raw: the source adapter.
      max_episode_steps: time limit (truncation, bootstrapped).
      rescale_actions: continuous actions come in [-1, 1] and are mapped to the source's bounds.
      normalize_obs: keep running mean/var of observations in the state and return normalised ones.
    """

    def __init__(self, raw: RawEnv, max_episode_steps: int | None = None, rescale_actions: bool = True,
                 normalize_obs: bool = False):
        self.raw = raw
        self.rescale_actions = rescale_actions and not raw.spec.discrete
        self.normalize_obs = normalize_obs
        spec = raw.spec
        t_max = int(max_episode_steps or spec.max_episode_steps)
        if self.rescale_actions:
            spec = spec.replace(action_low=(-1.0,) * spec.action_dim, action_high=(1.0,) * spec.action_dim)
        self.spec = spec.replace(max_episode_steps=t_max)
        self._low = jnp.asarray(raw.spec.action_low, jnp.float32) if not raw.spec.discrete else None
        self._high = jnp.asarray(raw.spec.action_high, jnp.float32) if not raw.spec.discrete else None

    # -- helpers -------------------------------------------------------------------------------
    def _to_source_action(self, action):
        if self.raw.spec.discrete:
            return action
        if self.rescale_actions:
            action = self._low + (jnp.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (self._high - self._low)
        return jnp.clip(action, self._low, self._high)

    def _update_stats(self, stats: ObsStats, obs):
        count = stats.count + 1.0
        delta = obs - stats.mean
        mean = stats.mean + delta / count
        var = stats.var + (delta * (obs - mean) - stats.var) / count
        return ObsStats(mean, var, count)

    def observe(self, state: EnvState, obs):
        """Normalise a raw observation with the state's running statistics (identity if off)."""
        if not self.normalize_obs:
            return obs
        s = state.obs_stats
        return (obs - s.mean) / jnp.sqrt(s.var + 1e-8)

    # -- the interface -------------------------------------------------------------------------
    def reset(self, key) -> tuple[EnvState, TimeStep]:
        inner, obs = self.raw.reset(key)
        inner = strong_types(inner)
        stats = None
        if self.normalize_obs:
            stats = ObsStats(jnp.zeros_like(obs), jnp.ones_like(obs), jnp.zeros(()))
            stats = self._update_stats(stats, obs)
        zero = jnp.zeros((), jnp.float32)
        state = EnvState(inner, obs, jnp.zeros((), jnp.int32), zero, jnp.zeros((), jnp.int32), stats)
        o = self.observe(state, obs)
        f = jnp.zeros((), bool)
        return state, TimeStep(o, zero, f, f, o, zero, jnp.zeros((), jnp.int32))

    def step(self, state: EnvState, action, key) -> tuple[EnvState, TimeStep]:
        k_step, k_reset = jax.random.split(key)
        inner, obs, reward, terminated = self.raw.step(state.inner, self._to_source_action(action), k_step)
        reward = jnp.asarray(reward, jnp.float32)
        terminated = jnp.asarray(terminated, bool)
        t = state.t + 1
        truncated = jnp.logical_and(t >= self.spec.max_episode_steps, jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)
        ep_ret = state.episode_return + reward
        ep_len = state.episode_length + 1
        stats = state.obs_stats
        if self.normalize_obs:
            stats = self._update_stats(stats, obs)
        tmp = state.replace(obs_stats=stats)
        next_obs = self.observe(tmp, obs)
        # Auto-reset with a fresh key: every episode starts from a newly drawn initial state.
        r_inner, r_obs = self.raw.reset(k_reset)
        sel = lambda a, b: jnp.where(done, a, b)  # one env per call: done is a scalar
        inner = strong_types(jax.tree.map(sel, strong_types(r_inner), inner))
        cur_obs = sel(r_obs, obs)
        new_state = EnvState(
            inner=inner,
            obs=cur_obs,
            t=jnp.where(done, 0, t),
            episode_return=jnp.where(done, 0.0, ep_ret),
            episode_length=jnp.where(done, 0, ep_len),
            obs_stats=stats,
        )
        ts = TimeStep(self.observe(new_state, cur_obs), reward, terminated, truncated, next_obs, ep_ret, ep_len)
        return new_state, ts

    def current_obs(self, state: EnvState):
        return self.observe(state, state.obs)

    def __repr__(self) -> str:
        return f"Env({self.spec.name})"
