"""Our sides of (a) SAC against Brax's trainer and (b, c) the TD3 update against eager PyTorch and over
vmapped seeds, with the updates' FLOP counts."""
from __future__ import annotations

import dataclasses
import time

from benchmarks.throughput.config import ThroughputConfig
from metarl.runs import vmap_runs


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

        # before and after the peer, and one after the peer's first evaluation and after each of its epochs
        n_chunks = cfg.sac_chunks_before + cfg.sac_chunks_after + (cfg.brax_epochs + 1 if cfg.run_brax else 0)
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
        init_c = jax.jit(vmap_runs(init)).lower(self.keys, self.hp).compile()
        self.compile_s["init"] = time.perf_counter() - t
        self.run = _block(init_c(self.keys, self.hp))
        t = time.perf_counter()
        self.chunk = jax.jit(vmap_runs(run_chunk), donate_argnums=0).lower(self.run).compile()
        self.compile_s["chunk"] = time.perf_counter() - t
        self.evaluate = None
        if cfg.sac_time_eval:
            t = time.perf_counter()
            self.evaluate = jax.jit(vmap_runs(evaluate)).lower(self.run.agent, self.keys).compile()
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

    def last_chunk_rate(self) -> float:
        """Env steps/s of the last timed chunk, its evaluation episode taken out where it was timed apart (as
        :meth:`result` does for all of them)."""
        return self.steps_per_chunk / max(self.chunk_s[-1] - (self.eval_s[-1] if self.eval_s else 0.0), 1e-9)

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


class PairedChunks:
    """The ``between`` of ``benchmarks.peers.drivers.run_brax_peer``: at each progress report of the waiting
    Brax peer, one timed chunk of ``ours`` (an :class:`OurSAC`); each Brax epoch after the first (the first holds
    its compilation) is paired with that chunk, the one right after it, in ``pairs``."""

    def __init__(self, ours):
        self.ours, self.epochs, self.pairs = ours, 0, []

    def __call__(self, rec: dict):
        self.ours.time_chunks(1)
        if "training/sps" not in rec:  # the report after Brax's first evaluation, before any epoch
            return
        self.epochs += 1
        if self.epochs > 1:
            ours_sps = self.ours.last_chunk_rate()
            self.pairs.append({"brax_epoch": self.epochs, "brax_env_steps_per_s": rec["training/sps"],
                               "ours_env_steps_per_s": ours_sps, "ratio": ours_sps / rec["training/sps"]})


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


def one_update_args(cfg: ThroughputConfig, algo: str = "td3"):
    """(agent, state, batch, key): one seed's agent on the synthetic HalfCheetah-sized spec and a zero batch,
    the arguments of its update whose FLOPs are counted."""
    import jax
    import jax.numpy as jnp

    _, agent = _td3_spec_agent(cfg, algo)
    state = agent.init(jax.random.PRNGKey(0), {})
    b, o, a = agent.config.batch_size, cfg.td3_obs_dim, cfg.td3_act_dim
    batch = dict(obs=jnp.zeros((b, o)), action=jnp.zeros((b, a)), reward=jnp.zeros(b), next_obs=jnp.zeros((b, o)),
                 terminated=jnp.zeros(b, bool), done=jnp.zeros(b, bool))
    return agent, state, batch, jax.random.PRNGKey(1)


def td3_flops_per_update(cfg: ThroughputConfig) -> float:
    """XLA's FLOP count of one TD3 update of one seed: the critic step plus half an actor step
    (policy delay 2). Turns updates/s into achieved GFLOP/s, which shows whether the update is
    compute-bound (then vmapping seeds cannot raise the aggregate rate on a CPU)."""
    import jax

    from metarl.compile_clock import xla_flops

    agent, state, batch, key = one_update_args(cfg)

    def flops(fn):  # the lowered (unoptimised) program's count: within 0.1% of the compiled one, no compile
        return xla_flops(jax.jit(fn).lower(state, batch, key))

    return flops(agent.critic_step) + flops(agent.actor_step) / agent.config.policy_delay


class OurTD3Updates:
    """``n`` seeds of TD3 (or SAC: ``algo="sac"``) (each with its own agent and replay buffer of random transitions) as one
    compiled program that runs ``updates_per_call`` x (sample a batch, one update) in a lax.scan; TD3's actor and
    targets move at every 2nd update, laid out statically as in training."""

    def __init__(self, cfg: ThroughputConfig, n: int, algo: str = "td3"):
        import jax
        import jax.numpy as jnp

        from metarl import buffers
        from metarl.agents.base import scheduled_update

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

        # TD3's policy delay laid out statically, as the training loop does: under vmap, ``agent.update``'s
        # lax.cond would become a select that runs the actor step at every update, which is neither the
        # update counted (critic + half an actor step) nor the one training runs.
        period, update_at = scheduled_update(agent)  # td3_updates_per_call is a multiple of it (validate)

        def updates(carry):
            state, buf, key = carry

            def body(state, k):
                for j, kj in enumerate(jax.random.split(k, period)):
                    k_s, k_u = jax.random.split(kj)
                    state, m = update_at(state, buffers.sample(buf, k_s, c.batch_size), k_u, j)
                return state, m["critic_loss"]

            key, sub = jax.random.split(key)
            state, loss = jax.lax.scan(body, state, jax.random.split(sub, k_upd // period))
            return (state, buf, key), loss[-1]

        keys = jax.random.split(jax.random.PRNGKey(0), n)
        self.n, self.updates_per_call, self.period = n, k_upd, period  # period: updates per loop iteration
        self.carry = _block(jax.jit(vmap_runs(init))(keys))
        t = time.perf_counter()
        self.fn = jax.jit(vmap_runs(updates), donate_argnums=0).lower(self.carry).compile()
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
