"""DFEW (ACM MM 2020): 5-fold cross-validation over 11,697 single-labelled clips, 7 classes, read from the
official release layout exactly as unpacked (datasets.md §1).

Labels: the split CSVs hold the official 1..7 (Happy, Sad, Neutral, Angry, Surprise, Disgust, Fear), mapped
to 0..6 in that order. Rows labelled 0 (not single-labelled) are dropped and reported in Manifest.skipped.
Frames: options["variant"] = clip_224x224_16f (default; 16 frames named 1..16.jpg, unpadded),
clip_224x224 (full length, `<id>_<n>.jpg` or `<n>.jpg`) or original (the .mp4 clips, read through decord).
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.api import DatasetInfo, Manifest, register_dataset
from bench.data.lists import numbered_lines, parse_int
from bench.errors import DataError

from ._common import (
    FIVE_DIGITS,
    Row,
    assemble,
    cached_manifest,
    find_dir,
    index_clips,
    present_or_foreign,
    rel_sources,
    require_root,
    subdirs,
    wrong_root,
)

CLASSES = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
OFFICIAL_COUNTS: dict[int | None, tuple[int, int]] = {
    1: (9356, 2341), 2: (9356, 2341), 3: (9357, 2340), 4: (9358, 2339), 5: (9361, 2336),
}
VARIANTS = {"clip_224x224_16f": "clip_224x224_16f", "16f": "clip_224x224_16f", "clip_224x224": "clip_224x224",
            "full": "clip_224x224", "original": "original", "mp4": "original", "video": "original"}
DEFAULT_VARIANT = "clip_224x224_16f"
# preferred split folder spellings first; anything else starting with train/test is accepted after them
_PREFERRED = ("train(single-labeled)", "train(single_labeled)", "train_single-labeled", "train_single_labeled",
              "train", "test(single-labeled)", "test(single_labeled)", "test_single-labeled",
              "test_single_labeled", "test")

ACCESS = """\
Request access at https://dfew-dataset.github.io/ (non-commercial research and education only; the authors do
not own the clips' copyright). The archives are password-protected zips; the password comes with approval.
Contact: Xingxun Jiang (jiangxingxun@seu.edu.cn). Cite Jiang et al., ACM MM 2020."""

LAYOUT = """\
DFEW/                                  (the root; extra nesting levels are found by search)
  EmoLabel_DataSplit/
    train(single-labeled)/set_1.csv .. set_5.csv   (also train(single_labeled)/, train/, train_set_N.csv)
    test(single-labeled)/set_1.csv .. set_5.csv    header video_name,label; labels 1..7
  Clip/
    clip_224x224_16f/00001/1.jpg .. 16.jpg         default variant (data.options.variant)
    clip_224x224/00001/00001_00001.jpg ...         variant clip_224x224 (part folders allowed)
    original/00001.mp4                             variant original (decord)"""


def _split_folders(split_dir: Path, prefix: str) -> list[Path]:
    cands = [d for d in subdirs(split_dir) if d.name.lower().startswith(prefix)]
    rank = {n: i for i, n in enumerate(_PREFERRED)}
    return sorted(cands, key=lambda d: (rank.get(d.name.lower(), len(rank)), d.name))


def _fold_file(folder: Path, fold: int) -> Path | None:
    pat = re.compile(rf"^(?:(?:train|test|val)_)?set_?{fold}\.csv$", re.I)
    for d in (folder, *subdirs(folder)):
        try:
            hits = sorted(p for p in d.iterdir() if p.is_file() and pat.match(p.name))
        except OSError:
            continue
        if hits:
            return hits[0]
    return None


def locate_splits(root: Path, fold: int) -> tuple[Path, Path]:
    """(train csv, test csv) of a fold, accepting the folder spellings seen in the wild."""
    split_dir = find_dir(root, lambda d: d.name.lower() == "emolabel_datasplit", 3)
    if split_dir is None:
        raise wrong_root(root, "dfew", "DFEW split folder EmoLabel_DataSplit/")
    out = []
    for prefix in ("train", "test"):
        found = None
        for folder in _split_folders(split_dir, prefix):
            found = _fold_file(folder, fold)
            if found:
                break
        if found is None:
            raise DataError(
                f"{split_dir}: no {prefix} list for fold {fold} ({prefix}(single-labeled)/set_{fold}.csv); "
                "unzip the official EmoLabel_DataSplit archives there"
            )
        out.append(found)
    return out[0], out[1]


def locate_media(root: Path, variant: str) -> Path:
    """The folder of the chosen frame variant (or of the original .mp4 clips)."""
    name = VARIANTS.get(str(variant).lower())
    if name is None:
        raise DataError(f"data.options.variant={variant!r} is not a DFEW variant; use clip_224x224_16f, clip_224x224 or original")
    clip = find_dir(root, lambda d: d.name.lower() == "clip", 2)
    for base in ([clip] if clip else []) + [root]:
        d = find_dir(base, lambda d: d.name.lower() == name, 2)
        if d is not None:
            return d
    raise DataError(
        f"{root}: no Clip/{name}/ folder; unpack the official {name} archive(s) into Clip/ "
        f"or choose another variant (data.options.variant: clip_224x224_16f, clip_224x224, original)"
    )


def _parse(path: Path, split: str) -> tuple[list[tuple[str, int, int]], list[dict]]:
    """[(clip id, 0-based label, line)], [dropped label-0 rows]."""
    rows: list[tuple[str, int, int]] = []
    dropped: list[dict] = []
    for k, (line_no, line) in enumerate(numbered_lines(path)):
        fields = [f.strip() for f in (line.split(",") if "," in line else line.split())]
        if len(fields) < 2:
            raise DataError(f"{path}:{line_no}: expected 'video_name,label', got {line!r}")
        vid = fields[0].rsplit(".", 1)[0] if fields[0].lower().endswith(".mp4") else fields[0]
        if not vid.isdigit():
            if k == 0:
                continue  # the header video_name,label
            raise DataError(f"{path}:{line_no}: video_name {fields[0]!r} is not a clip number")
        cid = f"{int(vid):05d}"
        label = parse_int(fields[-1], path, line_no)
        if label == 0:
            dropped.append({"kind": "label0", "split": split, "clip_id": cid, "path": f"{path}:{line_no}",
                            "reason": "label 0 (not single-labelled): dropped"})
            continue
        if not 1 <= label <= 7:
            raise DataError(f"{path}:{line_no}: label {label} outside the official 1..7; fix the list")
        rows.append((cid, label - 1, line_no))
    n0 = len(dropped)
    if n0 and n0 > 0.05 * (n0 + len(rows)) and not any(lb == 6 for _, lb, _ in rows):
        raise DataError(
            f"{path}: {n0} rows labelled 0 and none labelled 7: this looks like a 0-based community copy (e.g. S2D); "
            "use the official 1-based split files, or dataset 'list' with data.options.label_order=dfew"
        )
    return rows, dropped


def build_manifest(root: Path, fold: int | None, options: dict) -> Manifest:
    """Fold `fold` of DFEW from the official split CSVs and the chosen frame variant."""
    root = Path(root)
    require_root(root, "dfew")
    fold = int(fold) if isinstance(fold, str) and fold.isdigit() else fold
    if fold not in OFFICIAL_COUNTS:
        raise DataError(f"DFEW has folds 1..5, not {fold!r}; pass --fold 1..5")
    train_csv, test_csv = locate_splits(root, fold)
    variant = VARIANTS.get(str(options.get("variant", DEFAULT_VARIANT)).lower(), options.get("variant"))
    media_root = locate_media(root, variant)
    video = variant == "original"

    def build() -> Manifest:
        index = index_clips(media_root, FIVE_DIGITS, 2, exts=(".mp4",) if video else None)
        if not index:
            what = "NNNNN.mp4 files" if video else "5-digit clip folders"
            raise DataError(f"{media_root}: no {what} found; unpack the {variant} archive(s) here")
        rows: list[Row] = []
        dropped: list[dict] = []
        for split, path in (("train", train_csv), ("test", test_csv)):
            parsed, dr = _parse(path, split)
            dropped += dr
            for cid, label, line in parsed:
                rel = index.get(cid, f"{cid}.mp4" if video else cid)
                rows.append(Row(cid, rel, label, split, str(path), line))
        return assemble(dataset="dfew", root=root, media_root=media_root, classes=CLASSES, fold=fold, rows=rows,
                        dropped=dropped, sources=rel_sources(root, [train_csv, test_csv]),
                        media="video" if video else "frames", options=options)

    return cached_manifest(dataset="dfew", root=root, fold=fold, options={**options, "variant": variant},
                           option_keys=("variant",), split_files=[train_csv, test_csv], media_root=media_root,
                           build=build)


def is_present(root: Path) -> bool:
    root = Path(root)
    return present_or_foreign(root, root.is_dir() and find_dir(root, lambda d: d.name.lower() == "emolabel_datasplit", 3) is not None)


INFO = register_dataset(DatasetInfo(
    name="dfew",
    title="DFEW",
    classes=CLASSES,
    folds=(1, 2, 3, 4, 5),
    protocol="mean_over_folds",
    build_manifest=build_manifest,
    env_var="DFER_DFEW_ROOT",
    default_root="DFEW",
    access=ACCESS,
    layout=LAYOUT,
    official_counts=OFFICIAL_COUNTS,
    is_present=is_present,
    description=(
        "DFEW, 5-fold CV (set_1..set_5), 7 classes in the official label order 1..7 -> 0..6: happy, sad, neutral, "
        "angry, surprise, disgust, fear. Label-0 rows are dropped and reported. Frame variant via "
        "data.options.variant (default clip_224x224_16f; clip_224x224; original = mp4 through decord). "
        "Report the mean UAR/WAR over the 5 folds."
    ),
))

