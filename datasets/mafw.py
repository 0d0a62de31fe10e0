"""MAFW (ACM MM 2022): 5-fold CV. `mafw` = 11 single-expression classes in the official order (paper Table 3,
MAE-DFER/HiCMAE/IFDD indices); `mafw_compound` = the 43-class compound set in the order of datasets.md §3.5
(11 singles in official order, then the 32 combinations by number of parts and part indices).

Split lists: `Train & Test Set/{single,compound}/no_caption/set_N/{train,test}.txt` ("00025.mp4 anger", CRLF)
or, with data.options.caption=true, the with_caption lists (TAB-separated, GBK). Frames: the folder whose
children are 5-digit clip folders (`data/frames/…`, PNG; data.options.variant=frames, default, or the name of
another frame folder such as frames_crop_align_224), or variant=clips for `data/clips/*.mp4` through decord.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.api import DatasetInfo, Manifest, register_dataset
from bench.data.lists import map_label, numbered_lines
from bench.errors import DataError

from ._common import (
    FIVE_DIGITS,
    Row,
    assemble,
    cached_manifest,
    find_dir,
    has_clip_children,
    index_clips,
    present_or_foreign,
    rel_sources,
    require_root,
    subdirs,
    wrong_root,
)

CLASSES = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety",
           "helplessness", "disappointment")
COMPOUND_CLASSES = CLASSES + (
    "anger_disgust", "anger_sadness", "anger_surprise", "anger_anxiety", "anger_helplessness", "disgust_sadness",
    "disgust_surprise", "disgust_contempt", "disgust_anxiety", "disgust_helplessness", "disgust_disappointment",
    "fear_sadness", "fear_surprise", "fear_anxiety", "happiness_surprise", "happiness_contempt",
    "sadness_surprise", "sadness_anxiety", "sadness_helplessness", "sadness_disappointment", "surprise_anxiety",
    "anxiety_helplessness", "helplessness_disappointment", "anger_disgust_contempt", "anger_disgust_anxiety",
    "disgust_anxiety_helplessness", "disgust_helplessness_disappointment", "fear_sadness_anxiety",
    "fear_surprise_anxiety", "sadness_anxiety_helplessness", "sadness_helplessness_disappointment",
    "anxiety_helplessness_disappointment",
)
# (kind, caption) -> fold -> (train, test), datasets.md §3.2
COUNTS: dict[tuple[str, bool], dict[int | None, tuple[int, int]]] = {
    ("single", False): {1: (7333, 1839), 2: (7335, 1837), 3: (7339, 1833), 4: (7340, 1832), 5: (7341, 1831)},
    ("single", True): {1: (6423, 1611), 2: (6425, 1609), 3: (6429, 1605), 4: (6429, 1605), 5: (6430, 1604)},
    ("compound", False): {1: (7178, 1818), 2: (7187, 1809), 3: (7198, 1798), 4: (7208, 1788), 5: (7213, 1783)},
    ("compound", True): {1: (6268, 1590), 2: (6277, 1581), 3: (6288, 1570), 4: (6297, 1561), 5: (6302, 1556)},
}

ACCESS = """\
Non-commercial research only, no redistribution; free for university-affiliated researchers. Download
academics/mafw-academics-final.pdf from github.com/MAFW-database/MAFW, fill in the form at its end and e-mail
it to the address in that README (currently 1202411179@cug.edu.cn). Cite Liu et al., ACM MM 2022."""

LAYOUT = """\
MAFW/                                  (extra nesting levels from the archives are found by search)
  data/frames/00001/0.png ...          one folder per clip (or data.options.variant=clips: data/clips/00001.mp4)
  Train & Test Set/
    single/no_caption/set_1..set_5/{train,test}.txt      '00025.mp4 anger' (CRLF)
    single/with_caption/set_N/{train,test}.txt           TAB-separated, GBK (data.options.caption=true)
    compound/{no_caption,with_caption}/set_N/...         dataset mafw_compound"""


def official_counts_for(kind: str, options: dict) -> dict[int | None, tuple[int, int]]:
    return COUNTS[(kind, bool(options.get("caption", False)))]


def locate_split_files(root: Path, kind: str, caption: bool, fold: int) -> tuple[Path, Path]:
    cap = "with_caption" if caption else "no_caption"

    def ok(d: Path) -> bool:
        return (d / kind / cap).is_dir() or (kind == "single" and (d / cap).is_dir() and not (d / "single").is_dir())

    base = find_dir(root, ok, 3)
    if base is None:
        raise wrong_root(root, "mafw" if kind == "single" else "mafw_compound",
                         f"MAFW split lists 'Train & Test Set/{kind}/{cap}/set_N/'")
    cap_dir = base / kind / cap if (base / kind / cap).is_dir() else base / cap
    pat = re.compile(rf"^set[ _]?{fold}$", re.I)
    set_dir = next((d for d in subdirs(cap_dir) if pat.match(d.name)), None)
    if set_dir is None:
        raise DataError(f"{cap_dir}: no set_{fold}/ folder; unpack the complete 'Train & Test Set' archive")
    files = []
    for split in ("train", "test"):
        p = next((q for q in set_dir.iterdir() if q.name.lower() == f"{split}.txt"), None)
        if p is None:
            raise DataError(f"{set_dir}: {split}.txt missing; unpack the complete 'Train & Test Set' archive")
        files.append(p)
    return files[0], files[1]


def locate_media(root: Path, variant: str) -> Path:
    """`data/frames` (the folder whose children are 5-digit clip folders) or `data/clips` (5-digit .mp4)."""
    v = str(variant)
    if v.lower() == "clips":
        d = find_dir(root, lambda d: has_clip_children(d, FIVE_DIGITS, files=True), 4)
        if d is None:
            raise DataError(f"{root}: no data/clips/NNNNN.mp4 files found; unpack clips.zip or use variant=frames")
        return d
    if v.lower() == "frames":
        d = find_dir(root, lambda d: has_clip_children(d, FIVE_DIGITS), 4)
    else:  # a named frame folder, e.g. frames_crop_align_224
        top = find_dir(root, lambda d: d.name.lower() == v.lower(), 4)
        d = find_dir(top, lambda d: has_clip_children(d, FIVE_DIGITS), 2) if top else None
    if d is None:
        raise DataError(f"{root}: no frame folder with 5-digit clip folders (data/frames/00001/) found; unpack frames.zip")
    return d


def _parse(path: Path, split: str, classes: tuple[str, ...]) -> list[tuple[str, int, int]]:
    rows = []
    for line_no, line in numbered_lines(path):
        fields = [f.strip() for f in line.split("\t")] if "\t" in line else line.split()
        if len(fields) < 2:
            raise DataError(f"{path}:{line_no}: expected '<id>.mp4 <label>', got {line[:60]!r}")
        name = fields[0].rsplit(".", 1)[0] if "." in fields[0] else fields[0]
        if not name.isdigit():
            raise DataError(f"{path}:{line_no}: clip name {fields[0]!r} is not '<5-digit id>.mp4'")
        rows.append((f"{int(name):05d}", map_label(fields[1], classes, path, line=line_no), line_no))
    return rows


def _builder(kind: str, name: str, classes: tuple[str, ...]):
    def build_manifest(root: Path, fold: int | None, options: dict) -> Manifest:
        root = Path(root)
        require_root(root, name)
        fold = int(fold) if isinstance(fold, str) and fold.isdigit() else fold
        if fold not in (1, 2, 3, 4, 5):
            raise DataError(f"MAFW has folds 1..5, not {fold!r}; pass --fold 1..5")
        caption = str(options.get("caption", False)).lower() in ("1", "true", "yes")
        train_txt, test_txt = locate_split_files(root, kind, caption, fold)
        variant = str(options.get("variant", "frames"))
        media_root = locate_media(root, variant)
        video = variant.lower() == "clips"

        def build() -> Manifest:
            index = index_clips(media_root, FIVE_DIGITS, 0, exts=(".mp4",) if video else None)
            rows: list[Row] = []
            for split, path in (("train", train_txt), ("test", test_txt)):
                for cid, label, line in _parse(path, split, classes):
                    rows.append(Row(cid, index.get(cid, f"{cid}.mp4" if video else cid), label, split, str(path), line))
            return assemble(dataset=name, root=root, media_root=media_root, classes=classes, fold=fold, rows=rows,
                            dropped=[], sources=rel_sources(root, [train_txt, test_txt]),
                            media="video" if video else "frames", options=options)

        return cached_manifest(dataset=name, root=root, fold=fold, options={**options, "caption": caption,
                               "variant": variant}, option_keys=("caption", "variant"),
                               split_files=[train_txt, test_txt], media_root=media_root, build=build)

    build_manifest.__doc__ = f"Fold `fold` of MAFW ({kind} set) from the official split lists."
    return build_manifest


def is_present(root: Path) -> bool:
    root = Path(root)
    found = root.is_dir() and find_dir(root, lambda d: (d / "single").is_dir() or (d / "compound").is_dir(), 3) is not None
    return present_or_foreign(root, found)


INFO = register_dataset(DatasetInfo(
    name="mafw",
    title="MAFW (11 single-expression classes)",
    classes=CLASSES,
    folds=(1, 2, 3, 4, 5),
    protocol="mean_over_folds",
    build_manifest=_builder("single", "mafw", CLASSES),
    env_var="DFER_MAFW_ROOT",
    default_root="MAFW",
    access=ACCESS,
    layout=LAYOUT,
    official_counts=COUNTS[("single", False)],
    counts_for=lambda options: official_counts_for("single", options),
    is_present=is_present,
    description=(
        "MAFW, 5-fold CV on single/no_caption (data.options.caption=true: with_caption lists), 11 classes in the "
        "official order anger, disgust, fear, happiness, neutral, sadness, surprise, contempt, anxiety, "
        "helplessness, disappointment. Frames from data/frames (PNG) or variant=clips (mp4 via decord)."
    ),
))

COMPOUND_INFO = register_dataset(DatasetInfo(
    name="mafw_compound",
    title="MAFW compound (43 classes)",
    classes=COMPOUND_CLASSES,
    folds=(1, 2, 3, 4, 5),
    protocol="mean_over_folds",
    build_manifest=_builder("compound", "mafw_compound", COMPOUND_CLASSES),
    env_var="DFER_MAFW_ROOT",
    default_root="MAFW",
    access=ACCESS,
    layout=LAYOUT,
    official_counts=COUNTS[("compound", False)],
    counts_for=lambda options: official_counts_for("compound", options),
    is_present=is_present,
    description=(
        "MAFW 43-class compound set (11 singles + 32 combinations), 5-fold CV on compound/no_caption; no official "
        "integer order, ours is datasets.md §3.5 (singles in official order, then combinations by number of parts "
        "and part indices)."
    ),
))
