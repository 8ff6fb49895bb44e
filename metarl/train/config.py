"""The off-policy training run's config (TrainConfig), the checks of its agent overrides and
hyperparameters, and the sweep grid."""
from __future__ import annotations

import dataclasses
import itertools
import math
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np

from metarl.agents import AGENT_CONFIGS, ALGOS, agent_config, check_algo
from metarl.config_cli import NonNegInt, NotAnOption, PositiveInt, named
from metarl.envs.names import BRAX_BACKENDS


@dataclass(frozen=True)
class TrainConfig:
    algo: Literal[ALGOS] = "td3"
    env: str = "gymnax/Pendulum-v1"  # e.g. brax/hopper, gymnax/Pendulum-v1 (--list-envs)
    backend: Literal[BRAX_BACKENDS] = "positional"  # Brax's physics backend
    seeds: PositiveInt = 1  # independent runs (times the sweep's combinations), vmapped in one program
    seed: NonNegInt = 0  # the run's key: seed i of --seeds trains from split(PRNGKey(seed), seeds)[i]
    total_steps: Annotated[PositiveInt, named("steps")] = 20_000  # environment steps per run, warm-up included
    learning_starts: NonNegInt = 1_000  # uniformly random warm-up steps (the papers use 10k on MuJoCo)
    eval_every: PositiveInt = 1_000
    eval_episodes: PositiveInt = 5
    evals_per_chunk: PositiveInt = 1  # evaluations per compiled chunk (progress/checkpoint granularity)
    buffer_size: PositiveInt = 1_000_000
    updates_per_step: PositiveInt = 1
    static_schedule: bool = True  # lay out TD3's policy delay statically (False: lax.cond per update)
    max_episode_steps: PositiveInt | None = None  # episode length (None: the env's own)
    normalize_obs: bool = False
    # static agent config overrides (hidden sizes, batch_size); on the command line: --set name=value
    agent: NotAnOption[dict] = field(default_factory=dict)
    hp: NotAnOption[dict] = field(default_factory=dict)  # numeric hyperparameters; a list value is a sweep (--set)
    # Run only entry ``seed_index`` of the flat run axis (combo c, seed s) -> c * seeds + s, with the same
    # key and hyperparameters as in the vmapped set. See :func:`run_keys_and_hp` for how closely it matches.
    seed_index: NonNegInt | None = None

    def validate(self):
        check_algo(self.algo)
        check_agent_overrides(self.algo, self.agent)
        check_hp_values(self.hp)
        for name in ("seeds", "total_steps", "eval_every", "eval_episodes", "evals_per_chunk",
                     "buffer_size", "updates_per_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_starts < 0:
            raise ValueError(f"learning_starts must be >= 0, got {self.learning_starts}")
        train_steps = self.total_steps - self.learning_starts
        if train_steps <= 0 or train_steps % (self.eval_every * self.evals_per_chunk):
            raise ValueError(
                f"total_steps - learning_starts = {train_steps} must be a positive multiple of "
                f"eval_every * evals_per_chunk = {self.eval_every * self.evals_per_chunk}")
        batch = agent_config(self.algo, **self.agent).batch_size
        if batch > max(self.learning_starts, 1) or batch > self.buffer_size:
            raise ValueError(
                f"batch_size {batch} is larger than the filled buffer at the first update "
                f"(learning_starts={self.learning_starts}, buffer_size={self.buffer_size}); "
                f"use learning_starts >= {batch} or a smaller batch")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 (or None for the env's own), got {self.max_episode_steps}")
        if self.seed_index is not None:
            n = len(sweep_grid(self.hp)[0]) * self.seeds
            if not 0 <= self.seed_index < n:
                raise ValueError(f"seed_index {self.seed_index} is out of range: this config has {n} run(s), "
                                 f"valid seed_index 0..{n - 1}")
        return self

    @property
    def num_chunks(self) -> int:
        return (self.total_steps - self.learning_starts) // (self.eval_every * self.evals_per_chunk)


def _agent_field_types(algo: str) -> dict:
    cls = AGENT_CONFIGS[algo]
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def _type_name(tp) -> str:
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number >= 1"
    if typing.get_origin(tp) is not None and typing.get_args(tp) and typing.get_args(tp)[0] is int:
        return "whole numbers >= 1 separated by commas (e.g. 64,64)"
    return getattr(tp, "__name__", str(tp))


def _value_ok(tp, v) -> bool:
    if tp is bool:
        return isinstance(v, (bool, np.bool_))
    if tp is int:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
    if typing.get_origin(tp) is not None and typing.get_args(tp) and typing.get_args(tp)[0] is int:
        return (isinstance(v, (list, tuple)) and len(v) > 0
                and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 1 for x in v))
    return True


def check_agent_overrides(algo: str, agent: dict):
    """Each agent-config override has its field's type (ints >= 1, bools, tuples of ints >= 1)."""
    types = _agent_field_types(algo)
    for name, v in agent.items():
        if name not in types:
            raise ValueError(f"unknown {algo} config field {name!r}; valid: {', '.join(sorted(types))}")
        if not _value_ok(types[name], v):
            raise ValueError(f"{algo} config field {name}={v!r} is invalid; {name} takes {_type_name(types[name])}")


def check_hp_values(hp: dict):
    """Hyperparameter values are finite numbers (a list of them is a sweep)."""
    for name, v in hp.items():
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(x, bool) or not isinstance(x, (int, float, np.number)) or not math.isfinite(x):
                raise ValueError(f"hyperparameter {name}={x!r} is invalid; {name} takes a finite number "
                                 "(a list of them is a sweep)")


def sweep_grid(hp: dict) -> tuple[list[dict], dict]:
    """Expand list-valued hyperparameters into their cartesian grid.

    Returns the list of combinations and the stacked arrays {name: [n_combos]} (only swept names)."""
    keys = sorted(hp)
    values = [v if isinstance(v, (list, tuple)) else [v] for v in (hp[k] for k in keys)]
    combos = [dict(zip(keys, c)) for c in itertools.product(*values)] or [{}]
    return combos, {k: np.asarray([c[k] for c in combos], np.float32) for k in keys}
