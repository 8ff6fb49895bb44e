"""The point-mass illustration (Section 4.2, Fig. 1): s' = s + a in 2-D, pi_theta(s) = [theta_1, theta_2]
(a constant action, the toy of Section 4.1 in two dimensions), T = 2, terminal cost ||s_T - g||^2, two
initial states. L_critic (a neural net) is meta-learned by Algorithm 2 on one training goal; Q_sup (the
goal folded into the state as s - g) is learned by Algorithm 1 (TD on the rollouts of the policies it
trains). Over a theta grid: the landscape sum_t critic(s_t, pi_theta) and the model-free policy-gradient
field of Q_true (Eq. 1 in closed form), Q_sup and L_critic, for the training goal and two unseen goals
(one near, one far, fixed in advance). Numbers: the distance of each landscape's argmin to the optimal
theta*, and where Algorithm 3 (Adam along the critic's policy gradient) ends from 25 starts over the grid.
Both L_critic inputs are run: (s, a, g) as in the paper (Fig. 1) and (s - g, a) (the second PNG).

    python -m experiments.model_based_critic_pointmass --scale quick
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

from metarl.config_cli import NonNegInt, PositiveInt
from metarl.meta import model_based_critic as mbc
from metarl.meta.model_based_critic_outputs import (OUT_DIR, UnitCheckpoints, check_scale, metadata, one_line_errors,
                                                    parse_cli, progress_bar, run_record, run_key, save_fig, write_text)


@dataclasses.dataclass(frozen=True)
class PointMassExperiment:
    seeds: PositiveInt = 3               # independent runs, vmapped
    seed: NonNegInt = 0                  # the seeds' keys: split(PRNGKey(16 seed + 11), seeds) (run_key, stream 11)
    mb_iterations: PositiveInt = 2000    # the model-based critic's meta-training iterations
    q_iterations: PositiveInt = 2000     # the Q-learned critic's iterations
    grid: PositiveInt = 41               # landscape grid per axis over [-box, box]
    quiver: PositiveInt = 11             # arrows per axis
    starts: PositiveInt = 5              # Algorithm 3 starts per axis (starts^2 in all)
    descend_steps: PositiveInt = 300
    train_goal: tuple[float, float] = (1.25, 1.25)          # theta* = (1, 1)
    test_goals: tuple[tuple[float, float], ...] = ((-0.75, 2.25), (-3.75, -2.75))  # theta* = (0, 1.5), (-1.5, -1)

    def progress_units(self) -> int:
        """Progress-bar units of a run: one per critic input (raw, folded)."""
        return len(VARIANTS)

    @staticmethod
    def _at(scale: str) -> "PointMassExperiment":
        check_scale(scale)
        return PointMassExperiment() if scale == "quick" else PointMassExperiment(seeds=5, mb_iterations=10000,
                                                                                 q_iterations=10000, grid=61)


def evaluate(cfg: mbc.PointMassConfig, exp: PointMassExperiment, critic_for, goal):
    """Landscape and field over the grid, the argmin, and Algorithm 3's end points from the starts."""
    import jax
    import jax.numpy as jnp

    lin = jnp.linspace(-cfg.box, cfg.box, exp.grid)
    grid = jnp.stack(jnp.meshgrid(lin, lin), -1).reshape(-1, 2)
    goal = jnp.asarray(goal)
    vals, field = mbc.pm_landscape_and_field(cfg, critic_for, grid, goal)
    s_lin = jnp.linspace(-0.8 * cfg.box, 0.8 * cfg.box, exp.starts)
    starts = jnp.stack(jnp.meshgrid(s_lin, s_lin), -1).reshape(-1, 2)
    ends = jax.vmap(lambda t0: mbc.pm_descend(cfg, critic_for, t0, goal, steps=exp.descend_steps))(starts)
    return {"values": vals.reshape(exp.grid, exp.grid), "field": field.reshape(exp.grid, exp.grid, 2),
            "argmin": grid[jnp.argmin(vals)], "ends": ends}


