"""DFER metrics in pure numpy: confusion matrix, UAR, WAR, per-class recall, and fold aggregation.

Conventions (the ones DFEW/FERV39k/MAFW papers use):

* WAR (weighted average recall) = overall accuracy = trace(cm) / cm.sum().
* UAR (unweighted average recall) = mean over classes of the per-class recall TP / (TP + FN).
* A class with no test sample has an undefined recall: `per_class_recall` returns NaN for it and UAR
  **excludes** it (mean over the classes present). scikit-learn's `recall_score(average="macro")` would
  instead count it as 0 (with a warning) once it appears in `labels`, while `balanced_accuracy_score` and
  torchmetrics' `MulticlassRecall(average="macro")` (used by IFDD) give such classes zero weight, which is
  the same as excluding them. Excluding is the only choice that does not depend on how many absent
  classes were listed, so it is the one used here.
* Macro-F1 (the ABAW convention, and the metric of zero-shot compound-expression papers) = the mean over the
  classes present in the test set of 2PR / (P + R), with P = TP / (TP + FP) (0 when the class is never
  predicted). It equals scikit-learn's `f1_score(average="macro", labels=<classes present>)`.
* Fold aggregation: the DFEW/MAFW convention is the *unweighted* mean of the per-fold values (each fold
  counts once, whatever its size), with the standard deviation over folds. It is not the pooled metric
  over all folds' predictions (SVFAP pools; see results/reference/README.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: Iterable[int], y_pred: Iterable[int], num_classes: int) -> np.ndarray:
    """cm[i, j] = number of samples of true class i predicted as class j (rows = truth, as scikit-learn)."""
    t = np.asarray(list(y_true) if not isinstance(y_true, np.ndarray) else y_true, dtype=np.int64).ravel()
    p = np.asarray(list(y_pred) if not isinstance(y_pred, np.ndarray) else y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    if t.size and (t.min() < 0 or p.min() < 0 or t.max() >= num_classes or p.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}); got y_true in [{t.min()}, {t.max()}], "
                         f"y_pred in [{p.min()}, {p.max()}]")
    cm = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return cm.reshape(num_classes, num_classes).astype(np.int64)


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall of each class, NaN for a class absent from the test set (its row sums to 0)."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = np.diag(cm) / support
    rec[support == 0] = np.nan
    return rec


def uar(cm: np.ndarray) -> float:
    """Unweighted average recall over the classes present in the test set (absent classes excluded)."""
    rec = per_class_recall(cm)
    if np.all(np.isnan(rec)):
        return float("nan")
    return float(np.nanmean(rec))


def war(cm: np.ndarray) -> float:
    """Weighted average recall = accuracy."""
    cm = np.asarray(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def per_class_f1(cm: np.ndarray) -> np.ndarray:
    """F1 of each class, NaN for a class absent from the test set; 0 for a present class never predicted right."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
    f1[support == 0] = np.nan
    return f1


def macro_f1(cm: np.ndarray) -> float:
    f1 = per_class_f1(cm)
    return float("nan") if np.all(np.isnan(f1)) else float(np.nanmean(f1))


def _nan_to_none(x: float) -> float | None:
    """JSON has no NaN; an undefined recall is stored as null."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def compute_metrics(y_true: Iterable[int], y_pred: Iterable[int], classes: Sequence[str]) -> dict[str, Any]:
    """The `metrics` block of result.json (without `epoch`/`split`, which the caller adds).

    Per-class recall of an absent class is stored as None (JSON null), never as 0.
    """
    cm = confusion_matrix(y_true, y_pred, len(classes))
    rec = per_class_recall(cm)
    return {
        "uar": uar(cm),
        "war": war(cm),
        "macro_f1": macro_f1(cm),
        "per_class_recall": {c: _nan_to_none(float(r)) for c, r in zip(classes, rec, strict=True)},
        "confusion": cm.tolist(),
        "classes": list(classes),
        "n_test": int(cm.sum()),
    }


def aggregate_folds(values: list[dict] | list[float], *, key: str | None = None,
                    expected_folds: Sequence[Any] | int | None = None, ddof: int = 1) -> dict[str, Any]:
    """Mean and std over folds of one metric: the unweighted mean of per-fold values (DFEW/MAFW convention).

    `values` is a list of floats, or of dicts from which `key` (default "uar") is read; a dict may carry
    "fold" so completeness is judged on distinct folds. `expected_folds` is the number (or the list) of
    folds the protocol has; the result says whether the set is complete ("3/5 folds" otherwise).
    std is the sample standard deviation over folds (`ddof=1`, as pandas; pass 0 for the population std),
    0.0 for a single value and NaN for none. Several seeds of the same fold are averaged first so each fold counts once.
    """
    if values and isinstance(values[0], dict):
        k = key or "uar"
        by_fold: dict[Any, list[float]] = {}
        for i, v in enumerate(values):  # type: ignore[arg-type]
            fold = v.get("fold", i) if isinstance(v, dict) else i
            by_fold.setdefault(fold, []).append(float(v[k]))
        folds = list(by_fold)
        per_fold = [float(np.mean(by_fold[f])) for f in folds]
    else:
        per_fold = [float(v) for v in values]  # type: ignore[arg-type]
        folds = list(range(len(per_fold)))
    n = len(per_fold)
    arr = np.asarray(per_fold, dtype=np.float64)
    mean = float(arr.mean()) if n else float("nan")
    std = float(arr.std(ddof=ddof)) if n > ddof else (0.0 if n >= 1 else float("nan"))
    if expected_folds is None:
        n_expected = n
    elif isinstance(expected_folds, int):
        n_expected = expected_folds
    else:
        n_expected = len(expected_folds)
    out: dict[str, Any] = {
        "mean": mean, "std": std, "n": n, "n_expected": n_expected, "complete": n >= n_expected,
        "folds": folds, "values": per_fold,
    }
    if expected_folds is not None and not isinstance(expected_folds, int):
        out["missing"] = [f for f in expected_folds if f not in folds]
        out["complete"] = not out["missing"]
    return out
