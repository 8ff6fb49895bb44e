"""Benchmark: outer value function for meta-gradient discount tuning (Bonnet et al., 2022).

    python -m benchmarks.outer_value --scale quick|medium|paper [--only chain|chain_learned|snake]

Runs the Discounting Chain (analytic critics, the paper's setting), the Discounting Chain with learned
tabular critics (not in the paper; its rows sit beside the paper's analytic-critic figures) and Snake
6x6 (all five agents, all seeds, one compiled program each), prints the summary table (final gamma,
return, mean outer-loss advantage) ours beside the paper's, and writes CSV/PNG/JSON/markdown into
``results/outer_value_chain/``, ``results/outer_value_chain_learned/`` and ``results/outer_value_snake/``;
the combined table goes to ``results/outer_value_chain/benchmark.md``. Scale ``medium`` runs the chain
parts at their quick scale and Snake at its medium scale (a ~25-minute CPU run, not part of ``make bench``).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

from benchmarks.common import parse_scale

SCALES = ("quick", "medium", "paper")
PARTS = ("chain", "chain_learned", "snake")
CHAIN_SCALE = {"quick": "quick", "medium": "quick", "paper": "paper"}


def combined_table(chain_result, snake_result, learned_result=None) -> str:
    from experiments import outer_value_chain as chain
    from experiments import outer_value_snake as snake

    header = ["env", "agent", "final gamma", "paper gamma", "return", "paper return", "outer adv. (ours)",
              "paper outer adv."]
    rows = []
    for env_name, result in (("Chain", chain_result), ("Chain, learned critics", learned_result)):
        if result is None:
            continue
        for agent, s in result["summary"].items():
            p = chain.PAPER[agent]
            ours = chain.fmt(s, "outer_advantage_step0", 4)
            rows.append([env_name, agent, chain.fmt(s, "final_gamma"), p["final_gamma"], chain.fmt(s, "return"),
                         p["return"], ours + (" (step 0)" if ours != "-" else ""),
                         (p["outer_advantage_step0"] + " (step 0)") if p["outer_advantage_step0"] else ""])
    if snake_result is not None:
        for agent, s in snake_result["summary"].items():
            p = snake.PAPER[agent]
            rows.append(["Snake", agent, chain.fmt(s, "final_gamma"), p["final_gamma"], chain.fmt(s, "return", 2),
                         p["return"], chain.fmt(s, "outer_advantage", 4), p["outer_advantage"]])
    return chain.markdown_table(header, rows)


def main(argv=None):
    from metarl.cli import ArgumentParser, add_scale_argument

    p = ArgumentParser(prog="python -m benchmarks.outer_value", description=__doc__.splitlines()[0])
    add_scale_argument(p, SCALES)  # a bad scale: one line on stderr, exit status 2
    p.add_argument("--only", default=None, choices=PARTS, help=f"run one part: {', '.join(PARTS)}")
    p.add_argument("--results", default="results", help="results root directory")
    a = p.parse_args(argv)
    scale = parse_scale(a.scale, SCALES)
    if a.only is not None and a.only not in PARTS:
        raise ValueError(f"unknown part {a.only!r}; valid parts: {', '.join(PARTS)}")

    import jax

    jax.config.update("jax_compilation_cache_dir", ".jax_cache")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    from experiments import outer_value_chain as chain
    from experiments import outer_value_snake as snake

    t0 = time.time()
    chain_result = snake_result = learned_result = None
    chain_scale = CHAIN_SCALE[scale]
    if a.only in (None, "chain"):
        chain_result = chain.run(chain.get_scale(chain_scale), os.path.join(a.results, chain.NAME), chain_scale)
    if a.only in (None, "chain_learned"):
        exp = chain.get_scale(chain_scale)
        exp = dataclasses.replace(exp, env=dataclasses.replace(exp.env, critic="learned"))
        learned_result = chain.run(exp, os.path.join(a.results, chain.NAME + "_learned"), chain_scale)
    if a.only in (None, "snake"):
        snake_out = snake.NAME + ("" if scale == "quick" else "_" + scale)
        snake_result = snake.run(snake.get_scale(scale, snake.SCALES), os.path.join(a.results, snake_out), scale)
    wall = time.time() - t0
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
             "Snake return: training episodes (stochastic policy). Mean ± sd over seeds, last 10% of training.\n")
    first = chain.NAME if chain_result is not None else (chain.NAME + "_learned" if learned_result is not None
                                                         else snake.NAME)
    out = os.path.join(a.results, first, "benchmark.md")
    chain.write_atomic(out, text)
    print(text)
    sys.stdout.flush()
    return chain_result, snake_result


if __name__ == "__main__":
    main()
