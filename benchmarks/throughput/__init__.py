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
(c) Our TD3 with 1 and 8 vmapped seeds (paper scale: 1, 2, 4 and 8): aggregate updates per second.
(d) Ours against rejax (0.1.3, "vectorizable RL algorithms in pure JAX"), TD3, SAC and PPO on gymnax
    Pendulum-v1 with 1, 8 and 32 vmapped seeds: env steps/s of a whole run (warm-up, training, evaluations)
    as one ``jit(vmap(train))`` program per side (at one seed, both sides ``jit(train)`` of the run alone:
    ``metarl.runs.vmap_runs``), compiled ahead of time and timed apart; per algorithm and
    seed count ours runs, then rejax (interleaved). Both sides get the same settings, read from our configs
    (:func:`pendulum_request`): networks, batch, 1 update per env step (TD3's actor every 2nd), warm-up,
    evaluation cadence and episodes; a row's verdict comes from the sign-test interval of its paired
    calls' median ratio. Then the learning curves of both at equal steps and seeds, one call each (from 5
    seeds their final returns are compared with intervals; ``curves.png``). rejax runs
    in ``benchmarks/peers/.venv-rejax/`` (``benchmarks/peers/rejax_requirements.txt``), created on first
    use like the other peers; where it cannot be built (no network) one line says so and the rest is
    written.
(e) Roofline: the machine's attainable dense float32 GEMM rate (jax and numpy, all cores) and the TD3 and
    SAC updates' achieved GFLOP/s (XLA cost analysis FLOPs x updates/s) as a fraction of it.

The TD3 sides run interleaved in ``rounds`` (ours 1 and 8 seeds, then torch, repeated); figures are
medians over rounds, every sample is in summary.json. Results: ``results/throughput/summary.json`` (with
"ratios": ours / rejax env steps/s at 8 seeds per algorithm (the median of the paired calls' ratios) and
the updates' GEMM fractions, and "compile_s": our TD3 and SAC Pendulum programs at 1 seed, no persistent
cache) and
``results/throughput/table.md``. The targets (ours >= Brax; 8 seeds >= 2x one; ours >= 3x torch)
are figures to report, not assertions: misses are printed as misses.

Modules: config (settings per scale), ours (our SAC and TD3 sides), pendulum (ours against rejax), tables
(roofline, ratios, tables), command (the command line); every name is re-exported here.
"""
from benchmarks.throughput.config import *  # noqa: F401,F403
from benchmarks.throughput.ours import *  # noqa: F401,F403
from benchmarks.throughput.pendulum import *  # noqa: F401,F403
from benchmarks.throughput.tables import *  # noqa: F401,F403
from benchmarks.throughput.command import *  # noqa: F401,F403
