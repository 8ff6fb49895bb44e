"""The outer-value method's settings, jax-free (a command line built from them answers --help without
loading jax): the meta-parameters (:class:`MetaConfig`), the Discounting Chain and Snake settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from metarl.config_cli import NonNegFloat, OpenUnitFloat, PositiveFloat, PositiveInt, UnitFloat

METHODS = ("a2c", "mg", "bmg")


@dataclass(frozen=True)
class MetaConfig:
    """Meta-parameters and their optimiser.

    ``gamma = gamma_low + (gamma_high - gamma_low) * sigmoid(logit)``; with ``meta_lambda`` the trace
    parameter of the inner TD(lambda) targets is a second meta-parameter,
    ``lambda = lam_low + (lam_high - lam_low) * sigmoid(lam_logit)`` from ``lam_init`` (otherwise the
    problem's fixed lambda is used). Both share one Adam (and one global-norm clip).
    """

    gamma_low: float = 0.0
    gamma_high: float = 1.0
    gamma_init: float = 0.8
    meta_lr: float = 3e-3
    meta_clip: float | None = None  # global-norm clip of the meta-gradient
    meta_lambda: bool = False
    lam_low: float = 0.0
    lam_high: float = 1.0
    lam_init: float = 0.95

    def __post_init__(self):
        for name, lo, hi, init in (("gamma", self.gamma_low, self.gamma_high, self.gamma_init),
                                   ("lambda", self.lam_low, self.lam_high, self.lam_init)):
            if not lo < init < hi:
                raise ValueError(f"{name} initial value {init} must lie strictly inside its sigmoid bounds "
                                 f"({lo}, {hi})")

    def optimizer(self):
        import optax

        adam = optax.adam(self.meta_lr)
        return adam if self.meta_clip is None else optax.chain(optax.clip_by_global_norm(self.meta_clip), adam)

    def decode(self, eta):
        """``(gamma, lam)`` from the meta-parameters ``eta`` (a dict, or a bare gamma logit); ``lam`` is
        None when lambda is not meta-learned."""
        from metarl.meta.outer_value.core import to_gamma

        if not isinstance(eta, dict):
            eta = {"gamma": eta}
        gamma = to_gamma(eta["gamma"], self.gamma_low, self.gamma_high)
        lam = to_gamma(eta["lam"], self.lam_low, self.lam_high) if "lam" in eta else None
        return gamma, lam


CHAIN_CRITICS = ("analytic", "learned")


@dataclass(frozen=True)
class ChainConfig:
    """The paper's Discounting Chain setting (Table 1, Appendix C.1)."""

    batch_size: PositiveInt = 128
    horizon: PositiveInt = 100  # one whole episode per rollout
    lr: PositiveFloat = 0.5  # inner SGD
    entropy_cost: NonNegFloat = 0.005
    outer_gamma: UnitFloat = 1.0
    outer_entropy_cost: NonNegFloat = 0.005
    normalize_advantages: bool = False
    # The authors' code values the first state with gamma^{t_a} instead of gamma^{t_a - 1} (one
    # discount too many: gymnax pays arm 0 on the first transition). False: the exact value.
    authors_first_step_value: bool = False
    lam: UnitFloat = 0.0  # inner TD(lambda) when lambda is not meta-learned (Table 1: 0)
    outer_lam: UnitFloat = 0.0  # lambda' of the outer loss (Table 1: 0)
    # "analytic": the exact values (the paper); "learned": tabular critics over (context, t) trained by
    # TD(lambda) inside the inner loss, the inner one with the inner gamma, the outer one with gamma'.
    critic: Literal[CHAIN_CRITICS] = "analytic"
    critic_cost: NonNegFloat = 1.0  # weight of each learned critic's TD loss (summed over time, mean over episodes)

    def __post_init__(self):
        if self.critic not in CHAIN_CRITICS:
            raise ValueError(f"unknown chain critic {self.critic!r}; valid: {', '.join(CHAIN_CRITICS)}")


@dataclass(frozen=True)
class SnakeConfig:
    """The paper's Snake setting (Table 1, Appendix C.2)."""

    num_envs: PositiveInt = 512
    horizon: PositiveInt = 5
    lr: PositiveFloat = 5e-4  # inner RMSProp
    rms_decay: UnitFloat = 0.9
    rms_eps: PositiveFloat = 1e-8
    lam: UnitFloat = 0.95
    pg_cost: NonNegFloat = 1.0
    td_cost: NonNegFloat = 0.5
    entropy_cost: NonNegFloat = 0.01
    outer_gamma: UnitFloat = 1.0
    outer_lam: UnitFloat = 1.0
    outer_entropy_cost: NonNegFloat = 0.0
    outer_td_cost: NonNegFloat = 1.0  # weight of the outer critic's TD(lambda') loss inside the inner loss
    separate_outer_network: bool = False  # False: second head on stop_gradient(torso) (the paper)
    normalize_advantages: bool = False
    actor_hidden: tuple[PositiveInt, ...] = (64, 64)
    critic_hidden: tuple[PositiveInt, ...] = (128, 128)


@dataclass(frozen=True)
class SnakeMeta:
    """The meta-parameters of the paper's Snake agents (Table 1, Appendix C.2): the discount's start, each
    method's meta step size and the meta-gradient's clip; the experiment and the GPU kit build their agents
    with :meth:`configs`."""

    gamma_init: OpenUnitFloat = 0.8  # MG/BMG's discount at the start (sigmoid-bounded in (0, 1))
    mg_meta_lr: PositiveFloat = 3e-3
    bmg_meta_lr: PositiveFloat = 6e-3
    meta_clip: PositiveFloat | None = 0.1  # clip the meta-gradient's norm (None: no clipping)
    meta_lambda: bool = False  # meta-learn lambda too (sigmoid onto (0, 1), from --lam)

    def configs(self, lam_init: float) -> dict:
        """method -> :class:`MetaConfig` (A2C: meta step size 0, its discount fixed at ``gamma_init``)."""
        lr = {"a2c": 0.0, "mg": self.mg_meta_lr, "bmg": self.bmg_meta_lr}
        return {m: MetaConfig(0.0, 1.0, self.gamma_init, lr[m], self.meta_clip,
                              meta_lambda=self.meta_lambda and m != "a2c", lam_init=lam_init) for m in lr}


# The authors' released per-seed Snake results at update 29,200 (10 seeds), mean and sd; the experiment's
# table and the GPU kit's report stand ours beside them.
SNAKE_PAPER = {
    "A2C": {"return": "17.38 ± 0.34", "final_gamma": "0.8", "outer_advantage": "", "return_14600": "15.59"},
    "MG": {"return": "24.90 ± 6.26", "final_gamma": "0.965 ± 0.026", "outer_advantage": "0.39", "return_14600": "17.52"},
    "MG+outer critic": {"return": "34.22 ± 0.27", "final_gamma": "0.996 ± 0.002", "outer_advantage": "0.0006",
                        "return_14600": "29.90"},
    "BMG": {"return": "24.00 ± 11.47", "final_gamma": "0.811 ± 0.244", "outer_advantage": "0.38", "return_14600": "15.61"},
    "BMG+outer critic": {"return": "31.58 ± 6.04", "final_gamma": "0.988 ± 0.021", "outer_advantage": "0.003",
                         "return_14600": "23.21"},
}
