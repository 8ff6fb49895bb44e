"""The NaN / inf guard: which leaves and which runs of a state or of a chunk's metrics are non-finite."""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from metarl.driver.errors import NonFiniteError


def nonfinite_leaves(tree) -> list[str]:
    """Paths (``jax.tree_util.keystr``) of the floating leaves of ``tree`` holding a NaN or +-inf.
    On an accelerator the test runs there and one flag per leaf comes back; arrays on the host are read
    in place (no program to compile for each state's structure)."""
    paths, leaves = [], []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            paths.append(jax.tree_util.keystr(path))
            leaves.append(leaf)
    if not leaves:
        return []
    if _on_host(leaves):
        flags = [not np.isfinite(np.asarray(x)).all() for x in leaves]
    else:
        flags = np.asarray(_any_nonfinite(leaves))
    return [p for p, bad in zip(paths, flags) if bad]


def _on_host(leaves) -> bool:
    """Every leaf a numpy value or a jax array held by the CPU (``np.asarray`` then costs no copy)."""
    return all(not isinstance(x, jax.Array) or all(d.platform == "cpu" for d in x.devices()) for x in leaves)


@jax.jit
def _any_nonfinite(leaves):
    return jnp.stack([jnp.any(~jnp.isfinite(x)) for x in leaves])


def infinite_metrics(metrics) -> list[str]:
    """Paths of the metric leaves holding +-inf (NaN in a metric may mean "not computed")."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(metrics)[0]:
        a = np.asarray(leaf)
        if np.issubdtype(a.dtype, np.inexact) and np.isinf(a).any():
            out.append(jax.tree_util.keystr(path))
    return out


def nonfinite_runs(tree, runs: int, ignore: tuple = ()) -> list[int]:
    """Indices along the leading (vmapped) axis of size ``runs`` whose slice of any floating leaf of
    ``tree`` holds a NaN or +-inf (leaves without that axis are not attributed to a run; leaves whose
    path contains a name in ``ignore`` are skipped)."""
    leaves = [x for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
              if jnp.issubdtype(jnp.result_type(x), jnp.inexact) and jnp.ndim(x) >= 1 and jnp.shape(x)[0] == runs
              and not any(n in jax.tree_util.keystr(path) for n in ignore)]
    if not leaves:
        return []
    if _on_host(leaves):
        bad = np.stack([~np.isfinite(np.asarray(x).reshape(runs, -1)).all(axis=1) for x in leaves]).any(axis=0)
    else:
        bad = np.asarray(_runs_nonfinite(leaves)).any(axis=0)
    return [int(i) for i in np.nonzero(bad)[0]]


@jax.jit
def _runs_nonfinite(leaves):
    return jnp.stack([jnp.any(~jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1) for x in leaves])


def nonfinite_names(state, metrics, ignore: tuple = ()) -> list[str]:
    """``state[...]`` for every floating state leaf holding NaN/inf (except those whose path contains a
    name in ``ignore``), then ``metrics[...]`` for every metric leaf holding +-inf (a NaN metric may mean
    "not computed")."""
    bad = [f"state{p}" for p in nonfinite_leaves(state) if not any(n in p for n in ignore)]
    return bad + [f"metrics{p}" for p in infinite_metrics(metrics)]


def listing(names: list[str], first: int = 3) -> str:
    """The first ``first`` names, comma-separated, and how many more there are."""
    more = f" (and {len(names) - first} more)" if len(names) > first else ""
    return ", ".join(names[:first]) + more


def check_finite(state, metrics, where: str, runs: int | None = None, unit: str = "seed",
                 ignore: tuple = ()) -> None:
    """The NaN/Inf guard of the segment loops (EPG, RL^2, MetaGenRL, PPO-LIRPG): raise a one-line
    :class:`NonFiniteError` naming ``where`` (e.g. "segment 3"), the first leaves and, with ``runs``
    (the vmapped axis), the runs concerned, when a floating leaf of ``state`` is NaN/inf or a metric is
    +-inf (a NaN metric may mean "not computed"). Call it before the state is checkpointed, so that the
    last checkpoint stays the last finite state. ``ignore``: names of state leaves that may legitimately
    hold an infinity (e.g. evosax's ``best_fitness``, +inf until the first generation)."""
    bad = nonfinite_names(state, metrics, ignore)
    if not bad:
        return
    which = nonfinite_runs(state, runs, ignore) if runs else []
    who = f" of {unit}(s) {', '.join(map(str, which))}" if which else ""
    raise NonFiniteError(f"non-finite values{who} in {where}: {listing(bad)}; stopped (the state after "
                         f"{where} is not saved; the last checkpoint is the last finite state)",
                         {"where": where, "leaves": bad, "runs": which})
