"""One-file checkpoints for the segment loops (MetaGenRL, EPG, RL^2, PPO-LIRPG): a pytree's arrays and JSON
metadata in one .npz, each array's sha256 recorded beside it and checked on load.

The file is written under a temporary name and renamed into place, so a kill leaves the previous checkpoint
or the new one, never half of one. On load, a file that cannot be read, an array whose bytes no longer match
its recorded sha256 (flipped on disk), or arrays of other shapes than the program's state are each one line
(:class:`metarl.driver.CheckpointError`), never a silent resume from garbage. (The off-policy Runner and the
Chain/Snake Driver keep orbax directories with a completion marker: metarl.driver.save_checkpoint.)
"""
from __future__ import annotations

import io
import json
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

from metarl.driver import CheckpointError, CheckpointMismatch, array_sha256, write_text

FORMAT = "metarl-npz-1"


def save(path: str, tree, meta: dict | None = None, arrays: dict | None = None):
    """Write every leaf of ``tree`` and ``meta`` (JSON; numpy values become lists, NaN is kept, so a history
    reads back value for value) to ``path``, with the sha256 of each leaf, whole: a temporary file renamed
    into place. ``arrays``: named arrays of any shape beside the tree (e.g. a stacked history), hashed too."""
    leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]
    arrays = {k: np.asarray(v) for k, v in (arrays or {}).items()}
    head = json.dumps({"format": FORMAT, "meta": meta or {}, "leaves": len(leaves),
                       "sha256": [array_sha256(a) for a in leaves],
                       "arrays": {k: array_sha256(a) for k, a in arrays.items()}},
                      default=lambda o: np.asarray(o).tolist())
    buf = io.BytesIO()
    np.savez(buf, __head__=np.frombuffer(head.encode(), np.uint8), **{f"leaf_{i:05d}": a for i, a in enumerate(leaves)},
             **{f"array_{k}": a for k, a in arrays.items()})
    write_text(path, buf.getvalue())


def read_meta(path: str) -> dict:
    """The JSON metadata of a checkpoint, without its arrays (one-line CheckpointError if unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            head = json.loads(z["__head__"].tobytes().decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {' '.join(str(e).split())[:200]}") from None
    if head.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} file (written by an older metarl?)")
    return head.get("meta", {})


def load(path: str, like):
    """(tree, meta, arrays) from :func:`save`, the tree in the structure of ``like`` (a pytree of arrays or
    ShapeDtypeStructs). Every leaf's sha256, count, shape and dtype are checked first; any mismatch is a
    one-line :class:`CheckpointError` naming the file and the first bad array (arrays that are intact but do
    not fit ``like``: its subclass :class:`CheckpointMismatch`)."""
    name = os.path.basename(path)
    want, treedef = jax.tree.flatten(like)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(like)[0]]
    member = None
    try:
        with np.load(path, allow_pickle=False) as z:
            member = "__head__"
            head = json.loads(z["__head__"].tobytes().decode())
            if head.get("format") != FORMAT or len(head.get("sha256", ())) != head.get("leaves"):
                raise CheckpointError(f"checkpoint {path} is not a {FORMAT} file (written by an older metarl?); "
                                      "start the run again without --resume")
            if len(want) != head["leaves"]:
                raise CheckpointMismatch(f"checkpoint {name} holds {head['leaves']} arrays, this program's state has "
                                      f"{len(want)}")
            leaves = []
            for i in range(head["leaves"]):
                member = paths[i] or str(i)
                leaves.append(z[f"leaf_{i:05d}"])
            arrays = {}
            for k in head.get("arrays", {}):
                member = k
                arrays[k] = z[f"array_{k}"]
    except zipfile.BadZipFile as e:  # a member's CRC-32 (the zip's own check) failed: bytes changed on disk
        if member is None:  # not a zip at all: truncated, or another kind of file
            raise CheckpointError(f"cannot read checkpoint {path}: {' '.join(str(e).split())[:120]} (truncated?)") \
                from None
        where = f"array {member}" if member != "__head__" else "its header"
        raise CheckpointError(f"checkpoint {name}: {where} is corrupted on disk ({' '.join(str(e).split())[:80]}); "
                              "refusing to resume from it") from None
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {' '.join(str(e).split())[:200]}") from None
    for i, (a, digest) in enumerate(zip(leaves, head["sha256"])):
        if array_sha256(a) != digest:
            raise CheckpointError(f"checkpoint {name}: array {paths[i] or i} does not match its recorded sha256 "
                                  "(corrupted on disk); refusing to resume from it")
    for k, a in arrays.items():
        if array_sha256(a) != head["arrays"][k]:
            raise CheckpointError(f"checkpoint {name}: array {k} does not match its recorded sha256 "
                                  "(corrupted on disk); refusing to resume from it")
    for i, (w, a) in enumerate(zip(want, leaves)):
        if tuple(w.shape) != a.shape or np.dtype(w.dtype) != a.dtype:
            raise CheckpointMismatch(f"checkpoint {name}: array {paths[i] or i} is {a.dtype}{list(a.shape)}, this "
                                  f"program's state wants {np.dtype(w.dtype)}{list(w.shape)}")
    return jax.tree.unflatten(treedef, [jnp.asarray(a) for a in leaves]), head["meta"], arrays
