"""How sure is a DFER number: intervals on UAR / WAR / macro-F1, paired tests between two methods, fold means.

The one place the report, `bench compare`, the data check and the site get their statistics from.

* **Intervals on one test split** (`metric_intervals`): a bootstrap over the test videos, stratified by class
  (each class's videos are resampled within the class, so every resample keeps the split's class counts: UAR is
  a mean of per-class recalls, and a rare class such as DFEW's disgust must not vanish from a resample), 2,000
  resamples, seeded, 95% **percentile** interval. Percentile rather than BCa: at test-set sizes of hundreds to
  thousands of videos the sampling distributions of these metrics are close to symmetric, the percentile interval
  stays inside [0, 1] and is transformation-respecting, the same rule serves the paired differences and the
  per-fold standard errors, and BCa's bias/skew correction moves the endpoints of a DFEW-sized fold's UAR
  interval by about a tenth of a point (`benchmarks/stats_speed.py`, on the same draws through scipy).
* **Paired comparison of two runs on the same videos** (`paired_comparison`): ΔUAR / ΔWAR / Δmacro-F1 with a
  paired stratified bootstrap interval (the same resampled videos for both runs), a two-sided p-value from an
  approximate randomisation test (`scipy.stats.permutation_test`, the two runs' predictions swapped video by
  video), and McNemar's exact test on per-video correctness (`scipy.stats.binomtest` on the discordant pairs).
  Several folds: the per-fold differences and their unweighted mean (the protocol's aggregate), with the
  bootstrap and the randomisation run jointly over all folds' videos (each fold resampled within itself).
* **Fold means** (`fold_mean_interval`): the DFEW / MAFW number is the unweighted mean over the fixed folds. Its
  interval adds the within-fold sampling variance of each fold (the bootstrap's) to a between-fold variance
  tau² estimated by DerSimonian-Laird (the spread between folds beyond what sampling explains: split difficulty
  and training noise a re-run would meet again), SE = sqrt(sum_i (v_i + tau²)) / k, with a Student t quantile on
  k - 1 degrees of freedom. With folds that agree it is the pooled sampling interval; with folds that disagree it
  widens towards the t interval over the fold values.
* Seeds are never folded into an interval: a row with several seeds shows their spread separately.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

N_RESAMPLES = 2000
LEVEL = 0.95
SEED = 0
METHOD = "stratified percentile bootstrap over test videos"
# published numbers carry two decimals: one that rounds into an interval lies inside it
PUBLISHED_ROUNDING = 0.005


def published_inside(lo: float, hi: float, published: float) -> bool:
    """Whether a published number (percent, two decimals) lies inside a reproduced interval [lo, hi] (percent):
    the rule of `bench report --paper`'s verdicts and of `bench data verify`'s."""
    return lo - PUBLISHED_ROUNDING <= published <= hi + PUBLISHED_ROUNDING
METRIC_NAMES = ("uar", "war", "macro_f1")
_CHUNK = 250  # resamples per vectorised block (bounds memory on large test sets)


# ----------------------------------------------------------------------------------------------------------
# metrics of many resamples at once


def _metrics_of(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """UAR, WAR, macro-F1 of each row of (R, n) label / prediction arrays (classes absent from a row's labels are
    excluded, as bench.metrics does)."""
    r, n = preds.shape
    k = num_classes
    flat = (np.arange(r)[:, None] * k + labels) * k + preds
    cm = np.bincount(flat.ravel(), minlength=r * k * k).reshape(r, k, k).astype(np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(2), cm.sum(1)
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, tp / support, np.nan)
        f1 = np.where(present, np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0), np.nan)
        return {"uar": np.nanmean(recall, 1), "war": tp.sum(1) / n, "macro_f1": np.nanmean(f1, 1)}


def point_metrics(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> dict[str, float]:
    out = _metrics_of(np.asarray(labels)[None], np.asarray(preds)[None], num_classes)
    return {k: float(v[0]) for k, v in out.items()}


def stratified_indices(labels: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(R, n) video indices: each class's positions resampled with replacement within the class, kept in place."""
    labels = np.asarray(labels)
    idx = np.empty((n_resamples, labels.size), dtype=np.int64)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        idx[:, where] = where[rng.integers(0, where.size, size=(n_resamples, where.size))]
    return idx


