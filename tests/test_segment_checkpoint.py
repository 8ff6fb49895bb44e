"""The checkpoints of the segment loops (metarl.driver.segments: MetaGenRL, EPG / RL^2, PPO-LIRPG, the
model-based critic's meta-training and units), in the Driver's format (metarl.driver.checkpoints: an orbax
state and segments.json in a folder with a hashed completion marker, swapped in whole): a round trip keeps
every array and the history value for value (NaN included); a kill between the swap's renames resumes
from the newest complete folder; each fault injected (bytes flipped in a stored array, segments.json
edited, another program's shapes, another run's settings, a folder without its marker) is a one-line
CheckpointError or ConfigMismatch instead of a silent resume."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl.driver import CheckpointError, CheckpointMismatch, CheckpointMissing, ConfigMismatch, RunError
from metarl.driver import segments as sg


def _state():
    return {"params": {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.ones(4, jnp.float32)},
            "step": jnp.asarray(7, jnp.int32)}


def _stored_files(path):
    return [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f != "COMPLETE.json"]


def _flip_largest(path):
    """Flip 8 bytes in the middle of the largest file of the checkpoint folder (an array's bytes)."""
    f = max(_stored_files(path), key=os.path.getsize)
    raw = bytearray(open(f, "rb").read())
    at = len(raw) // 2
    raw[at:at + 8] = bytes(b ^ 0xFF for b in raw[at:at + 8])
    open(f, "wb").write(bytes(raw))


def test_round_trip_keeps_arrays_history_and_nan(tmp_path):
    p = str(tmp_path / "checkpoint")
    hist = [{"ret": np.asarray([1.5, np.nan], np.float32).tolist()}]
    sg.save_checkpoint(p, _state(), 1, hist, {"streak": 3}, {"stage": "a"}, 4)
    state, done, back, extra = sg.load_checkpoint(p, jax.eval_shape(_state), {"stage": "a"})
    assert np.array_equal(np.asarray(state["params"]["w"]), np.asarray(_state()["params"]["w"]))
    assert state["step"].dtype == jnp.int32 and int(state["step"]) == 7
    assert done == 1 and extra == {"streak": 3}
    assert back[0]["ret"][0] == 1.5 and np.isnan(back[0]["ret"][1])
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]  # swapped in whole: no .partial / .old left
    assert sg.read_segments(p)["total"] == 4


def test_a_kill_between_the_renames_resumes_from_the_newest_complete_folder(tmp_path):
    p = str(tmp_path / "checkpoint")
    sg.save_checkpoint(p, _state(), 1, [{"r": 1.0}], {}, {"run": 1})
    os.replace(p, p + ".old")  # killed after checkpoint -> checkpoint.old, before .partial -> checkpoint
    state, done, hist, _ = sg.load_checkpoint(p, _state(), {"run": 1})
    assert done == 1 and hist == [{"r": 1.0}]
    os.makedirs(p + ".partial")  # and a save cut short (no marker) beside it: not resumed from
    assert sg.load_checkpoint(p, _state(), {"run": 1})[1] == 1


def test_faults_are_one_line_errors(tmp_path):
    p = str(tmp_path / "checkpoint")
    like = jax.eval_shape(_state)
    # bytes flipped inside a stored array file
    sg.save_checkpoint(p, _state(), 1, [], {}, {"run": 1})
    _flip_largest(p)
    with pytest.raises(CheckpointError, match="does not match its recorded sha256") as e:
        sg.load_checkpoint(p, like, {"run": 1})
    assert "\n" not in str(e.value) and isinstance(e.value, RunError)
    # segments.json edited (another history, the marker's hash of it unchanged)
    sg.save_checkpoint(p, _state(), 1, [{"r": 1.0}], {}, {"run": 1})
    seg = os.path.join(p, sg.SEGMENTS)
    text = open(seg).read()
    open(seg, "w").write(text.replace("1.0", "2.0"))
    with pytest.raises(CheckpointError, match="segments.json does not match its recorded sha256"):
        sg.load_checkpoint(p, like, {"run": 1})
    # another program's shapes, another count of arrays
    sg.save_checkpoint(p, _state(), 1, [], {}, {"run": 1})
    other = dict(_state(), params={"w": jnp.zeros((3, 5)), "b": jnp.ones(4, jnp.float32)})
    with pytest.raises(CheckpointMismatch, match=r"array \['params'\]\['w'\] is float32\[3, 4\], this program's "
                                                 r"state wants float32\[3, 5\]"):
        sg.load_checkpoint(p, jax.eval_shape(lambda: other), {"run": 1})
    with pytest.raises(CheckpointMismatch, match="holds 3 arrays, this program's state has 2"):
        sg.load_checkpoint(p, {"a": jnp.zeros(1), "b": jnp.zeros(1)}, {"run": 1})
    # another run's settings: named before any array is read
    with pytest.raises(ConfigMismatch, match=r"other settings: run \(1 -> 2\)"):
        sg.load_checkpoint(p, like, {"run": 2})
    # a folder whose save never finished (no marker)
    os.remove(os.path.join(p, "COMPLETE.json"))
    with pytest.raises(CheckpointMissing, match="without COMPLETE.json"):
        sg.load_checkpoint(p, like, {"run": 1})


