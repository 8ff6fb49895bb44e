"""What the results index reads from a run's JSON: its record (versions, device, compile and wall time)
and its compared rows (IQM, interval, verdict)."""
from __future__ import annotations

import math

from metarl.report.scan import CONTAINER_KEYS, LABEL_KEYS, NO_INTERVAL, ROW_KEYS, VERSION_KEYS


# ---------------------------------------------------------------------------------------------------
# Run records


def _bfs(obj, max_depth=3):
    """(key, value, depth) for every dict entry, breadth first, so top-level keys come first."""
    level, depth = [obj], 0
    while level and depth <= max_depth:
        nxt = []
        for o in level:
            if isinstance(o, dict):
                for k, v in o.items():
                    yield k, v, depth
                    if isinstance(v, dict):
                        nxt.append(v)
        level, depth = nxt, depth + 1


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _device(v) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        backend = v.get("backend") or v.get("platform")
        devs = v.get("devices")
        first = devs[0] if isinstance(devs, list) and devs else None
        count = v.get("device_count") or (len(devs) if isinstance(devs, list) else None)
        parts = [str(backend)] if backend else []
        if first:
            parts.append(f"{first}" + (f" x{count}" if count and count > 1 else ""))
        return " ".join(parts) or None
    return None


def run_record(obj) -> dict:
    """Scale, seeds, device, versions, wall / compile time and time of writing, from any of the shapes
    the benchmarks write (top level first, then nested ``config`` / ``environment`` / ``meta`` ...)."""
    if not isinstance(obj, dict):
        return {}
    rec: dict = {}
    compile_times: dict = {}
    for k, v, depth in _bfs(obj):
        kl = str(k).lower()
        if kl == "scale" and isinstance(v, str):
            rec.setdefault("scale", v)
        elif kl in ("seeds", "num_seeds", "n_seeds") and "seeds" not in rec:
            if _num(v) is not None:
                rec["seeds"] = int(v)
            elif isinstance(v, list) and v and all(_num(x) is not None for x in v):
                rec["seeds"] = len(v)
        elif kl == "device" and "device" not in rec:
            d = _device(v)
            if d:
                rec["device"] = d
        elif kl in ("backend", "platform") and isinstance(v, str) and depth == 0:
            rec.setdefault("backend", v)
        elif kl in ("versions", "package_versions") and isinstance(v, dict) and "versions" not in rec:
            rec["versions"] = {str(a): str(b) for a, b in v.items() if isinstance(b, (str, int, float))}
        elif kl == "environment" and isinstance(v, dict) and "jax" in v:  # outer-value result.json written before result_header
            rec.setdefault("versions", {a: str(v[a]) for a in VERSION_KEYS if a in v})
            if "device" in v:
                rec.setdefault("device", _device(v["device"]))
        elif kl in ("wall_time_s", "wall_s") and _num(v) is not None and depth <= 1:
            rec.setdefault("wall_s", float(v))
        elif kl == "written_at" and isinstance(v, str):
            rec.setdefault("written_at", v)
    if "device" not in rec and "backend" in rec:
        rec["device"] = rec["backend"]
    rec.pop("backend", None)
    _compile_times(obj, [], compile_times)
    if compile_times:
        rec["compile"] = dict(list(compile_times.items())[:6])
    return rec


def _compile_times(obj, path, out, depth=0):
    """Every number (or dict of numbers) under a key that names compilation, with its dotted key path,
    down to three levels and outside ``config``."""
    if not isinstance(obj, dict) or depth > 3:
        return
    for k, v in obj.items():
        key = ".".join(path + [str(k)])
        if "compile" in str(k).lower() and "compiled" not in str(k).lower():  # a time, not a count of programs
            if _num(v) is not None:
                out.setdefault(key, float(v))
            elif isinstance(v, dict) and v and all(_num(x) is not None for x in v.values()):
                out.setdefault(key, {str(a): float(b) for a, b in v.items()})
        elif isinstance(v, dict) and k not in ("config", "versions", "device", "environment"):
            _compile_times(v, path + [str(k)], out, depth + 1)


def _fmt_s(x: float) -> str:
    return f"{x:.0f} s" if x >= 10 else f"{x:.1f} s"


