"""Intervals of report rows and paired tests between rows, from each run's `predictions.npz` (bench.stats).

A run written since intervals exist carries its own (`metrics.ci` in result.json); an older run gets them
computed here from its saved predictions, and the row says so. A row's interval depends on its runs:
one run -> its bootstrap interval; several seeds on one split -> the bootstrap of the seed-averaged metric (the
same resampled videos for every seed); several folds -> `bench.stats.fold_mean_interval` over the folds
(seeds averaged within a fold first, as the row's mean is). The seed spread is reported beside, never inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import stats
from bench.report.aggregate import Group
from bench.store import StoredRun

STORED, COMPUTED, NONE = "stored in result.json", "computed from predictions.npz at report time", "no predictions"


@dataclass
class Predictions:
    video_ids: np.ndarray
    labels: np.ndarray
    preds: np.ndarray
    num_classes: int


def run_predictions(run: StoredRun) -> Predictions | None:
    """The run's per-video predictions (argmax of the aggregated scores), sorted by video id; None without
    a readable predictions.npz."""
    name = (run.get("artifacts") or {}).get("predictions") or "predictions.npz"
    path = run.path.parent / name
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, labels, scores = z["video_ids"], z["labels"], z["video_scores"]
            classes = len(z["classes"]) if "classes" in z.files else scores.shape[1]
    except (OSError, KeyError, ValueError):
        return None
    order = np.argsort(ids, kind="stable")
    return Predictions(ids[order], labels[order].astype(np.int64), scores[order].argmax(1).astype(np.int64),
                       int(classes))


def _current(ci: Any) -> bool:
    return isinstance(ci, dict) and ci.get("method") == stats.METHOD and ci.get("resamples") == stats.N_RESAMPLES \
        and ci.get("level") == stats.LEVEL and all(isinstance(ci.get(m), dict) for m in stats.METRIC_NAMES)


def run_interval(run: StoredRun) -> dict[str, Any] | None:
    """The run's interval block (fractions), with where it came from under 'source'."""
    ci = (run.get("metrics") or {}).get("ci")
    if _current(ci):
        return {**ci, "source": STORED}
    p = run_predictions(run)
    if p is None:
        return None
    return {**stats.metric_intervals(p.labels, p.preds, p.num_classes), "source": COMPUTED}


def _by_fold(g: Group) -> dict[Any, list[StoredRun]]:
    out: dict[Any, list[StoredRun]] = {}
    for r in g.runs:
        out.setdefault(r.get("fold"), []).append(r)
    return out


def group_interval(g: Group) -> dict[str, Any]:
    """Per metric {'lo', 'hi'} in percent, the kind of interval, its source and the seed spread of the row."""
    folds = _by_fold(g)
    sources, per_fold = set(), {}
    for fold, runs in folds.items():
        if len(runs) == 1:
            ci = run_interval(runs[0])
            if ci is None:
                return {"kind": "none", "source": NONE}
            sources.add(ci["source"])
            per_fold[fold] = {m: ci[m] for m in stats.METRIC_NAMES}
            continue
        preds = [run_predictions(r) for r in runs]
        if any(p is None for p in preds) or any(not np.array_equal(p.video_ids, preds[0].video_ids) for p in preds):
            return {"kind": "none", "source": NONE}
        dist = stats.bootstrap_distribution(preds[0].labels, [p.preds for p in preds], preds[0].num_classes)
        points = [stats.point_metrics(p.labels, p.preds, p.num_classes) for p in preds]
        sources.add(COMPUTED)
        per_fold[fold] = {}
        for m in stats.METRIC_NAMES:
            lo, hi = np.nanpercentile(dist[m], [100 * (1 - stats.LEVEL) / 2, 100 * (1 + stats.LEVEL) / 2])
            per_fold[fold][m] = {"point": float(np.mean([p[m] for p in points])), "lo": float(lo), "hi": float(hi),
                                 "se": float(np.nanstd(dist[m], ddof=1))}
    out: dict[str, Any] = {"source": "; ".join(sorted(sources)), "level": stats.LEVEL, "k": len(per_fold)}
    if len(per_fold) == 1:
        (only,) = per_fold.values()
        n_seeds = len(next(iter(folds.values())))
        out["kind"] = "bootstrap" + (f", {n_seeds} seeds averaged" if n_seeds > 1 else "")
        for m in stats.METRIC_NAMES:
            out[m] = {"lo": 100 * only[m]["lo"], "hi": 100 * only[m]["hi"]}
    else:
        out["kind"] = f"{len(per_fold)} folds: bootstrap within, DerSimonian-Laird between, t"
        for m in stats.METRIC_NAMES:
            fm = stats.fold_mean_interval([f[m]["point"] for f in per_fold.values()],
                                          [f[m]["se"] for f in per_fold.values()])
            out[m] = {"lo": 100 * fm["lo"], "hi": 100 * fm["hi"], "tau2": fm["tau2"]}
    out["seed_sd"] = seed_spread(g)
    return out


