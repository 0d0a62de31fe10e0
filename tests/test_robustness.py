"""Corruptions and cross-corpus evaluation of trained runs (bench/robustness.py, bench/report/robustness.py):
`bench eval --corrupt` / `--on` through the installed script (results beside the run, resumed not recomputed,
the same corrupted clips on every call), the report's robustness and cross-corpus tables, mCE against a hand
computation, and one-line refusals of bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from bench.lock import RunLock
from bench.report.robustness import mce
from tests.conftest import bench_cli
from tests.fixtures_data import write_dfew, write_mafw

TINY = ["--epochs", "1", "--workers", "0", "--no-progress", "--no-latency", "--batch-size", "4"]


def test_mce_is_imagenet_c_adapted_to_uar():
    """CE_c = sum_s (100 - UAR) / sum_s (100 - UAR_base); relative: the degradation from clean instead."""
    row = {"clean": 60.0, "uar": {("clean", 0): 60.0, ("jpeg", 1): 55.0, ("jpeg", 2): 50.0, ("reverse", 1): 30.0}}
    base = {"clean": 50.0, "uar": {("clean", 0): 50.0, ("jpeg", 1): 40.0, ("jpeg", 2): 30.0, ("reverse", 1): 45.0,
                                   ("reverse", 2): 40.0}}
    got = mce(row, base)
    ce_jpeg = 100 * ((45 + 50) / (60 + 70))
    assert got["ce"] == pytest.approx({"jpeg": ce_jpeg})  # reverse: severities differ, left out
    assert got["mce"] == pytest.approx(ce_jpeg) and got["n"] == 1
    assert got["rmce"] == pytest.approx(100 * ((5 + 10) / (10 + 20)))


@pytest.mark.parametrize("name", ["jpeg", "shuffle", "crop_jitter"])
def test_every_evaluation_reads_the_same_corrupted_clips_through_the_loader(tmp_path, name):
    """Two evaluations of one corruption (runs of other seeds; one loader with two workers in shuffled order, the
    other in this process in order) receive bit-identical corrupted clips, video by video."""
    from bench.data.loader import ClipDataset, make_loader
    from bench.registry import DATASETS
    from bench.robustness import corruption_hook
    from bench.spec import resolve_spec

    m = DATASETS.get("synthetic").build_manifest(tmp_path, 1, {"clips_per_class": 3, "folds": 2, "resolution": 32})
    test = m.split("test")
    clips = []
    for seed, workers, shuffle in ((0, 0, False), (3, 2, True)):
        spec = resolve_spec("test_tiny", "synthetic", seed=seed, sets=["data.size=32", "data.frames=8"])
        ds = ClipDataset(m, test, spec.data, train=False, seed=seed, view_hook=corruption_hook(name, 3))
        got = {}
        for batch in make_loader(ds, 4, workers=workers, shuffle=shuffle, drop_last=False, seed=seed, epoch=0):
            for vid, clip in zip(batch["video"].tolist(), batch["clip"], strict=True):
                got[test[vid].clip_id] = clip
        clips.append(got)
    clean = ClipDataset(m, test, resolve_spec("test_tiny", "synthetic", sets=["data.size=32", "data.frames=8"]).data,
                        train=False, seed=0)[0]["clip"]
    assert clips[0].keys() == clips[1].keys() == {r.clip_id for r in test}
    assert all(torch.equal(clips[0][k], clips[1][k]) for k in clips[0])
    assert not torch.equal(clips[0][test[0].clip_id], clean)  # the corruption was applied


def test_the_curated_corruption_results_pass_the_pipelines_sanity_check():
    """On the shipped evaluations (results/examples, recomputed from each predictions.npz with sklearn): the
    static control sees one frame, so reversed or shuffled frames leave its UAR exactly at its clean value at every
    severity; the temporal r18_gru, whose classes are carried by the frame order, loses more than 10 points to
    either at severity 5."""
    from sklearn.metrics import balanced_accuracy_score

    from tests.conftest import REPO

    def uar(d):
        with np.load(d / "predictions.npz") as z:
            return balanced_accuracy_score(z["labels"], z["video_scores"].argmax(1))

    runs = REPO / "results" / "examples" / "runs" / "synthetic" / "fold1"
    static = [d for d in runs.glob("static_r18/*/corruptions") if (d / "reverse-s5").is_dir()]
    gru = [d for d in runs.glob("r18_gru/*/corruptions") if (d / "reverse-s5").is_dir()]
    assert len(static) == 1 and len(gru) == 1
    clean = uar(static[0] / "clean")
    for name in ("reverse", "shuffle"):
        assert [uar(static[0] / f"{name}-s{s}") for s in range(1, 6)] == [clean] * 5, name
        assert uar(gru[0] / "clean") - uar(gru[0] / f"{name}-s5") > 0.10, name


@pytest.mark.slow
def test_corrupt_writes_beside_the_run_resumes_and_reports(tmp_path, data_home):
    env = {"DFER_DATA_HOME": str(data_home)}
    bench_cli(["run", "-m", "test_tiny", "-d", "synthetic", "--fold", "1", *TINY, "--set",
               "data.options.clips_per_class=3", "--set", "data.options.folds=2"], tmp_path, env, check=True)
    (result,) = (tmp_path / "results" / "runs").rglob("result.json")
    run = result.parent
    args = ["eval", "--run", str(run), "--corrupt", "jpeg:2,reverse:5,occlude_eyes:3", "--workers", "0", "--json"]
    first = json.loads(bench_cli(args, tmp_path, env, check=True).stdout)
    assert [(r["corruption"], r["severity"]) for r in first] == [("clean", 0), ("jpeg", 2), ("reverse", 5),
                                                                ("occlude_eyes", 3)]
    clean = json.loads((run / "result.json").read_text())["metrics"]
    assert first[0]["metrics"]["confusion"] == clean["confusion"]  # the same model, the same clean evaluation
    written = {p: p.stat().st_mtime_ns for p in (run / "corruptions").rglob("eval.json")}
    again = json.loads(bench_cli(args, tmp_path, env, check=True).stdout)
    assert again == first and {p: p.stat().st_mtime_ns for p in written} == written  # resumed, not recomputed
    preds = np.load(run / "corruptions" / "jpeg-s2" / "predictions.npz")
    assert preds["labels"].size == first[1]["metrics"]["n_test"]
    out = tmp_path / "rep"
    bench_cli(["report", "--results", str(tmp_path / "results"), "--out", str(out), "--mce-baseline", "test_tiny"],
              tmp_path, env, check=True)
    md = (out / "tables" / "robustness_synthetic.md").read_text()
    assert "mCE" in md and "test_tiny" in md and (out / "plots" / "corruptions_synthetic.png").stat().st_size > 5000
    assert "(100)" in md  # the baseline's own per-family mCE
    proc = bench_cli(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "rep2"),
                      "--mce-baseline", "static_r81"], tmp_path, env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "unknown --mce-baseline" in proc.stderr
    assert not (tmp_path / "rep2" / "tables").exists()  # refused before anything is written
    with RunLock(run / "corruptions"):  # another process evaluating this run's corruptions, as a second shell
        proc = bench_cli(["eval", "--run", str(run), "--corrupt", "jpeg:3", "--workers", "0"], tmp_path, env)
        assert proc.returncode == 3 and f"pid {os.getpid()}" in proc.stderr and "Traceback" not in proc.stderr
    assert not (run / "corruptions" / "jpeg-s3").exists()
    for bad, message in ((["--corrupt", "jpg"], "unknown corruption 'jpg'"),
                         (["--corrupt", "jpeg:6"], "outside 1-5"),
                         (["--corrupt", "jpeg", "--on", "dfew"], "one at a time")):
        proc = bench_cli(["eval", "--run", str(run), *bad], tmp_path, env)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and message in proc.stderr, proc.stderr


@pytest.mark.slow
def test_cross_corpus_maps_classes_by_name_and_refuses_unmapped_model_classes(tmp_path):
    dfew, mafw = write_dfew(tmp_path), write_mafw(tmp_path)
    bench_cli(["run", "-m", "test_tiny", "-d", "dfew", "--root", str(dfew), "--fold", "1", *TINY], tmp_path, check=True)
    (dfew_run,) = [p.parent for p in (tmp_path / "results" / "runs" / "dfew").rglob("result.json")]
    r = json.loads(bench_cli(["eval", "--run", str(dfew_run), "--on", "mafw", "--root", str(mafw), "--fold", "2",
                              "--workers", "0", "--json"], tmp_path, check=True).stdout)
    c, m = r["cross"], r["metrics"]
    assert c["mapping"]["angry"] == "anger" and c["mapping"]["happy"] == "happiness" and len(c["mapping"]) == 7
    test_ids = (mafw / "Train & Test Set" / "single" / "no_caption" / "set_2" / "test.txt").read_text().split()
    labels = test_ids[1::2]
    basic = {"anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"}
    assert m["n_test"] == sum(lab in basic for lab in labels) and c["excluded_clips"] == sum(lab not in basic
                                                                                              for lab in labels)
    out = tmp_path / "rep"
    bench_cli(["report", "--results", str(tmp_path / "results"), "--out", str(out), "--no-plots"], tmp_path, check=True)
    cross = (out / "tables" / "cross_corpus.md").read_text()
    assert "| dfew -> mafw | test_tiny |" in cross
    assert "mafw" not in (out / "tables" / "dfew.md").read_text()  # never mixed with the in-domain rows

    # the user's own data (`folder`) through the user's mapping file; bad files get one line each
    mine = tmp_path / "mine"
    for split in ("train", "test"):
        for cls in ("smile", "frown"):
            for i in range(3):
                clip = mine / split / cls / f"{cls}{i}"
                clip.mkdir(parents=True)
                for t in range(8):
                    Image.new("RGB", (32, 32), (60 + 40 * i, 90 + 5 * t, 80)).save(clip / f"{t + 1}.png")
    good = {"happy": "smile", "surprise": "smile", "neutral": "frown", "sad": "frown", "angry": "frown",
            "disgust": "frown", "fear": "frown"}
    files = {"good": good, "unknown_model": {**good, "angrry": "frown"}, "unknown_target": {**good, "fear": "scowl"},
             "incomplete": {k: v for k, v in good.items() if k != "fear"}}
    for name, blob in files.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(blob))
    on_mine = ["eval", "--run", str(dfew_run), "--on", "folder", "--root", str(mine), "--workers", "0"]
    r = json.loads(bench_cli([*on_mine, "--mapping", str(tmp_path / "good.yaml"), "--json"], tmp_path,
                             check=True).stdout)
    assert r["cross"]["mapping"] == good and r["metrics"]["n_test"] == 6 and r["cross"]["excluded_clips"] == 0
    for name, message in (("unknown_model", "unknown model class 'angrry'"),
                          ("unknown_target", "unknown target class 'scowl'"),
                          ("incomplete", "leaves the model's class(es) fear without a target")):
        proc = bench_cli([*on_mine, "--mapping", str(tmp_path / f"{name}.yaml")], tmp_path)
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr

    bench_cli(["run", "-m", "test_tiny", "-d", "mafw", "--root", str(mafw), "--fold", "1", *TINY], tmp_path, check=True)
    (mafw_run,) = [p.parent for p in (tmp_path / "results" / "runs" / "mafw").rglob("result.json")]
    proc = bench_cli(["eval", "--run", str(mafw_run), "--on", "dfew", "--root", str(dfew)], tmp_path)
    assert proc.returncode == 2 and "contempt" in proc.stderr and "without a target class" in proc.stderr
    mapping = tmp_path / "map.yaml"
    mapping.write_text("anger: angry\ncontempt: angrry\n")
    proc = bench_cli(["eval", "--run", str(mafw_run), "--on", "dfew", "--root", str(dfew), "--mapping", str(mapping)],
                     tmp_path)
    assert proc.returncode == 2 and "unknown target class 'angrry'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
