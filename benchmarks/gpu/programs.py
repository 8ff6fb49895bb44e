"""The GPU kit's compiled programs: built ahead of time in a pool of threads, memoised by key; one builder
per method (the off-policy loop, an environment's smoke step, Snake, MetaGenRL, the model-based critic)."""
from __future__ import annotations

import time

import dataclasses
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from metarl.runs import vmap_runs


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
        from metarl.meta.meta_critic_runs import SHARED_VARIANTS
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
    init_c = jax.jit(vmap_runs(init), out_shardings=sharding).lower(keys, hp).compile()
    t_init = time.perf_counter() - t
    abstract = jax.eval_shape(jax.vmap(init), keys, hp)
    t = time.perf_counter()
    chunk_c = jax.jit(vmap_runs(run_chunk), out_shardings=sharding, donate_argnums=0).lower(abstract).compile()
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
    """The five agents x seeds of experiments.outer_value_snake as one program (metarl.meta.outer_value), with
    the paper's meta-settings (``ov.SnakeMeta``) and seed 0."""
    import jax

    from metarl.envs import make
    from metarl.meta import outer_value as ov

    seeds, per_log, logs_per_chunk = sz["seeds"], sz["updates_per_log"], sz["logs_per_chunk"]
    scfg = ov.SnakeConfig(num_envs=sz["num_envs"], horizon=sz["horizon"])
    if sz.get("hidden"):
        scfg = dataclasses.replace(scfg, actor_hidden=tuple(sz["hidden"]), critic_hidden=tuple(sz["hidden"]))
    problem = ov.make_snake_problem(scfg, make("jumanji/Snake-6x6"))
    cfgs = ov.SnakeMeta().configs(lam_init=scfg.lam)  # as experiments.outer_value_snake.run
    agents = [a for a in ov.PAPER_AGENTS if not sz.get("agents") or a.name in sz["agents"]]
    init, step = ov.make_population(problem, cfgs.__getitem__, agents, seeds)
    run = ov.make_chunk_runner(step, per_log, logs_per_chunk)
    key = jax.random.PRNGKey(0)
    k_init, k_run = jax.random.split(key)
    t = time.perf_counter()
    init_c = jax.jit(init).lower(k_init).compile()
    t_init = time.perf_counter() - t
    abstract = jax.eval_shape(init, k_init)
    t = time.perf_counter()
    run_c = run.lower(abstract, k_run).compile()
    return dict(init=lambda: init_c(k_init), step=lambda s, i: run_c(s, jax.random.fold_in(k_run, i)),
                updates_per_chunk=per_log * logs_per_chunk, seeds=seeds,
                # (metrics such as the outer advantage are NaN by design where an agent has no outer loss)
                must_be_finite=lambda logs: {a: (d["gamma"], d["return"]) for a, d in logs.items()},
                steps_per_update=problem.steps_per_rollout, config=dict(sz),
                compile_s={"init": t_init, "chunk": time.perf_counter() - t})


def metagenrl_config(sz: dict, test: bool = False):
    from metarl.meta.metagenrl.protocol import get_scale
    from metarl.meta import metagenrl as mg

    base = get_scale("paper").test if test else get_scale("paper").train
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

    from metarl.meta.metagenrl.runs import _same_seeds
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


def one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0][:300] if msg else ''}"


def finite(tree) -> bool:
    import jax
    import numpy as np

    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree)
               if np.issubdtype(np.asarray(x).dtype, np.floating))
