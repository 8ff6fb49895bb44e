"""MetaGenRL's population config (the paper's Tables 3 and 4), its per-agent state, groups of agents per
environment, the toy environment and the fixed-policy reference returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import struct

from metarl import buffers, envs
from metarl.agents import make_agent
from metarl.agents.td3 import TD3_HP
from metarl.meta.metagenrl.objective import LEGACY_OBJECTIVE, ObjectiveConfig, _check_choice


# ----------------------------------------------------------------------------------------------------
# The population
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetaGenRLConfig:
    """Defaults: the paper's Tables 3 and 4 (per agent) and, where they are silent, the authors' code.
    The second value named in a comment is this module's earlier behaviour (LEGACY_TRAINING)."""

    envs: tuple = ("brax/halfcheetah", "gymnax/MountainCarContinuous-v0")
    agents_per_env: int = 10  # 20 agents in all
    total_steps: int = 1_000_000  # environment steps per agent, warm-up included
    learning_starts: int = 10_000  # random exploration steps
    anneal_steps: int = 10_000  # training steps from the TD3 actor loss to L_alpha
    eval_every: int = 10_000  # environment steps between evaluations
    eval_episodes: int = 5
    buffer_size: int = 1_000_000
    window: int = 20  # truncated episode length
    batch_windows: int = 100  # batch size (in windows)
    hidden: Sequence[int] = (350, 350)  # critic and policy: 3 layers (2 hidden + output) of 350, LayerNorm
    inner_steps: int = 1  # Eq. 6 (1) or Eq. 8 (3, 5)
    inner_lr: float = 1e-3  # second-order learning rate
    objective_lr: float = 1e-3
    clip_norm: float = 1.0  # global-norm clip of the objective's gradient
    # Adam's epsilon for alpha: the default (the authors' tf.train.AdamOptimizer). Earlier 1e-20, which
    # hid a vanishing meta-gradient by scaling float32 round-off up to full-size steps.
    objective_adam_eps: float = 1e-8
    # The meta-gradient's clip: "agent" (each agent's gradient clipped to clip_norm, then the mean over
    # the population: the authors' workers clip, their server averages) or "mean" (the mean clipped).
    meta_clip: str = "agent"
    # The meta-gradient's batch: "separate" (a fresh batch of (inner_steps + 1) * batch_windows windows,
    # the first inner_steps chunks of batch_windows for the inner steps, the whole for the outer
    # loss: the authors' large batch) or "policy" (the policy step's batch, cut into inner_steps + 1
    # chunks: cheaper, half the inner batch).
    meta_batch: str = "separate"
    # L_alpha in the inner step(s): "sum" of its per-step values over the chunk (the authors') or
    # "window_mean" (the sum over the chunk's windows' steps divided by the number of windows).
    inner_loss_reduction: str = "sum"
    # The policy at which the meta-gradient is taken: "after_policy" (after this cycle's policy step;
    # the authors compute it after the critic and policy updates) or "before_policy".
    meta_grad_state: str = "after_policy"
    # The policy step's loss: "step_mean" (per step p * l_t - (1 - p) * Q1_t [+ REINFORCE term], one mean
    # over the B * T steps, l_t zero at invalid steps: the authors' reduce_mean(obj * mask)) or
    # "window_mean" (L_alpha and REINFORCE summed over each window and averaged over windows, mixed with
    # TD3's per-transition mean: L_alpha then weighs T = 20 times more).
    policy_loss_reduction: str = "step_mean"
    # Global-norm clip of the policy gradient (paper Table 4 / the authors' _clipped_minimize, for the
    # objective and the TD3 loss alike); None: no clipping (plain TD3's actor step).
    policy_clip_norm: float | None = 1.0
    # MetaGradMonitor: warn when an agent's meta-gradient norm (before clipping) stays below
    # collapse_threshold for collapse_patience consecutive meta-steps.
    collapse_threshold: float = 1e-6
    collapse_patience: int = 100
    # the agents' TD3 hyperparameters: TD3's own (metarl.agents.td3.TD3_HP), stated once there
    gamma: float = TD3_HP["gamma"]
    tau: float = TD3_HP["tau"]
    actor_lr: float = TD3_HP["actor_lr"]
    critic_lr: float = TD3_HP["critic_lr"]
    expl_noise: float = TD3_HP["expl_noise"]
    gae_lambda: float = 0.97  # the off-policy REINFORCE baseline
    max_episode_steps: int | None = None
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    def validate(self):
        if self.eval_every % 2:
            raise ValueError(f"eval_every must be even (two env steps per update cycle), got {self.eval_every}")
        train = self.total_steps - self.learning_starts
        if train <= 0 or train % self.eval_every:
            raise ValueError(f"total_steps - learning_starts = {train} must be a positive multiple of "
                             f"eval_every = {self.eval_every}")
        if self.learning_starts < self.window:
            raise ValueError(f"learning_starts {self.learning_starts} < window {self.window}: nothing to sample")
        if self.batch_windows < self.inner_steps + 1:
            raise ValueError(f"batch_windows {self.batch_windows} < inner_steps + 1 = {self.inner_steps + 1}")
        _check_choice("meta_clip", self.meta_clip, ("agent", "mean"))
        _check_choice("meta_batch", self.meta_batch, ("separate", "policy"))
        _check_choice("inner_loss_reduction", self.inner_loss_reduction, ("sum", "window_mean"))
        _check_choice("meta_grad_state", self.meta_grad_state, ("after_policy", "before_policy"))
        _check_choice("policy_loss_reduction", self.policy_loss_reduction, ("step_mean", "window_mean"))
        return self

    @property
    def num_evals(self) -> int:
        return (self.total_steps - self.learning_starts) // self.eval_every

    @property
    def hp(self) -> dict:
        return dict(actor_lr=self.actor_lr, critic_lr=self.critic_lr, gamma=self.gamma, tau=self.tau,
                    expl_noise=self.expl_noise)


# This module's training before it followed the authors' code (with LEGACY_OBJECTIVE: ``legacy(cfg)``).
LEGACY_TRAINING = dict(objective_adam_eps=1e-20, meta_clip="mean", meta_batch="policy",
                       inner_loss_reduction="window_mean", meta_grad_state="before_policy",
                       policy_loss_reduction="window_mean", policy_clip_norm=None)


def legacy(config: MetaGenRLConfig) -> MetaGenRLConfig:
    """``config`` with every option set to this module's earlier behaviour (to reproduce older runs)."""
    import dataclasses

    return dataclasses.replace(config, **LEGACY_TRAINING,
                               objective=dataclasses.replace(config.objective, **LEGACY_OBJECTIVE))


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


VARIANTS = {"learned": (1.0, 0.0, 0.0), "td3": (0.0, 1.0, 0.0), "reinforce": (0.0, 0.0, 1.0)}


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
