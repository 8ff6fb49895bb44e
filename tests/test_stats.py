"""metarl.stats: IQM, stratified bootstrap, probability of improvement, performance profiles and verdicts,
against hand-computed cases, scipy, and reference numbers from rliable."""
import json

import numpy as np
import pytest
import scipy.stats

from metarl import stats as S


# --- IQM -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("x, want", [
    ([7.0], 7.0),                                  # n=1..3: k = 0, plain mean
    ([5.0, 1.0, 3.0], 3.0),
    ([1.0, 2.0, 3.0, 4.0], 2.5),                   # n=4: drop one each end
    ([1.0, 2.0, 3.0, 4.0, 100.0], 3.0),            # n=5: k = int(1.25) = 1, mean of 3 (no fractional weights)
    ([10.0, 0.0, 1.0, 2.0, 3.0, -50.0], 1.5),      # n=6: k = 1, mean of 0, 1, 2, 3
    ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 100.0], 3.0),  # n=7: k = 1, mean of 1..5
    ([1, 2, 3, 4, 5, 6, 7, 8, 1000.0], 5.0),       # n=9: k = 2, mean of 3..7
])
def test_iqm_hand_cases(x, want):
    assert S.iqm(x) == pytest.approx(want, abs=1e-12)
    assert S.iqm(x) == pytest.approx(scipy.stats.trim_mean(x, 0.25), abs=1e-12)


def test_iqm_matches_scipy_trim_mean_all_sizes_and_axes():
    rs = np.random.RandomState(0)
    for n in range(1, 18):
        x = rs.normal(size=(3, n))
        np.testing.assert_allclose(S.iqm(x, axis=-1), scipy.stats.trim_mean(x, 0.25, axis=-1), rtol=1e-12)
        np.testing.assert_allclose(S.iqm(x.T, axis=0), scipy.stats.trim_mean(x.T, 0.25, axis=0), rtol=1e-12)
        np.testing.assert_allclose(S.iqm(x, axis=None), scipy.stats.trim_mean(x, 0.25, axis=None), rtol=1e-12)
    y = rs.normal(size=(4, 5, 6))
    np.testing.assert_allclose(S.iqm(y, axis=(-2, -1)),
                               [scipy.stats.trim_mean(a, 0.25, axis=None) for a in y], rtol=1e-12)
    np.testing.assert_allclose(S.iqm(y, axis=(0, 2)),
                               [scipy.stats.trim_mean(y[:, j], 0.25, axis=None) for j in range(5)], rtol=1e-12)
    assert np.isnan(S.iqm([1.0, np.nan, 2.0, 3.0]))


# --- Stratified bootstrap --------------------------------------------------------------------------

def test_bootstrap_deterministic_and_contains_point():
    x = np.random.RandomState(1).normal(size=(8, 3))
    a = S.stratified_bootstrap_ci(x, seed=3)
    assert a == S.stratified_bootstrap_ci(x, seed=3)
    assert a != S.stratified_bootstrap_ci(x, seed=4)
    point, lo, hi = a
    assert point == pytest.approx(S.iqm(x, axis=None))
    assert lo <= point <= hi and lo < hi


def test_bootstrap_block_size_does_not_change_result(monkeypatch):
    x = np.random.RandomState(2).normal(size=(6, 4))
    y = np.random.RandomState(3).normal(size=(4, 4))
    full = S.stratified_bootstrap_ci(x, seed=5), S.probability_of_improvement_ci(x, y, seed=5)
    monkeypatch.setattr(S, "_BLOCK", 2000)  # about ten replicates per block
    assert (S.stratified_bootstrap_ci(x, seed=5), S.probability_of_improvement_ci(x, y, seed=5)) == full


def test_ci_shrinks_with_more_runs():
    x = np.random.RandomState(4).normal(size=80)
    _, lo5, hi5 = S.stratified_bootstrap_ci(x[:5], seed=0)
    _, lo80, hi80 = S.stratified_bootstrap_ci(x, seed=0)
    assert (hi80 - lo80) < 0.6 * (hi5 - lo5)


