"""Rows of a report: runs grouped by dataset x method x configuration (the spec without fold, seed and the
keys that do not change results), with fold means/stds, per-class recall, protocol columns and cost."""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.metrics import aggregate_folds
from bench.registry import DATASETS
from bench.report.literature import reported_for
from bench.spec import semantic_view, with_defaults
from bench.store import StoredRun

METRICS = ("uar", "war", "macro_f1")  # per-run metrics aggregated over folds (macro_f1: None for old results)
SELECTION_LABELS = {
    "last": "last epoch",
    "best_on_val": "best on val",
    "best_on_test": "BEST ON TEST (optimistic)",
}


def variant_hash(d: dict) -> str:
    """Hash of the resolved spec without fold, seed and the keys that do not change results (spec.NON_SEMANTIC,
    the same rule as the run-id hash), keys a stored spec predates taken at their default: runs sharing it form
    one table row."""
    stored = json.loads(json.dumps(d.get("spec") or {}, default=str))
    spec = semantic_view(with_defaults(stored) if stored else stored)
    for k in ("fold", "seed"):
        spec.pop(k, None)
    if not spec:  # no spec recorded: fall back on what identifies the protocol
        spec = {"method": d.get("method"), "protocol": d.get("protocol"), "name": d.get("protocol_name")}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]


def expected_folds(dataset: str, observed: Iterable[int | None]) -> tuple[int | None, ...]:
    """The dataset's official fold set from the registry; for a dataset unknown here, the folds that were run."""
    if dataset in DATASETS:
        return tuple(DATASETS.get(dataset).folds)
    return tuple(sorted(set(observed), key=lambda f: (f is None, f or 0)))


