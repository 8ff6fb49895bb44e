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
``python -m experiments.meta_critic --overhead --algo ddpg,td3,sac --env gymnax/Pendulum-v1`` the -MC cost per
update: XLA FLOP ratio and wall-time ratio to vanilla, at the paper's networks.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from metarl.agents import make_agent
from metarl.meta.meta_critic import GUARD_RESET_AFTER, MetaCriticConfig, make_meta_critic
from metarl.meta.meta_critic_overhead import measure_overhead, scaled_hidden
from metarl.meta.meta_critic_tabular import TAB_ACTORS, TabularConfig, run_tabular, tabular_figures, tabular_summary

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


@dataclass(frozen=True)
class ExperimentConfig:
    algo: str = "td3"
    env: str = "brax/halfcheetah"
    variants: tuple = ("vanilla", "updates", "params", "mc")
    seeds: int = 5
    seed: int = 0
    total_steps: int = 1_000_000
    learning_starts: int = 10_000
    eval_every: int = 1_000
    eval_episodes: int = 10
    evals_per_chunk: int = 10
    max_episode_steps: int | None = None
    agent: dict = field(default_factory=dict)  # base agent config overrides (hidden sizes, batch size)
    lookahead: str = "all"  # the look-ahead's actor parameters (all | features | first_layer)
    weight_decay: str = "decoupled"
    updates_k: float | None = None  # '+updates' K (extra updates per update); None: measured (updates_k_from)
    # What K measures when it is measured (measure_overhead at the run's networks): "wall" (default; the
    # paper's "K% more compute": K = wall_ratio - 1) or "flops" (K = flop_ratio - 1; deterministic).
    updates_k_from: str = "wall"
    params_n: float | None = None  # '+params' fraction N; None: the measured parameter overhead

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


LOOKAHEADS = ("all", "features", "first_layer")


