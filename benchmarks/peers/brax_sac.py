"""Peer of the throughput benchmark: Brax's own SAC trainer, timed by its own progress callback.

Runs inside ``.venv-brax-peer/`` (jax 0.9.2, brax 0.14.2; see ``brax_requirements.txt``), because
Brax 0.14.2's trainers call ``jax.device_put_replicated``, which the project's jax 0.10 removed.
It does not import metarl. ``benchmarks/throughput.py`` starts it as a subprocess and reads the one
JSON object it prints on its last stdout line.

Timing: ``brax.training.agents.sac.train`` runs ``num_evals - 1`` training epochs of equal length and
reports each epoch's wall time (``training/sps``, measured with ``block_until_ready``, evaluation
excluded) to ``progress_fn``. The first epoch includes the compilation of the pmapped epoch; the
later ones are steady state. Compile time = (prefill + first epoch) wall time - their steps at the
steady-state rate, plus the first evaluation (compilation of the evaluator and one episode).

``--pause``: at every call of ``progress_fn`` (after the first evaluation and after each epoch's evaluation)
the peer prints ``{"progress": record}`` on stdout and waits for a line on stdin before it goes on, so the
parent can run its own side between two epochs while this process sits idle: the two sides alternate epoch
by epoch and each epoch of Brax has a chunk of ours next to it in time (``training/sps`` times the epoch
alone, so the wait is outside it).

    .venv-brax-peer/bin/python benchmarks/peers/brax_sac.py --env inverted_pendulum --epochs 3 \
        --steps-per-epoch 2000 --min-replay 1000
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="inverted_pendulum")
    p.add_argument("--backend", default="positional")
    p.add_argument("--epochs", type=int, default=3, help="training epochs; the first includes compilation")
    p.add_argument("--steps-per-epoch", type=int, default=2000)
    p.add_argument("--min-replay", type=int, default=1000, help="prefill steps before training")
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--grad-updates-per-step", type=int, default=1)
    p.add_argument("--episode-length", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pause", action="store_true",
                   help="after each progress report, print it on stdout and wait for a line on stdin")
    a = p.parse_args(argv)
    if a.epochs < 2:
        p.error(f"--epochs must be >= 2 (the first one includes compilation), got {a.epochs}")

    t_import = time.perf_counter()
    import functools

    import jax
    from brax import envs
    from brax.training.agents.sac import networks as sac_networks
    from brax.training.agents.sac import train as sac_train

    import_s = time.perf_counter() - t_import

    env = envs.get_environment(a.env, backend=a.backend)
    records = []
    t_last = [None]
    paused_s = [0.0]  # time spent waiting on the parent (--pause), left out of train_call_s

    def progress(step, metrics):
        now = time.perf_counter()
        rec = {"env_steps": int(step), "wall_since_last_s": None if t_last[0] is None else now - t_last[0]}
        for k in ("training/sps", "training/walltime", "eval/walltime", "eval/episode_reward"):
            if k in metrics:
                rec[k] = float(metrics[k])
        records.append(rec)
        t_last[0] = now
        print(f"[brax peer] step {step} {rec}", file=sys.stderr, flush=True)
        if a.pause:
            print(json.dumps({"progress": rec}), flush=True)
            if not sys.stdin.readline():
                raise SystemExit("brax peer: stdin closed while paused")
            t_last[0] = time.perf_counter()  # wall_since_last_s: this process's own time, not the wait
            paused_s[0] += t_last[0] - now

    # The squashed Gaussian with a state-dependent std, as ours (Brax's default learns one std).
    network_factory = functools.partial(sac_networks.make_sac_networks, hidden_layer_sizes=tuple(a.hidden),
                                        state_dependent_std=True)
    num_timesteps = a.min_replay + a.epochs * a.steps_per_epoch * a.num_envs
    t0 = time.perf_counter()
    sac_train.train(
        environment=env, num_timesteps=num_timesteps, episode_length=a.episode_length, num_envs=a.num_envs,
        num_eval_envs=1, learning_rate=a.learning_rate, discounting=0.99, seed=a.seed, batch_size=a.batch_size,
        num_evals=a.epochs + 1, normalize_observations=False, reward_scaling=1.0, tau=0.005,
        min_replay_size=a.min_replay, max_replay_size=num_timesteps, grad_updates_per_step=a.grad_updates_per_step,
        network_factory=network_factory, progress_fn=progress)
    total_s = time.perf_counter() - t0 - paused_s[0]

    train_recs = [r for r in records if "training/sps" in r]
    if len(train_recs) != a.epochs:
        raise RuntimeError(f"expected {a.epochs} training epochs in the progress callback, got {len(train_recs)}")
    walltimes = [r["training/walltime"] for r in train_recs]
    # training/walltime is cumulative and starts with the prefill; per-epoch times are its increments.
    epoch_s = [walltimes[0] - 0.0] + [w1 - w0 for w0, w1 in zip(walltimes, walltimes[1:])]
    first_epoch_s = a.steps_per_epoch * a.num_envs / train_recs[0]["training/sps"]
    steady = train_recs[1:]
    steady_steps = len(steady) * a.steps_per_epoch * a.num_envs
    steady_s = sum(a.steps_per_epoch * a.num_envs / r["training/sps"] for r in steady)
    sps = steady_steps / steady_s
    # training/walltime starts before the prefill, so its first value covers prefill + first epoch.
    train_compile_s = max(walltimes[0] - (a.min_replay + a.steps_per_epoch * a.num_envs) / sps, 0.0)
    first_eval_s = records[0].get("eval/walltime", 0.0) if "training/sps" not in records[0] else 0.0
    out = {
        "peer": "brax.training.agents.sac.train",
        "env": a.env, "backend": a.backend, "num_envs": a.num_envs, "batch_size": a.batch_size,
        "hidden": a.hidden, "grad_updates_per_step": a.grad_updates_per_step,
        "epochs": a.epochs, "steps_per_epoch": a.steps_per_epoch, "min_replay": a.min_replay,
        "steady_env_steps_per_s": sps,
        "epoch_sps": [r["training/sps"] for r in train_recs],
        "epoch_cumulative_walltime_s": walltimes,
        "epoch_s_incl_prefill_first": epoch_s,
        # Compile time, comparable with ours (init with warm-up + chunk with its evaluation): the
        # prefill and first epoch's wall time minus their steps at the steady rate, plus the first
        # evaluation (its compilation and one episode).
        "compile_time_s": train_compile_s + first_eval_s,
        "train_compile_s": train_compile_s, "first_eval_s": first_eval_s,
        "epoch_compile_s": max(first_epoch_s - a.steps_per_epoch * a.num_envs / sps, 0.0),
        "import_s": import_s, "train_call_s": total_s, "paused_s": paused_s[0],
        "versions": _versions(),
        "device": {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]},
        "python": platform.python_version(),
    }
    print(json.dumps(out))


def _versions():
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("jax", "jaxlib", "brax", "flax", "optax", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


if __name__ == "__main__":
    main()
