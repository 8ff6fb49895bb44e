"""Each paper's command line killed with SIGKILL right after its first checkpoint, then run again with
--resume: the resumed run's results equal those of a run straight through, bit for bit.

One harness for every paper: a fresh interpreter wraps the function that writes the experiment's checkpoint
(the off-policy Runner's orbax swap, the segment loops' checkpoint folders) so that the process kills
itself right after the first write, then calls the experiment's ``main`` with a tiny configuration. The
same script without the kill gives the uninterrupted run; the same again with ``--resume`` continues the
killed one. Besides the equal results: the killed run left only complete files (no temporary names, every
JSON reads), and every CLI leaves the same run record (config.json and meta.json: status, versions, device,
each session with its compile time apart from its run time). The Discounting Chain (Bonnet et al.) has its own such test in tests/test_driver.py and the
model-based critic's toy in tests/test_model_based_critic.py.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HARNESS = r"""
import importlib, os, signal, sys
out, kill_after, where, setup = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
mod_name, _, fn_name = where.rpartition(".")
mod = importlib.import_module(mod_name)
real, writes = getattr(mod, fn_name), []

def write_then_die(*a, **k):
    real(*a, **k)
    writes.append(1)
    if len(writes) == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)

setattr(mod, fn_name, write_then_die)
extra = sys.argv[5:]
exec(setup)
print(f"checkpoints written: {len(writes)}", file=sys.stderr)
"""

# Online Meta-Critic: TD3 and TD3-MC on Pendulum, 2 seeds, 2 chunks of 10 evaluations (one Runner per variant).
META_CRITIC = r"""
from experiments import meta_critic as ex
ex.main(["--env", "gymnax/Pendulum-v1", "--algo", "td3", "--variants", "vanilla", "mc", "--seeds", "2",
         "--steps", "500", "--learning-starts", "100", "--eval-every", "20", "--eval-episodes", "1",
         "--max-episode-steps", "50", "--hidden", "16", "16", "--no-progress", "--out", out] + extra)
"""

# MetaGenRL: a population of 4 agents on two environments meta-trains a tiny objective, 5 evaluations.
METAGENRL = r"""
import dataclasses
from experiments import metagenrl as ex
from metarl.meta import metagenrl as mg
tiny = mg.ObjectiveConfig(action_layers=(8, 8), scalar_layers=(8, 4), lstm_units=8, out_layers=(8,))
c = mg.MetaGenRLConfig(total_steps=100, learning_starts=40, anneal_steps=10, eval_every=20, eval_episodes=1,
                       buffer_size=60, batch_windows=4, window=5, hidden=(8,), max_episode_steps=10, objective=tiny,
                       collapse_patience=4)
scale = ex.Scale("tiny", c, c, total_agents=4, test_seeds=2, stages=2,
                 envs={"Pendulum": "gymnax/Pendulum-v1", "Reacher": "gymnax/Reacher-misc"},
                 train_sets=(("Pendulum", "Reacher"),))
ex.get_scale = lambda name: scale
ex.main(["meta-train", "--scale", "quick", "--no-progress", "--out", out] + extra)
"""

# PPO and PPO-LIRPG (the on-policy baselines), 2 seeds, 4 evaluations, one vmapped program.
LIRPG = r"""
from experiments import lirpg as ex
ex.main(["--scale", "quick", "--env", "gymnax/Pendulum-v1", "--seeds", "2", "--steps", "256", "--num-envs", "2",
         "--rollout", "16", "--eval-every", "64", "--eval-episodes", "1", "--max-episode-steps", "20",
         "--no-progress", "--out", out] + extra)
