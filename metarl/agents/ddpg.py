"""DDPG ('OurDDPG' of Fujimoto et al.): TD3's code path with a single critic, no target smoothing, no delay."""
from metarl.agents.td3 import DDPGConfig, make_ddpg

__all__ = ["DDPGConfig", "make_ddpg"]
