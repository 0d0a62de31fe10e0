"""`bench compare A B`: is A really better than B? A paired comparison on the same test videos (bench/stats.py).

A side is a run directory, an evaluation directory written beside a run (`bench eval --run RUN --corrupt` /
`--on`: is a corruption's drop beyond sampling noise?), a run id under the results folder, or a method name, which resolves to the runs of
its report row on the dataset (the method's own recipe; the most complete configuration otherwise, as `bench
report --paper` picks them). Several folds are paired fold by fold, one run per fold (the lowest seed); two runs
are refused, with one line, when their test videos differ: another dataset, another fold, a missing video or
another label (another split file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench import stats
from bench.errors import BenchError
from bench.store import RESULT_FILE, StoredRun, load_runs


def _load(path: Path) -> StoredRun:
    import json

    from bench.store import result_problem

    data = json.loads(path.read_text())
    problem = result_problem(data)
    if problem:
        raise BenchError(f"{path}: cannot be compared ({problem})")
    return StoredRun(path=path, data=data)


def _load_eval(path: Path) -> StoredRun:
    """An evaluation beside a run as a side: its own predictions, named after the run and the condition; a
    cross-corpus evaluation is on its target (with the target's options), so it never pairs with in-domain runs."""
    import json

    try:
        data = json.loads(path.read_text())
        run_id, dataset = str(data["run_id"]), str(data["dataset"])
    except (OSError, ValueError, KeyError) as e:
        raise BenchError(f"{path}: not a readable evaluation ({e}); re-run the bench eval that wrote it") from e
    if data.get("cross"):
        from bench.report.robustness import cross_target

        dataset = cross_target(data["cross"])
        label = f"on {dataset}"
    else:
        label = path.parent.name  # the condition's directory, as bench eval names it: clean, reverse-s5, ...
    return StoredRun(path=path, data={**data, "run_id": f"{run_id} ({label})", "dataset": dataset})


def resolve_side(arg: str, results: Path, dataset: str | None) -> list[StoredRun]:
    """The runs a command-line side names (see the module docstring)."""
    path = Path(arg)
    if (path / "eval.json").is_file():
        return [_load_eval(path / "eval.json")]
    if (path / RESULT_FILE).is_file():
        return [_load(path / RESULT_FILE)]
    if path.name == RESULT_FILE and path.is_file():
        return [_load(path)]
    hits = sorted((Path(results) / "runs").glob(f"*/*/*/{arg}/{RESULT_FILE}"))
    if hits:
        return [_load(hits[0])]
    from bench.registry import METHODS

    if arg not in METHODS:
        raise BenchError(f"{arg}: not a run directory, a run id under {results}/runs, or a registered method")
    from bench.report.aggregate import group_runs
    from bench.report.papers import pick_group

    runs, _ = load_runs(results)
    mine = [r for r in runs if r["method"] == arg and (dataset is None or r["dataset"] == dataset)]
    datasets = sorted({r["dataset"] for r in mine})
    if not datasets:
        where = f" on {dataset}" if dataset else ""
        raise BenchError(f"{arg}: no completed run{where} under {results}/runs; run it first or pass run directories")
    if len(datasets) > 1:
        raise BenchError(f"{arg}: runs on {', '.join(datasets)}; choose one with --dataset")
    group, _ = pick_group(group_runs(mine).get(datasets[0], []), arg, datasets[0])
    return list(group.runs)


def _fold_runs(runs: list[StoredRun]) -> dict[Any, StoredRun]:
    out: dict[Any, StoredRun] = {}
    for r in sorted(runs, key=lambda r: r.get("seed", 0)):
        out.setdefault(r.get("fold"), r)
    return out


def _name(runs: list[StoredRun]) -> str:
    r = runs[0]
    return r.run_id if len(runs) == 1 else f"{r['method']} ({r.get('protocol_name', '')}, {len(runs)} runs)"


def pair(side_a: list[StoredRun], side_b: list[StoredRun]) -> list[dict[str, Any]]:
    """Fold by fold: {fold, run_a, run_b, labels, preds_a, preds_b}; one-line errors where the videos differ."""
    from bench.report.uncertainty import run_predictions

    da, db = {r["dataset"] for r in side_a}, {r["dataset"] for r in side_b}
    if da != db:
        raise BenchError(f"cannot pair runs of different datasets: A on {', '.join(sorted(da))}, B on "
                         f"{', '.join(sorted(db))}")
    fa, fb = _fold_runs(side_a), _fold_runs(side_b)
    if set(fa) != set(fb):
        raise BenchError(f"the two sides were tested on different folds (A: {sorted(fa, key=str)}, B: "
                         f"{sorted(fb, key=str)}); pair runs of the same folds")
    out = []
    for fold in sorted(fa, key=lambda f: (f is None, f or 0)):
        ra, rb = fa[fold], fb[fold]
        pa, pb = run_predictions(ra), run_predictions(rb)
        for run, p in ((ra, pa), (rb, pb)):
            if p is None:
                raise BenchError(f"{run.path.parent}: no readable predictions.npz; re-evaluate the run to compare it")
        if not np.array_equal(pa.video_ids, pb.video_ids):
            only_a = sorted(set(pa.video_ids.tolist()) - set(pb.video_ids.tolist()))
            only_b = sorted(set(pb.video_ids.tolist()) - set(pa.video_ids.tolist()))
            raise BenchError(f"fold {fold}: the test videos differ ({len(only_a)} only in A, e.g. {only_a[:2]}; "
                             f"{len(only_b)} only in B, e.g. {only_b[:2]}): another split file or a missing video")
        if not np.array_equal(pa.labels, pb.labels):
            diff = pa.video_ids[pa.labels != pb.labels]
            raise BenchError(f"fold {fold}: {diff.size} test videos carry other labels in A and B (e.g. "
                             f"{diff[:2].tolist()}): another split file")
        out.append({"fold": fold, "run_a": ra.run_id, "run_b": rb.run_id, "labels": pa.labels, "preds_a": pa.preds,
                    "preds_b": pb.preds, "num_classes": max(pa.num_classes, pb.num_classes)})
    return out


def compare(a: str, b: str, results: Path = Path("results"), dataset: str | None = None, *,
            n_resamples: int = stats.N_RESAMPLES, n_permutations: int = 5000, seed: int = stats.SEED) -> dict:
    side_a, side_b = resolve_side(a, results, dataset), resolve_side(b, results, dataset)
    pairs = pair(side_a, side_b)
    res = stats.paired_comparison([(p["labels"], p["preds_a"], p["preds_b"]) for p in pairs],
                                  max(p["num_classes"] for p in pairs), n_resamples=n_resamples,
                                  n_permutations=n_permutations, seed=seed)
    for p, row in zip(pairs, res["per_fold"], strict=True):
        row.update({"fold": p["fold"], "run_a": p["run_a"], "run_b": p["run_b"]})
    return {"a": _name(side_a), "b": _name(side_b), "dataset": side_a[0]["dataset"], **res}


def verdict(res: dict, metric: str = "uar", alpha: float = 0.05) -> str:
    c = res["combined"][metric]
    if c["p_randomisation"] >= alpha:
        return (f"no significant {metric.upper()} difference (Δ {100 * c['delta']:+.2f} points, p = "
                f"{c['p_randomisation']:.3g})")
    better, worse = ("A", "B") if c["delta"] > 0 else ("B", "A")
    return (f"{better} is better than {worse} on {metric.upper()} by {100 * abs(c['delta']):.2f} points "
            f"(95% [{100 * c['lo']:+.2f}, {100 * c['hi']:+.2f}], p = {c['p_randomisation']:.3g})")