"""


# Model-based critic (Bechtle et al.): the point mass of Fig. 1, both critic inputs (each a checkpointed unit:
# 2 seeds meta-train L_critic and fit Q_sup, then the landscapes and Algorithm 3's descents).
POINTMASS = r"""
from experiments import model_based_critic_pointmass as ex
tiny = ex.PointMassExperiment(seeds=2, mb_iterations=20, q_iterations=20, grid=5, quiver=3, starts=2, descend_steps=5)
ex.PointMassExperiment._at = staticmethod(lambda scale: tiny)
ex.main(["--scale", "quick", "--no-progress", "--out", out] + extra)
"""
# ... and the 2-DoF reacher through differentiable Brax: ours, DDPG and Meta Critic meta-trained in chunks of 2
# (6 checkpoints), then the meta-test over a 2x2 goal grid and one link mass and length. The 7-DoF arm's command
# line runs the same meta-training and meta-test code (metarl.meta.model_based_critic_outputs) on another arm.
REACHER = r"""
from experiments import model_based_critic_reacher as ex
ex.main(["--seeds", "2", "--iterations", "4", "--ddpg-iterations", "4", "--mc-iterations", "4", "--chunk", "2",
         "--horizon", "5", "--n-policy-inits", "1", "--test-inits", "1", "--ddpg-test-steps", "2", "--grid", "2",
         "--masses", "1.0", "--lengths", "1.0", "--no-progress", "--out", out] + extra)
"""

# Outer value (Bonnet et al.): the Chain is killed in tests/test_driver.py; here Snake 6x6, its five agents as one
# vmapped program, 2 chunks of 2 updates.
SNAKE = r"""
from experiments import outer_value_snake as ex
ex.main(["--updates", "4", "--updates-per-log", "1", "--logs-per-chunk", "2", "--seeds", "2", "--num-envs", "2",
         "--horizon", "3", "--no-progress", "--out", out] + extra)
"""


# MetaGenRL's baselines on its protocol (Pendulum): EPG's ES over a learned loss and RL^2's recurrent PPO, each
# 2 seeds and 2 segments (metarl.driver.segments), every setting given on the command line.
EPG = r"""
from experiments import epg as ex
ex.main(["--scale", "quick", "--seeds", "2", "--test-agents", "1", "--generations", "2", "--eval-every", "1",
         "--population", "2", "--inner-steps", "200", "--window", "50", "--num-envs", "2", "--inner-epochs", "1",
         "--eval-episodes", "1", "--hidden", "8", "--max-episode-steps", "50", "--train", "Pendulum", "--test",
         "Pendulum", "--no-progress", "--out", out] + extra)
"""
RL2 = r"""
from experiments import rl2 as ex
ex.main(["--scale", "quick", "--seeds", "2", "--updates", "2", "--eval-every", "1", "--lanes", "2", "--eval-lanes", "2",
         "--hidden", "8", "--epochs", "1", "--minibatches", "1", "--train", "Pendulum", "--test", "Pendulum",
         "--no-progress", "--out", out] + extra)
"""


def _json(path):
    with open(path) as f:
        return json.load(f)


def _metrics(d, prefix=""):
    """metrics.csv and metrics.json: every run's metrics at every evaluation point (each experiment's, one layout:
    metarl.driver.write_metrics; the JSON at full precision)."""
    with open(os.path.join(d, f"{prefix}metrics.csv")) as f:
        text = f.read()
    assert text.count("\n") > 1, text
    data = _json(os.path.join(d, f"{prefix}metrics.json"))
    assert data["blocks"] and all(b["runs"] and b["metrics"] for b in data["blocks"]), data
    return {"csv": text, "json": data}


def _meta_critic_results(d):
    """The table and every variant's metrics (eval returns, losses) per evaluation."""
    from experiments.meta_critic import RUN_DIRS

    summary = _json(os.path.join(d, "summary.json"))
    runs = {r: _metrics(os.path.join(d, r)) for r in RUN_DIRS if os.path.isdir(os.path.join(d, r))}
    return {"table": summary["table"], "runs": runs}


def _metagenrl_results(d):
    """The metrics of every agent per evaluation and the final objective's arrays."""
    rec = _json(os.path.join(d, "meta_train.json"))
    return {"metrics": rec["metrics"], "meta_grad_norm": rec["meta_grad_norm"], "alpha": rec["alpha_sha256"],
            "files": _metrics(d)}


def _lirpg_results(d):
    rec = _json(os.path.join(d, "result.json"))
    return {"metrics": _metrics(d), **{v: {k: rec[v][k] for k in ("eval_return", "train_return", "meta_loss")}
                               for v in rec["variants"]}}


def _baseline_results(name):
    def results(d):
        rec = _json(os.path.join(d, f"{name}.json"))
        return {"history": rec["history"], "results": rec["results"], "metrics": _metrics(d)}
    return results