def test_stratification_keeps_per_task_counts():
    rs = np.random.RandomState(5)
    runs, tasks = 6, 3
    x = np.arange(tasks)[None, :] * 100.0 + rs.uniform(0, 10, size=(runs, tasks))

    def per_task_counts(s, axis):  # how many pooled values fall in each task's band
        return np.stack([((s >= 100 * t) & (s < 100 * t + 50)).sum(axis=axis) for t in range(tasks)], -1)

    point, lo, hi = S.stratified_bootstrap_ci(x, per_task_counts, reps=500, seed=0)
    for v in (point, lo, hi):
        np.testing.assert_array_equal(v, [runs] * tasks)
    # and each resampled column only holds that task's own values
    p, lo, hi = S.stratified_bootstrap_ci(x, lambda s, axis: np.isin(s[..., 1], x[:, 1]).all(-1) * 1.0,
                                          reps=200, seed=0)
    assert lo == hi == 1.0


# --- Probability of improvement --------------------------------------------------------------------

@pytest.mark.parametrize("x, y, want", [
    ([1.0, 2.0], [1.0, 2.0], 0.5),         # identical: ties count 1/2
    ([3.0], [1.0, 2.0], 1.0),
    ([1.0], [2.0, 3.0], 0.0),
    ([1.0, 2.0, 3.0], [2.0], 0.5),         # (0 + 1/2 + 1) / 3
    ([2.0, 4.0], [1.0, 2.0, 3.0], 0.75),   # x=2: 1 + 1/2 + 0; x=4: 3  -> 4.5 / 6
    ([[2.0, 0.0], [4.0, 0.0]], [[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]], 0.375),  # tasks: 0.75, 0 -> mean
])
def test_probability_of_improvement_hand_cases(x, y, want):
    assert S.probability_of_improvement(x, y) == pytest.approx(want)


def test_probability_of_improvement_is_mann_whitney_and_symmetric():
    rs = np.random.RandomState(6)
    x, y = rs.randint(0, 5, size=(7, 3)).astype(float), rs.randint(0, 5, size=(4, 3)).astype(float)
    want = np.mean([scipy.stats.mannwhitneyu(x[:, t], y[:, t], alternative="greater")[0] / 28 for t in range(3)])
    assert S.probability_of_improvement(x, y) == pytest.approx(want)
    assert S.probability_of_improvement(x, y) + S.probability_of_improvement(y, x) == pytest.approx(1.0)
    p, lo, hi = S.probability_of_improvement_ci(x, y, seed=0)
    assert p == pytest.approx(want) and lo <= p <= hi


# --- Performance profile ---------------------------------------------------------------------------

def test_performance_profile_hand_case():
    scores = [[0.0, 1.0], [2.0, 3.0]]  # 2 runs x 2 tasks, pooled: 0, 1, 2, 3
    np.testing.assert_allclose(S.performance_profile(scores, [-1, 0, 0.5, 2, 3]), [1, 0.75, 0.75, 0.25, 0])
    prof, lo, hi = S.performance_profile(scores, [-1, 0, 0.5, 2, 3], reps=300, seed=0)
    assert np.all(lo <= prof) and np.all(prof <= hi) and lo[0] == hi[0] == 1 and lo[-1] == hi[-1] == 0


# --- Numerical check against rliable ---------------------------------------------------------------
# Reference numbers computed with rliable 1.2.0 (arch 7.2.0, numpy 2.4.6, scipy 1.17.1, pandas 2.3.3) in
# a throwaway venv: rliable.metrics.aggregate_iqm / probability_of_improvement, library.get_interval_estimates
# (reps=2000, percentile, after np.random.seed(0); rliable's resampling reads the global numpy stream) and
# library.create_performance_profile (reps=2000, after np.random.seed(0)). They are not tuned numbers.
# rliable is not a dependency: it needs arch<8, and arch 7.x does not import under our pandas 3.1.1 pin.

def _ref_data():
    rs = np.random.RandomState(0)
    a = np.round(rs.normal(1.0, 1.0, size=(7, 3)), 3)
    b = np.round(rs.normal(0.5, 1.0, size=(5, 3)), 3)
    c = np.round(rs.normal(0.0, 1.0, size=(10,)), 3)
    return a, b, c


