"""MetaGenRL benchmark: Table 2 of Kirsch et al. (2020) in the paper's layout, ours beside the paper's.

    python -m benchmarks.metagenrl --scale quick    # part of `make bench` (a few minutes on a 2-core CPU)
    python -m benchmarks.metagenrl --scale medium [--resume]   # <= 1 h on an idle 2-core CPU
    python -m benchmarks.metagenrl --scale paper    # the paper's budget: meant for an accelerator

Meta-trains one objective per training set (Table 2's rows), saving it at several stages, then
meta-tests it with fresh agents on every test environment together with the fixed-objective baselines
(TD3; quick and paper also off-policy REINFORCE+GAE) on the same seeds, evaluates the uniformly random
policy at the same evaluation points, and (quick, paper) trains the on-policy baselines (PPO,
REINFORCE+GAE) on the same step budget. Writes into results/metagenrl/ (quick) or
results/metagenrl_<scale>/: table.md, table.csv, results.json, summary.json (the seen / unseen claims:
IQM [95% CI] of learned, TD3 and random, the fraction of TD3's improvement over random, verdicts, the
meta-gradient norms), final_returns.csv (per seed), aggregate_seen.png, aggregate_unseen.png,
meta_test_curves.png, meta_train_curves.png, and run.json (settings, status, sessions).

Resumable: every finished stage (meta-training per training set, meta-test, random policy, on-policy
rows) is kept in stages/<stage>.json; meta-training and meta-test checkpoint their programs after
every evaluation (objectives/<set>/checkpoint/, checkpoints/meta_test/). Ctrl-C finishes the
running segment and its checkpoint and prints the command that continues the run (--resume), which
is refused in one line if the settings (scale, package versions) differ.

    python -m benchmarks.metagenrl --scale quick --ablations   # Section 5.2: ablations.md, .csv, .json, *.png

Modules: tables (the paper's Table 2, ours beside it), stages (run folder, resume, claims), run (the
benchmark's stages), ablations (Section 5.2), command (the command line); every name is re-exported here.
"""
from benchmarks.metagenrl.tables import *  # noqa: F401,F403
from benchmarks.metagenrl.stages import *  # noqa: F401,F403
from benchmarks.metagenrl.run import *  # noqa: F401,F403
from benchmarks.metagenrl.ablations import *  # noqa: F401,F403
from benchmarks.metagenrl.command import *  # noqa: F401,F403
