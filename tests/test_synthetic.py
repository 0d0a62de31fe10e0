"""The `synthetic` dataset: deterministic generation, knobs, manifest read from disk, identity folds, the real
reader, label noise, and the numerical proof that the label is carried by the dynamics."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data.loader import ClipDataset
from bench.datasets import synthetic as S
from bench.errors import DataError
from bench.spec import DataCfg

# small knobs: 7 classes x 6 clips, 6 identities (2 per fold), short clips, low resolution
SMALL = {"clips_per_class": 6, "frames": [10, 18], "resolution": 32, "seed": 1}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn")
    S.ensure_generated(root, SMALL, quiet=True)
    return root


def _variant(root: Path, opts: dict) -> Path:
    return root / S.variant_key(S.parse_knobs(opts))


def _lines(p: Path) -> list[tuple[str, str]]:
    return [tuple(ln.split()) for ln in p.read_text().splitlines()]


def _identities(vroot: Path) -> dict[str, int]:
    rows = [ln.split("\t") for ln in (vroot / "clips.tsv").read_text().splitlines()[1:]]
    return {r[0]: int(r[1]) for r in rows}


# ----------------------------------------------------------------------------------------------------------
# determinism and knobs


def test_same_seed_is_byte_identical_and_other_seed_differs(small_root, tmp_path):
    a = _variant(small_root, SMALL)
    b = S.ensure_generated(tmp_path / "b", SMALL, quiet=True)
    for k in (1, 2, 3):
        for split in ("train.txt", "test.txt"):
            assert (a / f"splits/set_{k}/{split}").read_bytes() == (b / f"splits/set_{k}/{split}").read_bytes()
    assert (a / "clips/00001/1.jpg").read_bytes() == (b / "clips/00001/1.jpg").read_bytes()
    assert (a / "clips/00007/5.jpg").read_bytes() == (b / "clips/00007/5.jpg").read_bytes()
    c = S.ensure_generated(tmp_path / "c", {**SMALL, "seed": 2}, quiet=True)
    assert c.name != a.name
    assert (a / "clips/00001/1.jpg").read_bytes() != (c / "clips/00001/1.jpg").read_bytes()
    assert (a / "splits/set_1/test.txt").read_bytes() != (c / "splits/set_1/test.txt").read_bytes()


def test_knobs_change_output_and_variant_folder(small_root):
    base = S.parse_knobs(SMALL)
    keys = {S.variant_key(S.parse_knobs({**SMALL, k: v})) for k, v in
            [("intensity", 0.5), ("distractor", 0.0), ("apex_len", 3), ("resolution", 24), ("frames", [12, 14]),
             ("label_noise", 0.2), ("folds", 2), ("clips_per_class", 4)]}
    assert len(keys) == 8 and S.variant_key(base) not in keys
    # the passthrough key of the data core does not make a new variant
    assert S.variant_key(S.parse_knobs({**SMALL, "on_bad_clip": "skip"})) == S.variant_key(base)
    root = small_root
    v24 = S.ensure_generated(root, {**SMALL, "resolution": 24, "distractor": 0.0}, quiet=True)
    assert v24.parent == root and v24 != _variant(root, SMALL)
    from bench.data.frames import decode_image
    assert decode_image(v24 / "clips/00001/1.jpg").shape == (24, 24, 3)
    meta = json.loads((v24 / "meta.json").read_text())
    assert meta["knobs"]["resolution"] == 24 and meta["knobs"]["distractor"] == 0.0 and meta["version"] == S.GENERATOR_VERSION


def test_unknown_knob_is_one_line_error(tmp_path):
    with pytest.raises(DataError, match=r"unknown data.options key 'intesity'.*intensity") as e:
        S.build_manifest(tmp_path, 1, {"intesity": 0.5})
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="resolution"):
        S.parse_knobs({"resolution": "big"})
    with pytest.raises(DataError, match="clips_per_class=2 is below folds=3"):
        S.parse_knobs({"clips_per_class": 2})
    with pytest.raises(DataError, match="identities"):
        S.parse_knobs({"clips_per_class": 6, "identities": 7})
    with pytest.raises(DataError, match="fold 4"):
        S.build_manifest(tmp_path, 4, SMALL)
    assert not any(tmp_path.iterdir())  # nothing generated for bad requests


def test_clip_lengths_follow_frames_knob_with_a_few_short(small_root):
    k = S.parse_knobs({"frames": [20, 40]})
    lengths = np.array([r["frames"] for r in S.clip_plan(k)])
    assert len(lengths) == 630 and lengths.max() <= 40
    short = (lengths < 16).sum()
    assert 10 <= short <= 60 and (lengths[lengths >= 16] >= 20).all()
    assert S.parse_knobs({"frames": "12-14"})["frames"] == [12, 14]


# ----------------------------------------------------------------------------------------------------------
# manifest from the files on disk


def test_manifest_is_built_from_disk(small_root, tmp_path):
    import shutil

    src = _variant(small_root, SMALL)
    root = tmp_path / "copy"
    shutil.copytree(src, root / src.name)
    m = S.build_manifest(root, 1, SMALL)
    assert m.root == root / src.name and m.media == "frames" and m.classes == S.CLASSES
    rec = m.split("test")[0]
    frames = sorted((m.root / rec.rel_path).iterdir())
    assert rec.num_frames == len(frames) and rec.rel_path == f"clips/{rec.clip_id}"
    (m.root / rec.rel_path / f"{rec.num_frames}.jpg").unlink()
    m2 = S.build_manifest(root, 1, SMALL)
    assert {r.clip_id: r.num_frames for r in m2.split("test")}[rec.clip_id] == rec.num_frames - 1
    assert m2.checksum() != m.checksum()
    # a truncated frame passes a plain count but is caught by verify=tail (as for the real datasets)
    other = m2.split("test")[2]
    bad = m.root / other.rel_path / "1.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    assert other.clip_id in {r.clip_id for r in S.build_manifest(root, 1, SMALL).records}
    with pytest.raises(DataError, match=r"1.jpg: truncated JPEG"):
        S.build_manifest(root, 1, {**SMALL, "verify": "tail"})
    # a bad label in the list names the file
    lst = m.root / "splits/set_1/train.txt"
    lines = lst.read_text().splitlines()
    lines[3] = lines[3].split()[0] + " happiness"
    lst.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"set_1/train.txt: label 'happiness'"):
        S.build_manifest(root, 1, SMALL)
    # a missing clip: error by default, skipped on request (folds 2/3 lists are untouched)
    gone = m2.split("test")[1]
    shutil.rmtree(m.root / gone.rel_path)
    k = _fold_of_test_clip(m.root, gone.clip_id)  # a fold whose (intact) train list holds the clip
    with pytest.raises(DataError, match=gone.clip_id):
        S.build_manifest(root, k, SMALL)
    ms = S.build_manifest(root, k, {**SMALL, "on_bad_clip": "skip"})
    assert gone.clip_id not in {r.clip_id for r in ms.records}
    assert [s["clip_id"] for s in ms.skipped] == [gone.clip_id]


def _fold_of_test_clip(vroot: Path, clip_id: str) -> int:
    for k in (2, 3):
        if any(p == f"clips/{clip_id}" for p, _ in _lines(vroot / f"splits/set_{k}/train.txt")):
            return k
    raise AssertionError


def test_folds_identity_disjoint_balanced_and_leak_free(small_root):
    vroot = _variant(small_root, SMALL)
    ident = _identities(vroot)
    all_test: list[str] = []
    for k in (1, 2, 3):
        m = S.build_manifest(small_root, k, SMALL)
        tr, te = m.split("train"), m.split("test")
        assert not {r.clip_id for r in tr} & {r.clip_id for r in te}
        assert not {ident[r.clip_id] for r in tr} & {ident[r.clip_id] for r in te}
        assert len(tr) + len(te) == 42 and len(te) == 14
        assert np.bincount([r.label for r in te], minlength=7).tolist() == [2] * 7
        assert np.bincount([r.label for r in tr], minlength=7).tolist() == [4] * 7
        all_test += [r.clip_id for r in te]
    assert sorted(all_test) == sorted(ident)  # every clip is tested exactly once over the folds


def test_default_counts_are_registered():
    from bench.registry import DATASETS

    info = DATASETS.get("synthetic")
    assert info.generated and info.env_var == "DFER_SYNTHETIC_ROOT" and info.default_root == "synthetic"
    assert info.classes == ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
    assert S.official_counts_for({}) == info.official_counts == {k: (420, 210) for k in (1, 2, 3)}
    assert S.official_counts_for(SMALL) == {k: (28, 14) for k in (1, 2, 3)}
    assert S.official_counts_for({"clips_per_class": 6, "folds": 2}) == {1: (21, 21), 2: (21, 21)}


# ----------------------------------------------------------------------------------------------------------
# the real reader, label noise, atomicity


def test_clip_dataset_reads_through_real_reader(small_root):
    m = S.build_manifest(small_root, 2, SMALL)
    cfg = DataCfg(frames=16, size=32)
    tr = ClipDataset(m, m.split("train"), cfg, train=True, seed=0)
    item = tr[0]
    assert item["clip"].shape == (3, 16, 32, 32) and item["clip"].dtype == torch.float32
    assert float(item["clip"].min()) >= 0.0 and float(item["clip"].max()) <= 1.0 and float(item["clip"].std()) > 0.02
    te = ClipDataset(m, m.split("test"), cfg, train=False)
    short = min(range(len(te.records)), key=lambda i: te.records[i].num_frames)
    assert te.records[short].num_frames < 16  # padding path exercised
    vi = next(i for i, it in enumerate(te.items) if it[0] == short)
    assert te[vi]["clip"].shape == (1, 3, 16, 32, 32)


def test_label_noise_flips_train_labels_only(tmp_path):
    opts = {"clips_per_class": 12, "frames": [6, 8], "resolution": 16, "label_noise": 0.3, "seed": 3, "distractor": 0.0}
    clean_opts = {**opts, "label_noise": 0.0}
    noisy = S.ensure_generated(tmp_path, opts, quiet=True)
    clean = S.ensure_generated(tmp_path, clean_opts, quiet=True)
    meta = json.loads((noisy / "meta.json").read_text())
    for k in (1, 2, 3):
        assert (noisy / f"splits/set_{k}/test.txt").read_bytes() == (clean / f"splits/set_{k}/test.txt").read_bytes()
        a, b = _lines(noisy / f"splits/set_{k}/train.txt"), _lines(clean / f"splits/set_{k}/train.txt")
        assert [p for p, _ in a] == [p for p, _ in b]
        flipped = {p.split("/")[1] for (p, x), (_, y) in zip(a, b, strict=True) if x != y}
        assert len(flipped) == round(0.3 * len(a))
        assert flipped == set(meta["folds"][str(k)]["flipped_train_labels"])
        m = S.build_manifest(tmp_path, k, opts)
        assert sum(r.clip_id in flipped for r in m.split("train")) == len(flipped)


def test_generation_is_atomic_and_race_safe(tmp_path, monkeypatch):
    opts = {"clips_per_class": 3, "frames": [5, 6], "resolution": 16}
    # a crash mid-generation leaves nothing behind
    calls = {"n": 0}
    real = S._render_rows

    def boom(dest, knobs, rows):
        calls["n"] += 1
        real(dest, knobs, rows[:2])
        raise RuntimeError("killed")

    monkeypatch.setattr(S, "_render_rows", boom)
    monkeypatch.setenv("DFER_SYNTHETIC_WORKERS", "1")
    with pytest.raises(RuntimeError):
        S.ensure_generated(tmp_path, opts, quiet=True)
    assert calls["n"] == 1 and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(S, "_render_rows", real)
    # a stale temp folder of a dead process is cleaned; two racing generators both get the complete folder
    key = S.variant_key(S.parse_knobs(opts))
    (tmp_path / f".tmp-{key}-999999999-deadbeef").mkdir()
    out: list[Path] = []
    threads = [threading.Thread(target=lambda: out.append(S.ensure_generated(tmp_path, opts, quiet=True)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 2 and out[0] == out[1] == tmp_path / key
    assert sorted(p.name for p in tmp_path.iterdir()) == [key]
    assert (tmp_path / key / "meta.json").is_file()


# ----------------------------------------------------------------------------------------------------------
# time matters: the label is in the dynamics, not in any single frame or in the set of frames


def _probe_accuracy(kind: str, clips: list, train_ids: set[int]) -> float:
    """Multinomial logistic regression (numpy, standardised features) trained on some identities, tested on others."""
    rng = np.random.default_rng(0)
    X = np.array([S.probe_features(au, kind, rng) for _, _, au in clips], dtype=np.float64)
    y = np.array([c for _, c, _ in clips])
    tr = np.array([i in train_ids for i, _, _ in clips])
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-6
    X = np.c_[(X - mu) / sd, np.ones(len(X))]
    W = np.zeros((X.shape[1], 7))
    Y = np.eye(7)[y[tr]]
    for _ in range(1500):  # full-batch gradient descent, L2 1e-3
        z = X[tr] @ W
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        W -= 0.5 * (X[tr].T @ (p - Y) / tr.sum() + 1e-3 * W)
    return float(((X[~tr] @ W).argmax(1) == y[~tr]).mean())


def test_time_matters_single_frames_and_frame_sets_fail_where_dynamics_succeed():
    """Ground-truth action-parameter trajectories of 24 identities x 7 classes x 4 clips, as the renderer gets them
    (resting bias, talking, blinks included). Probes train on 16 identities and test on 8 unseen ones."""
    knobs = S.parse_knobs({"clips_per_class": 96, "identities": 24})
    clips = []
    for row in S.clip_plan(knobs):
        p, _ = S.clip_params(knobs, row)
        clips.append((row["identity"], row["label"], p.au))
    train_ids = set(range(16))
    acc = {k: _probe_accuracy(k, clips, train_ids) for k in ("frame", "mean", "bag", "sequence")}
    print("probe accuracy (chance 0.143):", {k: round(v, 3) for k, v in acc.items()})
    assert acc["frame"] < 0.5  # one frame: ambiguous
    assert acc["mean"] < 0.75  # the average frame: no better than the order-less statistics below
    assert acc["bag"] < 0.8  # even every order-less statistic of the frames cannot split the time-reversed pairs
    assert acc["sequence"] > 0.9  # the ordered trajectory can
    assert acc["sequence"] - acc["bag"] > 0.15


def test_time_reversed_pairs_have_identical_frame_sets():
    """fear is surprise played backwards, disgust is angry backwards: the same multiset of expression frames."""
    from bench.datasets import _synthetic_render as R

    for a, b in R.REVERSED_OF.items():
        ea, *_ = R.expression_track(a, 30, np.random.default_rng(5))
        eb, *_ = R.expression_track(b, 30, np.random.default_rng(5))
        assert np.abs(ea).max() > 0.3
        assert not np.allclose(ea, eb)
        np.testing.assert_allclose(np.sort(ea, axis=0), np.sort(eb, axis=0), atol=1e-5)


def test_resting_face_bias_follows_the_distractor_knob():
    """Every identity has its own resting face (corners, brows, eyes...), with a spread of 0.3 x distractor over
    identities: one frame of a person at rest can carry a weak expression's worth of offset; distractor=0 is clean."""
    for distractor in (0.6, 1.0):
        knobs = S.parse_knobs({"distractor": distractor})
        corners = np.array([S.make_identity(knobs, i).bias[0] for i in range(200)])
        assert corners.std() == pytest.approx(0.3 * distractor, rel=0.15)
        assert corners.min() < -0.3 * distractor and corners.max() > 0.3 * distractor
    clean = S.parse_knobs({"distractor": 0.0})
    assert not np.any(S.make_identity(clean, 3).bias)
