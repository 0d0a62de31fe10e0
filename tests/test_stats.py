"""bench/stats.py against independent computations: scipy.stats.bootstrap on the same stratified scheme, sklearn's
metrics, McNemar's exact binomial by hand, the power a test should have on planted differences (exact binomial
power vs simulation), the size under no difference, and the coverage of the fold-mean interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from bench import stats

K = 7
PROPS = np.array([0.25, 0.18, 0.26, 0.15, 0.10, 0.02, 0.04])  # DFEW-like: disgust and fear rare


def _fold(n: int, acc: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(K, n, p=PROPS)
    y[:K] = np.arange(K)  # every class present
    return y, np.where(rng.random(n) < acc, y, rng.integers(0, K, n))


def test_point_metrics_match_sklearn():
    y, p = _fold(500, 0.55, 0)
    m = stats.point_metrics(y, p, K)
    assert m["uar"] == pytest.approx(balanced_accuracy_score(y, p))
    assert m["war"] == pytest.approx(accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, average="macro", labels=np.unique(y)))


def _scipy_statistic(metric: str):
    """The metric of per-class prediction samples (class c's videos -> their predictions), vectorised as scipy
    wants: each sample (..., n_c); the stratified resampling is scipy's own (independent samples)."""
    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        samples = [np.moveaxis(s, axis, -1) for s in samples]
        # cm[..., c, j]: videos of class c predicted j
        cm = np.stack([np.stack([(s == j).sum(-1) for j in range(K)], -1) for s in samples], -2).astype(float)
        tp = np.diagonal(cm, axis1=-2, axis2=-1)
        support, predicted = cm.sum(-1), cm.sum(-2)
        if metric == "uar":
            return (tp / support).mean(-1)
        if metric == "war":
            return tp.sum(-1) / support.sum(-1)
        return (2 * tp / (support + predicted)).mean(-1)
    return statistic


@pytest.mark.parametrize("metric", ["uar", "war", "macro_f1"])
def test_bootstrap_interval_agrees_with_scipy_on_the_same_scheme(metric):
    y, p = _fold(800, 0.6, 1)
    ours = stats.metric_intervals(y, p, K, n_resamples=4000, seed=3)[metric]
    samples = tuple(p[y == c] for c in range(K))
    ref = sps.bootstrap(samples, _scipy_statistic(metric), n_resamples=4000, method="percentile", vectorized=True,
                        paired=False, random_state=np.random.default_rng(11))
    se = ref.standard_error
    # Monte-Carlo error of a 2.5% / 97.5% endpoint with 4,000 resamples is ~0.04 SE per estimate
    assert abs(ours["lo"] - ref.confidence_interval.low) < 0.25 * se, (ours, ref.confidence_interval, se)
    assert abs(ours["hi"] - ref.confidence_interval.high) < 0.25 * se, (ours, ref.confidence_interval, se)
    assert ours["se"] == pytest.approx(se, rel=0.1)
    assert ours["lo"] < ours["point"] < ours["hi"]


def test_stratified_resamples_keep_the_class_counts():
    y, _ = _fold(300, 0.5, 2)
    idx = stats.stratified_indices(y, 50, np.random.default_rng(0))
    assert (np.sort(y[idx], axis=1) == np.sort(y)).all()  # every resample: the same labels, rare classes included


def _mcnemar_by_hand(b: int, c: int) -> float:
    n, k = b + c, min(b, c)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def test_mcnemar_is_the_exact_binomial_on_discordant_pairs():
    rng = np.random.default_rng(4)
    for _ in range(20):
        a, b = rng.random(200) < rng.uniform(0.3, 0.8), rng.random(200) < rng.uniform(0.3, 0.8)
        res = stats.mcnemar_exact(a, b)
        assert (res["a_only"], res["b_only"]) == (int((a & ~b).sum()), int((~a & b).sum()))
        assert res["p"] == pytest.approx(_mcnemar_by_hand(res["a_only"], res["b_only"]), rel=1e-9)


def test_identical_predictions_give_zero_difference_and_p_one():
    y, p = _fold(400, 0.5, 5)
    res = stats.paired_comparison([(y, p, p.copy())], K, n_resamples=500, n_permutations=200)
    for m in stats.METRIC_NAMES:
        c = res["combined"][m]
        assert c["delta"] == 0 and c["lo"] == 0 and c["hi"] == 0
    assert res["combined"]["uar"]["p_randomisation"] == 1 and res["combined"]["war"]["p_randomisation"] == 1
    assert res["combined"]["mcnemar"] == {"a_only": 0, "b_only": 0, "p": 1.0}


def _planted(n: int, pa: float, pb: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A right with probability pa, B with pb, independently per video; a wrong answer is another class."""
    y = rng.integers(0, 4, n)
    wrong_a, wrong_b = (y + rng.integers(1, 4, n)) % 4, (y + rng.integers(1, 4, n)) % 4
    return y, np.where(rng.random(n) < pa, y, wrong_a), np.where(rng.random(n) < pb, y, wrong_b)


def _mcnemar_power(n: int, pa: float, pb: float, alpha: float = 0.05) -> float:
    """Exact rejection probability of the two-sided exact McNemar test: m discordant ~ Bin(n, q), A-only ~ Bin(m, r)."""
    q10, q01 = pa * (1 - pb), (1 - pa) * pb
    q, r = q10 + q01, q10 / (q10 + q01)
    power = 0.0
    for m in range(n + 1):
        pm = sps.binom.pmf(m, n, q)
        if pm < 1e-12:
            continue
        reject = [b for b in range(m + 1) if _mcnemar_by_hand(b, m - b) < alpha]
        power += pm * sps.binom.pmf(reject, m, r).sum()
    return power


@pytest.mark.parametrize(("pa", "pb"), [(0.65, 0.55), (0.6, 0.6)])
def test_planted_differences_are_detected_at_the_predicted_rate(pa, pb):
    """A planted accuracy difference of known size is detected by McNemar at its exact power (simulation within 3
    binomial standard errors + 0.01); with no difference (0.6 vs 0.6) the rejection rate is the test's exact size
    (at most the nominal 5%). The randomisation test: test_randomisation_test_size_and_power_by_simulation."""
    n, sims = 300, 400
    rng = np.random.default_rng(7)
    predicted = _mcnemar_power(n, pa, pb)
    hits = [stats.mcnemar_exact(a == y, b == y)["p"] < 0.05 for y, a, b in (_planted(n, pa, pb, rng) for _ in range(sims))]
    rate = float(np.mean(hits))
    assert abs(rate - predicted) < 3 * math.sqrt(predicted * (1 - predicted) / sims) + 0.01, (rate, predicted)
    if pa == pb:
        assert predicted <= 0.05


def test_paired_bootstrap_interval_covers_a_planted_uar_difference():
    """B = A with 60 of A's right answers on class 0 turned wrong: the true ΔUAR on these videos is known exactly."""
    y, pa = _fold(900, 0.7, 8)
    pb = pa.copy()
    flip = np.flatnonzero((y == 0) & (pa == 0))[:60]
    pb[flip] = 1
    truth = 60 / (y == 0).sum() / K
    res = stats.paired_comparison([(y, pa, pb)], K, n_resamples=2000, n_permutations=2000)
    c = res["combined"]["uar"]
    assert c["delta"] == pytest.approx(truth) and c["lo"] <= truth <= c["hi"] and c["lo"] > 0
    assert c["p_randomisation"] < 0.01 and res["combined"]["mcnemar"]["a_only"] == 60


def test_fold_mean_interval_covers_at_the_nominal_rate():
    """Folds drawn as mean + N(0, tau²) + N(0, v_i) (the random-effects model): the interval covers the true mean
    about 95% of the time (2,000 simulated 5-fold protocols), and with folds that agree (tau² = 0 estimated) it
    is the pooled sampling interval."""
    rng = np.random.default_rng(9)
    se = np.array([0.012, 0.015, 0.010, 0.014, 0.013])
    cover = []
    for _ in range(2000):
        y = 0.5 + rng.normal(0, 0.02, 5) + rng.normal(0, se)
        fm = stats.fold_mean_interval(y, se)
        cover.append(fm["lo"] <= 0.5 <= fm["hi"])
    assert 0.92 <= np.mean(cover) <= 0.99, np.mean(cover)
    fm = stats.fold_mean_interval([0.5] * 5, se)
    t = sps.t.ppf(0.975, 4)
    assert fm["tau2"] == 0 and fm["hi"] - 0.5 == pytest.approx(t * math.sqrt((se ** 2).sum()) / 5)
    one = stats.fold_mean_interval([0.4], [0.02])
    assert one["k"] == 1 and one["hi"] - 0.4 == pytest.approx(1.959964 * 0.02, rel=1e-5)


def test_holm_adjustment_by_hand():
    assert stats.holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("metric", ["war", "uar"])
def test_randomisation_test_size_and_power_by_simulation(metric):
    """The approximate randomisation test (what `vs best` and `bench compare` use), 300 simulated pairs per case:
    with no difference the rejection rate at 5% lies within 3 binomial standard errors of 5%; with a planted
    10-point accuracy difference it lies within 3 standard errors + 0.03 of McNemar's exact power (the two tests
    of ΔWAR are asymptotically the same; on these balanced classes ΔUAR behaves alike)."""
    n, sims = 300, 300
    rng = np.random.default_rng(11)
    null = np.mean([stats.randomisation_p([_planted(n, 0.6, 0.6, rng)], metric, 400, s) < 0.05 for s in range(sims)])
    assert abs(null - 0.05) < 3 * math.sqrt(0.05 * 0.95 / sims), null
    predicted = _mcnemar_power(n, 0.65, 0.55)
    hits = np.mean([stats.randomisation_p([_planted(n, 0.65, 0.55, rng)], metric, 400, s) < 0.05
                    for s in range(sims)])
    assert abs(hits - predicted) < 3 * math.sqrt(predicted * (1 - predicted) / sims) + 0.03, (hits, predicted)


def test_verdict_reads_the_interval_against_the_published_number():
    """`reproduced` inside the interval; otherwise below/above by |Δ| with the interval of |reproduced − published|
    (worked by hand)."""
    from bench.report.papers import verdict

    assert verdict(50.0, 51.0, 47.5, 52.5) == "reproduced"
    assert verdict(50.0, 47.5, 47.5, 52.5) == "reproduced"  # the boundary is inside
    assert verdict(50.0, 55.0, 47.5, 52.5) == "below by 5.00 [2.50, 7.50]"
    assert verdict(50.0, 44.0, 47.5, 52.5) == "above by 6.00 [3.50, 8.50]"
    assert verdict(50.0, None, 47.5, 52.5) == "" and verdict(50.0, 55.0, None, None) == ""
