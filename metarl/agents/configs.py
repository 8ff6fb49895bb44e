"""The off-policy agents' configs and default hyperparameters, jax-free, so that a command line built from
them answers --help without loading jax (the agents themselves: td3.py, sac.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class TD3Config:
    actor_hidden: Sequence[int] = (400, 300)
    critic_hidden: Sequence[int] = (400, 300)
    batch_size: int = 100
    twin: bool = True  # twin critics, min in the target
    target_smoothing: bool = True
    policy_delay: int = 2
    layer_norm: bool = False


TD3_HP = dict(actor_lr=1e-3, critic_lr=1e-3, gamma=0.99, tau=0.005, expl_noise=0.1, policy_noise=0.2,
              noise_clip=0.5)


@dataclass(frozen=True)
class DDPGConfig(TD3Config):
    twin: bool = False
    target_smoothing: bool = False
    policy_delay: int = 1


@dataclass(frozen=True)
class SACConfig:
    actor_hidden: Sequence[int] = (256, 256)
    critic_hidden: Sequence[int] = (256, 256)
    batch_size: int = 256
    auto_alpha: bool = True
    target_entropy: float | None = None  # None: -|A|


SAC_HP = dict(actor_lr=3e-4, critic_lr=3e-4, alpha_lr=3e-4, gamma=0.99, tau=0.005, init_alpha=1.0)


AGENT_CONFIGS = {"ddpg": DDPGConfig, "td3": TD3Config, "sac": SACConfig}
