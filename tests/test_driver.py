"""metarl.driver: resume == the uninterrupted run bit for bit (a toy program, and the Discounting Chain
killed with SIGKILL after its first chunk), a changed setting refused in one line, NaN in the state
detected and named, the run-directory policy.

Cost: the toy program compiles in well under a second; the Chain (2 seeds, 2 chunks of 20 updates)
compiles once in this process and is then read from the persistent compilation cache by the killed
subprocess and the resume."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl import driver as D

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = {"name": "toy", "decay": 0.9}


def toy(nan_at: int = -1):
    """A noisy AR(1) process; its key lives in the state. ``nan_at``: the chunk that writes a NaN."""

    def init(key):
        k, k_x = jax.random.split(key)
        return {"x": jax.random.normal(k_x, (3,)), "key": k, "t": jnp.zeros((), jnp.int32)}

    @jax.jit
    def chunk(s):
        key, k = jax.random.split(s["key"])
        x = 0.9 * s["x"] + jax.random.normal(k, (3,))
        x = jnp.where(s["t"] == nan_at, x.at[1].set(jnp.nan), x)
        return {"x": x, "key": key, "t": s["t"] + 1}, {"mean": jnp.mean(x), "x": x, "t": s["t"]}

    return init, chunk


def run_toy(out, resume=False, stop_after=None, config=CONFIG, nan_at=-1, **kw):
    init, chunk = toy(nan_at)
    return D.Driver(init, chunk, jax.random.PRNGKey(0), 4, None if out is None else str(out), config,
                    progress=False, **kw).run(resume, stop_after)


def snapshot(d) -> dict:
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                out[os.path.relpath(os.path.join(root, f), d)] = fh.read()
    return out


def assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b) and len(la) == len(lb)
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy") / "run"
    state, metrics = run_toy(d)
    return d, state, metrics


def test_toy_run_records(toy_run):
    d, _, metrics = toy_run
    assert sorted(os.listdir(d)) == ["checkpoint", "config.json", "meta.json", "metrics.json"]
    assert metrics["x"].shape == (4, 3) and metrics["mean"].dtype == np.float32
    np.testing.assert_array_equal(metrics["t"], [0, 1, 2, 3])
    assert json.loads((d / "config.json").read_text()) == CONFIG
    meta = json.loads((d / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["chunks_done"] == 4 and meta["num_chunks"] == 4
    assert meta["versions"]["jax"] == jax.__version__
    # one session; its compile time (init and chunk) apart from its run time, and the sums
    (session,) = meta["sessions"]
    assert session["status"] == "finished" and not session["resume"] and session["from_chunk"] == 0
    assert set(session["compile_time_by_program"]) == {"init", "chunk"}
    assert session["compile_time_s"] == sum(session["compile_time_by_program"].values()) > 0
    for k in ("wall_time_s", "compile_time_s", "run_time_s"):
        assert meta[k] == session[k] > 0, k
    assert meta["compile_time_s"] + meta["run_time_s"] <= meta["wall_time_s"]
    stored = json.loads((d / "metrics.json").read_text())
    assert stored["chunks_done"] == 4
    np.testing.assert_array_equal(np.asarray(stored["metrics"]["mean"], np.float32), metrics["mean"])
    assert json.loads((d / "checkpoint" / D.MARKER).read_text())["chunk"] == 4


def test_toy_resume_is_bit_identical(toy_run, tmp_path):
    _, state, metrics = toy_run
    d = tmp_path / "run"
    _, part = run_toy(d, stop_after=2)
    assert json.loads((d / "meta.json").read_text())["status"] == "interrupted"
    assert part["x"].shape == (2, 3)
    state2, metrics2 = run_toy(d, resume=True)
    assert_trees_equal(metrics2, metrics)
    assert_trees_equal(state2, state)
    meta = json.loads((d / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["sessions"][-1]["from_chunk"] == 2
    assert [(s["status"], s["resume"]) for s in meta["sessions"]] == [("interrupted", False), ("finished", True)]
    assert meta["wall_time_s"] == sum(s["wall_time_s"] for s in meta["sessions"])  # the sums over the sessions
    # Without a run directory: the same numbers, nothing written.
    _, metrics3 = run_toy(None)
    assert_trees_equal(metrics3, metrics)


def test_resume_with_changed_settings_is_refused_in_one_line(toy_run):
    d = toy_run[0]
    before = snapshot(d)
    with pytest.raises(D.ConfigMismatch) as e:
        run_toy(d, resume=True, config={**CONFIG, "decay": 0.5})
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"cannot resume {d}: ") and "config.decay (0.9 -> 0.5)" in msg, msg
    init, chunk = toy()
    with pytest.raises(D.ConfigMismatch, match=r"key \(\[0, 0\] -> \[0, 1\]\); num_chunks \(4 -> 5\)"):
        D.Driver(init, chunk, jax.random.PRNGKey(1), 5, str(d), CONFIG, progress=False).run(resume=True)
    assert snapshot(d) == before


def test_existing_run_is_refused_without_overwrite(toy_run, tmp_path):
    d = toy_run[0]
    before = snapshot(d)
    with pytest.raises(D.RunDirError, match="holds an earlier run \\(a finished run\\).*--resume.*--overwrite"):
        run_toy(d)
    assert snapshot(d) == before
    fresh = tmp_path / "out"
    fresh.mkdir()
    (fresh / "summary.md").write_text("an experiment's own output")  # not a record file: no refusal, kept
    run_toy(fresh)
    assert (fresh / "summary.md").read_text() == "an experiment's own output"
    run_toy(fresh, overwrite=True)


def test_nan_in_the_state_is_detected_and_named(tmp_path):
    d = tmp_path / "nan"
    with pytest.raises(D.NonFiniteError) as e:
        run_toy(d, nan_at=2)
    msg = str(e.value)
    assert "\n" not in msg and "non-finite values in chunk 3: state['x']" in msg, msg
    assert e.value.failures == {"chunk": 3, "leaves": ["state['x']"]}  # NaN in a metric may mean "not computed"
    meta = json.loads((d / "meta.json").read_text())
    assert meta["status"] == "failed" and meta["chunks_done"] == 2 and "state['x']" in meta["error"]
    assert json.loads((d / "checkpoint" / D.MARKER).read_text())["chunk"] == 2  # the NaN state is never saved


def test_guard_reads_host_arrays_as_the_device_programs_do():
    """On the CPU the guard reads arrays in place; on an accelerator it runs _any_nonfinite/_runs_nonfinite
    there. Both ways name the same leaves and runs (a NaN, an inf, an int leaf, a leaf without the run axis)."""
    from metarl.driver import guard

    x = np.zeros((3, 2, 2), np.float32)
    x[1, 0, 1] = np.nan
    y = np.ones((3, 4), np.float32)
    y[2, 3] = -np.inf
    tree = {"a": jnp.asarray(x), "b": {"c": jnp.asarray(y), "n": jnp.arange(3)}, "g": jnp.ones(5), "h": np.ones((3, 1))}
    assert guard.nonfinite_leaves(tree) == ["['a']", "['b']['c']"]
    assert guard.nonfinite_runs(tree, 3) == [1, 2]
    assert guard.nonfinite_runs(tree, 3, ignore=("c",)) == [1]
    leaves = [tree["a"], tree["b"]["c"], tree["g"]]
    assert np.asarray(guard._any_nonfinite(leaves)).tolist() == [True, True, False]
    per_run = np.asarray(guard._runs_nonfinite([tree["a"], tree["b"]["c"], jnp.asarray(tree["h"])]))
    assert per_run.any(axis=0).tolist() == [False, True, True] and per_run[:, 0].tolist() == [False, False, False]
    assert guard._on_host([np.ones(2), jnp.ones(2)]) == (jax.default_backend() == "cpu")


def test_nonfinite_continue_marks_the_run_failed_and_goes_on(tmp_path, capsys):
    """on_nonfinite="continue" with runs=3 (the toy's three entries of x as independent runs): the run whose
    entry went NaN is marked failed (one warning line, meta.json failed_runs), the others finish; metrics.json
    stays valid JSON. When every run is non-finite, or without runs, it stops as before."""
    d = tmp_path / "go_on"
    _, m = run_toy(d, nan_at=2, on_nonfinite="continue", runs=3)
    warn = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning")]
    assert len(warn) == 1 and "seed 1 went non-finite in chunk 3: state['x']" in warn[0], warn
    assert np.isnan(m["x"][2:, 1]).all() and np.isfinite(m["x"][:, [0, 2]]).all()
    meta = json.loads((d / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["chunks_done"] == 4
    assert meta["failed_runs"] == {"1": {"chunk": 3, "leaves": ["state['x']"]}}
    assert json.loads((d / "metrics.json").read_text())["metrics"]["x"][3][1] is None
    with pytest.raises(D.NonFiniteError):
        run_toy(tmp_path / "no_runs", nan_at=2, on_nonfinite="continue")
    with pytest.raises(ValueError, match="on_nonfinite='skip'; valid: stop, continue"):
        run_toy(None, on_nonfinite="skip")


# ---------------------------------------------------------------------------------------------------
# The Discounting Chain, killed with SIGKILL right after its first checkpoint, then resumed
# ---------------------------------------------------------------------------------------------------
KILL_AFTER_FIRST_CHECKPOINT = r"""
import os, signal, sys
from metarl.driver import core as driver  # where Driver looks save_checkpoint up

save = driver.save_checkpoint

def save_then_die(*a, **k):
    save(*a, **k)
    os.kill(os.getpid(), signal.SIGKILL)

driver.save_checkpoint = save_then_die
from experiments import outer_value_chain as chain

chain.run(chain.ChainExperiment(num_updates=40, num_seeds=2, updates_per_log=10, logs_per_chunk=2), sys.argv[1],
          "tiny", progress=False)
"""


def tiny_chain():
    from experiments import outer_value_chain as chain

    return chain, chain.ChainExperiment(num_updates=40, num_seeds=2, updates_per_log=10, logs_per_chunk=2)


def test_chain_killed_after_its_first_chunk_resumes_bit_for_bit(tmp_path, capsys):
    chain, exp = tiny_chain()
    whole = chain.run(exp, str(tmp_path / "whole"), "tiny", progress=False)
    d = tmp_path / "killed"
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=os.path.join(ROOT, ".jax_cache"),
               PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_CHECKPOINT, str(d)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == -9, out.stderr
    # Only complete files: every JSON reads, no temp files, the checkpoint holds chunk 1.
    files = [os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs]
    assert not [f for f in files if ".tmp" in f] and not os.path.exists(d / "checkpoint.partial")
    for f in files:
        if f.endswith(".json"):
            json.loads(open(f).read())
    meta = json.loads((d / "meta.json").read_text())
    assert meta["status"] == "running" and meta["chunks_done"] == 0  # killed before meta.json's update
    assert json.loads((d / "checkpoint" / D.MARKER).read_text())["chunk"] == 1
    # A resume with a changed setting: one line, exit status 2, nothing written.
    before = snapshot(d)
    with pytest.raises(SystemExit) as e:
        chain.main(["--scale", "quick", "--updates", "1000", "--seeds", "2", "--seed", "3", "--out", str(d),
                    "--resume", "--no-progress"])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert e.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("python -m experiments.outer_value_chain: error: cannot resume") and \
        "config.seed (0 -> 3)" in err[0], err[0]
    assert snapshot(d) == before
    resumed = chain.run(exp, str(d), "tiny", progress=False, resume=True)
    for agent, logs in whole["logs"].items():
        for m, v in logs.items():
            np.testing.assert_array_equal(resumed["logs"][agent][m], v, err_msg=f"{agent} {m}")
    assert json.dumps(resumed["summary"]) == json.dumps(whole["summary"])  # NaN-aware (A2C has no outer advantage)
    for f in ("curves.csv", "metrics.csv", "metrics.json"):  # metrics.*: a row per agent, seed and log point
        assert (d / f).read_text() == (tmp_path / "whole" / f).read_text(), f
    meta = json.loads((d / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["sessions"][-1]["from_chunk"] == 1
    assert [(s["status"], s["resume"]) for s in meta["sessions"]] == [("running", False), ("finished", True)]



def test_vmapped_run_guard_names_the_seed_and_skips_its_checkpoint(tmp_path):
    """EPG's and RL^2's loop (metarl.driver.segments.vmapped_run): seed 2 of 3 holds a NaN when segment 2
    ends; the guard raises before the segment is checkpointed, in one line naming the seed and the segment.
    A leaf allowed to be infinite (evosax's best_fitness before any fitness) is not a failure; without the
    allowance it is."""
    import jax
    import jax.numpy as jnp

    from metarl.driver import NonFiniteError
    from metarl.driver.segments import read_segments, vmapped_run

    nan_at = []

    def init(key):
        return {"w": jax.random.normal(key, (2,)), "i": jnp.zeros((), jnp.int32), "best_fitness": jnp.inf}

    def run_segment(s):
        w = s["w"] * 1.5
        w = jnp.where(jnp.asarray(len(nan_at) > 0) & (s["i"] == 1), w.at[0].set(jnp.nan), w)
        return {"w": w, "i": s["i"] + 1, "best_fitness": s["best_fitness"]}, {"loss": jnp.sum(w)}

    key, d = jax.random.PRNGKey(0), str(tmp_path / "run")
    full, hist = vmapped_run(init, run_segment, key, 3, 3, ignore=("best_fitness",))
    assert len(hist) == 3 and int(full["i"][0]) == 3
    with pytest.raises(NonFiniteError, match="best_fitness"):
        vmapped_run(init, run_segment, key, 3, 1)
    vmapped_run(init, run_segment, key, 3, 3, d, {"run": 1}, ignore=("best_fitness",))
    assert read_segments(d + "/checkpoint")["done"] == 3
    # fault injected: every seed's w goes NaN in segment 2; nothing of segment 2 reaches the checkpoint
    nan_at.append(1)
    d2 = str(tmp_path / "nan")
    with pytest.raises(NonFiniteError) as e:
        vmapped_run(init, run_segment, key, 3, 3, d2, {"run": 2}, ignore=("best_fitness",))
    msg = str(e.value)
    assert "\n" not in msg and "seed(s) 0, 1, 2 in segment 2 of 3" in msg and "['w']" in msg, msg
    assert read_segments(d2 + "/checkpoint")["done"] == 1 and e.value.failures["runs"] == [0, 1, 2]


@pytest.mark.parametrize("interval", ["0", "60"])
def test_progress_bar_redraws_at_most_every_mininterval(interval):
    """Every run's bar (metarl.cli.progress_bar, the Driver's too): set_postfix redraws under the same
    mininterval as update (tqdm's own redraws at every call), so make bench's lanes, which set
    TQDM_MININTERVAL=60 (read when tqdm is imported) and log each part to a file, write a line a minute at
    most."""
    script = ("from metarl.cli import progress_bar\n"
              "bar = progress_bar(10, 'run')\n"
              "for i in range(5):\n"
              "    bar.set_postfix(ret=f'r{i}')\n"
              "    bar.update(1)\n")
    env = dict(os.environ, TQDM_MININTERVAL=interval)
    drawn = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                           check=True).stderr
    # the bar's close at exit draws the last state (ret=r4) in both cases
    postfixes = sum(f"ret=r{i}" in drawn for i in range(4))
    assert postfixes == (4 if interval == "0" else 0), drawn
