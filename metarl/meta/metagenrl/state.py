"""MetaGenRL's per-agent state, groups of agents per environment, the toy environment and the fixed-policy
reference returns (the settings: config.py)."""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import struct

from metarl import buffers, envs
from metarl.agents import make_agent
from metarl.meta.metagenrl.config import MetaGenRLConfig


# ----------------------------------------------------------------------------------------------------
# The population
# ----------------------------------------------------------------------------------------------------
@struct.dataclass
class AgentRun:
    agent: Any
    env_state: Any
    obs: jax.Array
    buffer: buffers.Buffer
    key: jax.Array
    train_steps: jax.Array  # environment steps after the warm-up
    alpha: Any  # this agent's frozen objective (meta-test; unused while meta-training)
    mix: jax.Array  # [3] weights of (L_alpha, TD3 actor loss, off-policy REINFORCE+GAE) (meta-test)


@struct.dataclass
class PopState:
    groups: tuple  # one AgentRun per environment, batched over that group's agents
    alpha: Any  # the shared objective being meta-trained
    alpha_opt: Any
    cycles: jax.Array


class Group(NamedTuple):
    name: str
    env: Any
    agent: Any
    n: int


def make_agent_for(spec, config: MetaGenRLConfig):
    return make_agent("td3", spec, actor_hidden=tuple(config.hidden), critic_hidden=tuple(config.hidden),
                      layer_norm=True, batch_size=config.batch_windows)


def track_env(max_episode_steps: int | None = None):
    """``toy/track``: a tiny continuous task for learning tests. Observe s ~ U(-1, 1), act a in [-1, 1],
    reward -(a - s)^2, a fresh s every step, 10-step episodes (no termination). Per episode: the
    optimum is 0, uniformly random actions score -20/3 (E(a - s)^2 = 2/3), and the best action that
    ignores s (a = 0) scores -10/3, so a return above -10/3 needs a policy that reads its observation.
    TD3 with 16-16 networks is within 0.5 of the optimum after ~1k environment steps (500 random)."""
    from metarl.envs.core import Env, RawEnv

    spec = envs.EnvSpec(name="toy/track", obs_shape=(1,), discrete=False, action_dim=1, action_low=(-1.0,),
                        action_high=(1.0,), max_episode_steps=10)

    def reset(key):
        s = jax.random.uniform(key, (1,), minval=-1.0, maxval=1.0)
        return s, s

    def step(s, a, key):
        s2 = jax.random.uniform(key, (1,), minval=-1.0, maxval=1.0)
        return s2, s2, -jnp.sum(jnp.square(a - s)), jnp.zeros((), bool)

    return Env(RawEnv(spec, reset, step), max_episode_steps=max_episode_steps)


# Environments of this module only (tests, sanity checks): name -> constructor(max_episode_steps).
TOY_ENVS = {"toy/track": track_env}


def make_env(name: str, max_episode_steps: int | None = None):
    """``metarl.envs.make(name)``, or one of :data:`TOY_ENVS`."""
    if name in TOY_ENVS:
        return TOY_ENVS[name](max_episode_steps)
    return envs.make(name, max_episode_steps=max_episode_steps)


def make_groups(config: MetaGenRLConfig, envs_: Sequence[str] | None = None, n: int | None = None):
    out = []
    for name in (envs_ or config.envs):
        env = make_env(name, config.max_episode_steps)
        out.append(Group(name, env, make_agent_for(env.spec, config), n or config.agents_per_env))
    return out


def random_policy_return(env, key, episodes: int):
    """Mean return of ``episodes`` episodes (vmapped) of the uniformly random policy (every action
    entry uniform on [-1, 1], the agents' action range), each episode run to its end or its limit.
    The random-policy rows of the meta-test: the same number of episodes per evaluation as the
    agents' evaluation, at every evaluation point, from each seed's own keys."""
    return fixed_policy_return(env, key, episodes,
                               lambda k, shape: jax.random.uniform(k, shape, minval=-1.0, maxval=1.0))


def zero_action_return(env, key, episodes: int):
    """Mean return of ``episodes`` episodes of the policy that always acts 0 (the centre of the action
    range; the stochasticity is the environment's own reset). A reference that ignores the observation:
    on MountainCarContinuous it pays no energy cost, so it scores about 0 without ever reaching the goal."""
    return fixed_policy_return(env, key, episodes, lambda k, shape: jnp.zeros(shape))


def fixed_policy_return(env, key, episodes: int, act):
    """Mean return of ``episodes`` vmapped episodes of a policy that does not look at the observation:
    ``act(key, (episodes, action_dim))`` gives each step's actions; each episode runs to its end or limit."""
    k_reset, k_steps = jax.random.split(key)
    sts, tss = jax.vmap(env.reset)(jax.random.split(k_reset, episodes))
    dim = env.spec.action_dim

    def step(carry, k):
        sts, ret, alive = carry
        ka, ke = jax.random.split(k)
        a = act(ka, (episodes, dim))
        sts, ts = jax.vmap(env.step)(sts, a, jax.random.split(ke, episodes))
        ret = ret + alive * ts.reward
        return (sts, ret, alive * (1.0 - ts.done.astype(jnp.float32))), None

    init = (sts, jnp.zeros(episodes), jnp.ones(episodes))
    (_, ret, _), _ = jax.lax.scan(step, init, jax.random.split(k_steps, env.spec.max_episode_steps))
    return jnp.mean(ret)
