"""Every command line answers ``--help`` without loading the heavy libraries.

A CLI's ``--help`` should come back in well under 2 s on a 2-core CPU, so it must not import JAX (~1 s of
CPU) or the libraries a run needs: distrax with TensorFlow Probability (~0.5 s), Brax with MuJoCo and
trimesh (~1.5 s), evosax (~0.5 s). The settings a command line is built from live in jax-free modules
(metarl/agents/configs.py, metarl/meta/*/config.py, ...) and the packages load their modules on first
use (metarl/lazy.py).
This test checks the cause, not a time (times are measured in ``make bench-throughput``): each CLI module
under metarl/, experiments/ and benchmarks/ is run with ``--help`` in one fresh interpreter, and none
of the listed libraries may have been imported by any of them.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from metarl.cli import cli_modules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("jax", "jaxlib", "flax", "optax", "chex", "distrax", "tensorflow_probability", "brax", "mujoco", "trimesh", "evosax", "gymnax", "jumanji",
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


# The options every experiment's command line shares (issue: one config surface): a run's key and its number of
# independent runs, resuming, the output folder, and the progress bar (on unless --no-progress).
SHARED = ("--seed", "--seeds", "--resume", "--out", "--no-progress", "--overwrite")


def test_every_experiment_cli_has_the_shared_options(capsys):
    import importlib

    mods = [m for m in cli_modules() if m.startswith("experiments.")]
    files = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "experiments"))
                   if f.endswith(".py") and not f.startswith("_"))
    assert sorted(m.split(".", 1)[1] for m in mods) == files, mods  # every module of experiments/ is a command line
    missing = {}
    for m in mods:
        with pytest.raises(SystemExit) as e:
            importlib.import_module(m).main(["--help"])
        assert e.value.code == 0, m
        text = capsys.readouterr().out
        options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))
        lacking = [o for o in SHARED if o not in options]
        if lacking:
            missing[m] = lacking
    assert not missing, f"experiment CLIs without the shared options: {missing}"


def test_run_module_runs_a_command_line_in_process(tmp_path, monkeypatch, capsys):
    """metarl.cli.run_module (how benchmarks run experiments): the module's __main__ block runs with the
    given arguments, sys.argv comes back as it was, a refused input raises its SystemExit (status 2)."""
    import sys

    from metarl.cli import run_module

    (tmp_path / "fake_experiment.py").write_text(
        "import dataclasses\n"
        "from metarl.config_cli import PositiveInt, parse_command\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class Fake:\n"
        "    out: str = 'x'\n"
        "    steps: PositiveInt = 1\n"
        "def main(argv=None):\n"
        "    a = parse_command('fake_experiment', 'a fake', Fake(), argv)\n"
        "    open(a.out, 'w').write(f'{a.steps} {__name__}')\n"
        "if __name__ == '__main__':\n"
        "    main()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = list(sys.argv)
    out = tmp_path / "written.txt"
    run_module("fake_experiment", ["--out", out, "--steps", 7])
    assert out.read_text() == "7 __main__" and sys.argv == argv
    with pytest.raises(SystemExit) as e:
        run_module("fake_experiment", ["--out", out, "--steps", "many"])
    assert e.value.code == 2 and sys.argv == argv
    assert capsys.readouterr().err.strip().startswith("fake_experiment: error: argument --steps")