def test_matches_rliable_reference_numbers():
    a, b, c = _ref_data()
    close = dict(rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose([S.iqm(a, None), S.iqm(b, None), S.iqm(c)],
                               [1.4322727272727271, 0.6084444444444445, -0.24733333333333332], **close)
    np.testing.assert_allclose(S.stratified_bootstrap_ci(a, seed=0),
                               [1.4322727272727271, 1.1216795454545454, 1.9018568181818174], **close)
    np.testing.assert_allclose(S.stratified_bootstrap_ci(c, seed=0),
                               [-0.24733333333333332, -0.9716874999999999, 0.6959499999999993], **close)
    np.testing.assert_allclose(S.probability_of_improvement_ci(a, b, seed=0),  # 7 vs 5 runs
                               [0.7238095238095239, 0.5330952380952385, 0.8952380952380952], **close)
    np.testing.assert_allclose(S.probability_of_improvement_ci(a[:5], b, seed=0),  # 5 vs 5 runs
                               [0.7733333333333334, 0.5733333333333334, 0.9333333333333332], **close)
    prof, lo, hi = S.performance_profile(a, [-0.5, 0.0, 0.5, 1.0, 1.5], reps=2000, seed=0)
    np.testing.assert_allclose(prof, np.array([20, 20, 18, 15, 8]) / 21, **close)
    np.testing.assert_allclose(lo, np.array([18, 18, 15, 12, 4]) / 21, **close)
    np.testing.assert_allclose(hi, np.array([21, 21, 21, 18, 12]) / 21, **close)


# --- Verdicts --------------------------------------------------------------------------------------

R, C, I = S.REPRODUCES, S.CONTRADICTS, S.INCONCLUSIVE

VERDICT_TABLE = [  # (ours_ci, paper_value, baseline_ci, claim, expected)
    ((0.8, 1.2), 0.7, None, "higher", R),       # threshold: clearly above
    ((0.3, 0.6), 0.7, None, "higher", C),       # clearly below
    ((0.5, 0.9), 0.7, None, "higher", I),       # straddles
    ((0.7, 0.9), 0.7, None, "higher", R),       # lo == t: entirely on the ">= t" side
    ((0.5, 0.7), 0.7, None, "higher", I),       # hi == t: not below t
    ((0.1, 0.4), 0.5, None, "lower", R),
    ((0.6, 0.9), 0.5, None, "lower", C),
    ((0.4, 0.6), 0.5, None, "lower", I),
    ((2.0, 3.0), None, (0.0, 1.0), "higher", R),  # comparison: disjoint, above
    ((0.0, 1.0), None, (2.0, 3.0), "higher", C),  # disjoint, below
    ((0.5, 2.0), None, (1.0, 3.0), "higher", I),  # overlapping
    ((1.0, 2.0), None, (2.0, 3.0), "higher", I),  # touching counts as overlapping
    ((0.0, 1.0), None, (2.0, 3.0), "lower", R),
    ((2.0, 3.0), None, (0.0, 1.0), "lower", C),
]


@pytest.mark.parametrize("ours, paper, base, claim, want", VERDICT_TABLE)
def test_verdict_synthetic_table(ours, paper, base, claim, want):
    assert S.verdict(ours, paper_value=paper, baseline_ci=base, claim=claim) == want
    mid = sum(ours) / 2  # (point, lo, hi) and summary_row dicts are accepted too
    assert S.verdict((mid,) + ours, paper, base, claim) == want
    assert S.verdict({"iqm": mid, "ci": list(ours), "n": 5}, paper, base, claim) == want


def test_verdict_rejects_bad_input():
    with pytest.raises(ValueError):
        S.verdict((0, 1))                                     # no reference
    with pytest.raises(ValueError):
        S.verdict((0, 1), paper_value=0.5, baseline_ci=(0, 1))
    with pytest.raises(ValueError):
        S.verdict((0, 1), paper_value=0.5, claim="better")
    with pytest.raises(ValueError):
        S.verdict((1, 0), paper_value=0.5)


def test_compare_and_summary_row_on_synthetic_seeds():
    rs = np.random.RandomState(7)
    good, bad = 10 + rs.normal(size=10), rs.normal(size=10)
    same = rs.normal(size=10)
    r = S.compare(good, bad, seed=0)
    assert r["verdict"] == "better" and r["claim_verdict"] == R and r["p_improvement"] == 1.0
    r = S.compare(bad, good, seed=0)
    assert r["verdict"] == "worse" and r["claim_verdict"] == C
    assert S.compare(bad, good, seed=0, claim="lower")["claim_verdict"] == R
    r = S.compare(bad, same, seed=0)
    assert r["verdict"] == "inconclusive" and r["claim_verdict"] == I
    lo, hi = r["p_improvement_ci"]
    assert lo <= 0.5 <= hi and lo <= r["p_improvement"] <= hi
    assert r["n_a"] == 10 and r["iqm_a"] == pytest.approx(S.iqm(bad))
    json.dumps(r)

    row = S.summary_row(good, seed=0)
    assert set(row) == {"iqm", "ci", "n"} and row["n"] == 10
    assert row["ci"][0] <= row["iqm"] <= row["ci"][1]
    assert json.loads(json.dumps(row)) == row
    assert S.summary_row(good.reshape(5, 2))["n"] == 5  # [runs, tasks]: n counts runs
    with pytest.raises(ValueError):
        S.summary_row([1.0, np.nan])


# --- Figure ----------------------------------------------------------------------------------------

def test_plot_aggregate_writes_png(tmp_path):
    rs = np.random.RandomState(8)
    path = tmp_path / "fig" / "aggregate.png"
    out = S.plot_aggregate({"meta-critic": rs.normal(1, 1, size=5), "TD3": rs.normal(size=5),
                            "two tasks": rs.normal(size=(4, 2))}, str(path), "synthetic", reps=200)
    assert out == str(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


# --- The sign test's interval of a median ---------------------------------------------------------

def test_median_interval_order_statistics_and_coverage_against_the_binomial():
    """[x(k), x(n+1-k)] with the largest k whose coverage 1 - 2 P(Bin(n, 1/2) <= k-1) is >= 95%; the range,
    with its own coverage, where none reaches it."""
    for n, k in ((1, 1), (5, 1), (8, 1), (9, 2), (11, 2), (12, 3), (17, 5), (30, 10)):
        x = np.random.RandomState(n).permutation(np.arange(1.0, n + 1))  # order must not matter
        lo, hi, cover = S.median_interval(x)
        assert (lo, hi) == (k, n + 1 - k), (n, lo, hi)
        assert cover == pytest.approx(1 - 2 * scipy.stats.binom.cdf(k - 1, n, 0.5), abs=1e-12)
        if n >= 6:
            assert cover >= 0.95 and (k + 1 > (n + 1) // 2 or 1 - 2 * scipy.stats.binom.cdf(k, n, 0.5) < 0.95)
    assert S.median_interval([1.0, 2.0, 3.0, 4.0, 5.0])[2] == pytest.approx(0.9375)  # the range of 5: below 95%
    assert S.median_interval(np.arange(12.0), alpha=0.2)[:2] == (3.0, 8.0)  # 1 - 2 P(B <= 3) = 0.854 >= 0.8


def test_median_interval_covers_the_median_as_often_as_it_says():
    """On a skewed distribution (lognormal, median 1), 9 and 12 draws: the empirical coverage of 20,000 intervals
    matches the stated one within 1 point."""
    rs = np.random.RandomState(0)
    for n in (9, 12):
        covered, stated = 0, None
        for _ in range(20_000):
            lo, hi, stated = S.median_interval(rs.lognormal(0.0, 1.0, n))
            covered += lo <= 1.0 <= hi
        assert abs(covered / 20_000 - stated) < 0.01, (n, covered / 20_000, stated)


@pytest.mark.parametrize("bad", [[], [1.0, np.nan], [np.inf]])
def test_median_interval_rejects_empty_or_non_finite(bad):
    with pytest.raises(ValueError, match="finite"):
        S.median_interval(bad)