def variant_program(exp, critic_input):
    """(config, one_seed(key) -> results) of one critic input; vmapped over the seeds' keys by run_variant."""
    import jax
    import jax.numpy as jnp

    cfg = mbc.PointMassConfig(critic_input=critic_input, mb_iterations=exp.mb_iterations,
                              q_iterations=exp.q_iterations)
    goals = [exp.train_goal] + list(exp.test_goals)
    tg = jnp.asarray(exp.train_goal)

    def one_seed(key):
        k1, k2 = jax.random.split(key)
        phi, mb_curve = mbc.pm_meta_train(cfg, tg, k1)
        q, q_thetas, q_curve = mbc.pm_q_sup_train(cfg, tg, k2)
        crit_l, crit_q = mbc.pm_learned_critics(cfg, phi, q)
        out = {"mb_curve": mb_curve, "q_curve": q_curve, "q_policy_ends": q_thetas}
        for name, c in (("true", mbc.pm_true_critic(cfg)), ("sup", crit_q), ("ours", crit_l)):
            out[name] = [evaluate(cfg, exp, c, g) for g in goals]
        return out

    return cfg, one_seed


def run_variant(exp, critic_input, seed_keys, units=None):
    """Train and evaluate every seed of one critic input: (config, results as numpy). ``units``: a
    UnitCheckpoints; the results are loaded from it when done before (a resumed run), else saved to it."""
    import jax

    cfg, one_seed = variant_program(exp, critic_input)
    program = jax.vmap(one_seed)
    done = units.load(critic_input, jax.eval_shape(program, seed_keys)) if units is not None else None
    if done is not None:
        return cfg, jax.device_get(done[0])
    res = jax.device_get(jax.jit(program)(seed_keys))
    if units is not None:
        units.save(critic_input, res)
    return cfg, res


def distances(cfg, exp, res):
    """Per goal and critic: |argmin - theta*| and Algorithm 3's mean |end - theta*| and the fraction of
    starts that end within 0.25 of theta*, each mean over seeds (plus the per-seed values)."""
    import jax.numpy as jnp

    goals = [exp.train_goal] + list(exp.test_goals)
    out = []
    for gi, g in enumerate(goals):
        opt = np.asarray(mbc.pm_optimal_theta(cfg, jnp.asarray(g)))
        row = {"goal": list(g), "theta_opt": opt.tolist(), "kind": "train" if gi == 0 else "unseen"}
        for name in ("true", "sup", "ours"):
            r = res[name][gi]
            d_arg = np.linalg.norm(np.asarray(r["argmin"]) - opt, axis=-1)                  # (seeds,)
            d_end = np.linalg.norm(np.asarray(r["ends"]) - opt, axis=-1)                    # (seeds, starts)
            row[name] = {"argmin_dist": float(d_arg.mean()), "argmin_dist_per_seed": d_arg.tolist(),
                         "descent_end_dist": float(d_end.mean()), "descent_within_0.25": float((d_end < 0.25).mean()),
                         "within_0.25_per_seed": (d_end < 0.25).mean(axis=-1).tolist()}
        out.append(row)
    return out


def figure(path, cfg, exp, res, title):
    import jax.numpy as jnp
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    goals = [exp.train_goal] + list(exp.test_goals)
    lin = np.linspace(-cfg.box, cfg.box, exp.grid)
    step = max(1, (exp.grid - 1) // (exp.quiver - 1))
    fig, axes = plt.subplots(3, 3, figsize=(11, 10.5))
    for gi, g in enumerate(goals):
        opt = np.asarray(mbc.pm_optimal_theta(cfg, jnp.asarray(g)))
        for ci, (name, label) in enumerate((("true", "Q_true"), ("sup", "Q_sup (s - g)"), ("ours", "L_critic"))):
            ax = axes[gi, ci]
            r = res[name][gi]
            v = np.asarray(r["values"])[0]
            f = np.asarray(r["field"])[0]
            ax.imshow(v, origin="lower", extent=[-cfg.box, cfg.box, -cfg.box, cfg.box], cmap="viridis",
                      vmin=np.percentile(v, 1), vmax=np.percentile(v, 99))
            fx, fy = -f[::step, ::step, 0], -f[::step, ::step, 1]
            n = np.sqrt(fx ** 2 + fy ** 2) + 1e-12
            ax.quiver(lin[::step], lin[::step], fx / n, fy / n, color="w", scale=18, width=0.006)
            ax.plot(*opt, "rx", ms=11, mew=2.5, label="theta*")
            ax.plot(*np.asarray(r["argmin"])[0], "o", mfc="none", mec="orange", ms=10, mew=2, label="argmin")
            ends = np.asarray(r["ends"])[0]
            ax.plot(ends[:, 0], ends[:, 1], ".", color="magenta", ms=5, label="Alg. 3 ends")
            ax.set_xlim(-cfg.box, cfg.box)
            ax.set_ylim(-cfg.box, cfg.box)
            kind = "training goal" if gi == 0 else "unseen goal"
            ax.set_title(f"{label}, {kind} g=({g[0]:g}, {g[1]:g})", fontsize=9)
            if gi == 2:
                ax.set_xlabel("theta_1")
            if ci == 0:
                ax.set_ylabel("theta_2")
            if gi == 0 and ci == 0:
                ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title + "\ncolour: sum_t critic(s_t, pi_theta) (dark = low); arrows: -grad_theta (model-free); "
                 "seed 0", fontsize=10)
    save_fig(fig, path)
    plt.close(fig)


