"""`bench compare` through the installed script (paired numbers against sklearn on the same videos, refusals with
one line), and the report's intervals, `vs best` marks and paper verdicts, for runs that store their interval
and for runs written before intervals existed (computed from their predictions.npz, and said so)."""

from __future__ import annotations

import csv
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from bench import stats
from bench.evaluate import save_predictions
from bench.metrics import compute_metrics
from bench.registry import DATASETS
from bench.spec import resolve_spec
from bench.store import run_dir, run_result, write_result
from tests.conftest import REPO, bench_cli

pytestmark = pytest.mark.slow  # subprocesses of the installed script; the statistics themselves: tests/test_stats.py

DFEW = list(DATASETS.get("dfew").classes)


def _write(root: Path, method: str, fold: int, acc: float, *, seed: int = 0, n: int = 400, store_ci: bool = True,
           ids_from: int = 0, protocol: str | None = None) -> dict:
    """A completed DFEW run through the store's schema with its predictions.npz; the videos of a fold are the
    same for every method (same labels), predictions right with probability `acc`."""
    fold_rng = np.random.default_rng(fold)
    labels = fold_rng.choice(7, n, p=[0.25, 0.18, 0.26, 0.15, 0.1, 0.02, 0.04])
    labels[:7] = np.arange(7)
    rng = np.random.default_rng(zlib.crc32(f"{method}{fold}{seed}".encode()))
    pred = np.where(rng.random(n) < acc, labels, rng.integers(0, 7, n))
    scores = np.eye(7)[pred] + 0.01 * rng.random((n, 7))
    spec = resolve_spec(method, "dfew", fold=fold, seed=seed, protocol=protocol, flags={"train": {"device": "cpu"}})
    metrics = {**compute_metrics(labels, pred, DFEW), "epoch": 1, "split": "test"}
    if store_ci:
        metrics["ci"] = stats.metric_intervals(labels, pred, 7)
    result = run_result(spec=spec, family="3D CNN", variant_of=None, duration_s=1.0, selected_epoch=1,
                        views_per_video=1.0, init={"kind": "scratch", "label": "scratch", "path": None, "sha256": None},
                        metrics=metrics, metrics_last=None, profile={"params_total": 1e6, "gmacs": 1.0},
                        env={"device": "cpu"}, data={"n_train": 10, "n_val": 0, "n_test": n, "skipped": []})
    rdir = run_dir(root, spec)
    ids = np.array([f"{i + ids_from:05d}" for i in range(n)])
    save_predictions(rdir / "predictions.npz", {"video_ids": ids, "labels": labels, "video_scores": scores,
                                                "video": np.arange(n), "view": np.zeros(n, int),
                                                "crop": np.zeros(n, int), "logits": scores}, DFEW)
    write_result(rdir, result)
    return {"result": result, "dir": rdir, "labels": labels, "pred": pred}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp") / "results"
    a = {f: _write(root, "r3d18", f, 0.62) for f in (1, 2, 3)}
    b = {f: _write(root, "r18_gru", f, 0.55, store_ci=False) for f in (1, 2, 3)}  # written before intervals
    return {"root": root, "a": a, "b": b}


def test_compare_through_the_script_matches_sklearn_fold_by_fold(runs):
    proc = bench_cli(["compare", "r3d18", "r18_gru", "--results", str(runs["root"]), "--json", "--permutations",
                      "1000"], runs["root"].parent, check=True)
    res = json.loads(proc.stdout)
    assert [f["fold"] for f in res["per_fold"]] == [1, 2, 3]
    deltas = []
    for f in res["per_fold"]:
        a, b = runs["a"][f["fold"]], runs["b"][f["fold"]]
        d = balanced_accuracy_score(a["labels"], a["pred"]) - balanced_accuracy_score(b["labels"], b["pred"])
        assert f["uar"]["delta"] == pytest.approx(d) and f["uar"]["lo"] < d < f["uar"]["hi"]
        assert f["war"]["delta"] == pytest.approx(accuracy_score(a["labels"], a["pred"]) -
                                                  accuracy_score(b["labels"], b["pred"]))
        assert f["mcnemar"]["a_only"] == int(((a["pred"] == a["labels"]) & (b["pred"] != b["labels"])).sum())
        deltas.append(d)
    assert res["combined"]["uar"]["delta"] == pytest.approx(np.mean(deltas))
    assert res["combined"]["uar"]["p_randomisation"] < 0.01  # 7 points on 1,200 videos
    text = bench_cli(["compare", "r3d18", "r18_gru", "--results", str(runs["root"]), "--permutations", "500"],
                     runs["root"].parent, check=True).stdout
    assert "A is better than B on UAR" in text and "mean" in text


