"""The wheels the GPU machine's image lacks, for ``make gpu-wheels`` (docs/gpu.md).

    python -m benchmarks.gpu_wheels            # download them into .whl/ (pip download, no dependency resolution)
    python -m benchmarks.gpu_wheels --check    # what is missing: wheels not in .whl/, requirements nobody provides,
                                               # and (--env) distributions this interpreter cannot import

The device image (KINDS.md of the device tool) has Python 3.12 with jax 0.11.2 + CUDA 13, flax, optax,
chex, orbax-checkpoint, numpy, scipy, matplotlib, tqdm and much else, but no brax, gymnax, jumanji or
distrax, and it cannot reach a package index. Everything that travels counts towards a 64 MiB limit,
so the list below is what our code imports and nothing more: the distributions that an import of every
``metarl`` module plus one reset of a Brax, Gymnax and Jumanji environment loaded (traced with
``importlib.metadata.packages_distributions`` over ``sys.modules``), minus those the image has.

Left out on purpose (each is a declared requirement of a package below, none is imported by our code):
``mujoco-studio`` (~9 MB wheel, 34 MB installed: MuJoCo's interactive viewer and Filament renderer;
``mujoco/__init__`` imports its renderer inside ``try/except ImportError``), ``PyOpenGL`` and ``glfw``
(rendering), ``Flask``/``flask-cors`` (Brax's HTML viewer server), ``tensorboardX`` and
``ml_collections`` (Brax's training code), ``gast`` (TFP's TensorFlow autograph, not the JAX
substrate). Versions are our lock file's (requirements.lock), so the GPU run uses the environment code
the CPU tests ran; jax, flax, optax and chex are the image's own (jaxlib + the CUDA plugin cannot
travel: 209 MB).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEEL_DIR = os.path.join(ROOT, ".whl")
LOCK = os.path.join(ROOT, "requirements.lock")
LIMIT_BYTES = 64 * 2**20  # the device tool's limit for everything that travels
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")

# distribution -> why it travels (what imports it).
WHEELS = {
    "brax": "environments (positional backend) and the model-based critic's differentiable arms",
    "mujoco": "brax.io.mjcf parses every Brax system with MuJoCo",
    "mujoco-core": "MuJoCo's compiled bindings (mujoco 4 split them out of 'mujoco')",
    "mujoco-mjx": "brax.envs imports brax.mjx, which imports mujoco.mjx",
    "trimesh": "brax.io.mjcf (mesh geometry)",
    "jaxopt": "imported by brax (and mujoco.mjx)",
    "gymnax": "gymnax environments (Pendulum, MountainCar, Reacher-misc, DiscountingChain)",
    "gymnasium": "gymnax and jumanji (spaces)",
    "farama-notifications": "gymnasium",
    "jumanji": "Snake (outer value function)",
    "dm-env": "jumanji",
    "esquilax": "jumanji",
    "jax-tqdm": "esquilax",
    "distrax": "metarl.nets: SAC's tanh-Gaussian policy",
    "tfp-nightly": "distrax (tensorflow_probability.substrates.jax)",
    "dm-tree": "tfp-nightly",
    "decorator": "tfp-nightly",
    "tyro": "metarl.config_cli: the experiments' command lines, generated from their dataclasses",
    "docstring-parser": "tyro (options' help from the fields' comments)",
    "typeguard": "tyro",
}

# Requirements of the wheels above that the device image already provides (KINDS.md's package list).
IMAGE_HAS = {
    "absl-py", "attrs", "chex", "cloudpickle", "etils", "flax", "huggingface-hub", "jax", "jaxlib", "jinja2",
    "matplotlib", "msgpack", "numpy", "optax", "orbax-checkpoint", "pillow", "pyyaml", "requests", "rich",
    "scipy", "seaborn", "six", "tensorstore", "toolz", "typing-extensions", "wrapt", "tqdm", "psutil",
    "protobuf", "humanize", "aiofiles", "simplejson", "uvloop", "prometheus-client", "opt-einsum",
    "ml-dtypes", "pandas", "treescope", "fsspec", "filelock", "packaging", "importlib-resources", "zipp",
}

# Declared requirements that stay behind, and why (none is imported by our code; see the docstring).
LEFT_OUT = {
    "mujoco-studio": "MuJoCo's viewer/renderer (34 MB installed); mujoco imports it only inside try/except",
    "pyopengl": "rendering only",
    "glfw": "rendering only (mujoco.glfw, behind try/except)",
    "flask": "brax.io.html server only",
    "flask-cors": "brax.io.html server only",
    "tensorboardx": "brax.training only",
    "ml-collections": "brax.training only",
    "gast": "TFP's TensorFlow autograph, not the JAX substrate",
    "typing-inspect": "not needed on Python 3.12",
}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(path: str = LOCK) -> dict:
    out = {}
    with open(path) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if "==" in line:
                name, _, version = line.partition("==")
                out[norm(name)] = version.strip()
    return out


def pinned() -> list[str]:
    """``name==version`` for every wheel, versions from requirements.lock."""
    lock = locked_versions()
    missing = [w for w in WHEELS if norm(w) not in lock]
    if missing:
        raise RuntimeError(f"requirements.lock pins no version of {missing}")
    return [f"{w}=={lock[norm(w)]}" for w in WHEELS]


def wheel_files(d: str = WHEEL_DIR) -> dict:
    """{normalised distribution name: [file names]} of the wheels in ``d``."""
    out = {}
    if os.path.isdir(d):
        for f in sorted(os.listdir(d)):
            if f.endswith(".whl"):
                out.setdefault(norm(f.split("-")[0]), []).append(f)
    return out


TARGET_ENV = {"python_version": PYTHON_VERSION, "python_full_version": PYTHON_VERSION + ".3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def marker_applies(marker: str) -> bool:
    """Whether a requirement's environment marker holds on the device (CPython 3.12, Linux x86_64, no extras)."""
    marker = marker.strip()
    if not marker:
        return True
    try:
        from packaging.markers import Marker
    except ImportError:  # crude fallback: extras never apply, anything else is assumed to
        return "extra" not in marker
    return Marker(marker).evaluate(TARGET_ENV)