def _pct(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else 100.0 * float(x)


def _fold_key(f: Any) -> tuple:
    return (f is None, f if f is not None else 0)


@dataclass
class Group:
    """The runs of one table row: one dataset x method x configuration (protocol, selection, init)."""

    dataset: str
    method: str
    variant: str
    runs: list[StoredRun]

    @property
    def first(self) -> StoredRun:
        return self.runs[0]

    @property
    def protocol(self) -> dict:
        return self.first.get("protocol") or {}

    @property
    def selection(self) -> str:
        return str(self.protocol.get("selection", "last"))

    def label(self) -> str:
        return f"{self.method} [{self.first.get('protocol_name', '')}, {self.selection}, {self.variant}]"


def group_runs(runs: Sequence[StoredRun]) -> dict[str, list[Group]]:
    """dataset -> groups (rows), ordered by method then configuration."""
    buckets: dict[tuple[str, str, str], list[StoredRun]] = {}
    for r in runs:
        key = (str(r["dataset"]), str(r["method"]), variant_hash(r.data))
        buckets.setdefault(key, []).append(r)
    out: dict[str, list[Group]] = {}
    for (ds, m, v), rs in sorted(buckets.items()):
        rs.sort(key=lambda r: (_fold_key(r.get("fold")), r.get("seed", 0), r.run_id))
        out.setdefault(ds, []).append(Group(ds, m, v, rs))
    return out


def _protocol_columns(g: Group) -> dict[str, Any]:
    p = g.protocol
    init = p.get("init") or {}
    init_s = str(init.get("label") or init.get("kind", "scratch"))  # "random init (not the method)" stays visible
    if init.get("sha256"):
        init_s += f" ({str(init['sha256'])[:8]})"
    views = f"{p.get('test_temporal', '?')} {p.get('test_views', '?')}x{p.get('test_crops', '?')}"
    if p.get("views_per_video") is not None:
        views += f" ({float(p['views_per_video']):g}/video)"
    options = ((g.first.get("spec") or {}).get("data") or {}).get("options") or {}
    shown = ", ".join(f"{k}={v}" for k, v in sorted(options.items()) if k not in ("on_bad_clip", "verify"))
    return {
        "protocol": g.first.get("protocol_name", ""),
        "input": f"{p.get('frames', '?')}x{p.get('size', '?')}" + (f" ({shown})" if shown else ""),
        "epochs": p.get("epochs"),
        "sampling": f"{p.get('sampler', '?')}/s{p.get('stride', '?')}",
        "test_views": views,
        "selection": g.selection,
        "init": init_s,
    }


def _profile_of(g: Group) -> dict:
    return next((r.get("profile") for r in g.runs if r.get("profile")), None) or {}


def predicts_one_class(run: StoredRun) -> bool:
    """Every test prediction in one class (a confusion matrix with one non-empty column): the model learnt the
    class prior and nothing that depends on the input, whatever its UAR/WAR read."""
    confusion = run["metrics"].get("confusion")
    if not confusion:
        return False
    return sum(1 for column in zip(*confusion, strict=True) if sum(column) > 0) <= 1


def summarise_group(g: Group, literature: list[dict]) -> dict[str, Any]:
    """One table row (numbers in percent, raw floats): means/stds over folds plus cost and reported values."""
    folds_expected = expected_folds(g.dataset, [r.get("fold") for r in g.runs])
    def num(x: Any) -> float:  # JSON null (an undefined metric) -> NaN, which then shows as empty
        return float("nan") if x is None else float(x)

    rows = [{"fold": r.get("fold"), **{k: num(r["metrics"].get(k)) for k in METRICS}} for r in g.runs]
    seeds = sorted({r.get("seed", 0) for r in g.runs})
    # One split run (a single-split dataset, or one fold of a folded one) with several seeds: the spread is over
    # seeds; a std over one fold mean would read 0.00.
    single_split = len(folds_expected) == 1 or len({r.get("fold") for r in g.runs}) == 1
    aggs = {}
    for k in METRICS:
        agg = aggregate_folds(rows, key=k, expected_folds=folds_expected)
        if single_split and len(g.runs) > 1:
            agg = {**agg, "std": float(np.std([x[k] for x in rows], ddof=1))}
        aggs[k] = agg
    agg_u = aggs["uar"]
    prof = _profile_of(g)
    row: dict[str, Any] = {
        "dataset": g.dataset,
        "method": g.method,
        "family": g.first.get("family", ""),
        "parent": g.first.get("parent") or "",
        **_protocol_columns(g),
        "variant": g.variant,
        "n_folds": agg_u["n"],
        "n_folds_expected": agg_u["n_expected"],
        "complete": bool(agg_u["complete"]),
        "did_not_learn": all(predicts_one_class(r) for r in g.runs),
        "folds": [f for f in agg_u["folds"]],
        "n_runs": len(g.runs),
        "seeds": seeds,
        **{f"{k}_{stat}": (_pct(aggs[k]["mean"]) if stat == "mean" else
                           _pct(aggs[k]["std"]) if len(g.runs) > 1 else None)
           for k in METRICS for stat in ("mean", "std")},
        "std_over": "seeds" if single_split else "folds",
        "params_m": prof["params_total"] / 1e6 if prof.get("params_total") is not None else None,
        "params_trainable_m": prof["params_trainable"] / 1e6 if prof.get("params_trainable") is not None else None,
        "gmacs": prof.get("gmacs"),
        "gmacs_per_video": prof.get("gmacs_per_video"),
        **reported_for(g.method, g.dataset, literature),
        "run_ids": [r.run_id for r in g.runs],
    }
    return row


def per_class_rows(g: Group) -> tuple[list[str], dict[str, Any]]:
    """Per-class recall (percent), mean over folds (seeds averaged within a fold first), NaN-aware."""
    classes: list[str] = []
    for r in g.runs:
        for c in r["metrics"].get("classes") or list((r["metrics"].get("per_class_recall") or {}).keys()):
            if c not in classes:
                classes.append(c)
    by_fold: dict[Any, list[list[float]]] = {}
    for r in g.runs:
        pcr = r["metrics"].get("per_class_recall") or {}
        vec = [np.nan if pcr.get(c) is None else float(pcr[c]) for c in classes]
        by_fold.setdefault(r.get("fold"), []).append(vec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (class never in test) stay NaN
        fold_means = np.array([np.nanmean(np.array(v), axis=0) for v in by_fold.values()])
        mean = np.nanmean(fold_means, axis=0) if len(fold_means) else np.full(len(classes), np.nan)
    row = {c: (None if np.isnan(m) else 100.0 * float(m)) for c, m in zip(classes, mean, strict=True)}
    return classes, row


# ----------------------------------------------------------------------------------------------------------
# formatting
