"""Accelerator run kit: one command that turns a few minutes on one GPU into paper-scale evidence.

    python -m benchmarks.gpu --budget-s 450            # on the GPU machine (make bench-gpu; docs/gpu.md)
    python -m benchmarks.gpu --dry-run                 # the same code at tiny sizes on the CPU (tests/test_gpu_kit.py)

Parts, in order, each time-boxed (a share of ``--budget-s``; time a part leaves unused rolls over to the
next) and written to ``--out`` (default results/gpu/) as soon as it finishes, so a run cut off at any
point still returns what it did:

  smoke        imports, then one tiny compiled step per environment family (brax, gymnax, jumanji) and
               per method (TD3 and SAC through metarl.train, the Online Meta-Critic wrapper, the outer
               value function on Snake, MetaGenRL, the model-based critic); each incompatibility is one
               line and the run goes on with what works.
  throughput   (a) TD3 and SAC, the metarl.train loop (``make_functions``, compiled as ``Runner`` compiles
               it) with 1, 32, 256 and 1024 vmapped seeds on brax/hopper (positional) and
               gymnax/Pendulum-v1: random-action env steps/s (the warm-up program) and training updates/s.
  meta_critic  (b) Meta-Critic Table 1 rows: TD3 vs TD3-MC and SAC vs SAC-MC on brax
               inverted_double_pendulum and hopper, 5 seeds (vanilla and MC of one algorithm and env are
               one vmapped program, as experiments.meta_critic runs them), for as many steps as fit.
  snake        (c) Snake 6x6 with the outer value function's five agents x 5 seeds, one program
               (metarl.meta.outer_value), for as many updates as fit.
  metagenrl    (d) MetaGenRL meta-training with 20 agents on brax halfcheetah + hopper for as long as fits,
               then meta-test of the objective against TD3 and off-policy REINFORCE on
               brax/inverted_double_pendulum (unseen).
  projection   (e) from the rates measured in (a)-(d), the projected time on this device of every
               paper-scale table.

Compilation dominates short runs, so every program is compiled ahead of time (``lower().compile()``)
in a pool of threads (XLA releases the GIL) as soon as the run starts, in the order the parts need
them, while earlier parts run; the persistent compilation cache (.jax_cache) makes a rerun on a warm
machine skip it. Sizes come from a cost model (``COSTS``: prior per-step and compile costs, to be
replaced by a measured file with ``--costs``, e.g. a previous run's summary.json); the plan is printed
and written to plan.json before anything runs, and every part then runs until its deadline.

Outputs (at most 5 files, so they fit what the device tool returns): plan.json, summary.json (the same
keys in every run; a part not reached keeps status "pending"), summary.md, figures.png (and the
command's log if you tee it there).
"""
from __future__ import annotations

import time

T_START = time.time()  # the budget counts from here (imports included)

import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from concurrent.futures import Future, ThreadPoolExecutor  # noqa: E402
from concurrent.futures import TimeoutError as FutureTimeout  # noqa: E402

import numpy as np  # noqa: E402

PARTS = ("smoke", "throughput", "meta_critic", "snake", "metagenrl", "projection")
TITLES = {"smoke": "0. import and smoke check", "throughput": "(a) TD3/SAC throughput vs vmapped seeds",
          "meta_critic": "(b) Meta-Critic Table 1 rows", "snake": "(c) Snake 6x6, outer value function",
          "metagenrl": "(d) MetaGenRL meta-train + meta-test", "projection": "(e) projected paper-scale times"}
# Time boxes as shares of the budget; the remaining 4% covers start-up and the last write.
SHARES = {"smoke": 0.16, "throughput": 0.26, "meta_critic": 0.18, "snake": 0.11, "metagenrl": 0.23, "projection": 0.02}
OUTPUT_FILES = ("plan.json", "summary.json", "summary.md", "figures.png")

# ----------------------------------------------------------------------------------------------------
# Sizes
# ----------------------------------------------------------------------------------------------------
TINY_AGENT = dict(actor_hidden=(16, 16), critic_hidden=(16, 16), batch_size=16)


def tiny_train(algo: str, env: str = "gymnax/Pendulum-v1") -> dict:
    """The smoke's off-policy run: chunks of 16 steps after 48 random ones, 16-step episodes (the smoke
    runs one chunk; the dry run's parts (a) and (b) run both, with the same compiled programs)."""
    return dict(algo=algo, env=env, seeds=1, learning_starts=48, eval_every=16, chunks=2, eval_episodes=1,
                max_episode_steps=16, agent=TINY_AGENT)


def sizes_for(dry: bool) -> dict:
    """Every part's sizes. ``dry``: the same code paths at sizes a 2-core CPU runs in seconds (one seed,
    gymnax Pendulum instead of Brax, tiny networks); every dry-run program is also a smoke program, so
    the dry run compiles each only once."""
    smoke = dict(envs=["brax/inverted_pendulum" if dry else "brax/hopper", "gymnax/Pendulum-v1", "jumanji/Snake-6x6"],
                 train={a: tiny_train(a) for a in ("td3", "sac")},
                 meta_critic=dict(tiny_train("td3"), learning_starts=48),
                 # dry: two of the five agents (MG with the outer critic covers both critics' code; the
                 # population compiles for ~1 min of CPU with all five)
                 snake=dict(num_envs=2, horizon=2, hidden=[8], seeds=1, updates_per_log=1, logs_per_chunk=2,
                            agents=["A2C", "MG+outer critic"] if dry else None),
                 metagenrl=dict(envs=["gymnax/Pendulum-v1"], agents=2, learning_starts=20, eval_every=10,
                                anneal_steps=10, window=5, batch_windows=4, hidden=[8], max_episode_steps=10,
                                eval_episodes=1, objective="tiny", max_segments=2),
                 # GPU: the reacher at the paper's sizes (horizon 50, 400-400 critic), 1 seed: a rate for (e).
                 model_based_critic=(dict(horizon=3, critic_hidden=[8, 8], policy_hidden=[8], inner_steps=1,
                                          n_policy_inits=1, chunk=1, seeds=1) if dry else
                                     dict(horizon=50, critic_hidden=[400, 400], policy_hidden=[64, 64],
                                          inner_steps=3, n_policy_inits=2, chunk=5, seeds=1)))
    if dry:
        throughput = dict(algos=["td3", "sac"], envs=["gymnax/Pendulum-v1"], seeds=[1], learning_starts=48,
                          steps_per_chunk=16, chunks=2, eval_episodes=1, max_episode_steps=16, agent=TINY_AGENT)
        meta_critic = dict(envs=["gymnax/Pendulum-v1"], algos=["td3"], seeds=1, learning_starts=48, eval_every=16,
                           eval_episodes=1, max_episode_steps=16, agent=TINY_AGENT, max_chunks=2)
        snake = dict(smoke["snake"], max_chunks=2)
        metagenrl = dict(smoke["metagenrl"], test_env="gymnax/Pendulum-v1", test_seeds=1, test_max_segments=1)
    else:
        # 1k random steps (timed: env steps/s), then 2 chunks of 500 training steps (the second is timed);
        # episodes are cut at 100 steps so that the evaluation episode inside each chunk is a small part of
        # it; metarl's default networks (TD3 400-300, batch 100; SAC 256-256, batch 256)
        throughput = dict(algos=["td3", "sac"], envs=["gymnax/Pendulum-v1", "brax/hopper"], seeds=[1, 32, 256, 1024],
                          learning_starts=1000, steps_per_chunk=500, chunks=2, eval_episodes=1,
                          max_episode_steps=100, agent={})
        # The paper's networks (TD3 400-300, SAC 256-256) and 5 seeds; 1k random steps (paper 10k), an
        # evaluation of 5 episodes every 2k steps. max_chunks bounds the replay buffer (it holds every step).
        meta_critic = dict(envs=["brax/inverted_double_pendulum", "brax/hopper"], algos=["td3", "sac"], seeds=5,
                           learning_starts=1000, eval_every=2000, eval_episodes=5, max_episode_steps=None, agent={},
                           max_chunks=100)
        snake = dict(num_envs=512, horizon=5, hidden=None, seeds=5, updates_per_log=25, logs_per_chunk=4,
                     max_chunks=292, agents=None)
        # The paper's agents, networks and objective (experiments.metagenrl scale "paper"), 10 agents on each
        # of Table 2's first training pair; 1k random steps and 1k annealing steps (paper 10k and 10k).
        metagenrl = dict(envs=["brax/halfcheetah", "brax/hopper"], agents=20, learning_starts=1000, eval_every=1000,
                         anneal_steps=1000, window=20, batch_windows=100, hidden=None, max_episode_steps=None,
                         eval_episodes=1, objective="paper", max_segments=200, test_env="brax/inverted_double_pendulum",
                         test_seeds=2, test_max_segments=100)
    return dict(smoke=smoke, throughput=throughput, meta_critic=meta_critic, snake=snake, metagenrl=metagenrl,
                projection=dict(tables=[r["name"] for r in PAPER_WORKLOADS]))