def requires(path: str) -> list[str]:
    """The Requires-Dist names of a wheel that apply on the device (no extras; markers evaluated)."""
    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode("utf-8", "replace")
    out = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req, _, marker = line.split(":", 1)[1].strip().partition(";")
        if marker_applies(marker):
            out.append(norm(re.split(r"[\s<>=!~\[(]", req.strip(), maxsplit=1)[0]))
    return out


def tree_bytes() -> int:
    """Bytes of what travels besides the wheels: tracked and untracked-not-ignored files."""
    try:
        files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                               capture_output=True, check=True).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        return 0
    total = 0
    for f in files:
        p = os.path.join(ROOT, f.decode())
        if f and os.path.isfile(p):
            total += os.path.getsize(p)
    return total


def check(d: str = WHEEL_DIR, env: bool = False) -> dict:
    """What is missing. Returns {missing_wheels, duplicates, unexpected, unresolved, not_importable, sizes}."""
    have = wheel_files(d)
    wanted = {norm(w) for w in WHEELS}
    report = {"wheel_dir": d, "missing_wheels": sorted(wanted - set(have)),
              "duplicates": {k: v for k, v in have.items() if len(v) > 1},
              "unexpected": sorted(set(have) - wanted), "unresolved": {}, "not_importable": []}
    provided = wanted | IMAGE_HAS | set(LEFT_OUT)
    for name, files in have.items():
        for req in requires(os.path.join(d, files[0])):
            if req not in provided:
                report["unresolved"].setdefault(req, []).append(name)
    wheels = sum(os.path.getsize(os.path.join(d, f)) for fs in have.values() for f in fs)
    tree = tree_bytes()
    report["sizes"] = {"wheels_bytes": wheels, "tree_bytes": tree, "total_bytes": wheels + tree,
                       "limit_bytes": LIMIT_BYTES, "fits": wheels + tree <= LIMIT_BYTES}
    if env:
        from importlib.metadata import PackageNotFoundError, version

        for name in sorted(wanted | (IMAGE_HAS & {"jax", "jaxlib", "flax", "optax", "chex", "orbax-checkpoint",
                                                   "numpy", "scipy", "matplotlib", "tqdm", "etils", "absl-py"})):
            try:
                version(name)
            except PackageNotFoundError:
                report["not_importable"].append(name)
    return report


def format_report(r: dict) -> str:
    mib = lambda b: f"{b / 2**20:.1f} MiB"
    s = r["sizes"]
    lines = [f"wheels in {os.path.relpath(r['wheel_dir'], ROOT)}: {mib(s['wheels_bytes'])}; working tree "
             f"{mib(s['tree_bytes'])}; together {mib(s['total_bytes'])} of {mib(s['limit_bytes'])} "
             f"({'fits' if s['fits'] else 'TOO LARGE'})"]
    for key, label in (("missing_wheels", "missing wheel"), ("unexpected", "unexpected wheel (not in the list)"),
                       ("not_importable", "not installed in this interpreter")):
        lines += [f"{label}: {n}" for n in r[key]]
    lines += [f"duplicate versions of {k}: {', '.join(v)} (keep one: two stop the install)"
              for k, v in r["duplicates"].items()]
    lines += [f"requirement {k} (of {', '.join(v)}) is neither carried, nor on the image, nor knowingly left out"
              for k, v in r["unresolved"].items()]
    ok = not (r["missing_wheels"] or r["duplicates"] or r["unresolved"] or r["not_importable"]) and s["fits"]
    lines.append("nothing missing" if ok else "something is missing (above)")
    return "\n".join(lines)


def download(d: str = WHEEL_DIR, pip: list[str] | None = None) -> int:
    """pip download every pinned wheel for CPython 3.12 manylinux x86_64 into ``d`` (no dependencies)."""
    os.makedirs(d, exist_ok=True)
    # A wheel of another version of a listed distribution would make two versions travel: remove it.
    pins = pinned()
    keep = {norm(p.split("==")[0]): p.split("==")[1] for p in pins}
    for name, files in wheel_files(d).items():
        for f in files:
            if name in keep and f.split("-")[1] != keep[name]:
                os.remove(os.path.join(d, f))
    cmd = (pip or [sys.executable, "-m", "pip"]) + [
        "download", "--no-deps", "--only-binary=:all:", "--python-version", PYTHON_VERSION,
        "--implementation", "cp", "-d", d, "-q"]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    return subprocess.call(cmd + pins)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_wheels", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="list what is missing; download nothing")
    p.add_argument("--env", action="store_true", help="with --check: also the distributions this interpreter lacks")
    p.add_argument("--dir", default=WHEEL_DIR, help="wheel folder (default .whl/)")
    a = p.parse_args(argv)
    if not a.check:
        rc = download(a.dir)
        if rc:
            print(f"pip download failed (exit {rc})", file=sys.stderr)
            return rc
    r = check(a.dir, env=a.env)
    print(format_report(r))
    for f in sorted(os.listdir(a.dir)) if os.path.isdir(a.dir) else []:
        print(f"  {os.path.getsize(os.path.join(a.dir, f)) / 2**20:6.2f} MiB  {f}")
    bad = r["missing_wheels"] or r["duplicates"] or r["unresolved"] or not r["sizes"]["fits"] or r["not_importable"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
