"""Checkpoints written whole, swapped in atomically, hashed, and restored from the newest complete one."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from typing import Callable

import numpy as np

from metarl import cli
from metarl.driver.errors import CheckpointError, CheckpointMismatch, CheckpointMissing
from metarl.driver.records import read_json, write_json


# ----------------------------------------------------------------------------------------------------
# Checkpoints: written whole, swapped in atomically, hashed, restored from the newest complete one
# ----------------------------------------------------------------------------------------------------
MARKER = "COMPLETE.json"


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def array_sha256(a) -> str:
    """sha256 of an array's bytes, with its dtype and shape."""
    a = np.ascontiguousarray(np.asarray(a))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def leaf_hashes(tree) -> dict:
    """sha256 of every array's bytes (with its dtype and shape), keyed by its path in the pytree."""
    import jax

    return {jax.tree_util.keystr(path): array_sha256(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]}


def file_hashes(root: str) -> dict:
    """sha256 of every file under ``root`` but the marker, keyed by relative path."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            full = os.path.join(d, f)
            rel = os.path.relpath(full, root)
            if rel != MARKER:
                out[rel] = sha256_file(full)
    return out


def leaf_shapes(tree) -> dict:
    """``dtype[shape]`` of every array (or ShapeDtypeStruct), keyed by its path in the pytree."""
    import jax

    return {jax.tree_util.keystr(path): f"{np.dtype(leaf.dtype)}{list(np.shape(leaf))}"
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def checkpoint_names(ckpt_dir: str) -> tuple[str, ...]:
    """The folders one checkpoint may occupy: itself, its ``.partial`` (a save under way) and ``.old``."""
    return tuple(ckpt_dir + s for s in ("", ".partial", ".old"))


CHECKPOINT_NAMES = checkpoint_names("checkpoint")  # a run directory's checkpoint folders


def has_checkpoint(ckpt_dir: str) -> bool:
    """Whether there is a checkpoint to resume from, or to refuse in one line: ``checkpoint`` or
    ``checkpoint.old`` (complete or not), or a complete ``checkpoint.partial``. A ``checkpoint.partial``
    without its marker alone is a first save cut short (a kill, a crash): nothing was checkpointed yet."""
    return (os.path.exists(ckpt_dir) or os.path.exists(ckpt_dir + ".old") or
            os.path.isfile(os.path.join(ckpt_dir + ".partial", MARKER)))


def remove_checkpoint(ckpt_dir: str):
    """Remove a checkpoint and its ``.partial`` / ``.old`` folders."""
    for p in checkpoint_names(ckpt_dir):
        shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(ckpt_dir: str, state, chunk: int, progress: dict, arrays: dict | None = None,
                    on_open: Callable | None = None, files: dict | None = None):
    """Write ``<ckpt_dir>.partial`` whole (orbax ``state`` unless it has no arrays, ``arrays.npz`` if
    ``arrays``, each of ``files`` ({name: bytes}), ``progress.json`` = {"chunk": chunk, **progress}, then
    COMPLETE.json with the sha256 of every file and array and every array's dtype and shape), then swap
    it in: checkpoint -> checkpoint.old, checkpoint.partial -> checkpoint. A kill at any moment leaves a
    complete checkpoint somewhere. ``on_open(checkpointer or None)`` lets a caller close an async write
    that a second SIGINT abandons."""
    import jax
    import orbax.checkpoint as ocp

    tmp = ckpt_dir + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    if jax.tree.leaves(state):
        ckpt = ocp.StandardCheckpointer()
        if on_open is not None:
            on_open(ckpt)
        try:
            ckpt.save(os.path.abspath(os.path.join(tmp, "state")), state)  # orbax takes absolute paths only
            ckpt.wait_until_finished()
        finally:
            ckpt.close()
            if on_open is not None:
                on_open(None)
    if arrays is not None:
        with open(os.path.join(tmp, "arrays.npz"), "wb") as f:
            np.savez(f, **arrays)
    for name, data in (files or {}).items():
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
    write_json(os.path.join(tmp, "progress.json"), {"chunk": chunk, **progress})
    write_json(os.path.join(tmp, MARKER), {"format": 1, "chunk": chunk, "files": file_hashes(tmp),
                                           "leaves": leaf_hashes(state), "shapes": leaf_shapes(state)})
    old = ckpt_dir + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(ckpt_dir):
        os.replace(ckpt_dir, old)
    os.replace(tmp, ckpt_dir)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(ckpt_dir: str, where: str) -> tuple[str, dict]:
    """The newest complete checkpoint among checkpoint, checkpoint.partial, checkpoint.old: (path,
    marker). ``where`` names the run directory in the one-line :class:`CheckpointMissing`."""
    found, present = [], []
    for path in (ckpt_dir, ckpt_dir + ".partial", ckpt_dir + ".old"):
        if not os.path.exists(path):
            continue
        present.append(os.path.basename(path))
        if os.path.isfile(os.path.join(path, MARKER)):
            marker = read_json(os.path.join(path, MARKER))
            if not isinstance(marker, dict) or not {"chunk", "files", "leaves"} <= set(marker):
                raise CheckpointError(f"checkpoint marker {os.path.join(path, MARKER)} is malformed")
            found.append((marker["chunk"], -len(found), path, marker))
    if not found:
        what = (f" ({', '.join(present)} present but without {MARKER}: a save that did not finish)"
                if present else "")
        raise CheckpointMissing(f"no checkpoint to resume from in {where!r}{what}; start it again "
                                "with --overwrite")
    _, _, path, marker = max(found)
    return path, marker


def check_shapes(name: str, marker: dict, abstract):
    """A one-line :class:`CheckpointMismatch` when the checkpoint's arrays (its marker's record) are not
    those of ``abstract``: another count, another path, another dtype or shape (the first one named)."""
    if "shapes" not in marker:
        return
    have, want = marker["shapes"], leaf_shapes(abstract)
    if len(have) != len(want):
        raise CheckpointMismatch(f"checkpoint {name} holds {len(have)} arrays, this program's state has {len(want)}")
    for leaf, shape in want.items():
        if leaf not in have:
            raise CheckpointMismatch(f"checkpoint {name} has no array {leaf} (this program's state has; it holds "
                                     f"{', '.join(sorted(set(have) - set(want))[:3])})")
        if have[leaf] != shape:
            raise CheckpointMismatch(f"checkpoint {name}: array {leaf} is {have[leaf]}, this program's state wants "
                                     f"{shape}")


def restore_checkpoint(ckpt_dir: str, abstract, where: str):
    """Restore the newest complete checkpoint into the shapes of ``abstract`` (a pytree of
    ShapeDtypeStruct), checking the sha256 of every file and array first. Returns (state, progress
    dict, arrays dict or None, path); any mismatch is a one-line :class:`CheckpointError` (arrays that
    are intact but not of ``abstract``'s shapes: its subclass :class:`CheckpointMismatch`)."""
    import jax
    import orbax.checkpoint as ocp

    path, marker = find_checkpoint(ckpt_dir, where)
    name = os.path.relpath(path, os.path.dirname(ckpt_dir))
    for rel, digest in sorted(marker["files"].items()):
        full = os.path.join(path, rel)
        if not os.path.isfile(full):
            raise CheckpointError(f"checkpoint file {os.path.join(name, rel)} is missing")
        if sha256_file(full) != digest:
            raise CheckpointError(f"checkpoint file {os.path.join(name, rel)} does not match its recorded "
                                  f"sha256 (corrupted on disk); refusing to resume from it")
    check_shapes(name, marker, abstract)
    if not jax.tree.leaves(abstract):
        state = abstract
    else:
        try:
            with ocp.StandardCheckpointer() as ckpt:
                state = ckpt.restore(os.path.abspath(os.path.join(path, "state")), abstract)
        except Exception as e:  # orbax/tensorstore errors are long; the first line names the cause
            raise CheckpointError(f"cannot read checkpoint {name}: {cli.one_line(str(e).splitlines()[0] if str(e) else e)[:300]}") from None
    leaves = leaf_hashes(state)
    if set(leaves) != set(marker["leaves"]):
        raise CheckpointError(f"checkpoint {name} holds other arrays than recorded: "
                              f"{sorted(set(leaves) ^ set(marker['leaves']))[:3]}")
    for leaf, digest in leaves.items():
        if marker["leaves"][leaf] != digest:
            raise CheckpointError(f"checkpoint {name}: array {leaf} does not match its recorded sha256 "
                                  "(corrupted); refusing to resume from it")
    progress = read_json(os.path.join(path, "progress.json"))
    if progress.get("chunk") != marker["chunk"]:
        raise CheckpointError(f"checkpoint {name}: progress.json says chunk {progress.get('chunk')}, "
                              f"{MARKER} says {marker['chunk']}")
    arrays = None
    if os.path.isfile(os.path.join(path, "arrays.npz")):
        with np.load(os.path.join(path, "arrays.npz"), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    return state, progress, arrays, path


def checkpoint_progress(ckpt_dir: str) -> dict:
    """progress.json of the newest complete checkpoint (its "chunk" and what its writer added), without
    restoring it; a one-line :class:`CheckpointMissing` if there is none."""
    path, _ = find_checkpoint(ckpt_dir, os.path.dirname(ckpt_dir))
    return read_json(os.path.join(path, "progress.json"))


def promote_checkpoint(ckpt_dir: str, path: str):
    """After resuming from checkpoint.partial / .old, make it ``checkpoint`` again (drop the rest)."""
    if path != ckpt_dir:
        if os.path.exists(ckpt_dir):
            shutil.rmtree(ckpt_dir)
        os.replace(path, ckpt_dir)
    for other in (ckpt_dir + ".partial", ckpt_dir + ".old"):
        shutil.rmtree(other, ignore_errors=True)


def abandon_partial(ckpt_dir: str, checkpointer=None):
    """Drop a checkpoint.partial without its marker (a save cut short); complete ones stay."""
    if checkpointer is not None:
        with contextlib.suppress(BaseException):
            checkpointer.close()
    tmp = ckpt_dir + ".partial"
    if os.path.isdir(tmp) and not os.path.isfile(os.path.join(tmp, MARKER)):
        shutil.rmtree(tmp, ignore_errors=True)