def test_compare_refuses_runs_that_do_not_share_their_test_videos(runs, tmp_path):
    root = runs["root"]
    other_fold = bench_cli(["compare", runs["a"][1]["result"]["run_id"], str(runs["b"][2]["dir"]), "--results",
                            str(root)], tmp_path)
    assert other_fold.returncode == 2 and "different folds" in other_fold.stderr
    assert "Traceback" not in other_fold.stderr and len(other_fold.stderr.strip().splitlines()) == 1
    shifted = _write(tmp_path / "res", "r18_gru", 1, 0.5, ids_from=3)  # 3 videos of fold 1 missing, 3 others
    proc = bench_cli(["compare", str(runs["a"][1]["dir"]), str(shifted["dir"])], tmp_path)
    assert proc.returncode == 2 and "test videos differ (3 only in A" in proc.stderr
    proc = bench_cli(["compare", "nonsense", "r3d18", "--results", str(root)], tmp_path)
    assert proc.returncode == 2 and "not a run directory, a run id" in proc.stderr


def test_report_intervals_best_marks_and_old_runs(runs, tmp_path):
    out = tmp_path / "rep"
    bench_cli(["report", "--results", str(runs["root"]), "--out", str(out), "--no-plots"], tmp_path, check=True)
    with open(out / "tables" / "dfew.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    a, b = rows["r3d18"], rows["r18_gru"]
    assert a["ci_source"] == "stored in result.json" and "report time" in b["ci_source"]
    assert "3 folds" in a["ci_kind"]
    assert float(a["uar_lo"]) < float(a["uar_mean"]) < float(a["uar_hi"])
    # the fold-mean interval recomputed here from the runs' own stored intervals
    fm = stats.fold_mean_interval([r["result"]["metrics"]["uar"] for r in runs["a"].values()],
                                  [r["result"]["metrics"]["ci"]["uar"]["se"] for r in runs["a"].values()])
    assert float(a["uar_lo"]) == pytest.approx(100 * fm["lo"]) and float(a["uar_hi"]) == pytest.approx(100 * fm["hi"])
    assert a["vs_best"] == "best" and b["vs_best"] == "worse" and float(b["p_vs_best"]) < 0.05
    md = (out / "tables" / "dfew.md").read_text()
    # the md cell carries the same interval as the CSV: 'mean ± sd [lo, hi]'
    assert f"[{float(a['uar_lo']):.1f}, {float(a['uar_hi']):.1f}]" in md, md
    assert "computed from the runs' predictions.npz at report time" in md


def test_paper_cells_carry_verdicts(runs, tmp_path):
    out = tmp_path / "rep"
    bench_cli(["report", "--paper", "svfap", "--results", str(runs["root"]), "--out", str(out), "--no-plots"],
              tmp_path, check=True)
    with open(out / "papers" / "svfap" / "table8_dfew.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["row"] == "3D ResNet-18")
    lo, hi, reported = float(row["lo_uar"]), float(row["hi_uar"]), float(row["reported_uar"])
    assert reported == 46.52 and lo < float(row["reproduced_uar"]) < hi
    expected = "reproduced" if lo <= reported <= hi else "above by"
    assert row["verdict_uar"].startswith(expected), row["verdict_uar"]
    md = (out / "papers" / "svfap" / "table8_dfew.md").read_text()
    assert "verdict UAR (%)" in md and row["verdict_uar"] in md


@pytest.mark.slow
def test_compare_two_curated_synthetic_runs(tmp_path):
    """On the shipped example runs: the README's first command against the static control, same fold 1 videos."""
    examples = REPO / "results" / "examples"
    gru = resolve_spec("r18_gru", "synthetic", fold=1, protocol="bench2d").run_id
    proc = bench_cli(["compare", gru, "static_r18", "-d", "synthetic", "--results", str(examples), "--json",
                      "--permutations", "2000"], tmp_path, check=True)
    res = json.loads(proc.stdout)
    assert res["per_fold"][0]["n_videos"] == 210 and res["per_fold"][0]["run_a"] == gru
    assert res["combined"]["uar"]["delta"] > 0


def test_compare_a_corruption_against_its_clean_evaluation(tmp_path):
    """An evaluation directory beside a curated run (bench eval --corrupt / --on) is a side: the static control
    under reversed frames pairs with its clean evaluation on the same videos (Δ from sklearn on the two
    predictions.npz), and a cross-corpus evaluation is refused against in-domain runs with one line."""
    gru = resolve_spec("r18_gru", "synthetic", fold=1, protocol="bench2d").run_id
    run = REPO / "results" / "examples" / "runs" / "synthetic" / "fold1" / "r18_gru" / gru
    clean, reverse = run / "corruptions" / "clean", run / "corruptions" / "reverse-s5"
    proc = bench_cli(["compare", str(clean), str(reverse), "--json", "--permutations", "1000"], tmp_path, check=True)
    res = json.loads(proc.stdout)

    def uar(d: Path) -> float:
        with np.load(d / "predictions.npz") as z:
            order = np.argsort(z["video_ids"], kind="stable")
            return balanced_accuracy_score(z["labels"][order], z["video_scores"][order].argmax(1))

    assert res["per_fold"][0]["n_videos"] == 210 and res["b"].endswith("(reverse-s5)")
    assert res["combined"]["uar"]["delta"] == pytest.approx(uar(clean) - uar(reverse))
    cross = next((run / "cross").iterdir())
    proc = bench_cli(["compare", str(run), str(cross)], tmp_path)
    assert proc.returncode == 2 and "different datasets" in proc.stderr and "Traceback" not in proc.stderr
