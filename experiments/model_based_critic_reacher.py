"""2-DoF reacher through differentiable Brax: meta-train the critic on 4 goals (Algorithm 2, seeds
vmapped), the DDPG-style supervised-Q baseline and the Meta-Critic baseline beside it, then meta-test (Algorithm 3, model-free, a
fresh policy from scratch with the frozen critic) over a grid of new goals covering joint space
(Fig. 5), new link masses (Fig. 6) and new link lengths (Fig. 7), each sweep in one compiled program
with the Brax system's masses and lengths as traced inputs. Fig. 4: meta-training curves.

    python -m experiments.model_based_critic_reacher --scale quick
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import ClassVar

import numpy as np

from metarl.config_cli import PositiveFloat, PositiveInt
from metarl.meta import model_based_critic as mbc
from metarl.meta.model_based_critic_outputs import (METHODS, OUT_DIR, ArmExperiment, meta_test_claims, metadata,
                                                    one_line_errors, parse_cli, progress_bar, run_record,
                                                    save_fig, save_meta_training, train_and_meta_test,
                                                    training_summary, write_text)


@dataclasses.dataclass(frozen=True)
class ReacherExperiment(ArmExperiment):
    """The seeds, budgets and inner loop (ArmExperiment) at the reacher's quick-scale values, and its meta-test."""

    iterations: PositiveInt = 400
    horizon: PositiveInt = 50
    ddpg_iterations: PositiveInt = 400
    mc_iterations: PositiveInt = 400
    grid: PositiveInt = 7            # new goals: grid x grid over [-goal_span, goal_span]^2
    goal_span: PositiveFloat = 2.0
    masses: tuple[PositiveFloat, ...] = (0.5, 1.0, 2.0, 4.0)     # meta-test: end-effector link masses
    lengths: tuple[PositiveFloat, ...] = (0.6, 1.0, 1.4, 1.8)    # meta-test: end-effector link lengths
    train_goals: tuple[tuple[float, float], ...] = ((0.8, 0.8), (-0.8, 0.8), (0.8, -0.8), (-0.8, -0.8))

    PAPER: ClassVar[dict] = dict(seeds=5, iterations=3000, chunk=100, ddpg_iterations=3000, ddpg_test_steps=200,
                                 mc_iterations=3000, test_inits=5, grid=13, masses=(0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0),
                                 lengths=(0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0))


def configs(exp):
    ours = mbc.MBCConfig(horizon=exp.horizon, inner_lr=exp.inner_lr, inner_steps=exp.inner_steps,
                             critic_lr=exp.critic_lr,
                         n_policy_inits=exp.n_policy_inits, iterations=exp.iterations)
    ddpg = mbc.DDPGConfig(horizon=exp.horizon, test_steps=exp.ddpg_test_steps)
    mc = mbc.MetaCriticBaselineConfig(horizon=exp.horizon, test_steps=exp.ddpg_test_steps)
    return ours, ddpg, mc


def meta_test_pairs(exp, base):  # base: arm_models.ArmParams
    """(goal, dynamics) pairs of the three meta-test sweeps, concatenated for one program."""
    import jax.numpy as jnp

    from metarl.meta import arm_models

    lin = np.linspace(-exp.goal_span, exp.goal_span, exp.grid)
    grid_goals = np.array([(a, b) for b in lin for a in lin], np.float32)
    tg = np.asarray(exp.train_goals, np.float32)
    goals, masses, lengths, tags = [], [], [], []
    for g in grid_goals:
        goals.append(g); masses.append(base.masses); lengths.append(base.lengths); tags.append(("goal", g[0], g[1]))
    for m1 in exp.masses:
        for m2 in exp.masses:
            for g in tg:
                goals.append(g); masses.append(np.array([m1, m2])); lengths.append(base.lengths)
                tags.append(("mass", m1, m2))
    for l1 in exp.lengths:
        for l2 in exp.lengths:
            for g in tg:
                goals.append(g); masses.append(base.masses); lengths.append(np.array([l1, l2]))
                tags.append(("length", l1, l2))
    dyn = arm_models.ArmParams(jnp.asarray(np.stack(masses), jnp.float32), jnp.asarray(np.stack(lengths), jnp.float32))
    return jnp.asarray(np.stack(goals)), dyn, tags


def grids(exp, tags, err):
    """Per sweep, a (rows, cols) grid of the error mean over goals, seeds and policy inits."""
    out = {}
    for kind, axis in (("goal", np.linspace(-exp.goal_span, exp.goal_span, exp.grid)),
                       ("mass", np.asarray(exp.masses)), ("length", np.asarray(exp.lengths))):
        g = np.zeros((len(axis), len(axis)))
        for i, a in enumerate(axis):          # first parameter: x axis
            for j, b in enumerate(axis):
                sel = [k for k, t in enumerate(tags) if t[0] == kind and np.isclose(t[1], a) and np.isclose(t[2], b)]
                g[j, i] = float(np.mean(err[sel]))
        out[kind] = (axis, g)
    return out


