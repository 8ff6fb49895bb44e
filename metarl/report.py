"""The generated results page: ``python -m metarl.report [--root results|reports] [--readme README.md]``.

Reads, under ``<root>`` (one folder per benchmark or experiment, as ``make bench`` writes them):

* every file, to list it: tables (``*.md``, ``*.csv``), figures (``*.png``, ``*.svg``, ``*.pdf``), run
  records and summaries (``*.json``) and anything else; an orbax checkpoint folder is one entry;
* every ``*.json`` outside checkpoints, for its run record: scale, seeds, device, package versions,
  wall time, compile time and time of writing, wherever the file has them (each benchmark names them
  a little differently; see ``run_record``);
* ``summary.json`` and ``*_summary.json``, for their compared rows: every object that carries
  ``"iqm"`` / ``"ci"`` / ``"verdict"`` (as ``metarl.stats.summary_row`` and a verdict write them),
  the ``iqm_a`` / ``ci_a`` / ``claim_verdict`` of ``metarl.stats.compare``, or a ``"target"`` / ``"met"``
  pair (the throughput targets). A row without an interval is shown as "no interval yet".

Writes ``<root>/index.md`` (every table and figure of every paper with its run record), and with
``--readme`` replaces the block between ``<!-- results:begin -->`` and ``<!-- results:end -->`` in that
file with the results-at-a-glance table, touching nothing outside the markers. Both are written
atomically (a temporary file in the same folder, then ``os.replace``).

It never reads outside the repository (``root`` and ``readme`` must resolve inside it, symbolic links
that lead out are listed but not followed or read) and imports neither jax nor matplotlib: it runs in
well under a second.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"

# Folder-name prefix -> (paper, docs page). The first matching prefix wins; others go under "Other runs".
PAPERS = (
    ("meta_critic", "Online Meta-Critic (Zhou et al., NeurIPS 2020)", "docs/online-meta-critic.md"),
    ("metagenrl", "MetaGenRL (Kirsch et al., ICLR 2020)", "docs/metagenrl.md"),
    ("model_based_critic", "Model-based meta-learning of critics (Bechtle et al., 2022)",
     "docs/model-based-meta-critic.md"),
    ("outer_value", "Outer value function for meta-gradients (Bonnet et al., 2022)",
     "docs/outer-value-function.md"),
    ("throughput", "Throughput: ours against Brax's trainer and eager PyTorch", "docs/throughput.md"),
)
OTHER = ("Other runs", None)

TABLE_EXT = {".md", ".csv", ".tsv"}
FIGURE_EXT = {".png", ".svg", ".pdf", ".jpg", ".jpeg", ".gif"}
CHECKPOINT_MARKERS = {"_CHECKPOINT_METADATA", "_METADATA", "manifest.ocdbt", "_sharding", "commit_success.txt"}
MAX_JSON_BYTES = 64 << 20  # larger JSON files are listed but not parsed
NO_INTERVAL = "no interval yet"
ROW_KEYS = {"iqm", "verdict", "claim_verdict", "iqm_a"}
LABEL_KEYS = ("label", "name", "row", "method", "metric", "agent", "variant")
CONTAINER_KEYS = {"rows", "summary", "table", "tables", "claims", "compared", "results", "targets"}
VERSION_KEYS = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "brax", "gymnax", "jumanji", "chex",
                "distrax", "numpy", "torch", "python")


# ---------------------------------------------------------------------------------------------------
# Safety: stay inside the repository, write atomically


def repo_root() -> Path:
    """The checkout this module belongs to (the folder above the ``metarl`` package)."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").exists() else Path.cwd().resolve()


def _inside(path: Path, repo: Path) -> bool:
    try:
        path.resolve().relative_to(repo.resolve())
        return True
    except ValueError:
        return False


def _check_inside(path: Path, repo: Path, what: str) -> Path:
    if not _inside(path, repo):
        raise SystemExit(f"metarl.report: {what} {str(path)!r} is outside the repository {str(repo)!r}; "
                         "refusing to read or write there")
    return path


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ---------------------------------------------------------------------------------------------------
# Scanning


def paper_of(folder: str) -> tuple[str, str | None]:
    folder = folder.replace("-", "_")  # reports/meta-critic-medium is the meta_critic paper's too
    for prefix, title, doc in PAPERS:
        if folder == prefix or folder.startswith(prefix + "_") or folder.startswith(prefix + "-"):
            return title, doc
    return OTHER


