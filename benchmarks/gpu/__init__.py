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

Modules: plan (parts, sizes, cost model, plan), programs (the compiled programs), kit (the run), parts
(each part's body, projection), report (summary.md, figures), command (the command line); every name is
re-exported here, so ``from benchmarks import gpu; gpu.PARTS`` works.
"""
from benchmarks.gpu.plan import *  # noqa: F401,F403  (first: plan.T_START, the budget's start)
from benchmarks.gpu.programs import *  # noqa: F401,F403
from benchmarks.gpu.parts import *  # noqa: F401,F403
from benchmarks.gpu.kit import *  # noqa: F401,F403
from benchmarks.gpu.report import *  # noqa: F401,F403
from benchmarks.gpu.command import *  # noqa: F401,F403
