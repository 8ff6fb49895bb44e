"""Every command line answers ``--help`` without loading the heavy libraries.

A CLI's ``--help`` should come back in well under 2 s on a 2-core CPU. JAX itself (~1 s of CPU) is the
floor; what made it slow were the libraries a module imported at its top although only a run needs them:
distrax with TensorFlow Probability (~0.5 s), Brax with MuJoCo and trimesh (~1.5 s), evosax (~0.5 s).
This test checks the cause, not a time (times are measured in ``make bench-throughput``): each CLI module
under metarl/, experiments/ and benchmarks/ is run with ``--help`` in one fresh interpreter, and none
of the listed libraries may have been imported by any of them.
"""
import json
import os
import subprocess
import sys

from benchmarks.common import cli_modules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("distrax", "tensorflow_probability", "brax", "mujoco", "trimesh", "evosax", "gymnax", "jumanji",
         "matplotlib", "orbax", "torch", "scipy", "tensorboardX")

_PROBE = r"""
import contextlib, io, json, os, runpy, sys
sys.path.insert(0, os.getcwd())
out = {}
for m in sys.argv[1:]:
    sys.argv = [m, "--help"]
    buf = io.StringIO()
    code = None
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_module(m, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code
    out[m] = {"code": code, "usage": "usage" in buf.getvalue()}
print(json.dumps({"runs": out, "modules": sorted({k.split(".")[0] for k in sys.modules})}))
"""


def test_every_cli_answers_help_without_heavy_imports():
    mods = cli_modules()
    assert {"metarl.train", "experiments.meta_critic", "benchmarks.throughput"} <= set(mods)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", _PROBE, *mods], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    bad = {m: v for m, v in res["runs"].items() if v["code"] not in (0, None) or not v["usage"]}
    assert not bad, f"--help failed or printed no usage: {bad}"
    loaded = sorted(set(res["modules"]) & set(HEAVY))
    assert not loaded, f"--help of the CLIs imported {loaded}; import them where a run needs them"
