"""Source adapters: Brax, Gymnax and Jumanji environments as :class:`RawEnv` (no reset, no time limit)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from metarl.envs.core import EnvSpec, RawEnv
from metarl.envs.names import BRAX_BACKENDS, BRAX_SELF_SCALING, JUMANJI_NAMES, brax_names, gymnax_names  # noqa: F401


def make_brax(name: str, backend: str = "positional", **kwargs) -> RawEnv:
    from brax import envs as brax_envs

    if backend not in BRAX_BACKENDS:
        raise ValueError(f"unknown Brax backend {backend!r}; valid backends: {', '.join(BRAX_BACKENDS)}")
    env = brax_envs.get_environment(name, backend=backend, **kwargs)
    if name in BRAX_SELF_SCALING:
        # These envs map [-1, 1] onto their actuators' control range themselves.
        low, high = (-1.0,) * env.action_size, (1.0,) * env.action_size
    else:
        ctrl = env.sys.actuator.ctrl_range
        low = tuple(float(x) for x in ctrl[:, 0])
        high = tuple(float(x) for x in ctrl[:, 1])
        # Actuators without a control range report (0, 0): treat them as [-1, 1].
        low = tuple(lo if lo < hi else -1.0 for lo, hi in zip(low, high))
        high = tuple(hi if lo < hi else 1.0 for lo, hi in zip(low, high))
    spec = EnvSpec(name=f"brax/{name}", obs_shape=(env.observation_size,), discrete=False,
                   action_dim=env.action_size, action_low=low, action_high=high, max_episode_steps=1000)

    # Brax's reset and step are jitted: a program that steps the env in several places (the warm-up, the
    # training loop, the evaluation) and every program of the process reuse one trace per shape (a Brax
    # step costs ~1 s of Python to trace; the compiled arithmetic is the same).
    env_reset, env_step = jax.jit(env.reset), jax.jit(env.step)

    def reset(key):
        s = env_reset(key)
        return s, s.obs

    def step(s, action, key):
        del key  # Brax dynamics are deterministic
        s = env_step(s, action)
        return s, s.obs, s.reward, s.done > 0.5

    return RawEnv(spec, reset, step, params=env)


def make_gymnax(name: str, **kwargs) -> RawEnv:
    import gymnax

    env, params = gymnax.make(name, **kwargs)
    space = env.action_space(params)
    obs_shape = tuple(env.observation_space(params).shape)
    max_steps = int(params.max_steps_in_episode)
    if hasattr(space, "n"):
        spec = EnvSpec(name=f"gymnax/{name}", obs_shape=obs_shape, discrete=True, num_actions=int(space.n),
                       max_episode_steps=max_steps)
        scalar_action = True
    else:
        shape = tuple(space.shape)
        dim = int(shape[0]) if shape else 1
        low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), (dim,))
        high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), (dim,))
        spec = EnvSpec(name=f"gymnax/{name}", obs_shape=obs_shape, discrete=False, action_dim=dim,
                       action_low=tuple(float(x) for x in low), action_high=tuple(float(x) for x in high),
                       max_episode_steps=max_steps)
        scalar_action = shape == ()

    def reset(key):
        obs, s = env.reset_env(key, params)
        return s, obs

    def step(s, action, key):
        a = action[0] if (scalar_action and not spec.discrete) else action
        obs, s, reward, done, _ = env.step_env(key, s, a, params)
        return s, obs, jnp.reshape(reward, ()), jnp.reshape(done, ())

    return RawEnv(spec, reset, step, params=params)


def make_jumanji(name: str, **kwargs) -> RawEnv:
    from jumanji.environments import Snake

    sizes = {"Snake-6x6": 6, "Snake-12x12": 12}
    if name not in sizes:
        raise ValueError(f"unknown Jumanji environment {name!r}; valid: {', '.join(JUMANJI_NAMES)}")
    n = sizes[name]
    # The time limit is ours (truncation); give Jumanji one it never reaches first.
    env = Snake(num_rows=n, num_cols=n, time_limit=10**9, **kwargs)
    spec = EnvSpec(name=f"jumanji/{name}", obs_shape=(n, n, 5), discrete=True, num_actions=4,
                   max_episode_steps=500)

    def obs_of(ts):
        return ts.observation.grid.astype(jnp.float32)

    def reset(key):
        s, ts = env.reset(key)
        return s, obs_of(ts)

    def step(s, action, key):
        del key
        s, ts = env.step(s, action)
        return s, obs_of(ts), ts.reward, jnp.logical_and(ts.last(), ts.discount == 0.0)

    return RawEnv(spec, reset, step, params=env)