# Paper-scale workloads projected in part (e) from the rates measured in (a)-(d).
PAPER_WORKLOADS = [
    dict(name="TD3, 1M brax/hopper steps per agent, 1024 agents vmapped (throughput)", source="throughput",
         key="td3|brax/hopper|1024", steps=1_000_000),
    dict(name="SAC, 1M brax/hopper steps per agent, 1024 agents vmapped (throughput)", source="throughput",
         key="sac|brax/hopper|1024", steps=1_000_000),
    dict(name="Online Meta-Critic Table 1: 7 Brax tasks x DDPG/TD3/SAC x (vanilla, MC) x 5 seeds x 1M steps",
         source="meta_critic", table=1),
    dict(name="Online Meta-Critic Tables 1-3, the whole paper grid (benchmarks.meta_critic --scale paper)",
         source="meta_critic", table="all"),
    dict(name="Outer value Snake: 5 agents x 10 seeds x 29,200 updates (75M env steps each), one program",
         source="snake", updates=29_200, seeds=10),
    dict(name="MetaGenRL Table 2: 5 training sets x 20 agents x 1M steps, then meta-test 6 seeds x 3 envs x "
              "(5 objectives + TD3 + off-policy REINFORCE) x 1M steps", source="metagenrl"),
    dict(name="Model-based critic, reacher at paper scale: 5 seeds x 3000 meta-iterations (ours)",
         source="model_based_critic", iterations=3000, seeds=5),
]

# ----------------------------------------------------------------------------------------------------
# Cost model
# ----------------------------------------------------------------------------------------------------
# Per-program compile seconds and per-unit run seconds. "cpu": measured on the 2-core development CPU
# (dry-run sizes, jax_disable_most_optimizations, cold compilation cache). "gpu": priors for one H200,
# no H200 measurement yet: compile = the CPU compile of the same program (XLA's GPU compile is of the same
# order; the run compiles in parallel threads, so a part waits for its slowest program, not their sum),
# per-step latency of a scanned step ~1 ms (kernel launches) plus the arithmetic at ~20 TFLOP/s
# effective. A measured file (--costs, a previous run's summary.json "measured_costs") replaces them.
COSTS = {
    # measured here: CPU seconds of each dry-run program's compile (jax_disable_most_optimizations, cold cache)
    "cpu": {"compile": {"env": 8.0, "train": 16.0, "meta_critic": 28.0, "snake": 25.0, "metagenrl": 40.0,
                        "metagenrl_test": 30.0, "model_based_critic": 20.0},
            "step": {"train": 2e-4, "meta_critic": 8e-4, "snake_update": 0.05, "metagenrl_cycle": 0.02,
                     "mbc_iteration": 0.05}},
    "gpu": {"compile": {"env": 20.0, "train": 60.0, "meta_critic": 120.0, "snake": 90.0, "metagenrl": 180.0,
                        "metagenrl_test": 150.0, "model_based_critic": 60.0},
            # seconds per env step of one program: latency + per-run arithmetic
            "step": {"train": 1.5e-3, "train_per_run": 1.5e-5, "meta_critic": 4e-3, "meta_critic_per_run": 5e-5,
                     "snake_update": 0.06, "metagenrl_cycle": 0.03, "mbc_iteration": 0.15}},
}


def load_costs(path: str | None, dry: bool) -> dict:
    base = json.loads(json.dumps(COSTS["cpu" if dry else "gpu"]))
    if path:
        with open(path) as f:
            data = json.load(f)
        data = data.get("measured_costs", data)
        for k in ("compile", "step"):
            base[k].update({n: float(v) for n, v in data.get(k, {}).items() if v is not None})
    return base


def make_plan(sizes: dict, costs: dict, budget_s: float, dry: bool, workers: int | None = None) -> dict:
    """Parts, their sizes, time boxes and predicted seconds (what the cost model says fits).

    Compiles run in ``workers`` threads from the start in the order the parts need them, so a part's
    predicted time is the compile work still outstanding when it starts (spread over the workers) plus
    its runs; the parts that run "as long as fits" are sized to their box."""
    workers = workers or (2 if dry else 12)
    c, st = costs["compile"], costs["step"]
    # (the dry run's parts share the whole budget: see Kit.deadline)
    box = {p: budget_s * (1.0 if dry else SHARES[p]) for p in PARTS}
    pred = {}
    # smoke: 3 env checks and 6 method programs
    smoke_compile = [c["env"]] * 3 + [c["train"]] * 2 + [c["meta_critic"], c["snake"], c["metagenrl"],
                                                          c["model_based_critic"]]
    pred["smoke"] = max(max(smoke_compile), sum(smoke_compile) / workers) + 2.0
    th = sizes["throughput"]
    n_cfg = len(th["algos"]) * len(th["envs"]) * len(th["seeds"])
    steps = th["learning_starts"] + th["chunks"] * th["steps_per_chunk"]
    per_run = st.get("train_per_run", 0.0)
    run_s = sum(steps * (st["train"] + n * per_run) for n in th["seeds"]) * len(th["algos"]) * len(th["envs"])
    # the dry run's (a) and (b) reuse the smoke's programs; on the GPU, (a) compiles 2 programs per config
    pending = 0.0 if dry else max(0.0, 2 * n_cfg * c["train"] / workers - pred["smoke"])
    pred["throughput"] = run_s + pending
    mc = sizes["meta_critic"]
    n_prog = len(mc["envs"]) * len(mc["algos"])
    step_mc = st["meta_critic"] + 2 * mc["seeds"] * st.get("meta_critic_per_run", 0.0)
    fit = max(1, int((box["meta_critic"] - 5.0) / (n_prog * step_mc * mc["eval_every"])))
    mc_chunks = min(mc["max_chunks"], fit)
    pred["meta_critic"] = n_prog * step_mc * (mc["learning_starts"] + mc_chunks * mc["eval_every"])
    sn = sizes["snake"]
    per_chunk = sn["updates_per_log"] * sn["logs_per_chunk"] * st["snake_update"]
    sn_chunks = min(sn["max_chunks"], max(1, int((box["snake"] - 2.0) / per_chunk)))
    pred["snake"] = sn_chunks * per_chunk
    mg = sizes["metagenrl"]
    per_seg = mg["eval_every"] / 2 * st["metagenrl_cycle"]
    mg_segs = min(mg["max_segments"], max(1, int(0.6 * box["metagenrl"] / per_seg)))
    test_segs = min(mg["test_max_segments"], max(1, int(0.3 * box["metagenrl"] / (0.5 * per_seg))))
    pred["metagenrl"] = (mg_segs + 0.5 * test_segs) * per_seg + (c["metagenrl_test"] if dry else 0.0)
    pred["projection"] = 1.0
    parts = []
    for p in PARTS:
        planned = {"throughput": {"configs": n_cfg, "env_steps_per_config": steps},
                   "meta_critic": {"programs": n_prog, "runs_per_program": 2 * mc["seeds"],
                                   "chunks": mc_chunks, "env_steps_per_run": mc["learning_starts"] + mc_chunks * mc["eval_every"]},
                   "snake": {"chunks": sn_chunks, "updates": sn_chunks * sn["updates_per_log"] * sn["logs_per_chunk"]},
                   "metagenrl": {"meta_train_segments": mg_segs, "env_steps_per_agent":
                                 mg["learning_starts"] + mg_segs * mg["eval_every"], "meta_test_segments": test_segs},
                   }.get(p, {})
        predicted = max(0.1, round(min(pred[p], box[p]), 1))
        parts.append(dict(name=p, title=TITLES[p], box_s=round(box[p], 1), predicted_s=predicted,
                          predicted_uncapped_s=round(pred[p], 1), sizes=sizes[p], planned=planned))
    return dict(mode="dry-run" if dry else "gpu", budget_s=budget_s, workers=workers, parts=parts,
                total_predicted_s=round(sum(q["predicted_s"] for q in parts), 1), costs=costs,
                note="compiles run in parallel threads from the start; each part then runs until its deadline, so "
                     "the sizes above are what the cost model expects to fit" + (
                         "; dry run: the parts share the whole budget (no per-part boxes)" if dry else ""))


# ----------------------------------------------------------------------------------------------------
# Compiled programs (built in a thread pool, memoised by key)
# ----------------------------------------------------------------------------------------------------
class Programs:
    """Ahead-of-time builds in a thread pool. ``submit(key, fn)`` starts ``fn()`` once per key."""

    def __init__(self, workers: int):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compile")
        self.futures: dict[str, Future] = {}
        self.lock = threading.Lock()

    def submit(self, key: str, fn) -> Future:
        with self.lock:
            if key not in self.futures:
                def timed():
                    t = time.perf_counter()
                    out = fn()
                    out["build_s"] = time.perf_counter() - t
                    return out
                self.futures[key] = self.pool.submit(timed)
            return self.futures[key]

    def get(self, key: str, deadline: float):
        """The built program, or raises TimeoutError (not built by the deadline) / the build's error."""
        return self.futures[key].result(timeout=max(0.0, deadline - time.time()))

    def pending(self) -> int:
        return sum(not f.done() for f in self.futures.values())

    def shutdown(self):
        self.pool.shutdown(wait=False, cancel_futures=True)


def _block(x):
    import jax

    return jax.block_until_ready(x)