def _is_checkpoint(dirpath: Path, names: list[str]) -> bool:
    return bool(CHECKPOINT_MARKERS.intersection(names)) or any(n.startswith("ocdbt.process_") for n in names)


def list_files(folder: Path, repo: Path):
    """(files, checkpoints): relative paths of the plain files under ``folder`` and, for every orbax
    checkpoint folder, (relative folder, number of files in it). Links are not followed; one that leads
    outside the repository is listed with a note."""
    files, checkpoints = [], []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        d = Path(dirpath)
        if _is_checkpoint(d, filenames + dirnames):
            n = sum(len(fs) for _, _, fs in os.walk(d, followlinks=False))
            checkpoints.append((d.relative_to(folder).as_posix(), n))
            dirnames[:] = []
            continue
        dirnames.sort()
        for name in sorted(filenames):
            p = d / name
            if ".tmp" in name:  # a writer's temporary file, mid-flight
                continue
            files.append(p.relative_to(folder).as_posix())
        # links to folders are not walked (followlinks=False) but are listed, so nothing is hidden
        for name in dirnames:
            if (d / name).is_symlink():
                files.append((d / name).relative_to(folder).as_posix())
    return files, checkpoints


def load_json(path: Path, repo: Path):
    """The parsed JSON, or a string saying why not (too large, unreadable, outside the repository)."""
    if path.is_symlink() and not _inside(path, repo):
        return "not read: a link that leads outside the repository"
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"not read: {e.strerror}"
    if size > MAX_JSON_BYTES:
        return f"not read: {size / 2**20:.0f} MiB"
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return f"not read: {type(e).__name__}"


def md_title(path: Path, repo: Path) -> str | None:
    """The first markdown heading in the first 4 KB of a table file, if any."""
    if path.suffix != ".md" or (path.is_symlink() and not _inside(path, repo)):
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return None
    for line in head.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip() or None
    return None


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
        elif kl == "environment" and isinstance(v, dict) and "jax" in v:  # outer-value environment_record
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
        if "compile" in str(k).lower():
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


# ---------------------------------------------------------------------------------------------------
# The page


def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _link(text: str, target: str) -> str:
    return f"[{_cell(text)}]({target.replace(' ', '%20')})"


def scan(root: Path, repo: Path) -> list[dict]:
    """One entry per folder under ``root`` (plus one for files directly in ``root``)."""
    root = Path(root)
    if not root.is_dir():
        return []
    entries = []
    top = sorted(p for p in root.iterdir())
    loose = [p.name for p in top if not p.is_dir() and p.name != "index.md" and ".tmp" not in p.name]
    folders = [p for p in top if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]
    linked = [p.name for p in top if p.is_dir() and p.is_symlink()]
    for folder in folders:
        files, checkpoints = list_files(folder, repo)
        paper, doc = paper_of(folder.name)
        records, rows, tables, figures, others = [], [], [], [], []
        for rel in files:
            p = folder / rel
            ext = p.suffix.lower()
            if ext == ".json":
                obj = load_json(p, repo)
                rec = run_record(obj) if isinstance(obj, dict) else {}
                records.append((rel, rec, obj if isinstance(obj, str) else None))
                if (p.name == "summary.json" or p.name.endswith("_summary.json")) and not isinstance(obj, str):
                    rows += [(rel, label, d) for label, d in find_rows(obj)]
            elif ext in TABLE_EXT:
                tables.append((rel, md_title(p, repo)))
            elif ext in FIGURE_EXT:
                figures.append(rel)
            else:
                others.append(rel)
        entries.append(dict(name=folder.name, paper=paper, doc=doc, files=files, checkpoints=checkpoints,
                            records=records, rows=rows, tables=tables, figures=figures, others=others))
    if loose or linked:
        entries.append(dict(name="", paper=OTHER[0], doc=None, files=loose + linked, checkpoints=[],
                            records=[], rows=[], tables=[], figures=[], others=loose + linked))
    return entries


def _order(entries):
    rank = {title: i for i, (_, title, _) in enumerate(PAPERS)}
    return sorted(entries, key=lambda e: (rank.get(e["paper"], len(PAPERS)), e["name"]))