def test_each_segment_loop_refuses_a_corrupted_checkpoint(tmp_path):
    """PPO-LIRPG's run directory reads the same folders: its own checkpoint back, and one-line refusals of
    another program's shapes, other settings and flipped bytes."""
    from metarl.meta import lirpg as lp

    run_dir = str(tmp_path / "lirpg")
    os.makedirs(run_dir)
    hist = [{"eval_return": [1.0, 2.0]}, {"eval_return": [3.0, 4.0]}]
    sg.save_checkpoint(os.path.join(run_dir, sg.CHECKPOINT), _state(), 2, hist, {}, {"run": 1}, 4)
    state, back = lp._load_checkpoint(run_dir, _state(), {"run": 1})
    assert len(back) == 2 and np.array_equal(back[1]["eval_return"], [3.0, 4.0])
    with pytest.raises(lp.ResumeMismatch, match="does not fit this run"):
        lp._load_checkpoint(run_dir, dict(_state(), step=jnp.zeros(2, jnp.int32)), {"run": 1})
    with pytest.raises(lp.ResumeMismatch, match=r"other settings: run \(1 -> 2\)"):
        lp._load_checkpoint(run_dir, _state(), {"run": 2})
    _flip_largest(os.path.join(run_dir, sg.CHECKPOINT))
    with pytest.raises(CheckpointError, match="corrupted on disk"):
        lp._load_checkpoint(run_dir, _state(), {"run": 1})


def test_the_stage_loop_stops_where_it_was_asked_to(tmp_path):
    """run_segments is the Driver's loop (SegmentDriver): a StopFlag raised in an earlier stage stops the next
    one before its first segment (nothing run, nothing written); a Ctrl-C that interrupts a segment (a second
    one: KeyboardInterrupt) leaves the last complete checkpoint and says so in one line; the resume from it
    ends where the uninterrupted stage ends."""
    from metarl.driver import Interrupted
    from metarl.driver.segments import StopFlag, read_segments, run_segments

    calls = []

    def seg(s, fail_at=None):
        calls.append(1)
        if len(calls) == fail_at:
            raise KeyboardInterrupt
        return {"w": s["w"] * 2.0}, {"w": s["w"].sum()}

    init = lambda: {"w": jnp.ones(3)}  # noqa: E731
    like = jax.eval_shape(init)
    stop = StopFlag()
    stop.requested = True
    with pytest.raises(Interrupted, match="stopped before segment 1 of 3"):
        run_segments(seg, init, like, 3, str(tmp_path / "a"), {"stage": 1}, stop=stop)
    assert not calls and not (tmp_path / "a").exists()
    full, hist = run_segments(seg, init, like, 3, None, {"stage": 1})
    calls.clear()
    with pytest.raises(Interrupted, match=r"stopped after segment 1 of 3, checkpoint in .*b") as e:
        run_segments(lambda s: seg(s, fail_at=2), init, like, 3, str(tmp_path / "b"), {"stage": 1})
    assert "\n" not in str(e.value)
    assert read_segments(str(tmp_path / "b" / "checkpoint"))["done"] == 1
    assert sorted(os.listdir(tmp_path / "b")) == ["checkpoint"]
    back, hist_b = run_segments(seg, init, like, 3, str(tmp_path / "b"), {"stage": 1}, resume=True)
    assert np.array_equal(back["w"], full["w"]) and hist_b == hist