def build_offpolicy(tc_kwargs: dict, mc_variants: tuple | None = None) -> dict:
    """metarl.train's loop for one TrainConfig, compiled as Runner compiles it (jit of vmap over runs).

    ``mc_variants``: wrap the agent in the Online Meta-Critic (experiments.meta_critic's shared program:
    vanilla = aux_scale 0, mc = Eq. 10 / Eq. 9), one run per (variant, seed)."""
    import jax
    import jax.numpy as jnp

    from metarl.train import TrainConfig, make_functions, run_keys_and_hp, run_sharding

    cfg = TrainConfig(**tc_kwargs)
    agent_fn, combos = None, None
    if mc_variants:
        from experiments.meta_critic import SHARED_VARIANTS
        from metarl.agents import make_agent
        from metarl.meta.meta_critic import MetaCriticConfig, make_meta_critic

        agent_fn = lambda spec: make_meta_critic(make_agent(cfg.algo, spec, **cfg.agent), MetaCriticConfig())[0]
        combos = [dict(SHARED_VARIANTS[v]) for v in mc_variants]
    _, agent, init, run_chunk, _ = make_functions(cfg, agent_fn)
    if combos is None:
        _, keys, hp = run_keys_and_hp(cfg)
    else:  # an explicit list of combinations times the seeds (experiments.meta_critic._set_runs)
        seed_keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.seeds)
        keys = jnp.tile(seed_keys, (len(combos), 1))
        hp = {k: jnp.repeat(jnp.asarray([c[k] for c in combos], jnp.float32), cfg.seeds) for k in combos[0]}
    sharding = run_sharding(keys.shape[0])
    t = time.perf_counter()
    init_c = jax.jit(jax.vmap(init), out_shardings=sharding).lower(keys, hp).compile()
    t_init = time.perf_counter() - t
    abstract = jax.eval_shape(jax.vmap(init), keys, hp)
    t = time.perf_counter()
    chunk_c = jax.jit(jax.vmap(run_chunk), out_shardings=sharding, donate_argnums=0).lower(abstract).compile()
    return dict(init=lambda: init_c(keys, hp), step=lambda s, i: chunk_c(s), config=cfg, runs=int(keys.shape[0]),
                must_be_finite=lambda m: m["eval_return"],
                variants=list(mc_variants or []), compile_s={"init": t_init, "chunk": time.perf_counter() - t})


def train_kwargs(algo, env, seeds, learning_starts, steps_per_chunk, chunks, eval_episodes, max_episode_steps, agent):
    return dict(algo=algo, env=env, seeds=seeds, total_steps=learning_starts + chunks * steps_per_chunk,
                learning_starts=learning_starts, eval_every=steps_per_chunk, eval_episodes=eval_episodes,
                max_episode_steps=max_episode_steps, agent=dict(agent), buffer_size=10**7)


def build_env_smoke(name: str) -> dict:
    """One compiled reset + step of 2 vmapped environments."""
    import jax
    import jax.numpy as jnp

    from metarl import envs

    env = envs.make(name)
    spec = env.spec

    def f(key):
        k1, k2, k3 = jax.random.split(key, 3)
        s, _ = jax.vmap(env.reset)(jax.random.split(k1, 2))
        if spec.discrete:
            a = jax.random.randint(k2, (2,), 0, spec.num_actions)
        else:
            a = jax.random.uniform(k2, (2, spec.action_dim), minval=-1.0, maxval=1.0)
        s, ts = jax.vmap(env.step)(s, a, jax.random.split(k3, 2))
        return ts.obs, ts.reward

    t = time.perf_counter()
    c = jax.jit(f).lower(jax.random.PRNGKey(0)).compile()
    return dict(run=lambda: c(jax.random.PRNGKey(1)), must_be_finite=lambda out: out,
                compile_s={"step": time.perf_counter() - t})


def build_snake(sz: dict) -> dict:
    """The five agents x seeds of experiments.outer_value_snake as one program (metarl.meta.outer_value)."""
    import jax

    from experiments.outer_value_snake import SnakeExperiment
    from metarl.envs import make
    from metarl.meta import outer_value as ov

    exp = SnakeExperiment(num_seeds=sz["seeds"], updates_per_log=sz["updates_per_log"],
                          logs_per_chunk=sz["logs_per_chunk"])
    scfg = ov.SnakeConfig(num_envs=sz["num_envs"], horizon=sz["horizon"])
    if sz.get("hidden"):
        scfg = dataclasses.replace(scfg, actor_hidden=tuple(sz["hidden"]), critic_hidden=tuple(sz["hidden"]))
    problem = ov.make_snake_problem(scfg, make("jumanji/Snake-6x6"))
    lr = {"a2c": 0.0, "mg": exp.mg_meta_lr, "bmg": exp.bmg_meta_lr}  # as experiments.outer_value_snake.run
    cfgs = {m: ov.MetaConfig(0.0, 1.0, exp.gamma_init, lr[m], exp.meta_clip, lam_init=scfg.lam) for m in lr}
    agents = [a for a in ov.PAPER_AGENTS if not sz.get("agents") or a.name in sz["agents"]]
    init, step = ov.make_population(problem, cfgs.__getitem__, agents, exp.num_seeds)
    run = ov.make_chunk_runner(step, exp.updates_per_log, exp.logs_per_chunk)
    key = jax.random.PRNGKey(exp.seed)
    k_init, k_run = jax.random.split(key)
    t = time.perf_counter()
    init_c = jax.jit(init).lower(k_init).compile()
    t_init = time.perf_counter() - t
    abstract = jax.eval_shape(init, k_init)
    t = time.perf_counter()
    run_c = run.lower(abstract, k_run).compile()
    return dict(init=lambda: init_c(k_init), step=lambda s, i: run_c(s, jax.random.fold_in(k_run, i)),
                updates_per_chunk=exp.updates_per_log * exp.logs_per_chunk, seeds=exp.num_seeds,
                # (metrics such as the outer advantage are NaN by design where an agent has no outer loss)
                must_be_finite=lambda logs: {a: (d["gamma"], d["return"]) for a, d in logs.items()},
                steps_per_update=problem.steps_per_rollout, config=dict(sz),
                compile_s={"init": t_init, "chunk": time.perf_counter() - t})


def metagenrl_config(sz: dict, test: bool = False):
    from experiments import metagenrl as ex
    from metarl.meta import metagenrl as mg

    base = ex.get_scale("paper").test if test else ex.get_scale("paper").train
    segs = sz["test_max_segments"] if test else sz["max_segments"]
    total = sz["learning_starts"] + segs * sz["eval_every"]
    kw = dict(learning_starts=sz["learning_starts"], eval_every=sz["eval_every"], total_steps=total,
              buffer_size=total, anneal_steps=0 if test else sz["anneal_steps"], window=sz["window"],
              batch_windows=sz["batch_windows"], eval_episodes=sz["eval_episodes"],
              max_episode_steps=sz["max_episode_steps"])
    if sz.get("hidden"):
        kw["hidden"] = tuple(sz["hidden"])
    if sz["objective"] == "tiny":
        kw["objective"] = mg.ObjectiveConfig(action_layers=(8, 8), scalar_layers=(8, 4), lstm_units=8, out_layers=(8,))
    if test:
        kw.update(envs=(sz["test_env"],), agents_per_env=sz["test_seeds"] * 3)
    else:
        kw.update(envs=tuple(sz["envs"]), agents_per_env=max(1, sz["agents"] // len(sz["envs"])))
    return dataclasses.replace(base, **kw).validate()


def build_metagenrl(sz: dict) -> dict:
    """Meta-training: experiments.metagenrl.meta_train's program (metarl.meta.metagenrl.make_population)."""
    import jax

    from metarl.meta import metagenrl as mg

    cfg = metagenrl_config(sz)
    groups = mg.make_groups(cfg)
    init, segment, _ = mg.make_population(cfg, groups, meta_train=True)
    key = jax.random.PRNGKey(0)
    t = time.perf_counter()
    init_c = jax.jit(init).lower(key).compile()
    t_init = time.perf_counter() - t
    abstract = jax.eval_shape(init, key)
    t = time.perf_counter()
    seg_c = jax.jit(segment).lower(abstract).compile()
    return dict(init=lambda: init_c(key), step=lambda s, i: seg_c(s), config=cfg, groups=[g.name for g in groups],
                must_be_finite=lambda m: {g.name: m[g.name]["eval_return"] for g in groups},
                agents=sum(g.n for g in groups), compile_s={"init": t_init, "chunk": time.perf_counter() - t})


TEST_VARIANTS = ("MetaGenRL (this run)", "TD3", "off-policy REINFORCE")
PAPER_AGENT_NAMES = ("A2C", "MG", "MG+outer critic", "BMG", "BMG+outer critic")  # metarl.meta.outer_value


def build_metagenrl_test(sz: dict) -> dict:
    """Meta-test: experiments.metagenrl.meta_test's program (the objective frozen, TD3 and off-policy
    REINFORCE beside it, the same seeds for every variant)."""
    import jax
    import jax.numpy as jnp

    from experiments.metagenrl import _same_seeds
    from metarl.meta import metagenrl as mg

    cfg = metagenrl_config(sz, test=True)
    seeds = sz["test_seeds"]
    n = len(TEST_VARIANTS) * seeds
    groups = mg.make_groups(cfg, n=n)
    init, segment, _ = mg.make_population(cfg, groups, meta_train=False)
    mixes = jnp.asarray([mg.VARIANTS[v] for v in ("learned", "td3", "reinforce") for _ in range(seeds)], jnp.float32)

    def init_test(key, alpha):
        alphas = jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), alpha)
        state = init(key, variants=[(alphas, mixes)] * len(groups))
        return state.replace(groups=tuple(_same_seeds(r, len(TEST_VARIANTS), seeds) for r in state.groups))

    key = jax.random.PRNGKey(100)
    alpha0 = jax.eval_shape(lambda: mg.init_objective(jax.random.PRNGKey(0), cfg.objective))
    t = time.perf_counter()
    init_c = jax.jit(init_test).lower(key, alpha0).compile()
    t_init = time.perf_counter() - t
    abstract = jax.eval_shape(init_test, key, alpha0)
    t = time.perf_counter()
    seg_c = jax.jit(segment).lower(abstract).compile()
    return dict(init=lambda alpha: init_c(key, alpha), step=lambda s, i: seg_c(s), config=cfg, seeds=seeds,
                group=groups[0].name, compile_s={"init": t_init, "chunk": time.perf_counter() - t})


