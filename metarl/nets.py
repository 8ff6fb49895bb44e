"""Flax modules shared by every agent and meta-method.

The actors are split into a feature extractor ``pi_bar(s)`` (``features``) and a last layer
(``head``), because the Online Meta-Critic reads ``pi_bar(s)``: call
``actor.apply(params, obs, method="features")`` for the features and
``actor.apply(params, feats, method="head")`` for the action from them.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]


class MLP(nn.Module):
    """Dense layers with an activation between them (and none after the last unless asked)."""

    features: Sequence[int]
    activation: Activation = nn.relu
    activate_final: bool = False
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x):
        for i, f in enumerate(self.features):
            x = nn.Dense(f, name=f"dense_{i}")(x)
            last = i == len(self.features) - 1
            if not last or self.activate_final:
                if self.layer_norm:
                    x = nn.LayerNorm(name=f"ln_{i}")(x)
                x = self.activation(x)
        return x


class CNNTorso(nn.Module):
    """Small convolutional torso (the outer-value paper's Snake network): conv 2x2/2, conv 2x2/1, flatten."""

    channels: Sequence[int] = (32, 32)
    kernels: Sequence[int] = (2, 2)
    strides: Sequence[int] = (2, 1)

    @nn.compact
    def __call__(self, x):
        for c, k, s in zip(self.channels, self.kernels, self.strides):
            x = nn.relu(nn.Conv(c, (k, k), strides=(s, s), padding="VALID")(x))
        return x.reshape(x.shape[:-3] + (-1,))


class DeterministicActor(nn.Module):
    """a = max_action * tanh(head(pi_bar(s))), pi_bar an MLP with activated output."""

    action_dim: int
    hidden: Sequence[int] = (400, 300)
    max_action: float = 1.0
    layer_norm: bool = False

    def setup(self):
        self.torso = MLP(tuple(self.hidden), activate_final=True, layer_norm=self.layer_norm)
        self.out = nn.Dense(self.action_dim)

    def features(self, obs):
        return self.torso(obs)

    def head(self, feats):
        return self.max_action * jnp.tanh(self.out(feats))

    def __call__(self, obs):
        return self.head(self.features(obs))


class GaussianActor(nn.Module):
    """Squashed Gaussian (tanh of a diagonal Gaussian) with state-dependent log-std, as in SAC."""

    action_dim: int
    hidden: Sequence[int] = (256, 256)
    log_std_min: float = -20.0
    log_std_max: float = 2.0

    def setup(self):
        self.torso = MLP(tuple(self.hidden), activate_final=True)
        self.out = nn.Dense(2 * self.action_dim)

    def features(self, obs):
        return self.torso(obs)

    def head(self, feats) -> "distrax.Distribution":
        import distrax  # imported here, not at the top: it pulls in TensorFlow Probability (~0.5 s per CLI start)

        mu, log_std = jnp.split(self.out(feats), 2, axis=-1)
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        base = distrax.MultivariateNormalDiag(mu, jnp.exp(log_std))
        return distrax.Transformed(base, distrax.Block(distrax.Tanh(), ndims=1))

    def mode(self, obs):
        mu, _ = jnp.split(self.out(self.features(obs)), 2, axis=-1)
        return jnp.tanh(mu)

    def __call__(self, obs):
        return self.head(self.features(obs))


class Critic(nn.Module):
    """Q(s, a): an MLP on the concatenation of observation and action."""

    hidden: Sequence[int] = (400, 300)
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        return MLP(tuple(self.hidden) + (1,), layer_norm=self.layer_norm)(x)[..., 0]


class TwinCritic(nn.Module):
    """Two independent Q networks, evaluated together: returns an array of shape (2, ...)."""

    hidden: Sequence[int] = (400, 300)
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs, action):
        q1 = Critic(self.hidden, self.layer_norm, name="q1")(obs, action)
        q2 = Critic(self.hidden, self.layer_norm, name="q2")(obs, action)
        return jnp.stack([q1, q2])


def count_params(params) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
