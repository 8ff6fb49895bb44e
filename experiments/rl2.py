"""RL^2 on MetaGenRL's cross-environment protocol: meta-train on two environments, meta-test on seen and unseen.

    python -m experiments.rl2 --scale quick                      # Pendulum & Reacher -> Pendulum, Reacher, MountainCar
    python -m experiments.rl2 --scale paper --out runs/rl2       # Cheetah & Hopper -> Cheetah, Hopper, Lunar (GPU)
    python -m experiments.rl2 --scale quick --resume             # continue from out/checkpoint/

One GRU agent per seed (all seeds one vmapped program, metarl/meta/rl2.py) is meta-trained with PPO on
trials of ``trial_episodes`` episodes drawn equally from the training environments, observations and
actions padded to the protocol's largest environment (training and test). Meta-test: the frozen agent
runs fresh trials on every test environment; its score is the return of the trial's last episode
(after the in-trial adaptation; the first episode's return is kept too), mean over trials, per seed.

Scales (environments and training set: MetaGenRL's protocol, metarl.meta.metagenrl.protocol):
  quick   4 seeds, 20 PPO updates of 8 trials per environment (2 episodes of 200 steps), GRU 64:
          about 1.6 minutes of CPU time; NOT comparable with the paper.
  medium  6 seeds, 300 updates of 16 trials per environment, GRU 64 (estimated under an hour of CPU,
          not run yet).
  paper   6 seeds, 2000 updates of 32 trials per environment, GRU 256, the paper's environments (brax,
          1000-step episodes): meant for an accelerator.

Writes ``rl2.json`` (config, per-segment training history, meta-test per seed and its IQM [CI] per
environment, versions, device, wall time) and ``metrics.csv`` / ``metrics.json`` (the history, a row per seed
and evaluation) into ``--out``; prints one line per test environment.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from metarl.config_cli import NonNegInt, PositiveInt
from metarl.meta import baselines_common as bc
from metarl.meta.baseline_configs import RL2Config

NAME = "rl2"


@dataclass(frozen=True)
class RL2Experiment:
    """RL^2 at one scale: the recurrent PPO learner (RL2Config), the seeds and the environments."""

    seeds: PositiveInt = 4  # meta-training seeds (one vmapped program)
    seed: NonNegInt = 0  # the run's key: PRNGKey(seed); the meta-test draws from fold_in(key, 1)
    train: tuple[str, ...] = ()  # training environment labels (none: MetaGenRL's first training set)
    test: tuple[str, ...] = ()  # test environment labels (none: all, the training ones first)
    config: RL2Config = field(default_factory=RL2Config)

    def validate(self):
        self.config.validate()


SCALES = {
    "quick": RL2Experiment(seeds=4, config=RL2Config(
        trial_episodes=2, lanes=8, updates=20, eval_every=10, eval_lanes=8, hidden=64, lr=1e-3, epochs=4, minibatches=4,
        reward_scale=0.1)),
    "medium": RL2Experiment(seeds=6, config=RL2Config(
        trial_episodes=2, lanes=16, updates=300, eval_every=20, eval_lanes=32, hidden=64, lr=1e-3, epochs=4,
        minibatches=4, reward_scale=0.1)),
    "paper": RL2Experiment(seeds=6, config=RL2Config(
        trial_episodes=2, lanes=32, updates=2000, eval_every=50, eval_lanes=32, hidden=256, lr=3e-4, epochs=4,
        minibatches=8, reward_scale=0.1)),
}


def run(exp: RL2Experiment, scale: str = "quick", out_dir: str | None = None, resume: bool = False,
        progress: bool = True, checkpoint: bool = True, overwrite: bool = False) -> dict:
    """Meta-train and meta-test ``exp`` on MetaGenRL's environments at ``scale``. Returns {results: {test
    label: {final, first, episode_returns, seen}}, summary: {test label: IQM [CI] of final over seeds},
    history, config, protocol, wall_s}."""
    import jax

    from metarl.meta import families, rl2

    config, seed, seeds = exp.config, exp.seed, exp.seeds
    proto = bc.protocol(scale, exp.train or None, exp.test or None)
    names = proto["envs"]
    pad = families.padded_sizes([names[e] for e in proto["train"] + proto["test"]])
    fam = lambda e: families.env_family(names[e], *pad, max_episode_steps=proto["max_episode_steps"])
    train_f, test_f = [fam(e) for e in proto["train"]], [fam(e) for e in proto["test"]]
    t0 = time.perf_counter()
    record = dict(method="RL2", scale=scale, seed=seed, seeds=seeds, config=bc.asdict(config),
                  protocol={k: v for k, v in proto.items()}, pad=list(pad))
    ckpt_dir = out_dir if out_dir and checkpoint else None
    if ckpt_dir:  # the settings are valid: now the run directory, still before anything is compiled
        bc.claim_out_dir(out_dir, NAME, resume, overwrite)
    with bc.run_record(ckpt_dir, record, resume):  # config.json, meta.json
        key = jax.random.PRNGKey(seed)
        bar = bc.progress_bar(config.num_evals, f"RL2 meta-train {'&'.join(proto['train'])}", progress)
        postfix = lambda i, m: bar.set_postfix({e: f"{np.mean(m['eval_episode_returns'][:, j, -1]):.0f}"
                                                for j, e in enumerate(proto["train"])})
        state, history = rl2.train(config, train_f, key, seeds, ckpt_dir, record, resume, postfix, bar)
        bar.close()
        t_train = time.perf_counter() - t0
        per_ep = rl2.meta_test(config, train_f, state.params, test_f, jax.random.fold_in(key, 1))
        results = {}
        for e, f in zip(proto["test"], test_f):
            r = per_ep[f.name]  # [seeds, trial_episodes]
            results[e] = dict(final=r[:, -1], first=r[:, 0], episode_returns=r, seen=e in proto["train"])
        return bc.finish(out_dir, NAME, record, results, history, t0, t_train)


def main(argv=None):
    def line(e, s, r):
        return (f"RL2 {e:12s} ({'seen' if r['seen'] else 'unseen':6s}) last-episode return IQM {s['iqm']:9.1f} "
                f"[{s['ci'][0]:.1f}, {s['ci'][1]:.1f}] over {s['n']} seeds; first episode {np.mean(r['first']):.1f}")

    return bc.main(NAME, __doc__, SCALES, run, line, argv)


if __name__ == "__main__":
    main()