def build_mbc(sz: dict) -> dict:
    """Algorithm 2 of the model-based critic on the 2-DoF reacher (differentiable Brax), seeds vmapped,
    as metarl.meta.model_based_critic.train_ours runs it."""
    import jax
    import jax.numpy as jnp

    from metarl.meta import arm_models
    from metarl.meta import model_based_critic as mbc

    cfg = mbc.MBCConfig(horizon=sz["horizon"], inner_steps=sz["inner_steps"], critic_hidden=tuple(sz["critic_hidden"]),
                        policy_hidden=tuple(sz["policy_hidden"]), n_policy_inits=sz["n_policy_inits"])
    task, base = arm_models.make_task(arm_models.REACHER2)
    goals = jnp.asarray(((0.8, 0.8), (-0.8, 0.8), (0.8, -0.8), (-0.8, -0.8)), jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(0), sz["seeds"])
    init = jax.vmap(lambda k: mbc.meta_init(cfg, task, k))
    chunk = jax.vmap(lambda s: mbc.meta_train_chunk(cfg, task, s, goals, base, sz["chunk"]))
    t = time.perf_counter()
    states = jax.jit(init)(keys)
    run_c = jax.jit(chunk).lower(states).compile()
    return dict(init=lambda: states, step=lambda s, i: run_c(s), iterations_per_chunk=sz["chunk"],
                must_be_finite=lambda m: m["train_error"],
                compile_s={"chunk": time.perf_counter() - t})


# ----------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------
def one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0][:300] if msg else ''}"


def finite(tree) -> bool:
    import jax
    import numpy as np

    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree)
               if np.issubdtype(np.asarray(x).dtype, np.floating))


