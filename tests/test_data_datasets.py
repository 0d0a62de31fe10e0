"""Dataset modules against fixtures in the official layouts, and their registered facts against datasets.md."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fixtures_data import MAFW_NAMES, write_dfew, write_ferv39k, write_mafw, write_mp4

import bench.datasets  # noqa: F401  (registers)
from bench.errors import DataError
from bench.registry import DATASETS

DOC = Path("/work/shared/docs/datasets.md")

# datasets.md §1.6, §2.1/§2.3, §3.2 (copied; the doc-parsing test below re-reads them when the doc is present)
DFEW_FOLDS = {1: (9356, 2341), 2: (9356, 2341), 3: (9357, 2340), 4: (9358, 2339), 5: (9361, 2336)}
FERV_SPLIT = {None: (31088, 7847)}
MAFW_SINGLE = {1: (7333, 1839), 2: (7335, 1837), 3: (7339, 1833), 4: (7340, 1832), 5: (7341, 1831)}
MAFW_COMPOUND = {1: (7178, 1818), 2: (7187, 1809), 3: (7198, 1798), 4: (7208, 1788), 5: (7213, 1783)}


def one_line(e: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


# ----------------------------------------------------------------------------------------------------------
# registered facts


def test_registered_orders_and_counts() -> None:
    d, f, m, mc = (DATASETS.get(n) for n in ("dfew", "ferv39k", "mafw", "mafw_compound"))
    assert d.classes == ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
    assert f.classes == d.classes  # DFEW-style order, documented in the description
    assert "DFEW-style" in f.description
    assert m.classes == MAFW_NAMES
    assert len(mc.classes) == 43 and mc.classes[:11] == MAFW_NAMES
    assert d.official_counts == DFEW_FOLDS and d.folds == (1, 2, 3, 4, 5)
    assert f.official_counts == FERV_SPLIT and f.folds == (None,)
    assert m.official_counts == MAFW_SINGLE and mc.official_counts == MAFW_COMPOUND
    assert sum(DFEW_FOLDS[1]) == 11697 and sum(FERV_SPLIT[None]) == 38935 and sum(MAFW_SINGLE[1]) == 9172
    for info in (d, f, m):
        assert info.access and info.layout and info.env_var


@pytest.mark.skipif(not DOC.is_file(), reason="datasets.md not available")
def test_counts_and_orders_equal_datasets_md() -> None:
    text = DOC.read_text()
    folds = dict(re.findall(r"\| fd(\d) `set_\d` \| ([\d,]+) \| ([\d,]+) \|", text) and
                 [(int(a), (int(b.replace(",", "")), int(c.replace(",", ""))))
                  for a, b, c in re.findall(r"\| fd(\d) `set_\d` \| ([\d,]+) \| ([\d,]+) \|", text)])
    assert folds == DATASETS.get("dfew").official_counts
    mafw_rows = re.findall(r"^\| (\d) \| ([\d,]+) / ([\d,]+) \| [\d,]+ / [\d,]+ \| ([\d,]+) / ([\d,]+) \|", text, re.M)
    n = lambda s: int(s.replace(",", ""))  # noqa: E731
    assert {int(r[0]): (n(r[1]), n(r[2])) for r in mafw_rows} == DATASETS.get("mafw").official_counts
    assert {int(r[0]): (n(r[3]), n(r[4])) for r in mafw_rows} == DATASETS.get("mafw_compound").official_counts
    assert "31,088 / 7,847" in text
    compound = re.findall(r"(\d+) ([a-z_]+) \d+", text[text.index("### 3.5"):text.index("### 3.6")])
    order = [name for _, name in sorted(compound, key=lambda t: int(t[0]))]
    assert tuple(order) == DATASETS.get("mafw_compound").classes
    singles = re.search(r"\| name in split files \| (.+) \|", text).group(1).split(" | ")
    assert tuple(singles) == DATASETS.get("mafw").classes
    dfew = re.search(r"\| class \| (.+) \|", text).group(1).lower().split(" | ")
    assert tuple(dfew) == DATASETS.get("dfew").classes


# ----------------------------------------------------------------------------------------------------------
# DFEW


@pytest.fixture(scope="module")
def dfew_root(tmp_path_factory) -> Path:
    return write_dfew(tmp_path_factory.mktemp("dfew"), variants=("clip_224x224_16f", "clip_224x224", "original"))


def test_dfew_official_layout(dfew_root: Path) -> None:
    m = DATASETS.get("dfew").build_manifest(dfew_root, 1, {})
    assert m.root.name == "clip_224x224_16f" and m.media == "frames"
    assert len(m.split("test")) == 5 and len(m.split("train")) == 16
    assert all(r.num_frames == 16 for r in m.records)
    rec = {r.clip_id: r for r in m.records}
    assert rec["00001"].label == 0 and rec["00002"].label == 1 and rec["00007"].label == 6  # official 1..7 -> 0..6
    assert [s["clip_id"] for s in m.skipped if s["kind"] == "label0"] == ["16001"]  # dropped AND reported
    assert set(m.sources) == {"EmoLabel_DataSplit/train(single-labeled)/set_1.csv",
                              "EmoLabel_DataSplit/test(single-labeled)/set_1.csv"}
    for fold, n_test in ((2, 4), (3, 4)):  # BOM; CRLF + trailing blank lines
        q = DATASETS.get("dfew").build_manifest(dfew_root, fold, {})
        assert len(q.split("test")) == n_test and len(q.split("train")) == 17 and not q.skipped
    from bench.data.frames import list_frames

    assert [p.name for p in list_frames(m.root / "00001")][:3] == ["1.jpg", "2.jpg", "3.jpg"]
    full = DATASETS.get("dfew").build_manifest(dfew_root, 1, {"variant": "clip_224x224"})
    assert full.records[0].rel_path.startswith("clip_224x224_part_1/") and min(r.num_frames for r in full.records) == 10
    vid = DATASETS.get("dfew").build_manifest(dfew_root, 2, {"variant": "original"})
    assert vid.media == "video" and vid.records[0].rel_path.endswith(".mp4")
    from bench.data.frames import read_clip

    assert read_clip(vid.root / vid.records[0].rel_path, [0, 3]).shape == (2, 32, 32, 3)


def test_dfew_folder_spellings(tmp_path: Path, dfew_root: Path) -> None:
    root = tmp_path / "DFEW"
    shutil.copytree(dfew_root / "EmoLabel_DataSplit", root / "EmoLabel_DataSplit")
    (root / "Clip").symlink_to(dfew_root / "Clip")
    sd = root / "EmoLabel_DataSplit"
    (sd / "train(single-labeled)").rename(sd / "train")
    (sd / "test(single-labeled)").rename(sd / "test_single_labeled")
    for p in (sd / "test_single_labeled").iterdir():
        p.rename(p.with_name("test_" + p.name))  # S2D-style test_set_N.csv
    m = DATASETS.get("dfew").build_manifest(root, 3, {})
    assert len(m.split("test")) == 4


def test_dfew_bad_lists(tmp_path: Path, dfew_root: Path) -> None:
    root = tmp_path / "DFEW"
    shutil.copytree(dfew_root / "EmoLabel_DataSplit", root / "EmoLabel_DataSplit")
    (root / "Clip").symlink_to(dfew_root / "Clip")
    test = root / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv"
    train = root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv"
    # duplicate clip across train and test of the fold
    test.write_text(test.read_text() + "2,2\n")
    with pytest.raises(DataError) as e:
        DATASETS.get("dfew").build_manifest(root, 1, {"refresh": True})
    one_line(e, "00002", "also in the train list", "set_1.csv")
    # label outside 1..7
    test.write_text("video_name,label\n1,9\n")
    with pytest.raises(DataError) as e:
        DATASETS.get("dfew").build_manifest(root, 1, {})
    one_line(e, "set_1.csv:2", "outside the official 1..7")
    # a 0-based community copy is refused, not silently shifted
    train.write_text("video_name,label\n" + "".join(f"{i},{i % 7}\n" for i in range(2, 20)))
    test.write_text("video_name,label\n1,0\n")
    with pytest.raises(DataError) as e:
        DATASETS.get("dfew").build_manifest(root, 1, {})
    one_line(e, "0-based")
    with pytest.raises(DataError) as e:
        DATASETS.get("dfew").build_manifest(root, 1, {"variant": "clip_112"})
    one_line(e, "clip_112", "variant")


def test_bad_clips_policy(tmp_path: Path) -> None:
    root = write_dfew(tmp_path, n_clips=14)
    media = root / "Clip" / "clip_224x224_16f"
    shutil.rmtree(media / "00002")  # missing clip folder (train of fold 1)
    for p in (media / "00003").iterdir():  # empty clip folder
        p.unlink()
    (media / "00004" / "7.jpg").write_bytes(b"")  # zero-byte frame
    with pytest.raises(DataError) as e:
        DATASETS.get("dfew").build_manifest(root, 1, {})
    one_line(e, "00002", "missing", "3 bad clips", "bench data check")
    m = DATASETS.get("dfew").build_manifest(root, 1, {"on_bad_clip": "skip"})
    kinds = {s["clip_id"]: s["kind"] for s in m.skipped}
    assert kinds == {"16001": "label0", "00002": "missing", "00003": "empty", "00004": "corrupt"}
    assert {"00002", "00003", "00004"}.isdisjoint({r.clip_id for r in m.records})


def test_manifest_cache(tmp_path: Path, monkeypatch) -> None:
    root = write_dfew(tmp_path, n_clips=14)
    info = DATASETS.get("dfew")
    m1 = info.build_manifest(root, 1, {})
    caches = list((root / ".dfer-bench" / "manifests").glob("dfew-f1-*.json"))
    assert len(caches) == 1
    from bench.datasets import dfew

    calls = []
    monkeypatch.setattr(dfew, "assemble", lambda **kw: calls.append(1) or (_ for _ in ()).throw(AssertionError))
    m2 = info.build_manifest(root, 1, {})  # served from the cache: assemble is not called
    assert m2.checksum() == m1.checksum() and not calls
    monkeypatch.undo()
    split = root / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv"
    split.write_text(split.read_text().replace("\n6,6\n", "\n"))  # split file changed -> rebuilt
    m3 = info.build_manifest(root, 1, {})
    assert len(m3.split("test")) == len(m1.split("test")) - 1
    blob = json.loads(caches[0].read_text())
    assert any(k.endswith("set_1.csv") for k in blob["sources"])


def test_read_only_root_uses_user_cache(tmp_path: Path, monkeypatch) -> None:
    """A root we cannot write to (shared, read-only storage) -> the per-user cache, keyed by the root path."""
    from bench.datasets import _common

    root = write_dfew(tmp_path / "ro", n_clips=14)
    monkeypatch.setenv("DFER_BENCH_CACHE", str(tmp_path / "usercache"))
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **k):
        if str(self).startswith(str(root)):
            raise PermissionError(13, "Read-only file system")
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    m = DATASETS.get("dfew").build_manifest(root, 1, {})
    assert not (root / ".dfer-bench").exists()
    assert list((tmp_path / "usercache" / "manifests").rglob("dfew-f1-*.json"))
    assert DATASETS.get("dfew").build_manifest(root, 1, {}).checksum() == m.checksum()
    assert _common.cache_dir_for(root).is_relative_to(tmp_path / "usercache")


# ----------------------------------------------------------------------------------------------------------
# FERV39k, MAFW


def test_ferv39k_nesting_and_short_clips(tmp_path: Path) -> None:
    root = write_ferv39k(tmp_path)
    m = DATASETS.get("ferv39k").build_manifest(root, None, {})
    assert m.root.name == "2_ClipsforFaceCrop" and m.root.parent.name == "2_ClipsforFaceCrop-002"
    assert len(m.split("train")) == 14 and len(m.split("test")) == 7  # nothing dropped
    assert min(r.num_frames for r in m.records) == 8  # short clips kept (padded by the sampler)
    happy = [r for r in m.records if "/Happy/" in r.rel_path]
    assert happy and all(r.label == 0 for r in happy)  # DFEW-style order: happy = 0
    lst = root / "FERV39k" / "4_setups" / "All_scenes" / "test_All.csv"
    lst.write_text(lst.read_text() + "Action/Happy/0001 Joy\n")
    with pytest.raises(DataError) as e:
        DATASETS.get("ferv39k").build_manifest(root, None, {})
    one_line(e, "test_All.csv", "'Joy'", "not a class")
    lst.write_text("../../etc/passwd Happy\n")
    with pytest.raises(DataError) as e:
        DATASETS.get("ferv39k").build_manifest(root, None, {})
    one_line(e, "test_All.csv:1", "escapes the dataset root")


def test_wrong_root_says_what_it_looks_like(tmp_path: Path) -> None:
    ferv = write_ferv39k(tmp_path)
    with pytest.raises(DataError) as e:
        DATASETS.get("dfew").build_manifest(ferv, 1, {})
    one_line(e, "looks like FERV39k", "--dataset")
    assert DATASETS.get("dfew").is_present(ferv)  # so `bench run` reaches this message, not 'not found'
    (tmp_path / "empty").mkdir()
    assert not DATASETS.get("dfew").is_present(tmp_path / "empty")
    mafw = write_mafw(tmp_path, per_class=1)
    with pytest.raises(DataError) as e:
        DATASETS.get("ferv39k").build_manifest(mafw, None, {})
    one_line(e, "looks like MAFW")


def test_mafw_crlf_png_caption_compound(tmp_path: Path) -> None:
    root = write_mafw(tmp_path)
    assert (root / "Train & Test Set").is_dir()
    m = DATASETS.get("mafw").build_manifest(root, 1, {})
    assert m.root.name == "frames" and m.root.parent.name == "frames"  # data/frames/frames: extra nesting
    assert len(m.records) == 33 and all(r.clip_id.isdigit() and len(r.clip_id) == 5 for r in m.records)
    assert {r.label for r in m.records} == set(range(11))
    cap = DATASETS.get("mafw").build_manifest(root, 1, {"caption": True})  # GBK, TAB, neutral omitted
    assert len(cap.records) == 30 and 4 not in {r.label for r in cap.records}
    comp = DATASETS.get("mafw_compound").build_manifest(root, 1, {})
    names = {comp.classes[r.label] for r in comp.records}
    assert {"anger_disgust", "sadness_anxiety_helplessness"} <= names


def test_mafw_clips_through_decord(tmp_path: Path) -> None:
    root = write_mafw(tmp_path, per_class=0)
    for cid in range(1, 12):
        write_mp4(root / "data" / "clips" / f"{cid:05d}.mp4", 10)
    m = DATASETS.get("mafw").build_manifest(root, 1, {"variant": "clips"})
    assert m.media == "video" and all(r.num_frames == 10 for r in m.records)


# ----------------------------------------------------------------------------------------------------------
# community lists, folder


def test_community_lists(tmp_path: Path) -> None:
    root = write_dfew(tmp_path, n_clips=14)
    media = "Clip/clip_224x224_16f"
    ann = tmp_path / "annotation"
    ann.mkdir()
    # DFER-CLIP format: path num_frames label (0-based, DFEW order), wrong frame count on purpose
    (ann / "set_1_train.txt").write_text("".join(f"{media}/{i:05d} 99 {(i - 1) % 7}\n" for i in range(1, 11)))
    # MAE-DFER format: path label, CRLF, prefix to strip
    (ann / "set_1_test.txt").write_bytes("".join(f"/their/DFEW/{media}/{i:05d} {(i - 1) % 7}\r\n" for i in range(11, 15)).encode())
    opts = {"train_list": str(ann / "set_{fold}_train.txt"), "test_list": str(ann / "set_1_test.txt"),
            "prefix": "/their/DFEW/"}
    info = DATASETS.get("list")
    with pytest.raises(DataError) as e:
        info.build_manifest(root, 1, opts)
    one_line(e, "label order is not declared", "label_order")
    m = info.build_manifest(root, 1, {**opts, "label_order": "dfew"})
    assert all(r.num_frames == 16 for r in m.records)  # recounted, the column said 99
    off = DATASETS.get("dfew").build_manifest(root, 1, {})
    by_id = {r.clip_id: r.label for r in off.records}
    assert all(by_id[r.rel_path[-5:]] == r.label for r in m.records)
    # the same clips listed in FERV39k-alphabetical encoding map to the same DFEW-style classes
    alpha = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    dfew7 = m.classes
    (ann / "alpha_train.txt").write_text("".join(f"{media}/{i:05d} {alpha.index(dfew7[(i - 1) % 7])}\n" for i in range(1, 11)))
    m2 = info.build_manifest(root, 1, {**opts, "train_list": str(ann / "alpha_train.txt"), "label_order": "ferv39k_alpha"})
    assert [r.label for r in m2.split("train")] == [r.label for r in m.split("train")]
    (ann / "bad.txt").write_text(f"{media}/00001 16 0\n../x 16 1\n")
    with pytest.raises(DataError) as e:
        info.build_manifest(root, 1, {**opts, "train_list": str(ann / "bad.txt"), "label_order": "dfew"})
    one_line(e, "bad.txt:2", "escapes")
    with pytest.raises(DataError) as e:
        info.build_manifest(root, 1, {**opts, "label_order": "mafw_official,x"})
    one_line(e, "label_order")


def test_folder_dataset(tmp_path: Path) -> None:
    from fixtures_data import jpeg

    root = tmp_path / "mine"
    for cls in ("Happy", "Sad"):
        for k in range(5):
            d = root / cls / f"clip{k}"
            d.mkdir(parents=True)
            for t in range(4):
                (d / f"frame_{t}.jpg").write_bytes(jpeg(t))
    write_mp4(root / "Sad" / "extra.mp4", 9)
    info = DATASETS.get("folder")
    m = info.build_manifest(root, None, {})
    assert m.classes == ("happy", "sad") and len(m.split("test")) == 2 and len(m.records) == 11
    m2 = info.build_manifest(root, None, {"classes": "dfew", "refresh": True})
    assert m2.classes[0] == "happy" and {r.label for r in m2.records} == {0, 1}
    (root / "train.txt").write_text("Happy/clip0 happy\nSad/clip0 sad\n")
    (root / "test.txt").write_text("Happy/clip1 Happy\nSad/extra.mp4 sad\n")
    m3 = info.build_manifest(root, None, {})
    assert len(m3.records) == 4 and m3.split("test")[1].num_frames == 9
