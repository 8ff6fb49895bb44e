"""Benchmark: outer value function for meta-gradient discount tuning (Bonnet et al., 2022).

    python -m benchmarks.outer_value --scale quick|medium|paper [--only chain|chain_learned|snake]

Runs the Discounting Chain (analytic critics, the paper's setting), the Discounting Chain with learned
tabular critics (not in the paper; its rows sit beside the paper's analytic-critic figures; 5k meta-updates
at the quick scale) and Snake
6x6 (all five agents, all seeds, one compiled program each), prints the summary table (final gamma,
return, mean outer-loss advantage) ours beside the paper's, and writes CSV/PNG/JSON/markdown into
``results/outer_value_chain/``, ``results/outer_value_chain_learned/`` and ``results/outer_value_snake/``;
the combined table goes to ``results/outer_value_chain/benchmark.md``. Scale ``medium`` runs the chain
parts at their quick scale and Snake at its medium scale (a ~25-minute CPU run, not part of ``make bench``).
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from metarl.meta.outer_value_outputs import agent_verdicts, claim_rows  # noqa: F401 (the paper's claims)

SCALES = ("quick", "medium", "paper")
PARTS = ("chain", "chain_learned", "snake")
CHAIN_SCALE = {"quick": "quick", "medium": "quick", "paper": "paper"}
# The learned-critics Chain (not in the paper) runs 5k of the quick Chain's 15k meta-updates in `make bench`
# (the quick scale): at 93 updates/s on a 2-core CPU its 15k took 171 s of a 45-minute budget sized for a CPU
# 2.4 times as slow. Medium and paper run it at the Chain's own length.
LEARNED_CHAIN_UPDATES = {"quick": 5_000}


def combined_table(chain_result, snake_result, learned_result=None) -> str:
    """Every part's agents, ours beside the paper's figures (each part's result.json carries them)."""
    from metarl.meta.outer_value_outputs import fmt, markdown_table

    header = ["env", "agent", "final gamma", "paper gamma", "return", "paper return", "outer adv. (ours)",
              "paper outer adv.", "verdict (the paper's claims on this agent)"]
    rows = []
    for env_name, result in (("Chain", chain_result), ("Chain, learned critics", learned_result)):
        if result is None:
            continue
        verdicts = agent_verdicts(result, env_name)
        for agent, s in result["summary"].items():
            p = result["paper"][agent]
            ours = fmt(s, "outer_advantage_step0", 4)
            rows.append([env_name, agent, fmt(s, "final_gamma"), p["final_gamma"], fmt(s, "return"),
                         p["return"], ours + (" (step 0)" if ours != "-" else ""),
                         (p["outer_advantage_step0"] + " (step 0)") if p["outer_advantage_step0"] else "",
                         verdicts.get(agent, "-")])
    if snake_result is not None:
        verdicts = agent_verdicts(snake_result, "Snake")
        for agent, s in snake_result["summary"].items():
            p = snake_result["paper"][agent]
            rows.append(["Snake", agent, fmt(s, "final_gamma"), p["final_gamma"], fmt(s, "return", 2),
                         p["return"], fmt(s, "outer_advantage", 4), p["outer_advantage"], verdicts.get(agent, "-")])
    return markdown_table(header, rows)


def write_summary(out_dir: str, result: dict, env: str):
    from metarl import stats
    from metarl.train import device_info, package_versions, write_json

    c = result["config"]
    returns = {a: np.asarray(s["return"]["per_seed"], float) for a, s in result["summary"].items()
               if "return" in s and np.all(np.isfinite(s["return"]["per_seed"]))}
    figure = None
    if returns:
        figure = stats.plot_aggregate(returns, os.path.join(out_dir, "aggregate.png"),
                                      title=f"{env}, scale {result['scale']}: return over the last 10% of training "
                                            f"({c['num_seeds']} seeds)")
    write_json(os.path.join(out_dir, "summary.json"), {
        "paper": "Outer value function for meta-gradients (Bonnet et al., 2022)", "env": env,
        "figure": os.path.basename(figure) if figure else None,
        "scale": result["scale"], "seeds": c["num_seeds"], "updates": c["num_updates"],
        "wall_time_s": result["wall_time_s"], "versions": package_versions(), "device": device_info(),
        "metric": "IQM [95% stratified-bootstrap CI] over seeds; return and advantages averaged over the last 10% "
                  "of training, gamma at the end", **claim_rows(result, env)})


def claims_markdown(results: dict) -> str:
    lines = ["", "Claims, decided from the interval over seeds (IQM [95% CI]; comparisons: P(improvement) [CI]):", ""]
    for env, r in results.items():
        if r is None:
            continue
        for c in claim_rows(r, env)["claims"]:
            if "iqm_a" in c:
                lines.append(f"- {c['label']}: {c['iqm_a']:.3f} [{c['ci_a'][0]:.3f}, {c['ci_a'][1]:.3f}] vs "
                             f"{c['iqm_b']:.3f} [{c['ci_b'][0]:.3f}, {c['ci_b'][1]:.3f}], P {c['p_improvement']:.2f} "
                             f"[{c['p_improvement_ci'][0]:.2f}, {c['p_improvement_ci'][1]:.2f}]: {c['claim_verdict']}")
            else:
                lines.append(f"- {c['label']}: {c['iqm']:.3f} [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]: {c['verdict']}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class OuterValueBench:
    """The scale, the part to run (all by default) and the results root."""

    scale: Literal[SCALES] = "quick"  # the Snake's scale; the Chain's is CHAIN_SCALE of it
    only: Literal[PARTS] | None = None  # run one part (None: all)
    results: str = "results"  # results root directory


PROG = "python -m benchmarks.outer_value"


def main(argv=None):
    from metarl.cli import make_out_dir, run_module
    from metarl.config_cli import parse_command

    a = parse_command(PROG, __doc__.splitlines()[0], OuterValueBench(), argv)
    scale = a.scale
    make_out_dir(PROG, a.results)
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a repeated or resumed run skips the compilation
    from metarl.driver import write_text

    t0 = time.time()
    chain_result = snake_result = learned_result = None
    chain_scale = CHAIN_SCALE[scale]
    from metarl.compile_clock import compile_report

    def part(module: str, out: str, scale: str, *extra: str) -> dict:
        """Run one experiment's command line (a benchmark regenerates its results: an earlier run's records
        in the folder are replaced) and read back the result it wrote."""
        run_module(module, ["--scale", scale, "--out", out, "--overwrite", *extra])
        with open(os.path.join(out, "result.json")) as f:
            return json.load(f)

    with compile_report("benchmarks.outer_value", a.results, "outer_value_compile_time.json"):
        if a.only in (None, "chain"):
            out = os.path.join(a.results, "outer_value_chain")
            chain_result = part("experiments.outer_value_chain", out, chain_scale)
            write_summary(out, chain_result, "Chain")
        if a.only in (None, "chain_learned"):
            out = os.path.join(a.results, "outer_value_chain_learned")
            n = LEARNED_CHAIN_UPDATES.get(scale)
            learned_result = part("experiments.outer_value_chain", out, chain_scale, "--critic", "learned",
                                  *(("--updates", str(n)) if n else ()))
            write_summary(out, learned_result, "Chain, learned critics")
        if a.only in (None, "snake"):
            out = os.path.join(a.results, "outer_value_snake" + ("" if scale == "quick" else "_" + scale))
            snake_result = part("experiments.outer_value_snake", out, scale)
            write_summary(out, snake_result, "Snake")
    wall = time.time() - t0
    import jax

    lines = [f"Outer value function benchmark, scale {scale}, total wall time {wall:.0f} s "
             f"({jax.devices()[0]}, jax {jax.__version__})."]
    for name, r in (("Chain", chain_result), ("Chain, learned critics", learned_result), ("Snake", snake_result)):
        if r is not None:
            c = r["config"]
            env = c["env"]
            steps = (f"{env['num_envs']} envs x {env['horizon']} steps" if name == "Snake"
                     else f"{env['batch_size']} episodes x {env['horizon']} steps")
            lines.append(f"- {name}: {c['num_updates']} updates ({steps}), {c['num_seeds']} seeds, "
                         f"{r['wall_time_s']:.0f} s.")
    text = "\n".join(lines) + "\n\n" + combined_table(chain_result, snake_result, learned_result)
    text += ("\nChain return: mean episode return of the training batches; outer advantage: first-step "
             "outer-loss advantage. Learned critics: tabular, TD(0) with the inner gamma (inner critic) and "
             "gamma' = 1 (outer critic), zero-initialised; the paper's columns are its analytic-critic figures. "
             "Snake return: training episodes (stochastic policy). IQM [95% stratified-bootstrap CI] over seeds, last "
             "10% of training; the verdict column reads the claims below.\n")
    text += claims_markdown({"Chain": chain_result, "Chain, learned critics": learned_result, "Snake": snake_result})
    first = ("outer_value_chain" if chain_result is not None else "outer_value_chain_learned"
             if learned_result is not None else "outer_value_snake")
    out = os.path.join(a.results, first, "benchmark.md")
    write_text(out, text)
    print(text)
    sys.stdout.flush()
    return chain_result, snake_result


if __name__ == "__main__":
    main()