class Kit:
    def __init__(self, args):
        self.args = args
        self.dry = args.dry_run
        self.out = args.out
        self.budget = args.budget_s
        self.t0 = T_START
        self.lock = threading.RLock()
        self.sizes = sizes_for(self.dry)
        self.costs = load_costs(args.costs, self.dry)
        self.workers = args.workers or (2 if self.dry else 12)  # the H200 machine has 16 cores
        self.plan = make_plan(self.sizes, self.costs, self.budget, self.dry, self.workers)
        # Deadlines are cumulative (time a part leaves unused rolls over). In the dry run the CPU compiles
        # for minutes and the load of a shared machine varies, so its parts share the whole budget instead.
        cum, self.deadline = 0.0, {}
        for p in PARTS:
            cum += SHARES[p]
            self.deadline[p] = self.t0 + (1.0 if self.dry else cum) * self.budget
        self.summary = dict(mode=self.plan["mode"], budget_s=self.budget, complete=False, wall_s=None,
                            started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.t0)), device=None,
                            versions=None, parts={p: dict(status="pending", title=TITLES[p], wall_s=None,
                                                          box_s=next(x["box_s"] for x in self.plan["parts"]
                                                                     if x["name"] == p),
                                                          predicted_s=next(x["predicted_s"] for x in self.plan["parts"]
                                                                           if x["name"] == p), results={})
                                                  for p in PARTS},
                            warnings=[], measured_costs={"compile": {}, "step": {}}, outputs=list(OUTPUT_FILES))
        self.current = None
        self._seen_warnings = set()

    # -- bookkeeping ---------------------------------------------------------------------------------
    def left(self, part) -> float:
        return self.deadline[part] - time.time()

    def record_warning(self, message, category, filename, lineno, file=None, line=None):
        key = (category.__name__, str(message)[:200], os.path.basename(str(filename)))
        with self.lock:
            if key in self._seen_warnings:
                return
            self._seen_warnings.add(key)
            self.summary["warnings"].append(dict(category=category.__name__, message=str(message)[:300],
                                                 where=f"{filename}:{lineno}"))
        print(f"[warning] {category.__name__}: {str(message)[:200]} ({os.path.basename(str(filename))}:{lineno})",
              file=sys.stderr, flush=True)

    def log(self, msg: str):
        print(f"[{time.time() - self.t0:6.1f}s] {msg}", flush=True)

    def cost(self, kind: str, name: str, value: float):
        with self.lock:
            old = self.summary["measured_costs"][kind].get(name)
            self.summary["measured_costs"][kind][name] = value if old is None else max(old, value) \
                if kind == "compile" else min(old, value)

    def write(self, final: bool = False, figure: bool = True):
        """summary.json and summary.md (cheap: after every chunk) and figures.png (at the end of a part)."""
        from benchmarks.common import write_text

        with self.lock:
            self.summary["wall_s"] = round(time.time() - self.t0, 1)
            self.summary["complete"] = bool(final)
            text = json.dumps(self.summary, indent=1, default=_jsonable)
            md = summary_markdown(self.plan, self.summary)
        write_text(os.path.join(self.out, "summary.json"), text + "\n")
        write_text(os.path.join(self.out, "summary.md"), md)
        if not figure or (self.dry and not final):  # the dry run draws it once, at the end (CPU time)
            return
        try:
            figures(self.summary, os.path.join(self.out, "figures.png"))
        except Exception as e:  # a figure must never cost the numbers
            self.log(f"figure not written: {one_line(e)}")

    # -- main --------------------------------------------------------------------------------------
    def run(self):
        from benchmarks.common import write_text

        os.makedirs(self.out, exist_ok=True)
        write_text(os.path.join(self.out, "plan.json"), json.dumps(self.plan, indent=1, default=_jsonable) + "\n")
        print(plan_text(self.plan), flush=True)
        warnings.simplefilter("default")
        warnings.showwarning = self.record_warning
        self.write(figure=False)
        watchdog = threading.Thread(target=self._watchdog, daemon=True)
        watchdog.start()
        import_ok = self.setup()
        self.programs = Programs(self.workers)
        if import_ok:
            self.submit_all()
        for part in PARTS:
            if time.time() > self.t0 + self.budget:
                break
            self.current = part
            rec = self.summary["parts"][part]
            rec["status"] = "running"
            t = time.time()
            try:
                if not import_ok and part != "projection":
                    raise RuntimeError("metarl could not be imported (see the smoke lines)")
                getattr(self, f"part_{part}")(rec["results"])
                rec["status"] = "cut" if rec["results"].get("cut") else "done"
            except Exception as e:
                rec["status"] = "error"
                rec["error"] = one_line(e)
                rec["traceback"] = traceback.format_exc()[-3000:]
                self.log(f"part {part} failed: {one_line(e)}")
            rec["wall_s"] = round(time.time() - t, 1)
            self.log(f"part {part}: {rec['status']} in {rec['wall_s']} s")
            self.write()
        self.current = None
        self.programs.shutdown()
        self.write(final=True)
        self.log(f"done in {time.time() - self.t0:.0f} s; results in {self.out}")

    def _watchdog(self):
        """Past the budget (plus a grace), write what there is and end the process: a program that runs
        past its deadline (a compile or a long GPU call) must not cost the results."""
        grace = max(10.0, 0.05 * self.budget)
        time.sleep(max(0.0, self.t0 + self.budget + grace - time.time()))
        if self.summary["complete"]:
            return
        with self.lock:
            if self.current:
                rec = self.summary["parts"][self.current]
                rec["status"] = "cut"
                rec["results"]["cut"] = "the budget ran out inside this part (watchdog)"
        self.log("budget exhausted: writing what there is and exiting")
        self.write(final=False)
        os._exit(3)

    def setup(self) -> bool:
        """Imports, device and versions: the smoke's first lines."""
        lines = self.summary["parts"]["smoke"]["results"].setdefault("lines", [])
        import importlib

        try:
            # Before anything compiles: jax decides on its first compilation whether the persistent cache
            # is used, for the whole process (some of the imports below compile small constants).
            import jax

            from metarl import enable_compilation_cache

            if self.dry:
                jax.config.update("jax_disable_most_optimizations", True)
            enable_compilation_cache()
        except Exception as e:
            lines.append(f"FAIL import jax: {one_line(e)}")
            return False
        mods = ["jax", "jaxlib", "flax", "optax", "chex", "orbax.checkpoint", "numpy", "matplotlib", "mujoco",
                "brax", "brax.envs", "gymnax", "jumanji", "distrax", "tensorflow_probability.substrates.jax"]
        for m in mods:
            try:
                importlib.import_module(m)
                lines.append(f"OK   import {m}")
            except Exception as e:
                lines.append(f"FAIL import {m}: {one_line(e)}")
        ok = True
        try:
            import pkgutil

            import metarl

            # a module that fails is one line; the checks and parts that need it fail on their own
            for m in sorted(x.name for x in pkgutil.walk_packages(metarl.__path__, "metarl.")):
                try:
                    importlib.import_module(m)
                except Exception as e:
                    lines.append(f"FAIL import {m}: {one_line(e)}")
            from importlib.metadata import PackageNotFoundError, version

            self.summary["device"] = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
                                      "device_count": jax.device_count(), "cpu_count": os.cpu_count()}
            versions = {}
            for p in ("jax", "jaxlib", "flax", "optax", "chex", "orbax-checkpoint", "numpy", "brax", "gymnax",
                      "jumanji", "distrax", "tfp-nightly", "mujoco", "mujoco-mjx"):
                try:
                    versions[p] = version(p)
                except PackageNotFoundError:
                    versions[p] = None
            self.summary["versions"] = {**versions, "python": sys.version.split()[0]}
            lines.append(f"OK   metarl on {self.summary['device']['devices']} (jax {jax.__version__})")
        except Exception as e:
            lines.append(f"FAIL import metarl: {one_line(e)}")
            ok = False
        for ln in lines:
            self.log(ln)
        self.write(figure=False)
        return ok

    # -- what gets compiled, in the order the parts need it --------------------------------------------
    def submit_all(self):
        P, S = self.programs, self.sizes
        sm = S["smoke"]
        for name in sm["envs"]:
            P.submit(f"env|{name}", lambda n=name: build_env_smoke(n))
        for algo, t in sm["train"].items():
            P.submit(self.train_key(t), lambda t=t: build_offpolicy(self.train_args(t)))
        t = sm["meta_critic"]
        P.submit(self.train_key(t, ("vanilla", "mc")), lambda t=t: build_offpolicy(self.train_args(t), ("vanilla", "mc")))
        P.submit(self.snake_key(sm["snake"]), lambda: build_snake(sm["snake"]))
        P.submit(self.mg_key(sm["metagenrl"]), lambda: build_metagenrl(sm["metagenrl"]))
        P.submit("mbc", lambda: build_mbc(sm["model_based_critic"]))
        # Then the longest compiles first (MetaGenRL, Snake, Meta-Critic; they run last but compile for
        # minutes), then (a) in the order it runs: the cheap Pendulum programs and the two ends of the seed
        # range before the middle.
        P.submit(self.mg_key(S["metagenrl"]), lambda: build_metagenrl(S["metagenrl"]))
        P.submit("mg_test", lambda: build_metagenrl_test(S["metagenrl"]))
        P.submit(self.snake_key(S["snake"]), lambda: build_snake(S["snake"]))
        for c in self.meta_critic_configs():
            P.submit(self.train_key(c, ("vanilla", "mc")), lambda c=c: build_offpolicy(self.train_args(c), ("vanilla", "mc")))
        for c in self.throughput_order():
            P.submit(self.train_key(c), lambda c=c: build_offpolicy(self.train_args(c)))

    def throughput_order(self) -> list[dict]:
        top = max(self.sizes["throughput"]["seeds"])
        return sorted(self.throughput_configs(),
                      key=lambda c: (c["env"].startswith("brax"), c["seeds"] not in (1, top), c["seeds"], c["algo"]))

    @staticmethod
    def train_args(c: dict) -> dict:
        return train_kwargs(c["algo"], c["env"], c["seeds"], c["learning_starts"], c["eval_every"], c["chunks"],
                            c["eval_episodes"], c["max_episode_steps"], c["agent"])

    @staticmethod
    def train_key(c: dict, variants=()) -> str:
        return "train|" + json.dumps({**c, "variants": list(variants)}, sort_keys=True, default=list)

    @staticmethod
    def snake_key(sz: dict) -> str:
        return "snake|" + json.dumps({k: sz[k] for k in ("num_envs", "horizon", "hidden", "seeds", "updates_per_log",
                                                         "logs_per_chunk", "agents")}, sort_keys=True)

    @staticmethod
    def mg_key(sz: dict) -> str:
        return "metagenrl|" + json.dumps({k: v for k, v in sz.items() if not k.startswith("test")}, sort_keys=True)

    def throughput_configs(self) -> list[dict]:
        th = self.sizes["throughput"]
        if self.dry:  # the smoke's own programs: the dry run compiles them once
            return [self.sizes["smoke"]["train"][a] for a in th["algos"]]
        return [dict(algo=a, env=e, seeds=n, learning_starts=th["learning_starts"], eval_every=th["steps_per_chunk"],
                     chunks=th["chunks"], eval_episodes=th["eval_episodes"], max_episode_steps=th["max_episode_steps"],
                     agent=th["agent"]) for e in th["envs"] for a in th["algos"] for n in th["seeds"]]

    def meta_critic_configs(self) -> list[dict]:
        mc = self.sizes["meta_critic"]
        if self.dry:
            return [self.sizes["smoke"]["meta_critic"]]
        return [dict(algo=a, env=e, seeds=mc["seeds"], learning_starts=mc["learning_starts"], eval_every=mc["eval_every"],
                     chunks=mc["max_chunks"], eval_episodes=mc["eval_episodes"],
                     max_episode_steps=mc["max_episode_steps"], agent=mc["agent"])
                for e in mc["envs"] for a in mc["algos"]]

    # -- part 0 ----------------------------------------------------------------------------------------
    def part_smoke(self, res):
        sm = self.sizes["smoke"]
        items = [(f"env {n}", f"env|{n}") for n in sm["envs"]]
        items += [(f"{a.upper()} via metarl.train", self.train_key(t)) for a, t in sm["train"].items()]
        items += [("TD3-MC (meta_critic wrapper)", self.train_key(sm["meta_critic"], ("vanilla", "mc"))),
                  (f"outer value Snake ({len(sm['snake']['agents'] or PAPER_AGENT_NAMES)} agents)",
                   self.snake_key(sm["snake"])),
                  ("MetaGenRL meta-train", self.mg_key(sm["metagenrl"])),
                  ("model-based critic (reacher)", "mbc")]
        res["items"] = {}
        self.run_smoke_items(res, items, self.deadline["smoke"])

    def run_smoke_items(self, res, items, deadline: float, late: bool = False):
        """One line per check: OK (compile and run times), NAN, FAIL (the error in one line) or CUT (not
        compiled by the deadline; such checks are retried, without waiting, before the projection)."""
        lines = res["lines"]
        res["pending"] = []
        for label, key in items:
            tag = " (after the smoke's deadline)" if late else ""
            try:
                b = self.programs.get(key, deadline)
                t = time.time()
                if "run" in b:
                    out = _block(b["run"]())
                    dt_run = time.time() - t
                else:
                    s = _block(b["init"]())
                    t1 = time.time()
                    s, m = b["step"](s, 0)
                    _block(m)
                    dt_run = time.time() - t1
                    if key == "mbc":  # a second, warm call: the per-iteration rate used in (e)
                        t1 = time.time()
                        s, m = b["step"](s, 1)
                        _block(m)
                        dt_run = time.time() - t1
                        res["mbc_s_per_iteration"] = dt_run / b["iterations_per_chunk"]
                        self.cost("step", "mbc_iteration", res["mbc_s_per_iteration"])
                    out = m
                    del s
                ok = finite(b["must_be_finite"](out))
                c = sum(b["compile_s"].values())
                res["items"][label] = dict(ok=ok, compile_s=round(c, 2), run_s=round(dt_run, 3), late=late)
                lines.append(f"{'OK  ' if ok else 'NAN '} {label} (compile {c:.1f} s, run {dt_run:.2f} s){tag}"
                             + ("" if ok else ": non-finite outputs"))
            except FutureTimeout:
                res["items"][label] = dict(ok=False, error="not compiled by the smoke's deadline")
                lines.append(f"CUT  {label}: not compiled by the smoke's deadline")
                res["pending"].append((label, key))
                res["cut"] = "some checks did not compile by the smoke's deadline (retried before the projection)"
            except Exception as e:
                res["items"][label] = dict(ok=False, error=one_line(e))
                lines.append(f"FAIL {label}: {one_line(e)}{tag}")
            self.log(lines[-1])
        res["failed"] = [k for k, v in res["items"].items() if not v["ok"]]

    def late_smoke(self):
        """Smoke checks whose programs compiled after the smoke's deadline: run them now (no waiting), so
        the one-line verdicts are complete wherever the programs did compile."""
        res = self.summary["parts"]["smoke"]["results"]
        late = [(label, key) for label, key in res.get("pending", [])
                if self.programs.futures.get(key) is not None and self.programs.futures[key].done()]
        if late:
            self.run_smoke_items(res, late, deadline=time.time(), late=True)

    # -- part (a) ----------------------------------------------------------------------------------------
    def part_throughput(self, res):
        th = self.sizes["throughput"]
        rows = res.setdefault("rows", {})
        for c in self.throughput_order():
            key = f"{c['algo']}|{c['env']}|{c['seeds']}"
            left = self.left("throughput")
            if left <= 1.0:
                rows[key] = dict(status="cut", reason="the part's deadline")
                res["cut"] = "deadline reached before every configuration ran"
                continue
            try:
                b = self.programs.get(self.train_key(c), self.deadline["throughput"])
            except FutureTimeout:
                rows[key] = dict(status="cut", reason="not compiled by the part's deadline")
                res["cut"] = "deadline reached before every configuration compiled"
                continue
            except Exception as e:
                rows[key] = dict(status="error", error=one_line(e))
                self.log(f"(a) {key}: {one_line(e)}")
                continue
            st = self.costs["step"]
            est = (c["learning_starts"] + c["chunks"] * c["eval_every"]) * (st["train"] + c["seeds"] * st.get("train_per_run", 0.0))
            done = [r for r in rows.values() if r.get("status") == "done" and r["algo"] == c["algo"] and r["env"] == c["env"]]
            if done:  # a measured configuration of this algo and env with at least as many seeds bounds it
                ref = max(done, key=lambda r: r["seeds"])
                measured = ref["init_s"] + sum(ref["chunk_s"])
                est = measured if ref["seeds"] >= c["seeds"] else max(est, measured)
            if time.time() + est > self.deadline["throughput"]:
                rows[key] = dict(status="cut", reason=f"the part's deadline (expected {est:.0f} s)")
                res["cut"] = "deadline reached before every configuration ran"
                continue
            try:
                n = b["runs"]
                t = time.perf_counter()
                state = _block(b["init"]())
                init_s = time.perf_counter() - t
                chunk_s = []
                for i in range(c["chunks"]):
                    if i and time.time() + chunk_s[-1] > self.deadline["throughput"]:
                        break
                    t = time.perf_counter()
                    state, m = b["step"](state, i)
                    _block(m)
                    chunk_s.append(time.perf_counter() - t)
                best = min(chunk_s[1:] or chunk_s)
                steps = c["eval_every"] * n
                row = dict(status="done", algo=c["algo"], env=c["env"], seeds=n, compile_s=b["compile_s"],
                           build_s=round(b["build_s"], 2), init_s=init_s, chunk_s=chunk_s,
                           random_env_steps_per_s=c["learning_starts"] * n / init_s,
                           updates_per_s=steps / best, updates_per_s_per_seed=c["eval_every"] / best,
                           env_steps_per_s=steps / best, eval_return=float(np.nanmean(np.asarray(m["eval_return"]))),
                           background_compiles=self.programs.pending())
                rows[key] = row
                self.cost("step", "train" if n == 1 else f"train_{c['env']}_{c['algo']}_{n}", best / c["eval_every"])
                self.cost("compile", "train", sum(b["compile_s"].values()))
                self.log(f"(a) {key}: {row['updates_per_s']:,.0f} updates/s ({row['updates_per_s_per_seed']:,.0f} per "
                         f"seed), random env steps/s {row['random_env_steps_per_s']:,.0f}, compile "
                         f"{sum(b['compile_s'].values()):.0f} s")
                del state, m
            except Exception as e:
                rows[key] = dict(status="error", error=one_line(e))
                self.log(f"(a) {key}: {one_line(e)}")
            self.write(figure=False)
        for (algo, env) in {(r["algo"], r["env"]) for r in rows.values() if r.get("status") == "done"}:
            one = rows.get(f"{algo}|{env}|1")
            for r in rows.values():
                if r.get("status") == "done" and r["algo"] == algo and r["env"] == env and one:
                    r["speedup_vs_1_seed"] = r["updates_per_s"] / one["updates_per_s"]

    # -- part (b) ----------------------------------------------------------------------------------------
    def part_meta_critic(self, res):
        from experiments.meta_critic import paper_metrics

        from benchmarks.meta_critic import ENV_ROWS, paper_value, read_paper_table

        progs = {}
        for c in self.meta_critic_configs():
            key = f"{c['env']}|{c['algo']}"
            try:
                b = self.programs.get(self.train_key(c, ("vanilla", "mc")), self.deadline["meta_critic"] - 5.0)
                t = time.perf_counter()
                state = _block(b["init"]())
                progs[key] = dict(b=b, state=state, c=c, history=[], chunk_s=[], init_s=time.perf_counter() - t)
            except FutureTimeout:
                res.setdefault("programs", {})[key] = dict(status="cut", reason="not compiled by the part's deadline")
                res["cut"] = "some programs did not compile in time"
            except Exception as e:
                res.setdefault("programs", {})[key] = dict(status="error", error=one_line(e))
                self.log(f"(b) {key}: {one_line(e)}")
        # Round robin, one chunk of each program per round, until the deadline.
        i = 0
        st = self.costs["step"]
        while progs and i < max(p["c"]["chunks"] for p in progs.values()):
            # a round's expected time: the measured chunks, or the cost model before the first one
            est = sum(max(p["chunk_s"]) if p["chunk_s"] else p["c"]["eval_every"] * (
                st["meta_critic"] + p["b"]["runs"] * st.get("meta_critic_per_run", 0.0)) for p in progs.values())
            if time.time() + est > self.deadline["meta_critic"]:
                break
            for key, p in list(progs.items()):
                if i >= p["c"]["chunks"]:
                    continue
                try:
                    t = time.perf_counter()
                    p["state"], m = p["b"]["step"](p["state"], i)
                    m = {k: np.asarray(v) for k, v in _block(m).items()}
                    p["chunk_s"].append(time.perf_counter() - t)
                    p["history"].append(m)
                except Exception as e:
                    res.setdefault("programs", {})[key] = dict(status="error", error=one_line(e))
                    self.log(f"(b) {key}: {one_line(e)}")
                    del progs[key]
            i += 1
            self.meta_critic_results(res, progs, paper_metrics, ENV_ROWS, paper_value, read_paper_table)
            self.write(figure=False)
        self.meta_critic_results(res, progs, paper_metrics, ENV_ROWS, paper_value, read_paper_table)
        for p in progs.values():
            del p["state"]

    def meta_critic_results(self, res, progs, paper_metrics, ENV_ROWS, paper_value, read_paper_table):
        t1 = read_paper_table(1)
        out = res.setdefault("programs", {})
        for key, p in progs.items():
            if not p["history"]:
                continue
            env, algo = key.split("|")
            c, b = p["c"], p["b"]
            ev = np.concatenate([h["eval_return"] for h in p["history"]], axis=1)  # [runs, evals]
            steps = int(np.asarray(p["history"][-1]["env_steps"]).reshape(-1)[0])
            runs_per_s = c["eval_every"] * b["runs"] / np.median(p["chunk_s"])
            rows = {}
            for j, v in enumerate(b["variants"]):
                seg = ev[j * c["seeds"]:(j + 1) * c["seeds"]]
                col = algo.upper() + ("-MC" if v == "mc" else "")
                rows[col] = dict(paper_metrics(seg), paper=paper_value(t1, "environment", ENV_ROWS.get(env, env), col),
                                 eval_return=seg.tolist())
            out[key] = dict(status="done", env_steps_per_run=steps, chunks=len(p["chunk_s"]), runs=b["runs"],
                            compile_s=b["compile_s"], init_s=p["init_s"], chunk_s=p["chunk_s"],
                            env_steps_per_s_all_runs=runs_per_s, env_steps_per_s_per_run=runs_per_s / b["runs"],
                            table1=rows)
            self.cost("step", "meta_critic" if self.dry else f"meta_critic_{env}_{algo}",
                      float(np.median(p["chunk_s"])) / c["eval_every"])
            self.cost("compile", "meta_critic", sum(b["compile_s"].values()))

    # -- part (c) ----------------------------------------------------------------------------------------
    def part_snake(self, res):
        from metarl.meta.outer_value_outputs import summarise
        from experiments.outer_value_snake import PAPER

        sz = self.sizes["snake"]
        dl = self.deadline["snake"]
        try:
            b = self.programs.get(self.snake_key(sz), dl - 2.0)
        except FutureTimeout:
            res["cut"] = "the Snake program did not compile by the part's deadline"
            return
        t = time.perf_counter()
        state = _block(b["init"]())
        res.update(compile_s=b["compile_s"], init_s=time.perf_counter() - t, seeds=b["seeds"],
                   updates_per_chunk=b["updates_per_chunk"], env_steps_per_update=b["steps_per_update"])
        parts, chunk_s = [], []
        prior = b["updates_per_chunk"] * self.costs["step"]["snake_update"]
        for i in range(sz["max_chunks"]):
            if time.time() + (max(chunk_s) if chunk_s else prior) > dl:
                res["cut"] = "deadline (as many updates as fit)"
                break
            t = time.perf_counter()
            state, logs = b["step"](state, i)
            parts.append(jax_get(logs))
            chunk_s.append(time.perf_counter() - t)
            logs_np = {a: {m: np.concatenate([np.asarray(p[a][m]) for p in parts], axis=0) for m in parts[0][a]}
                       for a in parts[0]}
            summ = summarise(logs_np)
            res.update(updates=len(parts) * b["updates_per_chunk"], chunk_s=chunk_s,
                       updates_per_s=b["updates_per_chunk"] / float(np.median(chunk_s[1:] or chunk_s)),
                       summary=summ,
                       paper={a: PAPER.get(a, {}) for a in summ},
                       curves={a: {"return": np.nanmean(logs_np[a]["return"], axis=1).tolist(),
                                   "gamma": np.mean(logs_np[a]["gamma"], axis=1).tolist()} for a in logs_np})
            self.cost("step", "snake_update", 1.0 / res["updates_per_s"])
            self.write(figure=False)
        self.cost("compile", "snake", sum(b["compile_s"].values()))
        del state

    # -- part (d) ----------------------------------------------------------------------------------------
    def part_metagenrl(self, res):
        sz = self.sizes["metagenrl"]
        dl = self.deadline["metagenrl"]
        t_part = time.time()
        try:
            b = self.programs.get(self.mg_key(sz), dl - 5.0)
        except FutureTimeout:
            res["cut"] = "meta-training did not compile by the part's deadline"
            return
        t = time.perf_counter()
        state = _block(b["init"]())
        train = dict(compile_s=b["compile_s"], init_s=time.perf_counter() - t, agents=b["agents"], groups=b["groups"],
                     segment_s=[], eval_return={g: [] for g in b["groups"]}, meta_grad_norm=[])
        res["meta_train"] = train
        # Meta-training gets 60% of what is left; meta-test the rest (its program compiles meanwhile).
        train_end = t_part + 0.6 * (dl - t_part)
        prior = b["config"].eval_every / 2 * self.costs["step"]["metagenrl_cycle"]
        for i in range(sz["max_segments"]):
            if time.time() + (max(train["segment_s"]) if train["segment_s"] else prior) > train_end:
                if not train["segment_s"]:
                    res["cut"] = "no time left for a meta-training segment"
                break
            t = time.perf_counter()
            state, m = b["step"](state, i)
            m = jax_get(m)
            train["segment_s"].append(time.perf_counter() - t)
            for g in b["groups"]:
                train["eval_return"][g].append(np.asarray(m[g]["eval_return"]).tolist())
            train["meta_grad_norm"].append(float(m["meta_grad_norm"]))
            train["env_steps_per_agent"] = int(np.asarray(m[b["groups"][0]]["env_steps"]).reshape(-1)[0])
            train["cycles_per_s"] = b["config"].eval_every / 2 / float(np.median(train["segment_s"]))
            self.cost("step", "metagenrl_cycle", 1.0 / train["cycles_per_s"])
            self.write(figure=False)
        self.cost("compile", "metagenrl", sum(b["compile_s"].values()))
        alpha = state.alpha
        del state
        try:
            tb = self.programs.get("mg_test", dl - 2.0)
        except FutureTimeout:
            res["cut"] = "meta-test did not compile by the part's deadline"
            return
        t = time.perf_counter()
        tstate = _block(tb["init"](alpha))
        test = dict(compile_s=tb["compile_s"], init_s=time.perf_counter() - t, env=tb["group"], seeds=tb["seeds"],
                    variants=list(TEST_VARIANTS), segment_s=[], eval_return=[])
        res["meta_test"] = test
        prior = 0.5 * tb["config"].eval_every / 2 * self.costs["step"]["metagenrl_cycle"]
        for i in range(sz["test_max_segments"]):
            if time.time() + (max(test["segment_s"]) if test["segment_s"] else prior) > dl:
                res["cut"] = "deadline (as long as fits)"
                break
            t = time.perf_counter()
            tstate, m = tb["step"](tstate, i)
            m = jax_get(m)
            test["segment_s"].append(time.perf_counter() - t)
            test["eval_return"].append(np.asarray(m[tb["group"]]["eval_return"]).tolist())
            test["env_steps_per_agent"] = int(np.asarray(m[tb["group"]]["env_steps"]).reshape(-1)[0])
            test["cycles_per_s"] = tb["config"].eval_every / 2 / float(np.median(test["segment_s"]))
            ev = np.asarray(test["eval_return"])  # [segments, variants * seeds]
            s = tb["seeds"]
            test["final"] = {v: float(ev[-1, j * s:(j + 1) * s].mean()) for j, v in enumerate(TEST_VARIANTS)}
            self.write(figure=False)
        self.cost("compile", "metagenrl_test", sum(tb["compile_s"].values()))

    # -- part (e) ----------------------------------------------------------------------------------------
    def part_projection(self, res):
        self.late_smoke()
        res["rows"] = projection(self.summary, self.dry)
        res["device"] = (self.summary.get("device") or {}).get("devices")


