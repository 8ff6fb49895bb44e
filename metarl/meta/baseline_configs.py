"""The settings of the MetaGenRL-protocol baselines, jax-free (their command lines answer --help without
loading jax): EPG's (:class:`EPGConfig`, metarl.meta.epg) and RL^2's (:class:`RL2Config`, metarl.meta.rl2)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from metarl.config_cli import NonNegFloat, PositiveFloat, PositiveInt, UnitFloat


@dataclass(frozen=True)
class EPGConfig:
    # outer loop (ES)
    generations: PositiveInt = 100
    eval_every: PositiveInt = 10  # generations per segment (progress, checkpoints)
    population: PositiveInt = 16  # ES members (even: antithetic sampling)
    agents_per_env: PositiveInt = 2  # inner agents per member and training environment
    es_lr: NonNegFloat = 1e-2  # Adam on the search gradient
    es_sigma: PositiveFloat = 0.05  # perturbation standard deviation
    # inner loop
    inner_steps: PositiveInt = 4_000  # environment steps per inner agent
    num_envs: PositiveInt = 2  # parallel environments per inner agent
    window: PositiveInt = 100  # steps per environment between updates (the loss's window)
    inner_epochs: PositiveInt = 4  # Adam steps on the loss per window
    inner_lr: NonNegFloat = 1e-3
    hidden: Sequence[PositiveInt] = (64, 64)
    init_log_std: float = -0.5
    eval_episodes: PositiveInt = 2
    max_episode_steps: PositiveInt | None = None  # None: the protocol's (MetaGenRL's meta-test episode length)
    # loss network
    conv_channels: Sequence[int] = (16, 16)
    conv_kernels: Sequence[int] = (8, 4)
    conv_strides: Sequence[int] = (4, 2)
    loss_hidden: Sequence[int] = (32, 32)

    @property
    def num_evals(self) -> int:
        return self.generations // self.eval_every

    @property
    def inner_updates(self) -> int:
        return self.inner_steps // (self.num_envs * self.window)

    def validate(self):
        if self.population < 2 or self.population % 2:
            raise ValueError(f"population {self.population} must be an even number >= 2 (antithetic sampling)")
        for name in ("generations", "eval_every", "agents_per_env", "num_envs", "window", "inner_epochs",
                     "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"EPGConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.generations % self.eval_every:
            raise ValueError(f"generations {self.generations} must be a multiple of eval_every {self.eval_every}")
        if self.inner_steps % (self.num_envs * self.window) or self.inner_steps <= 0:
            raise ValueError(f"inner_steps {self.inner_steps} must be a positive multiple of num_envs * window = "
                             f"{self.num_envs * self.window}")
        if not (len(self.conv_channels) == len(self.conv_kernels) == len(self.conv_strides)):
            raise ValueError("conv_channels, conv_kernels and conv_strides must have the same length")
        if self.es_sigma <= 0 or self.es_lr < 0 or self.inner_lr < 0:
            raise ValueError("es_sigma must be > 0, es_lr and inner_lr >= 0")
        return self


@dataclass(frozen=True)
class RL2Config:
    trial_episodes: PositiveInt = 2  # episodes per trial (the hidden state carries across them)
    lanes: PositiveInt = 16  # parallel trials per family per update
    updates: PositiveInt = 100  # PPO updates (each on freshly drawn trials)
    eval_every: PositiveInt = 10  # updates between evaluations (a segment)
    eval_lanes: PositiveInt = 16  # trials per family per meta-test evaluation (functions["evaluate"])
    hidden: PositiveInt = 64  # GRU (and embedding) width
    gamma: UnitFloat = 0.99
    gae_lambda: UnitFloat = 0.95
    clip: PositiveFloat = 0.2
    lr: NonNegFloat = 3e-4
    epochs: PositiveInt = 4
    minibatches: PositiveInt = 4  # minibatches of lanes per epoch
    vf_coef: NonNegFloat = 0.5
    ent_coef: NonNegFloat = 0.0
    max_grad_norm: PositiveFloat = 0.5
    init_log_std: float = -0.5
    reward_scale: float = 1.0  # multiplies the reward in the input, the value target and the advantages

    @property
    def num_evals(self) -> int:
        return self.updates // self.eval_every

    def validate(self):
        for name in ("trial_episodes", "lanes", "updates", "eval_every", "eval_lanes", "hidden", "epochs",
                     "minibatches"):
            if getattr(self, name) < 1:
                raise ValueError(f"RL2Config.{name} must be >= 1, got {getattr(self, name)}")
        if self.updates % self.eval_every:
            raise ValueError(f"updates {self.updates} must be a multiple of eval_every {self.eval_every}")
        if not (0.0 <= self.gamma <= 1.0 and 0.0 <= self.gae_lambda <= 1.0):
            raise ValueError("gamma and gae_lambda must be in [0, 1]")
        if self.lr < 0:
            raise ValueError(f"lr must be >= 0, got {self.lr}")
        return self