def seed_spread(g: Group) -> dict[str, float] | None:
    """Std over seeds (percent) of the row's metric, each seed's value the mean over the folds it has; None
    with one seed."""
    by_seed: dict[int, dict[Any, dict]] = {}
    for r in g.runs:
        by_seed.setdefault(int(r.get("seed", 0)), {})[r.get("fold")] = r["metrics"]
    if len(by_seed) < 2:
        return None
    out = {}
    for m in stats.METRIC_NAMES:
        vals = [np.mean([100 * float(x[m]) for x in folds.values() if x.get(m) is not None]) for folds in by_seed.values()]
        out[m] = float(np.std(vals, ddof=1))
    out["n_seeds"] = len(by_seed)
    return out


# ----------------------------------------------------------------------------------------------------------
# paired tests between rows


def paired_folds(a: Group, b: Group) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """(labels, preds_a, preds_b) per fold both rows have, on identical videos and labels (the lowest seed of
    each); None when the rows do not share their test videos fold for fold."""
    fa, fb = _by_fold(a), _by_fold(b)
    if set(fa) != set(fb):
        return None
    out = []
    for fold in sorted(fa, key=lambda f: (f is None, f or 0)):
        ra = min(fa[fold], key=lambda r: r.get("seed", 0))
        rb = min(fb[fold], key=lambda r: r.get("seed", 0))
        pa, pb = run_predictions(ra), run_predictions(rb)
        if pa is None or pb is None or not np.array_equal(pa.video_ids, pb.video_ids) \
                or not np.array_equal(pa.labels, pb.labels):
            return None
        out.append((pa.labels, pa.preds, pb.preds))
    return out


def compare_with_best(groups: list[Group], rows: list[dict], level: float = 0.05,
                      n_permutations: int = 2000) -> None:
    """Mark each row `vs_best`: 'best' for the row of highest UAR, 'tied' where a paired randomisation test of
    ΔUAR against it does not reject at `level` after Holm's correction over the rows tested, 'worse' where it
    does, '' where the two rows do not share their test videos (or a row has no predictions)."""
    scored = [i for i, r in enumerate(rows) if r.get("uar_mean") is not None and not np.isnan(r["uar_mean"])]
    for r in rows:
        r["vs_best"], r["p_vs_best"] = "", None
    if not scored:
        return
    best = max(scored, key=lambda i: rows[i]["uar_mean"])
    rows[best]["vs_best"] = "best"
    tested, pvals = [], []
    for i in scored:
        if i == best:
            continue
        folds = paired_folds(groups[best], groups[i])
        if folds is None:
            continue
        pvals.append(stats.randomisation_p(folds, "uar", n_permutations, stats.SEED))
        tested.append(i)
    for i, p in zip(tested, stats.holm(pvals), strict=True):
        rows[i]["p_vs_best"] = p
        rows[i]["vs_best"] = "tied" if p >= level else "worse"


def add_intervals(groups: list[Group], rows: list[dict]) -> None:
    """Interval columns of report rows (percent): `<metric>_lo` / `<metric>_hi`, `ci_kind`, `ci_source`, the seed
    spread `<metric>_seed_sd`, and the `vs_best` mark of `compare_with_best`."""
    for g, r in zip(groups, rows, strict=True):
        iv = group_interval(g)
        r["ci_kind"], r["ci_source"] = iv["kind"], iv["source"]
        spread = iv.get("seed_sd") or {}
        for m in stats.METRIC_NAMES:
            r[f"{m}_lo"] = (iv.get(m) or {}).get("lo")
            r[f"{m}_hi"] = (iv.get(m) or {}).get("hi")
            r[f"{m}_seed_sd"] = spread.get(m)
    compare_with_best(groups, rows)