def jax_get(x):
    import jax

    return jax.device_get(x)


def projection(summary: dict, dry: bool) -> list[dict]:
    """Projected seconds of every paper-scale workload, from the rates this run measured."""
    parts = summary["parts"]
    rows = []
    for w in PAPER_WORKLOADS:
        row = dict(workload=w["name"], source=w["source"], seconds=None, basis=None)
        try:
            if w["source"] == "throughput":
                r = parts["throughput"]["results"].get("rows", {}).get(w["key"])
                if r and r.get("status") == "done":
                    row["seconds"] = w["steps"] / r["updates_per_s_per_seed"]
                    row["basis"] = f"{r['updates_per_s']:,.0f} updates/s aggregate at {r['seeds']} seeds"
            elif w["source"] == "meta_critic":
                row.update(meta_critic_projection(parts["meta_critic"]["results"].get("programs", {}), w["table"]))
            elif w["source"] == "snake":
                r = parts["snake"]["results"]
                if r.get("updates_per_s"):
                    row["seconds"] = w["updates"] / r["updates_per_s"] * w["seeds"] / r["seeds"]
                    n_agents = len(r.get("summary") or {})
                    row["basis"] = (f"{r['updates_per_s']:.2f} updates/s of {n_agents} agents at {r['seeds']} seeds; "
                                    f"cost assumed proportional to seeds ({w['seeds']})"
                                    + ("" if n_agents == 5 else f" and to agents (5); measured {n_agents}"))
                    row["seconds"] *= 5 / max(n_agents, 1)
            elif w["source"] == "metagenrl":
                r = parts["metagenrl"]["results"]
                tr, te = r.get("meta_train", {}), r.get("meta_test", {})
                if tr.get("cycles_per_s"):
                    train = 5 * (1_000_000 - 10_000) / 2 / tr["cycles_per_s"]
                    # meta-test: per env one program of 7 variants x 6 seeds = 42 agents; ours measured
                    # 3 variants x test_seeds; cost assumed proportional to agents
                    test = None
                    if te.get("cycles_per_s"):
                        test = 3 * (1_000_000 - 10_000) / 2 / te["cycles_per_s"] * 42 / (3 * te["seeds"])
                    row["seconds"] = train + (test or 0.0)
                    row["basis"] = (f"meta-train {tr['cycles_per_s']:.1f} cycles/s with {tr['agents']} agents on "
                                    f"{'+'.join(tr['groups'])}" + (f"; meta-test {te['cycles_per_s']:.1f} cycles/s "
                                    f"({3 * te['seeds']} agents), scaled to 42 agents" if test else
                                    "; meta-test not measured (excluded)"))
            elif w["source"] == "model_based_critic":
                r = parts["smoke"]["results"]
                if r.get("mbc_s_per_iteration"):
                    # ours + DDPG + Meta-Critic baselines, 3000 iterations each; seeds vmapped, assumed x1..x5
                    row["seconds"] = 3 * w["iterations"] * r["mbc_s_per_iteration"] * w["seeds"]
                    row["basis"] = (f"{r['mbc_s_per_iteration']:.3f} s per meta-iteration at 1 seed (smoke), x3 "
                                    f"methods, cost assumed proportional to seeds (upper bound)")
        except Exception as e:
            row["basis"] = f"error: {one_line(e)}"
        if row["seconds"] is not None:
            row["hours"] = row["seconds"] / 3600
        if dry:
            row["note"] = "CPU dry run at tiny sizes: NOT a device projection"
        rows.append(row)
    return rows


