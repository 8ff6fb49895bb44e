"""MetaGenRL experiments: meta-train an objective with a population of TD3 agents, then meta-test it.

    python -m experiments.metagenrl meta-train --scale quick --train Pendulum,Reacher --out results/metagenrl/obj
    python -m experiments.metagenrl meta-test  --scale quick --objective results/metagenrl/obj/final --test Pendulum

meta-test also trains the baselines on every test environment (unless --no-baselines): TD3 and
off-policy REINFORCE+GAE (the same agent, objective fixed) and the on-policy PPO and REINFORCE+GAE
(metarl.meta.onpolicy) on the same environment-step budget.

Scales:
  paper  the paper's budget (Tables 3-4): 20 agents split over the training environments, 1M steps per
         agent, 10k random steps, annealing over 10k steps, 350-350 LayerNorm networks, 100 windows of
         20 steps per batch; meta-test 6 seeds of 1M steps. Environments: brax halfcheetah ("Cheetah"),
         brax hopper ("Hopper") and brax inverted_double_pendulum as the stand-in for
         LunarLanderContinuous ("Lunar"), which has no JAX version.
  quick  minutes on a 2-core CPU: cheap gymnax tasks only (Pendulum-v1, Reacher-misc with 2-D actions,
         MountainCarContinuous-v0; every episode cut at 200 steps), 64-64 networks, 8 windows of 20
         steps per batch, 4 agents, 5k steps per agent, one training set (Pendulum & Reacher; the
         other rows of TRAIN_SETS["quick"] run with --train), meta-test 2 seeds of 7k steps.
         Brax locomotion compiles for over a minute per program and steps at ~1-2k steps/s on this CPU,
         too slow for the quick budget. Quick numbers are NOT comparable with the paper's.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from metarl.meta import metagenrl as mg
from metarl.meta import onpolicy as op

SCALES = ("quick", "paper")

ENVS = {
    "paper": {"Cheetah": "brax/halfcheetah", "Hopper": "brax/hopper", "Lunar": "brax/inverted_double_pendulum"},
    "quick": {"Pendulum": "gymnax/Pendulum-v1", "Reacher": "gymnax/Reacher-misc",
              "MountainCar": "gymnax/MountainCarContinuous-v0"},
}
# Table 2's rows: the training environments of each objective.
TRAIN_SETS = {
    "paper": [("Cheetah", "Hopper"), ("Cheetah", "Lunar"), ("Hopper", "Lunar"), ("Hopper",), ("Lunar",)],
    "quick": [("Pendulum", "Reacher"), ("Pendulum",)],
}


@dataclass(frozen=True)
class Scale:
    name: str
    train: mg.MetaGenRLConfig  # meta-training population (agents_per_env set per training set)
    test: mg.MetaGenRLConfig  # meta-test agents
    total_agents: int  # population size, split evenly over the training environments
    test_seeds: int
    stages: int  # objectives saved at this many evenly spaced points of meta-training (Fig. 4)
    envs: dict = field(default_factory=dict)
    train_sets: tuple = ()
    onpolicy: dict = field(default_factory=dict)  # Table 2's on-policy baselines: {label: OnPolicyConfig}


def get_scale(scale: str) -> Scale:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid choices: {', '.join(SCALES)}")
    if scale == "paper":
        train = mg.MetaGenRLConfig()  # Tables 3-4
        test = dataclasses.replace(train, anneal_steps=0)
        return Scale("paper", train, test, total_agents=20, test_seeds=6, stages=4, envs=ENVS["paper"],
                     train_sets=tuple(TRAIN_SETS["paper"]), onpolicy=_onpolicy(test, num_envs=1, ppo_rollout=2000,
                                                                               reinforce_rollout=5000))
    small = mg.MetaGenRLConfig(total_steps=5_000, learning_starts=1_000, anneal_steps=1_000, eval_every=1_000,
                               eval_episodes=3, buffer_size=5_000, batch_windows=8, hidden=(64, 64),
                               max_episode_steps=200)
    # Meta-test runs longer than meta-training so the TD3 baseline gets somewhere on Pendulum.
    test = dataclasses.replace(small, anneal_steps=0, total_steps=7_000, buffer_size=7_000)
    return Scale("quick", small, test, total_agents=4, test_seeds=2,
                 stages=2, envs=ENVS["quick"], train_sets=tuple(TRAIN_SETS["quick"][:1]),
                 onpolicy=_onpolicy(test, num_envs=4, ppo_rollout=250, reinforce_rollout=250))


ONPOLICY_LABELS = {"ppo": "PPO", "reinforce": "on-policy REINFORCE"}


def _onpolicy(test: mg.MetaGenRLConfig, num_envs: int, ppo_rollout: int, reinforce_rollout: int) -> dict:
    """PPO and REINFORCE+GAE with their standard hyperparameters (metarl.meta.onpolicy.PRESETS) on the
    meta-test budget: the same environment steps per seed (all on-policy: no random warm-up) and
    evaluations every ``eval_every`` steps, so the last two evaluations fall on the same steps as the
    off-policy rows'. Only the batch size is scaled to the budget."""
    common = dict(total_steps=test.total_steps, eval_every=test.eval_every, eval_episodes=test.eval_episodes,
                  max_episode_steps=test.max_episode_steps, num_envs=num_envs)
    return {ONPOLICY_LABELS["ppo"]: op.make_config("ppo", rollout=ppo_rollout, **common),
            ONPOLICY_LABELS["reinforce"]: op.make_config("reinforce", rollout=reinforce_rollout, **common)}


