"""Environment names, jax-free (a command line checks an --env without loading jax; the sources load on
first use): every valid name is ``"<source>/<env>"``."""
from __future__ import annotations

SOURCES = ("brax", "gymnax", "jumanji")
BRAX_BACKENDS = ("positional", "spring", "generalized", "mjx")
# Brax envs whose step() rescales an action in [-1, 1] to the actuators' control range itself
# (brax 0.14.2: inverted_pendulum, humanoid, humanoidstandup, pusher); the rest clip to ctrl_range.
BRAX_SELF_SCALING = ("inverted_pendulum", "humanoid", "humanoidstandup", "pusher")


def brax_names() -> list[str]:
    from brax import envs as brax_envs

    return sorted(n for n in brax_envs._envs if n != "fast")


def gymnax_names() -> list[str]:
    import gymnax

    return sorted(gymnax.registered_envs)


JUMANJI_NAMES = ("Snake-6x6", "Snake-12x12")


def registered() -> list[str]:
    """Every valid environment name."""
    return ([f"brax/{n}" for n in brax_names()] + [f"gymnax/{n}" for n in gymnax_names()]
            + [f"jumanji/{n}" for n in JUMANJI_NAMES])
