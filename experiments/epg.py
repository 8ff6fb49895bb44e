"""EPG on MetaGenRL's cross-environment protocol: evolve a loss on two environments, meta-test on seen and unseen.

    python -m experiments.epg --scale quick                      # Pendulum & Reacher -> Pendulum, Reacher, MountainCar
    python -m experiments.epg --scale paper --out runs/epg       # Cheetah & Hopper -> Cheetah, Hopper, Lunar (GPU)
    python -m experiments.epg --scale quick --resume             # continue from out/checkpoint/
    python -m experiments.epg --scale quick --generations 8 --train Pendulum   # any field of EPGExperiment (--help)

Per seed, one OpenAI-ES run (evosax) evolves the parameters of a learned loss (metarl/meta/epg.py); each
member of the population trains fresh agents on each training environment with that loss, and its
fitness is their final return (ranked per environment, ranks averaged). All seeds x members x agents
are one vmapped program per generation. Meta-test: fresh agents trained by the final ES mean loss on
every test environment for the same number of steps; score = final return (deterministic policy),
mean over the seed's test agents.

Scales (environments and training set: MetaGenRL's protocol, metarl.meta.metagenrl.protocol):
  quick   3 seeds, 12 generations of 8 members x 1 agent per environment, 4k steps per agent, 64-64
          policies: about 3 minutes of CPU time, nearly all compilation; NOT comparable with the paper.
  medium  5 seeds, 100 generations of 16 members x 1 agent per environment, 10k steps per agent
          (about 1.6M environment steps per generation; estimated half an hour of CPU, not run yet).
  paper   5 seeds, 500 generations of 128 members x 4 agents per environment, 1M steps per agent
          (Houthooft et al. evolved for far longer on 256 workers): meant for accelerators.

Writes ``epg.json`` (config, per-generation population returns, meta-test per seed and its IQM [CI] per
environment, versions, device, wall time) and ``metrics.csv`` / ``metrics.json`` (the history, a row per seed
and generation) into ``--out``; prints one line per test environment.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from metarl.config_cli import NonNegInt, PositiveInt
from metarl.meta import baselines_common as bc
from metarl.meta.baseline_configs import EPGConfig

NAME = "epg"


@dataclass(frozen=True)
class EPGExperiment:
    """EPG at one scale: the ES and its inner loop (EPGConfig), the seeds, meta-test agents and environments."""

    seeds: PositiveInt = 3  # independent ES runs (one vmapped program)
    seed: NonNegInt = 0  # the run's key: PRNGKey(seed); the meta-test draws from fold_in(key, 1)
    test_agents: PositiveInt = 2  # fresh meta-test agents per seed and test environment
    train: tuple[str, ...] = ()  # training environment labels (none: MetaGenRL's first training set)
    test: tuple[str, ...] = ()  # test environment labels (none: all, the training ones first)
    config: EPGConfig = field(default_factory=EPGConfig)

    def validate(self):
        self.config.validate()


SCALES = {
    "quick": EPGExperiment(seeds=3, test_agents=2, config=EPGConfig(
        generations=12, eval_every=4, population=8, agents_per_env=1, es_lr=1e-2, es_sigma=0.05, inner_steps=4_000,
        num_envs=2, window=100, inner_epochs=2, inner_lr=1e-3, hidden=(64, 64), eval_episodes=2)),
    "medium": EPGExperiment(seeds=5, test_agents=4, config=EPGConfig(
        generations=100, eval_every=10, population=16, agents_per_env=1, es_lr=1e-2, es_sigma=0.05,
        inner_steps=10_000, num_envs=2, window=100, inner_epochs=2, inner_lr=1e-3, hidden=(64, 64), eval_episodes=3)),
    "paper": EPGExperiment(seeds=5, test_agents=6, config=EPGConfig(
        generations=500, eval_every=10, population=128, agents_per_env=4, es_lr=1e-2, es_sigma=0.05,
        inner_steps=1_000_000, num_envs=8, window=125, inner_epochs=4, inner_lr=1e-3, hidden=(64, 64),
        eval_episodes=5)),
}


def run(exp: EPGExperiment, scale: str = "quick", out_dir: str | None = None, resume: bool = False,
        progress: bool = True, checkpoint: bool = True, overwrite: bool = False) -> dict:
    """Meta-train and meta-test ``exp`` on MetaGenRL's environments at ``scale``. Returns {results: {test
    label: {final, train_return, seen}}, summary: {test label: IQM [CI] of final over seeds}, history,
    config, protocol, wall_s}."""
    import jax

    from metarl.meta import epg, families

    seed, seeds, agents = exp.seed, exp.seeds, exp.test_agents
    proto = bc.protocol(scale, exp.train or None, exp.test or None)
    config = exp.config
    if config.max_episode_steps is None:
        config = dataclasses.replace(config, max_episode_steps=proto["max_episode_steps"])
    config.validate()
    names = proto["envs"]
    pad = families.padded_sizes([names[e] for e in proto["train"] + proto["test"]])
    train_names = [names[e] for e in proto["train"]]
    t0 = time.perf_counter()
    record = dict(method="EPG", scale=scale, seed=seed, seeds=seeds, test_agents=agents, config=bc.asdict(config),
                  protocol=proto, pad=list(pad))
    ckpt_dir = out_dir if out_dir and checkpoint else None
    if ckpt_dir:  # the settings are valid: now the run directory, still before anything is compiled
        bc.claim_out_dir(out_dir, NAME, resume, overwrite)
    with bc.run_record(ckpt_dir, record, resume):  # config.json, meta.json
        key = jax.random.PRNGKey(seed)
        bar = bc.progress_bar(config.num_evals, f"EPG meta-train {'&'.join(proto['train'])}", progress)
        postfix = lambda i, m: bar.set_postfix({e: f"{np.mean(m['member_return'][:, -1, j]):.0f}"
                                                for j, e in enumerate(proto["train"])})
        _, history, phi = epg.train(config, train_names, key, seeds, pad, ckpt_dir, record, resume, postfix, bar)
        bar.close()
        t_train = time.perf_counter() - t0
        test_names = [names[e] for e in proto["test"]]
        mt = epg.meta_test(config, phi, test_names, pad, jax.random.fold_in(key, 1), agents)
        results = {}
        for e, n in zip(proto["test"], test_names):
            results[e] = dict(final=mt[n]["final_return"].mean(1), final_per_agent=mt[n]["final_return"],
                              train_return=mt[n]["train_return"].mean(1), seen=e in proto["train"])
        return bc.finish(out_dir, NAME, record, results, history, t0, t_train, point="generation")


def main(argv=None):
    def line(e, s, r):
        return (f"EPG {e:12s} ({'seen' if r['seen'] else 'unseen':6s}) final return IQM {s['iqm']:9.1f} "
                f"[{s['ci'][0]:.1f}, {s['ci'][1]:.1f}] over {s['n']} seeds")

    return bc.main(NAME, __doc__, SCALES, run, line, argv)


if __name__ == "__main__":
    main()
