"""MetaGenRL's cross-environment protocol at each scale: the environments, Table 2's training sets, the
meta-training population and meta-test agents (:class:`Scale`, :func:`get_scale`), and the on-policy rows.
The MetaGenRL experiment and the baselines run on its protocol (EPG, RL^2: metarl.meta.baselines_common)
read it from here."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from metarl.driver.records import check_scale
from metarl.meta.metagenrl.config import MetaGenRLConfig

__all__ = ["SCALES", "ENVS", "TRAIN_SETS", "BASELINES", "Scale", "get_scale", "ONPOLICY_LABELS"]

SCALES = ("quick", "medium", "paper")

ENVS = {
    "paper": {"Cheetah": "brax/halfcheetah", "Hopper": "brax/hopper", "Lunar": "brax/inverted_double_pendulum"},
    "quick": {"Pendulum": "gymnax/Pendulum-v1", "Reacher": "gymnax/Reacher-misc",
              "MountainCar": "gymnax/MountainCarContinuous-v0"},
    "medium": {"Pendulum": "gymnax/Pendulum-v1", "Reacher": "gymnax/Reacher-misc",
               "MountainCar": "gymnax/MountainCarContinuous-v0"},
}
# Table 2's rows: the training environments of each objective.
TRAIN_SETS = {
    "paper": [("Cheetah", "Hopper"), ("Cheetah", "Lunar"), ("Hopper", "Lunar"), ("Hopper",), ("Lunar",)],
    "quick": [("Pendulum", "Reacher"), ("Pendulum",)],
    "medium": [("Pendulum", "Reacher")],
}
BASELINES = ("TD3", "off-policy REINFORCE")  # the same agent with its objective fixed (meta-test rows)


@dataclass(frozen=True)
class Scale:
    name: str
    train: MetaGenRLConfig  # meta-training population (agents_per_env set per training set)
    test: MetaGenRLConfig  # meta-test agents
    total_agents: int  # population size, split evenly over the training environments
    test_seeds: int
    stages: int  # objectives saved at this many evenly spaced points of meta-training (Fig. 4)
    envs: dict = field(default_factory=dict)
    train_sets: tuple = ()
    onpolicy: dict = field(default_factory=dict)  # Table 2's on-policy baselines: {label: OnPolicyConfig}
    # The claims of summary.json, for the first training set's objective: ``seen`` is one of its
    # training environments, ``unseen`` a test environment it never trained on.
    seen: str = ""
    unseen: str = ""
    test_envs: tuple = ()  # meta-test environments (labels); () = every environment of ``envs``
    baselines: tuple = BASELINES  # fixed-objective rows trained beside the learned objective
    test_earlier_stages: bool = True  # meta-test the first set's objective at its earlier stages too (Fig. 4)
    checkpoint_every: int = 1  # segments (evaluations) between checkpoints of a meta-train / meta-test stage

    @property
    def tested(self) -> tuple:
        return tuple(self.test_envs) or tuple(self.envs)


def get_scale(scale: str) -> Scale:
    check_scale(scale, SCALES)
    if scale == "paper":
        train = MetaGenRLConfig()  # Tables 3-4
        test = dataclasses.replace(train, anneal_steps=0)
        # Checkpoints every 10 evaluations (100k steps): a population's replay buffers are GBs here.
        return Scale("paper", train, test, total_agents=20, test_seeds=6, stages=4, envs=ENVS["paper"],
                     train_sets=tuple(TRAIN_SETS["paper"]), onpolicy=_onpolicy(test, num_envs=1, ppo_rollout=2000,
                                                                               reinforce_rollout=5000),
                     seen="Cheetah", unseen="Lunar", checkpoint_every=10)
    if scale == "medium":
        return _medium()
    small = MetaGenRLConfig(total_steps=5_000, learning_starts=1_000, anneal_steps=1_000, eval_every=1_000,
                               eval_episodes=3, buffer_size=5_000, batch_windows=8, hidden=(64, 64),
                               max_episode_steps=200)
    # Meta-test runs longer than meta-training so the TD3 baseline gets somewhere on Pendulum. It runs on the
    # two environments the claims read (seen Pendulum, unseen MountainCar), as the medium scale does: a third
    # meta-test program (Reacher) cost ~100 s of `make bench`'s budget for a column no claim reads.
    test = dataclasses.replace(small, anneal_steps=0, total_steps=7_000, buffer_size=7_000)
    return Scale("quick", small, test, total_agents=4, test_seeds=2,
                 stages=2, envs=ENVS["quick"], train_sets=tuple(TRAIN_SETS["quick"][:1]),
                 onpolicy=_onpolicy(test, num_envs=4, ppo_rollout=250, reinforce_rollout=250),
                 seen="Pendulum", unseen="MountainCar", test_envs=("Pendulum", "MountainCar"))


def _medium() -> Scale:
    """The CPU medium scale: sized to <= 60 min wall on an idle 2-core CPU (docs/metagenrl.md).

    Meta-training: 8 TD3 agents (4 on Pendulum-v1, 4 on Reacher-misc, 2-d actions), 64-64 LayerNorm
    networks, 16 windows of 20 steps per batch, 18k steps per agent (2k random, annealing over the
    paper's 10k, then 6k with the objective alone), evaluations and checkpoints every 2k steps, the
    objective saved at 4 stages. Meta-test: 6 seeds (the paper's count) of 12k steps on Pendulum (seen)
    and MountainCarContinuous-v0 (unseen), the learned objective and TD3 in one program, the random
    policy at the same evaluation points. Episodes are cut at 200 steps.

    Sizing: short runs of exactly these programs (2 segments of 200 update cycles each) on this
    machine's 2-core CPU. With the machine almost idle (load ~1): meta-training 204 ms of CPU per update
    cycle (2 env steps of all 8 agents: 4 critic steps, 2 policy steps, 1 second-order meta-gradient per
    agent) and 250-290 ms of wall; meta-test 203-206 ms of CPU and 180-205 ms of wall per cycle (24
    agents, no meta-gradient). Under load ~10 the CPU times were 208-244 and 221-237 ms (wall 3-6x
    more), and compiling took 136 s (meta-train) and 89 s (meta-test) of CPU. The programs keep about
    one core busy, so wall ~ CPU. Predicted wall on an idle 2-core CPU: compile <= 225 s + 8k cycles x
    0.225 s + 5k cycles x 0.205 s + ~40 s (random rows, checkpoints, outputs) = ~3100 s = ~52 min."""
    train = MetaGenRLConfig(total_steps=18_000, learning_starts=2_000, anneal_steps=10_000, eval_every=2_000,
                               eval_episodes=5, buffer_size=18_000, batch_windows=16, hidden=(64, 64),
                               max_episode_steps=200)
    test = dataclasses.replace(train, anneal_steps=0, total_steps=12_000, buffer_size=12_000)
    return Scale("medium", train, test, total_agents=8, test_seeds=6, stages=4, envs=ENVS["medium"],
                 train_sets=tuple(TRAIN_SETS["medium"]), onpolicy={}, seen="Pendulum", unseen="MountainCar",
                 test_envs=("Pendulum", "MountainCar"), baselines=("TD3",), test_earlier_stages=False)


ONPOLICY_LABELS = {"ppo": "PPO", "reinforce": "on-policy REINFORCE"}


def _onpolicy(test: MetaGenRLConfig, num_envs: int, ppo_rollout: int, reinforce_rollout: int) -> dict:
    """PPO and REINFORCE+GAE with their standard hyperparameters (metarl.agents.onpolicy.PRESETS) on the
    meta-test budget: the same environment steps per seed (all on-policy: no random warm-up) and
    evaluations every ``eval_every`` steps, so the last two evaluations fall on the same steps as the
    off-policy rows'. Only the batch size is scaled to the budget."""
    common = dict(total_steps=test.total_steps, eval_every=test.eval_every, eval_episodes=test.eval_episodes,
                  max_episode_steps=test.max_episode_steps, num_envs=num_envs)
    from metarl.agents import onpolicy as op

    return {ONPOLICY_LABELS["ppo"]: op.make_config("ppo", rollout=ppo_rollout, **common),
            ONPOLICY_LABELS["reinforce"]: op.make_config("reinforce", rollout=reinforce_rollout, **common)}
