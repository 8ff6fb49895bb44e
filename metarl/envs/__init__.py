"""Environments: ``make("brax/hopper")``, ``make("gymnax/Pendulum-v1")``, ``make("jumanji/Snake-6x6")``."""
from __future__ import annotations

from typing import TYPE_CHECKING

from metarl.envs.names import BRAX_BACKENDS, JUMANJI_NAMES, SOURCES, brax_names, gymnax_names, registered
from metarl.lazy import lazy_package

if TYPE_CHECKING:
    from metarl.envs.core import Env

# the jax parts (core: Env, EnvSpec, TimeStep, ...; sources: make_brax, ...) load on first use
__getattr__, __dir__ = lazy_package(__name__, ("core", "sources"))


def make(name: str, *, backend: str = "positional", max_episode_steps: int | None = None,
         rescale_actions: bool = True, normalize_obs: bool = False, **kwargs) -> Env:
    """Build a wrapped environment from ``"<source>/<name>"``.

    ``backend`` is Brax's physics pipeline (positional, spring, generalized, mjx); other sources ignore it.
    Extra keyword arguments go to the source's constructor.
    """
    from metarl.envs.core import Env
    from metarl.envs.sources import make_brax, make_gymnax, make_jumanji

    source, _, env_name = name.partition("/")
    if source not in SOURCES or not env_name:
        raise ValueError(f"unknown environment {name!r}: names are '<source>/<env>' with source in "
                         f"{SOURCES}; valid names: {', '.join(registered())}")
    if source == "brax":
        valid = brax_names()
        if env_name not in valid:
            raise ValueError(f"unknown Brax environment {name!r}; valid: {', '.join('brax/' + v for v in valid)}")
        raw = make_brax(env_name, backend=backend, **kwargs)
    elif source == "gymnax":
        valid = gymnax_names()
        if env_name not in valid:
            raise ValueError(f"unknown Gymnax environment {name!r}; valid: {', '.join('gymnax/' + v for v in valid)}")
        raw = make_gymnax(env_name, **kwargs)
    else:
        if env_name not in JUMANJI_NAMES:
            raise ValueError(f"unknown Jumanji environment {name!r}; valid: "
                             f"{', '.join('jumanji/' + v for v in JUMANJI_NAMES)}")
        raw = make_jumanji(env_name, **kwargs)
    return Env(raw, max_episode_steps=max_episode_steps, rescale_actions=rescale_actions,
               normalize_obs=normalize_obs)


__all__ = ["Env", "EnvSpec", "EnvState", "RawEnv", "TimeStep", "make", "registered", "BRAX_BACKENDS"]
