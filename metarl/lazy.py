"""Packages whose names load on first use (PEP 562), so that a command line parses and answers ``--help``
without importing jax: ``from metarl.meta import outer_value as ov`` costs nothing, ``ov.ChainConfig``
loads only the package's jax-free ``config`` module, and ``ov.make_agent_step`` loads the method.

A package lists its modules in search order (its jax-free config module first); a name resolves to the
first module that exports it (its ``__all__``, or else its public names), the same object an eager
``from module import *`` of every module gives (``tests/test_lazy_packages.py`` checks this for each package).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys


def exported(module) -> list[str]:
    """The names ``from module import *`` binds."""
    names = getattr(module, "__all__", None)
    return list(names) if names is not None else [n for n in vars(module) if not n.startswith("_")]


def lazy_package(package: str, modules: tuple[str, ...], extra: tuple[str, ...] = (),
                 reexport: tuple[str, tuple[str, ...]] | None = None):
    """``(__getattr__, __dir__)`` for ``package``: its modules' exported names (and the private names in
    ``extra``, kept for old callers), each loaded on first access and then cached in the package;
    ``reexport = (module, names)``: these names of another module too."""
    sys.modules[package]._lazy_modules = modules  # (read by the tests)

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if importlib.util.find_spec(f"{package}.{name}") is not None:  # a submodule: ``from package import sub``
            return importlib.import_module(f"{package}.{name}")
        if reexport is not None and name in reexport[1]:
            value = getattr(importlib.import_module(reexport[0]), name)
            setattr(sys.modules[package], name, value)
            return value
        for sub in modules:
            mod = importlib.import_module(f"{package}.{sub}")
            if name in exported(mod) or (name in extra and hasattr(mod, name)):
                value = getattr(mod, name)
                setattr(sys.modules[package], name, value)
                return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        names = set(vars(sys.modules[package])) | set(reexport[1] if reexport else ())
        for sub in modules:
            names.update(exported(importlib.import_module(f"{package}.{sub}")))
        return sorted(names)

    return __getattr__, __dir__
