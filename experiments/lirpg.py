"""PPO and PPO-LIRPG (Zheng et al. 2018) on one task: both variants x seeds as one vmapped program.

    python -m experiments.lirpg --scale quick                       # brax inverted_pendulum, minutes on a CPU
    python -m experiments.lirpg --scale medium --env brax/reacher   # 5 seeds
    python -m experiments.lirpg --scale paper --env brax/hopper     # PPO's MuJoCo budget, for an accelerator
    python -m experiments.lirpg --scale quick --resume              # continue an interrupted run

Writes into --out (default results/lirpg/<scale>/<env>): config.json (the run record: config, variants,
seeds, package versions), checkpoint.npz after every evaluation (``--resume`` continues from it; the
settings and package versions must be
the same; a folder holding an earlier run is refused unless --resume or --overwrite), result.json (every evaluation), summary.json (per variant: IQM [95% CI] over
seeds of the final return, max average return; P(PPO-LIRPG > PPO) with its interval and verdict) and
curves.png. The algorithm: metarl/meta/lirpg.py; PPO is the same program with the intrinsic reward off.

Scales (:data:`SCALES`; every field can be overridden on the command line):
  quick   brax/inverted_pendulum, 2 seeds, 8k steps, 4 envs x 125 steps per batch, evaluations every 1k
  medium  5 seeds, 50k steps, 4 envs x 250 steps per batch, evaluations every 5k steps
  paper   5 seeds, 1M steps, PPO's MuJoCo settings (1 env x 2048 steps, minibatches of 64, 10 epochs),
          evaluations every 10240 steps (5 batches)
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

SCALES = {
    "quick": dict(env="brax/inverted_pendulum", seeds=2, steps=8_000, num_envs=4, rollout=125, eval_every=1_000,
                  eval_episodes=3),
    "medium": dict(env="brax/inverted_pendulum", seeds=5, steps=50_000, num_envs=4, rollout=250, eval_every=5_000,
                   eval_episodes=5),
    "paper": dict(env="brax/halfcheetah", seeds=5, steps=1_000_000, num_envs=1, rollout=2048, eval_every=10_240,
                  eval_episodes=10),
}
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


VARIANTS = ("ppo", "lirpg")  # metarl.meta.lirpg.VARIANTS (not imported here: a bad argument fails before jax loads)


def variants_arg(text: str) -> tuple:
    parts = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in parts if x not in VARIANTS]
    if bad or not parts or len(set(parts)) != len(parts):
        raise argparse.ArgumentTypeError(f"unknown variant(s) {bad or [text]} (or repeated); "
                                         f"valid: {', '.join(VARIANTS)}")
    return parts


# What a run writes into --out (a new run refuses a folder holding any of them unless --overwrite).
RUN_FILES = ("config.json", "meta.json", "checkpoint.npz", "result.json", "summary.json", "curves.png")


def main(argv=None):
    from metarl.cli import ArgumentParser, add_scale_argument, fail, nonneg_int, positive_float, positive_int

    p = ArgumentParser(prog="python -m experiments.lirpg", description=__doc__.split("\n")[0])
    add_scale_argument(p, SCALES)
    p.add_argument("--env", default=None, help="task (default: the scale's), e.g. brax/hopper, gymnax/Pendulum-v1")
    p.add_argument("--seeds", type=positive_int, default=None)
    p.add_argument("--steps", type=positive_int, default=None, help="environment steps per run")
    p.add_argument("--num-envs", type=positive_int, default=None)
    p.add_argument("--rollout", type=positive_int, default=None, help="steps per environment per batch")
    p.add_argument("--eval-every", type=positive_int, default=None, help="steps between evaluations (a multiple of "
                                                                         "the batch)")
    p.add_argument("--eval-episodes", type=positive_int, default=None)
    p.add_argument("--max-episode-steps", type=positive_int, default=None, help="episode length (default: the env's)")
    p.add_argument("--variants", type=variants_arg, default=("ppo", "lirpg"), help="comma list of ppo, lirpg")
    p.add_argument("--in-coef", type=positive_float, default=1.0, help="lambda: the intrinsic reward's weight")
    p.add_argument("--ex-coef", type=positive_float, default=1.0, help="the extrinsic reward's weight")
    p.add_argument("--rin-lr", type=positive_float, default=1e-4, help="beta: the intrinsic reward's Adam rate")
    p.add_argument("--lookahead", choices=("adam", "sgd"), default="adam")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--out", default=None, help="output folder (default results/lirpg/<scale>/<env>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run's files in --out")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    sc = dict(SCALES[a.scale])
    for k in ("env", "seeds", "steps", "num_envs", "rollout", "eval_every", "eval_episodes"):
        if getattr(a, k) is not None:
            sc[k] = getattr(a, k)
    from metarl.meta.lirpg_outputs import build_config
    from metarl.train import _check_env_name

    try:  # bad names and budgets: one line, before anything is compiled
        _check_env_name(sc["env"], "positional")
        cfg = build_config(sc["num_envs"], sc["rollout"], sc["steps"], sc["eval_every"], sc["eval_episodes"],
                           a.max_episode_steps, in_coef=a.in_coef, ex_coef=a.ex_coef, rin_lr=a.rin_lr,
                           lookahead=a.lookahead)
    except ValueError as e:
        fail(p.prog, e)
    out = a.out or os.path.join("results", "lirpg", a.scale, sc["env"].replace("/", "_"))
    from metarl.driver import RunError, prepare_out_dir

    try:  # the run directory: an earlier run is refused unless --resume or --overwrite
        prepare_out_dir(out, a.resume, a.overwrite, RUN_FILES, resume_from=("config.json",))
    except RunError as e:
        fail(p.prog, e, e.exit_code)
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a resumed or repeated run skips the compilation
    import jax

    from metarl.driver import RunRecord
    from metarl.meta.lirpg import run_identity

    # config.json: the training's identity (a resume with other settings is refused here, before anything is
    # written); meta.json: status, versions, device, compile time apart
    record = RunRecord(out, run_identity(cfg, sc["env"], a.variants, sc["seeds"], jax.random.PRNGKey(a.seed)),
                       resume=a.resume)
    try:
        record.check()
    except RunError as e:
        fail(p.prog, e, e.exit_code)
    with record:
        print(run(cfg, sc["env"], sc["seeds"], a.variants, out, a.seed, a.resume, progress=not a.no_progress,
                  title=f"{sc['env']}, scale {a.scale}"))


def run(cfg, env: str, seeds: int, variants, out: str, seed: int = 0, resume: bool = False, progress: bool = True,
        title: str = "") -> str:
    """Train, then write summary.json and curves.png into ``out``; returns a short text report."""
    import jax
    from tqdm import tqdm

    from metarl.driver import RunError
    from metarl.meta import lirpg as lp
    from metarl.meta.lirpg_outputs import FINAL_EVALS, summarize
    from metarl.train import write_json

    bar = tqdm(total=cfg.ppo.num_evals, desc=f"PPO/PPO-LIRPG on {env}", disable=not progress, file=sys.stderr)
    try:
        res = lp.train(cfg, env, jax.random.PRNGKey(seed), seeds, variants, run_dir=out, resume=resume,
                       progress=lambda i: bar.update(1))
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
