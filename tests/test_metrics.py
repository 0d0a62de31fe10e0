"""bench.metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from bench import metrics as M

sk = pytest.importorskip("sklearn.metrics")


def test_hand_made_case():
    # 3 classes; truth rows: class0 = 4 samples (3 right), class1 = 2 (1 right), class2 = 4 (4 right)
    y_true = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    cm = M.confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[3, 1, 0], [0, 1, 1], [0, 0, 4]]
    assert cm.dtype.kind == "i"
    np.testing.assert_allclose(M.per_class_recall(cm), [0.75, 0.5, 1.0])
    assert M.uar(cm) == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert M.war(cm) == pytest.approx(8 / 10)


@pytest.mark.parametrize("seed", range(5))
def test_random_against_sklearn(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 12))
    n = int(rng.integers(k, 400))
    y_true = rng.integers(0, k, n)
    y_true[:k] = np.arange(k)  # every class present
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, k, n))
    cm = M.confusion_matrix(y_true, y_pred, k)
    np.testing.assert_array_equal(cm, sk.confusion_matrix(y_true, y_pred, labels=list(range(k))))
    assert M.uar(cm) == pytest.approx(sk.recall_score(y_true, y_pred, average="macro", labels=list(range(k))))
    assert M.uar(cm) == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred))
    assert M.war(cm) == pytest.approx(sk.accuracy_score(y_true, y_pred))
    np.testing.assert_allclose(M.per_class_recall(cm),
                               sk.recall_score(y_true, y_pred, average=None, labels=list(range(k))))


def test_missing_class_is_excluded_from_uar():
    # class 2 never occurs in the truth but is predicted once
    y_true = np.array([0, 0, 1, 1, 1, 3, 3])
    y_pred = np.array([0, 2, 1, 1, 0, 3, 3])
    cm = M.confusion_matrix(y_true, y_pred, 4)
    rec = M.per_class_recall(cm)
    assert math.isnan(rec[2])
    np.testing.assert_allclose(rec[[0, 1, 3]], [0.5, 2 / 3, 1.0])
    expected = (0.5 + 2 / 3 + 1.0) / 3
    assert M.uar(cm) == pytest.approx(expected)
    # balanced accuracy gives the absent class zero weight = exclusion
    with warnings.catch_warnings():  # sklearn warns that y_pred holds a class absent from y_true
        warnings.simplefilter("ignore")
        assert M.uar(cm) == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred))
    # recall over the present labels only matches as well
    present = sorted(set(y_true.tolist()))
    assert M.uar(cm) == pytest.approx(sk.recall_score(y_true, y_pred, average="macro", labels=present))
    assert M.war(cm) == pytest.approx(sk.accuracy_score(y_true, y_pred))


def test_compute_metrics_schema_and_json():
    classes = ["happy", "sad", "neutral", "angry"]
    out = M.compute_metrics([0, 0, 1, 3], [0, 1, 1, 3], classes)
    assert set(out) == {"uar", "war", "macro_f1", "per_class_recall", "confusion", "classes", "n_test"}
    assert out["per_class_recall"] == {"happy": 0.5, "sad": 1.0, "neutral": None, "angry": 1.0}
    assert out["n_test"] == 4 and out["classes"] == classes
    assert out["uar"] == pytest.approx(2.5 / 3) and out["war"] == pytest.approx(0.75)
    json.dumps(out, allow_nan=False)  # JSON-safe: no NaN


def test_confusion_rejects_bad_labels():
    with pytest.raises(ValueError):
        M.confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError):
        M.confusion_matrix([0, 1], [0], 3)


def test_aggregate_folds_by_hand():
    vals = [0.61, 0.58, 0.64, 0.60, 0.63]
    agg = M.aggregate_folds(vals, expected_folds=5)
    assert agg["mean"] == pytest.approx(sum(vals) / 5)
    mu = sum(vals) / 5
    assert agg["std"] == pytest.approx(math.sqrt(sum((v - mu) ** 2 for v in vals) / 4))
    assert agg["n"] == 5 and agg["complete"]
    assert M.aggregate_folds(vals, ddof=0)["std"] == pytest.approx(float(np.std(vals)))


def test_aggregate_folds_incomplete_and_seeds():
    runs = [
        {"fold": 1, "uar": 0.50}, {"fold": 1, "uar": 0.60},  # two seeds on fold 1 -> 0.55
        {"fold": 2, "uar": 0.40}, {"fold": 4, "uar": 0.70},
    ]
    agg = M.aggregate_folds(runs, key="uar", expected_folds=[1, 2, 3, 4, 5])
    assert agg["n"] == 3 and not agg["complete"] and agg["missing"] == [3, 5]
    assert agg["mean"] == pytest.approx((0.55 + 0.40 + 0.70) / 3)
    assert agg["std"] == pytest.approx(float(np.std([0.55, 0.40, 0.70], ddof=1)))


def test_aggregate_single_split():
    agg = M.aggregate_folds([{"fold": None, "war": 0.5}], key="war", expected_folds=[None])
    assert agg["mean"] == 0.5 and agg["std"] == 0.0 and agg["complete"]


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_against_sklearn(seed):
    """Macro-F1 over the classes present in the test set, with a class that is only ever predicted and one
    that is never predicted (F1 0), as scikit-learn computes it for those labels."""
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(3, 12))
    n = int(rng.integers(3 * k, 300))
    y_true = rng.integers(0, k - 1, n)  # class k-1 absent from the truth
    y_pred = np.where(rng.random(n) < 0.4, y_true, rng.integers(0, k, n))
    y_pred[y_pred == 0] = 1  # class 0 never predicted
    present = sorted(set(y_true.tolist()))
    cm = M.confusion_matrix(y_true, y_pred, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = sk.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
    assert M.macro_f1(cm) == pytest.approx(expected)
    assert M.compute_metrics(y_true, y_pred, [str(i) for i in range(k)])["macro_f1"] == pytest.approx(expected)
    assert math.isnan(M.per_class_f1(cm)[k - 1]) and M.per_class_f1(cm)[0] == 0.0
