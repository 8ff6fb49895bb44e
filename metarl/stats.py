"""Aggregate statistics over seeds: IQM, stratified bootstrap CIs, probability of improvement,
performance profiles, and the reproduces / contradicts / inconclusive verdict.

Definitions follow Agarwal, Schwarzer, Castro, Courville and Bellemare, "Deep Reinforcement Learning at
the Edge of the Statistical Precipice", NeurIPS 2021, as implemented in their library rliable (1.2.0):

* IQM is ``scipy.stats.trim_mean(x, 0.25)``: ``k = floor(n / 4)`` values are dropped at each end
  (``int(0.25 * n)``), and the mean of the middle ``n - 2k`` is taken. So n = 1..3 keep everything,
  n = 5 keeps 3, n = 6 keeps 4.
* Scores are ``[runs]`` or ``[runs, tasks]``. An aggregate statistic is computed over all runs and tasks
  together (rliable's ``aggregate_iqm`` uses ``axis=None``).
* The bootstrap is stratified: each resample draws ``runs`` run indices with replacement independently
  for every task, so every task keeps its count of runs. Intervals are percentile intervals.
* Resampling draws from ``numpy.random.RandomState(seed)`` in the same order as rliable draws from the
  global ``numpy.random`` stream, so ``np.random.seed(s)`` + rliable and ``seed=s`` here give the same
  resamples and the same intervals (checked in tests/test_stats.py).

Everything is numpy, vectorised over the bootstrap replicates, and deterministic given ``seed``.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np

REPRODUCES = "reproduces"
CONTRADICTS = "contradicts"
INCONCLUSIVE = "inconclusive at this scale"
VERDICTS = (REPRODUCES, CONTRADICTS, INCONCLUSIVE)

# Largest number of resampled score values held at once; the bootstrap works through replicates in
# blocks of this size. The draws are sequential, so the block size never changes the result.
_BLOCK = 1 << 20


# ---------------------------------------------------------------------------------------------------
# Point statistics


def iqm(x, axis=-1):
    """Interquartile mean along ``axis`` (an int, a tuple of ints reduced together, or None for all).

    Exactly ``scipy.stats.trim_mean(x, 0.25, axis)``: ``k = int(0.25 * n)`` smallest and ``k`` largest
    values are dropped and the rest averaged. A NaN anywhere along the reduced axes gives NaN.
    """
    x = np.asarray(x, dtype=float)
    if axis is None:
        x = x.reshape(-1)
    elif isinstance(axis, tuple):
        axes = [a % x.ndim for a in axis]
        keep = x.ndim - len(axes)
        x = np.moveaxis(x, axes, list(range(keep, x.ndim)))
        x = x.reshape(x.shape[:keep] + (-1,))
    else:
        x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("iqm of an empty set")
    k = n // 4  # scipy: lowercut = int(proportiontocut * nobs), uppercut = nobs - lowercut
    part = np.partition(x, (k, n - k - 1), axis=-1)
    out = part[..., k:n - k].mean(axis=-1)
    out = np.where(np.isnan(x).any(axis=-1), np.nan, out)
    return out[()] if out.ndim == 0 else out


def _as_runs_tasks(scores, name="scores") -> np.ndarray:
    a = np.asarray(scores, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be [runs] or [runs, tasks], got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN; drop failed runs explicitly before aggregating")
    return a


def _poi(x, y):
    """P(X > Y) + 1/2 P(X = Y) per task, averaged over tasks. x [..., nx, T], y [..., ny, T]."""
    xa, yb = x[..., :, None, :], y[..., None, :, :]
    per_task = (xa > yb).mean(axis=(-3, -2)) + 0.5 * (xa == yb).mean(axis=(-3, -2))
    return per_task.mean(axis=-1)


def probability_of_improvement(x, y) -> float:
    """P(X > Y), ties counting 1/2, over all pairs of runs of the same task, averaged over tasks.

    x: [runs_x] or [runs_x, tasks]; y: [runs_y] or [runs_y, tasks] (same tasks, any run counts). This is
    the Mann-Whitney U statistic of each task divided by runs_x * runs_y, as rliable computes it.
    """
    x, y = _as_runs_tasks(x, "x"), _as_runs_tasks(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y have different task counts: {x.shape[1]} vs {y.shape[1]}")
    return float(_poi(x, y))


def _profile(x, taus, axis=(-2, -1)):
    """Fraction of the values along ``axis`` that are > tau, for each tau (last axis of the output)."""
    return np.stack([(x > t).mean(axis=axis) for t in np.asarray(taus, float).reshape(-1)], axis=-1)


# ---------------------------------------------------------------------------------------------------
# Stratified bootstrap


def _tail(alpha: float) -> float:
    # arch (under rliable) forms the tail as (1 - size) / 2 with size = 1 - alpha; keep that arithmetic so
    # the percentile positions agree to the last bit.
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return (1.0 - (1.0 - alpha)) / 2.0


def _bootstrap(arrays: Sequence[np.ndarray], stat: Callable, reps: int, seed: int) -> np.ndarray:
    """Stat over ``reps`` stratified resamples of each [runs_i, tasks] array: returns [reps, ...].

    For each replicate and each array in order, run indices [runs_i, tasks] are drawn uniformly with
    replacement (one column per task). Same draw order as rliable's StratifiedBootstrap /
    StratifiedIndependentBootstrap on the legacy numpy stream.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    rs = np.random.RandomState(seed)
    shapes = [a.shape for a in arrays]
    per_rep = sum(r * t for r, t in shapes) + max(r for r, _ in shapes) ** 2 * shapes[0][1]
    block = max(1, _BLOCK // per_rep)
    cols = [np.arange(t) for _, t in shapes]
    same = all(s == shapes[0] for s in shapes)
    out = []
    for start in range(0, reps, block):
        c = min(block, reps - start)
        if same:  # one draw of [c, k, runs, tasks] is the same stream as c * k draws of [runs, tasks]
            idx = rs.randint(0, shapes[0][0], size=(c, len(arrays)) + shapes[0])
            idx = [idx[:, i] for i in range(len(arrays))]
        else:
            draws = [[rs.randint(0, r, size=(r, t)) for r, t in shapes] for _ in range(c)]
            idx = [np.stack([d[i] for d in draws]) for i in range(len(arrays))]
        samples = [a[ix, col] for a, ix, col in zip(arrays, idx, cols)]
        out.append(np.asarray(stat(*samples)))
    return np.concatenate(out, axis=0)


def _interval(values: np.ndarray, alpha: float):
    tail = _tail(alpha)
    lo, hi = np.percentile(values, [100 * tail, 100 * (1.0 - tail)], axis=0)
    return lo[()] if np.ndim(lo) == 0 else lo, hi[()] if np.ndim(hi) == 0 else hi


def stratified_bootstrap_ci(scores, stat: Callable = iqm, reps: int = 2000, alpha: float = 0.05,
                            seed: int = 0):
    """Point estimate and stratified-bootstrap percentile interval: returns ``(point, lo, hi)``.

    scores: [runs] or [runs, tasks]. ``stat(x, axis=(-2, -1))`` is called on x of shape
    [..., runs, tasks] and must reduce those two axes (the default, ``iqm``, pools all runs and tasks,
    as rliable's ``aggregate_iqm``); it may return extra trailing axes (e.g. one per threshold), and
    then point, lo and hi are arrays of that shape. Coverage is ``1 - alpha``.
    """
    a = _as_runs_tasks(scores)
    point = stat(a, axis=(-2, -1))
    values = _bootstrap([a], lambda s: stat(s, axis=(-2, -1)), reps, seed)
    lo, hi = _interval(values, alpha)
    return point, lo, hi


def probability_of_improvement_ci(x, y, reps: int = 2000, alpha: float = 0.05, seed: int = 0):
    """``(P(X > Y), lo, hi)``: x and y are resampled independently, each stratified by task."""
    x, y = _as_runs_tasks(x, "x"), _as_runs_tasks(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y have different task counts: {x.shape[1]} vs {y.shape[1]}")
    values = _bootstrap([x, y], _poi, reps, seed)
    lo, hi = _interval(values, alpha)
    return float(_poi(x, y)), float(lo), float(hi)


def performance_profile(scores, taus, reps: int = 0, alpha: float = 0.05, seed: int = 0):
    """Run-score distribution: for each tau, the fraction of all (run, task) scores that are > tau.

    With ``reps=0`` (default) returns the profile, an array [len(taus)]. With ``reps > 0`` returns
    ``(profile, lo, hi)``, the pointwise stratified-bootstrap band (rliable uses reps=2000 here).
    """
    a = _as_runs_tasks(scores)
    taus = np.asarray(taus, float).reshape(-1)
    if not reps:
        return _profile(a, taus)
    return stratified_bootstrap_ci(a, lambda x, axis: _profile(x, taus, axis), reps, alpha, seed)


def median_interval(values, alpha: float = 0.05):
    """Distribution-free interval of the median of ``values`` (the sign test's): ``(lo, hi, coverage)``.

    With x(1) <= ... <= x(n) sorted, ``[x(k), x(n+1-k)]`` holds the population median with probability
    ``1 - 2 P(B <= k-1)``, B ~ Binomial(n, 1/2), for any continuous distribution. ``k`` is the largest with
    that coverage >= ``1 - alpha``; where even k = 1 (the range) falls short (n <= 5 at alpha 0.05: the
    range of 5 covers 93.75%), the range is returned with its own, lower, coverage. So up to 8 values at
    alpha 0.05 the interval is their range, from 9 it drops the lowest and highest (96.1%), from 12 two
    at each end (96.1%).
    """
    from math import comb

    x = np.sort(np.asarray(values, float).reshape(-1))
    n = x.size
    if n == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"median_interval needs finite values, got {values!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    cover = lambda k: 1.0 - 2.0 * sum(comb(n, i) for i in range(k)) / 2.0 ** n
    k = 1
    while k + 1 <= (n + 1) // 2 and cover(k + 1) >= 1.0 - alpha:
        k += 1
    return float(x[k - 1]), float(x[n - k]), float(cover(k))


# ---------------------------------------------------------------------------------------------------
# Verdicts and JSON rows


def _lo_hi(ci, name):
    if isinstance(ci, Mapping):
        ci = ci["ci"]
    v = [float(c) for c in ci]
    if len(v) not in (2, 3):
        raise ValueError(f"{name} must be (lo, hi), (point, lo, hi) or a summary_row dict, got {ci!r}")
    lo, hi = v[-2], v[-1]
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise ValueError(f"{name} is not an interval: {ci!r}")
    return lo, hi


def verdict(ours_ci, paper_value=None, baseline_ci=None, claim: str = "higher") -> str:
    """Verdict on a claim from an interval: "reproduces", "contradicts" or "inconclusive at this scale".

    ours_ci: (lo, hi), (point, lo, hi) or a ``summary_row`` dict. Give exactly one reference:

    * ``paper_value=t`` -- a threshold claim, "ours >= t" for ``claim="higher"`` (e.g. ours reaches the
      paper's figure, learned >= 70% of TD3's improvement, beats random's score) or "ours <= t" for
      ``claim="lower"``. higher: ``lo >= t`` reproduces, ``hi < t`` contradicts; lower: ``hi <= t``
      reproduces, ``lo > t`` contradicts; anything else is inconclusive. So the interval must lie
      entirely on the claim's side to decide, and t itself counts as the claim's side.
    * ``baseline_ci=(blo, bhi)`` -- a comparison claim "ours is better than the baseline" (higher) or
      "worse" (lower) when only the two intervals are at hand. higher: ``lo > bhi`` reproduces,
      ``hi < blo`` contradicts; lower: the mirror image; overlapping intervals are inconclusive. This
      is conservative; with both per-seed score arrays use ``compare``, which decides on the interval
      of P(improvement) excluding 0.5.
    """
    if claim not in ("higher", "lower"):
        raise ValueError(f"claim must be 'higher' or 'lower', got {claim!r}")
    if (paper_value is None) == (baseline_ci is None):
        raise ValueError("give exactly one of paper_value (threshold claim) or baseline_ci (comparison)")
    lo, hi = _lo_hi(ours_ci, "ours_ci")
    if paper_value is not None:
        t = float(paper_value)
        if not np.isfinite(t):
            raise ValueError(f"paper_value must be finite, got {paper_value!r}")
        if claim == "higher":
            return REPRODUCES if lo >= t else CONTRADICTS if hi < t else INCONCLUSIVE
        return REPRODUCES if hi <= t else CONTRADICTS if lo > t else INCONCLUSIVE
    blo, bhi = _lo_hi(baseline_ci, "baseline_ci")
    above, below = lo > bhi, hi < blo
    if claim == "lower":
        above, below = below, above
    return REPRODUCES if above else CONTRADICTS if below else INCONCLUSIVE


def interval_text(point, ci, spec: str = ".1f") -> str:
    """A table cell ``point [lo, hi]``, each number formatted by ``spec`` ('-' when ``point`` is None)."""
    return "-" if point is None else f"{point:{spec}} [{ci[0]:{spec}}, {ci[1]:{spec}}]"


def summary_row(values, seed: int = 0, reps: int = 2000, alpha: float = 0.05) -> dict:
    """``{"iqm": float, "ci": [lo, hi], "n": runs}``, JSON-ready; values are [runs] or [runs, tasks]."""
    a = _as_runs_tasks(values, "values")
    point, lo, hi = stratified_bootstrap_ci(a, iqm, reps, alpha, seed)
    return {"iqm": float(point), "ci": [float(lo), float(hi)], "n": int(a.shape[0])}


def compare(a, b, seed: int = 0, reps: int = 2000, alpha: float = 0.05, claim: str = "higher") -> dict:
    """Compare method ``a`` with baseline ``b`` from per-seed scores ([runs] or [runs, tasks] each).

    Returns a JSON-ready dict: ``iqm_a, ci_a, n_a, iqm_b, ci_b, n_b`` (as ``summary_row``),
    ``p_improvement`` = P(a > b) and ``p_improvement_ci`` = [lo, hi], and
    ``verdict``: "better" if lo > 0.5, "worse" if hi < 0.5, else "inconclusive" (the interval of
    P(improvement) must exclude 0.5), and ``claim_verdict``: that outcome read against the claim
    "a is better than b" (``claim="higher"``: better -> reproduces, worse -> contradicts) or
    "a is worse than b" (``claim="lower"``: the reverse); inconclusive -> "inconclusive at this scale".
    """
    if claim not in ("higher", "lower"):
        raise ValueError(f"claim must be 'higher' or 'lower', got {claim!r}")
    ra, rb = summary_row(a, seed, reps, alpha), summary_row(b, seed, reps, alpha)
    p, lo, hi = probability_of_improvement_ci(a, b, reps, alpha, seed)
    outcome = "better" if lo > 0.5 else "worse" if hi < 0.5 else "inconclusive"
    wanted, opposite = ("better", "worse") if claim == "higher" else ("worse", "better")
    cv = REPRODUCES if outcome == wanted else CONTRADICTS if outcome == opposite else INCONCLUSIVE
    out = {f"{k}_a": v for k, v in ra.items()} | {f"{k}_b": v for k, v in rb.items()}
    return out | {"p_improvement": p, "p_improvement_ci": [lo, hi], "verdict": outcome,
                  "claim_verdict": cv}


# ---------------------------------------------------------------------------------------------------
# Figure


def plot_aggregate(rows: Mapping[str, np.ndarray], path: str, title: str = "", taus=None,
                   reps: int = 2000, alpha: float = 0.05, seed: int = 0) -> str:
    """PNG with, side by side, IQM and its (1 - alpha) stratified-bootstrap interval per row, and the
    performance profile (fraction of runs with score > tau) with its bootstrap band.

    rows: {label: scores [runs] or [runs, tasks]}. taus defaults to 101 points spanning all scores.
    Returns path.
    """
    from .plots import _plt, save_fig  # matplotlib is imported here, on first use

    if not rows:
        raise ValueError("plot_aggregate needs at least one row")
    data = {k: _as_runs_tasks(v, k) for k, v in rows.items()}
    if taus is None:
        allv = np.concatenate([v.reshape(-1) for v in data.values()])
        lo_t, hi_t = float(allv.min()), float(allv.max())
        pad = 0.02 * (hi_t - lo_t) if hi_t > lo_t else 1.0
        taus = np.linspace(lo_t - pad, hi_t + pad, 101)
    taus = np.asarray(taus, float)

    plt = _plt()
    fig, (ax_i, ax_p) = plt.subplots(1, 2, figsize=(11, max(3.0, 0.45 * len(data) + 2.0)))
    labels = list(data)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, k in enumerate(labels):
        c = colors[i % len(colors)]
        p, lo, hi = stratified_bootstrap_ci(data[k], iqm, reps, alpha, seed)
        ax_i.barh(i, hi - lo, left=lo, height=0.6, color=c, alpha=0.35)
        ax_i.plot([p, p], [i - 0.3, i + 0.3], color=c, lw=2)
        prof, plo, phi = performance_profile(data[k], taus, reps, alpha, seed)
        ax_p.plot(taus, prof, color=c, label=f"{k} (n={data[k].shape[0]})")
        ax_p.fill_between(taus, plo, phi, color=c, alpha=0.2)
    pct = round(100 * (1 - alpha))
    ax_i.set_yticks(range(len(labels)), labels)
    ax_i.invert_yaxis()
    ax_i.set_xlabel(f"IQM with {pct}% stratified bootstrap CI")
    ax_i.grid(axis="x", alpha=0.3)
    ax_p.set_xlabel("score threshold tau")
    ax_p.set_ylabel("fraction of runs with score > tau")
    ax_p.set_ylim(-0.02, 1.02)
    ax_p.grid(alpha=0.3)
    ax_p.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    save_fig(fig, path)
    plt.close(fig)
    return path
