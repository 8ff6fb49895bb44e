"""The one-file checkpoints of the segment loops (metarl.npz_checkpoint), as MetaGenRL, EPG / RL^2 and
PPO-LIRPG use them: a round trip keeps every array and the history value for value (NaN included), and
each fault injected into the file (bytes flipped inside an array, an array replaced by other values, a
truncated file, another program's shapes, an older format) is a one-line CheckpointError instead of a silent resume."""
import os

import jax.numpy as jnp
import numpy as np
import pytest

from metarl import npz_checkpoint
from metarl.driver import CheckpointError, ConfigMismatch, RunError


def _state():
    return {"params": {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.ones(4, jnp.float32)},
            "step": jnp.asarray(7, jnp.int32)}


def _flip_inside(path: str, needle: bytes):
    """Flip 8 bytes inside the stored array whose bytes start with ``needle`` (the file keeps its size)."""
    raw = bytearray(open(path, "rb").read())
    at = raw.find(needle)
    assert at > 0
    raw[at + 4:at + 12] = bytes(b ^ 0xFF for b in raw[at + 4:at + 12])
    open(path, "wb").write(bytes(raw))


def test_round_trip_keeps_arrays_meta_and_nan(tmp_path):
    p = str(tmp_path / "c.npz")
    hist = [{"ret": np.asarray([1.5, np.nan], np.float32)}]
    npz_checkpoint.save(p, _state(), {"done": 1, "history": hist}, {"h_ret": np.stack([h["ret"] for h in hist], 1)})
    state, meta, arrays = npz_checkpoint.load(p, _state())
    assert all(np.array_equal(a, b) for a, b in zip(np.asarray(state["params"]["w"]), np.asarray(_state()["params"]["w"])))
    assert state["step"].dtype == jnp.int32 and int(state["step"]) == 7
    assert meta["done"] == 1 and meta["history"][0]["ret"][0] == 1.5 and np.isnan(meta["history"][0]["ret"][1])
    assert arrays["h_ret"].shape == (2, 1) and arrays["h_ret"].dtype == np.float32
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]  # written whole, nothing left beside it


def test_faults_are_one_line_errors(tmp_path):
    p = str(tmp_path / "c.npz")
    npz_checkpoint.save(p, _state(), {"done": 1}, {"hist": np.arange(64, dtype=np.float32) + 1000})
    # bytes flipped inside the array 'w' (the zip member's CRC-32 catches it, named by the state's path)
    _flip_inside(p, np.arange(12.0, dtype=np.float32)[1:].tobytes()[:8])
    with pytest.raises(CheckpointError, match=r"array \['params'\]\['w'\] is corrupted on disk") as e:
        npz_checkpoint.load(p, _state())
    assert "\n" not in str(e.value) and isinstance(e.value, RunError)
    # ... inside a named array beside the state
    npz_checkpoint.save(p, _state(), {"done": 1}, {"hist": np.arange(64, dtype=np.float32) + 1000})
    _flip_inside(p, (np.arange(64, dtype=np.float32) + 1000).tobytes()[:8])
    with pytest.raises(CheckpointError, match="array hist is corrupted on disk"):
        npz_checkpoint.load(p, _state())
    # a valid file whose array was replaced (another run's values; the zip's own checks pass): the sha256
    npz_checkpoint.save(p, _state(), {"done": 1})
    with np.load(p) as z:
        members = {k: z[k] for k in z.files}
    members["leaf_00001"] = members["leaf_00001"] + 1  # the leaves in tree order: b, w, step
    with open(p, "wb") as f:
        np.savez(f, **members)
    with pytest.raises(CheckpointError, match=r"array \['params'\]\['w'\] does not match its recorded sha256"):
        npz_checkpoint.load(p, _state())
    # truncated
    npz_checkpoint.save(p, _state(), {"done": 1})
    raw = open(p, "rb").read()
    open(p, "wb").write(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as e:
        npz_checkpoint.load(p, _state())
    assert "\n" not in str(e.value)
    # another program's shapes
    npz_checkpoint.save(p, _state(), {"done": 1})
    other = dict(_state(), params={"w": jnp.zeros((3, 5)), "b": jnp.ones(4, jnp.float32)})
    with pytest.raises(CheckpointError, match=r"array \['params'\]\['w'\] is float32\[3, 4\], this program's state "
                                              r"wants float32\[3, 5\]"):
        npz_checkpoint.load(p, other)
    with pytest.raises(CheckpointError, match="holds 3 arrays, this program's state has 2"):
        npz_checkpoint.load(p, {"a": jnp.zeros(1), "b": jnp.zeros(1)})
    # an older format (a plain .npz)
    with open(p, "wb") as f:
        np.savez(f, leaf_0=np.zeros(3))
    with pytest.raises(CheckpointError, match="cannot read checkpoint|not a metarl-npz-1 file"):
        npz_checkpoint.load(p, _state())


def test_each_segment_loop_refuses_a_corrupted_checkpoint(tmp_path):
    """The two users: the shared segment loop's checkpoint (metarl.driver.segments: MetaGenRL, EPG, RL^2,
    the model-based critic's meta-training; also refusing another identity) and PPO-LIRPG's run directory;
    each restores its own file and refuses flipped bytes."""
    from metarl.driver import segments as mg
    from metarl.meta import lirpg as lp

    needle = np.arange(12.0, dtype=np.float32)[1:].tobytes()[:8]
    # MetaGenRL
    p = str(tmp_path / "mg.npz")
    mg.save_checkpoint(p, _state(), 2, [{"r": [np.nan, 1.0]}], {"streak": 3}, {"stage": "a"})
    state, done, hist, extra = mg.load_checkpoint(p, _state(), {"stage": "a"})
    assert done == 2 and extra == {"streak": 3} and np.isnan(hist[0]["r"][0])
    with pytest.raises(ConfigMismatch, match=r"other settings: stage \('a' -> 'b'\)"):
        mg.load_checkpoint(p, _state(), {"stage": "b"})
    _flip_inside(p, needle)
    with pytest.raises(CheckpointError, match="corrupted on disk"):
        mg.load_checkpoint(p, _state(), {"stage": "a"})
    # PPO-LIRPG
    run_dir = str(tmp_path / "lirpg")
    os.makedirs(run_dir)
    hist = [{"eval_return": [1.0, 2.0]}, {"eval_return": [3.0, 4.0]}]
    mg.save_checkpoint(os.path.join(run_dir, mg.CHECKPOINT), _state(), 2, hist, {}, {"run": 1}, 4)
    state, back = lp._load_checkpoint(run_dir, _state(), {"run": 1})
    assert len(back) == 2 and np.array_equal(back[1]["eval_return"], [3.0, 4.0])
    with pytest.raises(lp.ResumeMismatch, match="does not fit this run"):
        lp._load_checkpoint(run_dir, dict(_state(), step=jnp.zeros(2, jnp.int32)), {"run": 1})
    with pytest.raises(lp.ResumeMismatch, match=r"other settings: run \(1 -> 2\)"):
        lp._load_checkpoint(run_dir, _state(), {"run": 2})
    _flip_inside(os.path.join(run_dir, "checkpoint.npz"), needle)
    with pytest.raises(CheckpointError, match="corrupted on disk"):
        lp._load_checkpoint(run_dir, _state(), {"run": 1})
