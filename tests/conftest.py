"""Test-suite set-up: the CPU, a persistent compilation cache shared across test files, and the CPU time
each test file costs (printed at the end of the run; the suite's budget is counted in CPU time)."""
import json
import os
import resource
from collections import defaultdict

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Cache every compiled program, also those that compile in under a second: tests build many of the same
# small programs, in this process and in the subprocesses they start (which inherit this variable).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402

_cache = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache")
jax.config.update("jax_compilation_cache_dir", _cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def _optimise(on: bool) -> None:
    """XLA's optimisations on (the learning tests: their figures and margins were measured with them) or
    mostly off (every other test: its programs run for seconds, and compiling them is most of the suite's
    CPU; `jax_disable_most_optimizations` cut two test files' CPU by a fifth, measured). Subprocesses
    inherit the setting through the environment. The persistent cache keys on it; jit's in-memory cache
    does not, so it is cleared when the setting changes (a learning test never runs a program compiled
    for another test without the optimisations)."""
    if os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS") == ("false" if on else "true"):
        return
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "false" if on else "true"
    jax.config.update("jax_disable_most_optimizations", not on)
    jax.clear_caches()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # before the test's fixtures: a module fixture that a learning test builds is built optimised
    _optimise(item.get_closest_marker("learning") is not None)

# `make test` runs one pytest-xdist worker per core, a test file per worker (--dist loadfile), handing out the
# files in collection order: the costliest files (CPU seconds, from the suite's summary) go first, so that no
# worker is left with a long file at the end while the others sit idle.
COSTLIEST_FIRST = ("test_kill_resume.py", "test_metagenrl.py", "test_train.py", "test_gpu_kit.py",
                   "test_model_based_critic.py", "test_meta_critic.py", "test_reliability.py", "test_outer_value.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(COSTLIEST_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.path)), len(rank)))  # stable: files stay whole


_CPU_BY_FILE: dict = defaultdict(float)


def _cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children (what `time make test` counts)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = _cpu_seconds()
    yield
    _CPU_BY_FILE[item.nodeid.split("::")[0]] += _cpu_seconds() - start


def pytest_sessionfinish(session):
    # a pytest-xdist worker hands its per-file CPU to the controller, which prints the summary
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["cpu_by_file"] = dict(_CPU_BY_FILE)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    for path, seconds in getattr(node, "workeroutput", {}).get("cpu_by_file", {}).items():
        _CPU_BY_FILE[path] += seconds


def pytest_terminal_summary(terminalreporter):
    if not _CPU_BY_FILE:
        return
    rows = sorted(_CPU_BY_FILE.items(), key=lambda kv: -kv[1])
    terminalreporter.write_sep("=", "CPU seconds per test file (user + sys, with subprocesses)")
    for path, seconds in rows:
        terminalreporter.write_line(f"{seconds:8.1f}  {path}")
    terminalreporter.write_line(f"{sum(_CPU_BY_FILE.values()):8.1f}  total")
    out = os.environ.get("METARL_TEST_CPU_JSON")
    if out:
        with open(out, "w") as f:
            json.dump(dict(rows), f, indent=1)