REACH = 0.5  # "leads to theta*": at least half of Algorithm 3's starts end within 0.25 of it (our reading)


def claims(rows: list[dict], variant: str) -> list[dict]:
    """Fig. 1's claim, "L_critic's gradient field leads to theta*, also for unseen goals", per goal, from
    the per-seed fraction of Algorithm 3's starts that end within 0.25 of theta*: ours against REACH
    (the interval of ours) and ours against Q_sup (the interval of P(ours > Q_sup)). Each row has "iqm",
    "ci" and "verdict"."""
    from metarl import stats

    out = []
    for r in rows:
        ours, sup = np.asarray(r["ours"]["within_0.25_per_seed"]), np.asarray(r["sup"]["within_0.25_per_seed"])
        goal = f"{r['kind']} goal ({r['goal'][0]:g}, {r['goal'][1]:g})"
        s = stats.summary_row(ours)
        out.append({"label": f"{variant}: {goal}: L_critic leads to theta*", "variant": variant, "kind": r["kind"],
                    "goal": goal, "test": "leads to theta*",
                    "iqm": s["iqm"], "ci": s["ci"], "seeds": s["n"], "reference_value": REACH,
                    "verdict": stats.verdict(s["ci"], paper_value=REACH, claim="higher")})
        c = stats.compare(ours, sup, claim="higher")
        out.append({"label": f"{variant}: {goal}: L_critic > Q_sup", "variant": variant, "kind": r["kind"],
                    "goal": goal, "test": "> Q_sup",
                    "iqm": c["iqm_a"], "ci": c["ci_a"], "seeds": c["n_a"], "reference_iqm": c["iqm_b"],
                    "reference_ci": c["ci_b"], "p_improvement": c["p_improvement"],
                    "p_improvement_ci": c["p_improvement_ci"], "verdict": c["claim_verdict"]})
    return out


def claims_markdown(rows: list[dict]) -> str:
    out = [f"Fig. 1's claim per goal: the fraction of Algorithm 3's starts ending within 0.25 of theta*, IQM [95% "
           f"CI] over seeds; 'leads to theta*' = at least {REACH:g} of the starts (our reading of the figure)", "",
           "| row | seeds | L_critic | reference | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        ref = (f"{r['reference_value']:g}" if "reference_value" in r else
               f"Q_sup {r['reference_iqm']:.2f} [{r['reference_ci'][0]:.2f}, {r['reference_ci'][1]:.2f}]; P "
               f"{r['p_improvement']:.2f} [{r['p_improvement_ci'][0]:.2f}, {r['p_improvement_ci'][1]:.2f}]")
        out.append(f"| {r['label']} | {r['seeds']} | {r['iqm']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}] | {ref} | "
                   f"{r['verdict']} |")
    return "\n".join(out)


