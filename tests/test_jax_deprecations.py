"""Every module imports with jax's DeprecationWarnings as errors (the GPU image runs jax 0.11, which
removes what 0.10 deprecates; docs/gpu.md).

The filters are pyproject.toml's own (``[tool.pytest.ini_options] filterwarnings``), applied in a fresh
interpreter so that every module really executes its import-time code (in this process most are
imported already by other tests)."""
import os
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import importlib, json, os, pkgutil, sys, warnings
CATEGORIES = {"DeprecationWarning": DeprecationWarning, "FutureWarning": FutureWarning,
              "UserWarning": UserWarning, "PendingDeprecationWarning": PendingDeprecationWarning}
for spec in json.loads(sys.argv[1]):  # pytest's order: the last matching filter wins
    action, message, category, module = (spec.split(":") + ["", "", ""])[:4]
    warnings.filterwarnings(action, message=message, category=CATEGORIES.get(category, Warning), module=module)
import metarl
names = sorted(m.name for m in pkgutil.walk_packages(metarl.__path__, "metarl."))
for pkg in ("experiments", "benchmarks"):
    names += sorted(pkg + "." + f[:-3] for f in os.listdir(pkg) if f.endswith(".py") and f != "__init__.py")
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def pytest_filters() -> list[str]:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["tool"]["pytest"]["ini_options"]["filterwarnings"]


def test_filters_make_jax_deprecations_errors():
    filters = pytest_filters()
    assert "ignore::DeprecationWarning" not in filters  # nothing blanket-hidden any more
    errors = [f for f in filters if f.startswith("error::DeprecationWarning:")]
    assert any("jax" in f for f in errors) and any("metarl" in f for f in errors)
    import re

    family = next(f for f in errors if "jax" in f).split(":", 3)[3]
    assert re.match(family, "jax._src.nn.functions") and re.match(family, "flax.linen")
    assert not re.match(family, "jaxopt") and not re.match(family, "jax_tqdm")


def test_every_module_imports_without_jax_deprecations():
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    import json

    p = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(pytest_filters())], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]
    assert int(p.stdout.strip().splitlines()[-1]) > 30  # metarl, experiments and benchmarks modules
