"""Late fusion of saved predictions (`bench fuse`: fixed mean, and MHPF fitted on the training split only) and the
basic-to-compound evaluation (`bench eval --compound`) on a MAFW compound fixture, against hand computations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import write_mafw
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from tests.conftest import bench_cli

pytestmark = pytest.mark.slow

TINY = ["--set", "data.options.clips_per_class=3", "--set", "data.options.folds=2", "--set", "data.options.resolution=32",
        "--set", "data.size=32", "--set", "data.frames=4", "--workers", "0", "--epochs", "1", "--no-progress",
        "--no-latency"]


def _softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _probs(rdir: Path) -> np.ndarray:
    p = np.load(rdir / "predictions.npz")
    spec_agg = json.loads((rdir / "result.json").read_text())["protocol"]["aggregate"]
    return p["video_scores"] if spec_agg == "mean_softmax" else _softmax(p["video_scores"])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, data_home):
    work = tmp_path_factory.mktemp("fuse")
    env = {"DFER_DATA_HOME": str(data_home)}
    for method, extra in (("test_tiny", []), ("test_tiny", ["--seed", "1"])):
        bench_cli(["run", "-m", method, "-d", "synthetic", "--fold", "1", *extra, *TINY], work, env, check=True)
    dirs = sorted(p.parent for p in (work / "results" / "runs").rglob("result.json"))
    return work, env, dirs


def test_mean_fusion_equals_the_hand_computed_average(two_runs):
    work, env, dirs = two_runs
    out = json.loads(bench_cli(["fuse", "--runs", ",".join(map(str, dirs)), "--rule", "mean", "--json"], work, env,
                               check=True).stdout)
    fused = np.mean([_probs(d) for d in dirs], axis=0)
    labels = np.load(dirs[0] / "predictions.npz")["labels"]
    m = out["metrics"]
    assert m["war"] == pytest.approx(accuracy_score(labels, fused.argmax(1)))
    assert m["uar"] == pytest.approx(balanced_accuracy_score(labels, fused.argmax(1)))
    np.testing.assert_allclose(np.load(Path(out["dir"]) / "predictions.npz")["video_scores"], fused)
    assert [s["run_id"] for s in out["protocol"]["sources"]] == [d.name for d in dirs]
    report = bench_cli(["report", "--out", "rep", "--no-plots"], work, env, check=True)
    assert report.returncode == 0
    fused_table = (work / "rep" / "tables" / "synthetic_fused.md").read_text()
    assert "fused[mean]:test_tiny+test_tiny" in fused_table and "FUSED" in fused_table
    assert "fused" not in (work / "rep" / "tables" / "synthetic.md").read_text()


def test_mhpf_is_fitted_on_the_training_split_only(two_runs):
    from bench.fusion import fit_mhpf, mhpf_apply

    work, env, dirs = two_runs
    out = json.loads(bench_cli(["fuse", "--runs", ",".join(map(str, dirs)), "--rule", "mhpf", "--json"], work, env,
                               check=True).stdout)
    assert out["protocol"]["fitted_on"] == "train split"
    w = {k: np.array(v) for k, v in out["fusion_weights"].items()}
    assert w["source_weights"].shape == (3, 2, 7) and np.allclose(w["source_weights"].sum(1), 1)
    # the same weights come out of the training predictions alone (cached beside each run): test never entered
    trains = [np.load(d / "predictions_train.npz") for d in dirs]
    train_probs = [_softmax(t["video_scores"]) for t in trains]
    again = fit_mhpf(train_probs, trains[0]["labels"], 7)
    np.testing.assert_allclose(again["source_weights"], w["source_weights"], rtol=1e-6)
    # and the fused test probabilities are that weighting of the test probabilities, by hand
    p = np.stack([_probs(d) for d in dirs])
    by_hand = sum(w["head_weights"][h] * (w["source_weights"][h][:, None, :] * p).sum(0) for h in range(3))
    np.testing.assert_allclose(np.load(Path(out["dir"]) / "predictions.npz")["video_scores"], by_hand, rtol=1e-6)
    np.testing.assert_allclose(mhpf_apply(p, w["source_weights"], w["head_weights"]), by_hand, rtol=1e-9)


def test_compound_evaluation_from_a_model_trained_on_the_basic_classes(tmp_path):
    root = write_mafw(tmp_path, per_class=2)
    env = {"DFER_BENCH_CACHE": str(tmp_path / "cache"), "DFER_BENCH_CONFIG": str(tmp_path / "none.yaml")}
    bench_cli(["run", "-m", "test_tiny", "-d", "mafw", "--root", str(root), "--fold", "1", "--epochs", "1",
               "--workers", "0", "--no-progress", "--no-latency", "--set", "data.size=32", "--set", "data.frames=4"],
              tmp_path, env, check=True)
    (run,) = [p.parent for p in (tmp_path / "results" / "runs").rglob("result.json")]
    ev = json.loads(bench_cli(["eval", "--compound", "ppa_mean", "--run", str(run), "-d", "mafw_compound", "--root",
                               str(root), "--json"], tmp_path, env, check=True).stdout)
    preds = np.load(Path(ev["out_dir"]) / "predictions.npz")
    classes, basic = list(preds["classes"]), list(preds["basic_classes"])
    assert len(classes) == 43 and len(basic) == 11
    by_hand = np.stack([preds["basic_probs"][:, [basic.index(p) for p in c.split("_")]].mean(1) for c in classes], 1)
    np.testing.assert_allclose(preds["video_scores"], by_hand)
    y, yhat = preds["labels"], by_hand.argmax(1)
    assert ev["metrics"]["war"] == pytest.approx(accuracy_score(y, yhat))
    present = sorted(set(y.tolist()))
    assert ev["metrics"]["macro_f1"] == pytest.approx(f1_score(y, yhat, labels=present, average="macro", zero_division=0))
    # the basic probabilities are the trained model's: clips also in the single-label test split score the same
    single = np.load(run / "predictions.npz")
    single_probs = dict(zip(single["video_ids"].tolist(), _softmax(single["video_scores"]), strict=True))
    shared = [i for i, v in enumerate(preds["video_ids"].tolist()) if v in single_probs]
    assert shared
    for i in shared:
        np.testing.assert_allclose(preds["basic_probs"][i], single_probs[preds["video_ids"][i]], rtol=1e-5)


def test_zero_shot_evaluation_through_the_cli(tmp_path, data_home):
    """`bench eval --zero-shot` of the CLIP label-matching method: without weights the result says it measures
    nothing; with a CLIP state_dict in open_clip's names it records that init; both are reported apart."""
    import open_clip
    import torch

    env = {"DFER_DATA_HOME": str(data_home)}
    args = ["eval", "--zero-shot", "-m", "clip_zeroshot", "-d", "synthetic", "--fold", "1", "--workers", "0",
            "--set", "data.options.clips_per_class=2", "--set", "data.options.folds=2", "--set",
            "data.options.resolution=32", "--set", "data.size=32", "--set", "data.frames=2", "--json"]
    bare = json.loads(bench_cli(args, tmp_path, env, check=True).stdout)
    assert bare["protocol"]["training"] == "zero-shot" and "measures nothing" in bare["protocol"]["init"]["label"]
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    path = tmp_path / "open_clip_vitb32.pt"
    torch.save(clip.state_dict(), path)
    loaded = json.loads(bench_cli([*args, "--init", f"openai_clip:{path}"], tmp_path, env, check=True).stdout)
    init = loaded["protocol"]["init"]
    assert init["kind"] == "openai_clip" and init["report"]["loaded"] > 290 and init["report"]["missing"] == []
    assert loaded["run_id"] != bare["run_id"] and loaded["run_id"].endswith("-zeroshot")
    bench_cli(["report", "--out", "rep", "--no-plots"], tmp_path, env, check=True)
    table = (tmp_path / "rep" / "tables" / "synthetic_zero_shot.md").read_text()
    assert "ZERO-SHOT" in table and "measures nothing" in table and "openai_clip" in table
    assert not (tmp_path / "rep" / "tables" / "synthetic.md").exists()  # no trained run here
