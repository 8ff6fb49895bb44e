"""Running a population of agents in compiled chunks through the shared driver (metarl.driver):
progress, run records, checkpoints and resume."""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from metarl.meta.outer_value.core import AgentSpec, MetaConfig, Problem, make_chunk_runner, make_population


# ================================================================================================
# Running a population in compiled chunks
# ================================================================================================
def make_population_program(problem: Problem, mcfg_for: Callable[[str], MetaConfig], agents: Sequence[AgentSpec],
                            num_seeds: int, updates_per_log: int, logs_per_chunk: int, seed_axis: str = "vmap"):
    """The population as a program for :class:`metarl.driver.Driver`: ``(init(key) -> state,
    chunk(state) -> (state, logs))``.

    ``state`` holds the agents' states (:func:`make_population`), the run key and the number of chunks
    done; chunk ``i`` runs :func:`make_chunk_runner`'s ``updates_per_log * logs_per_chunk`` updates with
    key ``fold_in(run key, i)``, so a resumed run draws the same keys. ``logs[agent][metric]`` is
    ``[logs_per_chunk, num_seeds]``.
    """
    init_agents, step = make_population(problem, mcfg_for, agents, num_seeds, seed_axis)
    run = make_chunk_runner(step, updates_per_log, logs_per_chunk)

    def init(key):
        k_init, k_run = jax.random.split(key)
        return {"agents": init_agents(k_init), "key": k_run, "chunk": jnp.zeros((), jnp.int32)}

    @jax.jit
    def chunk(state):
        states, logs = run(state["agents"], jax.random.fold_in(state["key"], state["chunk"]))
        return {"agents": states, "key": state["key"], "chunk": state["chunk"] + 1}, logs

    return init, chunk


def train_population(problem: Problem, mcfg_for: Callable[[str], MetaConfig], agents: Sequence[AgentSpec],
                     num_seeds: int, num_updates: int, updates_per_log: int, logs_per_chunk: int, key,
                     seed_axis: str = "vmap", out_dir: str | None = None, config: dict | None = None,
                     resume: bool = False, **driver_options):
    """Train every agent and seed together through :class:`metarl.driver.Driver`: one compiled chunk
    at a time, with a progress bar, run records and a checkpoint after each chunk in ``out_dir`` (if
    given), from which ``resume=True`` continues bit for bit. ``config`` is the run's identity (a
    resume with another is refused); ``driver_options`` go to the Driver (progress, desc, overwrite,
    resume_hint, ...).

    Returns ``(states, logs)`` with ``logs[agent][metric]`` a numpy array ``[num_updates //
    updates_per_log, num_seeds]``, also written to ``out_dir`` after every chunk (metrics.json and metrics.csv,
    a row per agent, seed and log point: metarl.driver.write_metrics). ``num_updates`` must be a multiple of
    ``updates_per_log * logs_per_chunk``.
    """
    import numpy as np

    from metarl.driver import Driver

    chunk_updates = updates_per_log * logs_per_chunk
    if num_updates % chunk_updates:
        raise ValueError(f"num_updates={num_updates} is not a multiple of the chunk "
                         f"updates_per_log * logs_per_chunk = {chunk_updates}")
    init, chunk = make_population_program(problem, mcfg_for, agents, num_seeds, updates_per_log, logs_per_chunk,
                                          seed_axis)

    def by_log(stacked):  # [chunks, logs, seeds] -> [logs, seeds], the agents in the given order
        return {a.name: {m: x.reshape((-1,) + x.shape[2:]) for m, x in stacked[a.name].items()} for a in agents}

    def blocks(stacked):  # a row per agent, seed and log point
        logs = by_log(stacked)
        return [([{"agent": a.name, "seed": s} for s in range(num_seeds)],
                 {m: np.swapaxes(x, 0, 1) for m, x in logs[a.name].items()}) for a in agents], "log_index"

    driver_options = {"unit": "upd", "units_per_chunk": chunk_updates, "postfix": _headline, **driver_options}
    state, logs = Driver(init, chunk, key, num_updates // chunk_updates, out_dir, config or {}, runs=num_seeds,
                         metrics_blocks=blocks, **driver_options).run(resume)
    return state["agents"], by_log(logs)


def _headline(logs) -> dict:
    """The progress bar's numbers: each agent's latest discount, mean over seeds."""
    return {name: f"{float(d['gamma'][-1].mean()):.3f}" for name, d in logs.items()}
