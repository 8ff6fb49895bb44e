"""Online Meta-Critic experiments (Zhou et al., NeurIPS 2020): Tables 1-3 and the tabular-MDP analysis.

The command line of two parts, both pure JAX programs in library modules (which the benchmark calls too):
its settings are :class:`MetaCriticCommand`, the training experiment's :class:`ExperimentConfig`.

* ``--tabular``: the Fig. 6 analysis on a 2-state, 2-action MDP (DDPG and DDPG-MC as one program), in
  :mod:`metarl.meta.meta_critic_tabular`.
* ``run_experiment`` (:mod:`metarl.meta.meta_critic_runs`): {DDPG, TD3, SAC} x {vanilla, +updates, MC (Eq. 10, Eq. 11, MetaReg; Eq. 9 or Eq. 8;
  re-initialisation guard on), +params} on a Brax (or gymnax) task through ``metarl.train.Runner``.
  Variants that share parameter shapes (vanilla = MC with aux_scale 0, '+updates', MC with Eq. 9 or
  Eq. 8, MC with the guard) are one vmapped program with the seeds; Eq. 11, MetaReg and '+params' change
  shapes and are programs of their own. '+updates' runs K extra vanilla updates per update, each on a
  fresh batch, with K = the measured wall-time overhead of -MC (:mod:`metarl.meta.meta_critic_overhead`) unless given.

``python -m experiments.meta_critic --algo td3 --env brax/hopper --steps 100000`` runs one algorithm;
``python -m experiments.meta_critic --tabular [--tab-actor softmax]`` the analysis (tanh or softmax actor);
``python -m experiments.meta_critic --overhead --algo ddpg td3 sac --env gymnax/Pendulum-v1`` the -MC cost per
update: XLA FLOP ratio and wall-time ratio to vanilla, at the paper's networks.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from typing import Literal

from metarl.config_cli import PositiveInt
# The experiment proper (settings, variants, run_experiment, the paper's metrics) is a library module, which
# the benchmark calls too: its settings (jax-free) in metarl.meta.meta_critic_config, its runs in
# metarl.meta.meta_critic_runs.
from metarl.meta.meta_critic_config import (ALGOS, MEASURED_OVERHEAD, RUN_DIRS, TAB_ACTORS, TAB_MDPS, ExperimentConfig,
                                            TabularConfig)


@dataclass(frozen=True)
class MetaCriticCommand:
    """What the command line runs (training unless --tabular or --overhead) and the experiment's settings."""

    tabular: bool = False  # run the tabular-MDP analysis (Fig. 6) only
    overhead: bool = False
    """only measure -MC's XLA FLOP and wall-time ratio to vanilla per update, and its parameter overhead (the
    paper's networks unless --hidden is given; several --algo allowed), into overhead_<algo>.json"""
    algo: tuple[Literal[ALGOS], ...] = ("td3",)  # one algorithm (several with --overhead)
    hidden: tuple[PositiveInt, ...] | None = None  # actor and critic hidden sizes, e.g. 64 64 (None: the paper's)
    sac_batch: PositiveInt | None = None  # SAC's batch size (None: its own, 256)
    rounds: PositiveInt = 15  # --overhead: alternating timing rounds
    mdp: Literal[TAB_MDPS] = "rl2"  # --tabular: the 2x2 MDP
    tab_actor: Literal[TAB_ACTORS] = "tanh"  # --tabular: the actor's reading of the 2 actions
    tab_seeds: bool = False  # --tabular: use --seeds seeds (default: the paper's 5)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    def validate(self):
        if len(self.algo) > 1 and not self.overhead:
            raise ValueError(f"argument --algo: one algorithm unless --overhead, got {' '.join(self.algo)}")
        if not self.algo:
            raise ValueError("argument --algo: give at least one algorithm")