def bootstrap_distribution(labels: Sequence[int], preds_by_run: Sequence[Sequence[int]], num_classes: int, *,
                           n_resamples: int = N_RESAMPLES, seed: int = SEED) -> dict[str, np.ndarray]:
    """Each metric over `n_resamples` stratified resamples of the videos; with several runs on the same videos
    (seeds) the metric is their mean, every run seeing the same resampled videos."""
    labels = np.asarray(labels, dtype=np.int64)
    runs = [np.asarray(p, dtype=np.int64) for p in preds_by_run]
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {m: [] for m in METRIC_NAMES}
    for start in range(0, n_resamples, _CHUNK):
        idx = stratified_indices(labels, min(_CHUNK, n_resamples - start), rng)
        per_run = [_metrics_of(labels[idx], p[idx], num_classes) for p in runs]
        for m in METRIC_NAMES:
            out[m].append(np.mean([r[m] for r in per_run], axis=0))
    return {m: np.concatenate(v) for m, v in out.items()}


def _percentile(dist: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(dist, [tail, 100 - tail])
    return float(lo), float(hi)


def metric_intervals(labels: Sequence[int], preds_by_run: Sequence[Sequence[int]] | Sequence[int], num_classes: int,
                     *, n_resamples: int = N_RESAMPLES, seed: int = SEED, level: float = LEVEL) -> dict[str, Any]:
    """Point values and percentile intervals (fractions, like result.json's metrics) of UAR, WAR and macro-F1 on
    one test split. `preds_by_run`: one prediction array, or several (seeds) on the same videos."""
    runs = [preds_by_run] if np.ndim(preds_by_run[0]) == 0 else list(preds_by_run)  # type: ignore[index]
    dist = bootstrap_distribution(labels, runs, num_classes, n_resamples=n_resamples, seed=seed)
    points = [point_metrics(labels, p, num_classes) for p in runs]
    out: dict[str, Any] = {"method": METHOD, "resamples": n_resamples, "seed": seed, "level": level,
                           "n_videos": int(len(labels)), "n_runs": len(runs)}
    for m in METRIC_NAMES:
        lo, hi = _percentile(dist[m], level)
        out[m] = {"point": float(np.mean([p[m] for p in points])), "lo": lo, "hi": hi,
                  "se": float(np.nanstd(dist[m], ddof=1))}
    return out


# ----------------------------------------------------------------------------------------------------------
# fold means


def fold_mean_interval(values: Sequence[float], ses: Sequence[float], level: float = LEVEL) -> dict[str, float]:
    """The unweighted mean over folds with an interval for both within-fold sampling (`ses`, each fold's
    bootstrap standard error) and the between-fold spread (DerSimonian-Laird tau²); t quantile on k-1 df."""
    y = np.asarray(values, dtype=np.float64)
    v = np.maximum(np.asarray(ses, dtype=np.float64) ** 2, 1e-12)
    k = y.size
    if k == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "tau2": math.nan, "se": math.nan, "k": 0}
    mean = float(y.mean())
    if k == 1:
        se = float(math.sqrt(v[0]))
        z = sps.norm.ppf(0.5 + level / 2)
        return {"mean": mean, "lo": mean - z * se, "hi": mean + z * se, "tau2": 0.0, "se": se, "k": 1}
    w = 1.0 / v
    q = float(np.sum(w * (y - np.sum(w * y) / w.sum()) ** 2))
    tau2 = max(0.0, (q - (k - 1)) / (w.sum() - np.sum(w ** 2) / w.sum()))
    se = float(math.sqrt(np.sum(v + tau2)) / k)
    t = float(sps.t.ppf(0.5 + level / 2, k - 1))
    return {"mean": mean, "lo": mean - t * se, "hi": mean + t * se, "tau2": float(tau2), "se": se, "k": k}


# ----------------------------------------------------------------------------------------------------------
# paired comparison of two runs on the same videos


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """McNemar's exact test on per-video correctness: b = A right and B wrong, c = the reverse; under H0 each
    discordant video is a fair coin (scipy binomtest, two-sided). p = 1 when there is no discordant pair."""
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    p = 1.0 if b + c == 0 else float(sps.binomtest(b, b + c, 0.5).pvalue)
    return {"a_only": b, "b_only": c, "p": p}


def _uar_rows(labels: np.ndarray, preds: np.ndarray, strata: list[np.ndarray]) -> np.ndarray:
    """UAR of each row of `preds` (..., n) against fixed labels (the strata are each present class's videos)."""
    correct = preds == labels
    return np.mean([correct[..., s].mean(-1) for s in strata], axis=0)


