"""Online Meta-Critic experiments (Zhou et al., NeurIPS 2020): Tables 1-3 and the tabular-MDP analysis.

Two parts, both pure JAX programs; the experiment proper (``ExperimentConfig``, ``run_experiment``) is
this file, the analyses it calls are library modules:

* ``--tabular``: the Fig. 6 analysis on a 2-state, 2-action MDP (DDPG and DDPG-MC as one program), in
  :mod:`metarl.meta.meta_critic_tabular`.
* ``run_experiment``: {DDPG, TD3, SAC} x {vanilla, +updates, MC (Eq. 10, Eq. 11, MetaReg; Eq. 9 or Eq. 8;
  re-initialisation guard on), +params} on a Brax (or gymnax) task through ``metarl.train.Runner``.
  Variants that share parameter shapes (vanilla = MC with aux_scale 0, '+updates', MC with Eq. 9 or
  Eq. 8, MC with the guard) are one vmapped program with the seeds; Eq. 11, MetaReg and '+params' change
  shapes and are programs of their own. '+updates' runs K extra vanilla updates per update, each on a
  fresh batch, with K = the measured wall-time overhead of -MC (:mod:`metarl.meta.meta_critic_overhead`) unless given.

``python -m experiments.meta_critic --algo td3 --env brax/hopper --steps 100000`` runs one algorithm;
``python -m experiments.meta_critic --tabular [--tab-actor softmax]`` the analysis (tanh or softmax actor);
``python -m experiments.meta_critic --overhead --algo ddpg td3 sac --env gymnax/Pendulum-v1`` the -MC cost per
update: XLA FLOP ratio and wall-time ratio to vanilla, at the paper's networks.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
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
from metarl.meta.meta_critic_tabular import TAB_ACTORS, TAB_MDPS, TabularConfig, run_tabular, tabular_figures, tabular_summary

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


@dataclass(frozen=True)
class MetaCriticCommand:
    """What the command line runs (training unless --tabular or --overhead) and the experiment's settings."""

    tabular: bool = False  # run the tabular-MDP analysis (Fig. 6) only
    overhead: bool = False
    """only measure -MC's XLA FLOP and wall-time ratio to vanilla per update, and its parameter overhead (the
    paper's networks unless --hidden is given; several --algo allowed), into overhead_<algo>.json"""
    algo: tuple[Literal[ALGOS], ...] = ("td3",)  # one algorithm (several with --overhead)
    hidden: tuple[PositiveInt, ...] | None = None  # actor and critic hidden sizes, e.g. 64 64 (None: the paper's)
    sac_batch: PositiveInt | None = None  # SAC's batch size (None: its own, 256)
    rounds: PositiveInt = 15  # --overhead: alternating timing rounds
    mdp: Literal[TAB_MDPS] = "rl2"  # --tabular: the 2x2 MDP
    tab_actor: Literal[TAB_ACTORS] = "tanh"  # --tabular: the actor's reading of the 2 actions
    tab_seeds: bool = False  # --tabular: use --seeds seeds (default: the paper's 5)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    def validate(self):
        if len(self.algo) > 1 and not self.overhead:
            raise ValueError(f"argument --algo: one algorithm unless --overhead, got {' '.join(self.algo)}")
        if not self.algo:
            raise ValueError("argument --algo: give at least one algorithm")


