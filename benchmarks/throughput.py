"""Throughput benchmark: our jitted, vmapped off-policy core against Brax's trainer and eager PyTorch.

    python -m benchmarks.throughput --scale quick      # make bench-throughput (a few minutes on 2 CPU cores)
    python -m benchmarks.throughput --scale paper      # longer runs, meant for a quiet machine or a GPU

Three measurements, in one run:

(a) SAC environment steps per second in steady state (compilation excluded and reported apart):
    ours (``metarl.train.make_functions`` with algo sac, jitted and vmapped over one seed exactly as
    ``Runner`` runs it) against Brax's own ``brax.training.agents.sac.train``, on the same Brax env
    and backend, 1 environment, batch 256, 256-256 networks, 1 gradient update per env step.
    Brax 0.14.2's trainers need a jax older than ours, so the peer runs as a subprocess in
    ``.venv-brax-peer/`` (pinned in ``benchmarks/peers/brax_requirements.txt``), which this
    benchmark creates on first use. Our side is timed before AND after the peer (back to back on a
    shared machine); our chunk contains one evaluation episode, whose separately timed cost is
    subtracted (Brax's own ``training/sps`` excludes its evaluation too); both figures are kept.
(b) TD3 updates per second: ours with 8 vmapped seeds (one compiled program) against the same
    update in eager PyTorch on the CPU running 8 seeds one after another, as the papers' code does
    (``benchmarks/peers/torch_td3.py`` in ``.venv-torch-peer/``, torch pinned in
    ``benchmarks/peers/torch_requirements.txt``, the ``bench`` extra of pyproject.toml).
    Both: 400-300 actor and twin critics, batch 100, Adam, target smoothing, policy delay 2, a
    replay buffer of random transitions sampled uniformly on every update.
(c) Our TD3 with 1, 2, 4 and 8 vmapped seeds: aggregate updates per second.
(d) Ours against rejax (0.1.3, "vectorizable RL algorithms in pure JAX"), TD3, SAC and PPO on gymnax
    Pendulum-v1 with 1, 8 and 32 vmapped seeds: env steps/s of a whole run (warm-up, training, evaluations)
    as one ``jit(vmap(train))`` program per side, compiled ahead of time and timed apart; per algorithm and
    seed count ours runs, then rejax (interleaved). Both sides get the same settings, read from our configs
    (:func:`pendulum_request`): networks, batch, 1 update per env step (TD3's actor every 2nd), warm-up,
    evaluation cadence and episodes. Then the learning curves of both at equal steps and seeds. rejax runs
    in ``benchmarks/peers/.venv-rejax/`` (``benchmarks/peers/rejax_requirements.txt``), created on first
    use like the other peers; where it cannot be built (no network) one line says so and the rest is
    written.
(e) Roofline: the machine's attainable dense float32 GEMM rate (jax and numpy, all cores) and the TD3 and
    SAC updates' achieved GFLOP/s (XLA cost analysis FLOPs x updates/s) as a fraction of it.

The TD3 sides run interleaved in ``rounds`` (ours 1/2/4/8 seeds, then torch, repeated); figures are
medians over rounds, every sample is in summary.json. Results: ``results/throughput/summary.json`` (with
"ratios": ours / rejax env steps/s at 8 seeds per algorithm and the updates' GEMM fractions, and
"compile_s": our TD3 and SAC Pendulum programs at 1 seed, no persistent cache) and
``results/throughput/table.md``. The targets (ours >= Brax; 8 seeds >= 2x one; ours >= 3x torch)
are figures to report, not assertions: misses are printed as misses.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import time
from dataclasses import dataclass

from benchmarks.peers.drivers import (BRAX_VENV, PEERS, REJAX_VENV, ROOT, TORCH_VENV, RejaxPeer, TorchPeer,
                                      _last_log_line, finish_venv, one_line, peer_unavailable_line, run_brax_peer,
                                      start_venv)



@dataclass(frozen=True)
class ThroughputConfig:
    # (a) SAC: ours vs Brax's trainer
    sac_env: str = "inverted_pendulum"  # a Brax env name (ours: "brax/<name>")
    backend: str = "positional"
    sac_learning_starts: int = 256  # warm-up / prefill steps (>= batch 256)
    sac_steps_per_chunk: int = 500  # env steps per timed chunk (ours) / per epoch (Brax)
    sac_chunks_before: int = 1  # our timed chunks before the peer runs
    sac_chunks_after: int = 1  # ... and after it
    brax_epochs: int = 3  # Brax training epochs; the first one includes its compilation
    # (b) and (c) TD3 update
    td3_obs_dim: int = 17  # HalfCheetah's observation and action sizes
    td3_act_dim: int = 6
    td3_buffer_size: int = 10_000
    td3_seed_counts: tuple = (1, 2, 4, 8)
    td3_updates_per_call: int = 50  # updates per compiled call (a lax.scan)
    td3_calls: int = 2  # timed calls per seed count per round
    torch_seeds: int = 8
    torch_updates: int = 50  # timed updates per seed per round (after torch_warmup untimed ones)
    torch_warmup: int = 5
    torch_threads: int = 1  # torch intra-op threads; 0 = torch's default (all cores)
    rounds: int = 3
    sac_time_eval: bool = False  # also compile and time our evaluation alone, and subtract it
    # (d) ours vs rejax on gymnax/Pendulum-v1: whole training runs, jit(vmap(train)) over seeds
    pend_seed_counts: tuple = (1, 8, 32)
    pend_learning_starts: int = 256  # uniform warm-up steps (TD3, SAC); >= the SAC batch 256
    pend_train_steps: int = 512  # env steps after the warm-up (TD3, SAC), 1 update each
    pend_eval_every: int = 256  # evaluation cadence (env steps), both sides
    pend_eval_episodes: int = 5
    ppo_rollouts: int = 2  # PPO env steps = ppo_rollouts x rollout (2048); evaluation after each rollout
    curve_seeds: int = 2  # learning curves: ours and rejax, equal steps and seeds (a sanity check)
    curve_learning_starts: int = 1_000
    curve_train_steps: int = 5_000
    curve_eval_every: int = 1_000
    ppo_curve_rollouts: int = 10
    # (e) roofline: dense float32 GEMM rate (jax, numpy), and the SAC update alone
    overlap_compile: bool = False  # (d): compile rejax's program while ours compiles (see pendulum_pair)
    gemm_n: int = 2048
    gemm_reps: int = 5
    sac_update_seed_counts: tuple = (1, 8)
    help_runs: int = 1  # (f) `python -m <cli> --help`, each in a fresh interpreter: the best of this many runs
    run_brax: bool = True
    run_torch: bool = True
    run_rejax: bool = True

    def validate(self):
        positive = ("sac_learning_starts", "sac_steps_per_chunk", "td3_obs_dim", "td3_act_dim",
                    "td3_buffer_size", "td3_updates_per_call", "td3_calls", "torch_seeds", "torch_updates",
                    "rounds")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("sac_chunks_before", "sac_chunks_after", "torch_warmup", "torch_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.sac_chunks_before + self.sac_chunks_after < 1:
            raise ValueError("sac_chunks_before + sac_chunks_after must be >= 1 (no timed chunk of ours)")
        if self.brax_epochs < 2:
            raise ValueError(f"brax_epochs must be >= 2 (the first one includes compilation), got {self.brax_epochs}")
        if self.sac_learning_starts < 256:
            raise ValueError(f"sac_learning_starts must be >= the SAC batch 256, got {self.sac_learning_starts}")
        if self.td3_buffer_size < 100:
            raise ValueError(f"td3_buffer_size must be >= the TD3 batch 100, got {self.td3_buffer_size}")
        counts = tuple(self.td3_seed_counts)
        if not counts or any(int(c) != c or c < 1 for c in counts) or list(counts) != sorted(set(counts)):
            raise ValueError(f"td3_seed_counts must be distinct positive integers in increasing order, got {counts}")
        if counts[0] != 1:
            raise ValueError(f"td3_seed_counts must start at 1 (the single-seed reference), got {counts}")
        pend = tuple(self.pend_seed_counts)
        if not pend or any(int(c) != c or c < 1 for c in pend) or list(pend) != sorted(set(pend)):
            raise ValueError(f"pend_seed_counts must be distinct positive integers in increasing order, got {pend}")
        if self.pend_learning_starts < 256 or self.curve_learning_starts < 256:
            raise ValueError("pend_learning_starts and curve_learning_starts must be >= the SAC batch 256")
        for steps, every in ((self.pend_train_steps, self.pend_eval_every),
                             (self.curve_train_steps, self.curve_eval_every)):
            if every < 2 or every % 2 or steps < every or steps % every:
                raise ValueError(f"train steps {steps} must be a positive multiple of an even eval_every {every} "
                                 "(TD3's policy delay 2)")
        for name in ("pend_eval_episodes", "ppo_rollouts", "curve_seeds", "ppo_curve_rollouts", "gemm_n",
                     "gemm_reps", "help_runs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.backend not in ("positional", "spring", "generalized", "mjx"):
            raise ValueError(f"unknown Brax backend {self.backend!r}; valid: positional, spring, generalized, mjx")
        return self


SCALES = {
    "quick": ThroughputConfig(),
    "paper": ThroughputConfig(sac_env="halfcheetah", sac_learning_starts=1_000, sac_steps_per_chunk=5_000,
                              sac_chunks_before=2, sac_chunks_after=2, brax_epochs=4, td3_buffer_size=100_000,
                              td3_updates_per_call=500, td3_calls=3, torch_updates=500, torch_warmup=20,
                              torch_threads=0, rounds=3, sac_time_eval=True, pend_learning_starts=1_000,
                              pend_train_steps=4_000, pend_eval_every=1_000, ppo_rollouts=5, curve_seeds=8,
                              curve_train_steps=20_000, ppo_curve_rollouts=50, gemm_n=4096, help_runs=3),
}


def config_for(scale: str) -> ThroughputConfig:
    from benchmarks.common import parse_scale

    return SCALES[parse_scale(scale, SCALES)].validate()


# ----------------------------------------------------------------------------------------------------
# (a) SAC: ours
# ----------------------------------------------------------------------------------------------------
def _block(x):
    import jax

    return jax.tree.map(lambda a: a.block_until_ready(), x)


class OurSAC:
    """Our SAC, compiled exactly as ``metarl.train.Runner`` compiles it (jit of vmap over the runs)."""

    def __init__(self, cfg: ThroughputConfig):
        import jax

        from metarl.train import TrainConfig, make_functions, run_keys_and_hp

        n_chunks = cfg.sac_chunks_before + cfg.sac_chunks_after
        self.steps_per_chunk = cfg.sac_steps_per_chunk
        self.train_config = TrainConfig(
            algo="sac", env=f"brax/{cfg.sac_env}", backend=cfg.backend, seeds=1,
            total_steps=cfg.sac_learning_starts + n_chunks * cfg.sac_steps_per_chunk,
            learning_starts=cfg.sac_learning_starts, eval_every=cfg.sac_steps_per_chunk, eval_episodes=1,
            evals_per_chunk=1, updates_per_step=1, buffer_size=10**7)
        _, self.agent, init, run_chunk, evaluate = make_functions(self.train_config)
        assert self.agent.config.batch_size == 256 and tuple(self.agent.config.actor_hidden) == (256, 256)
        _, self.keys, self.hp = run_keys_and_hp(self.train_config)
        self.compile_s = {}
        t = time.perf_counter()
        init_c = jax.jit(jax.vmap(init)).lower(self.keys, self.hp).compile()
        self.compile_s["init"] = time.perf_counter() - t
        self.run = _block(init_c(self.keys, self.hp))
        t = time.perf_counter()
        self.chunk = jax.jit(jax.vmap(run_chunk), donate_argnums=0).lower(self.run).compile()
        self.compile_s["chunk"] = time.perf_counter() - t
        self.evaluate = None
        if cfg.sac_time_eval:
            t = time.perf_counter()
            self.evaluate = jax.jit(jax.vmap(evaluate)).lower(self.run.agent, self.keys).compile()
            self.compile_s["evaluate_alone"] = time.perf_counter() - t
        self.chunk_s, self.eval_s = [], []

    def time_chunks(self, n: int):
        for _ in range(n):
            t = time.perf_counter()
            self.run, m = self.chunk(self.run)
            _block(m)
            self.chunk_s.append(time.perf_counter() - t)
            if self.evaluate is not None:
                t = time.perf_counter()
                _block(self.evaluate(self.run.agent, self.keys))
                self.eval_s.append(time.perf_counter() - t)

    def result(self) -> dict:
        steps = self.steps_per_chunk * len(self.chunk_s)
        chunk_total, eval_total = sum(self.chunk_s), sum(self.eval_s)
        # Without sac_time_eval the figure keeps the chunk's one evaluation episode (about 1% of a
        # chunk when it was timed apart): a conservative figure for our side.
        return {"env_steps_per_s": steps / max(chunk_total - eval_total, 1e-9),
                "env_steps_per_s_incl_eval": steps / chunk_total, "eval_subtracted": bool(self.eval_s),
                "chunk_s": self.chunk_s, "eval_s": self.eval_s, "steps_per_chunk": self.steps_per_chunk,
                "compile_time_s": self.compile_s["init"] + self.compile_s["chunk"],
                "compile_breakdown_s": self.compile_s, "train_config": dataclasses.asdict(self.train_config)}


# ----------------------------------------------------------------------------------------------------
# (b, c) TD3 update: ours vmapped over seeds; eager PyTorch peer
# ----------------------------------------------------------------------------------------------------
def _td3_spec_agent(cfg: ThroughputConfig, algo: str = "td3"):
    from metarl.agents import make_agent
    from metarl.envs import EnvSpec

    a_dim, o_dim = cfg.td3_act_dim, cfg.td3_obs_dim
    spec = EnvSpec(name="synthetic/td3-update", obs_shape=(o_dim,), discrete=False, action_dim=a_dim,
                   action_low=(-1.0,) * a_dim, action_high=(1.0,) * a_dim)
    return spec, make_agent(algo, spec)


def td3_flops_per_update(cfg: ThroughputConfig) -> float:
    """XLA's FLOP count of one TD3 update of one seed: the critic step plus half an actor step
    (policy delay 2). Turns updates/s into achieved GFLOP/s, which shows whether the update is
    compute-bound (then vmapping seeds cannot raise the aggregate rate on a CPU)."""
    import jax
    import jax.numpy as jnp

    _, agent = _td3_spec_agent(cfg)
    state = agent.init(jax.random.PRNGKey(0), {})
    b, o, a = agent.config.batch_size, cfg.td3_obs_dim, cfg.td3_act_dim
    batch = dict(obs=jnp.zeros((b, o)), action=jnp.zeros((b, a)), reward=jnp.zeros(b), next_obs=jnp.zeros((b, o)),
                 terminated=jnp.zeros(b, bool), done=jnp.zeros(b, bool))
    key = jax.random.PRNGKey(1)

    def flops(fn):  # the lowered (unoptimised) program's count: within 0.1% of the compiled one, no compile
        ca = jax.jit(fn).lower(state, batch, key).cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) else ca
        return float(ca["flops"])

    return flops(agent.critic_step) + flops(agent.actor_step) / agent.config.policy_delay


class OurTD3Updates:
    """``n`` seeds of TD3 (or SAC: ``algo="sac"``) (each with its own agent and replay buffer of random transitions) as one
    compiled program that runs ``updates_per_call`` x (sample a batch, ``agent.update``) in a lax.scan."""

    def __init__(self, cfg: ThroughputConfig, n: int, algo: str = "td3"):
        import jax
        import jax.numpy as jnp

        from metarl import buffers

        a_dim, o_dim = cfg.td3_act_dim, cfg.td3_obs_dim
        _, agent = _td3_spec_agent(cfg, algo)
        c = agent.config
        if algo == "td3":
            assert (tuple(c.actor_hidden), tuple(c.critic_hidden), c.batch_size, c.twin, c.policy_delay) == \
                ((400, 300), (400, 300), 100, True, 2)
        else:  # the SAC update alone (the roofline): 256-256, batch 256
            assert (tuple(c.actor_hidden), tuple(c.critic_hidden), c.batch_size) == ((256, 256), (256, 256), 256)
        size, k_upd = cfg.td3_buffer_size, cfg.td3_updates_per_call

        def init(key):
            k_agent, k1, k2, k3, k4, k5, k_run = jax.random.split(key, 7)
            data = dict(obs=jax.random.normal(k1, (size, o_dim)),
                        action=jax.random.uniform(k2, (size, a_dim), minval=-1.0, maxval=1.0),
                        reward=jax.random.normal(k3, (size,)), next_obs=jax.random.normal(k4, (size, o_dim)),
                        terminated=jax.random.uniform(k5, (size,)) < 0.01)
            data["done"] = data["terminated"]
            buf = buffers.add_batch(buffers.init(jax.tree.map(lambda x: x[0], data), size), data)
            return agent.init(k_agent, {}), buf, k_run

        def updates(carry):
            state, buf, key = carry

            def body(state, k):
                k_s, k_u = jax.random.split(k)
                return agent.update(state, buffers.sample(buf, k_s, c.batch_size), k_u)

            key, sub = jax.random.split(key)
            state, m = jax.lax.scan(body, state, jax.random.split(sub, k_upd))
            return (state, buf, key), m["critic_loss"][-1]

        keys = jax.random.split(jax.random.PRNGKey(0), n)
        self.n, self.updates_per_call = n, k_upd
        self.carry = _block(jax.jit(jax.vmap(init))(keys))
        t = time.perf_counter()
        self.fn = jax.jit(jax.vmap(updates), donate_argnums=0).lower(self.carry).compile()
        self.compile_s = time.perf_counter() - t
        self.carry, loss = self.fn(self.carry)  # one untimed call: first-touch effects
        if not bool(jnp.all(jnp.isfinite(_block(loss)))):
            raise FloatingPointError(f"non-finite {algo.upper()} critic loss in the throughput benchmark")
        self.samples = []  # aggregate updates/s, one per timed call

    def time_calls(self, calls: int):
        for _ in range(calls):
            t = time.perf_counter()
            self.carry, loss = self.fn(self.carry)
            _block(loss)
            self.samples.append(self.n * self.updates_per_call / (time.perf_counter() - t))


# ----------------------------------------------------------------------------------------------------
# (d) Ours against rejax on gymnax/Pendulum-v1: whole runs (warm-up, training, evaluations), vmapped seeds
# ----------------------------------------------------------------------------------------------------
PEND_ALGOS = ("td3", "sac", "ppo")


def pendulum_request(cfg: ThroughputConfig, algo: str, seeds: int, curve: bool = False) -> dict:
    """One run's settings, read from OUR configs (agent defaults, PPO preset), given to both sides: the
    same networks, batch, updates per env step (1; TD3's actor every 2nd), warm-up, evaluation cadence
    and episodes, and env steps per seed. ``curve``: the longer learning-curve budget."""
    from metarl.agents import agent_config
    from metarl.agents.sac import SAC_HP
    from metarl.agents.td3 import TD3_HP
    from metarl.meta.onpolicy import PRESETS, OnPolicyConfig

    req = {"algo": algo, "seeds": int(seeds), "seed": 0, "eval_episodes": cfg.pend_eval_episodes}
    if algo in ("td3", "sac"):
        c = agent_config(algo)
        assert tuple(c.actor_hidden) == tuple(c.critic_hidden)
        hp = TD3_HP if algo == "td3" else SAC_HP
        if algo == "sac":
            assert hp["actor_lr"] == hp["critic_lr"] == hp["alpha_lr"] and hp["init_alpha"] == 1.0
        else:
            assert hp["actor_lr"] == hp["critic_lr"] and c.twin and c.target_smoothing
        learning_starts = cfg.curve_learning_starts if curve else cfg.pend_learning_starts
        train = cfg.curve_train_steps if curve else cfg.pend_train_steps
        req.update(total_steps=learning_starts + train, learning_starts=learning_starts,
                   eval_every=cfg.curve_eval_every if curve else cfg.pend_eval_every,
                   hidden=list(c.actor_hidden), batch_size=c.batch_size, lr=hp["actor_lr"], gamma=hp["gamma"],
                   tau=hp["tau"])
        if algo == "td3":
            req.update(expl_noise=hp["expl_noise"], policy_noise=hp["policy_noise"], noise_clip=hp["noise_clip"],
                       policy_delay=c.policy_delay)
    elif algo == "ppo":
        p = OnPolicyConfig(**PRESETS["ppo"])  # the preset's values (its total_steps is replaced below)
        assert p.pi_lr == p.vf_lr and p.pi_epochs == p.vf_epochs and p.num_envs == 1
        rollouts = cfg.ppo_curve_rollouts if curve else cfg.ppo_rollouts
        req.update(total_steps=rollouts * p.rollout, learning_starts=0, eval_every=p.rollout, hidden=list(p.hidden),
                   rollout=p.rollout, epochs=p.pi_epochs, minibatch_size=p.minibatch_size, lr=p.pi_lr,
                   gamma=p.gamma, gae_lambda=p.gae_lambda, clip=p.clip)
    else:
        raise ValueError(f"unknown algo {algo!r}; valid: {', '.join(PEND_ALGOS)}")
    return req


def compile_our_pendulum(req: dict):
    """Our side of ``req``: the whole run as one program, ``jit(vmap(train))`` over the seeds, compiled
    ahead of time (no persistent compilation cache in this process). Returns (program, keys, seconds).
    TD3/SAC: ``metarl.train.make_train`` (what ``Runner`` runs chunk by chunk); PPO:
    ``metarl.meta.onpolicy`` (init, then its evaluation segments in a scan)."""
    import jax

    algo, n = req["algo"], int(req["seeds"])
    keys = jax.random.split(jax.random.PRNGKey(int(req.get("seed", 0))), n)
    if algo in ("td3", "sac"):
        from metarl.train import TrainConfig, make_train

        overrides = dict(actor_hidden=tuple(req["hidden"]), critic_hidden=tuple(req["hidden"]),
                         batch_size=req["batch_size"])
        tc = TrainConfig(algo=algo, env="gymnax/Pendulum-v1", seeds=n, total_steps=req["total_steps"],
                         learning_starts=req["learning_starts"], eval_every=req["eval_every"],
                         eval_episodes=req["eval_episodes"], buffer_size=req["total_steps"], updates_per_step=1,
                         agent=overrides)
        train = make_train(tc)
        program = lambda k: train(k, {})[1]["eval_return"]
    else:
        from metarl import envs
        from metarl.meta.onpolicy import make_config, make_onpolicy

        pc = make_config("ppo", total_steps=req["total_steps"], eval_every=req["eval_every"],
                         eval_episodes=req["eval_episodes"], hidden=tuple(req["hidden"]))
        init, run_segment, _ = make_onpolicy(pc, envs.make("gymnax/Pendulum-v1"))

        def program(k):
            state = init(k)
            _, m = jax.lax.scan(lambda s, _: run_segment(s), state, None, length=pc.num_evals)
            return m["eval_return"]
    t = time.perf_counter()
    fn = jax.jit(jax.vmap(program)).lower(keys).compile()
    compile_s = time.perf_counter() - t
    return fn, keys, compile_s


def our_pendulum_run(req: dict, compiled=None) -> dict:
    """Compile (or take ``compiled`` from :func:`compile_our_pendulum`) and time one call of ``req``'s run."""
    import jax
    import numpy as np

    fn, keys, compile_s = compiled if compiled is not None else compile_our_pendulum(req)
    algo, n = req["algo"], int(req["seeds"])
    t = time.perf_counter()
    evals = jax.block_until_ready(fn(keys))
    run_s = time.perf_counter() - t
    evals = np.asarray(evals).reshape(n, -1)
    steps = int(req["total_steps"])
    return {"algo": algo, "seeds": n, "compile_s": compile_s, "run_s": run_s, "env_steps_per_seed": steps,
            "env_steps_per_s": n * steps / run_s, "eval_returns": evals.tolist(),
            "finite": bool(np.all(np.isfinite(evals)))}


def pendulum_pair(req: dict, peer, overlap_compile: bool = False, errors: list | None = None):
    """Ours, then rejax (``peer``, may be None), on ``req``; each compiled apart from its timed call.
    Returns (ours, theirs); theirs is None without a peer or when the peer failed (its error, one line,
    is appended to ``errors``). ``overlap_compile``: rejax compiles in its process while ours compiles
    here (halves the wall time of a compile-bound run; both compile times then include the other's
    contention); the timed calls never overlap."""
    failed = []

    def peer_call(fn):
        if peer is None or failed:
            return None
        try:
            return fn()
        except Exception as e:  # report, keep our side
            failed.append(one_line(e))
            return None

    if overlap_compile:
        peer_call(lambda: peer.send({**req, "run": False}))
    compiled = compile_our_pendulum(req)
    if overlap_compile:
        peer_call(peer.receive)
    ours = our_pendulum_run(req, compiled)
    del compiled
    theirs = peer_call(lambda: peer.run(req))
    if failed and errors is not None:
        errors.extend(failed)
    return ours, theirs


# ----------------------------------------------------------------------------------------------------
# (e) Roofline: the machine's dense float32 GEMM rate, and our updates' achieved fraction of it
# ----------------------------------------------------------------------------------------------------
def gemm_rates(n: int = 2048, reps: int = 5) -> dict:
    """Attainable dense float32 GEMM rate (GFLOP/s, 2 n^3 FLOP per product) of jax (XLA's CPU/GPU dot)
    and numpy (its BLAS), large square matrices, every core (the libraries' default threading). Best of
    ``reps`` timed products after one untimed one."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flop = 2.0 * n ** 3
    out = {"n": n, "reps": reps, "flop_per_product": flop}
    dot = jax.jit(jnp.dot)
    ja, jb = jax.device_put(a), jax.device_put(b)
    dot(ja, jb).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        dot(ja, jb).block_until_ready()
        best = min(best, time.perf_counter() - t)
    out["jax_gflops"] = flop / best / 1e9
    np.dot(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        np.dot(a, b)
        best = min(best, time.perf_counter() - t)
    out["numpy_gflops"] = flop / best / 1e9
    out["attainable_gflops"] = max(out["jax_gflops"], out["numpy_gflops"])
    return out


def sac_flops_per_update(cfg: ThroughputConfig) -> float:
    """XLA's FLOP count of one SAC update of one seed (critic, actor and temperature steps), on the
    synthetic HalfCheetah-sized spec of the TD3 update benchmark."""
    import jax
    import jax.numpy as jnp

    _, agent = _td3_spec_agent(cfg, "sac")
    state = agent.init(jax.random.PRNGKey(0), {})
    b, o, a = agent.config.batch_size, cfg.td3_obs_dim, cfg.td3_act_dim
    batch = dict(obs=jnp.zeros((b, o)), action=jnp.zeros((b, a)), reward=jnp.zeros(b), next_obs=jnp.zeros((b, o)),
                 terminated=jnp.zeros(b, bool), done=jnp.zeros(b, bool))
    ca = jax.jit(agent.update).lower(state, batch, jax.random.PRNGKey(1)).cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca["flops"])


def n_max_key(counts) -> str:
    return str(max(counts))


def ratio(ours, theirs):
    """ours / theirs, or None where either is missing or not positive."""
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def summary_ratios(rejax: dict, td3_gflops: float | None, sac_gflops: float | None, gemm: dict | None,
                   seeds: int = 8) -> dict:
    """The summary's "ratios": ours / rejax env steps/s at ``seeds`` seeds per algorithm, and the TD3
    (and SAC) update's achieved GFLOP/s over the attainable GEMM rate. ``rejax``: {algo: {"ours": {seeds:
    row}, "rejax": {seeds: row} or None}} with rows carrying ``env_steps_per_s``."""
    out = {}
    for algo in PEND_ALGOS:
        sides = rejax.get(algo) or {}
        ours = (sides.get("ours") or {}).get(str(seeds))
        theirs = (sides.get("rejax") or {}).get(str(seeds))
        out[f"{algo}_vs_rejax"] = ratio(ours["env_steps_per_s"] if ours else None,
                                        theirs["env_steps_per_s"] if theirs else None)
    peak = gemm["attainable_gflops"] if gemm else None
    out["td3_gemm_fraction"] = ratio(td3_gflops, peak)
    out["sac_gemm_fraction"] = ratio(sac_gflops, peak)
    return out


def rejax_table(s: dict) -> str:
    """Ours vs rejax (env steps/s per seed count, compile times), the roofline and the learning curves."""
    rj = s.get("rejax") or {}
    counts = [str(c) for c in s["config"]["pend_seed_counts"]]
    lines = ["| gymnax/Pendulum-v1, whole run | seeds | ours env steps/s | rejax env steps/s | ours / rejax | "
             "ours compile (s) | rejax compile (s) | target (ours >= rejax) |", "|---|---|---|---|---|---|---|---|"]
    for algo in PEND_ALGOS:
        sides = rj.get(algo) or {}
        for c in counts:
            o = (sides.get("ours") or {}).get(c)
            t = (sides.get("rejax") or {}).get(c)
            r = ratio(o["env_steps_per_s"] if o else None, t["env_steps_per_s"] if t else None)
            lines.append(f"| {algo.upper()} | {c} | {_fmt(o['env_steps_per_s'] if o else None)} | "
                         f"{_fmt(t['env_steps_per_s'] if t else None)} | {_fmt(r, 'x') if r else 'n/a'} | "
                         f"{_fmt(o['compile_s'] if o else None)} | {_fmt(t['compile_s'] if t else None)} | "
                         f"{_verdict(r, 1.0)} |")
    roof = s.get("roofline") or {}
    gemm = roof.get("gemm")
    if gemm:
        lines += ["", f"Dense float32 GEMM ({gemm['n']}x{gemm['n']}, all cores): jax {_fmt(gemm['jax_gflops'])} "
                      f"GFLOP/s, numpy {_fmt(gemm['numpy_gflops'])} GFLOP/s; attainable = "
                      f"{_fmt(gemm['attainable_gflops'])} GFLOP/s.", "",
                  "| update (synthetic 17/6 dims) | seeds | updates/s | MFLOP/update | achieved GFLOP/s | "
                  "fraction of GEMM | target (>= 60%) |", "|---|---|---|---|---|---|---|"]
        for row in roof.get("updates", []):
            f = row["gemm_fraction"]
            lines.append(f"| {row['algo'].upper()} | {row['seeds']} | {_fmt(row['updates_per_s'])} | "
                         f"{_fmt(row['flops_per_update'] / 1e6)} | {_fmt(row['gflops'])} | {f:.0%} | "
                         f"{_verdict(f, 0.6)} |")
    curves = s.get("curves") or {}
    if curves:
        lines += ["", "| learning curve (mean eval return over seeds) | seeds | env steps | ours | rejax |",
                  "|---|---|---|---|---|"]
        for algo, c in curves.items():
            ours, theirs = c.get("ours"), c.get("rejax")
            fmt_curve = lambda r: "n/a" if not r else " / ".join(f"{x:.0f}" for x in r["mean_curve"])
            lines.append(f"| {algo.upper()} (evaluations every {c['eval_every']} steps after {c['learning_starts']} "
                         f"warm-up) | {c['seeds']} | {c['total_steps']} | {fmt_curve(ours)} | {fmt_curve(theirs)} |")
    return "\n".join(lines) + "\n"


def help_table(helps: dict) -> str:
    """`--help` wall time per CLI, slowest first, against the 2 s target."""
    if not helps:
        return ""
    lines = ["| `python -m <cli> --help` (fresh interpreter) | wall (s) | target (< 2 s) |", "|---|---|---|"]
    for m, h in sorted(helps.items(), key=lambda kv: -kv[1]["wall_s"]):
        verdict = ("met" if h["wall_s"] < 2.0 else "MISSED") if h["ok"] else "FAILED (non-zero exit)"
        lines.append(f"| {m} | {h['wall_s']:.2f} | {verdict} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# Table
# ----------------------------------------------------------------------------------------------------
def _fmt(x, unit=""):
    if x is None:
        return "n/a"
    return f"{x:,.1f}{unit}" if x < 100 else f"{x:,.0f}{unit}"


def _verdict(ratio, target):
    if ratio is None:
        return "not measured"
    return "met" if ratio >= target else "MISSED"


def make_table(s: dict) -> str:
    cfg = s["config"]
    sac, td3 = s["sac"], s["td3"]
    ours_sac = sac["ours"]["env_steps_per_s"] if sac.get("ours") else None
    brax_sps = sac["brax"]["steady_env_steps_per_s"] if sac.get("brax") else None
    r_sac = ours_sac / brax_sps if ours_sac and brax_sps else None
    agg = td3["ours_aggregate_updates_per_s"]
    n_max = max(int(k) for k in agg)
    r_vmap = agg[str(n_max)] / agg["1"] if "1" in agg else None
    torch_agg = td3["torch"]["aggregate_updates_per_s"] if td3.get("torch") else None
    r_torch = agg[str(n_max)] / torch_agg if torch_agg else None
    env = f"brax/{cfg['sac_env']} ({cfg['backend']})"
    lines = [
        f"| measurement | ours | peer / reference | ratio | target | verdict |",
        f"|---|---|---|---|---|---|",
        f"| SAC env steps/s, {env}, 1 env, batch 256, 256-256, 1 update/step | {_fmt(ours_sac)} | "
        f"Brax trainer {_fmt(brax_sps)} | {_fmt(r_sac, 'x') if r_sac else 'n/a'} | >= 1x | {_verdict(r_sac, 1.0)} |",
        f"| SAC compile time (s) | {_fmt(sac['ours']['compile_time_s'] if sac.get('ours') else None)} | "
        f"Brax trainer {_fmt(sac['brax']['compile_time_s'] if sac.get('brax') else None)} | | reported apart | |",
        f"| TD3 updates/s, {n_max} vmapped seeds vs 1 seed (aggregate) | {_fmt(agg[str(n_max)])} | "
        f"1 seed {_fmt(agg.get('1'))} | {_fmt(r_vmap, 'x') if r_vmap else 'n/a'} | >= 2x | {_verdict(r_vmap, 2.0)} |",
        f"| TD3 updates/s, {n_max} seeds: ours vmapped vs PyTorch eager CPU, {cfg['torch_seeds']} seeds in sequence "
        f"| {_fmt(agg[str(n_max)])} | torch {_fmt(torch_agg)} | {_fmt(r_torch, 'x') if r_torch else 'n/a'} | >= 3x "
        f"| {_verdict(r_torch, 3.0)} |",
        "",
        "| TD3 vmapped seeds | aggregate updates/s | per seed | vs 1 seed | achieved GFLOP/s | compile (s) |",
        "|---|---|---|---|---|---|",
    ]
    gf = td3.get("flops_per_update")
    gflops = (lambda rate: _fmt(rate * gf / 1e9)) if gf else (lambda rate: "n/a")
    for k in sorted(agg, key=int):
        lines.append(f"| {k} | {_fmt(agg[k])} | {_fmt(agg[k] / int(k))} | {_fmt(agg[k] / agg['1'], 'x')} | "
                     f"{gflops(agg[k])} | {_fmt(td3['ours_compile_s'][k])} |")
    if torch_agg:
        t = td3["torch"]
        lines.append(f"| torch eager, {cfg['torch_seeds']} seeds in sequence ({t['threads']} thread(s)) | "
                     f"{_fmt(torch_agg)} | {_fmt(torch_agg / cfg['torch_seeds'])} | | {gflops(torch_agg)} | |")
    if gf:
        lines.append(f"\nOne TD3 update (batch 100, 400-300, twin critics, actor every 2nd) = {gf / 1e6:,.0f} MFLOP "
                     f"(XLA cost analysis); the same arithmetic is assumed for torch.")
    for name, why in s.get("skipped", {}).items():
        lines.append(f"\n{name} not measured: {why}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------
def main(argv=None):
    from benchmarks.common import parse_scale, progress, scale_arg_parser, write_result, write_text

    p = scale_arg_parser("python -m benchmarks.throughput", __doc__.splitlines()[0],
                         os.path.join("results", "throughput"), choices=tuple(SCALES))
    p.add_argument("--no-brax", action="store_true", help="skip the Brax peer (no peer venv)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer (no peer venv)")
    p.add_argument("--no-rejax", action="store_true", help="skip the rejax peer (no peer venv); ours still runs")
    p.add_argument("--rejax-only", action="store_true",
                   help="only (d) rejax and (e) the roofline, with our TD3 update at 1 and 8 seeds in one round "
                        "(no SAC-vs-Brax, no torch): for a loaded machine")
    a = p.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore", message="Brax System")  # Brax's maintenance notice, once per env
    try:
        scale = parse_scale(a.scale, SCALES)
    except ValueError as e:
        p.error(str(e))
    cfg = dataclasses.replace(config_for(scale), run_brax=not a.no_brax, run_torch=not a.no_torch,
                              run_rejax=not a.no_rejax).validate()
    if a.rejax_only:
        cfg = dataclasses.replace(cfg, run_brax=False, run_torch=False, rounds=1,
                                  td3_seed_counts=tuple(c for c in cfg.td3_seed_counts if c in (1, 8))).validate()
    t_start = time.perf_counter()
    os.makedirs(a.out, exist_ok=True)
    counts = tuple(cfg.td3_seed_counts)
    pend_counts = tuple(cfg.pend_seed_counts)
    phases = (1 + 3 + len(counts) + cfg.rounds * (len(counts) + int(cfg.run_torch)) + 2
              + len(PEND_ALGOS) * (len(pend_counts) + 1) + 1 + 1)
    bar = progress(phases, f"throughput ({scale})", unit="phase")
    skipped, timeline = {}, []

    def phase(name):
        bar.set_postfix_str(name)
        timeline.append((name, round(time.perf_counter() - t_start, 1)))

    # Peer venvs first, in parallel, before anything is timed (their installs would disturb timings).
    phase("peer venvs")
    brax_req = os.path.join(PEERS, "brax_requirements.txt")
    torch_req = os.path.join(PEERS, "torch_requirements.txt")
    procs = {}
    rejax_req = os.path.join(PEERS, "rejax_requirements.txt")
    logs = {name: os.path.join(os.path.abspath(a.out), f"{name}-peer-venv.log") for name in ("brax", "torch", "rejax")}
    if cfg.run_brax:
        procs["brax"] = (start_venv(BRAX_VENV, brax_req, logs["brax"]), BRAX_VENV, brax_req)
    if cfg.run_torch:
        procs["torch"] = (start_venv(TORCH_VENV, torch_req, logs["torch"]), TORCH_VENV, torch_req)
    if cfg.run_rejax:
        procs["rejax"] = (start_venv(REJAX_VENV, rejax_req, logs["rejax"]), REJAX_VENV, rejax_req)
    venv_created = {k: v[0] is not None for k, v in procs.items()}
    for name, (proc, path, req) in procs.items():
        why = finish_venv(proc, path, req, logs[name])
        if why and name == "rejax":  # one line: the venv could not be built (no network, as on CI)
            why = one_line(f"could not build {os.path.relpath(REJAX_VENV, ROOT)} ({_last_log_line(logs[name])}; "
                           f"log: {logs[name]})")
            print(peer_unavailable_line("rejax", why), flush=True)
        if why:
            skipped[f"{name} peer"] = why
    venv_s = time.perf_counter() - t_start
    bar.update(1)

    # (a) SAC: ours (compile, chunks) - Brax - ours (chunks)
    brax = None
    if a.rejax_only:
        sac = {"ours": None, "brax": None, "order": "not run (--rejax-only)"}
        bar.update(3)
    else:
        phase("our SAC: compile")
        ours = OurSAC(cfg)
        bar.update(1)
        phase("our SAC: timed chunks (before peer)")
        ours.time_chunks(cfg.sac_chunks_before)
        bar.update(1)
        phase("Brax SAC trainer (subprocess)")
        if cfg.run_brax and "brax peer" not in skipped:
            try:
                brax = run_brax_peer(cfg, os.path.abspath(a.out))
            except Exception as e:  # report, do not hide our own figures
                skipped["brax peer"] = str(e)
        bar.update(1)
        phase("our SAC: timed chunks (after peer)")
        ours.time_chunks(cfg.sac_chunks_after)
        sac = {"ours": ours.result(), "brax": brax, "order": "ours before, Brax, ours after (back to back)"}
        del ours

    # (b, c) TD3: compile every seed count, then rounds of [ours 1, 2, 4, 8 seeds; torch 8 seeds]
    td3_runs = {}
    for n in counts:
        phase(f"our TD3: compile {n} seed(s)")
        td3_runs[n] = OurTD3Updates(cfg, n)
        bar.update(1)
    phase("TD3 FLOP count")
    flops_per_update = td3_flops_per_update(cfg)
    torch_peer = None
    if cfg.run_torch and "torch peer" not in skipped:
        try:
            torch_peer = TorchPeer(cfg)
        except Exception as e:
            skipped["torch peer"] = str(e)
    for r in range(cfg.rounds):
        for n in counts:
            phase(f"round {r + 1}: our TD3 {n} seed(s)")
            td3_runs[n].time_calls(cfg.td3_calls)
            bar.update(1)
        if cfg.run_torch:
            phase(f"round {r + 1}: torch TD3 {cfg.torch_seeds} seeds")
            if torch_peer is not None:
                try:
                    torch_peer.round(cfg.torch_seeds, cfg.torch_updates, cfg.torch_warmup)
                except Exception as e:
                    skipped["torch peer"] = str(e)
                    torch_peer = None
            bar.update(1)
    torch_res = None
    if torch_peer is not None and torch_peer.samples:
        torch_peer.close()
        torch_res = {"aggregate_updates_per_s": statistics.median(s["aggregate_updates_per_s"] for s in torch_peer.samples),
                     "rounds": torch_peer.samples, "threads": torch_peer.info["threads"],
                     "torch": torch_peer.info["torch"], "numpy": torch_peer.info["numpy"]}
    td3 = {"ours_aggregate_updates_per_s": {str(n): statistics.median(td3_runs[n].samples) for n in counts},
           "ours_samples": {str(n): td3_runs[n].samples for n in counts},
           "ours_compile_s": {str(n): td3_runs[n].compile_s for n in counts},
           "flops_per_update": flops_per_update, "torch": torch_res, "order": f"{cfg.rounds} interleaved rounds: ours {list(counts)} seeds, then torch"}

    # (e) roofline, measured beside the TD3 update rates: GEMM rate, then the SAC update alone
    phase("roofline: dense float32 GEMM (jax, numpy)")
    gemm = gemm_rates(cfg.gemm_n, cfg.gemm_reps)
    bar.update(1)
    phase("roofline: our SAC update alone")
    sac_flops = sac_flops_per_update(cfg)
    sac_upd = {}
    for n in cfg.sac_update_seed_counts:
        sac_upd[n] = OurTD3Updates(cfg, n, "sac")
        sac_upd[n].time_calls(cfg.td3_calls * cfg.rounds)
    bar.update(1)
    peak = gemm["attainable_gflops"]
    update_rows = [{"algo": "td3", "seeds": n, "updates_per_s": agg_n, "flops_per_update": flops_per_update,
                    "gflops": agg_n * flops_per_update / 1e9, "gemm_fraction": agg_n * flops_per_update / 1e9 / peak}
                   for n, agg_n in ((n, td3["ours_aggregate_updates_per_s"][str(n)]) for n in counts)]
    for n, run in sac_upd.items():
        rate = statistics.median(run.samples)
        update_rows.append({"algo": "sac", "seeds": n, "updates_per_s": rate, "flops_per_update": sac_flops,
                            "gflops": rate * sac_flops / 1e9, "gemm_fraction": rate * sac_flops / 1e9 / peak,
                            "samples": run.samples, "compile_s": run.compile_s})
    del sac_upd
    roofline = {"gemm": gemm, "updates": update_rows}

    # (d) ours vs rejax on gymnax/Pendulum-v1: per algorithm and seed count, ours then rejax (interleaved)
    peer, rejax_info = None, None
    if cfg.run_rejax and "rejax peer" not in skipped:
        try:
            peer = RejaxPeer(os.path.join(REJAX_VENV, "bin", "python"))
            rejax_info = peer.info
        except Exception as e:
            skipped["rejax peer"] = one_line(e)
            print(peer_unavailable_line("rejax", skipped["rejax peer"]), flush=True)

    def pair(req):
        nonlocal peer
        errors = []
        out = pendulum_pair(req, peer, cfg.overlap_compile, errors)
        if errors:  # the peer failed: one line, and our side goes on alone
            skipped["rejax peer"] = errors[0]
            print(peer_unavailable_line("rejax", errors[0]), flush=True)
            if peer.proc.poll() is None:
                peer.proc.kill()  # our own child, in an unknown state
            peer = None
        return out

    rejax = {}
    curves = {}
    alone = peer is None  # no peer to compare with: only our compile-time rows (the summary's "compile_s")
    if alone:
        skipped["Pendulum rows beside rejax"] = (
            "no rejax peer in this run, so ours ran alone only at 1 seed for TD3 and SAC (the compile-time "
            "rows); the 8/32-seed rows, PPO and the learning curves run beside the peer: make bench-throughput")
    for algo in PEND_ALGOS:
        rejax[algo] = {"ours": {}, "rejax": {}}
        if alone and algo not in ("td3", "sac"):
            bar.update(len(pend_counts) + 1)
            continue
        for n in pend_counts:
            if alone and n != pend_counts[0]:
                bar.update(1)
                continue
            phase(f"Pendulum {algo}: ours and rejax, {n} seed(s)")
            req = pendulum_request(cfg, algo, n)
            rejax[algo]["ours"][str(n)], theirs = pair(req)
            if theirs is not None:
                rejax[algo]["rejax"][str(n)] = theirs
            bar.update(1)
        if alone:
            bar.update(1)
            continue
        phase(f"Pendulum {algo}: learning curves, {cfg.curve_seeds} seeds")
        req = pendulum_request(cfg, algo, cfg.curve_seeds, curve=True)
        c = {k: req[k] for k in ("seeds", "total_steps", "learning_starts", "eval_every", "eval_episodes")}
        for side, res in zip(("ours", "rejax"), pair(req)):
            if res is not None:
                import numpy as np

                res["mean_curve"] = np.mean(np.asarray(res["eval_returns"], float), axis=0).tolist()
            c[side] = res
        curves[algo] = c
        bar.update(1)
    if peer is not None:
        peer.close()

    # (f) every CLI's --help, in a fresh interpreter each (target: < 2 s on an idle 2-core CPU)
    phase("CLI --help times")
    from benchmarks.common import cli_modules, help_times

    helps = help_times(cli_modules(ROOT), runs=cfg.help_runs, root=ROOT)
    bar.update(1)

    phase("write results")
    summary = {"config": dataclasses.asdict(cfg), "scale": scale, "rejax_only": bool(a.rejax_only), "sac": sac,
               "td3": td3, "skipped": skipped,
               "rejax": rejax, "curves": curves, "roofline": roofline,
               "rejax_peer": rejax_info, "help_s": helps}
    td3_key = "8" if "8" in td3["ours_aggregate_updates_per_s"] else n_max_key(counts)
    sac_rows = [r for r in update_rows if r["algo"] == "sac"]
    sac_row = next((r for r in sac_rows if r["seeds"] == 8), sac_rows[-1] if sac_rows else None)
    summary["ratios"] = summary_ratios(rejax, td3["ours_aggregate_updates_per_s"][td3_key] * flops_per_update / 1e9,
                                       sac_row["gflops"] if sac_row else None, gemm)
    summary["compile_s"] = {f"{algo}_pendulum": rejax[algo]["ours"][str(pend_counts[0])]["compile_s"]
                            for algo in ("td3", "sac")}
    agg = td3["ours_aggregate_updates_per_s"]
    n_max = str(max(counts))
    summary["targets"] = {
        "sac_ours_over_brax": {"target": 1.0, "ratio": (sac["ours"]["env_steps_per_s"] / brax["steady_env_steps_per_s"])
                               if brax else None},
        f"td3_{n_max}_seeds_over_1": {"target": 2.0, "ratio": agg[n_max] / agg["1"]},
        f"td3_ours_{n_max}_over_torch_{cfg.torch_seeds}": {
            "target": 3.0, "ratio": agg[n_max] / torch_res["aggregate_updates_per_s"] if torch_res else None},
    }
    for algo in PEND_ALGOS:
        summary["targets"][f"{algo}_ours_over_rejax_8_seeds"] = {"target": 1.0, "ratio": summary["ratios"][f"{algo}_vs_rejax"]}
    for algo in ("td3", "sac"):
        summary["targets"][f"{algo}_update_gemm_fraction"] = {"target": 0.6,
                                                              "ratio": summary["ratios"][f"{algo}_gemm_fraction"]}
    for t in summary["targets"].values():
        t["met"] = None if t["ratio"] is None else bool(t["ratio"] >= t["target"])
    slowest = max(helps.items(), key=lambda kv: kv[1]["wall_s"]) if helps else None
    summary["targets"]["cli_help_under_2_s"] = {  # a time, not a ratio: met when the slowest is under 2 s
        "target": 2.0, "ratio": None, "slowest": slowest[0] if slowest else None,
        "slowest_s": slowest[1]["wall_s"] if slowest else None,
        "met": None if slowest is None else bool(slowest[1]["wall_s"] < 2.0)}
    table = make_table(summary) + "\n" + rejax_table(summary) + "\n" + help_table(helps)
    summary["table_md"] = table
    wall = time.perf_counter() - t_start
    extra = {"venv_setup_s": venv_s, "venvs_created_this_run": venv_created, "timeline_s": timeline,
             "peer_versions": {"brax": brax["versions"] if brax else None,
                               "torch": {k: torch_res[k] for k in ("torch", "numpy", "threads")} if torch_res else None,
                               "rejax": rejax_info["versions"] if rejax_info else None}}
    write_result(os.path.join(a.out, "summary.json"), summary, config=cfg, wall_time_s=wall, **extra)
    import jax

    peer_dev = brax["device"]["backend"] if brax else "n/a"
    header = (f"# Throughput ({scale} scale)\n\nOurs on jax {jax.__version__} ({jax.default_backend()}), Brax peer on "
              f"jax {brax['versions']['jax'] if brax else 'n/a'} ({peer_dev}), torch peer on the CPU, rejax peer "
              f"{rejax_info['versions']['rejax'] + ' on jax ' + rejax_info['versions']['jax'] + ' (' + rejax_info['backend'] + ')' if rejax_info else 'n/a'}. Load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end; wall time {wall:.0f} s (peer venv "
              f"setup {venv_s:.0f} s). Steady-state rates, compilation reported apart; medians over rounds.\n\n")
    write_text(os.path.join(a.out, "table.md"), header + table)
    bar.update(1)
    bar.close()
    print(header + table)
    return summary


if __name__ == "__main__":
    main()