def paired_comparison(folds: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], num_classes: int, *,
                      n_resamples: int = N_RESAMPLES, n_permutations: int = 5000, seed: int = SEED,
                      level: float = LEVEL) -> dict[str, Any]:
    """A vs B on the same videos, one (labels, preds_a, preds_b) per fold. Δ = A - B (fractions): per fold, and the
    unweighted mean over folds with its paired bootstrap interval; randomisation p-value for ΔUAR and ΔWAR;
    McNemar on correctness pooled over the folds' videos."""
    rng = np.random.default_rng(seed)
    per_fold, deltas = [], {m: [] for m in METRIC_NAMES}
    for labels, pa, pb in folds:
        labels, pa, pb = (np.asarray(x, dtype=np.int64) for x in (labels, pa, pb))
        a, b = point_metrics(labels, pa, num_classes), point_metrics(labels, pb, num_classes)
        dist = {m: [] for m in METRIC_NAMES}
        for start in range(0, n_resamples, _CHUNK):
            idx = stratified_indices(labels, min(_CHUNK, n_resamples - start), rng)
            ma, mb = _metrics_of(labels[idx], pa[idx], num_classes), _metrics_of(labels[idx], pb[idx], num_classes)
            for m in METRIC_NAMES:
                dist[m].append(ma[m] - mb[m])
        fold_row: dict[str, Any] = {"n_videos": int(labels.size)}
        for m in METRIC_NAMES:
            d = np.concatenate(dist[m])
            deltas[m].append(d)
            lo, hi = _percentile(d, level)
            fold_row[m] = {"a": a[m], "b": b[m], "delta": a[m] - b[m], "lo": lo, "hi": hi}
        fold_row["mcnemar"] = mcnemar_exact(pa == labels, pb == labels)
        per_fold.append(fold_row)
    combined: dict[str, Any] = {}
    for m in METRIC_NAMES:
        d = np.mean(deltas[m], axis=0)  # each fold resampled within itself; the protocol's unweighted mean
        lo, hi = _percentile(d, level)
        combined[m] = {"delta": float(np.mean([f[m]["delta"] for f in per_fold])), "lo": lo, "hi": hi}
    for m in ("uar", "war"):
        combined[m]["p_randomisation"] = randomisation_p(folds, m, n_permutations, seed)
    all_a = np.concatenate([np.asarray(pa) == np.asarray(lab) for lab, pa, _ in folds])
    all_b = np.concatenate([np.asarray(pb) == np.asarray(lab) for lab, _, pb in folds])
    combined["mcnemar"] = mcnemar_exact(all_a, all_b)
    return {"per_fold": per_fold, "combined": combined, "level": level, "resamples": n_resamples,
            "permutations": n_permutations, "seed": seed, "method": "paired " + METHOD}


def randomisation_p(folds: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], metric: str, n_permutations: int,
                     seed: int) -> float:
    """Two-sided approximate randomisation test of the fold-mean Δ: under H0 the two runs' predictions of a video
    are exchangeable, so each video's pair is swapped at random (scipy permutation_type='samples')."""
    labels = [np.asarray(f[0], dtype=np.int64) for f in folds]
    sizes = np.cumsum([0] + [lab.size for lab in labels])
    strata = [[np.flatnonzero(lab == c) for c in np.unique(lab)] for lab in labels]

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
        out = []
        for i, lab in enumerate(labels):
            sa, sb = a[..., sizes[i]:sizes[i + 1]], b[..., sizes[i]:sizes[i + 1]]
            if metric == "uar":
                out.append(_uar_rows(lab, sa, strata[i]) - _uar_rows(lab, sb, strata[i]))
            else:
                out.append((sa == lab).mean(-1) - (sb == lab).mean(-1))
        return np.mean(out, axis=0)

    pa = np.concatenate([np.asarray(f[1], dtype=np.int64) for f in folds])
    pb = np.concatenate([np.asarray(f[2], dtype=np.int64) for f in folds])
    if np.array_equal(pa, pb):
        return 1.0
    res = sps.permutation_test((pa, pb), statistic, permutation_type="samples", vectorized=True,
                               n_resamples=n_permutations, alternative="two-sided", batch=200,
                               random_state=np.random.default_rng(seed))
    return float(res.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down; monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p)
    m = p.size
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()