def index_markdown(entries, root: Path, repo: Path, command: str) -> str:
    n_files = sum(len(e["files"]) for e in entries)
    n_ck = sum(len(e["checkpoints"]) for e in entries)
    lines = ["# Results index", "",
             f"Generated by `{command}` from the files under `{_rel(root, repo)}/`; rewritten on every run, "
             "do not edit by hand.", "",
             f"{len([e for e in entries if e['name']])} folders, {n_files} files"
             + (f", {n_ck} checkpoint folders" if n_ck else "") + ". "
             "Ours is the interquartile mean (IQM) over seeds with its 95% stratified-bootstrap interval "
             "where the summary has one; \"" + NO_INTERVAL + "\" marks a figure without an interval.", ""]
    if not entries:
        lines += ["Nothing here yet: `make bench` writes one folder per benchmark.", ""]
    paper = None
    for e in _order(entries):
        if e["paper"] != paper:
            paper = e["paper"]
            lines += [f"## {paper}", ""]
            if e["doc"]:
                lines += [f"Method notes, deviations and what does not reproduce: "
                          f"{_link(e['doc'], os.path.relpath(repo / e['doc'], root).replace(os.sep, '/'))}", ""]
        base = f"{e['name']}/" if e["name"] else ""
        lines += [f"### `{base or './'}`", ""]
        data = []
        for rel, rec, why in e["records"]:
            if rec or why:
                lines.append(f"- run record {_link(rel, base + rel)}: {_cell(why or format_record(rec))}")
            else:
                data.append(rel)
        if len(data) < len(e["records"]):
            lines.append("")
        if e["rows"]:
            lines += ["| row | ours: IQM [95% CI] | reference | verdict | from |", "|---|---|---|---|---|"]
            for rel, label, d in e["rows"]:
                r = describe_row(d)
                lines.append(f"| {_cell(label)} | {_cell(r['ours'])} | {_cell(r['reference'])} | "
                             f"{_cell(r['verdict'])} | {_link(rel, base + rel)} |")
            lines.append("")
        if e["tables"]:
            lines.append("Tables:")
            for rel, title in e["tables"]:
                lines.append(f"- {_link(rel, base + rel)}" + (f": {_cell(title)}" if title else ""))
            lines.append("")
        if e["figures"]:
            lines.append("Figures:")
            lines += [f"- {_link(rel, base + rel)}" for rel in e["figures"]]
            lines.append("")
        if data:
            lines.append("Data (JSON without run-record fields):")
            lines += [f"- {_link(rel, base + rel)}" for rel in data]
            lines.append("")
        if e["others"] or e["checkpoints"]:
            lines.append("Other files:")
            lines += [f"- {_link(rel, base + rel)}" for rel in e["others"] if rel not in
                      {r for r, *_ in e["records"]}]
            lines += [f"- {_link(rel + '/', base + rel)}: checkpoint ({n} files)" for rel, n in e["checkpoints"]]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _rel(path: Path, repo: Path) -> str:
    try:
        return Path(path).resolve().relative_to(repo.resolve()).as_posix() or "."
    except ValueError:
        return str(path)