def main(argv=None):
    from metarl import config_cli
    from metarl.cli import fail

    prog = "python -m experiments.meta_critic"
    p = config_cli.parse(prog, __doc__, {"default": MetaCriticCommand()}, argv,
                         config_cli.RunOptions(out="results/meta_critic/experiment"))
    a, o, exp = p.exp, p.options, p.exp.experiment
    from metarl.train import Interrupted, RunError, _check_env_name, write_json

    agent = dict(actor_hidden=a.hidden, critic_hidden=a.hidden) if a.hidden else {}
    sac_agent = dict(agent, batch_size=a.sac_batch) if a.sac_batch else agent
    # Everything that can refuse the run, before anything is compiled or written.
    try:
        if a.tabular:
            tcfg = TabularConfig(mdp=a.mdp, actor=a.tab_actor, seed=exp.seed,
                                 **({"seeds": exp.seeds} if a.tab_seeds else {})).validate()
        else:
            _check_env_name(exp.env, "positional")
            from metarl import envs

            if not exp.env.startswith("brax/") and envs.make(exp.env).spec.discrete:  # every brax env is continuous
                raise ValueError(f"--env {exp.env!r} is discrete; the meta-critic wraps continuous-action agents "
                                 "(e.g. gymnax/Pendulum-v1, every brax/* env)")
            cfgs = [dataclasses.replace(exp, algo=algo, agent={**exp.agent, **(sac_agent if algo == "sac" else agent)})
                    .validate() for algo in a.algo]
            if not a.overhead:
                cfgs[0].train_config().validate()
        if o.resume and (a.tabular or a.overhead):
            raise ValueError("--resume applies to training runs (--tabular and --overhead runs are short; rerun them)")
    except (ValueError, TypeError) as e:
        fail(prog, e)
    # The run directory: a folder holding an earlier run of this mode is refused unless --resume or --overwrite.
    files = (("tabular.json",) if a.tabular else tuple(f"overhead_{c.algo}.json" for c in cfgs) if a.overhead
             else ("summary.json", MEASURED_OVERHEAD) + RUN_DIRS) + ("config.json", "meta.json")
    from metarl.driver import RunRecord, prepare_out_dir

    settings = (dict(mode="tabular", config=dataclasses.asdict(tcfg)) if a.tabular else
                dict(mode="overhead" if a.overhead else "train", configs=[dataclasses.asdict(c) for c in cfgs],
                     rounds=a.rounds if a.overhead else None))
    record = RunRecord(o.out, settings, resume=o.resume)
    try:
        prepare_out_dir(o.out, o.resume, o.overwrite, files, resume_from=RUN_DIRS)
        record.check()
    except RunError as e:
        fail(prog, e, e.exit_code)
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a repeated or resumed run skips the compilation
    from metarl.meta.meta_critic_config import LABELS
    from metarl.meta.meta_critic_overhead import measure_overhead
    from metarl.meta.meta_critic_runs import paper_metrics, run_experiment
    from metarl.meta.meta_critic_tabular import run_tabular, tabular_figures, tabular_summary

    with record:  # config.json, meta.json (status, versions, device, compile time apart)
        if a.tabular:
            base, traces = run_tabular(tcfg)
            summary = tabular_summary(traces, cfg=tcfg)
            tabular_figures(base, traces, tcfg, o.out)
            write_json(os.path.join(o.out, "tabular.json"), {"config": dataclasses.asdict(tcfg), **summary})
            print(summary)
            return
        if a.overhead:
            from metarl import envs

            spec = envs.make(exp.env).spec
            for cfg in cfgs:
                o = measure_overhead(cfg, spec, rounds=a.rounds)
                write_json(os.path.join(o.out, f"overhead_{cfg.algo}.json"), {"config": dataclasses.asdict(cfg), **o})
                print(f"{cfg.algo} on {exp.env}: {1e3 * o['base_s_per_update']:.2f} ms -> {1e3 * o['mc_s_per_update']:.2f} ms "
                      f"per update; FLOP ratio {o['flop_ratio']:.3f}, wall ratio {o['wall_ratio']:.3f} "
                      f"(wall/FLOP {o['wall_over_flop_ratio']:.3f}; fastest-call ratio {o['wall_ratio_min']:.3f}, CPU-time "
                      f"ratio {o['cpu_ratio']:.3f}); parameters {o['params_base']} + "
                      f"{o['params_meta_critic']} (+{100 * o['params_overhead']:.0f}%; paper ~10%)", flush=True)
            return
        cfg = cfgs[0]
        try:
            res = run_experiment(cfg, o.out, progress=o.progress, resume=o.resume)
        except Interrupted as e:
            import shlex

            again = [x for x in (argv if argv is not None else sys.argv[1:]) if x != "--resume"] + ["--resume"]
            fail(prog, f"{e}; continue with: {prog} {shlex.join(again)}", 130)
        except RunError as e:
            fail(prog, e, getattr(e, "exit_code", 2))
        table = {v: paper_metrics(res[v]["eval_return"]) for v in cfg.variants}
        write_json(os.path.join(o.out, "summary.json"), {"config": dataclasses.asdict(cfg), "table": table,
                                                           "overhead": res["overhead"], "wall_s": res["wall_s"]})
        for v, m in table.items():
            print(f"{LABELS[v].format(A=cfg.algo.upper()):>20s}  max {m['max_avg']:9.1f} +- {m['std_at_max']:7.1f}")


if __name__ == "__main__":
    main()