def test_a_relative_checkpoint_path_works(tmp_path, monkeypatch):
    """A command line's --out is often relative (results/...): the checkpoint folder is written and read
    there (orbax itself takes absolute paths only)."""
    monkeypatch.chdir(tmp_path)
    sg.save_checkpoint(os.path.join("out", "checkpoint"), _state(), 1, [], {}, {"run": 1})
    state, done, _, _ = sg.load_checkpoint(os.path.join("out", "checkpoint"), jax.eval_shape(_state), {"run": 1})
    assert done == 1 and int(state["step"]) == 7 and sorted(os.listdir(tmp_path / "out")) == ["checkpoint"]


def test_metrics_csv_has_a_row_per_run_and_point():
    """metarl.driver.metrics_csv, every experiment's metrics.csv: label columns, the point, each metric (trailing
    axes as name[j]); blocks with other points or metrics share one header (empty cells where a block lacks
    a metric); a metric of the wrong shape is refused."""
    from metarl.driver import metrics_csv

    text = metrics_csv([([{"seed": 0}, {"seed": 1}], {"r": np.arange(4.0).reshape(2, 2), "v": np.ones((2, 2, 2))}),
                        ([{"variant": "ppo", "seed": 0}], {"r": np.array([[np.nan, 0.5, 2.0]])})])
    assert text.splitlines() == ["seed,variant,eval_index,r,v[0],v[1]", "0,,0,0,1,1", "0,,1,1,1,1", "1,,0,2,1,1",
                                 "1,,1,3,1,1", "0,ppo,0,nan,,", "0,ppo,1,0.5,,", "0,ppo,2,2,,"]
    with pytest.raises(ValueError, match=r"metric 'r' has shape \(3,\)"):
        metrics_csv([([{"seed": 0}], {"r": np.zeros(3)})])


def test_write_metrics_writes_the_csv_and_the_same_numbers_as_json(tmp_path):
    """metarl.driver.write_metrics, every experiment's metrics files: <prefix>metrics.csv and <prefix>metrics.json
    hold the same blocks (the JSON at full precision, NaN as null, extra fields beside them); a metric of the
    wrong shape is refused before either file is written."""
    import json

    from metarl.driver import metrics_csv, write_metrics

    x = np.array([[1 / 3, np.nan]], np.float32)
    blocks = [([{"agent": "mg", "seed": 0}], {"gamma": x, "v": np.ones((1, 2, 2))})]
    write_metrics(str(tmp_path), blocks, point="log_index", prefix="p_", sweep=[{"lr": 0.1}])
    assert sorted(os.listdir(tmp_path)) == ["p_metrics.csv", "p_metrics.json"]
    assert (tmp_path / "p_metrics.csv").read_text() == metrics_csv(blocks, "log_index")
    data = json.loads((tmp_path / "p_metrics.json").read_text())
    assert data == {"point": "log_index", "sweep": [{"lr": 0.1}], "blocks": [
        {"runs": [{"agent": "mg", "seed": 0}], "metrics": {"gamma": [[float(np.float32(1 / 3)), None]],
                                                           "v": [[[1.0, 1.0], [1.0, 1.0]]]}}]}
    with pytest.raises(ValueError, match="metric 'r' has shape"):
        write_metrics(str(tmp_path / "bad"), [([{"seed": 0}], {"r": np.zeros(3)})])
    assert not os.path.exists(tmp_path / "bad")


def test_a_first_save_cut_short_is_not_a_checkpoint(tmp_path):
    """A stage killed (or crashed) during its first save leaves only checkpoint.partial without its marker:
    its resume starts the stage from the beginning (and ends as a run straight through) instead of refusing;
    a `checkpoint` folder without its marker is still refused (corrupted)."""
    from metarl.driver.segments import run_segments

    seg = lambda s: ({"w": s["w"] * 2.0}, {"w": s["w"].sum()})  # noqa: E731
    init = lambda: {"w": jnp.ones(3)}  # noqa: E731
    full, hist = run_segments(seg, init, jax.eval_shape(init), 2, None, {"stage": 1})
    os.makedirs(tmp_path / "checkpoint.partial" / "state")
    back, hist_b = run_segments(seg, init, jax.eval_shape(init), 2, str(tmp_path), {"stage": 1}, resume=True)
    assert np.array_equal(back["w"], full["w"]) and hist_b == hist
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]
    os.remove(tmp_path / "checkpoint" / "COMPLETE.json")
    with pytest.raises(CheckpointMissing, match="without COMPLETE.json"):
        run_segments(seg, init, jax.eval_shape(init), 2, str(tmp_path), {"stage": 1}, resume=True)