def main(argv=None):
    from metarl import config_cli
    from metarl.cli import fail

    prog = "python -m experiments.meta_critic"
    p = config_cli.parse(prog, __doc__.split("\n")[0], {"default": MetaCriticCommand()}, argv,
                         config_cli.RunOptions(out="results/meta_critic/experiment"))
    a, o, exp = p.exp, p.options, p.exp.experiment
    from metarl.train import Interrupted, RunError, _check_env_name, write_json

    agent = dict(actor_hidden=a.hidden, critic_hidden=a.hidden) if a.hidden else {}
    sac_agent = dict(agent, batch_size=a.sac_batch) if a.sac_batch else agent
    # Everything that can refuse the run, before anything is compiled or written.
    try:
        if a.tabular:
            tcfg = TabularConfig(mdp=a.mdp, actor=a.tab_actor, seed=exp.seed,
                                 **({"seeds": exp.seeds} if a.tab_seeds else {})).validate()
        else:
            _check_env_name(exp.env, "positional")
            from metarl import envs

            if not exp.env.startswith("brax/") and envs.make(exp.env).spec.discrete:  # every brax env is continuous
                raise ValueError(f"--env {exp.env!r} is discrete; the meta-critic wraps continuous-action agents "
                                 "(e.g. gymnax/Pendulum-v1, every brax/* env)")
            cfgs = [dataclasses.replace(exp, algo=algo, agent={**exp.agent, **(sac_agent if algo == "sac" else agent)})
                    .validate() for algo in a.algo]
            if not a.overhead:
                cfgs[0].train_config().validate()
        if o.resume and (a.tabular or a.overhead):
            raise ValueError("--resume applies to training runs (--tabular and --overhead runs are short; rerun them)")
    except (ValueError, TypeError) as e:
        fail(prog, e)
    # The run directory: a folder holding an earlier run of this mode is refused unless --resume or --overwrite.
    files = (("tabular.json",) if a.tabular else tuple(f"overhead_{c.algo}.json" for c in cfgs) if a.overhead
             else ("summary.json", MEASURED_OVERHEAD) + RUN_DIRS) + ("config.json", "meta.json")
    from metarl.driver import RunRecord, prepare_out_dir

    settings = (dict(mode="tabular", config=dataclasses.asdict(tcfg)) if a.tabular else
                dict(mode="overhead" if a.overhead else "train", configs=[dataclasses.asdict(c) for c in cfgs],
                     rounds=a.rounds if a.overhead else None))
    record = RunRecord(o.out, settings, resume=o.resume)
    try:
        prepare_out_dir(o.out, o.resume, o.overwrite, files, resume_from=RUN_DIRS)
        record.check()
    except RunError as e:
        fail(prog, e, e.exit_code)
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a repeated or resumed run skips the compilation
    with record:  # config.json, meta.json (status, versions, device, compile time apart)
        if a.tabular:
            base, traces = run_tabular(tcfg)
            summary = tabular_summary(traces, cfg=tcfg)
            tabular_figures(base, traces, tcfg, o.out)
            write_json(os.path.join(o.out, "tabular.json"), {"config": dataclasses.asdict(tcfg), **summary})
            print(summary)
            return
        if a.overhead:
            from metarl import envs

            spec = envs.make(exp.env).spec
            for cfg in cfgs:
                o = measure_overhead(cfg, spec, rounds=a.rounds)
                write_json(os.path.join(o.out, f"overhead_{cfg.algo}.json"), {"config": dataclasses.asdict(cfg), **o})
                print(f"{cfg.algo} on {exp.env}: {1e3 * o['base_s_per_update']:.2f} ms -> {1e3 * o['mc_s_per_update']:.2f} ms "
                      f"per update; FLOP ratio {o['flop_ratio']:.3f}, wall ratio {o['wall_ratio']:.3f} "
                      f"(wall/FLOP {o['wall_over_flop_ratio']:.3f}; fastest-call ratio {o['wall_ratio_min']:.3f}, CPU-time "
                      f"ratio {o['cpu_ratio']:.3f}); parameters {o['params_base']} + "
                      f"{o['params_meta_critic']} (+{100 * o['params_overhead']:.0f}%; paper ~10%)", flush=True)
            return
        cfg = cfgs[0]
        try:
            res = run_experiment(cfg, o.out, progress=o.progress, resume=o.resume)
        except Interrupted as e:
            import shlex

            again = [x for x in (argv if argv is not None else sys.argv[1:]) if x != "--resume"] + ["--resume"]
            fail(prog, f"{e}; continue with: {prog} {shlex.join(again)}", 130)
        except RunError as e:
            fail(prog, e, getattr(e, "exit_code", 2))
        table = {v: paper_metrics(res[v]["eval_return"]) for v in cfg.variants}
        write_json(os.path.join(o.out, "summary.json"), {"config": dataclasses.asdict(cfg), "table": table,
                                                           "overhead": res["overhead"], "wall_s": res["wall_s"]})
        for v, m in table.items():
            print(f"{LABELS[v].format(A=cfg.algo.upper()):>20s}  max {m['max_avg']:9.1f} +- {m['std_at_max']:7.1f}")


if __name__ == "__main__":
    main()
