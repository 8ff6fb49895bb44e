"""Run records: timestamps, package versions, the device, strict JSON, atomic writes, a result file with its
record beside the figures, the named run scales, and a resumed run's identity check (the differences named
in one line)."""
from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np

from metarl import cli
from metarl.driver.errors import CheckpointError, CheckpointMissing, ConfigMismatch


# ----------------------------------------------------------------------------------------------------
# Run records: versions, device, strict JSON, atomic writes
# ----------------------------------------------------------------------------------------------------
def now() -> str:
    """The current UTC time as the run records write it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def package_versions() -> dict:
    """Installed versions of the packages a run's numbers depend on (absent ones left out)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in ("jax", "jaxlib", "flax", "optax", "brax", "gymnax", "jumanji", "chex", "distrax",
              "orbax-checkpoint", "numpy"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


def device_info() -> dict:
    """The JAX backend and devices the run uses."""
    import jax

    return {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "device_count": jax.device_count()}


def host_info() -> dict:
    """:func:`device_info` with the host's CPU count and 1-minute load (a loaded machine explains a slow figure)."""
    info = device_info()
    info["cpu_count"] = os.cpu_count()
    try:
        info["loadavg_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    return info


# Named run scales: ``quick`` (minutes on a 2-core CPU: `make bench`, CI smoke) and ``paper`` (the paper's
# budget, meant for an accelerator); an experiment may name others (``medium``).
SCALES = ("quick", "paper")


def check_scale(value: str, choices=SCALES) -> str:
    """``value`` if it is one of ``choices``, else a ValueError naming the bad value and the valid ones."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown scale {value!r}; valid scales: {', '.join(choices)}")
    return value


def jsonable(obj):
    """Plain JSON types, with every non-finite float as None (so the file is valid JSON for any reader)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic)) or ("jax" in sys.modules and isinstance(obj, sys.modules["jax"].Array)):
        return jsonable(np.asarray(obj).tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_norm(obj):
    """``obj`` as it reads back from JSON (tuples become lists, non-finite floats None)."""
    return json.loads(json.dumps(jsonable(obj)))


def write_text(path: str, text: str | bytes):
    """Atomic write of text or bytes, the folder created: a reader sees the old file or the whole new one,
    never a part (a temporary name in the same folder, then ``os.replace``; removed if the write fails).
    Every writer of the project goes through it."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        binary = isinstance(text, bytes)
        with open(tmp, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str, obj):
    """Atomic write (a reader never sees a half-written file) of strict JSON: NaN/inf become null."""
    write_text(path, json.dumps(jsonable(obj), indent=2, allow_nan=False,
                                default=lambda o: jsonable(np.asarray(o).tolist())))


def result_header(config=None, wall_time_s: float | None = None) -> dict:
    """What every result and summary file opens with: ``{"config", "versions" (packages and Python), "device"
    (:func:`host_info`), "wall_time_s", "written_at"}``. ``config`` may be a dataclass."""
    import dataclasses
    import platform

    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    return {"config": config, "versions": {**package_versions(), "python": platform.python_version()},
            "device": host_info(), "wall_time_s": wall_time_s, "written_at": now()}


def where_ran(record: dict) -> str:
    """``"cpu:0 (jax 0.10.2)"``: the first device and the jax version of a :func:`result_header`."""
    devices = (record.get("device") or {}).get("devices") or ["?"]
    return f"{devices[0]} (jax {(record.get('versions') or {}).get('jax', '?')})"


def write_result(path: str, results: dict, config=None, wall_time_s: float | None = None, **extra) -> dict:
    """A benchmark's result file: :func:`result_header` then ``**extra, **results``, as strict JSON, written
    whole. Returns the written object."""
    obj = {**result_header(config, wall_time_s), **extra, **results}
    write_json(path, obj)
    return json_norm(obj)


def metrics_csv(blocks: list, point: str = "eval_index") -> str:
    """Every run's metrics at every evaluation point as CSV, one row per (run, point). ``blocks``: a list of
    (runs, metrics): ``runs[r]`` the run's label columns (e.g. {"seed": 0}), ``metrics[name]`` an array
    [runs, points, ...] (trailing axes become columns ``name[j]``). Blocks may differ in their number of
    points and in their metrics (a metric a block lacks is an empty cell). Values in ``%.6g``, NaN as nan."""
    labels, columns, rows = [], [], []
    for runs, metrics in blocks:
        cols, vals = [], []
        for name in sorted(metrics):
            x = np.asarray(metrics[name], float)
            if x.ndim < 2 or x.shape[0] != len(runs):
                raise ValueError(f"metric {name!r} has shape {x.shape}; want [runs={len(runs)}, points, ...]")
            x = x.reshape(x.shape[:2] + (-1,))
            cols += [name] if x.shape[2] == 1 else [f"{name}[{j}]" for j in range(x.shape[2])]
            vals.append(x)
        points = sorted({v.shape[1] for v in vals})
        if len(points) > 1:
            raise ValueError(f"the metrics of one block have different numbers of points: {points}")
        labels += [k for k in dict.fromkeys(k for r in runs for k in r) if k not in labels]
        columns += [c for c in cols if c not in columns]
        for r, label in enumerate(runs):
            for e in range(points[0] if points else 0):
                rows.append((label, e, dict(zip(cols, (f"{float(v):.6g}" for x in vals for v in x[r, e])))))
    lines = [",".join(labels + [point] + columns)]
    lines += [",".join([str(lab.get(k, "")) for k in labels] + [str(e)] + [cells.get(c, "") for c in columns])
              for lab, e, cells in rows]
    return "\n".join(lines) + "\n"


def metrics_files(prefix: str = "") -> tuple[str, str]:
    """The two files :func:`write_metrics` writes: (``<prefix>metrics.csv``, ``<prefix>metrics.json``)."""
    return f"{prefix}metrics.csv", f"{prefix}metrics.json"


def metrics_json(blocks: list, point: str = "eval_index", **extra) -> dict:
    """The blocks of :func:`metrics_csv` as one JSON object, values at full precision: ``{"point": point,
    **extra, "blocks": [{"runs": [labels], "metrics": {name: [runs, points, ...]}}]}`` (NaN/inf written as
    null)."""
    return {"point": point, **extra,
            "blocks": [{"runs": [dict(r) for r in runs], "metrics": {k: np.asarray(v) for k, v in sorted(metrics.items())}}
                       for runs, metrics in blocks]}


def write_metrics(out_dir: str, blocks: list, point: str = "eval_index", prefix: str = "", **extra):
    """Every run's metrics at every evaluation point, written whole to ``out_dir``: ``<prefix>metrics.csv``
    (:func:`metrics_csv`, a row per run and point, ``%.6g``) and ``<prefix>metrics.json`` (:func:`metrics_json`,
    the same numbers at full precision, with ``extra`` fields). The layout is the same for every experiment."""
    csv_name, json_name = metrics_files(prefix)
    text = metrics_csv(blocks, point)  # checks the shapes before anything is written
    write_json(os.path.join(out_dir, json_name), metrics_json(blocks, point, **extra))
    write_text(os.path.join(out_dir, csv_name), text)


def read_json(path: str):
    """A JSON file, or a one-line :class:`CheckpointError` naming why it cannot be read."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {cli.one_line(e)}") from None


