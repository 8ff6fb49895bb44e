"""Agents as pure functions: ``make_agent("td3", spec)`` returns an :class:`Agent` function table.

The configs (``TD3Config``, ``SACConfig``, ``DDPGConfig``, ``TD3_HP``, ``SAC_HP``) live in the jax-free
:mod:`metarl.agents.configs`; the agents (td3, sac, base) load on first use."""
from __future__ import annotations

import dataclasses

from metarl.agents.configs import AGENT_CONFIGS, SAC_HP, TD3_HP, DDPGConfig, SACConfig, TD3Config
from metarl.lazy import lazy_package

ALGOS = tuple(AGENT_CONFIGS)


def check_algo(algo: str):
    """A ValueError naming ``algo`` and the valid ones unless it is an off-policy agent's name."""
    if algo not in AGENT_CONFIGS:
        raise ValueError(f"unknown algo {algo!r}; valid: {', '.join(AGENT_CONFIGS)}")


def agent_config(algo: str, **overrides):
    """The algorithm's config dataclass with ``overrides`` applied (unknown fields are an error)."""
    check_algo(algo)
    cls = AGENT_CONFIGS[algo]
    names = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValueError(f"unknown {algo} config field(s) {bad}; valid: {', '.join(sorted(names))}")
    return cls(**overrides)


def off_policy() -> dict:
    """algo -> (make function, config class)."""
    from metarl.agents.sac import make_sac
    from metarl.agents.td3 import make_ddpg, make_td3

    makers = {"ddpg": make_ddpg, "td3": make_td3, "sac": make_sac}
    return {a: (makers[a], AGENT_CONFIGS[a]) for a in AGENT_CONFIGS}


def make_agent(algo: str, spec, config=None, **overrides):
    """The :class:`Agent` of ``algo`` for an environment of ``spec`` (``config``, or the defaults with ``overrides``)."""
    check_algo(algo)
    config = config if config is not None else agent_config(algo, **overrides)
    return off_policy()[algo][0](spec, config)


_lazy_getattr, __dir__ = lazy_package(__name__, ("base", "td3", "sac"))


def __getattr__(name: str):
    if name == "OFF_POLICY":
        return off_policy()
    return _lazy_getattr(name)


__all__ = ["Agent", "AgentState", "make_agent", "agent_config", "check_algo", "ALGOS", "AGENT_CONFIGS", "OFF_POLICY", "TD3Config",
           "DDPGConfig", "SACConfig", "TD3_HP", "SAC_HP"]
