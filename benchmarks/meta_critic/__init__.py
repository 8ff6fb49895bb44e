"""Online Meta-Critic benchmark: the paper's Tables 1, 2 and 3 with our numbers beside theirs.

    python -m benchmarks.meta_critic --scale quick   # minutes on a 2-core CPU (make bench-meta-critic)
    python -m benchmarks.meta_critic --scale medium --tables 1 [--resume]   # ~1 h on a 2-core CPU
    python -m benchmarks.meta_critic --scale paper   # the paper's budget, for an accelerator

Writes into results/meta_critic/ (results/meta_critic_<scale>/ for the other scales): tables.md (the
three tables, ours / paper), results.json (every number, the config, package versions, device, wall
time), summary.json (Table 1 rows: IQM [95% CI] of the final return per variant, the paper's max
average return, P(MC > vanilla) with its interval and the verdict from it), overhead.json,
learning-curve PNGs per environment and algorithm, table1_aggregate.png, and the tabular-MDP figures
(Fig. 6). Every finished job is kept in runs/<job>/job.json and each program checkpoints as it goes, so
an interrupted run continues with ``--resume``.

Modules: config (settings, the paper's tables, the plan of jobs), tables (our tables beside the paper's,
figures), run (jobs, resume, outputs), command (the command line); every name is re-exported here.
"""
from benchmarks.meta_critic.config import *  # noqa: F401,F403
from benchmarks.meta_critic.tables import *  # noqa: F401,F403
from benchmarks.meta_critic.run import *  # noqa: F401,F403
from benchmarks.meta_critic.command import *  # noqa: F401,F403
