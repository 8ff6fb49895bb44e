"""metarl.compile_clock: compile time apart from run time, from JAX's own monitoring events."""
import json

import jax
import jax.numpy as jnp
import pytest

from metarl.compile_clock import compile_report
from metarl.compile_clock import CompileClock, union_length


def test_union_length_counts_overlaps_once():
    assert union_length([]) == 0.0
    assert union_length([(0.0, 1.0), (2.0, 3.0)]) == pytest.approx(2.0)
    assert union_length([(0.0, 2.0), (1.0, 3.0)]) == pytest.approx(3.0)
    assert union_length([(0.0, 5.0), (1.0, 2.0), (3.0, 4.0)]) == pytest.approx(5.0)  # nested traces
    assert union_length([(2.0, 3.0), (0.0, 1.0), (0.5, 2.5)]) == pytest.approx(3.0)


def test_clock_sees_a_new_program_and_not_a_compiled_one():
    @jax.jit
    def f(x):
        return jnp.tanh(x @ x.T).sum()

    x = jnp.ones((37, 11))  # shapes no other test uses: fresh compiles (or persistent-cache hits)
    with CompileClock() as first:
        for rows in (37, 39):  # the same function and call site at another shape: a second compile
            f(jnp.ones((rows, 11))).block_until_ready()
    s = first.summary()
    assert s["programs_compiled"] >= 2 and s["compile_s"] > 0
    mine = [p for p in s["by_program"] if p["name"].startswith("jit(f) at tests/test_compile_clock.py:")]
    assert len(mine) == 1 and mine[0]["compiles"] == 2 and 0 < mine[0]["xla_s"] <= s["xla_s"] + 1e-6
    assert 0 < mine[0]["trace_s"] <= s["trace_s"] + 1e-6 and 0 < mine[0]["lower_s"] <= s["lower_s"] + 1e-6
    assert s["trace_s"] > 0 and s["lower_s"] > 0
    assert 0 <= s["compile_s"] <= s["wall_s"] and s["run_s"] == pytest.approx(s["wall_s"] - s["compile_s"])
    with CompileClock() as again:  # already compiled: nothing traced, lowered or compiled
        f(x).block_until_ready()
    s2 = again.summary()
    assert s2["programs_compiled"] == 0 and s2["compile_s"] == 0.0 and s2["by_program"] == []
    with CompileClock() as outside:
        pass
    f(jnp.ones((41, 11))).block_until_ready()  # after the clock stopped: not counted
    assert outside.summary()["programs_compiled"] == 0


def test_compile_report_writes_the_record_only_on_success(tmp_path, capsys):
    with compile_report("benchmarks.x", str(tmp_path)):
        jax.jit(lambda v: v * 3.0)(jnp.ones(13)).block_until_ready()
    rec = json.loads((tmp_path / "compile_time.json").read_text())
    assert rec["part"] == "benchmarks.x" and rec["programs_compiled"] >= 1
    line = capsys.readouterr().out
    assert "benchmarks.x: compile" in line and "; compiling most: " in line
    assert "jit(<lambda>) at tests/test_compile_clock.py:" in line.split("; compiling most: ")[1]
    with pytest.raises(RuntimeError):
        with compile_report("benchmarks.y", str(tmp_path), "y.json"):
            raise RuntimeError("boom")
    assert not (tmp_path / "y.json").exists()
