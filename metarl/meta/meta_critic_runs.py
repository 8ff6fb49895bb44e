"""The Online Meta-Critic experiment (Zhou et al., NeurIPS 2020, Tables 1-3): {DDPG, TD3, SAC} x {vanilla,
+updates, MC variants, +params} on one task through ``metarl.train.Runner``: its settings
(:class:`ExperimentConfig`), the variants' traced meta-hyperparameters, :func:`run_experiment` and the paper's
metrics. The command line (``experiments/meta_critic.py``) and the benchmark (``benchmarks/meta_critic``)
both call these.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

import jax
import jax.numpy as jnp
import numpy as np

from metarl.agents import OFF_POLICY, make_agent
from metarl.config_cli import NonNegFloat, NonNegInt, NotAnOption, PositiveInt, named
from metarl.meta.meta_critic import GUARD_RESET_AFTER, MetaCriticConfig, make_meta_critic
from metarl.meta.meta_critic_overhead import measure_overhead, scaled_hidden

# ----------------------------------------------------------------------------------------------------
# Brax experiments: {DDPG, TD3, SAC} x {vanilla, +updates, MC variants, +params} (Tables 1-3)
# ----------------------------------------------------------------------------------------------------
# Variants of the main program (one compiled program, vmapped with the seeds): their traced meta-hp.
# The program is compiled with extra updates only if "updates" is asked for (max_extra_updates = ceil(K))
# and with the re-initialisation guard only if "mc_guard" is (reset_after = GUARD_RESET_AFTER, armed by the
# traced hp ``guard`` in that member only); otherwise neither costs anything.
SHARED_VARIANTS = {
    "vanilla": dict(aux_scale=0.0, extra_updates=0.0, meta_clip=1.0, guard=0.0),
    "updates": dict(aux_scale=0.0, extra_updates=None, meta_clip=1.0, guard=0.0),  # None: K, the measured overhead
    "mc": dict(aux_scale=1.0, extra_updates=0.0, meta_clip=1.0, guard=0.0),  # Eq. 10, Eq. 9 (the default)
    "mc_plain": dict(aux_scale=1.0, extra_updates=0.0, meta_clip=0.0, guard=0.0),  # Eq. 10, Eq. 8
    "mc_guard": dict(aux_scale=1.0, extra_updates=0.0, meta_clip=1.0, guard=1.0),  # "mc" + the guard (ablation)
}
OWN_PROGRAM_VARIANTS = ("mc_sa", "metareg", "params")  # Eq. 11, MetaReg, '+params'
VARIANTS = tuple(SHARED_VARIANTS) + OWN_PROGRAM_VARIANTS
LABELS = {"vanilla": "{A}", "updates": "{A}+updates", "params": "{A}+params", "mc": "{A}-MC",
          "mc_plain": "{A}-MC L_meta", "mc_guard": "{A}-MC +guard", "mc_sa": "{A}-MC h(pi,s,a)",
          "metareg": "{A}-MC MetaReg"}
K_SOURCES = ("wall", "flops")
ALGOS = tuple(OFF_POLICY)
LOOKAHEADS = ("all", "features", "first_layer")  # metarl.meta.meta_critic.LOOKAHEADS


@dataclass(frozen=True)
class ExperimentConfig:
    algo: NotAnOption[str] = "td3"  # on the command line: --algo (MetaCriticCommand)
    env: str = "brax/halfcheetah"  # e.g. brax/hopper, gymnax/Pendulum-v1 (continuous actions)
    variants: tuple[Literal[VARIANTS], ...] = ("vanilla", "updates", "params", "mc")
    seeds: PositiveInt = 5  # independent runs, vmapped in one program
    seed: NonNegInt = 0  # the run's key: seed i of --seeds trains from split(PRNGKey(seed), seeds)[i]
    total_steps: Annotated[PositiveInt, named("steps")] = 1_000_000  # environment steps per run, warm-up included
    learning_starts: NonNegInt = 10_000
    eval_every: PositiveInt = 1_000
    eval_episodes: PositiveInt = 10
    evals_per_chunk: PositiveInt = 10  # evaluations per compiled chunk (a checkpoint after each)
    max_episode_steps: PositiveInt | None = None  # episode length (None: the env's own)
    # base agent config overrides (hidden sizes, batch size); on the command line: --hidden, --sac-batch
    agent: NotAnOption[dict] = field(default_factory=dict)
    lookahead: Literal[LOOKAHEADS] = "all"  # the look-ahead's actor parameters
    weight_decay: Literal["decoupled", "l2"] = "decoupled"
    updates_k: NonNegFloat | None = None  # '+updates' K (extra updates per update); None: measured (updates_k_from)
    # What K measures when it is measured (measure_overhead at the run's networks): "wall" (default; the
    # paper's "K% more compute": K = wall_ratio - 1) or "flops" (K = flop_ratio - 1; deterministic).
    updates_k_from: Literal[K_SOURCES] = "wall"
    params_n: NonNegFloat | None = None  # '+params' fraction N; None: the measured parameter overhead

    def validate(self):
        bad = sorted(set(self.variants) - set(VARIANTS))
        if bad:
            raise ValueError(f"unknown variant(s) {bad}; valid: {', '.join(VARIANTS)}")
        if self.updates_k_from not in K_SOURCES:
            raise ValueError(f"unknown updates_k_from {self.updates_k_from!r}; valid: {', '.join(K_SOURCES)}")
        return self

    def train_config(self, **agent_overrides):
        from metarl.train import TrainConfig

        return TrainConfig(algo=self.algo, env=self.env, seeds=self.seeds, seed=self.seed,
                           total_steps=self.total_steps, learning_starts=self.learning_starts,
                           eval_every=self.eval_every, eval_episodes=self.eval_episodes,
                           evals_per_chunk=self.evals_per_chunk, max_episode_steps=self.max_episode_steps,
                           agent={**self.agent, **agent_overrides})


def _set_runs(runner, combos: list[dict]):
    """Point a Runner at an explicit list of hp combinations (not a cartesian grid), times the seeds."""
    from metarl.train import run_sharding

    c = runner.config
    seed_keys = jax.random.split(jax.random.PRNGKey(c.seed), c.seeds)
    runner.combos = combos
    runner.keys = jnp.tile(seed_keys, (len(combos), 1))
    runner.hp = {k: jnp.repeat(jnp.asarray([cb[k] for cb in combos], jnp.float32), c.seeds) for k in combos[0]}
    runner.num_runs = len(combos) * c.seeds
    runner.sharding = run_sharding(runner.num_runs)


MC_METRICS = ("L_critic", "h_w", "L_meta", "meta_grad_norm", "meta_grad_zero", "meta_absorbed", "meta_resets",
              "extra_updates_done")


def run_experiment(cfg: ExperimentConfig, out_dir: str | None = None, progress: bool = True, overhead=None,
                   resume: bool = False) -> dict:
    """Train every requested variant; returns {variant: {eval_return [seeds, evals], ...}, 'overhead': ...}.

    ``resume``: each program whose run directory under ``out_dir`` holds a started run continues from its
    checkpoint (the Runner refuses, in one line, a run directory whose config differs); the others start
    fresh. The overhead measured for '+updates' (K) and '+params' (N) is written to ``out_dir``/
    ``MEASURED_OVERHEAD`` before any training, and a resumed call of the same config reads it back, so the
    resumed programs get the same K and N as before (a wall-time K measured again would differ). An
    ``overhead`` passed in is used as it is."""
    from metarl import envs
    from metarl.train import Runner, jsonable, write_json

    cfg.validate()
    spec = envs.make(cfg.env, max_episode_steps=cfg.max_episode_steps).spec
    need_overhead = ("updates" in cfg.variants and cfg.updates_k is None) or \
                    ("params" in cfg.variants and cfg.params_n is None)
    stored = os.path.join(out_dir, MEASURED_OVERHEAD) if out_dir else None
    identity = jsonable(dataclasses.asdict(cfg))
    if not overhead and need_overhead and resume and stored and os.path.isfile(stored):
        with open(stored) as f:
            prev = json.load(f)
        if prev.get("config") == identity:
            overhead = prev["overhead"]
    if not overhead and need_overhead:
        overhead = measure_overhead(cfg, spec)
        if stored:
            os.makedirs(out_dir, exist_ok=True)  # (a benchmark's job folder does not exist yet)
            write_json(stored, {"config": identity, "overhead": overhead})
    overhead = overhead or {}
    measured_k = overhead.get("wall_ratio" if cfg.updates_k_from == "wall" else "flop_ratio", 1.0) - 1.0
    k_updates = cfg.updates_k if cfg.updates_k is not None else max(measured_k, 0.0)
    n_params = cfg.params_n if cfg.params_n is not None else overhead.get("params_overhead", 0.0)
    results = {"overhead": overhead, "updates_k": k_updates, "params_n": n_params, "wall_s": {}}
    tc = cfg.train_config()

    def sub(name):
        return os.path.join(out_dir, name) if out_dir else None

    def collect(metrics, names, seeds):
        for i, v in enumerate(names):
            sl = slice(i * seeds, (i + 1) * seeds)
            results[v] = {"eval_return": np.asarray(metrics["eval_return"][sl]),
                          "env_steps": np.asarray(metrics["env_steps"][0])}
            for m in MC_METRICS:
                if m in metrics:
                    results[v][m] = np.asarray(metrics[m][sl]).mean(0)

    def run(name, agent_fn, combos, names, train_cfg=tc):
        t = time.perf_counter()
        # The experiment owns its output folder: a re-run replaces each variant's run directory.
        d = sub(name)
        r = Runner(train_cfg, d, agent_fn=agent_fn, progress=progress, overwrite=True)
        if combos is not None:
            _set_runs(r, combos)
        _, metrics = r.run(resume=bool(resume and d and os.path.isfile(os.path.join(d, "config.json"))))
        results["wall_s"][name] = time.perf_counter() - t
        collect(metrics, names, train_cfg.seeds)

    def mc_fn(form, max_extra=0, reset_after=0):
        return lambda spec: make_meta_critic(make_agent(cfg.algo, spec, **cfg.agent),
                                             MetaCriticConfig(form=form, lookahead=cfg.lookahead,
                                                              weight_decay=cfg.weight_decay, reset_after=reset_after,
                                                              max_extra_updates=max_extra))[0]

    shared = [v for v in SHARED_VARIANTS if v in cfg.variants]
    if shared:
        combos = [{k: (k_updates if val is None else val) for k, val in SHARED_VARIANTS[v].items()} for v in shared]
        max_extra = int(np.ceil(k_updates)) if "updates" in shared else 0
        reset_after = GUARD_RESET_AFTER if "mc_guard" in shared else 0
        run("main", mc_fn("feature", max_extra, reset_after), combos, shared)
    for v, form in (("mc_sa", "feature_sa"), ("metareg", "metareg")):
        if v in cfg.variants:
            run(v, mc_fn(form), None, [v])
    if "params" in cfg.variants:
        hid = scaled_hidden(cfg, spec, n_params)
        results["params_hidden"] = hid
        run("params", None, None, ["params"], cfg.train_config(actor_hidden=hid["actor_hidden"],
                                                                critic_hidden=hid["critic_hidden"]))
    return results


# The run directories run_experiment writes under its output folder (one per compiled program), and the
# file that keeps the measured overhead (K, N) for a resume.
RUN_DIRS = ("main", "mc_sa", "metareg", "params")
MEASURED_OVERHEAD = "measured_overhead.json"


def paper_metrics(eval_return) -> dict:
    """Max over evaluation points of the seed-average return (std over seeds there), and the sum."""
    r = np.asarray(eval_return, float)
    mean = r.mean(0)
    i = int(np.argmax(mean))
    return dict(max_avg=float(mean[i]), std_at_max=float(r[:, i].std()), sum_avg=float(mean.sum()),
                final_avg=float(mean[-1]))