def meta_critic_projection(programs: dict, table) -> dict:
    """Programs x 1M steps at the measured env steps/s of a (vanilla + MC) x 5-seed program; locomotion
    tasks at hopper's rate, the pendulums at inverted_double_pendulum's, DDPG at TD3's."""
    rate = {}
    for key, p in programs.items():
        if p.get("status") == "done":
            env, algo = key.split("|")
            rate[(env, algo)] = p["env_steps_per_s_all_runs"] / p["runs"]  # steps/s of the program
    if not rate:
        return {}

    def rate_for(env, algo):
        algo = "td3" if algo == "ddpg" else algo
        pend = "pendulum" in env
        cands = [(e, a) for (e, a) in rate if a == algo and (("pendulum" in e) == pend)] or \
                [(e, a) for (e, a) in rate if a == algo] or list(rate)
        return rate[cands[0]], cands[0]

    from benchmarks.meta_critic import ALGOS, ENV_ROWS, bench_config, plan

    if table == 1:
        jobs = [(env, algo, ("vanilla", "mc")) for env in ENV_ROWS for algo in ALGOS]
    else:
        jobs = plan(bench_config("paper"))
    total, used = 0.0, set()
    for env, algo, variants in jobs:
        r, src = rate_for(env, algo)
        used.add(src)
        shared = [v for v in variants if v in ("vanilla", "updates", "mc", "mc_plain")]
        own = [v for v in variants if v not in shared]
        # a shared program's cost grows with its runs (measured at 2 variants); own programs: 1 variant
        # at roughly half a 2-variant program's cost
        total += 1_000_000 / r * (max(1.0, len(shared) / 2) + 0.5 * len(own))
    return dict(seconds=total, basis=f"{len(jobs)} jobs x 1M steps at the rates of "
                                     f"{', '.join(f'{a} on {e}' for e, a in sorted(used))}; programs run one after "
                                     f"another, DDPG at TD3's rate")


# ----------------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------------
def _jsonable(o):
    try:
        import numpy as np

        return np.asarray(o).tolist()
    except Exception:
        return str(o)


def plan_text(plan: dict) -> str:
    lines = [f"GPU run kit plan ({plan['mode']}, budget {plan['budget_s']:.0f} s, predicted "
             f"{plan['total_predicted_s']:.0f} s):"]
    for p in plan["parts"]:
        lines.append(f"  {p['title']:<42s} box {p['box_s']:6.1f} s  predicted {p['predicted_s']:6.1f} s  "
                     f"{json.dumps(p['planned']) if p['planned'] else ''}")
    return "\n".join(lines)


def _fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return str(x)


