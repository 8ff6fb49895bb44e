"""The MetaGenRL benchmark's Section 5.2 ablations (the objective's inputs; inner gradient steps)."""
from __future__ import annotations

import csv
import io
import os
import time

import numpy as np

from metarl.driver import write_text
from metarl.meta.metagenrl.protocol import get_scale
from benchmarks.metagenrl.tables import OUT, _final, _fmt, plot_curves, to_markdown


# Section 5.2 ablations (Fig. 5: the objective's inputs; Fig. 6: inner gradient steps). The paper shows
# them as curves only (meta-training on Lunar & Cheetah, testing on Cheetah, Hopper); what it reports:
ABLATIONS = [
    ("full", {}, {}, "reference"),
    ("no t", {"use_t": False}, {}, "performs well; slightly slower convergence in meta-training (Fig. 5)"),
    ("no V (V_t, V_t+1)", {"use_v": False}, {}, "large variance in meta-training; no meaningful progress at "
                                                 "test time (Fig. 5)"),
    ("no V_t+1", {"use_v_next": False}, {}, "no effect on performance (Fig. 5)"),
    ("3 inner steps", {}, {"inner_steps": 3}, "better test-time training on Hopper and Cheetah (Fig. 6)"),
    ("5 inner steps", {}, {"inner_steps": 5}, "worse than 3 steps (Fig. 6)"),
]


def _plot_ablation_training(trained, path, stamp=""):
    """Fig. 5a: the meta-training population's evaluation return, one panel per training environment."""
    from metarl.plots import _plt, curves, save_fig

    plt = _plt()
    env_names = list(next(iter(trained.values()))["metrics"])
    fig, axes = plt.subplots(1, len(env_names), figsize=(5 * len(env_names), 3.8), squeeze=False)
    for ax, env in zip(axes[0], env_names):
        for label, r in trained.items():
            m = r["metrics"][env]
            curves(ax, np.asarray(m["env_steps"])[:, 0], {label: np.asarray(m["eval_return"]).T}, "evaluation return")
        ax.set_title(f"meta-training agents on {env.split('/')[-1]}")
        ax.set_xlabel("environment steps per agent")
    fig.text(0.0, -0.04, stamp, fontsize=6)
    save_fig(fig, path)
    plt.close(fig)


def run_ablations(scale_name: str, out_dir: str = OUT, progress: bool = True):
    """Meta-train one objective per ablation on the first training set (same seed and budget as the main
    row), then meta-test each on every test environment (same seeds; one program per objective input
    layout). Writes ablations.md / .csv / .json and ablation_curves.png into ``out_dir``."""
    from metarl.meta import metagenrl as mg
    from metarl.meta.metagenrl import runs
    from metarl.train import device_info, package_versions, write_json

    scale = get_scale(scale_name)
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    train = scale.train_sets[0]
    test = tuple(scale.envs)
    trained, by_cfg = {}, {}
    for label, obj_kw, cfg_kw, _ in ABLATIONS:
        ocfg = mg.ObjectiveConfig(**obj_kw)
        d = os.path.abspath(os.path.join(out_dir, "ablations", label.replace(" ", "_").replace("(", "")
                                         .replace(")", "").replace(",", "")))
        r = runs.meta_train(scale, train, d, seed=0, objective=ocfg, inner_steps=cfg_kw.get("inner_steps"),
                          progress=progress)
        trained[label] = r
        by_cfg.setdefault(ocfg, {})[label] = r["paths"]["final"]
    results = {e: {} for e in test}
    for ocfg, objs in by_cfg.items():
        mt = runs.meta_test(scale, objs, test, seed=100, baselines=False, progress=progress)
        for e in test:
            results[e].update(mt["results"][e])
    wall = time.perf_counter() - t0
    header = (["objective", "meta-training (" + " & ".join(train) + ")"] + [f"meta-test {e}" for e in test]
              + ["paper (Sec. 5.2, curves only)"])
    rows = []
    for label, _, _, paper in ABLATIONS:
        m = trained[label]["metrics"]
        # Meta-training: the population's final evaluation return per training env, mean over its agents.
        mt_cell = ", ".join(f"{k.split('/')[-1]} {np.mean(np.asarray(v['eval_return'])[-min(2, len(v['eval_return'])):]):.0f}"
                            for k, v in m.items())
        rows.append([label, mt_cell] + [_fmt(_final(results[e][label])) for e in test] + [paper])
    table = to_markdown(header, rows)
    versions = package_versions()
    stamp = _stamp(scale_name, wall, versions)
    md = (f"# MetaGenRL ablations, Section 5.2 ({scale_name} scale)\n\n{table}\n\n"
          f"Meta-training: every objective trained on {' & '.join(train)} with the main row's budget and seed "
          f"({scale.train.total_steps} steps per agent, {scale.total_agents} agents); the column gives the "
          f"population's evaluation return at the end (mean of the last two evaluations and of the agents). "
          f"Meta-test: mean ± std over {scale.test_seeds} seeds of the final return after "
          f"{scale.test.total_steps} steps, fresh agents, frozen objective, the same seeds for every row. "
          + ("Quick scale: NOT comparable with the paper. " if scale_name == "quick" else "")
          + f"Wall time {wall:.0f} s.\n\n{stamp}\n")
    write_text(os.path.join(out_dir, "ablations.md"), md)
    _write_csv(os.path.join(out_dir, "ablations.csv"), [stamp], [header] + rows)
    plot_curves(results, {}, os.path.join(out_dir, "ablation_test_curves.png"), None, stamp)
    _plot_ablation_training(trained, os.path.join(out_dir, "ablation_train_curves.png"), stamp)
    write_json(os.path.join(out_dir, "ablations.json"), dict(
        scale=scale_name, wall_s=wall, package_versions=versions, device=device_info(),
        meta_train={k: dict(wall_s=v["wall_s"], metrics=v["metrics"], meta_grad_norm=v["meta_grad_norm"],
                            config=v["config"]) for k, v in trained.items()},
        meta_test=results, table=dict(header=header, rows=rows)))
    print(md)
    return md


def _stamp(scale_name, wall, versions):
    from metarl.train import device_info

    return (f"scale={scale_name} wall={wall:.0f}s device={device_info()['devices']} "
            + " ".join(f"{k}={v}" for k, v in versions.items()))


def _write_csv(path, comments, rows):
    """``rows`` as CSV after one ``# comment`` line each, written atomically (metarl.driver.write_text)."""
    buf = io.StringIO()
    buf.write("".join(f"# {c}\n" for c in comments))
    csv.writer(buf).writerows(rows)
    write_text(path, buf.getvalue())
