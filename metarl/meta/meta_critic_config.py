"""The Meta-Critic experiment's settings, jax-free (its command line answers --help without loading jax):
the variants of the Brax experiments (Tables 1-3) and :class:`ExperimentConfig` (run by
metarl.meta.meta_critic_runs), and the tabular MDP analysis's :class:`TabularConfig` (metarl.meta.meta_critic_tabular)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal, Sequence

from metarl.agents import ALGOS  # noqa: F401  (the experiment's --algo choices)
from metarl.config_cli import NonNegFloat, NonNegInt, NotAnOption, PositiveInt, named

# Variants of the main program (one compiled program, vmapped with the seeds): their traced meta-hp.
# The program is compiled with extra updates only if "updates" is asked for (max_extra_updates = ceil(K))
# and with the re-initialisation guard only if "mc_guard" is (reset_after = GUARD_RESET_AFTER, armed by the
# traced hp ``guard`` in that member only); otherwise neither costs anything.
SHARED_VARIANTS = {
    "vanilla": dict(aux_scale=0.0, extra_updates=0.0, meta_clip=1.0, guard=0.0),
    "updates": dict(aux_scale=0.0, extra_updates=None, meta_clip=1.0, guard=0.0),  # None: K, the measured overhead
    "mc": dict(aux_scale=1.0, extra_updates=0.0, meta_clip=1.0, guard=0.0),  # Eq. 10, Eq. 9 (the default)
    "mc_plain": dict(aux_scale=1.0, extra_updates=0.0, meta_clip=0.0, guard=0.0),  # Eq. 10, Eq. 8
    "mc_guard": dict(aux_scale=1.0, extra_updates=0.0, meta_clip=1.0, guard=1.0),  # "mc" + the guard (ablation)
}
OWN_PROGRAM_VARIANTS = ("mc_sa", "metareg", "params")  # Eq. 11, MetaReg, '+params'
VARIANTS = tuple(SHARED_VARIANTS) + OWN_PROGRAM_VARIANTS
LABELS = {"vanilla": "{A}", "updates": "{A}+updates", "params": "{A}+params", "mc": "{A}-MC",
          "mc_plain": "{A}-MC L_meta", "mc_guard": "{A}-MC +guard", "mc_sa": "{A}-MC h(pi,s,a)",
          "metareg": "{A}-MC MetaReg"}
K_SOURCES = ("wall", "flops")
LOOKAHEADS = ("all", "features", "first_layer")  # the look-ahead's actor parameters (metarl.meta.meta_critic)


@dataclass(frozen=True)
class ExperimentConfig:
    algo: NotAnOption[str] = "td3"  # on the command line: --algo (MetaCriticCommand)
    env: str = "brax/halfcheetah"  # e.g. brax/hopper, gymnax/Pendulum-v1 (continuous actions)
    variants: tuple[Literal[VARIANTS], ...] = ("vanilla", "updates", "params", "mc")
    seeds: PositiveInt = 5  # independent runs, vmapped in one program
    seed: NonNegInt = 0  # the run's key: seed i of --seeds trains from split(PRNGKey(seed), seeds)[i]
    total_steps: Annotated[PositiveInt, named("steps")] = 1_000_000  # environment steps per run, warm-up included
    learning_starts: NonNegInt = 10_000
    eval_every: PositiveInt = 1_000
    eval_episodes: PositiveInt = 10
    evals_per_chunk: PositiveInt = 10  # evaluations per compiled chunk (a checkpoint after each)
    max_episode_steps: PositiveInt | None = None  # episode length (None: the env's own)
    # base agent config overrides (hidden sizes, batch size); on the command line: --hidden, --sac-batch
    agent: NotAnOption[dict] = field(default_factory=dict)
    lookahead: Literal[LOOKAHEADS] = "all"  # the look-ahead's actor parameters
    weight_decay: Literal["decoupled", "l2"] = "decoupled"
    updates_k: NonNegFloat | None = None  # '+updates' K (extra updates per update); None: measured (updates_k_from)
    # What K measures when it is measured (measure_overhead at the run's networks): "wall" (default; the
    # paper's "K% more compute": K = wall_ratio - 1) or "flops" (K = flop_ratio - 1; deterministic).
    updates_k_from: Literal[K_SOURCES] = "wall"
    params_n: NonNegFloat | None = None  # '+params' fraction N; None: the measured parameter overhead

    def validate(self):
        bad = sorted(set(self.variants) - set(VARIANTS))
        if bad:
            raise ValueError(f"unknown variant(s) {bad}; valid: {', '.join(VARIANTS)}")
        if self.updates_k_from not in K_SOURCES:
            raise ValueError(f"unknown updates_k_from {self.updates_k_from!r}; valid: {', '.join(K_SOURCES)}")
        return self

    def train_config(self, **agent_overrides):
        from metarl.train import TrainConfig

        return TrainConfig(algo=self.algo, env=self.env, seeds=self.seeds, seed=self.seed,
                           total_steps=self.total_steps, learning_starts=self.learning_starts,
                           eval_every=self.eval_every, eval_episodes=self.eval_episodes,
                           evals_per_chunk=self.evals_per_chunk, max_episode_steps=self.max_episode_steps,
                           agent={**self.agent, **agent_overrides})


MC_METRICS = ("L_critic", "h_w", "L_meta", "meta_grad_norm", "meta_grad_zero", "meta_absorbed", "meta_resets",
              "extra_updates_done")
RUN_DIRS = ("main", "mc_sa", "metareg", "params")
MEASURED_OVERHEAD = "measured_overhead.json"


# The paper cites the tabular MDPs of RL^2 (Duan et al. 2016, its ref. [6]): a random MDP whose mean
# rewards m(s, a) are drawn from N(1, 1), whose observed reward is m(s, a) + N(0, 1) noise, whose
# transition rows P(. | s, a) are drawn from a flat Dirichlet, with 10-step episodes from state 0.
# ``mdp="rl2"`` (default) draws one such 2x2 MDP from ``mdp_seed`` and trains every seed on it.
# ``mdp="chain"`` is a hand-made deceptive 2x2 MDP (state 0: action 0 pays 0.3 and stays, action 1 moves
# to state 1 w.p. 0.9; state 1: action 1 pays 1.0 and stays w.p. 0.9), deterministic rewards.
TAB_MDPS = ("rl2", "chain")
# The actor's reading of the 2 discrete actions. "tanh" (default): DDPG's deterministic actor
# a = tanh(.) in [-1, 1], read as the mixture weight P(a = 1 | s) = (a + 1) / 2, the critic learning
# Q(s, a) of that continuous action. "softmax": a stochastic policy pi(. | s) = softmax over the 2 actions,
# the critic Q(s, e_a) of the one-hot action, and the actor objective the expected Q under pi (see
# make_softmax_ddpg). The tanh reading's corner actions saturate (grad of tanh -> 0), the softmax's do not
# in the same way, which is what the comparison probes.
TAB_ACTORS = ("tanh", "softmax")


@dataclass(frozen=True)
class TabularConfig:
    seeds: int = 5
    episodes: int = 100  # the paper's n = 100 episodes
    horizon: int = 10  # steps per episode (RL^2's tabular MDPs)
    warmup_episodes: int = 10  # uniformly random actions first (100 steps: one batch)
    mdp: str = "rl2"  # rl2 | chain
    mdp_seed: int = 0
    # the authors' DDPG settings: 400-300 actor and critic, batch 100, Adam 1e-3, gamma 0.99, noise 0.1
    gamma: float = 0.99
    hidden: Sequence[int] = (400, 300)
    mc_hidden: Sequence[int] = (100, 100)
    batch_size: int = 100
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    expl_noise: float = 0.1
    weight_decay: str = "decoupled"  # "l2": the authors' coupled form (falls into the zero state)
    actor: str = "tanh"  # tanh (deterministic, DDPG) | softmax (stochastic over the 2 actions, expected Q)
    seed: int = 0

    def validate(self):
        if self.mdp not in TAB_MDPS:
            raise ValueError(f"unknown tabular mdp {self.mdp!r}; valid: {', '.join(TAB_MDPS)}")
        if self.actor not in TAB_ACTORS:
            raise ValueError(f"unknown tabular actor {self.actor!r}; valid: {', '.join(TAB_ACTORS)}")
        return self
