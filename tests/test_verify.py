"""`bench data verify` through the installed script: the fingerprint of a prepared copy against the release's facts
(deliberately mis-prepared copies of `synthetic`: BGR frames, frames at a quarter of the resolution, the
16-frame time-normalised variant, one class's clips emptied, a test clip copied from train; the official DFEW /
FERV39k / MAFW layouts of the data tests), and a checkpoint trained here checked on correct, BGR and reversed
copies, with the diagnosis naming the preparation mistake. Nothing is written into the dataset directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import bench_cli
from tests.fixtures_data import write_dfew, write_ferv39k, write_mafw

SMALL = ["-o", "clips_per_class=6", "-o", "folds=2", "-o", "resolution=32"]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _verify(args: list[str], cwd: Path, env: dict, expect_rc: int | None = None) -> dict:
    proc = bench_cli(["data", "verify", *args, "--json", "--out", str(cwd / "verify-out")], cwd, env)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    if expect_rc is not None:
        assert proc.returncode == expect_rc, proc.stdout[-3000:]
    return json.loads(proc.stdout)


def _kinds(rep: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in rep["mismatches"]:
        out.setdefault(m["kind"], []).append(m["text"])
    return out


@pytest.fixture(scope="module")
def synthetic_copies(tmp_path_factory):
    """The generator's own copy (the reference, under the data home) and prepared copies of it."""
    base = tmp_path_factory.mktemp("verify")
    env = {"DFER_DATA_HOME": str(base / "home")}
    proc = bench_cli(["data", "check", "-d", "synthetic", "--fold", "1", "--fold", "2", *SMALL], base, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # the check generated the variant
    (variant,) = [p for p in (base / "home" / "synthetic").iterdir() if p.is_dir() and not p.name.startswith(".")]
    copies = {}
    for kind in ("correct", "bgr", "quarter", "16f", "emptied", "leak"):
        root = base / kind
        shutil.copytree(variant, root / variant.name, ignore=shutil.ignore_patterns(".dfer-bench"))
        clips = sorted((root / variant.name / "clips").iterdir())
        for clip in clips:
            frames = sorted(clip.glob("*.jpg"), key=lambda p: int(p.stem))
            if kind == "bgr":
                for f in frames:
                    Image.fromarray(np.asarray(Image.open(f))[..., ::-1].copy()).save(f, quality=95)
            elif kind == "quarter":
                for f in frames:
                    img = Image.open(f)
                    img.resize((img.width // 4, img.height // 4), Image.Resampling.BILINEAR).save(f, quality=95)
            elif kind == "16f":  # the clip resampled to 16 frames, as the time-normalised releases are
                data = [f.read_bytes() for f in frames]
                for f in frames:
                    f.unlink()
                for t, i in enumerate(np.linspace(0, len(data) - 1, 16).round().astype(int), 1):
                    (clip / f"{t}.jpg").write_bytes(data[i])
        if kind == "emptied":  # every clip of one class left without frames
            lines = (root / variant.name / "splits" / "set_1" / "test.txt").read_text().split("\n")
            lines += (root / variant.name / "splits" / "set_1" / "train.txt").read_text().split("\n")
            for line in lines:
                if line.endswith(" fear"):
                    for f in (root / variant.name / line.split()[0]).glob("*.jpg"):
                        f.unlink()
        if kind == "leak":  # a test clip whose frames are a training clip's
            train = (root / variant.name / "splits" / "set_1" / "train.txt").read_text().split()[0]
            test = (root / variant.name / "splits" / "set_1" / "test.txt").read_text().split()[0]
            shutil.rmtree(root / variant.name / test)
            shutil.copytree(root / variant.name / train, root / variant.name / test)
        copies[kind] = root
    return {"base": base, "env": env, "copies": copies}


@pytest.mark.slow
def test_fingerprint_flags_each_mis_prepared_copy(synthetic_copies):
    c, env, base = synthetic_copies["copies"], synthetic_copies["env"], synthetic_copies["base"]
    before = {k: _snapshot(root) for k, root in c.items()}
    correct = _verify(["-d", "synthetic", "--root", str(c["correct"]), "--fold", "1", *SMALL], base, env, 0)
    assert correct["mismatches"] == [] and "generator's own copy" in correct["reference"]
    split = correct["fingerprint"]["folds"][0]["splits"]["test"]
    assert split["resolution"] == [32, 32] and split["frames"]["median"] >= 20

    bgr = _kinds(_verify(["-d", "synthetic", "--root", str(c["bgr"]), "--fold", "1", *SMALL], base, env, 1))
    assert list(bgr) == ["colour"] and "R and B swapped: BGR" in bgr["colour"][0]
    quarter = _kinds(_verify(["-d", "synthetic", "--root", str(c["quarter"]), "--fold", "1", *SMALL], base, env, 1))
    assert "frames are 8x8, the reference's 32x32" in quarter["resolution"][0]
    f16 = _kinds(_verify(["-d", "synthetic", "--root", str(c["16f"]), "--fold", "1", *SMALL], base, env, 1))
    assert list(f16) == ["variant"] and "another frame variant" in f16["variant"][0]
    emptied = _kinds(_verify(["-d", "synthetic", "--root", str(c["emptied"]), "--fold", "1", *SMALL], base, env, 1))
    assert "listed clips unusable" in emptied["unreadable"][0]
    assert any("class fear has 0 usable clips vs" in t for t in emptied["counts"])
    leak = _verify(["-d", "synthetic", "--root", str(c["leak"]), "--fold", "1", *SMALL], base, env, 1)
    dup = leak["fingerprint"]["folds"][0]["duplicates"]["train_test"]
    assert dup["pairs"] == 1 and dup["exact"] == 1 and "between train and test" in _kinds(leak)["duplicates"][0]
    for k, root in c.items():  # nothing written into any dataset directory
        assert _snapshot(root) == before[k], k


@pytest.mark.slow
def test_fingerprint_on_the_official_layouts(tmp_path):
    """The known facts of the releases come out: DFEW's fold sizes and 16-frame variant, FERV39k's split sizes and
    frames per clip, MAFW's fold sizes; a test clip planted from train is found."""
    dfew = write_dfew(tmp_path, variants=("clip_224x224_16f", "clip_224x224"))
    ids = [f"{i:05d}" for i in range(1, 22)]
    src = dfew / "Clip" / "clip_224x224_16f"
    shutil.rmtree(src / ids[0])  # clip 00001 is in fold 1's test list; give it the frames of training clip 00002
    shutil.copytree(src / ids[1], src / ids[0])
    rep = _verify(["-d", "dfew", "--root", str(dfew), "--fold", "1"], tmp_path, {}, 1)
    kinds = _kinds(rep)
    assert any("9,356 in the official release" in t for t in kinds["counts"])
    assert any("2,341 in the official release" in t for t in kinds["counts"])
    assert "variant" not in kinds  # 16 frames everywhere, as the 16f release
    assert "frames are 32x32, the reference's 224x224" in kinds["resolution"][0]
    assert rep["fingerprint"]["folds"][0]["duplicates"]["train_test"]["exact"] == 1
    full = _kinds(_verify(["-d", "dfew", "--root", str(dfew), "--fold", "1", "--variant", "clip_224x224"],
                          tmp_path, {}, 1))
    assert "vs 70 in the reference" in full["variant"][0]  # the full-length release: median 70; these 10-19

    ferv = _verify(["-d", "ferv39k", "--root", str(write_ferv39k(tmp_path))], tmp_path, {}, 1)
    texts = " ".join(m["text"] for m in ferv["mismatches"])
    assert "31,088 in the official release" in texts and "7,847 in the official release" in texts
    median = ferv["fingerprint"]["folds"][0]["splits"]["train"]["frames"]["median"]  # the fixture's 8..20 frames
    assert median < 22 and f"frames per clip: median {median:g} vs 28 in the reference" in texts, texts
    mafw = _verify(["-d", "mafw", "--root", str(write_mafw(tmp_path)), "--fold", "2"], tmp_path, {}, 1)
    assert "7,335 in the official release" in " ".join(m["text"] for m in mafw["mismatches"])


def _toy(root: Path, n_train: int = 20, n_test: int = 10, frames: int = 12, size: int = 32) -> Path:
    """A `folder` dataset a 3D conv learns in seconds: a red or blue tint that rises or falls over the clip, so the
    label depends on the colour channels and on the frame order."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for cls in ("red_up", "red_down", "blue_up", "blue_down"):
            ch = 0 if cls.startswith("red") else 2
            for i in range(n):
                d = root / split / cls / f"{cls}_{i:03d}"
                d.mkdir(parents=True, exist_ok=True)
                for t in range(frames):
                    a = t / (frames - 1) if cls.endswith("up") else 1 - t / (frames - 1)
                    img = 100 + rng.normal(0, 10, (size, size, 3))
                    img[..., ch] += 120 * a - 60
                    img[..., 1] += 60 - 120 * a
                    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(d / f"{t + 1}.png")
    return root


def _mis_prepare(src: Path, kind: str, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for clip in dst.glob("*/*/*"):
        frames = sorted(clip.glob("*.png"), key=lambda p: int(p.stem))
        if kind == "bgr":
            for f in frames:
                Image.fromarray(np.asarray(Image.open(f))[..., ::-1].copy()).save(f)
        else:  # frames numbered in reverse order
            data = [f.read_bytes() for f in frames]
            for f, b in zip(frames, data[::-1], strict=True):
                f.write_bytes(b)
    return dst


@pytest.mark.slow
def test_checkpoint_verdict_and_diagnosis(tmp_path):
    """A checkpoint trained here plays the released one, its run's number the published one: the correctly
    prepared copy matches; the BGR and the reversed copies fall beyond sampling noise, and the diagnosis names the
    switch that undoes each. Bad input gets one line."""
    data = _toy(tmp_path / "toy")
    bench_cli(["run", "-m", "test_tiny", "-d", "folder", "--root", str(data), "--epochs", "15", "--workers", "0",
               "--no-progress", "--no-latency", "--set", "data.size=32", "--set", "data.frames=8", "--set",
               "data.flip=false", "--set", "optim.lr=0.03", "--set", "data.rrc_scale=[1,1]"], tmp_path, check=True)
    (ckpt,) = (tmp_path / "results" / "runs").rglob("last.pt")
    trained = json.loads((ckpt.parent.parent / "result.json").read_text())
    assert trained["metrics"]["uar"] >= 0.9, trained["metrics"]["uar"]
    with_ = f"test_tiny::{ckpt}"
    ok = _verify(["-d", "folder", "--root", str(data), "--with", with_, "--workers", "0"], tmp_path, {}, 0)
    assert ok["checkpoint"]["verdict"]["verdict"] == "matches" and "cause" not in ok["checkpoint"]
    assert "the run's own result" in ok["checkpoint"]["expected"]["source"]
    for kind, cause in (("bgr", "bgr"), ("reversed", "reversed")):
        copy = _mis_prepare(data, kind, tmp_path / kind)
        before = _snapshot(copy)
        rep = _verify(["-d", "folder", "--root", str(copy), "--with", with_, "--workers", "0"], tmp_path, {}, 1)
        ck = rep["checkpoint"]
        assert ck["verdict"]["verdict"] == "below" and "beyond sampling noise" in ck["verdict"]["text"]
        assert ck["cause"]["name"] == cause, ck["diagnosis"]
        assert _snapshot(copy) == before
        md = (tmp_path / "verify-out" / "verify.md").read_text()
        assert "**Diagnosis:" in md and "## Environment" in md
    for args, message in (
            (["-d", "folder", "--root", str(data), "--with", f"r3d18::{ckpt}"], "does not fit r3d18"),
            (["-d", "synthetic", "--fold", "9"], "has folds"),
            (["-d", "dfew", "--root", str(tmp_path / "nowhere")], "nowhere"),
            (["-d", "folder", "--root", str(data), "--with", "test_tiny"], "METHOD:SOURCE:FILE")):
        proc = bench_cli(["data", "verify", *args, "--out", str(tmp_path / "o")], tmp_path)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and message in errors[0]  # progress lines above it, then one line


@pytest.mark.slow
def test_a_synthetic_checkpoint_against_its_published_per_fold_number(synthetic_copies, tmp_path):
    """On `synthetic`, end to end: a checkpoint trained here, moved out of its run directory (as a released file
    is), plays the released checkpoint, and its run's fold-1 number, given as a published row in a --reported
    CSV (literature.csv's columns), plays the published one. The correctly prepared copy matches (with --quick);
    a source that publishes WAR only is read on WAR; a published number far above is `below`, beyond noise."""
    c, env = synthetic_copies["copies"], synthetic_copies["env"]
    opts = ["--set", "data.options.clips_per_class=6", "--set", "data.options.folds=2",
            "--set", "data.options.resolution=32"]
    bench_cli(["run", "-m", "test_tiny", "-d", "synthetic", "--root", str(c["correct"]), "--fold", "1", *opts,
               "--workers", "0", "--no-progress", "--no-latency"], tmp_path, env, check=True)
    (ckpt,) = (tmp_path / "results" / "runs").rglob("last.pt")
    result = json.loads((ckpt.parent.parent / "result.json").read_text())
    run = result["metrics"]
    released = tmp_path / "released" / "tiny_synthetic.pt"
    released.parent.mkdir()
    shutil.copy(ckpt, released)
    header = "method,dataset,split,uar,war,params_m,gflops,gflops_input,pretraining,source,source_kind,notes\n"

    def check(uar: str, war: str, rc: int) -> dict:
        table = tmp_path / f"published-{uar}-{war}.csv"
        table.write_text(header + f"test_tiny,synthetic,fold 1,{uar},{war},,,,,a paper's table 2,paper,\n")
        rep = _verify(["-d", "synthetic", "--root", str(c["correct"]), "--fold", "1", *SMALL, "--quick",
                       "--with", f"test_tiny::{released}", "--reported", str(table), "--workers", "0"],
                      tmp_path, env, rc)
        ck = rep["checkpoint"]
        assert ck["expected"]["source"] == "test_tiny, fold 1: a paper's table 2" and ck["test_videos"] == result["data"]["n_test"]
        return ck

    ck = check(f"{100 * run['uar']:.4f}", "", 0)
    assert ck["verdict"]["verdict"] == "matches" and ck["verdict"]["metric"] == "uar"
    ck = check("", f"{100 * run['war']:.4f}", 0)
    assert ck["verdict"]["verdict"] == "matches" and ck["verdict"]["metric"] == "war"
    ck = check("", "99.0", 1)
    assert ck["verdict"]["verdict"] == "below" and "WAR points below" in ck["verdict"]["text"]
    assert ck["diagnosis"] and "cause" in ck
    md = (tmp_path / "verify-out" / "verify.md").read_text()
    assert "Expected: WAR 99.00 (test_tiny, fold 1: a paper's table 2)" in md and "| WAR [95%] |" in md
