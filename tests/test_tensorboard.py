"""--tensorboard: the event files hold the run's own metrics (written by tensorboardX, read back here)."""
import jax
import numpy as np

from metarl import driver as D
from metarl.tensorboard import TensorBoardLog, read_scalars


def test_driver_run_writes_each_metric_mean_per_chunk(tmp_path):
    def init(key):
        return {"x": jax.random.normal(key, (3,))}

    @jax.jit
    def chunk(s):
        x = 0.5 * s["x"] + 1.0
        return {"x": x}, {"loss": {"a": x, "b": x.sum()}}

    tb = tmp_path / "tb"
    _, m = D.Driver(init, chunk, jax.random.PRNGKey(0), 3, str(tmp_path / "run"), {"c": 1}, progress=False,
                    units_per_chunk=10, tensorboard=str(tb)).run()
    s = read_scalars(str(tb))
    assert sorted(s) == ["loss/a", "loss/b"]
    assert [step for step, _ in s["loss/a"]] == [10, 20, 30]
    np.testing.assert_allclose([v for _, v in s["loss/a"]], np.asarray(m["loss"]["a"]).mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose([v for _, v in s["loss/b"]], np.asarray(m["loss"]["b"]), rtol=1e-6)


def test_evaluations_log_the_mean_over_finite_runs_and_each_run(tmp_path):
    log = TensorBoardLog(str(tmp_path), per_run_max=2)
    log.evaluations({"eval_return": np.array([[1.0, 2.0], [3.0, np.nan]]), "env_steps": np.array([[5, 10], [5, 10]])},
                    np.array([[5, 10], [5, 10]]))
    log.close()
    s = read_scalars(str(tmp_path))
    assert s["eval_return"] == [(5, 2.0), (10, 2.0)]  # step 10: the NaN run is left out of the mean
    assert s["eval_return/run_0"] == [(5, 1.0), (10, 2.0)] and s["eval_return/run_1"] == [(5, 3.0)]
    assert "env_steps" not in s
    assert read_scalars(str(tmp_path / "none")) == {}
