"""Snake 6x6: MG and BMG discount tuning with and without the outer critic (Bonnet et al., 2022, Fig. 3, 5).

jumanji Snake(num_rows=6, num_cols=6) through ``metarl.envs.make("jumanji/Snake-6x6")`` (time limit
500, +1 per fruit). The paper's networks: separate actor and critic, each Conv(32, 2x2, stride 2) -
Conv(32, 2x2, stride 1) - flatten, then policy MLP [64, 64] -> 4 and value MLP [128, 128] -> 1; the
outer critic is a second value head on stop_gradient(critic torso) (``--separate-outer-network`` for
the authors' separate outer network). Inner A2C: RMSProp 5e-4, lambda 0.95, gamma = sigmoid(logit) from
0.8, 512 envs x 5 steps; outer loss: policy gradient with gamma' = 1, lambda' = 1; meta Adam 3e-3
(MG) / 6e-3 (BMG), meta-gradient clipped at 0.1. All five agents and all seeds in one program.

    python -m experiments.outer_value_snake --scale quick|medium|paper [--out results/outer_value_snake]
        [--seed 0] [--seeds N] [--updates N] [--resume | --overwrite]
        [--meta-lambda]   # lambda as a second meta-parameter, sigmoid onto (0, 1) from 0.95

Runs through :class:`metarl.driver.Driver` (run records and a checkpoint per chunk in the output
directory; ``--resume`` continues an interrupted run bit for bit).

Returns are those of the training episodes (stochastic policy) of every agent alike, averaged over
the episodes completed in each log window.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from metarl.config_cli import NonNegInt, PositiveInt, named

from metarl.driver.records import where_ran
from metarl.meta import outer_value as ov
from metarl.meta.outer_value_outputs import (agent_verdicts, check_chunks, fmt, run_cli, run_population,
                                             write_outputs)

NAME = "outer_value_snake"
SCALE_NAMES = ("quick", "medium", "paper")


@dataclass(frozen=True)
class SnakeExperiment:
    """Paper defaults (Table 1, Appendix C.2): 29,200 updates of 512 envs x 5 steps, 10 seeds."""

    num_updates: Annotated[PositiveInt, named("updates")] = 29_200  # meta-updates (a multiple of a chunk)
    num_seeds: Annotated[PositiveInt, named("seeds")] = 10  # independent seeds, vmapped in one program
    updates_per_log: PositiveInt = 100
    logs_per_chunk: PositiveInt = 4  # logged points per compiled chunk (a checkpoint after each)
    seed: NonNegInt = 0  # the run's key: seed i of --seeds trains from split(PRNGKey(seed), seeds)[i]
    meta: ov.SnakeMeta = field(default_factory=ov.SnakeMeta)  # --gamma-init, --mg-meta-lr, --meta-clip, ...
    env: ov.SnakeConfig = field(default_factory=ov.SnakeConfig)

    def validate(self):
        check_chunks(self)


SCALES = {
    # Sized for the 2-core CPU budget of `make bench` (all five agents cost ~0.5 s of CPU per update
    # at 2 seeds x 64 envs): 32k inner-rollout steps per agent and seed, far too short for Snake to
    # learn (the paper trains for 75M).
    "quick": SnakeExperiment(num_updates=200, num_seeds=2, updates_per_log=20, logs_per_chunk=5,
                             env=ov.SnakeConfig(num_envs=32)),
    # What a background run on the shared 2-core CPU can do in ~25 min (measured ~0.35 s of CPU per
    # update of all five agents at 2 seeds x 32 envs): ~7% of the paper's updates at 1/16 of its batch.
    "medium": SnakeExperiment(num_updates=2000, num_seeds=2, updates_per_log=20, logs_per_chunk=10,
                              env=ov.SnakeConfig(num_envs=32)),
    "paper": SnakeExperiment(),
}

PAPER = ov.SNAKE_PAPER  # the authors' released per-seed results at update 29,200 (10 seeds), mean and sd

TABLE_HEADER = ["agent", "final gamma", "paper gamma", "return", "paper return (29.2k upd.)", "outer adv.",
                "paper outer adv.", "verdict (the paper's claims)"]


def table_rows(summary: dict) -> list[list[str]]:
    """One row per agent: ours as IQM [95% CI] over seeds beside the paper's figures, and the verdicts of
    the paper's claims on that agent (metarl.meta.outer_value_outputs.claim_rows; A2C: none)."""
    verdicts = agent_verdicts({"summary": summary}, "Snake")
    rows = []
    for agent, s in summary.items():
        p = PAPER.get(agent, {})
        rows.append([agent, fmt(s, "final_gamma"), p.get("final_gamma", ""), fmt(s, "return", 2),
                     p.get("return", ""), fmt(s, "outer_advantage", 4), p.get("outer_advantage", ""),
                     verdicts.get(agent, "-")])
        if any("final_lam" in x for x in summary.values()):
            rows[-1].insert(3, fmt(s, "final_lam"))
    return rows


def run(exp: SnakeExperiment, out_dir: str | None = None, scale: str = "custom", progress: bool = True,
        resume: bool = False, overwrite: bool = False, resume_hint: str | None = None,
        tensorboard: str | None = None, on_nonfinite: str = "stop") -> dict:
    """Train all five agents (resumably, with ``out_dir``); write the outputs into ``out_dir`` (if
    given); return the result record (with the logs)."""
    from metarl.envs import make

    env = make("jumanji/Snake-6x6")
    problem = ov.make_snake_problem(exp.env, env)
    cfgs = exp.meta.configs(lam_init=exp.env.lam)
    notes = ("return = mean return of the training episodes (stochastic policy) completed in the last "
             "10% of training, every agent alike; env_steps counts every rollout (MG 2, BMG 3 per update).")
    result, logs = run_population(NAME, exp, problem, cfgs.__getitem__, scale, out_dir, notes, progress, resume,
                                  overwrite, resume_hint, tensorboard, on_nonfinite)
    result["paper"] = PAPER  # the paper's figures beside ours, in result.json too
    if out_dir:
        write_snake_outputs(out_dir, result, logs)
    result["logs"] = logs
    return result


def write_snake_outputs(out_dir: str, result: dict, logs):
    header = list(TABLE_HEADER)
    if any("final_lam" in x for x in result["summary"].values()):
        header.insert(3, "final lambda")
    cfg = result["config"]
    intro = (f"Snake 6x6, scale {result['scale']}: {cfg['num_updates']} updates of {cfg['env']['num_envs']} envs x "
             f"{cfg['env']['horizon']} steps, {cfg['num_seeds']} seeds, wall time {result['wall_time_s']:.0f} s on "
             f"{where_ran(result)}. IQM [95% stratified-bootstrap CI] over seeds; return and outer advantage averaged over the "
             f"last 10% of training.")
    write_outputs(out_dir, result, logs, header, table_rows(result["summary"]), intro,
                  f"Snake 6x6 ({result['scale']}): mean ± sd over {cfg['num_seeds']} seeds")


def main(argv=None):
    return run_cli(NAME, __doc__, SCALES, run, argv)


if __name__ == "__main__":
    main()