def _comma_choices(choices, what):
    """argparse type: a comma list whose items are all in ``choices``."""
    import argparse

    def check(text):
        items = tuple(x.strip() for x in text.split(",") if x.strip())
        bad = [x for x in items if x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {bad or [text]}; valid: {', '.join(choices)}")
        return items

    check.__name__ = what
    return check


def _hidden(text):
    import argparse

    try:
        h = tuple(int(x) for x in text.split(","))
    except ValueError:
        h = ()
    if not h or min(h) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of layer sizes >= 1, e.g. 64,64")
    return h


def main(argv=None):
    from metarl.agents import OFF_POLICY
    from metarl.cli import ArgumentParser, choice, fail, nonneg_int, positive_int

    algos = tuple(OFF_POLICY)
    prog = "python -m experiments.meta_critic"
    p = ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    p.add_argument("--tabular", action="store_true", help="run the tabular-MDP analysis (Fig. 6) only")
    p.add_argument("--algo", default=("td3",), type=_comma_choices(algos, "algorithm"),
                   help=f"one of {', '.join(algos)} (a comma list with --overhead)")
    p.add_argument("--env", default="brax/halfcheetah")
    p.add_argument("--variants", default=("vanilla", "updates", "params", "mc"), type=_comma_choices(VARIANTS, "variant"),
                   help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--seed", type=nonneg_int, default=0, help="the run's key: seed i of --seeds trains from key "
                                                                  "split(PRNGKey(seed), seeds)[i]")
    p.add_argument("--seeds", type=positive_int, default=5, help="independent runs, vmapped in one program")
    p.add_argument("--steps", type=positive_int, default=1_000_000)
    p.add_argument("--learning-starts", type=nonneg_int, default=10_000)
    p.add_argument("--eval-every", type=positive_int, default=1_000)
    p.add_argument("--eval-episodes", type=positive_int, default=10)
    p.add_argument("--lookahead", default="all", type=choice(LOOKAHEADS, "lookahead"))
    p.add_argument("--max-episode-steps", type=positive_int, default=None, help="episode length (default: the env's own)")
    p.add_argument("--mdp", default="rl2", type=choice(("rl2", "chain"), "mdp"),
                   help="--tabular: the 2x2 MDP, one of rl2 (default), chain")
    p.add_argument("--tab-actor", default="tanh", type=choice(TAB_ACTORS, "tabular actor"),
                   help=f"--tabular: the actor's reading of the 2 actions, one of {', '.join(TAB_ACTORS)} (default tanh)")
    p.add_argument("--tab-seeds", action="store_true", help="--tabular: use --seeds seeds (default: the paper's 5)")
    p.add_argument("--overhead", action="store_true",
                   help="only measure -MC's XLA FLOP and wall-time ratio to vanilla per update, and its parameter "
                        "overhead (the paper's networks unless --hidden is given; --algo may be a comma list) and "
                        "write overhead_<algo>.json")
    p.add_argument("--hidden", default=None, type=_hidden,
                   help="actor and critic hidden sizes, e.g. 64,64 (default: the paper's)")
    p.add_argument("--sac-batch", type=positive_int, default=None, help="SAC's batch size (default: its own, 256)")
    p.add_argument("--rounds", type=positive_int, default=15, help="--overhead: alternating timing rounds")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out from its checkpoints (same settings)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run's files in --out")
    p.add_argument("--out", default="results/meta_critic/experiment")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    a = p.parse_args(argv)
    from metarl.train import Interrupted, RunError, _check_env_name, write_json

    if len(a.algo) > 1 and not a.overhead:
        p.error(f"argument --algo: one algorithm unless --overhead, got {','.join(a.algo)}")
    agent = dict(actor_hidden=a.hidden, critic_hidden=a.hidden) if a.hidden else {}
    sac_agent = dict(agent, batch_size=a.sac_batch) if a.sac_batch else agent
    # Everything that can refuse the run, before anything is compiled or written.
    try:
        if a.tabular:
            tcfg = TabularConfig(mdp=a.mdp, actor=a.tab_actor, seed=a.seed,
                                 **({"seeds": a.seeds} if a.tab_seeds else {})).validate()
        else:
            _check_env_name(a.env, "positional")
            from metarl import envs

            if not a.env.startswith("brax/") and envs.make(a.env).spec.discrete:  # every brax env is continuous
                raise ValueError(f"--env {a.env!r} is discrete; the meta-critic wraps continuous-action agents "
                                 "(e.g. gymnax/Pendulum-v1, every brax/* env)")
            cfgs = [ExperimentConfig(algo=algo, env=a.env, variants=a.variants, seed=a.seed, seeds=a.seeds,
                                     total_steps=a.steps,
                                     learning_starts=a.learning_starts, eval_every=a.eval_every,
                                     eval_episodes=a.eval_episodes, lookahead=a.lookahead,
                                     max_episode_steps=a.max_episode_steps,
                                     agent=sac_agent if algo == "sac" else agent).validate() for algo in a.algo]
            if not a.overhead:
                cfgs[0].train_config().validate()
        if a.resume and (a.tabular or a.overhead):
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
    record = RunRecord(a.out, settings, resume=a.resume)
    try:
        prepare_out_dir(a.out, a.resume, a.overwrite, files, resume_from=RUN_DIRS)
        record.check()
    except RunError as e:
        fail(prog, e, e.exit_code)
    from metarl import enable_compilation_cache

    enable_compilation_cache()  # a repeated or resumed run skips the compilation
    with record:  # config.json, meta.json (status, versions, device, compile time apart)
        if a.tabular:
            base, traces = run_tabular(tcfg)
            summary = tabular_summary(traces, cfg=tcfg)
            tabular_figures(base, traces, tcfg, a.out)
            write_json(os.path.join(a.out, "tabular.json"), {"config": dataclasses.asdict(tcfg), **summary})
            print(summary)
            return
        if a.overhead:
            from metarl import envs

            spec = envs.make(a.env).spec
            for cfg in cfgs:
                o = measure_overhead(cfg, spec, rounds=a.rounds)
                write_json(os.path.join(a.out, f"overhead_{cfg.algo}.json"), {"config": dataclasses.asdict(cfg), **o})
                print(f"{cfg.algo} on {a.env}: {1e3 * o['base_s_per_update']:.2f} ms -> {1e3 * o['mc_s_per_update']:.2f} ms "
                      f"per update; FLOP ratio {o['flop_ratio']:.3f}, wall ratio {o['wall_ratio']:.3f} "
                      f"(wall/FLOP {o['wall_over_flop_ratio']:.3f}; fastest-call ratio {o['wall_ratio_min']:.3f}, CPU-time "
                      f"ratio {o['cpu_ratio']:.3f}); parameters {o['params_base']} + "
                      f"{o['params_meta_critic']} (+{100 * o['params_overhead']:.0f}%; paper ~10%)", flush=True)
            return
        cfg = cfgs[0]
        try:
            res = run_experiment(cfg, a.out, progress=not a.no_progress, resume=a.resume)
        except Interrupted as e:
            import shlex

            again = [x for x in (argv if argv is not None else sys.argv[1:]) if x != "--resume"] + ["--resume"]
            fail(prog, f"{e}; continue with: {prog} {shlex.join(again)}", 130)
        except RunError as e:
            fail(prog, e, getattr(e, "exit_code", 2))
        table = {v: paper_metrics(res[v]["eval_return"]) for v in cfg.variants}
        write_json(os.path.join(a.out, "summary.json"), {"config": dataclasses.asdict(cfg), "table": table,
                                                           "overhead": res["overhead"], "wall_s": res["wall_s"]})
        for v, m in table.items():
            print(f"{LABELS[v].format(A=cfg.algo.upper()):>20s}  max {m['max_avg']:9.1f} +- {m['std_at_max']:7.1f}")


if __name__ == "__main__":
    main()
