"""The results index's scan: which paper a folder belongs to, its files, its JSON and Markdown titles; every
path kept inside the repository and every page written atomically."""
from __future__ import annotations

import json
import os
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
    ("throughput", "Throughput: ours against Brax's trainer, eager PyTorch and rejax", "docs/throughput.md"),
)
OTHER = ("Other runs", None)

TABLE_EXT = {".md", ".csv", ".tsv"}
FIGURE_EXT = {".png", ".svg", ".pdf", ".jpg", ".jpeg", ".gif"}
# orbax's own files, and metarl's completion marker (metarl.driver.checkpoints: the folder is one checkpoint)
CHECKPOINT_MARKERS = {"_CHECKPOINT_METADATA", "_METADATA", "manifest.ocdbt", "_sharding", "commit_success.txt",
                      "COMPLETE.json"}
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
    """Write ``text`` to ``path`` whole (:func:`metarl.driver.write_text`: a temporary file, then ``os.replace``)."""
    from metarl.driver.records import write_text

    write_text(path, text)


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
