"""The accelerator run kit (docs/gpu.md): its plan, its wheel list, and its CPU dry run end to end."""
import json
import os
import subprocess
import sys

import pytest

from benchmarks import gpu, gpu_wheels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("dry", [False, True])
def test_plan_has_every_part_sized_and_predicted(dry):
    plan = gpu.make_plan(gpu.sizes_for(dry), gpu.load_costs(None, dry), 450.0, dry)
    assert [p["name"] for p in plan["parts"]] == list(gpu.PARTS)
    assert sum(gpu.SHARES.values()) <= 1.0
    for p in plan["parts"]:
        assert 0 < p["predicted_s"] <= p["box_s"] and p["sizes"] is not None
    assert plan["total_predicted_s"] <= 450.0
    th = plan["parts"][1]["sizes"]
    if not dry:  # the grid: TD3 and SAC x 1, 32, 256, 1024 seeds x brax hopper and gymnax Pendulum
        assert th["seeds"] == [1, 32, 256, 1024] and set(th["envs"]) == {"brax/hopper", "gymnax/Pendulum-v1"}
        assert plan["parts"][2]["sizes"]["seeds"] == 5 and plan["parts"][4]["sizes"]["agents"] == 20


def test_measured_costs_replace_the_priors(tmp_path):
    f = tmp_path / "summary.json"
    f.write_text(json.dumps({"measured_costs": {"compile": {"snake": 5.0}, "step": {"snake_update": 0.01}}}))
    costs = gpu.load_costs(str(f), dry=False)
    assert costs["compile"]["snake"] == 5.0 and costs["step"]["snake_update"] == 0.01
    assert costs["compile"]["train"] == gpu.COSTS["gpu"]["compile"]["train"]
    fast = gpu.make_plan(gpu.sizes_for(False), costs, 450.0, False)
    slow = gpu.make_plan(gpu.sizes_for(False), gpu.load_costs(None, False), 450.0, False)
    assert fast["parts"][3]["planned"]["updates"] > slow["parts"][3]["planned"]["updates"]


def test_wheel_list_is_pinned_by_the_lock_file_and_check_lists_what_is_missing(tmp_path):
    pins = gpu_wheels.pinned()
    lock = gpu_wheels.locked_versions()
    assert len(pins) == len(gpu_wheels.WHEELS)
    for p in pins:
        name, version = p.split("==")
        assert lock[gpu_wheels.norm(name)] == version
    assert not set(map(gpu_wheels.norm, gpu_wheels.WHEELS)) & set(gpu_wheels.LEFT_OUT)
    assert not set(map(gpu_wheels.norm, gpu_wheels.WHEELS)) & gpu_wheels.IMAGE_HAS
    r = gpu_wheels.check(str(tmp_path))
    assert sorted(r["missing_wheels"]) == sorted(map(gpu_wheels.norm, gpu_wheels.WHEELS))
    assert r["sizes"]["wheels_bytes"] == 0 and r["sizes"]["fits"]
    assert "missing wheel: brax" in gpu_wheels.format_report(r)
    assert gpu_wheels.marker_applies("") and not gpu_wheels.marker_applies("python_version < '3.7'")
    assert not gpu_wheels.marker_applies("extra == 'develop'")


def test_dry_run_writes_the_plan_and_every_part(tmp_path):
    """The whole script on the CPU at tiny sizes, in a fresh interpreter (it sets jax options and a
    watchdog of its own). Compiled programs land in the shared .jax_cache, so a rerun mostly reuses them."""
    out = tmp_path / "gpu"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # one compile worker: the dry run's compilations in turn cost less CPU than two in parallel (146 s
    # against 170 s with an empty cache, measured; 18 s more wall)
    p = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--dry-run", "--budget-s", "3000", "--workers", "1",
                        "--out", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    plan = json.loads((out / "plan.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert plan["mode"] == summary["mode"] == "dry-run"
    assert {"parts", "budget_s", "total_predicted_s", "costs"} <= set(plan)
    assert [q["name"] for q in plan["parts"]] == list(gpu.PARTS)
    for q in plan["parts"]:
        assert {"sizes", "predicted_s", "box_s", "planned"} <= set(q)
    assert {"mode", "device", "versions", "parts", "warnings", "measured_costs", "complete", "wall_s"} <= set(summary)
    assert summary["complete"] and list(summary["parts"]) == list(gpu.PARTS)
    parts = summary["parts"]
    for name, rec in parts.items():
        assert rec["status"] == "done", (name, rec.get("error"), rec["results"].get("cut"))
    lines = parts["smoke"]["results"]["lines"]
    assert not [ln for ln in lines if not ln.startswith("OK")], lines
    assert len(parts["smoke"]["results"]["items"]) == 9
    rows = parts["throughput"]["results"]["rows"]
    assert {r["status"] for r in rows.values()} == {"done"} and all(r["updates_per_s"] > 0 for r in rows.values())
    mc = parts["meta_critic"]["results"]["programs"]["gymnax/Pendulum-v1|td3"]
    assert set(mc["table1"]) == {"TD3", "TD3-MC"} and mc["env_steps_per_run"] > 0
    assert set(parts["snake"]["results"]["summary"]) == {"A2C", "MG+outer critic"}  # the dry run's two agents
    mg = parts["metagenrl"]["results"]
    assert mg["meta_train"]["segment_s"] and set(mg["meta_test"]["final"]) == set(gpu.TEST_VARIANTS)
    proj = parts["projection"]["results"]["rows"]
    assert len(proj) == len(gpu.PAPER_WORKLOADS) and all(r["seconds"] for r in proj[2:])
    assert (out / "summary.md").read_text().startswith("# GPU run kit: dry-run")
    assert (out / "figures.png").stat().st_size > 10_000
    assert sorted(os.listdir(out)) == sorted(gpu.OUTPUT_FILES)