def summary_markdown(plan: dict, s: dict) -> str:
    P = s["parts"]
    dev = s.get("device") or {}
    out = [f"# GPU run kit: {s['mode']}", "",
           f"Device: {dev.get('devices')} ({dev.get('backend')}); jax {(s.get('versions') or {}).get('jax')}; "
           f"budget {s['budget_s']:.0f} s; wall {_fmt(s.get('wall_s'))} s; "
           f"{'complete' if s['complete'] else 'NOT complete (cut off or still running)'}.", "",
           "| part | status | box (s) | predicted (s) | wall (s) |", "|---|---|---|---|---|"]
    for name in PARTS:
        p = P[name]
        out.append(f"| {p['title']} | {p['status']}{': ' + p['error'] if p.get('error') else ''} | {p['box_s']} | "
                   f"{p['predicted_s']} | {_fmt(p['wall_s'])} |")
    out += ["", "## 0. Smoke (one line per check)", "", "```"] + P["smoke"]["results"].get("lines", []) + ["```"]
    rows = P["throughput"]["results"].get("rows", {})
    if rows:
        out += ["", "## (a) Throughput (metarl.train loop; aggregate over vmapped seeds)", "",
                "| algo | env | seeds | updates/s | per seed | vs 1 seed | random env steps/s | compile (s) |",
                "|---|---|---|---|---|---|---|---|"]
        for k, r in rows.items():
            if r.get("status") == "done":
                out.append(f"| {r['algo']} | {r['env']} | {r['seeds']} | {r['updates_per_s']:,.0f} | "
                           f"{r['updates_per_s_per_seed']:,.0f} | {_fmt(r.get('speedup_vs_1_seed'), 2)} | "
                           f"{r['random_env_steps_per_s']:,.0f} | {sum(r['compile_s'].values()):.1f} |")
            else:
                out.append(f"| {k.replace('|', ' | ')} | {r.get('status')}: {r.get('reason') or r.get('error')} | | | | |")
    progs = P["meta_critic"]["results"].get("programs", {})
    if progs:
        from benchmarks.meta_critic import FINAL_EVALS, final_scores
        from metarl import stats

        out += ["", f"## (b) Meta-Critic Table 1 rows (final = a seed's mean return over its last {FINAL_EVALS} "
                "evaluations, IQM [95% stratified-bootstrap CI] over seeds; max avg = the paper's metric, ours / "
                "paper; verdict on the paper's claim MC >= vanilla from the interval of P(MC > vanilla))", "",
                "| env | algo | steps per run | vanilla: final | MC: final | vanilla: max avg | MC: max avg | "
                "P(MC > vanilla) [95% CI] | verdict | env steps/s (all runs) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for k, p in progs.items():
            env, algo = k.split("|")
            if p.get("status") == "done":
                t1 = p["table1"]
                van, mc = t1.get(algo.upper()), t1.get(algo.upper() + "-MC")
                fin = {c: final_scores(v["eval_return"]) for c, v in (("van", van), ("mc", mc)) if v}
                ci = lambda c: (lambda r: stats.interval_text(r["iqm"], r["ci"]))(  # noqa: E731
                    stats.summary_row(fin[c])) if c in fin else "-"
                mx = lambda v: f"{v['max_avg']:.1f} / {_fmt(v['paper'])}" if v else "-"  # noqa: E731
                cmp = stats.compare(fin["mc"], fin["van"]) if len(fin) == 2 and len(fin["mc"]) > 1 else None
                pc = stats.interval_text(cmp["p_improvement"], cmp["p_improvement_ci"], ".2f") if cmp else "-"
                out.append(f"| {env} | {algo} | {p['env_steps_per_run']:,} | {ci('van')} | {ci('mc')} | {mx(van)} | "
                           f"{mx(mc)} | {pc} | {cmp['claim_verdict'] if cmp else '-'} | "
                           f"{p['env_steps_per_s_all_runs']:,.0f} |")
            else:
                out.append(f"| {env} | {algo} | {p.get('status')}: {p.get('reason') or p.get('error')} | | | | | | | |")
    sn = P["snake"]["results"]
    if sn.get("summary"):
        out += ["", f"## (c) Snake 6x6: {sn['updates']:,} updates x {sn['seeds']} seeds "
                    f"({sn['updates_per_s']:.2f} updates/s of all five agents; paper 29,200 updates)", "",
                "IQM [95% stratified-bootstrap CI] over seeds; the verdicts read the paper's claims (metarl.meta.outer_value_outputs.claim_rows)",
                "", "| agent | final gamma | return (last 10%) | paper return | paper gamma | verdict |",
                "|---|---|---|---|---|---|"]
        from metarl.meta.outer_value_outputs import agent_verdicts, fmt as ms

        verdicts = agent_verdicts({"summary": sn["summary"]}, "Snake")
        for a, v in sn["summary"].items():
            pp = sn["paper"].get(a, {})
            out.append(f"| {a} | {ms(v, 'final_gamma', 3)} | {ms(v, 'return', 2)} | {pp.get('return', '')} | "
                       f"{pp.get('final_gamma', '')} | {verdicts.get(a, '-')} |")
    mg = P["metagenrl"]["results"]
    if mg.get("meta_train"):
        tr = mg["meta_train"]
        out += ["", "## (d) MetaGenRL", "",
                f"Meta-training: {tr['agents']} agents on {' + '.join(tr['groups'])}, "
                f"{len(tr['segment_s'])} segments, {tr.get('env_steps_per_agent', 0):,} env steps per agent, "
                f"{_fmt(tr.get('cycles_per_s'))} update cycles/s (compile {sum(tr['compile_s'].values()):.0f} s)."]
        for g, ev in tr["eval_return"].items():
            if ev:
                out.append(f"- {g}: last evaluation {np.mean(ev[-1]):.1f} (mean over agents)")
        te = mg.get("meta_test")
        if te and te.get("final"):
            out.append(f"Meta-test on {te['env']} ({te['seeds']} seeds, {te.get('env_steps_per_agent', 0):,} steps): "
                       + ", ".join(f"{v} {x:.1f}" for v, x in te["final"].items()))
    pr = P["projection"]["results"].get("rows")
    if pr:
        out += ["", "## (e) Projected time of paper-scale tables on this device", "",
                "| workload | projected | basis |", "|---|---|---|"]
        for r in pr:
            t = "-" if r["seconds"] is None else (f"{r['seconds'] / 3600:.1f} h" if r["seconds"] > 5400
                                                  else f"{r['seconds'] / 60:.1f} min")
            out.append(f"| {r['workload']} | {t} | {r.get('basis') or 'not measured'}"
                       f"{' (' + r['note'] + ')' if r.get('note') else ''} |")
    if s["warnings"]:
        out += ["", "## Warnings seen (deprecations here may be removals in the next jax)", ""]
        out += [f"- {w['category']}: {w['message']} ({w['where']})" for w in s["warnings"][:40]]
    return "\n".join(out) + "\n"


def figures(s: dict, path: str):
    from metarl.plots import _plt, save_fig

    plt = _plt()
    P = s["parts"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0, 0]
    rows = [r for r in P["throughput"]["results"].get("rows", {}).values() if r.get("status") == "done"]
    for key in sorted({(r["algo"], r["env"]) for r in rows}):
        rs = sorted((r for r in rows if (r["algo"], r["env"]) == key), key=lambda r: r["seeds"])
        ax.plot([r["seeds"] for r in rs], [r["updates_per_s"] for r in rs], "o-", label=f"{key[0]} {key[1]}")
    ax.set(xscale="log", yscale="log", xlabel="vmapped seeds", ylabel="updates/s (aggregate)", title="(a) throughput")
    if rows:
        ax.legend(fontsize=7)
    ax = axes[0, 1]
    for k, p in P["meta_critic"]["results"].get("programs", {}).items():
        for col, v in (p.get("table1") or {}).items():
            ev = np.asarray(v["eval_return"])
            ax.plot(np.arange(1, ev.shape[1] + 1), ev.mean(0), label=f"{k.split('|')[0].split('/')[-1]} {col}")
    ax.set(xlabel="evaluation", ylabel="return (seed mean)", title="(b) Meta-Critic Table 1 programs")
    if ax.lines:
        ax.legend(fontsize=6)
    ax = axes[1, 0]
    for a, c in (P["snake"]["results"].get("curves") or {}).items():
        ax.plot(np.arange(1, len(c["return"]) + 1), c["return"], label=a)
    ax.set(xlabel="log window", ylabel="training return", title="(c) Snake 6x6")
    if ax.lines:
        ax.legend(fontsize=7)
    ax = axes[1, 1]
    tr = P["metagenrl"]["results"].get("meta_train") or {}
    for g, ev in (tr.get("eval_return") or {}).items():
        if ev:
            ax.plot(np.arange(1, len(ev) + 1), np.mean(ev, axis=1), label=f"meta-train {g}")
    te = P["metagenrl"]["results"].get("meta_test") or {}
    if te.get("eval_return"):
        ev, sd = np.asarray(te["eval_return"]), te["seeds"]
        for j, v in enumerate(te["variants"]):
            ax.plot(np.arange(1, ev.shape[0] + 1), ev[:, j * sd:(j + 1) * sd].mean(1), "o--", label=f"test {v}")
    ax.set(xlabel="segment", ylabel="eval return", title="(d) MetaGenRL")
    if ax.lines:
        ax.legend(fontsize=6)
    fig.suptitle(f"GPU run kit ({s['mode']}): {(s.get('device') or {}).get('devices')}")
    fig.tight_layout()
    save_fig(fig, path)
    plt.close(fig)


def main(argv=None):
    from metarl.cli import ArgumentParser, existing_file, make_out_dir, positive_float, positive_int

    p = ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--budget-s", type=positive_float, default=None,
                   help="wall-time budget in seconds, imports and compilation included (default 450; dry run 1800, "
                        "a cap for a loaded CPU: the dry run's work is fixed)")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: every part's code path, in seconds")
    p.add_argument("--out", default=os.path.join("results", "gpu"), help="output folder (default results/gpu)")
    p.add_argument("--costs", default=None, type=existing_file, help="a measured cost file (a previous run's summary.json) for the plan")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="compile threads (default 12 on the GPU machine's 16 cores; dry run 2)")
    p.add_argument("--plan-only", action="store_true", help="write plan.json, print it and stop")
    a = p.parse_args(argv)
    if a.budget_s is None:
        a.budget_s = 1800.0 if a.dry_run else 450.0
    make_out_dir(p, a.out)
    if a.dry_run:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    kit = Kit(a)
    if a.plan_only:
        from benchmarks.common import write_text

        write_text(os.path.join(a.out, "plan.json"), json.dumps(kit.plan, indent=1, default=_jsonable) + "\n")
        print(plan_text(kit.plan))
        return kit
    kit.run()
    return kit


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # compile threads still running in the background must not hold the exit