def as_array(x):
    """A JSON list back to an array (null -> NaN)."""
    a = np.asarray(x)
    return np.asarray(x, dtype=float) if a.dtype == object else a


def flat_diff(old, new, prefix="") -> list[str]:
    """``name (old -> new)`` for every differing leaf of two JSON-like dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            name = f"{prefix}{k}"
            if k not in old:
                out.append(f"{name} (unset -> {new[k]!r})")
            elif k not in new:
                out.append(f"{name} ({old[k]!r} -> unset)")
            else:
                out.extend(flat_diff(old[k], new[k], name + "."))
        return out
    return [] if old == new else [f"{prefix.rstrip('.')} ({old!r} -> {new!r})"]


def identity_diff(old, new, first: int = 6) -> str:
    """:func:`flat_diff` of two run identities as one line: the first ``first`` differences, '; '-joined."""
    diffs = flat_diff(old, new)
    return "; ".join(diffs[:first]) + (f"; and {len(diffs) - first} more" if len(diffs) > first else "")


def version_diff(meta: dict) -> list[str]:
    """Package versions that differ between a stored meta.json and this process (one entry if unrecorded)."""
    old = meta.get("versions")
    if old is None:
        return ["(not recorded: meta.json missing or without versions)"]
    return flat_diff(old, package_versions())


def read_stored_run(d: str) -> tuple[dict, dict]:
    """(config.json, meta.json or {}) of the run in ``d``; a one-line :class:`CheckpointMissing` without
    config.json."""
    path = os.path.join(d, "config.json")
    if not os.path.isfile(path):
        raise CheckpointMissing(f"no checkpoint to resume from in {d!r}: no config.json there (not a run "
                                "directory, or a run that never started); start it without --resume")
    meta_path = os.path.join(d, "meta.json")
    return read_json(path), (read_json(meta_path) if os.path.isfile(meta_path) else {})


def refuse_resume(d: str, diffs: list[str], vdiff: list[str], allow_version_change: bool, flag: str,
                  what: str = "config") -> list[str]:
    """Raise a one-line :class:`ConfigMismatch` naming ``diffs`` (settings) or, unless
    ``allow_version_change``, ``vdiff`` (package versions). Returns ``vdiff`` (to record in meta.json)."""
    if diffs:
        raise ConfigMismatch(f"cannot resume {d}: the {what} differs from the stored run's in "
                             f"{'; '.join(diffs)}; resume with the stored settings (config.json), or start a "
                             f"new run (another {flag}, or --overwrite)")
    if vdiff and not allow_version_change:
        raise ConfigMismatch(f"cannot resume {d}: package versions differ from the stored run's: "
                             f"{'; '.join(vdiff)}; pass --allow-version-change (allow_version_change=True) to "
                             "resume anyway (it is recorded in meta.json)")
    return vdiff