def run(exp: ReacherExperiment, out_dir: str = OUT_DIR, pbar=None, resume: bool = False) -> dict:
    """Meta-train ours and both baselines (each checkpointed after every chunk in out_dir/checkpoints;
    ``resume`` continues them), meta-test them and write the outputs; returns the summary."""
    import jax.numpy as jnp

    from metarl.meta import arm_models

    ours_cfg, ddpg_cfg, mc_cfg = configs(exp)
    task, base = arm_models.make_task(arm_models.REACHER2)
    goals = jnp.asarray(exp.train_goals, jnp.float32)
    t0 = time.time()
    test_goals, test_dyn, tags = meta_test_pairs(exp, base)
    r = train_and_meta_test(exp, "reacher", task, base, goals, (ours_cfg, ddpg_cfg, mc_cfg), test_goals, test_dyn,
                            out_dir, resume, pbar)
    err_ours, err_ddpg, err_mc = (r["errors"][m] for m in METHODS)
    wall = time.time() - t0
    g_ours, g_ddpg, g_mc = grids(exp, tags, err_ours), grids(exp, tags, err_ddpg), grids(exp, tags, err_mc)
    still = np.mean(np.asarray(test_goals) ** 2, -1)   # an arm that does not move
    g_still = grids(exp, tags, still)
    claims = meta_test_claims({kind: [k for k, t in enumerate(tags) if t[0] == kind]
                               for kind in ("goal", "mass", "length")}, err_ours, err_ddpg, err_mc, still)
    summary = {
        **training_summary(exp.chunk, r),
        "meta_test_mean_error": {k: {"ours": float(g_ours[k][1].mean()), "ddpg": float(g_ddpg[k][1].mean()),
                                     "meta_critic": float(g_mc[k][1].mean()),
                                     "no_movement": float(g_still[k][1].mean())} for k in g_ours},
        "claims": claims,
        "grids": {m: {k: {"axis": g[k][0].tolist(), "error": g[k][1].tolist()} for k in g} for m, g in
                  (("ours", g_ours), ("ddpg", g_ddpg), ("meta_critic", g_mc))},
        **metadata(dataclasses.asdict(exp), wall)}
    write_text(os.path.join(out_dir, "reacher_summary.json"), json.dumps(summary, indent=1))
    save_meta_training(out_dir, "reacher", "reacher", *(r["curves"][m] for m in METHODS))
    figures(out_dir, exp, g_ours, g_ddpg, g_mc)
    return summary


def figures(out_dir, exp, g_ours, g_ddpg, g_mc):
    """Figs. 5-7: the meta-test error over new goals, link masses and link lengths, per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tg = np.asarray(exp.train_goals)
    for kind, fname, label, cross in (("goal", "fig5_reacher_new_goals.png", "goal q1, q2 (rad)", tg),
                                      ("mass", "fig6_reacher_link_masses.png", "link masses m1, m2 (kg)",
                                       np.array([[1.0, 1.0]])),
                                      ("length", "fig7_reacher_link_lengths.png", "link lengths l1, l2 (m)",
                                       np.array([[1.0, 1.0]]))):
        fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.8))
        vmax = max(g_ours[kind][1].max(), g_ddpg[kind][1].max(), g_mc[kind][1].max())
        for ax, (name, g) in zip(axes, (("L_critic (ours)", g_ours), ("DDPG", g_ddpg), ("Meta Critic", g_mc))):
            axis, e = g[kind]
            im = ax.imshow(e, origin="lower", extent=[0, len(axis), 0, len(axis)], vmin=0, vmax=vmax, cmap="viridis")
            ax.set_xticks(np.arange(len(axis)) + 0.5)
            ax.set_xticklabels([f"{a:g}" for a in axis], fontsize=7)
            ax.set_yticks(np.arange(len(axis)) + 0.5)
            ax.set_yticklabels([f"{a:g}" for a in axis], fontsize=7)
            for c in cross:
                ix = np.argmin(np.abs(axis - c[0])) + 0.5
                iy = np.argmin(np.abs(axis - c[1])) + 0.5
                ax.plot(ix, iy, "rx", ms=9)
            ax.set_title(f"{name}: mean {e.mean():.3f}")
            ax.set_xlabel(label)
            fig.colorbar(im, ax=ax)
        fig.suptitle(f"reacher meta-test error ({kind}); red: training setting")
        save_fig(fig, os.path.join(out_dir, fname))
        plt.close(fig)


def main(argv=None):
    a = parse_cli(argv, __doc__, "reacher", ReacherExperiment)
    with one_line_errors("experiments.model_based_critic_reacher", argv), run_record(a, "reacher", a.exp), \
            progress_bar(a.exp.progress_units(), f"reacher ({a.label})", a.progress) as bar:
        s = run(a.exp, a.out, bar, a.resume)
    print(json.dumps({k: s[k] for k in ("final_train_error", "meta_test_mean_error", "meta_iteration_wall_s")},
                     indent=1))


if __name__ == "__main__":
    main()
