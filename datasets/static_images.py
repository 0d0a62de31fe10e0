"""Dataset `static_images`: a static facial-expression image set, one folder per class (AffectNet / RAF-DB layout),
read into a Manifest whose clips are single images (num_frames 1). It feeds the image side of methods that train
on static and dynamic expressions together (S4D's AffectNet-7 joint fine-tuning, `methods/s4d.py`).

Layout: <root>/<split>/<class>/*.jpg|*.jpeg|*.png with split folders `train` and `test` and/or `val`
(`valid`, `validation`). AffectNet ships train + val, and its val set is the test set of every FER paper, so a
lone val folder becomes the `test` split; when both test and val exist, val stays `val`. data.options.test_split
(test | val) names the folder to use as the test split explicitly.

Class folders are matched by name, case-insensitively, with the usual spellings folded (happiness -> happy,
sadness -> sad, angry -> anger, surprised -> surprise, fearful -> fear, disgusted -> disgust, contemptuous ->
contempt), or by number under a named order (AffectNet 0..7 = neutral, happy, sad, surprise, fear, disgust, anger,
contempt; RAF-DB 1..7 = surprise, fear, disgust, happy, sad, anger, neutral).

data.options:
  classes      the label order: affectnet7 (default: S4D's head.image order, contempt left out), affectnet8, rafdb,
               dfew, or an explicit list ("neutral,happy,..."). Folders of a known expression outside the order
               (contempt under affectnet7) are left out and listed in the manifest's `skipped` (kind "excluded");
               any other folder name is an error.
  test_split   test | val: the folder read as the test split (default: test if present, else val)
  verify       count (default: the file exists and is not empty) | tail (JPEG/PNG end marker) | deep (decode)
  on_bad_clip  error (default) | skip

Reading: `bench.data.frames.read_clip` reads a clip folder or a video file; an image *file* as a one-frame clip
needs the core to accept it (see the S4D report). A clip record's rel_path is the image file, e.g.
`train/happy/0001.jpg`; its clip_id the same path without the extension.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.api import ClipRecord, DatasetInfo, Manifest, register_dataset
from bench.data import frames as fr
from bench.errors import DataError

from ._common import cached_manifest, subdirs
from .dfew import CLASSES as DFEW7

NAME = "static_images"
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
AFFECTNET7 = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")
AFFECTNET8 = (*AFFECTNET7, "contempt")
RAFDB = ("surprise", "fear", "disgust", "happy", "sad", "anger", "neutral")
ORDERS: dict[str, tuple[str, ...]] = {"affectnet7": AFFECTNET7, "affectnet8": AFFECTNET8, "rafdb": RAFDB,
                                      "dfew": DFEW7}
# numeric class folders under a named order: folder number - base = index into the *full* label set of the source
NUMERIC: dict[str, tuple[int, tuple[str, ...]]] = {"affectnet7": (0, AFFECTNET8), "affectnet8": (0, AFFECTNET8),
                                                   "rafdb": (1, RAFDB)}
ALIASES = {"happiness": "happy", "sadness": "sad", "angry": "anger", "surprised": "surprise", "fearful": "fear",
           "disgusted": "disgust", "contemptuous": "contempt"}
KNOWN = set(AFFECTNET8) | {ALIASES.get(c, c) for c in DFEW7}
SPLIT_DIRS = {"train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val"}


def canon(name: str) -> str:
    n = name.strip().lower()
    return ALIASES.get(n, n)


def resolve_classes(value) -> tuple[str | None, tuple[str, ...]]:
    """(order name or None, class names) from data.options.classes."""
    if value in (None, "", []):
        value = "affectnet7"
    if isinstance(value, str) and value.lower() in ORDERS:
        return value.lower(), ORDERS[value.lower()]
    names = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()]
    if len(names) < 2 or len({canon(n) for n in names}) != len(names):
        raise DataError(f"data.options.classes={value!r}: give a named order ({', '.join(ORDERS)}) or a list of "
                        "distinct class names")
    return None, tuple(names)


def _split_dirs(root: Path, test_split: str | None) -> dict[str, Path]:
    """manifest split -> folder."""
    found: dict[str, Path] = {}
    for d in subdirs(root):
        kind = SPLIT_DIRS.get(d.name.lower())
        if kind and kind not in found:
            found[kind] = d
    if "train" not in found:
        raise DataError(f"{root}: no train/ folder; expected <root>/train/<class>/*.jpg and <root>/test/ or val/")
    if test_split not in (None, "", "test", "val"):
        raise DataError(f"data.options.test_split={test_split!r}: use test or val")
    want = test_split or ("test" if "test" in found else "val")
    if want not in found:
        raise DataError(f"{root}: no {want}/ folder for the test split (found {', '.join(sorted(found))})")
    out = {"train": found["train"], "test": found[want]}
    other = "val" if want == "test" else "test"
    if other in found and want == "test":
        out["val"] = found[other]
    return out


def _label_of(folder: str, order_name: str | None, classes: tuple[str, ...]) -> int | None:
    """Index of a class folder in `classes`; None = a known expression outside the order (excluded)."""
    lookup = {canon(c): i for i, c in enumerate(classes)}
    name = folder.strip()
    if name.isdigit():
        if order_name not in NUMERIC:
            raise DataError(f"class folder {folder!r} is a number: numbered folders need data.options.classes="
                            f"{'|'.join(NUMERIC)} (which says what the numbers mean)")
        base, full = NUMERIC[order_name]
        k = int(name) - base
        if not 0 <= k < len(full):
            raise DataError(f"class folder {folder!r}: not a label of {order_name} ({base}..{base + len(full) - 1})")
        name = full[k]
    key = canon(name)
    if key in lookup:
        return lookup[key]
    if key in KNOWN:
        return None
    raise DataError(f"class folder {folder!r} is not a class of {order_name or 'data.options.classes'} "
                    f"({', '.join(classes)}); rename it or set data.options.classes")


def _images(class_dir: Path) -> list[os.DirEntry]:
    with os.scandir(class_dir) as it:
        entries = [e for e in it if e.name.lower().endswith(IMAGE_EXTS) and not e.name.startswith(".") and e.is_file()]
    return sorted(entries, key=lambda e: e.name)


def _check(entry: os.DirEntry, level: str) -> str | None:
    """Why an image is unusable, or None."""
    try:
        size = entry.stat().st_size
    except OSError:
        return "cannot stat the image"
    if size == 0:
        return "empty file"
    path = Path(entry.path)
    if level in ("tail", "deep"):
        why = fr.verify_frame_file(path, size)
        if why:
            return why
    if level == "deep":
        try:
            fr.decode_image(path)
        except DataError as e:
            return str(e).split(": ", 1)[-1]
    return None


def build_manifest(root: Path, fold: int | None, options: dict) -> Manifest:
    """One record per image (num_frames 1) from <root>/<split>/<class>/ folders."""
    root = Path(options.get("root") or root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: static image root does not exist; pass --root PATH (<root>/train/<class>/*.jpg)")
    order_name, classes = resolve_classes(options.get("classes"))
    level = options.get("verify", "count")
    if level not in ("count", "tail", "deep"):
        raise DataError(f"data.options.verify={level!r}: use count, tail or deep")
    splits = _split_dirs(root, options.get("test_split"))
    class_dirs = {split: subdirs(base) for split, base in splits.items()}
    # images added to or removed from a class folder change that folder's mtime: part of the cache key
    stamp = [f"{d.relative_to(root).as_posix()}:{d.stat().st_mtime_ns}" for ds in class_dirs.values() for d in ds]

    def build() -> Manifest:
        records: list[ClipRecord] = []
        skipped: list[dict] = []
        for split, dirs in class_dirs.items():
            for cdir in dirs:
                label = _label_of(cdir.name, order_name, classes)
                for e in _images(cdir):
                    rel = Path(e.path).relative_to(root).as_posix()
                    cid = rel.rsplit(".", 1)[0]
                    if label is None:
                        skipped.append({"kind": "excluded", "split": split, "clip_id": cid, "path": e.path,
                                        "reason": f"class folder {cdir.name!r} is not in the label order"})
                        continue
                    why = _check(e, level)
                    if why:
                        kind = "empty" if why == "empty file" else "corrupt"
                        skipped.append({"kind": kind, "split": split, "clip_id": cid, "path": e.path, "reason": why})
                        continue
                    records.append(ClipRecord(cid, rel, 1, label, split, None))
        if not any(r.split == "train" for r in records):
            raise DataError(f"{root}: no training images of the classes {', '.join(classes)}")
        return Manifest(dataset=NAME, root=root, classes=classes, records=records, fold=None, media="frames",
                        sources={}, skipped=skipped)

    key_opts = {**options, "classes": list(classes), "order": order_name, "splits": sorted(splits),
                "test_dir": splits["test"].name, "stamp": stamp}
    return cached_manifest(dataset=NAME, root=root, fold=None, options=key_opts,
                           option_keys=("classes", "order", "splits", "test_dir", "stamp"), split_files=[],
                           media_root=root, build=build)  # applies data.options.on_bad_clip


def _present(root: Path) -> bool:
    return root.is_dir() and any(SPLIT_DIRS.get(d.name.lower()) == "train" for d in subdirs(root))


INFO = register_dataset(DatasetInfo(
    name=NAME,
    title="Static facial-expression images, one folder per class (AffectNet / RAF-DB)",
    classes=AFFECTNET7,  # the default order; data.options.classes may change it: use Manifest.classes
    folds=(None,),
    protocol="single_split",
    build_manifest=build_manifest,
    env_var="DFER_STATIC_IMAGES_ROOT",
    default_root="AffectNet",
    access=("AffectNet: academic licence from its authors (mohammadmahoor.com/affectnet); RAF-DB: EULA from "
            "whdeng.cn/RAF. Arrange the images one folder per class."),
    layout=("root/train/<class>/*.jpg|png and root/val/<class>/ (AffectNet: val = test) or root/test/<class>/\n"
            "<class>: a name (neutral, happy, ...) or a number under data.options.classes=affectnet7|affectnet8|rafdb"),
    official_counts={},
    is_present=_present,
    description=("Static expression images (one image = a one-frame clip) for joint static+dynamic training; "
                 "label order data.options.classes (default affectnet7, S4D's image head)."),
))
