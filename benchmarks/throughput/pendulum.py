"""(d) Ours against rejax on gymnax/Pendulum-v1: whole runs (warm-up, training, evaluations) at 1, 8 and 32
vmapped seeds, each side compiled apart from its timed call."""
from __future__ import annotations

import time

from benchmarks.peers.drivers import one_line
from benchmarks.throughput.config import ThroughputConfig
from metarl.runs import vmap_runs


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
    from metarl.agents.onpolicy import PRESETS, OnPolicyConfig

    req = {"algo": algo, "seeds": int(seeds), "seed": 0, "eval_episodes": cfg.pend_eval_episodes,
           "eval_mean": True}  # rejax evaluates with the policy's mean action, as ours
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
    """Our side of ``req``: the whole run as one program, ``jit(vmap(train))`` over the seeds (one seed: the run
    alone, ``vmap_runs``), compiled ahead of time (no persistent compilation cache in this process). Returns
    (program, keys, seconds).
    TD3/SAC: ``metarl.train.make_train`` (what ``Runner`` runs chunk by chunk); PPO:
    ``metarl.agents.onpolicy`` (init, then its evaluation segments in a scan)."""
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
        from metarl.agents.onpolicy import make_config, make_onpolicy

        pc = make_config("ppo", total_steps=req["total_steps"], eval_every=req["eval_every"],
                         eval_episodes=req["eval_episodes"], hidden=tuple(req["hidden"]))
        init, run_segment, _ = make_onpolicy(pc, envs.make("gymnax/Pendulum-v1"))

        def program(k):
            state = init(k)
            _, m = jax.lax.scan(lambda s, _: run_segment(s), state, None, length=pc.num_evals)
            return m["eval_return"]
    t = time.perf_counter()
    fn = jax.jit(vmap_runs(program)).lower(keys).compile()
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


def pendulum_pair(req: dict, peer, overlap_compile: bool = False, errors: list | None = None, repeats: int = 1):
    """Ours, then rejax (``peer``, may be None), on ``req``; each compiled apart from its timed calls.
    Returns (ours, theirs); theirs is None without a peer or when the peer failed (its error, one line,
    is appended to ``errors``). With a peer, ``repeats`` timed calls per side, ours and rejax in turn (both
    see the same load); a side's ``env_steps_per_s`` is then the median of its calls (every call in
    ``env_steps_per_s_samples``) and ``ratio_samples`` on our side holds the paired ratios ours / rejax.
    ``overlap_compile``: rejax compiles in its process while ours compiles here (halves the wall time of a
    compile-bound run; both compile times then include the other's contention); the timed calls never
    overlap."""
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
    ours, theirs = [], []
    for _ in range(max(1, int(repeats)) if peer is not None else 1):
        ours.append(our_pendulum_run(req, compiled))
        t = peer_call(lambda: peer.run(req))
        if t is None:
            break
        theirs.append(t)
    del compiled
    if failed and errors is not None:
        errors.extend(failed)
    if len(ours) == 1:  # no peer, one call each, or the peer failed on its first call (theirs empty)
        return ours[0], (theirs[0] if theirs else None)
    out = _median_of(ours)
    if failed:
        return out, None
    out["ratio_samples"] = [a["env_steps_per_s"] / b["env_steps_per_s"] for a, b in zip(ours, theirs)]
    return out, _median_of(theirs)


def _median_of(runs: list) -> dict:
    """The first call's record with ``env_steps_per_s`` and ``run_s`` the medians of every call's."""
    import statistics

    out = dict(runs[0])
    out["env_steps_per_s_samples"] = [r["env_steps_per_s"] for r in runs]
    out["env_steps_per_s"] = statistics.median(out["env_steps_per_s_samples"])
    out["run_s"] = statistics.median(r["run_s"] for r in runs)
    return out
