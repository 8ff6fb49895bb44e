"""Differentiable arm models for the model-based meta-critic: serial chains written as MJCF, loaded with
``brax.io.mjcf`` and stepped with Brax's generalized pipeline (reverse-differentiable; the mjx backend
is not).

Link masses and lengths are *traced* inputs: ``ArmParams`` is a pytree of arrays, and
``with_params(sys, params)`` rewrites the loaded system's link offsets, centres of mass and inertias
from them inside the compiled program, so a sweep over masses or lengths is one compiled program.
Each link is a rod along its chain axis (com at l/2, inertia m l^2/12 about the perpendicular axes);
each joint has damping and armature (rotor inertia), so a zero end-effector mass stays well posed.
Gravity is off (a gravity-compensated arm); actuators are motors with gears, actions in [-1, 1].
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metarl.meta.model_based_critic import Task


class ArmParams(NamedTuple):
    masses: jax.Array   # (n_links,)
    lengths: jax.Array  # (n_links,)


@dataclasses.dataclass(frozen=True)
class ArmSpec:
    name: str
    axes: tuple          # joint axis per link, in the link frame
    along: tuple         # direction each link extends in (its frame)
    masses: tuple
    lengths: tuple
    gears: tuple
    damping: float
    armature: float
    timestep: float = 0.02
    radius: float = 0.04


# The 2-link planar reacher: 1 m, 1 kg links, joint damping 0.5 (the learned-loss reacher's model).
REACHER2 = ArmSpec(name="reacher2", axes=((0, 0, 1), (0, 0, 1)), along=((1, 0, 0), (1, 0, 0)),
                   masses=(1.0, 1.0), lengths=(1.0, 1.0), gears=(10.0, 10.0), damping=0.5, armature=0.1)

# A 7-DoF chain shaped like a KUKA LBR iiwa: alternating z / y hinges along a vertical chain, iiwa-like
# link masses (the last, the end effector, 3.12 kg as in the paper's Table 2) and lengths (the last
# one 0.126 m, the flange), torques scaled down from the iiwa's limits.
ARM7 = ArmSpec(name="arm7", axes=((0, 0, 1), (0, 1, 0), (0, 0, 1), (0, -1, 0), (0, 0, 1), (0, 1, 0), (0, 0, 1)),
               along=((0, 0, 1),) * 7,
               masses=(3.45, 3.48, 4.06, 3.48, 2.16, 2.35, 3.12),
               lengths=(0.36, 0.2045, 0.2155, 0.1845, 0.2155, 0.081, 0.126),
               gears=(20.0, 20.0, 12.0, 12.0, 8.0, 4.0, 4.0), damping=2.0, armature=0.3)


def chain_xml(spec: ArmSpec) -> str:
    """MJCF of the serial chain (contacts off)."""
    fmt = lambda v: " ".join(f"{x:g}" for x in v)
    body = ""
    for i in reversed(range(len(spec.axes))):
        pos = (0.0, 0.0, 0.0) if i == 0 else tuple(spec.lengths[i - 1] * d for d in spec.along[i - 1])
        end = tuple(spec.lengths[i] * d for d in spec.along[i])
        body = (f'<body name="link{i}" pos="{fmt(pos)}">'
                f'<joint name="j{i}" type="hinge" axis="{fmt(spec.axes[i])}" damping="{spec.damping:g}" '
                f'armature="{spec.armature:g}"/>'
                f'<geom type="capsule" fromto="0 0 0 {fmt(end)}" size="{spec.radius:g}" mass="{spec.masses[i]:g}"/>'
                f'{body}</body>')
    motors = "".join(f'<motor joint="j{i}" gear="{g:g}" ctrlrange="-1 1" ctrllimited="true"/>'
                     for i, g in enumerate(spec.gears))
    return (f'<mujoco model="{spec.name}"><compiler angle="radian"/>'
            f'<option timestep="{spec.timestep:g}" gravity="0 0 0"/>'
            f'<default><geom contype="0" conaffinity="0"/></default>'
            f'<worldbody>{body}</worldbody><actuator>{motors}</actuator></mujoco>')


def load(spec: ArmSpec):
    from brax.io import mjcf  # Brax (and MuJoCo) load on first use, not on import (a CLI's --help stays fast)

    return mjcf.loads(chain_xml(spec))


def default_params(spec: ArmSpec) -> ArmParams:
    return ArmParams(jnp.asarray(spec.masses, jnp.float32), jnp.asarray(spec.lengths, jnp.float32))


def with_params(sys, spec: ArmSpec, params: ArmParams):
    """The system with link masses and lengths taken from ``params`` (traceable)."""
    along = jnp.asarray(spec.along, jnp.float32)                     # (n, 3)
    m, l = params.masses, params.lengths
    child_pos = jnp.concatenate([jnp.zeros((1, 3)), l[:-1, None] * along[:-1]], 0)
    com = 0.5 * l[:, None] * along
    r2 = spec.radius ** 2
    perp = m * (l ** 2 / 12.0 + r2 / 4.0)
    axial = m * r2 / 2.0
    eye = jnp.eye(3)
    inertia = (perp[:, None, None] * (eye - along[:, :, None] * along[:, None, :])
               + axial[:, None, None] * along[:, :, None] * along[:, None, :])
    rot = jnp.tile(jnp.array([1.0, 0.0, 0.0, 0.0]), (m.shape[0], 1))
    return sys.tree_replace({"link.transform.pos": child_pos, "link.inertia.transform.pos": com,
                             "link.inertia.transform.rot": rot, "link.inertia.i": inertia,
                             "link.inertia.mass": m})


def make_task(spec: ArmSpec) -> tuple[Task, ArmParams]:
    """The differentiable model as a ``Task`` over flat states x = [q, qd]; ``dyn`` is an ArmParams."""
    from brax.generalized import pipeline as gpipeline

    sys = load(spec)
    n = len(spec.axes)

    def prepare(dyn: ArmParams):
        return with_params(sys, spec, dyn)

    # Jitted so that Brax's pipeline is traced once per shape and its jaxpr reused by every rollout, gradient
    # and vmap that calls it (each trace of the pipeline's Python costs ~0.5 s; a meta-training program holds
    # dozens); inside an outer jit they are inlined, the same computation.
    @jax.jit
    def init(s):
        return gpipeline.init(s, jnp.zeros(n), jnp.zeros(n))

    @jax.jit
    def step(s, st, u):
        return gpipeline.step(s, st, jnp.clip(u, -1.0, 1.0))

    def obs(st):
        return jnp.concatenate([st.q, st.qd])

    task = Task(init=init, step=step, obs=obs, state_dim=2 * n, action_dim=n, goal_dim=n, prepare=prepare)
    return task, default_params(spec)