SHARDED = r"""
import os, sys, json
import jax, jax.numpy as jnp, numpy as np
from metarl.driver.segments import read_segments, vmapped_run
assert len(jax.devices()) == 2, jax.devices()
def init(key):
    return {"w": jax.random.normal(key, (3,)), "i": jnp.zeros((), jnp.int32)}
def run_segment(s):
    w = jnp.tanh(s["w"] * 1.5 + 0.1 * s["i"])
    return {"w": w, "i": s["i"] + 1}, {"loss": jnp.sum(w ** 2)}
key, d = jax.random.PRNGKey(0), sys.argv[1]
full, hist = vmapped_run(init, run_segment, key, 4, 3)
devices = len(full["w"].sharding.device_set)
from metarl.driver.segments import run_segments
init_v, seg_v, keys = jax.jit(jax.vmap(init)), jax.jit(jax.vmap(run_segment)), jax.random.split(key, 4)
like = jax.eval_shape(init_v, keys)
run_segments(seg_v, lambda: init_v(keys), like, 3, d, {"run": 1}, runs=4, max_segments=1)  # as if killed after 1
back, hist_b = run_segments(seg_v, lambda: init_v(keys), like, 3, d, {"run": 1}, runs=4, resume=True)
# a population (MetaGenRL's): no single run axis for the guard, its agents' axis (4) named for placement
pop = lambda: {"agents": jnp.ones((4, 3)), "shared": jnp.ones(5)}
step = lambda s: ({"agents": s["agents"] * 0.5 + s["shared"][:3], "shared": s["shared"] + 1.0},
                  {"m": s["agents"].mean()})
mixed, _ = run_segments(jax.jit(step), pop, jax.eval_shape(pop), 2, None, {}, place_runs=4)
print(json.dumps({"devices": devices, "resumed_devices": len(back["w"].sharding.device_set),
                  "w": np.asarray(full["w"]).tolist(), "w_resumed": np.asarray(back["w"]).tolist(),
                  "equal_history": hist == hist_b, "agents_devices": len(mixed["agents"].sharding.device_set),
                  "shared_replicated": mixed["shared"].sharding.is_fully_replicated,
                  "agents": np.asarray(mixed["agents"]).tolist()}))
"""


def test_runs_are_split_across_devices_and_resume_there(tmp_path):
    """With two devices (the CPU split in two), a segment loop's runs (its leading vmapped axis) are placed
    across both; a run stopped after its first segment and resumed is placed the same way and ends bit for
    bit as the one straight through; and the numbers equal those of this one-device process. A population
    without a single run axis (MetaGenRL's) names its agents' axis for placement (``place_runs``): those
    leaves split, the others replicated."""
    import json
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=root,
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip())
    r = subprocess.run([sys.executable, "-c", SHARDED, str(tmp_path / "run")], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2 and out["resumed_devices"] == 2 and out["equal_history"]
    assert out["w"] == out["w_resumed"]
    assert out["agents_devices"] == 2 and out["shared_replicated"]  # place_runs: a population's agent axis
    assert out["agents"] == [[2.75] * 3] * 4  # (1 * 0.5 + 1) * 0.5 + 2
    from metarl.driver.segments import vmapped_run

    def init(key):
        return {"w": jax.random.normal(key, (3,)), "i": jnp.zeros((), jnp.int32)}

    def run_segment(s):
        w = jnp.tanh(s["w"] * 1.5 + 0.1 * s["i"])
        return {"w": w, "i": s["i"] + 1}, {"loss": jnp.sum(w ** 2)}

    here, _ = vmapped_run(init, run_segment, jax.random.PRNGKey(0), 4, 3)
    assert len(jax.devices()) == 1 and np.asarray(here["w"]).tolist() == out["w"]
