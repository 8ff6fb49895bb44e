"""MetaGenRL experiments: meta-train an objective with a population of TD3 agents, then meta-test it.

    python -m experiments.metagenrl meta-train --scale quick --train Pendulum Reacher --out results/metagenrl/obj
    python -m experiments.metagenrl meta-test  --scale quick --objective results/metagenrl/obj/final --test Pendulum

meta-test also trains the baselines on every test environment (unless --no-baselines): TD3 and
off-policy REINFORCE+GAE (the same agent, objective fixed) and the on-policy PPO and REINFORCE+GAE
(metarl.agents.onpolicy) on the same environment-step budget.

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
  medium <= 1 h on an idle 2-core CPU (sizing: ``_medium``): meta-train 8 agents on Pendulum & Reacher,
         18k steps each, 64-64 networks, 16 windows per batch; meta-test 6 seeds of 12k steps on
         Pendulum (seen) and MountainCarContinuous-v0 (unseen) with TD3 and random-policy rows.

Each scale names a ``seen`` and an ``unseen`` test environment for the first training set's objective
(the claims of the benchmark's summary.json). meta-train checkpoints the population after every
evaluation (``--resume`` continues it; Ctrl-C stops at the next checkpoint).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np

from metarl.config_cli import MISSING, NonNegInt, OnlyFlag, Positional, PositiveInt
from metarl.meta import metagenrl as mg

# the protocol (scales, environments, training sets) lives in the library; re-exported for this module's users
from metarl.meta.metagenrl.protocol import (BASELINES, ENVS, ONPOLICY_LABELS, SCALES, TRAIN_SETS,  # noqa: F401
                                            Scale, get_scale)


def _objective_config(args, base: mg.ObjectiveConfig) -> mg.ObjectiveConfig:
    return dataclasses.replace(base, use_t=not args.no_t, use_v=not args.no_v, use_v_next=not args.no_v_next)


@dataclass(frozen=True)
class MetaGenRLCommand:
    """One MetaGenRL run at a scale (metarl.meta.metagenrl.protocol): meta-train a population's objective, or
    meta-test saved objectives (and the fixed-objective and on-policy baselines) on fresh agents."""

    mode: Positional[Literal["meta-train", "meta-test"]]
    train: tuple[str, ...] = ()  # meta-train: training environment labels (none: the scale's first training set)
    test: tuple[str, ...] = ()  # meta-test: test environment labels (none: all)
    objective: tuple[str, ...] = ()  # meta-test: saved objectives, each LABEL=PATH or PATH (e.g. <out>/final)
    seed: NonNegInt = 0  # the run's key (meta-test adds 100: fresh agents)
    # meta-train: agents in the population, split evenly over the training environments (None: the scale's
    # total_agents); meta-test: fresh agents per objective and baseline (None: the scale's test_seeds)
    seeds: PositiveInt | None = None
    inner_steps: PositiveInt | None = None  # meta-train: the objective's inner steps (None: the scale's)
    total_steps: PositiveInt | None = None  # meta-train: environment steps per agent (warm-up included)
    anneal_steps: NonNegInt | None = None  # meta-train: steps of annealing from TD3's loss
    stages: PositiveInt | None = None  # meta-train: number of objectives saved (Fig. 4)
    no_t: OnlyFlag[bool] = False  # ablation: the objective without the time input t/T
    no_v: OnlyFlag[bool] = False  # ablation: without the value input V(s)
    no_v_next: OnlyFlag[bool] = False  # ablation: without V(s')
    no_baselines: OnlyFlag[bool] = False  # meta-test: the saved objectives only
    legacy: OnlyFlag[bool] = False
    """this module's behaviour before it followed the authors' code (mg.legacy: Adam eps 1e-20, window-sum
    annealing, mean inner loss on half the policy batch, separate value statistics, t/T per episode, no output
    LayerNorm, clipping after averaging, ...)"""


def main(argv=None):
    from metarl import config_cli
    from metarl.cli import fail
    from metarl.driver.checkpoints import CHECKPOINT_NAMES
    from metarl.driver.records import metrics_files
    from metarl.driver.segments import StopFlag

    prog = "python -m experiments.metagenrl"
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed = config_cli.parse(prog, __doc__, {s: MetaGenRLCommand(mode=MISSING) for s in SCALES},
                              argv, config_cli.RunOptions(out="results/metagenrl/run"))
    args, o = parsed.exp, parsed.options

    def refuse(message):  # one line on stderr, exit status 2
        fail(prog, f"{message} (see --help)")

    # Every input is checked here, in one line on stderr (exit 2), before anything is compiled or written.
    scale = get_scale(parsed.scale)
    if args.legacy:
        scale = dataclasses.replace(scale, train=mg.legacy(scale.train), test=mg.legacy(scale.test))
    try:
        train_cfg = scale.train
        if args.total_steps is not None:
            train_cfg = dataclasses.replace(train_cfg, total_steps=args.total_steps,
                                            buffer_size=max(train_cfg.buffer_size, args.total_steps))
        if args.anneal_steps is not None:
            train_cfg = dataclasses.replace(train_cfg, anneal_steps=args.anneal_steps)
        if args.inner_steps is not None:  # checked here; meta_train applies it
            dataclasses.replace(train_cfg, inner_steps=args.inner_steps).validate()
        scale = dataclasses.replace(scale, train=train_cfg.validate())
    except ValueError as e:
        refuse(f"invalid meta-training settings at scale {parsed.scale}: {e}")
    if args.stages is not None:
        scale = dataclasses.replace(scale, stages=args.stages)
    if args.seeds is not None:
        scale = dataclasses.replace(scale, **{"total_agents" if args.mode == "meta-train" else "test_seeds": args.seeds})
    if args.mode == "meta-train":
        bad = [t for t in args.train if t not in scale.envs]
        if bad:
            refuse(f"--train: unknown environment label(s) {', '.join(bad)}; valid at scale "
                    f"{parsed.scale}: {', '.join(scale.envs)}")
        stages = scale.stages or 0
        run_files = CHECKPOINT_NAMES + ("meta_train.json", "initial", "final", "config.json", "meta.json") + \
            metrics_files() + \
            tuple(f"stage_{j + 1}" for j in range(stages))
    else:
        bad = [t for t in args.test if t not in scale.envs]
        if bad:
            refuse(f"--test: unknown environment label(s) {', '.join(bad)}; valid at scale "
                    f"{parsed.scale}: {', '.join(scale.envs)}")
        for spec in args.objective:
            path = spec.rpartition("=")[2]
            if not os.path.isdir(path):
                refuse(f"--objective: {path!r} is not a saved objective (a folder written by meta-train, e.g. "
                        f"<out>/final)")
        if not args.objective and args.no_baselines:
            refuse("meta-test: nothing to test: give --objective LABEL=PATH, or drop --no-baselines")
        if o.resume:
            refuse("--resume applies to meta-train only (meta-test runs are short; rerun them)")
        run_files = ("meta_test.json", "config.json", "meta.json") + metrics_files()
    from metarl.driver import RunError, prepare_out_dir

    try:  # an earlier run in --out: refused unless --resume (meta-train) or --overwrite
        prepare_out_dir(o.out, o.resume, o.overwrite, run_files, resume_from=CHECKPOINT_NAMES)
    except (RunError, OSError) as e:
        refuse(str(e))
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a repeated or resumed run skips the compilation
    from metarl.driver import RunRecord, device_info, package_versions, write_json, write_metrics
    from metarl.meta.metagenrl.runs import meta_test, meta_train, metrics_blocks, onpolicy_test

    info = dict(scale=parsed.scale, package_versions=package_versions(), device=device_info())
    # (train and test as the comma lists of the earlier command line: a run recorded then still resumes)
    settings = dict(mode=args.mode, scale=parsed.scale, config=dataclasses.asdict(scale), seed=args.seed,
                    train=",".join(args.train) or None, test=",".join(args.test) or None,
                    objective=list(args.objective), no_baselines=args.no_baselines,
                    inner_steps=args.inner_steps, ablation=dict(no_t=args.no_t, no_v=args.no_v,
                                                                no_v_next=args.no_v_next))
    if args.mode == "meta-train":
        train = args.train or scale.train_sets[0]
        from metarl.train import Interrupted, RunError

        stop = StopFlag()
        try:
            with RunRecord(o.out, settings, resume=o.resume), stop.sigint():
                r = meta_train(scale, train, os.path.abspath(o.out), args.seed,
                               _objective_config(args, scale.train.objective), args.inner_steps,
                               progress=o.progress, resume=o.resume, stop=stop)
                write_json(os.path.join(o.out, "meta_train.json"), {**info, **r})
                write_metrics(o.out, metrics_blocks(r, "meta-train"))
        except Interrupted as e:
            cmd = " ".join(["python -m experiments.metagenrl"] + [x for x in argv if x != "--resume"] + ["--resume"])
            print(f"python -m experiments.metagenrl: interrupted ({e}); continue with: {cmd}", file=sys.stderr)
            raise SystemExit(130)
        except RunError as e:
            fail(prog, e, getattr(e, "exit_code", 1))
        print(json.dumps({k: float(np.mean(v["eval_return"][-1])) for k, v in r["metrics"].items()}))
    else:
        objs = {}
        for spec in args.objective:
            label, _, path = spec.rpartition("=")
            objs[label or os.path.basename(os.path.dirname(os.path.abspath(path))) or path] = path
        test = args.test or tuple(scale.envs)
        with RunRecord(o.out, settings):
            r = meta_test(scale, objs, test, args.seed + 100, baselines=not args.no_baselines, progress=o.progress)
            if not args.no_baselines:
                onp = onpolicy_test(scale, test, args.seed + 100, progress=o.progress)
                for env in test:
                    r["results"][env].update(onp["results"][env])
                r["onpolicy_config"] = onp["config"]
            write_json(os.path.join(o.out, "meta_test.json"), {**info, **r})
            write_metrics(o.out, metrics_blocks(r, "meta-test"))
            for env, per in r["results"].items():
                for v, x in per.items():
                    print(f"{env:12s} {v:28s} final eval return {np.mean(x['eval_return'][:, -1]):9.1f}")


if __name__ == "__main__":
    main()
