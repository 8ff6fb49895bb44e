"""The analytic toy of Section 4.1 / Appendix A: where do the three learning loops end?

f(s, a) = s + a, pi = theta, T = 2, terminal cost (s_T - g)^2, critic (s + a)^2 phi_1, s_0 = -6, g = 0.
Every loop runs from a vmapped sweep of initial theta; its end points are classified against the
closed-form stationary points (Eq. 35 for Q-fitting, Eq. 46-49 for the model-based loop), basin by basin.
Two critic regimes: "converged" (the critic solved exactly every iteration, the appendix's
assumption) and "online" (one Newton step damped to 1% per iteration, warm-started).
Figures 8 and 9 (critic landscapes and gradients along theta) and the end-point map go to PNGs.

    python -m experiments.model_based_critic_toy --scale quick
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

from metarl.config_cli import PositiveFloat, PositiveInt
from metarl.meta import model_based_critic as mbc
from metarl.meta.model_based_critic_outputs import (OUT_DIR, TOY_UNITS, UnitCheckpoints, check_scale, metadata,
                                                    one_line_errors, parse_cli, progress_bar, run_record, save_fig, write_text)

@dataclasses.dataclass(frozen=True)
class ToyExperiment:
    s0: float = -6.0
    g: float = 0.0
    theta_min: float = -4.0                # the sweep of initial policies theta over [theta_min, theta_max]
    theta_max: float = 12.0
    n_theta: PositiveInt = 161
    converged_iterations: PositiveInt = 300
    online_iterations: PositiveInt = 5000
    online_critic_lr: PositiveFloat = 0.01

    def progress_units(self) -> int:
        """Progress-bar units of a run: the six loops (2 critic regimes x 3 loops)."""
        return len(TOY_UNITS)

    @staticmethod
    def _at(scale: str) -> "ToyExperiment":
        check_scale(scale)
        return ToyExperiment() if scale == "quick" else ToyExperiment(n_theta=641, converged_iterations=3000,
                                                                       online_iterations=100000)


def classify(theta_end, cfg: mbc.ToyConfig, tol=1e-3):
    pts = mbc.toy_stationary_points(cfg)
    out = np.full(theta_end.shape, "other", dtype=object)
    out[~np.isfinite(theta_end)] = "diverged"
    out[np.abs(theta_end - pts["optimal"]) < 0.3] = "near optimal, not converged"
    out[np.abs(theta_end - pts["eq35"]) < tol] = "eq35 (theta=-(s0+s1)/2)"
    out[np.abs(theta_end - pts["optimal"]) < tol] = "optimal (theta=(g-s0)/2)"
    return out


def basins(theta0, labels, theta_end):
    """Contiguous runs of initial theta with the same end label."""
    runs, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            seg = theta_end[start:i]
            runs.append({"theta0_from": float(theta0[start]), "theta0_to": float(theta0[i - 1]),
                         "ends_at": labels[start], "theta_end_min": float(np.nanmin(seg)) if np.isfinite(seg).any() else None,
                         "theta_end_max": float(np.nanmax(seg)) if np.isfinite(seg).any() else None})
            start = i
    return runs


def landscapes(cfg: mbc.ToyConfig, thetas):
    """Figures 8/9: with the critic fitted at each theta, sum_t critic(s_t, theta) and its policy gradient."""
    import jax

    def q_at(theta):
        states = mbc.toy_rollout(theta, cfg.s0, cfg.horizon)
        phi = mbc._fit_scalar(lambda p: mbc.toy_td_error(p, states, theta, cfg.g), 0.0 * theta, "newton", 3, 0.0)
        return (mbc.toy_policy_objective(theta, phi, states),
                jax.grad(mbc.toy_policy_objective)(theta, phi, states), phi)

    def l_at(theta):
        states = mbc.toy_rollout(theta, cfg.s0, cfg.horizon)

        def task(phi):
            th = mbc._inner_step(theta, phi, states, cfg.mb_alpha)
            return (mbc.toy_rollout(th, cfg.s0, cfg.horizon)[-1] - cfg.g) ** 2
        phi = mbc._fit_scalar(task, 0.0 * theta, "newton", 3, 0.0)
        return (mbc.toy_policy_objective(theta, phi, states),
                jax.grad(mbc.toy_policy_objective)(theta, phi, states), phi)

    q_true = (cfg.s0 + cfg.horizon * thetas - cfg.g) ** 2
    return q_true, jax.vmap(q_at)(thetas), jax.vmap(l_at)(thetas)


def run(exp: ToyExperiment, out_dir: str = OUT_DIR, progress=None, resume: bool = False) -> dict:
    """The six loops from every initial theta (each checkpointed in out_dir/checkpoints once done; ``resume``
    loads those done), the landscapes and the figures; writes the summary and returns it."""
    import jax
    import jax.numpy as jnp

    t0 = time.time()
    units = UnitCheckpoints(out_dir, "toy", dataclasses.asdict(exp), resume)
    with jax.enable_x64(True):
        thetas0 = jnp.linspace(exp.theta_min, exp.theta_max, exp.n_theta, dtype=jnp.float64)
        regimes = {
            "converged": mbc.ToyConfig(s0=exp.s0, g=exp.g, critic_solver="newton", critic_steps=3,
                                       iterations=exp.converged_iterations),
            "online": mbc.ToyConfig(s0=exp.s0, g=exp.g, critic_solver="damped", critic_steps=1,
                                    critic_lr=exp.online_critic_lr, iterations=exp.online_iterations),
        }
        results, trajs = {}, {}
        for rname, cfg in regimes.items():
            for loop in mbc.TOY_LOOPS:
                done = units.load(f"{rname}_{loop}")
                if done is not None:
                    th_end = done[2]["theta_end"]
                else:
                    carry, _ = jax.jit(lambda t, cfg=cfg, loop=loop: mbc.toy_sweep(cfg, loop, t))(thetas0)
                    th_end = np.asarray(carry.theta)
                    units.save(f"{rname}_{loop}", arrays={"theta_end": th_end})
                labels = classify(th_end, cfg)
                s1_end = exp.s0 + th_end
                results[f"{rname}/{loop}"] = {
                    "basins": basins(np.asarray(thetas0), labels, th_end),
                    "fraction": {k: float(np.mean(labels == k)) for k in sorted(set(labels))},
                    "max_eq35_residual_at_eq35_ends": float(np.nanmax(np.where(
                        labels == "eq35 (theta=-(s0+s1)/2)", np.abs(th_end + (exp.s0 + s1_end) / 2), 0.0))),
                }
                trajs[f"{rname}/{loop}"] = th_end
                if progress is not None:
                    progress.update(1)
        # Eq. 61 (the appendix's Meta-Critic end point) as printed, for comparison with the loop.
        grid = np.linspace(-10, 10, 200001)
        f61 = grid + (exp.s0 + (exp.s0 + grid)) / (2 * ((exp.s0 + grid) ** 2 + (exp.s0 + 2 * grid) ** 2))
        eq61_roots = grid[np.where(np.diff(np.sign(f61)) != 0)[0]].tolist()
        cfg = regimes["converged"]
        grid_t = jnp.linspace(exp.theta_min, exp.theta_max, 401, dtype=jnp.float64)
        q_true, (q_val, q_grad, q_phi), (l_val, l_grad, l_phi) = landscapes(cfg, grid_t)
        to_np = lambda *xs: [np.asarray(x) for x in xs]
        grid_t, q_true, q_val, q_grad, l_val, l_grad, q_phi, l_phi = to_np(grid_t, q_true, q_val, q_grad, l_val,
                                                                            l_grad, q_phi, l_phi)
    wall = time.time() - t0
    summary = {"stationary_points": mbc.toy_stationary_points(regimes["converged"]),
               "eq61_fixed_points_as_printed": eq61_roots, "loops": results,
               **metadata(dataclasses.asdict(exp), wall)}
    write_text(os.path.join(out_dir, "toy_summary.json"), json.dumps(summary, indent=1))
    write_text(os.path.join(out_dir, "toy_basins.md"), basins_markdown(summary))
    figures(out_dir, np.asarray(thetas0), trajs, grid_t, q_true, q_val, q_grad, q_phi, l_val, l_grad, l_phi)
    return summary


def basins_markdown(summary) -> str:
    lines = ["| critic regime / loop | initial theta | ends at | theta_end range |", "|---|---|---|---|"]
    for name, r in summary["loops"].items():
        for b in r["basins"]:
            rng = "-" if b["theta_end_min"] is None else f"{b['theta_end_min']:.3f} .. {b['theta_end_max']:.3f}"
            lines.append(f"| {name} | {b['theta0_from']:.2f} .. {b['theta0_to']:.2f} | {b['ends_at']} | {rng} |")
    return "\n".join(lines) + "\n"


def figures(out_dir, thetas0, trajs, grid, q_true, q_val, q_grad, q_phi, l_val, l_grad, l_phi):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for name, val, grad, phi, title in (("fig8_toy_supervised_q.png", q_val, q_grad, q_phi,
                                          "Fig. 8: supervised Q (phi_1 of Eq. 30 at each theta)"),
                                         ("fig9_toy_model_based_critic.png", l_val, l_grad, l_phi,
                                          "Fig. 9: L_critic (phi_1 of Eq. 46 at each theta)")):
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
        axes[0].plot(grid, q_true, "k--", label="Q_true = (s_0 + 2 theta - g)^2")
        axes[0].plot(grid, val, label="sum_t critic(s_t, theta)")
        axes[0].set_ylim(-5, 80)
        axes[1].plot(grid, grad, label="d/dtheta sum_t critic (data fixed)")
        axes[1].axhline(0, color="gray", lw=0.5)
        axes[1].set_ylim(-20, 20)
        axes[2].plot(grid, phi, label="phi_1")
        axes[2].set_ylim(-5, 5)
        for ax in axes:
            for x in (3.0, 4.0):
                ax.axvline(x, color="r" if x == 3.0 else "orange", lw=0.7, ls=":")
            ax.set_xlabel("theta")
            ax.legend(fontsize=7)
        fig.suptitle(title + "; s0=-6, g=0; dotted: theta=3 (optimal), 4 (Eq. 35)")
        save_fig(fig, os.path.join(out_dir, name))
        plt.close(fig)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7), sharex=True)
    for i, regime in enumerate(("converged", "online")):
        for j, loop in enumerate(("q_fitting", "meta_critic", "model_based")):
            th_end = trajs[f"{regime}/{loop}"]
            ax = axes[i, j]
            ax.plot(thetas0, np.clip(th_end, -10, 15), ".", ms=3)
            ax.axhline(3, color="r", lw=0.7, ls=":")
            ax.axhline(4, color="orange", lw=0.7, ls=":")
            ax.set_title(f"{loop} ({regime} critic)", fontsize=9)
            ax.set_xlabel("initial theta")
            ax.set_ylabel("final theta")
    fig.suptitle("Toy loops: end point against initial theta (s0=-6, g=0)")
    save_fig(fig, os.path.join(out_dir, "toy_end_points.png"))
    plt.close(fig)


def main(argv=None):
    a = parse_cli(argv, __doc__, "toy", ToyExperiment, seeded=False)
    with one_line_errors("experiments.model_based_critic_toy", argv), run_record(a, "toy", a.exp), \
            progress_bar(a.exp.progress_units(), f"toy ({a.label})", a.progress) as bar:
        s = run(a.exp, a.out, bar, a.resume)
    print(basins_markdown(s))


if __name__ == "__main__":
    main()