def _pointmass_results(d):
    rec = _json(os.path.join(d, "pointmass_summary.json"))
    return {"variants": rec["variants"], "final_losses": rec["final_losses"], "claims": rec["claims"]}


def _reacher_results(d):
    """The summary's numbers (not its wall times), and the meta-training curves of the three methods."""
    rec = _json(os.path.join(d, "reacher_summary.json"))
    return {k: rec[k] for k in ("final_train_error", "final_train_error_seeds", "meta_test_mean_error", "claims",
                                "grids")} | {"metrics": _metrics(d, "reacher_")}


def _snake_results(d):
    """The summary (not the wall time), every agent's curves and the metrics per run and log point."""
    rec = _json(os.path.join(d, "result.json"))
    with open(os.path.join(d, "curves.csv")) as f:
        curves = f.read()
    return {"summary": rec["summary"], "curves": curves, "metrics": _metrics(d)}


CASES = {  # setup, the function that writes a checkpoint, the results, the run record's file prefix
    "meta_critic": (META_CRITIC, "metarl.train.runner.save_checkpoint", _meta_critic_results, ""),
    "metagenrl": (METAGENRL, "metarl.driver.checkpoints.save_checkpoint", _metagenrl_results, ""),
    "lirpg": (LIRPG, "metarl.driver.checkpoints.save_checkpoint", _lirpg_results, ""),
    "model_based_critic": (POINTMASS, "metarl.driver.checkpoints.save_checkpoint", _pointmass_results, "pointmass_"),
    "reacher": (REACHER, "metarl.driver.checkpoints.save_checkpoint", _reacher_results, "reacher_"),
    "snake": (SNAKE, "metarl.driver.core.save_checkpoint", _snake_results, ""),
    "epg": (EPG, "metarl.driver.checkpoints.save_checkpoint", _baseline_results("epg"), ""),
    "rl2": (RL2, "metarl.driver.checkpoints.save_checkpoint", _baseline_results("rl2"), ""),
}


def _record(d, prefix):
    """The run record every experiment CLI writes (metarl.driver.RunRecord): its config and meta.json."""
    config, meta = (_json(os.path.join(d, f"{prefix}{f}")) for f in ("config.json", "meta.json"))
    assert {"versions", "device", "command", "sessions"} <= set(meta), sorted(meta)
    for k in ("wall_time_s", "compile_time_s", "run_time_s"):
        assert meta[k] > 0, (k, meta)
    assert meta["compile_time_s"] < meta["wall_time_s"], meta
    return config, meta


def _run(setup, where, out, kill_after, *extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", HARNESS, str(out), str(kill_after), where, setup, *extra], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("paper", list(CASES))
def test_killed_after_first_checkpoint_resumes_bit_for_bit(paper, tmp_path):
    setup, where, results, prefix = CASES[paper]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    r = _run(setup, where, whole, 0)
    assert r.returncode == 0, r.stderr[-3000:]
    written = int(r.stderr.rsplit("checkpoints written: ", 1)[1].split()[0])
    assert written >= 2, f"{paper}: the tiny run writes {written} checkpoint(s); the test needs a later one"
    r = _run(setup, where, killed, 1)
    assert r.returncode == -9, r.stderr[-3000:]
    files = [os.path.join(p, f) for p, _, fs in os.walk(killed) for f in fs]
    assert files and not [f for f in files if ".tmp" in f or f.endswith(".partial")], files
    for f in files:
        if f.endswith(".json"):
            _json(f)  # every JSON file reads: none was left half-written
    r = _run(setup, where, killed, 0, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    # it continued from the checkpoint (a rerun from the start would give the same numbers, and write them all)
    assert f"checkpoints written: {written - 1}" in r.stderr, (written, r.stderr[-500:])
    a, b = results(str(whole)), results(str(killed))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), paper
    # the run records: the same config; the killed session stays "running", the resumed one finished
    (config_a, meta_a), (config_b, meta_b) = _record(str(whole), prefix), _record(str(killed), prefix)
    assert config_a == config_b
    assert meta_a["status"] == "finished" and [s["status"] for s in meta_a["sessions"]] == ["finished"]
    assert meta_b["status"] == "finished" and [(s["status"], s["resume"]) for s in meta_b["sessions"]] == \
        [("running", False), ("finished", True)], meta_b["sessions"]
