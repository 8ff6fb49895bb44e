"""MetaGenRL benchmark: Table 2 of Kirsch et al. (2020) in the paper's layout, ours beside the paper's.

    python -m benchmarks.metagenrl --scale quick   # part of `make bench` (a few minutes on a 2-core CPU)
    python -m benchmarks.metagenrl --scale paper   # the paper's budget: meant for an accelerator

Meta-trains one objective per training set (Table 2's rows), saving it at several stages, then
meta-tests every objective together with the TD3 and off-policy REINFORCE+GAE baselines on every
test environment (fresh agents, frozen objectives, same seeds for every variant), and trains the
on-policy baselines (PPO, REINFORCE+GAE) on the same step budget. Writes into results/metagenrl/:
table.md, table.csv, results.json, meta_test_curves.png, meta_train_curves.png.

    python -m benchmarks.metagenrl --scale quick --ablations   # Section 5.2: ablations.md, .csv, .json, *.png
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import time

import numpy as np

from benchmarks.common import write_text
from experiments import metagenrl as ex

OUT = os.path.join("results", "metagenrl")
PAPER_CSV = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                         "paper-tables", "metagenrl_table2.csv")
# The paper's Table 2 (mean return over 6 seeds at meta-test), kept here so the benchmark does not
# depend on a file outside the repository; checked against the shared CSV when it is present.
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


def _paper_table():
    if os.path.exists(PAPER_CSV):
        with open(PAPER_CSV) as f:
            rows = [r for r in csv.reader(line for line in f if not line.startswith("#"))][1:]
        shared = [(r[0], r[1], *map(int, r[2:])) for r in rows if r]
        if shared != PAPER:
            raise RuntimeError(f"the paper table in {PAPER_CSV} differs from the one in this benchmark")
    return PAPER


def _fmt(x):
    x = np.asarray(x, float)
    return f"{x.mean():.0f} ± {x.std():.0f}"


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
    for method, train, *vals in _paper_table():
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


def run(scale_name: str, out_dir: str = OUT, progress: bool = True):
    scale = ex.get_scale(scale_name)
    from metarl.train import device_info, package_versions, write_json

    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    objectives, meta_train = {}, {}
    for train in scale.train_sets:
        label = " & ".join(train)
        d = os.path.abspath(os.path.join(out_dir, "objectives", "_".join(train)))
        r = ex.meta_train(scale, train, d, seed=0, progress=progress)
        meta_train[label] = r
        objectives[label] = r["paths"]["final"]
    # Fig. 4: the first training set's objective at its earlier stages too.
    first = " & ".join(scale.train_sets[0])
    stages = {k: v for k, v in meta_train[first]["paths"].items() if k.startswith("stage_")}
    for k in sorted(stages)[:-1]:  # the last stage is the final objective
        objectives[f"{first} [{k.replace('_', ' ')}]"] = stages[k]
    test = tuple(scale.envs)
    mt = ex.meta_test(scale, objectives, test, seed=100, baselines=True, progress=progress)
    onp = ex.onpolicy_test(scale, test, seed=100, progress=progress)
    for e in test:
        mt["results"][e].update(onp["results"][e])
    header, rows = build_table(scale, mt["results"], list(objectives))
    # --- EPG and RL^2, Table 2's meta-learned baselines (benchmarks/metagenrl_baselines.py) -----------------
    from benchmarks import metagenrl_baselines as baselines

    base = baselines.run(scale_name, os.path.join(out_dir, "baselines"), progress=progress)
    rows = baselines.fill_rows(rows, base, list(test))
    # ----------------------------------------------------------------------------------------------------------
    table = to_markdown(header, rows)
    wall = time.perf_counter() - t0
    note = (f"Scale `{scale_name}`: mean ± std over {mt['seeds']} seeds of the final return (mean of the last "
            f"two evaluations) after {scale.test.total_steps} environment steps of meta-test training "
            f"(PPO and on-policy REINFORCE: the same steps, all on-policy, no random warm-up). "
            + ("Quick scale: cheap gymnax stand-ins, tiny budgets; NOT comparable with the paper's numbers. "
               if scale_name == "quick" else "")
            + f"Wall time {wall:.0f} s.")
    md = f"# MetaGenRL Table 2 ({scale_name} scale)\n\n{table}\n\n{note}\n"
    md += f"\n{baselines.note(base)}\n"  # EPG and RL^2 (benchmarks/metagenrl_baselines.py)
    extra_rows = [[k] + [_fmt(_final(mt["results"][e][k])) for e in test] for k in objectives if "[" in k]
    if extra_rows:
        md += "\nObjective at earlier meta-training stages (Fig. 4):\n\n" + to_markdown(
            ["objective"] + list(test), extra_rows) + "\n"
    versions = package_versions()
    stamp = _stamp(scale_name, wall, versions)
    cfg_line = (f"meta-train: {dict((k, v) for k, v in meta_train[first]['config'].items() if k != 'objective')}; "
                f"meta-test: total_steps={scale.test.total_steps}, seeds={mt['seeds']}; objective: "
                f"{meta_train[first]['config']['objective']}; on-policy: {onp['config']}")
    md += f"\n{stamp}\n\nConfig: {cfg_line}\n"
    write_text(os.path.join(out_dir, "table.md"), md)
    _write_csv(os.path.join(out_dir, "table.csv"), [stamp, cfg_line], [header] + rows)
    plot_curves(mt["results"], meta_train, os.path.join(out_dir, "meta_test_curves.png"),
                os.path.join(out_dir, "meta_train_curves.png"), stamp)
    write_json(os.path.join(out_dir, "results.json"), dict(
        scale=scale_name, wall_s=wall, package_versions=versions, device=device_info(),
        train_config=meta_train[first]["config"], test_config=mt["config"],
        meta_train={k: dict(wall_s=v["wall_s"], metrics=v["metrics"], meta_grad_norm=v["meta_grad_norm"])
                    for k, v in meta_train.items()},
        meta_test=dict(wall_s=mt["wall_s"], results=mt["results"]), onpolicy=dict(wall_s=onp["wall_s"],
                                                                                   config=onp["config"]),
        table=dict(header=header, rows=rows)))
    # EPG and RL^2 entries of summary.json (benchmarks/metagenrl_baselines.py)
    baselines.merge_summary(os.path.join(out_dir, "summary.json"), baselines.summary_entries(base, scale_name))
    print(md)
    return md


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
    from metarl.train import device_info, package_versions, write_json

    scale = ex.get_scale(scale_name)
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    train = scale.train_sets[0]
    test = tuple(scale.envs)
    trained, by_cfg = {}, {}
    for label, obj_kw, cfg_kw, _ in ABLATIONS:
        ocfg = mg.ObjectiveConfig(**obj_kw)
        d = os.path.abspath(os.path.join(out_dir, "ablations", label.replace(" ", "_").replace("(", "")
                                         .replace(")", "").replace(",", "")))
        r = ex.meta_train(scale, train, d, seed=0, objective=ocfg, inner_steps=cfg_kw.get("inner_steps"),
                          progress=progress)
        trained[label] = r
        by_cfg.setdefault(ocfg, {})[label] = r["paths"]["final"]
    results = {e: {} for e in test}
    for ocfg, objs in by_cfg.items():
        mt = ex.meta_test(scale, objs, test, seed=100, baselines=False, progress=progress)
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
    """``rows`` as CSV after one ``# comment`` line each, written atomically (via common.write_text)."""
    buf = io.StringIO()
    buf.write("".join(f"# {c}\n" for c in comments))
    csv.writer(buf).writerows(rows)
    write_text(path, buf.getvalue())


def main(argv=None):
    import jax

    # Persistent compilation cache: a second run skips the (CPU-dominant) compile of the programs.
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(".jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    from metarl.cli import ArgumentParser, add_scale_argument

    p = ArgumentParser(prog="python -m benchmarks.metagenrl", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scale_argument(p, ex.SCALES)  # a bad scale: one line on stderr, exit status 2
    p.add_argument("--out", default=OUT)
    p.add_argument("--ablations", action="store_true",
                   help="run the Section 5.2 ablations (no t, no V, no V_t+1, 3 and 5 inner steps) instead")
    args = p.parse_args(argv)
    ex.get_scale(args.scale)  # a bad value fails here, naming the valid choices
    if args.ablations:
        run_ablations(args.scale, args.out)
    else:
        run(args.scale, args.out)


if __name__ == "__main__":
    main()
