"""7-DoF arm (a KUKA-iiwa-like MJCF chain) through differentiable Brax: meta-train the critic on 4 goals
(Algorithm 2), the DDPG-style supervised-Q and Meta-Critic baselines beside it, then Tables 1-3 of the paper: a fresh
policy learned from scratch with the frozen critic (Algorithm 3) on new goals N(goal, std^2) around two
training goals (Table 1), with end-effector masses 0..9 (Table 2) and end-effector link lengths
0.2..2.0 (Table 3). Error: mean squared error between the last joint angles and the goal, mean(std)
over new goals x seeds x policy initialisations. All meta-test settings are one compiled program.

    python -m experiments.model_based_critic_arm7 --scale quick
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time
from typing import ClassVar

import numpy as np

from metarl.config_cli import NonNegFloat, NonNegInt, PositiveInt
from metarl.meta import model_based_critic as mbc
from metarl.meta.model_based_critic_outputs import (METHODS, OUT_DIR, ArmExperiment, meta_test_claims, metadata,
                                                    one_line_errors, parse_cli, progress_bar, run_record,
                                                    save_meta_training, train_and_meta_test,
                                                    training_summary, write_text)

# The paper's Tables 1-3 (Bechtle et al., 2022), as published, for the side-by-side tables.
PAPER_TABLES_CSV = """\
# Model Based Meta Learning of Critics for Policy Gradients: 7-DoF Kuka generalization. Mean squared error between last state and goal, mean(std) over 10 new goals x 5 seeds x 5 policy inits.
table,setting,value,ours_mean,ours_std,ddpg_mean,ddpg_std,metacritic_mean,metacritic_std
1_new_goals,std,0.1,0.02,0.02,3.425,2.136,4.149,1.781
1_new_goals,std,0.2,0.04,0.03,3.943,2.415,3.817,1.763
1_new_goals,std,0.3,0.05,0.04,5.638,1.621,4.962,2.298
1_new_goals,std,0.4,0.07,0.05,4.426,2.841,4.413,1.746
1_new_goals,std,0.5,0.41,0.58,4.001,1.735,5.611,2.059
1_new_goals,std,0.6,1.65,2.63,3.9,1.664,5.544,2.5
1_new_goals,std,0.7,2.05,3.78,4.312,2.268,4.622,2.254
1_new_goals,std,0.8,1.01,1.92,4.293,1.609,4.77,1.585
1_new_goals,std,0.9,0.27,0.2,4.095,2.85,4.754,2.804
1_new_goals,std,1.0,0.95,0.8,5.031,3.801,7.771,3.304
2_ee_mass,mass,0,0.066,0.058,3.688,1.817,1.495,0.105
2_ee_mass,mass,1,0.061,0.054,4.276,1.295,2.696,0.865
2_ee_mass,mass,2,0.06,0.053,5.132,0.595,3.31,1.198
2_ee_mass,mass,3,0.06,0.053,3.494,2.585,2.879,0.621
2_ee_mass,mass,4,0.06,0.053,2.141,1.489,3.274,0.409
2_ee_mass,mass,5,0.06,0.053,1.882,0.841,4.267,1.215
2_ee_mass,mass,6,0.06,0.053,4.503,3.101,4.312,0.375
2_ee_mass,mass,7,0.06,0.054,3.919,2.408,3.205,1.314
2_ee_mass,mass,8,0.061,0.054,3.96,2.321,2.674,0.912
2_ee_mass,mass,9,0.061,0.054,2.327,2.229,2.238,0.704
3_ee_length,length,0.2,0.009,0.0,3.717,1.274,3.92,0.661
3_ee_length,length,0.4,0.009,0.0,5.295,1.045,3.003,0.461
3_ee_length,length,0.6,0.009,0.0,4.341,2.925,3.736,1.101
3_ee_length,length,0.8,0.009,0.0,5.197,1.629,3.047,0.409
3_ee_length,length,1.0,0.021,0.0,1.644,0.69,3.685,0.95
3_ee_length,length,1.2,0.021,0.0,1.926,1.264,3.147,1.079
3_ee_length,length,1.4,0.021,0.0,3.39,1.781,3.673,1.961
3_ee_length,length,1.6,0.021,0.0,1.616,0.876,5.166,0.627
3_ee_length,length,1.8,0.021,0.0,3.628,0.577,1.737,0.032
3_ee_length,length,2.0,0.021,0.0,2.918,1.118,1.944,0.561
"""
TABLES = (("1_new_goals", "std", (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)),
          ("2_ee_mass", "mass", (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)),
          ("3_ee_length", "length", (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)))


@dataclasses.dataclass(frozen=True)
class Arm7Experiment(ArmExperiment):
    """The seeds, budgets and inner loop (ArmExperiment; its defaults are the arm's quick scale), and the
    arm's meta-test: Tables 1-3."""

    new_goals: PositiveInt = 10          # per table column
    dyn_goal_std: NonNegFloat = 0.1      # Tables 2-3: new goals at this std around the training goals
    train_goal_seed: NonNegInt = 3

    PAPER: ClassVar[dict] = dict(seeds=5, iterations=3000, chunk=100, horizon=50, ddpg_iterations=3000,
                                 ddpg_test_steps=200, mc_iterations=3000, test_inits=5)


def train_goals(exp) -> np.ndarray:
    import jax

    return np.asarray(jax.random.uniform(jax.random.PRNGKey(exp.train_goal_seed), (4, 7), minval=-0.8, maxval=0.8))


def meta_test_pairs(exp, base):  # base: arm_models.ArmParams
    import jax.numpy as jnp

    from metarl.meta import arm_models

    tg = train_goals(exp)
    rng = np.random.default_rng(7)
    eps = rng.standard_normal((exp.new_goals, 7)).astype(np.float32)
    around = np.array([tg[i % 2] for i in range(exp.new_goals)], np.float32)   # two of the four training goals
    goals, masses, lengths, tags = [], [], [], []
    for table, name, values in TABLES:
        for v in values:
            for k in range(exp.new_goals):
                m, l = np.asarray(base.masses).copy(), np.asarray(base.lengths).copy()
                if name == "std":
                    g = around[k] + v * eps[k]
                else:
                    g = around[k] + exp.dyn_goal_std * eps[k]
                    if name == "mass":
                        m[-1] = v
                    else:
                        l[-1] = v
                goals.append(g); masses.append(m); lengths.append(l); tags.append((table, v))
    dyn = arm_models.ArmParams(jnp.asarray(np.stack(masses), jnp.float32), jnp.asarray(np.stack(lengths), jnp.float32))
    return jnp.asarray(np.stack(goals), jnp.float32), dyn, tags


def read_paper():
    out = {}
    rows = [r for r in PAPER_TABLES_CSV.splitlines() if r and not r.startswith("#")]
    for r in csv.DictReader(rows):
        out[(r["table"], float(r["value"]))] = r
    return out


def still_error(goals) -> np.ndarray:
    """Reference: the error of an arm that does not move (q_T = q_0 = 0) for each goal."""
    return np.mean(np.asarray(goals) ** 2, -1)


def tables(tags, err_ours, err_ddpg, goals=None, err_mc=None):
    """Rows (table, setting, value, ours mean/std, ddpg mean/std, paper's), stats over goals x seeds x inits;
    with ``goals``, also the error of an arm that does not move."""
    paper = read_paper()
    rows = []
    for table, name, values in TABLES:
        for v in values:
            sel = [i for i, t in enumerate(tags) if t == (table, v)]
            o, d = err_ours[sel].ravel(), err_ddpg[sel].ravel()
            mc = None if err_mc is None else err_mc[sel].ravel()
            p = paper.get((table, float(v)), {})
            rows.append({"table": table, "setting": name, "value": v, **column_stats(sel, err_ours, err_ddpg, err_mc),
                         "ours_mean": float(o.mean()), "ours_std": float(o.std()),
                         "ddpg_mean": float(d.mean()), "ddpg_std": float(d.std()),
                         "mc_mean": None if mc is None else float(mc.mean()),
                         "mc_std": None if mc is None else float(mc.std()),
                         "still_mean": None if goals is None else float(still_error(np.asarray(goals)[sel]).mean()),
                         "paper_ours_mean": p.get("ours_mean"), "paper_ours_std": p.get("ours_std"),
                         "paper_ddpg_mean": p.get("ddpg_mean"), "paper_ddpg_std": p.get("ddpg_std"),
                         "paper_metacritic_mean": p.get("metacritic_mean"), "paper_metacritic_std": p.get("metacritic_std")})
    return rows


def column_stats(sel, err_ours, err_ddpg, err_mc=None) -> dict:
    """One column of Tables 1-3 over seeds (a seed's score: its mean error over the column's goals and policy
    initialisations; errors are [pairs, seeds, inits]): IQM [95% CI] per method and the paper's claim
    "ours < DDPG / Meta Critic" decided from the interval of P(ours > them) (metarl.stats)."""
    from metarl import stats

    seed = {k: np.asarray(e)[sel].mean(axis=(0, 2)) for k, e in (("ours", err_ours), ("ddpg", err_ddpg),
                                                                   ("mc", err_mc)) if e is not None}
    out = {}
    for k, x in seed.items():
        r = stats.summary_row(x)
        out[f"{k}_iqm"], out[f"{k}_ci"] = r["iqm"], r["ci"]
        if k != "ours":
            out[f"verdict_vs_{k}"] = stats.compare(seed["ours"], x, claim="lower")["claim_verdict"]
    return out


def _ci(row: dict, k: str) -> str:
    from metarl.stats import interval_text

    return interval_text(row.get(f"{k}_iqm"), row.get(f"{k}_ci"), ".3g")


def markdown(rows) -> str:
    titles = {"1_new_goals": "Table 1: new goals N(0, std) around two training goals",
              "2_ee_mass": "Table 2: end-effector mass (training 3.12)",
              "3_ee_length": "Table 3: end-effector link length (training 0.126)"}
    out = []
    for table, name, values in TABLES:
        rs = [r for r in rows if r["table"] == table]
        out.append(f"**{titles[table]}** (mean squared final joint error; this run: IQM [95% stratified-bootstrap "
                   "CI] over seeds of a seed's mean error over the column's goals and initialisations; the paper: "
                   "mean(std); verdict: the paper's claim 'ours < DDPG / Meta Critic' from the interval of "
                   "P(ours > them))\n")
        out.append("| method | " + " | ".join(f"{name}={v:g}" for v in values) + " |")
        out.append("|---|" + "---|" * len(values))
        fmt = lambda m, s: "-" if m is None else f"{float(m):.3g}({float(s):.2g})"
        out.append("| L_critic (ours, this run) | " + " | ".join(_ci(r, "ours") for r in rs) + " |")
        out.append("| DDPG (this run) | " + " | ".join(_ci(r, "ddpg") for r in rs) + " |")
        if rs[0].get("mc_iqm") is not None:
            out.append("| Meta Critic (this run) | " + " | ".join(_ci(r, "mc") for r in rs) + " |")
        if rs[0].get("still_mean") is not None:
            out.append("| no movement (q_T = 0), reference | " + " | ".join(f"{r['still_mean']:.3g}" for r in rs) + " |")
        out.append("| L_critic (paper) | " + " | ".join(fmt(r["paper_ours_mean"], r["paper_ours_std"]) for r in rs) + " |")
        out.append("| DDPG (paper) | " + " | ".join(fmt(r["paper_ddpg_mean"], r["paper_ddpg_std"]) for r in rs) + " |")
        out.append("| Meta Critic (paper) | " + " | ".join(fmt(r["paper_metacritic_mean"], r["paper_metacritic_std"])
                                                        for r in rs) + " |")
        out.append("| verdict: ours < DDPG | " + " | ".join(r.get("verdict_vs_ddpg", "-") for r in rs) + " |")
        if rs[0].get("verdict_vs_mc") is not None:
            out.append("| verdict: ours < Meta Critic | " + " | ".join(r["verdict_vs_mc"] for r in rs) + " |")
        out.append("")
    return "\n".join(out)


def run(exp: Arm7Experiment, out_dir: str = OUT_DIR, pbar=None, resume: bool = False) -> dict:
    """Meta-train ours and both baselines (each checkpointed after every chunk in out_dir/checkpoints;
    ``resume`` continues them), meta-test them and write the outputs; returns the summary."""
    import jax.numpy as jnp

    from metarl.meta import arm_models

    task, base = arm_models.make_task(arm_models.ARM7)
    ours_cfg = mbc.MBCConfig(horizon=exp.horizon, inner_lr=exp.inner_lr, inner_steps=exp.inner_steps,
                             critic_lr=exp.critic_lr,
                             n_policy_inits=exp.n_policy_inits, iterations=exp.iterations)
    ddpg_cfg = mbc.DDPGConfig(horizon=exp.horizon, test_steps=exp.ddpg_test_steps)
    mc_cfg = mbc.MetaCriticBaselineConfig(horizon=exp.horizon, test_steps=exp.ddpg_test_steps)
    goals = jnp.asarray(train_goals(exp), jnp.float32)
    t0 = time.time()
    test_goals, test_dyn, tags = meta_test_pairs(exp, base)
    r = train_and_meta_test(exp, "arm7", task, base, goals, (ours_cfg, ddpg_cfg, mc_cfg), test_goals, test_dyn,
                            out_dir, resume, pbar)
    err_ours, err_ddpg, err_mc = (r["errors"][m] for m in METHODS)
    wall = time.time() - t0
    rows = tables(tags, err_ours, err_ddpg, test_goals, err_mc)
    claims = meta_test_claims({table: [i for i, t in enumerate(tags) if t[0] == table] for table, _, _ in TABLES},
                              err_ours, err_ddpg, err_mc, still_error(np.asarray(test_goals)))
    summary = {**training_summary(exp.chunk, r), "rows": rows, "claims": claims,
               **metadata(dataclasses.asdict(exp), wall)}
    write_text(os.path.join(out_dir, "arm7_summary.json"), json.dumps(summary, indent=1))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(rows)
    write_text(os.path.join(out_dir, "arm7_tables.csv"), buf.getvalue())
    write_text(os.path.join(out_dir, "arm7_tables.md"), markdown(rows))
    save_meta_training(out_dir, "arm7", "7-DoF arm", *(r["curves"][m] for m in METHODS))
    return summary


def main(argv=None):
    a = parse_cli(argv, __doc__, "arm7", Arm7Experiment)
    with one_line_errors("experiments.model_based_critic_arm7", argv), run_record(a, "arm7", a.exp), \
            progress_bar(a.exp.progress_units(), f"arm7 ({a.label})", a.progress) as bar:
        s = run(a.exp, a.out, bar, a.resume)
    print(markdown(s["rows"]))


if __name__ == "__main__":
    main()
