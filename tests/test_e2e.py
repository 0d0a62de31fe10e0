"""End to end through the real CLI with the tiny registered method `test_tiny`: `bench run` twice (second time skipped), a second fold, `bench eval`,
`bench report`, on a small synthetic configuration. Metrics are re-derived offline from predictions.npz with
scikit-learn, and the report's fold means from the two result files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

from bench import stats
from tests.conftest import bench_cli

SMALL = ["--set", "data.options.clips_per_class=6", "--set", "data.options.folds=2", "--set", "data.options.resolution=32",
         "--set", "data.size=32", "--set", "data.frames=8", "--epochs", "2", "--batch-size", "6", "--workers", "0",
         "--no-latency", "--no-progress"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, data_home) -> Path:
    return tmp_path_factory.mktemp("e2e")


def _env(data_home: Path) -> dict:
    return {"DFER_DATA_HOME": str(data_home)}


def _result_dirs(workdir: Path) -> list[Path]:
    return sorted(p.parent for p in (workdir / "results" / "runs").rglob("result.json"))


@pytest.mark.slow
def test_run_writes_a_complete_result(workdir, data_home):
    proc = bench_cli(["run", "-m", "test_tiny", "-d", "synthetic", "--fold", "1", *SMALL], workdir, _env(data_home), check=True)
    assert "UAR" in proc.stdout and "GMACs" in proc.stdout and "results/runs/synthetic/fold1/test_tiny" in proc.stdout
    (rdir,) = _result_dirs(workdir)
    result = json.loads((rdir / "result.json").read_text())
    assert result["schema_version"] == 1 and result["status"] == "completed"
    assert (rdir / "status").read_text().strip() == "completed"
    assert result["protocol"]["selection"] == "last" and result["protocol"]["init"]["kind"] == "scratch"
    assert result["protocol"]["frames"] == 8 and result["protocol"]["size"] == 32
    assert result["env"]["manifest_sha256"] and result["profile"]["params_total"] == 8 * 3 * 27 + 8 + 8 * 7 + 7
    assert len((rdir / "metrics.jsonl").read_text().splitlines()) == 2
    # metrics recomputed offline from the stored per-view logits, with scikit-learn
    preds = np.load(rdir / "predictions.npz")
    n_videos = len(preds["video_ids"])
    assert n_videos == result["data"]["n_test"]
    scores = np.zeros((n_videos, len(preds["classes"])))
    np.add.at(scores, preds["video"], preds["logits"])
    y_pred = scores.argmax(1)
    m = result["metrics"]
    assert m["war"] == pytest.approx(accuracy_score(preds["labels"], y_pred))
    assert m["uar"] == pytest.approx(balanced_accuracy_score(preds["labels"], y_pred))
    assert np.array_equal(np.array(m["confusion"]),
                          confusion_matrix(preds["labels"], y_pred, labels=range(len(preds["classes"]))))
    # the interval is stored with its method, resample count and seed, and is the one bench/stats.py gives on the
    # stored predictions (UAR's point from sklearn)
    ci = m["ci"]
    assert ci["method"].startswith("stratified percentile bootstrap") and ci["resamples"] >= 2000 and "seed" in ci
    assert ci == stats.metric_intervals(preds["labels"], y_pred, len(preds["classes"]), n_resamples=ci["resamples"],
                                        seed=ci["seed"])
    assert ci["uar"]["point"] == pytest.approx(balanced_accuracy_score(preds["labels"], y_pred))
    assert ci["uar"]["lo"] <= ci["uar"]["point"] <= ci["uar"]["hi"]


@pytest.mark.slow
def test_same_spec_is_skipped_not_duplicated(workdir, data_home):
    proc = bench_cli(["run", "-m", "test_tiny", "-d", "synthetic", "--fold", "1", *SMALL], workdir, _env(data_home), check=True)
    assert "already completed" in proc.stderr + proc.stdout
    assert len(_result_dirs(workdir)) == 1


@pytest.mark.slow
def test_eval_of_a_saved_checkpoint_reproduces_the_run(workdir, data_home):
    (rdir,) = _result_dirs(workdir)
    proc = bench_cli(["eval", "--checkpoint", str(rdir / "checkpoints" / "last.pt"), "--workers", "0", "--json"],
                     workdir, _env(data_home), check=True)
    ev = json.loads(proc.stdout)
    result = json.loads((rdir / "result.json").read_text())
    assert ev["metrics"]["uar"] == pytest.approx(result["metrics"]["uar"])
    assert ev["metrics"]["confusion"] == result["metrics"]["confusion"]


@pytest.mark.slow
def test_report_aggregates_folds(workdir, data_home):
    bench_cli(["run", "-m", "test_tiny", "-d", "synthetic", "--fold", "2", *SMALL], workdir, _env(data_home), check=True)
    runs = [json.loads((d / "result.json").read_text()) for d in _result_dirs(workdir)]
    assert sorted(r["fold"] for r in runs) == [1, 2]
    proc = bench_cli(["report", "--json"], workdir, _env(data_home), check=True)
    summary = json.loads(proc.stdout)
    reports = workdir / "reports"
    table = pd.read_csv(reports / "tables" / "synthetic.csv")
    row = table[table["method"] == "test_tiny"].iloc[0]
    uar_col = next(c for c in table.columns if "uar" in c.lower() and "mean" in c.lower())
    expected = 100 * np.mean([r["metrics"]["uar"] for r in runs])
    assert float(row[uar_col]) == pytest.approx(expected, abs=0.01)
    manifest = json.loads((reports / "manifest.json").read_text())
    used = json.dumps(manifest)
    assert all(r["run_id"] in used for r in runs)
    for name in ("synthetic.md", "synthetic.tex"):
        assert (reports / "tables" / name).is_file()
    assert any(Path(f).suffix == ".png" for f in summary["files"])
    # the site's run page names the kept checkpoint with the sha256 of its bytes (hashlib on the file here)
    for d in _result_dirs(workdir):
        ckpt = d / "checkpoints" / "last.pt"
        page = (reports / "site" / "runs" / f"{d.name}.html").read_text()
        assert f"{d.name}/checkpoints/last.pt (sha256 {hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]}" in page
