"""The packages that load their modules on first use (metarl/lazy.py) give every name the object an eager
``from module import *`` of all their modules gave, and their settings load without jax."""
import importlib
import json
import subprocess
import sys

import pytest

from metarl.lazy import exported

PACKAGES = ("metarl.driver", "metarl.train", "metarl.envs", "metarl.agents", "metarl.meta.outer_value",
            "metarl.meta.model_based_critic", "metarl.meta.metagenrl")


@pytest.mark.parametrize("package", PACKAGES)
def test_lazy_names_are_the_eager_ones(package):
    pkg = importlib.import_module(package)
    modules = pkg._lazy_modules
    assert modules, package
    eager = {}
    for sub in modules:  # as ``from sub import *`` one after the other: the last binding wins
        mod = importlib.import_module(f"{package}.{sub}")
        eager.update({n: getattr(mod, n) for n in exported(mod)})
    names = [n for n in eager if not n.startswith("__") and n != "annotations"]
    assert len(names) > 5
    differ = [n for n in names if getattr(pkg, n) is not eager[n]]
    assert not differ, f"{package}: names bound to another object than the eager import's: {differ}"
    assert set(names) <= set(dir(pkg))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        getattr(pkg, "no_such_name")


def test_settings_load_without_jax():
    """The settings a command line is built from, and the packages' names for them, import no jax."""
    probe = ("import sys, json\n"
             "from metarl.meta import outer_value as ov, metagenrl as mg, model_based_critic as mbc\n"
             "from metarl import agents, driver, envs, train\n"
             "from metarl.meta import baseline_configs, meta_critic_config\n"
             "ov.ChainConfig, ov.SnakeConfig, ov.MetaConfig().gamma_init, mg.MetaGenRLConfig, mg.ObjectiveConfig\n"
             "agents.TD3Config, agents.agent_config('sac'), train.TrainConfig, driver.write_json, envs.SOURCES\n"
             "from metarl.meta.metagenrl import protocol\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax'))))\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == []
