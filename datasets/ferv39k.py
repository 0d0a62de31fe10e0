"""FERV39k (CVPR 2022): one official split, train_All 31,088 / test_All 7,847 clips, 7 classes (datasets.md §2).

Class order: the split files hold class NAMES and there is no official integer order, so we use the DFEW-style
order happy, sad, neutral, angry, surprise, disgust, fear (MAE-DFER, DFER-CLIP, Former-DFER) so that 7-class
tables align with DFEW. Labels are mapped by name; a model trained with IFDD/S2D's alphabetical indices must
be remapped by name, never by integer.
There is no validation split: numbers selected on test_All must be labelled best-on-test.
Frames: `2_ClipsforFaceCrop/<Scene>/<Emotion>/<NNNN>/` (data.options.variant=face, default) or the full-scene
`3_ClipsforScenImages` (variant=scene). Clips shorter than the sampling window (4,070 have < 16 frames) are
padded by the sampler, never dropped.
"""

from __future__ import annotations

from pathlib import Path

from bench.api import DatasetInfo, Manifest, register_dataset
from bench.data.lists import map_label, numbered_lines, safe_join
from bench.errors import DataError

from ._common import (
    FERV_SCENES,
    Row,
    assemble,
    cached_manifest,
    find_dir,
    find_file,
    present_or_foreign,
    rel_sources,
    require_root,
    subdirs,
    wrong_root,
)
from .dfew import CLASSES as DFEW_CLASSES

CLASSES = DFEW_CLASSES  # DFEW-style order, so 7-class tables align (datasets.md §2.3)
ALPHABETICAL = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")  # IFDD / S2D / M3DFEL indices
OFFICIAL_COUNTS: dict[int | None, tuple[int, int]] = {None: (31088, 7847)}
VARIANTS = {"face": "2_clipsforfacecrop", "scene": "3_clipsforscenimages"}
_SCENES = {s.lower() for s in FERV_SCENES}

ACCESS = """\
Non-commercial research only, no redistribution; free for university-affiliated researchers. E-mail the
authors listed at github.com/wangyanckxx/FERV39k (Yan Wang, Yixuan Sun, fudan.edu.cn) FROM A UNIVERSITY
ACCOUNT with the subject "(fudanroilab) Application to download the FERV39k Dataset", giving name,
affiliation, department, position, e-mail and the README's agreement statement. Files come from Baidu or
Google Drive; the password is sent after approval.
Project page: https://wangyanckxx.github.io/Proj_CVPR2022_FERV39k.html"""

LAYOUT = """\
FERV39k/                               (extra nesting levels from the archives are found by search)
  2_ClipsforFaceCrop/<Scene>/<Emotion>/<NNNN>/*.jpg    face crops, 22 scenes x 7 emotions
  4_setups/All_scenes/train_All.csv                    'Action/Sad/0010 Sad' (space-separated, no header)
  4_setups/All_scenes/test_All.csv"""


def _holds_scenes(d: Path) -> bool:
    return sum(1 for c in subdirs(d) if c.name.lower() in _SCENES) >= 1


def locate_lists(root: Path) -> tuple[Path, Path]:
    train = find_file(root, ["train_All.csv"], 4)
    if train is None:
        raise wrong_root(root, "ferv39k", "FERV39k split list 4_setups/All_scenes/train_All.csv")
    test = next((p for p in train.parent.iterdir() if p.name.lower() == "test_all.csv"), None)
    if test is None:
        raise DataError(f"{train.parent}: train_All.csv without test_All.csv; unpack 4_setups completely")
    return train, test


def locate_media(root: Path, variant: str) -> Path:
    """The folder that holds the scene folders, below 2_ClipsforFaceCrop (or 3_ClipsforScenImages)."""
    want = VARIANTS.get(str(variant).lower())
    if want is None:
        raise DataError(f"data.options.variant={variant!r} is not a FERV39k variant; use face or scene")
    top = find_dir(root, lambda d: d.name.lower().startswith(want), 3)
    if top is not None:
        d = find_dir(top, _holds_scenes, 3)
        if d is not None:
            return d
    if variant == "face":  # renamed copies: any folder holding the scene folders, except the scene images
        d = find_dir(root, lambda d: _holds_scenes(d) and "scen" not in d.name.lower(), 4)
        if d is not None:
            return d
    raise DataError(
        f"{root}: no {'2_ClipsforFaceCrop' if variant == 'face' else '3_ClipsforScenImages'}/<Scene>/<Emotion>/<NNNN>/ "
        "frame folders found; unpack the face-crop archive under the root"
    )


def _parse(path: Path, split: str, media_root: Path, classes: tuple[str, ...]) -> list[Row]:
    rows = []
    for line_no, line in numbered_lines(path):
        fields = line.replace(",", " ").split()
        if len(fields) < 2:
            raise DataError(f"{path}:{line_no}: expected '<Scene>/<Emotion>/<NNNN> <Emotion>', got {line!r}")
        rel, name = fields[0].replace("\\", "/").strip("/"), fields[-1]
        safe_join(media_root, rel, path, line_no)
        label = map_label(name, classes, path, line=line_no)
        parts = rel.split("/")
        if len(parts) >= 2 and parts[-2].lower() != name.lower():
            raise DataError(f"{path}:{line_no}: label {name!r} disagrees with the folder {parts[-2]!r} of {rel}; fix the list")
        rows.append(Row(rel, rel, label, split, str(path), line_no))
    return rows


def build_manifest(root: Path, fold: int | None, options: dict) -> Manifest:
    """The single official split of FERV39k, labels mapped by name to the DFEW-style order."""
    root = Path(root)
    require_root(root, "ferv39k")
    if fold not in (None, 0, 1, "None", ""):
        raise DataError(f"FERV39k has one split and no folds (got fold {fold!r}); omit --fold")
    train_csv, test_csv = locate_lists(root)
    variant = str(options.get("variant", "face")).lower()
    media_root = locate_media(root, variant)

    def build() -> Manifest:
        rows = _parse(train_csv, "train", media_root, CLASSES) + _parse(test_csv, "test", media_root, CLASSES)
        return assemble(dataset="ferv39k", root=root, media_root=media_root, classes=CLASSES, fold=None, rows=rows,
                        dropped=[], sources=rel_sources(root, [train_csv, test_csv]), media="frames",
                        options=options)

    return cached_manifest(dataset="ferv39k", root=root, fold=None, options={**options, "variant": variant},
                           option_keys=("variant",), split_files=[train_csv, test_csv], media_root=media_root,
                           build=build)


def is_present(root: Path) -> bool:
    root = Path(root)
    return present_or_foreign(root, root.is_dir() and find_file(root, ["train_All.csv"], 4) is not None)


INFO = register_dataset(DatasetInfo(
    name="ferv39k",
    title="FERV39k",
    classes=CLASSES,
    folds=(None,),
    protocol="single_split",
    build_manifest=build_manifest,
    env_var="DFER_FERV39K_ROOT",
    default_root="FERV39k",
    access=ACCESS,
    layout=LAYOUT,
    official_counts=OFFICIAL_COUNTS,
    is_present=is_present,
    description=(
        "FERV39k, one split (train_All / test_All), 7 classes mapped BY NAME to the DFEW-style order happy, sad, "
        "neutral, angry, surprise, disgust, fear (MAE-DFER/DFER-CLIP convention; not IFDD's alphabetical order) "
        "so 7-class tables align with DFEW. No validation split: selection on test is best-on-test. "
        "Short clips are padded, never dropped."
    ),
))