def glance_markdown(entries, root: Path, readme: Path, repo: Path, command: str, max_rows: int = 30) -> str:
    """The README block: verdict counts per paper, then the compared rows (at most ``max_rows``)."""
    rootrel = os.path.relpath(root, readme.parent).replace(os.sep, "/")
    head = [f"_Generated by `{command}` from `{_rel(root, repo)}/*/summary.json`; do not edit between the "
            "markers. Ours: IQM over seeds [95% stratified-bootstrap CI]._", ""]
    entries = [e for e in _order(entries) if e["name"]]
    if not entries:
        return "\n".join(head + [f"No reports under `{_rel(root, repo)}/` yet. `make bench` writes "
                                 "`results/` and `make report` indexes it (`results/index.md`); each paper's "
                                 "page under `docs/` states what reproduces at which scale."]) + "\n"
    counts: dict = {}
    for e in entries:
        c = counts.setdefault(e["paper"], {"doc": e["doc"], "folders": [], "rows": 0, "no_interval": 0,
                                           "verdicts": {}})
        c["folders"].append(e["name"])
        for _, _, d in e["rows"]:
            r = describe_row(d)
            c["rows"] += 1
            c["no_interval"] += not r["has_interval"]
            c["verdicts"][r["verdict"]] = c["verdicts"].get(r["verdict"], 0) + 1
    lines = head + ["| paper | folders | compared rows | verdicts |", "|---|---|---|---|"]
    for paper, c in counts.items():
        title = _link(paper, c["doc"]) if c["doc"] else _cell(paper)
        folders = ", ".join(_link(f, f"{rootrel}/{f}/") for f in c["folders"])
        if c["rows"]:
            order = {k: i for i, k in enumerate(("reproduces", "contradicts", "inconclusive at this scale"))}
            v = ", ".join(f"{k} {n}" for k, n in sorted(c["verdicts"].items(),
                                                         key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
            if c["no_interval"]:
                v += f"; {c['no_interval']} with {NO_INTERVAL}"
        else:
            v = NO_INTERVAL
        lines.append(f"| {title} | {folders} | {c['rows']} | {_cell(v)} |")
    rows = [(e, rel, label, d) for e in entries for rel, label, d in e["rows"]]
    if rows:
        lines += ["", "| paper | row | ours: IQM [95% CI] | reference | verdict |", "|---|---|---|---|---|"]
        short = {title: title.split(" (")[0].split(":")[0] for _, title, _ in PAPERS}
        for e, rel, label, d in rows[:max_rows]:
            r = describe_row(d)
            target = f"{rootrel}/{e['name']}/{rel}"
            lines.append(f"| {_cell(short.get(e['paper'], e['paper']))} | {_link(label, target)} | "
                         f"{_cell(r['ours'])} | {_cell(r['reference'])} | {_cell(r['verdict'])} |")
        if len(rows) > max_rows:
            lines.append(f"\n{len(rows) - max_rows} more rows: {_link(f'{rootrel}/index.md', f'{rootrel}/index.md')}.")
    lines += ["", f"Every table, figure and run record: {_link(f'{_rel(root, repo)}/index.md', f'{rootrel}/index.md')}."]
    return "\n".join(lines) + "\n"


def replace_block(text: str, block: str) -> str:
    """``text`` with everything strictly between the two markers replaced by ``block``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"expected exactly one {BEGIN!r} and one {END!r} (found {text.count(BEGIN)} and "
                         f"{text.count(END)})")
    i, j = text.index(BEGIN) + len(BEGIN), text.index(END)
    if j < i:
        raise ValueError(f"{END!r} comes before {BEGIN!r}")
    return text[:i] + "\n" + block.rstrip("\n") + "\n" + text[j:]


def build(root, readme=None, repo=None, max_rows: int = 30, command: str | None = None) -> dict:
    """Scan ``root``, write ``root/index.md`` (when ``root`` exists) and, with ``readme``, its block.

    Returns ``{"entries", "index", "readme", "readme_changed"}`` (the paths, None where nothing was
    written)."""
    repo = Path(repo).resolve() if repo is not None else repo_root()
    root = _check_inside(Path(root) if Path(root).is_absolute() else Path.cwd() / root, repo, "root")
    command = command or f"python -m metarl.report --root {_rel(root, repo)}" + (
        f" --readme {_rel(Path(readme) if Path(readme).is_absolute() else Path.cwd() / readme, repo)}"
        if readme else "")
    entries = scan(root, repo)
    out = {"entries": entries, "index": None, "readme": None, "readme_changed": False}
    if root.is_dir():
        write_atomic(root / "index.md", index_markdown(entries, root, repo, command))
        out["index"] = root / "index.md"
    if readme is not None:
        readme = _check_inside(Path(readme) if Path(readme).is_absolute() else Path.cwd() / readme, repo,
                               "readme")
        text = readme.read_text(encoding="utf-8")
        new = replace_block(text, glance_markdown(entries, root, readme, repo, command, max_rows))
        if new != text:
            write_atomic(readme, new)
        out["readme"], out["readme_changed"] = readme, new != text
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m metarl.report", description=__doc__.splitlines()[0])
    p.add_argument("--root", default="results", help="folder of results (results, or the tracked reports)")
    p.add_argument("--readme", default=None, help=f"file whose {BEGIN} ... {END} block to rewrite")
    p.add_argument("--max-rows", type=int, default=30, help="compared rows shown in the README block")
    a = p.parse_args(argv)
    try:
        out = build(a.root, a.readme, max_rows=a.max_rows)
    except ValueError as e:
        print(f"metarl.report: {e}", file=sys.stderr)
        return 2
    n = sum(len(e["files"]) for e in out["entries"])
    print(f"metarl.report: {len(out['entries'])} folders, {n} files under {a.root}"
          + (f"; wrote {out['index']}" if out["index"] else f"; {a.root} does not exist, no index written")
          + ((f"; updated the results block of {out['readme']}" if out["readme_changed"]
              else f"; the results block of {out['readme']} is up to date") if out["readme"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
