"""The package's shape (DESIGN: experiments never import each other; benchmarks call library functions or run
experiments' command lines), read from the source: a new coupling fails here."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def _imports_experiments(path: str) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "experiments"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "experiments":
            found |= {node.module + ("." + a.name if node.module == "experiments" else "") for a in node.names}
    return found


def _py_files(folder: str):
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, folder)):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for name in filenames:
            if name.endswith(".py"):
                yield os.path.relpath(os.path.join(dirpath, name), ROOT)


def test_experiments_never_import_each_other():
    bad = {f: sorted(_imports_experiments(os.path.join(ROOT, f))) for f in _py_files("experiments")}
    assert not {f: m for f, m in bad.items() if m}


def test_benchmarks_import_no_experiment():
    """A benchmark calls library functions or runs an experiment's command line (metarl.cli.run_module), so
    that forking or editing one experiment file never breaks ``make bench``."""
    importing = {f: sorted(_imports_experiments(os.path.join(ROOT, f))) for f in _py_files("benchmarks")}
    assert not {f: m for f, m in importing.items() if m}


def test_the_library_never_imports_experiments_or_benchmarks():
    for f in _py_files("metarl"):
        with open(os.path.join(ROOT, f)) as fh:
            tree = ast.parse(fh.read(), f)
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("experiments", "benchmarks") for n in names), f
