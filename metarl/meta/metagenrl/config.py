"""MetaGenRL's settings, jax-free (a command line built from them answers --help without loading jax): the
population config (the paper's Tables 3 and 4, :class:`MetaGenRLConfig`), the objective's architecture
(:class:`ObjectiveConfig`), the earlier behaviours kept as options, and the meta-test variants."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from metarl.agents.configs import TD3_HP


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} {value!r}: valid choices: {', '.join(choices)}")



@dataclass(frozen=True)
class ObjectiveConfig:
    action_layers: Sequence[int] = (32, 32, 32)  # Table 3: 3 conv layers of 32 filters
    scalar_layers: Sequence[int] = (32, 32, 8)
    lstm_units: int = 32
    out_layers: Sequence[int] = (32, 32)
    eta: float = 1000.0  # error bound
    use_t: bool = True  # ablations of Section 5.2
    use_v: bool = True  # V_t (and V_t+1 unless use_v_next is False)
    use_v_next: bool = True
    # --- Architecture details from the authors' code (model.py, ray_configs.py); the second value
    # named in each comment is this module's earlier behaviour (LEGACY_OBJECTIVE), kept so that
    # objectives saved before the change load and compute the same function.
    # Hidden units of the scalar and output MLPs: "relu_square" (half ReLU, half square: the
    # authors' obj_func_activation for every objective MLP) or "relu".
    hidden_activation: str = "relu_square"
    # Where LayerNorm sits in the action branch: "after" the activation (the authors' mlp: dense ->
    # activation -> layer_norm) or "before" it (dense -> LayerNorm -> activation).
    layer_norm_order: str = "after"
    out_layer_norm: bool = True  # LayerNorm after the output MLP's hidden activations (authors: yes)
    # LayerNorm in the scalar MLP: the authors' input transform has none
    # (obj_func_input_transform_layernorm = False), although the issue that prompted this asked for it.
    scalar_layer_norm: bool = False
    # V_t and V_t+1: "stacked" (the authors': the window's values V(s_0..s_T-1) and V(s_T) standardised
    # once together, then V_t+1 zeroed after a terminal step) or "separate" (each standardised with its
    # own statistics, V_t+1 zeroed before).
    value_norm: str = "stacked"
    # t/T: "window" (the authors': the step's position in the 20-step window over the window length)
    # or "episode" (the step in the episode over the episode limit).
    time_input: str = "window"
    # Initial forget-gate bias of the LSTM: TF's LSTMCell adds forget_bias = 1.0; an initial offset of
    # the trainable bias is the same function class with the same gradients. Earlier: 0.0. Init only.
    lstm_forget_bias: float = 1.0
    # Dense kernels (and the LSTM's input kernels): "glorot_uniform" (TF1's default, the authors') or
    # "lecun_normal" (flax's default, used earlier). Init only.
    kernel_init: str = "glorot_uniform"

    def __post_init__(self):
        _check_choice("hidden_activation", self.hidden_activation, ("relu_square", "relu"))
        _check_choice("layer_norm_order", self.layer_norm_order, ("after", "before"))
        _check_choice("value_norm", self.value_norm, ("stacked", "separate"))
        _check_choice("time_input", self.time_input, ("window", "episode"))
        _check_choice("kernel_init", self.kernel_init, ("glorot_uniform", "lecun_normal"))

    @property
    def num_scalars(self) -> int:
        return 1 + int(self.use_t) + int(self.use_v) + int(self.use_v and self.use_v_next)


# The values this module used before it followed the authors' code (and which objectives saved then,
# whose objective.json lacks these keys, are loaded with).
LEGACY_OBJECTIVE = dict(hidden_activation="relu", layer_norm_order="before", out_layer_norm=False,
                        scalar_layer_norm=False, value_norm="separate", time_input="episode",
                        lstm_forget_bias=0.0, kernel_init="lecun_normal")


@dataclass(frozen=True)
class MetaGenRLConfig:
    """Defaults: the paper's Tables 3 and 4 (per agent) and, where they are silent, the authors' code.
    The second value named in a comment is this module's earlier behaviour (LEGACY_TRAINING)."""

    envs: tuple = ("brax/halfcheetah", "gymnax/MountainCarContinuous-v0")
    agents_per_env: int = 10  # 20 agents in all
    total_steps: int = 1_000_000  # environment steps per agent, warm-up included
    learning_starts: int = 10_000  # random exploration steps
    anneal_steps: int = 10_000  # training steps from the TD3 actor loss to L_alpha
    eval_every: int = 10_000  # environment steps between evaluations
    eval_episodes: int = 5
    buffer_size: int = 1_000_000
    window: int = 20  # truncated episode length
    batch_windows: int = 100  # batch size (in windows)
    hidden: Sequence[int] = (350, 350)  # critic and policy: 3 layers (2 hidden + output) of 350, LayerNorm
    inner_steps: int = 1  # Eq. 6 (1) or Eq. 8 (3, 5)
    inner_lr: float = 1e-3  # second-order learning rate
    objective_lr: float = 1e-3
    clip_norm: float = 1.0  # global-norm clip of the objective's gradient
    # Adam's epsilon for alpha: the default (the authors' tf.train.AdamOptimizer). Earlier 1e-20, which
    # hid a vanishing meta-gradient by scaling float32 round-off up to full-size steps.
    objective_adam_eps: float = 1e-8
    # The meta-gradient's clip: "agent" (each agent's gradient clipped to clip_norm, then the mean over
    # the population: the authors' workers clip, their server averages) or "mean" (the mean clipped).
    meta_clip: str = "agent"
    # The meta-gradient's batch: "separate" (a fresh batch of (inner_steps + 1) * batch_windows windows,
    # the first inner_steps chunks of batch_windows for the inner steps, the whole for the outer
    # loss: the authors' large batch) or "policy" (the policy step's batch, cut into inner_steps + 1
    # chunks: cheaper, half the inner batch).
    meta_batch: str = "separate"
    # L_alpha in the inner step(s): "sum" of its per-step values over the chunk (the authors') or
    # "window_mean" (the sum over the chunk's windows' steps divided by the number of windows).
    inner_loss_reduction: str = "sum"
    # The policy at which the meta-gradient is taken: "after_policy" (after this cycle's policy step;
    # the authors compute it after the critic and policy updates) or "before_policy".
    meta_grad_state: str = "after_policy"
    # The policy step's loss: "step_mean" (per step p * l_t - (1 - p) * Q1_t [+ REINFORCE term], one mean
    # over the B * T steps, l_t zero at invalid steps: the authors' reduce_mean(obj * mask)) or
    # "window_mean" (L_alpha and REINFORCE summed over each window and averaged over windows, mixed with
    # TD3's per-transition mean: L_alpha then weighs T = 20 times more).
    policy_loss_reduction: str = "step_mean"
    # Global-norm clip of the policy gradient (paper Table 4 / the authors' _clipped_minimize, for the
    # objective and the TD3 loss alike); None: no clipping (plain TD3's actor step).
    policy_clip_norm: float | None = 1.0
    # MetaGradMonitor: warn when an agent's meta-gradient norm (before clipping) stays below
    # collapse_threshold for collapse_patience consecutive meta-steps.
    collapse_threshold: float = 1e-6
    collapse_patience: int = 100
    # the agents' TD3 hyperparameters: TD3's own (metarl.agents.td3.TD3_HP), stated once there
    gamma: float = TD3_HP["gamma"]
    tau: float = TD3_HP["tau"]
    actor_lr: float = TD3_HP["actor_lr"]
    critic_lr: float = TD3_HP["critic_lr"]
    expl_noise: float = TD3_HP["expl_noise"]
    gae_lambda: float = 0.97  # the off-policy REINFORCE baseline
    max_episode_steps: int | None = None
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    def validate(self):
        if self.eval_every % 2:
            raise ValueError(f"eval_every must be even (two env steps per update cycle), got {self.eval_every}")
        train = self.total_steps - self.learning_starts
        if train <= 0 or train % self.eval_every:
            raise ValueError(f"total_steps - learning_starts = {train} must be a positive multiple of "
                             f"eval_every = {self.eval_every}")
        if self.learning_starts < self.window:
            raise ValueError(f"learning_starts {self.learning_starts} < window {self.window}: nothing to sample")
        if self.batch_windows < self.inner_steps + 1:
            raise ValueError(f"batch_windows {self.batch_windows} < inner_steps + 1 = {self.inner_steps + 1}")
        _check_choice("meta_clip", self.meta_clip, ("agent", "mean"))
        _check_choice("meta_batch", self.meta_batch, ("separate", "policy"))
        _check_choice("inner_loss_reduction", self.inner_loss_reduction, ("sum", "window_mean"))
        _check_choice("meta_grad_state", self.meta_grad_state, ("after_policy", "before_policy"))
        _check_choice("policy_loss_reduction", self.policy_loss_reduction, ("step_mean", "window_mean"))
        return self

    @property
    def num_evals(self) -> int:
        return (self.total_steps - self.learning_starts) // self.eval_every

    @property
    def hp(self) -> dict:
        return dict(actor_lr=self.actor_lr, critic_lr=self.critic_lr, gamma=self.gamma, tau=self.tau,
                    expl_noise=self.expl_noise)


# This module's training before it followed the authors' code (with LEGACY_OBJECTIVE: ``legacy(cfg)``).
LEGACY_TRAINING = dict(objective_adam_eps=1e-20, meta_clip="mean", meta_batch="policy",
                       inner_loss_reduction="window_mean", meta_grad_state="before_policy",
                       policy_loss_reduction="window_mean", policy_clip_norm=None)


def legacy(config: MetaGenRLConfig) -> MetaGenRLConfig:
    """``config`` with every option set to this module's earlier behaviour (to reproduce older runs)."""
    import dataclasses

    return dataclasses.replace(config, **LEGACY_TRAINING,
                               objective=dataclasses.replace(config.objective, **LEGACY_OBJECTIVE))


VARIANTS = {"learned": (1.0, 0.0, 0.0), "td3": (0.0, 1.0, 0.0), "reinforce": (0.0, 0.0, 1.0)}