def markdown(summary) -> str:
    """Fig. 1 per input variant and goal: the distances to theta* (means over seeds; diagnostics), the
    fraction of Algorithm 3's starts ending within 0.25 of theta* as IQM [95% CI] over seeds, and the
    verdicts of the claim rows (:func:`claims`) for that goal."""
    from metarl import stats

    verdicts = {}
    for c in summary.get("claims", []):
        verdicts.setdefault((c["variant"], c["goal"]), []).append(f"{c['test']}: {c['verdict']}")
    ci = lambda x: (lambda r: stats.interval_text(r["iqm"], r["ci"], ".2f"))(stats.summary_row(x))  # noqa: E731
    out = ["| L_critic input | goal | theta* | argmin dist: Q_true / Q_sup / L_critic (mean) | "
           "Alg. 3 end dist: Q_true / Q_sup / L_critic (mean) | ends within 0.25, Q_sup: IQM [95% CI] | "
           "ends within 0.25, L_critic: IQM [95% CI] | verdict (L_critic) |",
           "|---|---|---|---|---|---|---|---|"]
    for variant, rows in summary["variants"].items():
        for r in rows:
            f = lambda k, m: f"{r[k][m]:.2f}"  # noqa: E731
            goal = f"{r['kind']} goal ({r['goal'][0]:g}, {r['goal'][1]:g})"
            out.append(f"| {variant} | {r['kind']} ({r['goal'][0]:g}, {r['goal'][1]:g}) | "
                       f"({r['theta_opt'][0]:g}, {r['theta_opt'][1]:g}) | "
                       f"{f('true', 'argmin_dist')} / {f('sup', 'argmin_dist')} / {f('ours', 'argmin_dist')} | "
                       f"{f('true', 'descent_end_dist')} / {f('sup', 'descent_end_dist')} / {f('ours', 'descent_end_dist')} | "
                       f"{ci(r['sup']['within_0.25_per_seed'])} | {ci(r['ours']['within_0.25_per_seed'])} | "
                       f"{'; '.join(verdicts.get((variant, goal), ['-']))} |")
    return "\n".join(out)


VARIANTS = (("raw", "fig1_pointmass_landscapes.png", "Fig. 1: L_critic(s, a, g) (the paper's input)"),
            ("folded", "fig1_pointmass_landscapes_folded.png", "L_critic(s - g, a)"))


def run(exp: PointMassExperiment, out_dir: str = OUT_DIR, pbar=None, resume: bool = False) -> dict:
    """Both critic inputs (each checkpointed in out_dir/checkpoints once done; ``resume`` loads those done),
    their distances, claims and figures; writes the summary and returns it."""
    import jax
    import jax.numpy as jnp

    t0 = time.time()
    keys = jax.random.split(run_key(exp.seed, 11), exp.seeds)
    units = UnitCheckpoints(out_dir, "pointmass", dataclasses.asdict(exp), resume)
    summary = {"variants": {}, "final_losses": {}}
    for variant, fname, title in VARIANTS:
        cfg, res = run_variant(exp, variant, keys, units)
        summary["variants"][variant] = distances(cfg, exp, res)
        summary.setdefault("claims", []).extend(claims(summary["variants"][variant], variant))
        summary["final_losses"][variant] = {
            "model_based_task_loss_last100": float(np.asarray(res["mb_curve"])[:, -100:].mean()),
            "q_fitting_task_loss_last100": float(np.asarray(res["q_curve"])[:, -100:].mean()),
            "q_fitting_policy_end_dist": float(np.linalg.norm(
                np.asarray(res["q_policy_ends"]) - np.asarray(mbc.pm_optimal_theta(cfg, jnp.asarray(exp.train_goal))),
                axis=-1).mean())}
        figure(os.path.join(out_dir, fname), cfg, exp, res, title)
        if pbar is not None:
            pbar.update(1)
    summary.update(metadata(dataclasses.asdict(exp), time.time() - t0))
    write_text(os.path.join(out_dir, "pointmass_summary.json"), json.dumps(summary, indent=1))
    write_text(os.path.join(out_dir, "pointmass.md"), markdown(summary) + "\n\n" + claims_markdown(summary["claims"])
                 + "\n")
    return summary


def main(argv=None):
    a = parse_cli(argv, __doc__, "pointmass", PointMassExperiment)
    with one_line_errors("experiments.model_based_critic_pointmass", argv), run_record(a, "pointmass", a.exp), \
            progress_bar(a.exp.progress_units(), f"pointmass ({a.label})", a.progress) as bar:
        s = run(a.exp, a.out, bar, a.resume)
    print(markdown(s))
    print(json.dumps(s["final_losses"], indent=1))


if __name__ == "__main__":
    main()
