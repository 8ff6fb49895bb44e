"""The MetaGenRL benchmark's Table 2: the paper's numbers, ours beside them (IQM [95% CI] cells, verdicts),
and the meta-test / meta-train curves."""
from __future__ import annotations

import os

import numpy as np


OUT = os.path.join("results", "metagenrl")
# The paper's Table 2 (Kirsch et al., 2020: mean return over 6 seeds at meta-test; columns: method, training
# environments, then the test environments of PAPER_ENVS), transcribed here with its source so that the
# benchmark reads nothing outside the repository.
PAPER = [
    ("MetaGenRL", "Cheetah & Hopper", 2963, 2896, 25), ("MetaGenRL", "Cheetah & Lunar", 3132, 3308, 175),
    ("MetaGenRL", "Hopper & Lunar", 4843, 3012, 254), ("MetaGenRL", "Hopper", 3393, 2596, -204),
    ("MetaGenRL", "Lunar", 2701, 2793, 233), ("EPG", "Cheetah & Hopper", -657, 24, -322),
    ("EPG", "Lunar & Cheetah", -846, 14, -845), ("RL2", "Cheetah & Hopper", 2495, 360, -503),
    ("RL2", "Lunar & Cheetah", 1869, 4, 268), ("PPO", "-", 1455, 1894, 187), ("DDPG/TD3", "-", 8315, 2718, 288),
    ("off-policy REINFORCE", "-", -88, 1804, 168), ("on-policy REINFORCE", "-", 38, 565, 120),
]
PAPER_ENVS = ("Cheetah", "Hopper", "Lunar")
OURS_BASELINE = {"DDPG/TD3": "TD3", "off-policy REINFORCE": "off-policy REINFORCE", "PPO": "PPO",
                 "on-policy REINFORCE": "on-policy REINFORCE"}


def _fmt(x):
    """A Table 2 cell: IQM [95% stratified-bootstrap CI] over seeds of the per-seed final returns."""
    from metarl import stats

    r = stats.summary_row(np.asarray(x, float).reshape(-1))
    return iqm_cell(r["iqm"], r["ci"])


def iqm_cell(iqm, ci) -> str:
    from metarl.stats import interval_text

    big = max(abs(iqm), abs(ci[0]), abs(ci[1])) >= 100  # small returns (MountainCar) keep a decimal
    return interval_text(iqm, ci, ".0f" if big else ".1f")


VERDICT_COL = "verdict (ours)"


def add_verdicts(header: list, rows: list, summary: dict, learned_label: str, vs_baselines: dict | None = None):
    """Table 2's verdict column, from summary.json's intervals: the learned objective's row carries the seen /
    unseen claims; EPG's and RL^2's rows (where ours ran) the claim that MetaGenRL beats them, per test env
    (``vs_baselines``: benchmarks.metagenrl_baselines.learned_vs_baselines); reference rows have no claim;
    the paper's rows we did not run say so. ``header`` and ``rows`` gain the column in place."""
    header.append(VERDICT_COL)
    for row in rows:
        if row[0] == "MetaGenRL (ours)" and row[1] == learned_label:
            v = "; ".join(f"{summary[k]['env']} ({k}): {summary[k]['verdict']}" for k in ("seen", "unseen"))
        elif row[0] in ("EPG", "RL2") and "not run" not in row[2] and any(
                c["method"] == row[0] for c in (vs_baselines or {}).values()):
            v = "; ".join(f"MetaGenRL > {row[0]} on {c['env']}: {c['claim_verdict']}"
                          for c in vs_baselines.values() if c["method"] == row[0])
        elif all(c == "not run" for c in row[2:-len(PAPER_ENVS)]):
            v = "not run"
        else:
            v = "- (reference)" if row[0] != "MetaGenRL (ours)" else "- (no claim read)"
        row.append(v)
    return header, rows


def _final(res):
    """Per-seed final return: the mean of the last two evaluations (less noisy than the last alone)."""
    r = np.asarray(res["eval_return"], float)
    return r[:, -min(2, r.shape[1]):].mean(1)


def build_table(scale, results, row_labels):
    """Rows: the paper's rows in order, ours filled where we ran the same thing; our own extra rows
    (quick-scale training sets) after the paper's MetaGenRL rows. Columns: our test envs, then the paper's."""
    test = list(results)
    header = ["method", "training"] + [f"{e} (ours)" for e in test] + [f"{e} (paper)" for e in PAPER_ENVS]
    ours_cell = lambda variant: [(_fmt(_final(results[e][variant])) if variant in results[e] else "not run")
                                 for e in test]
    rows, used = [], set()
    for method, train, *vals in PAPER:
        label = None
        if method == "MetaGenRL" and train in row_labels:
            label = train
        elif method in OURS_BASELINE:
            label = OURS_BASELINE[method]
        cells = ours_cell(label) if label else ["not run"] * len(test)
        if label:
            used.add(label)
        rows.append([method, train] + cells + [str(v) for v in vals])
        if method == "MetaGenRL" and train == "Lunar":  # after the paper's last MetaGenRL row
            for lab in row_labels:
                if lab not in used and lab not in OURS_BASELINE.values():
                    rows.append(["MetaGenRL (ours)", lab] + ours_cell(lab) + ["n/a"] * len(PAPER_ENVS))
                    used.add(lab)
    if any("random" in results[e] for e in test):
        rows.append(["random policy (ours)", "-"] + ours_cell("random") + ["n/a"] * len(PAPER_ENVS))
    if any("zero action" in results[e] for e in test):
        rows.append(["zero-action policy (ours)", "-"] + ours_cell("zero action") + ["n/a"] * len(PAPER_ENVS))
    return header, rows


def to_markdown(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def plot_curves(test_results, meta_train, path_test, path_train, stamp=""):
    from metarl.plots import _plt, curves, save_fig

    plt = _plt()
    envs = list(test_results)
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.8), squeeze=False)
    for ax, e in zip(axes[0], envs):
        for k, v in test_results[e].items():  # on-policy rows evaluate from step eval_every on
            curves(ax, np.asarray(v["env_steps"])[0], {k: v["eval_return"]}, "evaluation return")
        ax.set_title(f"meta-test on {e}")
        ax.set_xlabel("environment steps")
    fig.text(0.0, -0.04, stamp, fontsize=6)
    save_fig(fig, path_test)
    plt.close(fig)
    if path_train is None:
        return
    fig, axes = plt.subplots(1, len(meta_train), figsize=(5 * len(meta_train), 3.8), squeeze=False)
    for ax, (label, r) in zip(axes[0], meta_train.items()):
        for env, m in r["metrics"].items():
            steps = np.asarray(m["env_steps"])[:, 0]
            curves(ax, steps, {env: np.asarray(m["eval_return"]).T}, "evaluation return")
        ax.set_title(f"meta-training on {label}")
        ax.set_xlabel("environment steps per agent")
    fig.text(0.0, -0.04, stamp, fontsize=6)
    save_fig(fig, path_train)
