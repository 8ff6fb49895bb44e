"""PPO and PPO-LIRPG (Zheng et al. 2018) on one task: both variants x seeds as one vmapped program.

    python -m experiments.lirpg --scale quick                       # brax inverted_pendulum, minutes on a CPU
    python -m experiments.lirpg --scale medium --env brax/reacher   # 5 seeds
    python -m experiments.lirpg --scale paper --env brax/hopper     # PPO's MuJoCo budget, for an accelerator
    python -m experiments.lirpg --scale quick --resume              # continue an interrupted run

Writes into --out (default results/lirpg/<scale>/<env>): config.json (the run record: config, variants,
seeds, package versions), checkpoint/ after every evaluation (``--resume`` continues from it; the
settings and package versions must be the same; a folder holding an earlier run is refused unless --resume
or --overwrite), result.json, metrics.csv and metrics.json (every run at every evaluation), summary.json (per
variant: IQM [95% CI] over seeds of the final return, max average return; P(PPO-LIRPG > PPO) with its interval
and verdict) and curves.png. The algorithm: metarl/meta/lirpg.py; PPO is the same program with the intrinsic reward off.

Scales (:data:`SCALES`; every field of :class:`LIRPGExperiment` can be overridden on the command line):
  quick   brax/inverted_pendulum, 2 seeds, 8k steps, 4 envs x 125 steps per batch, evaluations every 1k
  medium  5 seeds, 50k steps, 4 envs x 250 steps per batch, evaluations every 5k steps
  paper   5 seeds, 1M steps, PPO's MuJoCo settings (1 env x 2048 steps, minibatches of 64, 10 epochs),
          evaluations every 10240 steps (5 batches)
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Literal

from metarl.config_cli import NonNegInt, PositiveFloat, PositiveInt, RunOptions
from metarl.driver.checkpoints import CHECKPOINT_NAMES
from metarl.driver.records import metrics_files

VARIANTS = ("ppo", "lirpg")  # metarl.meta.lirpg.VARIANTS (not imported here: a bad argument fails before jax loads)


@dataclass(frozen=True)
class LIRPGExperiment:
    """The task, seeds, budget (PPO's preset with this batch and evaluation cadence) and PPO-LIRPG's settings."""

    env: str = "brax/inverted_pendulum"  # e.g. brax/hopper, gymnax/Pendulum-v1
    seeds: PositiveInt = 2  # independent runs of each variant, all one vmapped program
    seed: NonNegInt = 0  # the run's key: PRNGKey(seed)
    steps: PositiveInt = 8_000  # environment steps per run
    num_envs: PositiveInt = 4
    rollout: PositiveInt = 125  # steps per environment per batch
    eval_every: PositiveInt = 1_000  # steps between evaluations (a multiple of the batch)
    eval_episodes: PositiveInt = 3
    max_episode_steps: PositiveInt | None = None  # episode length (None: the env's)
    variants: tuple[Literal[VARIANTS], ...] = VARIANTS
    in_coef: PositiveFloat = 1.0  # lambda: the intrinsic reward's weight
    ex_coef: PositiveFloat = 1.0  # the extrinsic reward's weight
    rin_lr: PositiveFloat = 1e-4  # beta: the intrinsic reward's Adam rate
    lookahead: Literal["adam", "sgd"] = "adam"  # how theta'(eta) is written for the meta-gradient

    def validate(self):
        if not self.variants or len(set(self.variants)) != len(self.variants):
            raise ValueError(f"argument --variants: {' '.join(self.variants) or 'none'}: give each of "
                             f"{', '.join(VARIANTS)} at most once, at least one")


SCALES = {
    "quick": LIRPGExperiment(),
    "medium": LIRPGExperiment(seeds=5, steps=50_000, rollout=250, eval_every=5_000, eval_episodes=5),
    "paper": LIRPGExperiment(env="brax/halfcheetah", seeds=5, steps=1_000_000, num_envs=1, rollout=2048,
                             eval_every=10_240, eval_episodes=10),
}


@dataclass(frozen=True)
class LIRPGOptions(RunOptions):
    out: str | None = None
    """output folder (None: results/lirpg/<scale>/<env>)"""


def curves_png(result: dict, title: str, path: str, variants=("ppo", "lirpg")):
    from metarl.meta.lirpg import LABELS
    from metarl.plots import _plt, curves, save_fig

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = result[variants[0]]["env_steps"][0]
    curves(ax, steps, {LABELS[v]: result[v]["eval_return"] for v in variants}, "evaluation return")
    ax.set_xlabel("environment steps")
    ax.set_title(title)
    save_fig(fig, path)
    plt.close(fig)


# What a run writes into --out (a new run refuses a folder holding any of them unless --overwrite).
RUN_FILES = ("config.json", "meta.json") + CHECKPOINT_NAMES + ("result.json", "summary.json", "curves.png") + metrics_files()


def main(argv=None):
    from metarl import config_cli
    from metarl.cli import fail

    prog = "python -m experiments.lirpg"
    a = config_cli.parse(prog, __doc__, SCALES, argv, LIRPGOptions())
    exp, o = a.exp, a.options
    from metarl.meta.lirpg_outputs import build_config
    from metarl.train import _check_env_name

    try:  # bad names and budgets: one line, before anything is compiled
        _check_env_name(exp.env, "positional")
        cfg = build_config(exp.num_envs, exp.rollout, exp.steps, exp.eval_every, exp.eval_episodes,
                           exp.max_episode_steps, in_coef=exp.in_coef, ex_coef=exp.ex_coef, rin_lr=exp.rin_lr,
                           lookahead=exp.lookahead)
    except ValueError as e:
        fail(prog, e)
    out = o.out or os.path.join("results", "lirpg", a.scale, exp.env.replace("/", "_"))
    from metarl.driver import RunError, prepare_out_dir

    try:  # the run directory: an earlier run is refused unless --resume or --overwrite
        prepare_out_dir(out, o.resume, o.overwrite, RUN_FILES, resume_from=("config.json",))
    except RunError as e:
        fail(prog, e, e.exit_code)
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a resumed or repeated run skips the compilation
    import jax

    from metarl.driver import RunRecord
    from metarl.meta.lirpg import run_identity

    # config.json: the training's identity (a resume with other settings is refused here, before anything is
    # written); meta.json: status, versions, device, compile time apart
    record = RunRecord(out, run_identity(cfg, exp.env, exp.variants, exp.seeds, jax.random.PRNGKey(exp.seed)),
                       resume=o.resume)
    try:
        record.check()
    except RunError as e:
        fail(prog, e, e.exit_code)
    with record:
        print(run(cfg, exp.env, exp.seeds, exp.variants, out, exp.seed, o.resume, progress=o.progress,
                  title=f"{exp.env}, scale {a.label}"))


def run(cfg, env: str, seeds: int, variants, out: str, seed: int = 0, resume: bool = False, progress: bool = True,
        title: str = "") -> str:
    """Train, then write summary.json and curves.png into ``out``; returns a short text report."""
    import jax
    import numpy as np
    from metarl.cli import progress_bar

    from metarl.driver import RunError
    from metarl.meta import lirpg as lp
    from metarl.meta.lirpg_outputs import FINAL_EVALS, summarize
    from metarl.train import write_json

    bar = progress_bar(cfg.ppo.num_evals, f"PPO/PPO-LIRPG on {env}", progress)
    try:
        res = lp.train(cfg, env, jax.random.PRNGKey(seed), seeds, variants, run_dir=out, resume=resume,
                       progress=lambda i, m: (bar.update(1), bar.set_postfix(
                           {v: f"{np.mean(np.asarray(m['eval_return'])[j * seeds:(j + 1) * seeds]):.0f}"
                            for j, v in enumerate(variants)})))
    except (lp.ResumeMismatch, RunError) as e:  # RunError: e.g. the NaN/Inf guard, naming the runs
        from metarl.cli import fail

        fail("python -m experiments.lirpg", e, getattr(e, "exit_code", 2))
    finally:
        bar.close()
    summ = summarize(res, variants)
    write_json(os.path.join(out, "summary.json"), dict(env=env, seeds=seeds, wall_s=res["wall_s"],
                                                        config=dataclasses.asdict(cfg), **summ))
    curves_png(res, title or env, os.path.join(out, "curves.png"), variants)
    lines = [f"{title or env}: final return (mean of the last {FINAL_EVALS} evaluations), IQM [95% CI] over {seeds} "
             f"seeds; max average return"]
    for k, s in summ.items():
        if k != "lirpg_vs_ppo":
            lines.append(f"  {k:10s} {s['iqm']:9.1f} [{s['ci'][0]:.1f}, {s['ci'][1]:.1f}]   max avg {s['max_avg']:.1f}")
    if "lirpg_vs_ppo" in summ:
        c = summ["lirpg_vs_ppo"]
        lines.append(f"  P(PPO-LIRPG > PPO) = {c['p_improvement']:.2f} [{c['p_improvement_ci'][0]:.2f}, "
                     f"{c['p_improvement_ci'][1]:.2f}]: {c['verdict']}")
    lines.append(f"  wall {res['wall_s']:.0f} s; outputs in {out}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