def _progress(total, desc, enabled=True):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True)


def _np(tree):
    return jax.tree.map(lambda x: np.asarray(x), tree)


def meta_train(scale: Scale, train: tuple, out_dir: str, seed: int = 0, objective: mg.ObjectiveConfig | None = None,
               inner_steps: int | None = None, progress: bool = True, config: mg.MetaGenRLConfig | None = None):
    """Meta-train one objective on the named training environments; saves it (orbax) at ``scale.stages``
    evenly spaced points under ``out_dir/stage_<i>`` and the last one also as ``out_dir/final``.
    Returns a dict: per-environment metrics [evals, agents] (see ``mg.make_population``), meta_grad_norm
    [evals] (the averaged gradient's), meta_grad_summary (per-agent first / last / min meta-gradient
    norms and any collapse warnings, from ``mg.MetaGradMonitor``), wall times, paths."""
    cfg = config or scale.train
    names = [scale.envs[n] for n in train]
    cfg = dataclasses.replace(cfg, envs=tuple(names), agents_per_env=max(scale.total_agents // len(names), 1),
                              objective=objective or cfg.objective, inner_steps=inner_steps or cfg.inner_steps)
    groups = mg.make_groups(cfg)
    init, segment, _ = mg.make_population(cfg, groups, meta_train=True)
    monitor = mg.MetaGradMonitor(cfg, groups)
    t0 = time.perf_counter()
    state = jax.jit(init)(jax.random.PRNGKey(seed))
    seg = jax.jit(segment)
    n = cfg.num_evals
    save_at = sorted({max(1, round(n * (i + 1) / scale.stages)) for i in range(scale.stages)})
    history, paths = [], {}
    bar = _progress(n, f"meta-train {'&'.join(train)}", progress)
    for i in range(1, n + 1):
        state, m = seg(state)
        m = _np(m)
        monitor.update(m)  # warns on a collapsed meta-gradient; drops the per-step norms from m
        history.append(m)
        bar.update(1)
        bar.set_postfix({k[-12:]: f"{np.mean(v['eval_return']):.0f}" for k, v in m.items() if isinstance(v, dict)})
        if i in save_at:
            p = os.path.join(out_dir, f"stage_{save_at.index(i) + 1}")
            mg.save_objective(p, state.alpha, cfg.objective,
                              {"train": list(train), "env_steps_per_agent": cfg.learning_starts + i * cfg.eval_every,
                               "inner_steps": cfg.inner_steps, "seed": seed})
            paths[f"stage_{save_at.index(i) + 1}"] = p
    bar.close()
    final = os.path.join(out_dir, "final")
    mg.save_objective(final, state.alpha, cfg.objective, {"train": list(train), "inner_steps": cfg.inner_steps,
                                                          "seed": seed})
    paths["final"] = final
    metrics = {g.name: {k: np.stack([h[g.name][k] for h in history]) for k in history[0][g.name]} for g in groups}
    return dict(metrics=metrics, meta_grad_norm=np.stack([h["meta_grad_norm"] for h in history]),
                meta_grad_summary=monitor.summary(), wall_s=time.perf_counter() - t0, paths=paths,
                config=dataclasses.asdict(cfg))


# Kept per meta-test agent and evaluation ([seeds, evals]); the diagnostics are segment means.
TEST_METRICS = ("eval_return", "train_return", "env_steps", "saturation", "objective_std", "pg_norm_objective",
                "pg_norm_critic")


def meta_test(scale: Scale, objectives: dict, test: tuple, seed: int = 100, baselines: bool = True,
              progress: bool = True, seeds: int | None = None, config: mg.MetaGenRLConfig | None = None):
    """Train fresh agents on each test environment: ``seeds`` agents per objective (frozen, loaded
    with orbax; all must share one ObjectiveConfig) plus, if ``baselines``, TD3 and off-policy
    REINFORCE+GAE, all variants of one environment vmapped in one program.

    ``objectives``: {label: path}. Returns {env_label: {variant_label: {eval_return [seeds, evals], ...}}}.
    """
    cfg = config or scale.test
    seeds = seeds or scale.test_seeds
    loaded = {k: mg.load_objective(p) for k, p in objectives.items()}
    ocfgs = {c for _, c, _ in loaded.values()}
    if len(ocfgs) > 1:
        raise ValueError("meta_test: all objectives of one run must share an ObjectiveConfig; run ablations separately")
    ocfg = ocfgs.pop() if ocfgs else cfg.objective
    cfg = dataclasses.replace(cfg, objective=ocfg, envs=tuple(scale.envs[n] for n in test))
    variants = [(k, loaded[k][0], mg.VARIANTS["learned"]) for k in objectives]
    if baselines:
        dummy = next(iter(loaded.values()))[0] if loaded else mg.init_objective(jax.random.PRNGKey(0), ocfg)
        variants += [("TD3", dummy, mg.VARIANTS["td3"]), ("off-policy REINFORCE", dummy, mg.VARIANTS["reinforce"])]
    n = len(variants) * seeds
    alphas = jax.tree.map(lambda *a: jnp.stack([x for x in a for _ in range(seeds)]), *[v[1] for v in variants])
    mixes = jnp.asarray([v[2] for v in variants for _ in range(seeds)], jnp.float32)
    groups = mg.make_groups(cfg, n=n)
    init, segment, _ = mg.make_population(cfg, groups, meta_train=False)
    t0 = time.perf_counter()
    # Every variant on an environment uses the same seeds (agent/env keys): paired comparisons.
    state = jax.jit(lambda k: init(k, variants=[(alphas, mixes)] * len(groups)))(jax.random.PRNGKey(seed))
    state = state.replace(groups=tuple(_same_seeds(r, len(variants), seeds) for r in state.groups))
    seg = jax.jit(segment)
    history = []
    bar = _progress(cfg.num_evals, f"meta-test on {'&'.join(test)}", progress)
    for _ in range(cfg.num_evals):
        state, m = seg(state)
        history.append(_np(m))
        bar.update(1)
    bar.close()
    out = {}
    for label, g in zip(test, groups):
        per = {k: np.stack([h[g.name][k] for h in history], axis=1) for k in TEST_METRICS}
        out[label] = {v[0]: {k: x[i * seeds:(i + 1) * seeds] for k, x in per.items()} for i, v in enumerate(variants)}
    return dict(results=out, wall_s=time.perf_counter() - t0, config=dataclasses.asdict(cfg),
                variants=[v[0] for v in variants], seeds=seeds)


def onpolicy_test(scale: Scale, test: tuple, seed: int = 100, seeds: int | None = None, progress: bool = True):
    """The on-policy baselines (PPO, REINFORCE+GAE) on each test environment, ``seeds`` runs each (one
    vmapped program per algorithm and environment; seed keys from ``seed`` as in :func:`meta_test`).
    Returns {env_label: {variant_label: {eval_return [seeds, evals], train_return, env_steps}}}."""
    seeds = seeds or scale.test_seeds
    out, t0 = {}, time.perf_counter()
    for label in test:
        out[label] = {}
        for name, cfg in scale.onpolicy.items():
            bar = _progress(cfg.num_evals, f"{name} on {label}", progress)
            r = op.train(cfg, scale.envs[label], jax.random.PRNGKey(seed), seeds, progress=lambda i: bar.update(1))
            bar.close()
            out[label][name] = {k: r[k] for k in ("eval_return", "train_return", "env_steps")}
    return dict(results=out, wall_s=time.perf_counter() - t0, seeds=seeds,
                config={k: dataclasses.asdict(c) for k, c in scale.onpolicy.items()})


def _same_seeds(run, n_variants, seeds):
    """Give variant v's seed s the initial agent, environment, buffer and key of variant 0's seed s."""
    idx = jnp.asarray([s for _ in range(n_variants) for s in range(seeds)])
    keep = {"alpha": run.alpha, "mix": run.mix}
    run = jax.tree.map(lambda x: x[idx], run)
    return run.replace(**keep)


def _objective_config(args, base: mg.ObjectiveConfig) -> mg.ObjectiveConfig:
    return dataclasses.replace(base, use_t=not args.no_t, use_v=not args.no_v, use_v_next=not args.no_v_next)


def main(argv=None):
    from metarl.cli import ArgumentParser, add_scale_argument, nonneg_int, positive_int

    p = ArgumentParser(prog="python -m experiments.metagenrl", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("meta-train", "meta-test"), help="meta-train or meta-test")
    add_scale_argument(p, SCALES)  # a bad scale: one line on stderr, exit status 2
    p.add_argument("--train", default=None, help="comma-separated training env labels (meta-train)")
    p.add_argument("--test", default=None, help="comma-separated test env labels (meta-test); default: all")
    p.add_argument("--objective", action="append", default=[], help="LABEL=PATH or PATH of a saved objective")
    p.add_argument("--out", default="results/metagenrl/run")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--inner-steps", type=positive_int, default=None)
    p.add_argument("--no-t", action="store_true")
    p.add_argument("--no-v", action="store_true")
    p.add_argument("--no-v-next", action="store_true")
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--total-steps", type=positive_int, default=None,
                   help="meta-train: environment steps per agent (warm-up included); the buffer holds them all")
    p.add_argument("--anneal-steps", type=nonneg_int, default=None, help="meta-train: steps of annealing from TD3's loss")
    p.add_argument("--stages", type=positive_int, default=None, help="meta-train: number of objectives saved (Fig. 4)")
    p.add_argument("--legacy", action="store_true",
                   help="this module's behaviour before it followed the authors' code (mg.legacy: Adam eps 1e-20, "
                        "window-sum annealing, mean inner loss on half the policy batch, separate value "
                        "statistics, t/T per episode, no output LayerNorm, clipping after averaging, ...)")
    args = p.parse_args(argv)
    scale = get_scale(args.scale)
    if args.legacy:
        scale = dataclasses.replace(scale, train=mg.legacy(scale.train), test=mg.legacy(scale.test))
    if args.total_steps is not None or args.anneal_steps is not None:
        train_cfg = scale.train
        if args.total_steps is not None:
            train_cfg = dataclasses.replace(train_cfg, total_steps=args.total_steps,
                                            buffer_size=max(train_cfg.buffer_size, args.total_steps))
        if args.anneal_steps is not None:
            train_cfg = dataclasses.replace(train_cfg, anneal_steps=args.anneal_steps)
        scale = dataclasses.replace(scale, train=train_cfg.validate())
    if args.stages is not None:
        scale = dataclasses.replace(scale, stages=args.stages)
    if args.mode not in ("meta-train", "meta-test"):
        raise ValueError(f"unknown mode {args.mode!r}; valid choices: meta-train, meta-test")
    os.makedirs(args.out, exist_ok=True)
    from metarl.train import device_info, package_versions, write_json

    info = dict(scale=args.scale, package_versions=package_versions(), device=device_info())
    if args.mode == "meta-train":
        train = tuple(args.train.split(",")) if args.train else scale.train_sets[0]
        r = meta_train(scale, train, os.path.abspath(args.out), args.seed, _objective_config(args, scale.train.objective),
                       args.inner_steps)
        write_json(os.path.join(args.out, "meta_train.json"), {**info, **r})
        print(json.dumps({k: float(np.mean(v["eval_return"][-1])) for k, v in r["metrics"].items()}))
    else:
        objs = {}
        for o in args.objective:
            label, _, path = o.rpartition("=")
            objs[label or os.path.basename(os.path.dirname(os.path.abspath(path))) or path] = path
        test = tuple(args.test.split(",")) if args.test else tuple(scale.envs)
        r = meta_test(scale, objs, test, args.seed + 100, baselines=not args.no_baselines)
        if not args.no_baselines:
            onp = onpolicy_test(scale, test, args.seed + 100)
            for env in test:
                r["results"][env].update(onp["results"][env])
            r["onpolicy_config"] = onp["config"]
        write_json(os.path.join(args.out, "meta_test.json"), {**info, **r})
        for env, per in r["results"].items():
            for v, x in per.items():
                print(f"{env:12s} {v:28s} final eval return {np.mean(x['eval_return'][:, -1]):9.1f}")


if __name__ == "__main__":
    main()
