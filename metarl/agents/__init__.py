"""Agents as pure functions: ``make_agent("td3", spec)`` returns an :class:`Agent` function table."""
from __future__ import annotations

import dataclasses

from metarl.agents.base import Agent, AgentState
from metarl.agents.sac import SACConfig, make_sac
from metarl.agents.td3 import DDPGConfig, TD3Config, make_ddpg, make_td3

OFF_POLICY = {"ddpg": (make_ddpg, DDPGConfig), "td3": (make_td3, TD3Config), "sac": (make_sac, SACConfig)}


def agent_config(algo: str, **overrides):
    """The algorithm's config dataclass with ``overrides`` applied (unknown fields are an error)."""
    if algo not in OFF_POLICY:
        raise ValueError(f"unknown algo {algo!r}; valid: {', '.join(OFF_POLICY)}")
    cls = OFF_POLICY[algo][1]
    names = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValueError(f"unknown {algo} config field(s) {bad}; valid: {', '.join(sorted(names))}")
    return cls(**overrides)


def make_agent(algo: str, spec, config=None, **overrides) -> Agent:
    if algo not in OFF_POLICY:
        raise ValueError(f"unknown algo {algo!r}; valid: {', '.join(OFF_POLICY)}")
    config = config if config is not None else agent_config(algo, **overrides)
    return OFF_POLICY[algo][0](spec, config)


__all__ = ["Agent", "AgentState", "make_agent", "agent_config", "OFF_POLICY", "TD3Config", "DDPGConfig", "SACConfig"]
