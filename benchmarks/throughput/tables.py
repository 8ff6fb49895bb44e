"""(e) The roofline (the machine's dense float32 GEMM rate and our updates' fraction of it), the summary's
ratios, and the tables."""
from __future__ import annotations

import statistics
import time

from benchmarks.throughput.config import ThroughputConfig
from benchmarks.throughput.ours import one_update_args
from benchmarks.throughput.pendulum import PEND_ALGOS
from metarl.stats import compare, interval_text, median_interval


# ----------------------------------------------------------------------------------------------------
# (e) Roofline: the machine's dense float32 GEMM rate, and our updates' achieved fraction of it
# ----------------------------------------------------------------------------------------------------
def gemm_rates(n: int = 2048, reps: int = 5) -> dict:
    """Attainable dense float32 GEMM rate (GFLOP/s, 2 n^3 FLOP per product) of jax (XLA's CPU/GPU dot)
    and numpy (its BLAS), large square matrices, every core (the libraries' default threading). Best of
    ``reps`` timed products after one untimed one."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flop = 2.0 * n ** 3
    out = {"n": n, "reps": reps, "flop_per_product": flop}
    dot = jax.jit(jnp.dot)
    ja, jb = jax.device_put(a), jax.device_put(b)
    dot(ja, jb).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        dot(ja, jb).block_until_ready()
        best = min(best, time.perf_counter() - t)
    out["jax_gflops"] = flop / best / 1e9
    np.dot(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        np.dot(a, b)
        best = min(best, time.perf_counter() - t)
    out["numpy_gflops"] = flop / best / 1e9
    out["attainable_gflops"] = max(out["jax_gflops"], out["numpy_gflops"])
    return out


def best_gemm(readings: list) -> dict:
    """Several :func:`gemm_rates` readings as one: each library's best rate, the attainable rate the best of
    all, every reading kept (``readings``)."""
    out = {k: readings[0][k] for k in ("n", "reps", "flop_per_product")}
    for k in ("jax_gflops", "numpy_gflops", "attainable_gflops"):
        out[k] = max(r[k] for r in readings)
    out["readings"] = [{k: r[k] for k in ("jax_gflops", "numpy_gflops")} for r in readings]
    return out


def sac_flops_per_update(cfg: ThroughputConfig) -> float:
    """XLA's FLOP count of one SAC update of one seed (critic, actor and temperature steps), on the
    synthetic HalfCheetah-sized spec of the TD3 update benchmark."""
    import jax

    from metarl.compile_clock import xla_flops

    agent, state, batch, key = one_update_args(cfg, "sac")
    return xla_flops(jax.jit(agent.update).lower(state, batch, key))


def n_max_key(counts) -> str:
    return str(max(counts))


def ratio(ours, theirs):
    """ours / theirs, or None where either is missing or not positive."""
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def paired_ratio(ours: dict | None, theirs: dict | None):
    """(figure, medians' ratio, pairs) of one rejax row: the figure is the median of the paired calls' ratios
    (``ratio_samples`` on our side) where the calls were paired, else the sides' medians' ratio; ``pairs`` is
    None without pairs. The pairs' median is the figure because when the machine's speed moves between calls,
    both sides move with it and only the pairs cancel it."""
    medians = ratio(ours["env_steps_per_s"] if ours else None, theirs["env_steps_per_s"] if theirs else None)
    paired = (ours or {}).get("ratio_samples") if theirs else None
    return (statistics.median(paired) if paired else medians), medians, (paired or None)


def summary_ratios(rejax: dict, td3_gflops: float | None, sac_gflops: float | None, gemm: dict | None,
                   seeds: int = 8) -> dict:
    """The summary's "ratios": ours / rejax env steps/s at ``seeds`` seeds per algorithm (the table's figure,
    :func:`paired_ratio`), and the TD3 (and SAC) update's achieved GFLOP/s over the attainable GEMM rate.
    ``rejax``: {algo: {"ours": {seeds: row}, "rejax": {seeds: row} or None}} with rows carrying
    ``env_steps_per_s`` (and, paired, ``ratio_samples`` on our side)."""
    out = {}
    for algo in PEND_ALGOS:
        sides = rejax.get(algo) or {}
        out[f"{algo}_vs_rejax"] = paired_ratio((sides.get("ours") or {}).get(str(seeds)),
                                               (sides.get("rejax") or {}).get(str(seeds)))[0]
    peak = gemm["attainable_gflops"] if gemm else None
    out["td3_gemm_fraction"] = ratio(td3_gflops, peak)
    out["sac_gemm_fraction"] = ratio(sac_gflops, peak)
    return out


def rejax_targets(rejax: dict, seeds: int = 8) -> dict:
    """The summary's ours >= rejax targets at ``seeds`` seeds, each with the table's figure and verdict. With
    the peer's calls paired with ours: ``ratio`` the median of the pairs' ratios (``medians_ratio`` the sides'
    medians' ratio beside it), the verdict from the sign-test interval of the pairs' median (:func:`paired_met`);
    without pairs, the medians' ratio against 1."""
    out = {}
    for algo in PEND_ALGOS:
        sides = rejax.get(algo) or {}
        figure, medians, paired = paired_ratio((sides.get("ours") or {}).get(str(seeds)),
                                               (sides.get("rejax") or {}).get(str(seeds)))
        t = out[f"{algo}_ours_over_rejax_{seeds}_seeds"] = paired_target(figure, paired, "calls")
        if paired:
            t["medians_ratio"] = medians
    return out


def paired_target(figure, paired, what: str) -> dict:
    """A summary target of ours / the peer >= 1: ``ratio`` the figure, ``ratio_samples`` the paired ratios;
    with pairs, ``interval`` the sign test's interval of their median (and its ``interval_coverage``), met when
    it lies at or above 1, missed when below, not resolved otherwise (:func:`paired_met`; ``what``: what was
    paired, for the verdict); without, the figure against 1."""
    t = {"target": 1.0, "ratio": figure, "ratio_samples": paired}
    if paired:
        lo, hi, coverage = median_interval(paired)
        t.update(interval=[lo, hi], interval_coverage=coverage)
        t["met"] = paired_met(paired, 1.0)
        t["verdict"] = {True: "target met", False: "target missed"}.get(
            t["met"], f"not resolved (the interval of the paired {what}' median straddles the target)")
    else:
        t["met"] = None if figure is None else bool(figure >= 1.0)
    return t


def rejax_table(s: dict) -> str:
    """Ours vs rejax (env steps/s per seed count, compile times), the roofline and the learning curves."""
    rj = s.get("rejax") or {}
    counts = [str(c) for c in s["config"]["pend_seed_counts"]]
    lines = ["| gymnax/Pendulum-v1, whole run | seeds | ours env steps/s | rejax env steps/s | ours / rejax "
             "(median of the paired calls' ratios; its sign-test interval, their range up to 8 pairs) | "
             "ours compile (s) | rejax compile (s) | target (ours >= rejax) |", "|---|---|---|---|---|---|---|---|"]
    for algo in PEND_ALGOS:
        sides = rj.get(algo) or {}
        for c in counts:
            o = (sides.get("ours") or {}).get(c)
            t = (sides.get("rejax") or {}).get(c)
            r, _, paired = paired_ratio(o, t)
            shown = "n/a" if not r else _fmt(r, "x") if not paired else paired_cell(r, paired)
            lines.append(f"| {algo.upper()} | {c} | {_fmt(o['env_steps_per_s'] if o else None)} | "
                         f"{_fmt(t['env_steps_per_s'] if t else None)} | {shown} | "
                         f"{_fmt(o['compile_s'] if o else None)} | {_fmt(t['compile_s'] if t else None)} | "
                         f"{_range_verdict(paired, 1.0) if paired else _verdict(r, 1.0)} |")
    roof = s.get("roofline") or {}
    gemm = roof.get("gemm")
    if gemm:
        seen = "; readings " + ", ".join(f"jax {_fmt(r['jax_gflops'])} / numpy {_fmt(r['numpy_gflops'])}"
                                         for r in gemm["readings"]) if len(gemm.get("readings", ())) > 1 else ""
        lines += ["", f"Dense float32 GEMM ({gemm['n']}x{gemm['n']}, all cores): jax {_fmt(gemm['jax_gflops'])} "
                      f"GFLOP/s, numpy {_fmt(gemm['numpy_gflops'])} GFLOP/s (the best of each){seen}; attainable = "
                      f"{_fmt(gemm['attainable_gflops'])} GFLOP/s.", "",
                  "| update (synthetic 17/6 dims) | seeds | updates/s | MFLOP/update | achieved GFLOP/s | "
                  "fraction of GEMM | target (>= 60%) |", "|---|---|---|---|---|---|---|"]
        for row in roof.get("updates", []):
            f = row["gemm_fraction"]
            lines.append(f"| {row['algo'].upper()} | {row['seeds']} | {_fmt(row['updates_per_s'])} | "
                         f"{_fmt(row['flops_per_update'] / 1e6)} | {_fmt(row['gflops'])} | {f:.0%} | "
                         f"{_verdict(f, 0.6)} |")
    curves = s.get("curves") or {}
    return "\n".join(lines) + "\n" + ("\n" + curves_table(curves) if curves else "")


def curves_table(curves: dict) -> str:
    """The learning curves of ours and rejax (the mean over seeds at up to 10 of the env steps both evaluated),
    and from 5 seeds a side the final returns compared (:func:`curve_final`)."""
    lines = []
    if curves:
        lines += ["| learning curve (mean eval return over seeds, at the env steps shown) | seeds | env steps | "
                      "ours | rejax |", "|---|---|---|---|---|"]
        for algo, c in curves.items():
            steps, ys = aligned_curves(c)
            pick = _spread(len(steps), CURVE_POINTS)
            fmt_curve = lambda y: "n/a" if y is None else " / ".join(f"{y.mean(0)[i]:.0f}" for i in pick)
            lines.append(f"| {algo.upper()} (evaluations every {c['eval_every']} steps after {c['learning_starts']} "
                         f"warm-up) | {c['seeds']} | {' / '.join(str(steps[i]) for i in pick) if steps else 'n/a'} | "
                         f"{fmt_curve(ys.get('ours'))} | {fmt_curve(ys.get('rejax'))} |")
        finals = {a: c["final"] for a, c in curves.items() if (c.get("final") or {}).get("reading")}
        if finals:
            lines += ["", "| final return (the mean of each seed's last evaluations) | seeds | ours IQM [95% CI] | "
                          "rejax IQM [95% CI] | P(ours > rejax) [95% CI] | reading |", "|---|---|---|---|---|---|"]
            for algo, f in finals.items():
                lines.append(f"| {algo.upper()}, last {f['last_evals']} evaluations | {f['n_a']} / {f['n_b']} | "
                             f"{interval_text(f['iqm_a'], f['ci_a'], '.0f')} | {interval_text(f['iqm_b'], f['ci_b'], '.0f')} | "
                             f"{interval_text(f['p_improvement'], f['p_improvement_ci'], '.2f')} | {f['reading']} |")
    return "\n".join(lines) + "\n"


# The learning curves: points shown per curve in the table; seeds from which the final returns are compared
CURVE_POINTS = 10
CURVE_MIN_SEEDS = 5


def aligned_curves(c: dict):
    """(env steps, {side: array [seeds, evals]}) of a learning-curve record: both sides end at the run's last
    env step with the same cadence, so their last m evaluations (m the shorter side's count) are at the same
    steps: ``total_steps - eval_every * (m - 1 - j)``. rejax's cadence also counts its warm-up, where it
    evaluates once more than ours."""
    import numpy as np

    ys = {side: np.asarray(c[side]["eval_returns"], float) for side in ("ours", "rejax") if c.get(side)}
    if not ys:
        return [], {}
    m = min(y.shape[1] for y in ys.values())
    steps = [int(c["total_steps"] - c["eval_every"] * (m - 1 - j)) for j in range(m)]
    return steps, {side: y[:, y.shape[1] - m:] for side, y in ys.items()}


def _spread(n: int, k: int) -> list:
    """At most ``k`` indices of ``range(n)``, evenly spread, the last always among them."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def curve_final(c: dict, last: int, min_seeds: int = CURVE_MIN_SEEDS) -> dict | None:
    """Each seed's final return (the mean of its last ``last`` evaluations, at the same env steps on both sides)
    for ours and rejax; from ``min_seeds`` seeds a side also their comparison (:func:`metarl.stats.compare`:
    the IQMs with stratified-bootstrap intervals and P(ours > rejax) with its interval) and a ``reading``:
    "ours higher" or "rejax higher" when that interval excludes 0.5, else "no difference resolved" (its
    ``verdict`` for the reports index: "descriptive (no claim)"). None without both sides."""
    if not (c.get("ours") and c.get("rejax")):
        return None
    _, ys = aligned_curves(c)
    last = min(int(last), ys["ours"].shape[1])  # no more than the evaluations both sides made at the same steps
    o, t = (ys[side][:, -last:].mean(1) for side in ("ours", "rejax"))
    out = {"last_evals": int(last), "ours": o.tolist(), "rejax": t.tolist()}
    if min(o.size, t.size) >= min_seeds:
        cmp = compare(o, t)
        out.update({k: v for k, v in cmp.items() if k not in ("verdict", "claim_verdict")})
        out["reading"] = {"better": "ours higher", "worse": "rejax higher"}.get(cmp["verdict"], "no difference resolved")
        out["verdict"] = "descriptive (no claim)"  # a sanity check beside a peer, not a paper's claim (reports index)
    return out


def help_table(helps: dict) -> str:
    """`--help` wall time per CLI, slowest first, against the 2 s target."""
    if not helps:
        return ""
    lines = ["| `python -m <cli> --help` (fresh interpreter) | wall (s) | target (< 2 s) |", "|---|---|---|"]
    for m, h in sorted(helps.items(), key=lambda kv: -kv[1]["wall_s"]):
        verdict = ("met" if h["wall_s"] < 2.0 else "MISSED") if h["ok"] else "FAILED (non-zero exit)"
        lines.append(f"| {m} | {h['wall_s']:.2f} | {verdict} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# Table
# ----------------------------------------------------------------------------------------------------
def _fmt(x, unit=""):
    if x is None:
        return "n/a"
    return f"{x:,.1f}{unit}" if x < 100 else f"{x:,.0f}{unit}"


def _verdict(ratio, target):
    if ratio is None:
        return "not measured"
    return "met" if ratio >= target else "MISSED"


def _range_verdict(ratios, target):
    """From paired samples of a ratio (:func:`paired_met`): met, MISSED, else within the noise."""
    met = paired_met(ratios, target)
    return "met" if met else "MISSED" if met is False else "not resolved (the interval straddles the target)"


def paired_met(ratios, target) -> bool | None:
    """The verdict on "the paired ratio's median >= ``target``" from the sign test's interval of that median
    (:func:`metarl.stats.median_interval`, alpha 0.05): True when the interval lies at or above ``target``, False
    when it lies below, None when it straddles. Up to 8 pairs the interval is their range (every pair must be
    >= target to meet, none to miss); from 9 pairs on it leaves out the lowest and the highest (96.1%), so one
    call caught alone in the machine's slow state no longer decides."""
    lo, hi, _ = median_interval(ratios)
    if lo >= target:
        return True
    if hi < target:
        return False
    return None


def paired_cell(figure, ratios, what: str = "") -> str:
    """A table cell: the pairs' median ratio, its sign-test interval (their range up to 8 pairs), and from 9
    pairs the range beside it; ``what`` ("8 paired epochs") is added inside the parentheses."""
    lo, hi, _ = median_interval(ratios)
    extra = "" if (lo, hi) == (min(ratios), max(ratios)) else f"; range {min(ratios):.2f}-{max(ratios):.2f}"
    return f"{figure:.2f}x ({lo:.2f}-{hi:.2f}{extra}{', ' + what if what else ''})"


def sac_figures(sac: dict):
    """(ours, Brax, ratio, paired ratios) of SAC against Brax's trainer. With pairs (each Brax epoch after its
    first beside our chunk run right after it, the peer waiting meanwhile): the medians of our paired chunks'
    and of Brax's paired epochs' env steps/s and the median of the pairs' ratios; without (runs before the
    pairing): our rate over all our chunks, Brax's steady rate and their ratio, paired ratios None."""
    pairs = sac.get("pairs")
    if pairs:
        return (statistics.median(p["ours_env_steps_per_s"] for p in pairs),
                statistics.median(p["brax_env_steps_per_s"] for p in pairs),
                statistics.median(p["ratio"] for p in pairs), [p["ratio"] for p in pairs])
    ours = sac["ours"]["env_steps_per_s"] if sac.get("ours") else None
    brax = sac["brax"]["steady_env_steps_per_s"] if sac.get("brax") else None
    return ours, brax, (ours / brax if ours and brax else None), None


def sac_target(sac: dict) -> dict:
    """The summary's ``sac_ours_over_brax`` target: with pairs, ``ratio`` their median, ``ratio_samples`` the
    pairs, the verdict from the sign-test interval of their median (:func:`paired_met`, as the rejax rows)."""
    _, _, figure, paired = sac_figures(sac)
    return paired_target(figure, paired, "epochs")


def make_table(s: dict) -> str:
    cfg = s["config"]
    sac, td3 = s["sac"], s["td3"]
    ours_sac, brax_sps, r_sac, sac_pairs = sac_figures(sac)
    if sac_pairs:
        sac_ratio = paired_cell(r_sac, sac_pairs, f"{len(sac_pairs)} paired epochs")
        sac_verdict = _range_verdict(sac_pairs, 1.0)
    else:
        sac_ratio, sac_verdict = (_fmt(r_sac, 'x') if r_sac else 'n/a'), _verdict(r_sac, 1.0)
    agg = td3["ours_aggregate_updates_per_s"]
    n_max = max(int(k) for k in agg)
    r_vmap = agg[str(n_max)] / agg["1"] if "1" in agg else None
    torch_agg = td3["torch"]["aggregate_updates_per_s"] if td3.get("torch") else None
    r_torch = agg[str(n_max)] / torch_agg if torch_agg else None
    env = f"brax/{cfg['sac_env']} ({cfg['backend']})"
    lines = [
        "| measurement | ours | peer / reference | ratio | target | verdict |",
        "|---|---|---|---|---|---|",
        f"| SAC env steps/s, {env}, 1 env, batch 256, 256-256, 1 update/step | {_fmt(ours_sac)} | "
        f"Brax trainer {_fmt(brax_sps)} | {sac_ratio} | >= 1x | {sac_verdict} |",
        f"| SAC compile time (s) | {_fmt(sac['ours']['compile_time_s'] if sac.get('ours') else None)} | "
        f"Brax trainer {_fmt(sac['brax']['compile_time_s'] if sac.get('brax') else None)} | | reported apart | |",
        f"| TD3 updates/s, {n_max} vmapped seeds vs 1 seed (aggregate) | {_fmt(agg[str(n_max)])} | "
        f"1 seed {_fmt(agg.get('1'))} | {_fmt(r_vmap, 'x') if r_vmap else 'n/a'} | >= 2x | {_verdict(r_vmap, 2.0)} |",
        f"| TD3 updates/s, {n_max} seeds: ours vmapped vs PyTorch eager CPU, {cfg['torch_seeds']} seeds in sequence "
        f"| {_fmt(agg[str(n_max)])} | torch {_fmt(torch_agg)} | {_fmt(r_torch, 'x') if r_torch else 'n/a'} | >= 3x "
        f"| {_verdict(r_torch, 3.0)} |",
        "",
        "| TD3 vmapped seeds | aggregate updates/s | per seed | vs 1 seed | achieved GFLOP/s | compile (s) |",
        "|---|---|---|---|---|---|",
    ]
    gf = td3.get("flops_per_update")
    gflops = (lambda rate: _fmt(rate * gf / 1e9)) if gf else (lambda rate: "n/a")
    for k in sorted(agg, key=int):
        lines.append(f"| {k} | {_fmt(agg[k])} | {_fmt(agg[k] / int(k))} | {_fmt(agg[k] / agg['1'], 'x')} | "
                     f"{gflops(agg[k])} | {_fmt(td3['ours_compile_s'][k])} |")
    if torch_agg:
        t = td3["torch"]
        lines.append(f"| torch eager, {cfg['torch_seeds']} seeds in sequence ({t['threads']} thread(s)) | "
                     f"{_fmt(torch_agg)} | {_fmt(torch_agg / cfg['torch_seeds'])} | | {gflops(torch_agg)} | |")
    if gf:
        lines.append(f"\nOne TD3 update (batch 100, 400-300, twin critics, actor every 2nd) = {gf / 1e6:,.0f} MFLOP "
                     f"(XLA cost analysis); the same arithmetic is assumed for torch.")
    for name, why in s.get("skipped", {}).items():
        lines.append(f"\n{name} not measured: {why}")
    return "\n".join(lines) + "\n"


def curve_figure(curves: dict, path: str):
    """The learning curves of ours and rejax, one panel per algorithm (mean and +-std over seeds, at the env
    steps where both sides evaluated), as a PNG."""
    import numpy as np

    from metarl.plots import _plt, curves as plot_curves, save_fig

    plt = _plt()
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for i, (ax, (algo, c)) in enumerate(zip(axes[0], curves.items())):
        steps, ys = aligned_curves(c)
        plot_curves(ax, np.asarray(steps), {("metarl" if side == "ours" else "rejax"): y for side, y in ys.items()},
                    "evaluation return" if i == 0 else "")
        ax.set_title(f"{algo.upper()}, gymnax Pendulum-v1, {c['seeds']} seeds", fontsize=9)
        ax.set_xlabel("environment steps")
    save_fig(fig, path)
    plt.close(fig)