def format_record(rec: dict) -> str:
    parts = []
    if "scale" in rec:
        parts.append(f"scale {rec['scale']}")
    if "seeds" in rec:
        parts.append(f"{rec['seeds']} seeds")
    if rec.get("device"):
        parts.append(f"device {rec['device']}")
    if "wall_s" in rec:
        parts.append(f"wall {_fmt_s(rec['wall_s'])}")
    for k, v in rec.get("compile", {}).items():
        if isinstance(v, dict):
            parts.append(f"{k}: " + ", ".join(f"{a} {_fmt_s(b)}" for a, b in v.items()))
        else:
            parts.append(f"{k} {_fmt_s(v)}")
    if rec.get("versions"):
        vs = rec["versions"]
        keys = [k for k in VERSION_KEYS if k in vs] + sorted(k for k in vs if k not in VERSION_KEYS)
        parts.append("versions " + ", ".join(f"{k} {vs[k]}" for k in keys))
    if "written_at" in rec:
        parts.append(f"written {rec['written_at']}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------------
# Compared rows


def _is_row(d: dict) -> bool:
    return bool(ROW_KEYS.intersection(d)) or ("target" in d and "met" in d)


def _label(d: dict, path: list[str]) -> str:
    """The row's key path without container names and list indices, plus its own name field when it
    sits in a list (or the path says nothing)."""
    trail = [p for p in path if p not in CONTAINER_KEYS and not p.isdigit()]
    named = next((str(d[k]) for k in LABEL_KEYS if isinstance(d.get(k), (str, int, float)) and str(d[k])), None)
    if named is None and isinstance(d.get("claim"), str):
        named = d["claim"]
    if named is not None and (not path or path[-1].isdigit() or not trail):
        trail = trail + [named]
    return " / ".join(trail) or "/".join(path) or "(top level)"


def find_rows(obj, path=None, depth=0) -> list[tuple[str, dict]]:
    """Every compared row in a summary, with a label built from its keys, in document order."""
    path = path or []
    out = []
    if depth > 8:
        return out
    if isinstance(obj, dict):
        if path and _is_row(obj):
            return [(_label(obj, path), obj)]
        for k, v in obj.items():
            if k in ("config", "versions", "device", "environment", "package_versions"):
                continue
            out += find_rows(v, path + [str(k)], depth + 1)
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        for i, v in enumerate(obj):
            out += find_rows(v, path + [str(i)], depth + 1)
    return out


def _g(x) -> str:
    if _num(x) is None:
        return str(x)
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.3g}"
    return f"{x:.4g}"


def _interval(ci) -> str | None:
    if isinstance(ci, dict) and "ci" in ci:
        ci = ci["ci"]
    if isinstance(ci, (list, tuple)) and len(ci) in (2, 3) and all(_num(c) is not None for c in ci):
        return f"[{_g(ci[-2])}, {_g(ci[-1])}]"
    return None


def describe_row(d: dict) -> dict:
    """``{"ours", "reference", "verdict", "has_interval"}`` as display strings."""
    stats_compare = "iqm_a" in d or "claim_verdict" in d
    point = d.get("iqm_a", d.get("iqm")) if stats_compare else d.get("iqm")
    ci = d.get("ci_a", d.get("ci")) if stats_compare else d.get("ci")
    n = d.get("n_a", d.get("n")) if stats_compare else d.get("n")
    iv = _interval(ci)
    if point is not None:
        ours = f"{_g(point)} {iv if iv else '(' + NO_INTERVAL + ')'}"
    elif "ratio" in d:
        ours = f"{_g(d['ratio'])} ({NO_INTERVAL})" if d["ratio"] is not None else "not measured"
    elif "mean" in d:
        ours = f"mean {_g(d['mean'])} ({NO_INTERVAL})"
    else:
        ours = NO_INTERVAL
    if _num(n) is not None:
        ours += f", n={int(n)}"
    refs = []
    for key, name in (("paper", "paper"), ("paper_value", "paper"), ("paper_figure", "paper"),
                      ("target", "target"), ("threshold", "threshold")):
        if key in d and d[key] is not None and not isinstance(d[key], (dict, list)):
            refs.append(f"{name} {_g(d[key])}")
    if "iqm_b" in d:
        ib = _interval(d.get("ci_b"))
        refs.append(f"{d.get('baseline_name') or 'baseline'} {_g(d['iqm_b'])}" + (f" {ib}" if ib else ""))
    if "p_improvement" in d:
        pi = _interval(d.get("p_improvement_ci"))
        refs.append(f"P(improvement) {_g(d['p_improvement'])}" + (f" {pi}" if pi else ""))
    if isinstance(d.get("claim"), str) and d["claim"]:
        refs.append(f"claim: {d['claim']}")
    verdict = d.get("claim_verdict", d.get("verdict"))
    if verdict is None and "met" in d:
        verdict = "no target measured" if d["met"] is None else ("target met" if d["met"] else "target missed")
    return {"ours": ours, "reference": "; ".join(refs) or "-", "verdict": str(verdict) if verdict is not None
            else "no verdict yet", "has_interval": point is not None and iv is not None}
