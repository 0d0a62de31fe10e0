"""`bench data check|pack|bench` in-process (typer CliRunner on the data sub-app)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fixtures_data import write_dfew, write_ferv39k, write_mafw
from typer.testing import CliRunner

import bench.datasets  # noqa: F401
from bench.cli_data import data_app
from bench.data import frames as fr
from bench.errors import DataError

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DFER_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DFER_BENCH_CONFIG", str(tmp_path / "no-config.yaml"))
    fr._REGISTRY["key"] = None


def check(*args: str) -> tuple[int, dict | str]:
    res = runner.invoke(data_app, ["check", *args])
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    if "--json" in args:
        return res.exit_code, json.loads(res.stdout)
    return res.exit_code, res.stdout


def test_check_dfew_found_vs_expected(tmp_path: Path) -> None:
    root = write_dfew(tmp_path)
    code, rep = check("--dataset", "dfew", "--root", str(root), "--json")
    assert code == 0 and rep["usable"] and rep["root_source"] == "--root"
    f1 = rep["folds"][0]
    assert f1["fold"] == 1
    assert f1["splits"]["train"] | {"found": 16, "expected": 9356, "dropped": 1} == f1["splits"]["train"]
    assert (f1["splits"]["test"]["found"], f1["splits"]["test"]["expected"]) == (5, 2341)
    assert [f["splits"]["test"]["expected"] for f in rep["folds"]] == [2341, 2341, 2340, 2339, 2336]
    assert any("official release" in w for w in rep["warnings"])
    assert list((root / ".dfer-bench" / "manifests").glob("dfew-f*.json"))  # the manifest cache was written
    code, text = check("--dataset", "dfew", "--root", str(root), "--fold", "1")
    assert code == 0 and "usable" in text and "9,356" in text


def test_check_reports_bad_clips_and_exit_code(tmp_path: Path) -> None:
    root = write_dfew(tmp_path, n_clips=14)
    f = root / "Clip" / "clip_224x224_16f" / "00006" / "16.jpg"
    f.write_bytes(f.read_bytes()[:-40])  # truncated JPEG (no end marker): found without decoding
    code, rep = check("--dataset", "dfew", "--root", str(root), "--fold", "1", "--json")
    assert code == 1 and not rep["usable"] and rep["bad_clips"] == 1
    prob = rep["folds"][0]["problems"][0]
    assert prob["clip_id"] == "00006" and prob["kind"] == "corrupt" and "16.jpg" in prob["reason"]
    code, rep = check("--dataset", "dfew", "--root", str(root), "--fold", "1", "--json", "--on-bad-clip", "skip")
    assert code == 0 and rep["usable"]
    # a run with the default policy refuses the clip in one line
    with pytest.raises(DataError) as e:
        bench.registry.DATASETS.get("dfew").build_manifest(root, 1, {"verify": "tail"})
    assert "\n" not in str(e.value) and "00006" in str(e.value)


def test_check_short_clips_ferv39k(tmp_path: Path) -> None:
    root = write_ferv39k(tmp_path)
    code, rep = check("--dataset", "ferv39k", "--root", str(root), "--json")
    assert code == 0
    f = rep["folds"][0]
    assert f["fold"] is None and f["splits"]["train"]["expected"] == 31088 and f["splits"]["test"]["expected"] == 7847
    n_short = sum(8 + (k * 5) % 13 < 16 for k in range(21))  # the fixture writes 8..20 frames
    assert f["splits"]["train"]["short"] + f["splits"]["test"]["short"] == n_short  # kept, padded later
    assert f["splits"]["train"]["min_frames"] == 8


def test_check_mafw_caption_counts(tmp_path: Path) -> None:
    root = write_mafw(tmp_path, per_class=1)
    code, rep = check("--dataset", "mafw", "--root", str(root), "--json", "-o", "caption=true", "--fold", "2")
    assert code == 0 and rep["folds"][0]["splits"]["train"]["expected"] == 6425  # with_caption table


def test_check_wrong_and_missing_root(tmp_path: Path) -> None:
    ferv = write_ferv39k(tmp_path)
    code, text = check("--dataset", "dfew", "--root", str(ferv), "--fold", "1")
    assert code == 1 and "looks like FERV39k" in " ".join(text.split())
    with pytest.raises(DataError) as e:
        check("--dataset", "mafw", "--root", str(tmp_path / "nowhere"))
    msg = str(e.value)
    assert "MAFW" in msg and "mafw-academics-final.pdf" in msg and "Train & Test Set" in msg
    assert "bench data check --dataset mafw" in msg


def test_pack_is_used_transparently_and_invalidated(tmp_path: Path) -> None:
    root = write_dfew(tmp_path, n_clips=14)
    res = runner.invoke(data_app, ["pack", "--dataset", "dfew", "--root", str(root), "--size", "16", "--fold", "1",
                                   "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["packs"][0]["clips"] == 14 and summary["packs"][0]["new"] == 14
    clip = root / "Clip" / "clip_224x224_16f" / "00001"
    assert fr.find_packed(clip) is not None
    assert fr.read_clip(clip, [0, 15, 15]).shape == (3, 16, 16, 3)  # packed, resized
    assert fr.read_clip(clip, [0, 1], size=32).shape == (2, 32, 32, 3)  # pack too small for 32: decode
    time.sleep(0.01)
    (clip / "17.jpg").write_bytes((clip / "1.jpg").read_bytes())  # re-extracted clip: folder mtime changes
    os.utime(clip)
    assert fr.find_packed(clip) is None and fr.read_clip(clip, [0]).shape == (1, 32, 32, 3)
    res = runner.invoke(data_app, ["pack", "--dataset", "dfew", "--root", str(root), "--size", "16", "--fold", "1",
                                   "--json"])
    assert json.loads(res.stdout)["packs"][0]["new"] == 1  # only the stale clip is re-packed
    os.environ["DFER_BENCH_PACKS"] = "0"
    try:
        assert fr.read_clip(clip, [0]).shape == (1, 32, 32, 3)
    finally:
        del os.environ["DFER_BENCH_PACKS"]


def test_benchmark_script_smoke() -> None:
    from bench.cli_data import _benchmark_module

    res = _benchmark_module().run(clips=1, frames=16, size=64, repeats=1)
    assert set(res["clips_per_s"]) >= {"ifdd", "raw", "ours", "ours+pack"}
    assert all(v > 0 for v in res["clips_per_s"].values())


def test_check_list_and_folder(tmp_path: Path) -> None:
    root = write_dfew(tmp_path, n_clips=14)
    media = "Clip/clip_224x224_16f"
    (tmp_path / "tr.txt").write_text("".join(f"{media}/{i:05d} 16 {(i - 1) % 7}\n" for i in range(1, 11)))
    (tmp_path / "te.txt").write_text("".join(f"{media}/{i:05d} {(i - 1) % 7}\n" for i in range(11, 15)))
    base = ["--dataset", "list", "--root", str(root), "-o", f"train_list={tmp_path / 'tr.txt'}",
            "-o", f"test_list={tmp_path / 'te.txt'}"]
    code, rep = check(*base, "--json")
    assert code == 1 and "label order is not declared" in rep["folds"][0]["error"]
    code, rep = check(*base, "-o", "label_order=dfew", "--json")
    assert code == 0 and rep["folds"][0]["splits"]["train"]["found"] == 10 and rep["classes"][0] == "happy"
    code, rep = check("--dataset", "folder", "--root", str(root / "Clip"), "--json")
    assert code == 0 and rep["folds"][0]["splits"]["test"]["found"] >= 1  # one class folder: clip_224x224_16f
