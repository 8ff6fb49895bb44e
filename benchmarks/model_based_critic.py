"""`make bench-model-based-critic`: the model-based meta-critic's toy, reacher and 7-DoF results.

    python -m benchmarks.model_based_critic --scale quick|paper [--parts toy reacher] [--resume]

Writes into results/model_based_critic/: the toy's basins and Figures 8/9, the point mass's Fig. 1
(landscapes and policy-gradient fields of Q_true, Q_sup and L_critic), the reacher's Fig. 4-7,
the 7-DoF arm's Tables 1-3 beside the paper's (markdown + CSV), the meta-training curves, the wall time
of a meta-iteration, and bench.json/tables.md with config, versions, device and wall times.

Each part is its experiment's command line (``python -m experiments.model_based_critic_<part>``), run in this
process; the tables are read back from the files the parts write (<part>_summary.json and their markdown).
A benchmark regenerates its results; a meta-training left unfinished in --out (a checkpoint short of its last
chunk) is refused unless --resume continues it.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Literal

from metarl.meta.model_based_critic_outputs import (OUT_DIR, SCALES, aggregate_scores, claims_markdown,
                                                    metadata, one_line_errors, part_files, sweep_table, write_text)

PARTS = ("toy", "pointmass", "reacher", "arm7")
RESUMABLE = ("reacher", "arm7")  # their meta-training checkpoints after every chunk
# the markdown each part's run writes beside its summary, shown in tables.md
TABLE_FILES = {"toy": "toy_basins.md", "pointmass": "pointmass.md", "arm7": "arm7_tables.md"}


def check_checkpoints(out_dir: str, parts, resume: bool):
    """A benchmark regenerates a finished run, but a new run must not silently replace an unfinished
    meta-training (a checkpoint short of its last chunk) and ``resume`` needs a checkpoint: one-line
    RunError otherwise."""
    from metarl.driver import CheckpointMissing, RunDirError, checkpoint_progress, has_checkpoint
    from metarl.meta.model_based_critic_outputs import checkpoint_folders

    found = [f for part in parts if part in RESUMABLE for f in checkpoint_folders(part)
             if has_checkpoint(os.path.join(out_dir, f))]
    if resume:
        if not found:
            raise CheckpointMissing(f"nothing to resume in {out_dir!r}: no meta-training checkpoint of "
                                    f"{', '.join(p for p in parts if p in RESUMABLE) or 'the selected parts'} there; "
                                    "start without --resume")
        return
    for f in found:
        try:
            meta = checkpoint_progress(os.path.join(out_dir, f))
        except CheckpointMissing:  # only a save cut short before its first chunk: nothing to keep
            continue
        if meta.get("chunk", 0) < (meta.get("total") or float("inf")):
            raise RunDirError(f"{out_dir!r} holds an unfinished meta-training ({f}: {meta.get('chunk')} of "
                              f"{meta.get('total', '?')} chunks): continue it with --resume (same settings), or give "
                              "another --out")


@dataclass(frozen=True)
class ModelBasedCriticBench:
    """The parts to run, their scale and the output folder."""

    scale: Literal[SCALES] = "quick"  # every part's experiment at this scale
    out: str = OUT_DIR  # output folder
    parts: tuple[Literal[PARTS], ...] = PARTS  # the parts to run, space-separated
    resume: bool = False
    """continue the reacher's and the arm's meta-training from their checkpoints in --out/checkpoints (written
    after every chunk; same scale and package versions)"""

    def validate(self):
        if not self.parts:
            raise ValueError(f"argument --parts: give at least one of {', '.join(PARTS)}")


PROG = "python -m benchmarks.model_based_critic"


def main(argv=None):
    from metarl.cli import fail, make_out_dir
    from metarl.config_cli import parse_command

    a = parse_command(PROG, __doc__.splitlines()[0], ModelBasedCriticBench(), argv)
    scale, parts = a.scale, list(dict.fromkeys(a.parts))
    from metarl.driver import RunError

    try:  # before anything is compiled or written
        check_checkpoints(a.out, parts, a.resume)
    except RunError as e:
        fail(PROG, f"{e} (see --help)")
    make_out_dir(PROG, a.out)
    import jax

    if not jax.config.jax_compilation_cache_dir:
        from metarl import enable_compilation_cache

        enable_compilation_cache()  # a repeated run skips the compilation
    from metarl.compile_clock import compile_report
    from metarl.cli import run_module

    def started(part):  # a part with a run record or a checkpoint in --out continues under --resume
        return any(os.path.exists(os.path.join(a.out, f)) for f in part_files(part))

    t0 = time.time()
    times = {}
    with one_line_errors("benchmarks.model_based_critic", argv), compile_report("benchmarks.model_based_critic", a.out):
        for part in parts:
            t = time.time()
            run_module(f"experiments.model_based_critic_{part}",
                       ["--scale", scale, "--out", a.out, "--resume" if a.resume and started(part) else "--overwrite"])
            times[part] = time.time() - t
    wall = time.time() - t0
    # Every part's results are read back from its files in the output folder (each records its own config,
    # versions, device and wall time); parts not run now keep their earlier files, so the tables stay
    # complete after a partial run.
    out, tables_md = {}, {}
    for name in PARTS:
        path = os.path.join(a.out, f"{name}_summary.json")
        if os.path.exists(path):
            with open(path) as f:
                out[name] = json.load(f)
            md_path = os.path.join(a.out, TABLE_FILES[name]) if name in TABLE_FILES else None
            if md_path and os.path.exists(md_path):
                with open(md_path) as f:
                    tables_md[name] = f.read().strip()
    md = [f"# Model-based meta-critic benchmark ({scale})", "",
          f"this invocation: parts {', '.join(parts)}, wall time {wall:.0f} s "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in times.items())}); device {jax.devices()[0]}", ""]
    if "toy" in out:
        md += ["## Toy (s0=-6, g=0): end point of each loop by initial theta "
               f"(wall {out['toy']['wall_time_s']:.0f} s)", "", tables_md.get("toy", ""), ""]
    if "pointmass" in out:
        md += ["## Point mass (Fig. 1): distance to theta* of each landscape's argmin and of Algorithm 3's end "
               f"points (mean over seeds; wall {out['pointmass']['wall_time_s']:.0f} s)", "",
               tables_md.get("pointmass", ""), ""]
    for name in ("reacher", "arm7"):
        if name in out:
            s = out[name]
            md += [f"## {name}: meta-training (part wall time {s['wall_time_s']:.0f} s, "
                   f"compile + first chunk {s['ours_compile_plus_first_chunk_s']:.0f} s)", "",
                   "final error on the training goals: a seed's mean over the last chunk, IQM [95% CI] over seeds "
                   "(a diagnostic: the paper's claims are about meta-test, below)", "",
                   "| method | final error on training goals | wall time of a meta-iteration (s) | verdict |",
                   "|---|---|---|---|"]
            seeds = s.get("final_train_error_seeds", {})
            for key, label in (("ours", "L_critic (ours)"), ("ddpg", "DDPG"), ("meta_critic", "Meta Critic")):
                if key not in s["final_train_error"]:
                    continue
                r = seeds.get(key)
                cell = (f"{r['iqm']:.4f} [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}]" if r
                        else f"{s['final_train_error'][key]:.4f} (mean)")
                md.append(f"| {label} | {cell} | {s['meta_iteration_wall_s'][key]:.4f} | - (no claim) |")
            md.append("")
    if "reacher" in out:
        md += ["## reacher: meta-test", "", sweep_table(out["reacher"].get("claims", [])), ""]
        md += [claims_markdown(out["reacher"].get("claims", []), "reacher, the claim with intervals"), ""]
    if "arm7" in out:
        md += ["## 7-DoF arm: Tables 1-3", "", tables_md.get("arm7", ""), "",
               claims_markdown(out["arm7"].get("claims", []), "7-DoF arm, the claim with intervals"), ""]
    scores = aggregate_scores({k: out[k]["claims"] for k in ("reacher", "arm7") if out.get(k, {}).get("claims")})
    if scores:
        from metarl.stats import plot_aggregate

        plot_aggregate(scores, os.path.join(a.out, "aggregate.png"),
                       "reacher + 7-DoF arm meta-test: 1 - error / error of not moving (per seed, each sweep a task)")
        md += ["Aggregate over the reacher's and the arm's sweeps: `aggregate.png` (IQM [95% CI] and performance "
               "profile of 1 - error / error of not moving).", ""]
    write_text(os.path.join(a.out, "tables.md"), "\n".join(md) + "\n")
    write_text(os.path.join(a.out, "bench.json"), json.dumps(
        {"part_wall_s_this_invocation": times,
         "part_wall_s_recorded": {k: v.get("wall_time_s") for k, v in out.items()},
         **metadata({"scale": scale, "parts": parts}, wall)}, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
