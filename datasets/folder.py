"""Dataset `folder`: the user's own clips, one folder per class.

Layouts (first match wins):
  1. root/train/<class>/<clip>/ and root/test/<class>/<clip>/       explicit split folders
  2. root/<class>/<clip>/ plus split lists (data.options.train_list / test_list, or root/train.txt + test.txt),
     one `<class>/<clip> <class name>` per line (a path relative to the root and a class NAME)
  3. root/<class>/<clip>/ alone: a deterministic, stratified split, data.options.test_fraction (default 0.2),
     chosen by a hash of each clip's path (stable when clips are added)
A clip is a folder of .jpg/.png frames or a video file (<clip>.mp4, read through decord).
Classes: data.options.classes (a named order such as dfew, or a class list) fixes the order; else the class
folder names sorted alphabetically (stated in the manifest).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bench.api import DatasetInfo, Manifest, register_dataset
from bench.data.frames import VIDEO_EXTS
from bench.data.lists import map_label, numbered_lines, safe_join
from bench.errors import DataError

from ._common import Row, assemble, cached_manifest, rel_sources, subdirs
from .community import resolve_order


def _clips_of(class_dir: Path) -> list[Path]:
    out = [d for d in subdirs(class_dir)]
    out += sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTS)
    return out


def _class_dirs(base: Path) -> list[Path]:
    return [d for d in subdirs(base) if _clips_of(d)]


def _classes(options: dict, found: list[str], root: Path) -> tuple[str, ...]:
    if options.get("classes"):
        classes = resolve_order(options["classes"], "classes")
        extra = sorted({f.lower() for f in found} - set(classes))
        if extra:
            raise DataError(f"{root}: class folders {extra} are not in data.options.classes; rename them or extend the list")
        return classes
    if not found:
        raise DataError(f"{root}: no class folders with clips (root/<class>/<clip>/ or root/<class>/<clip>.mp4)")
    return tuple(sorted({f.lower() for f in found}))


def _from_lists(root: Path, classes: tuple[str, ...], files: dict[str, Path]) -> list[Row]:
    rows = []
    for split, path in files.items():
        for line_no, line in numbered_lines(path):
            fields = line.split("\t") if "\t" in line else line.rsplit(None, 1)
            if len(fields) != 2:
                raise DataError(f"{path}:{line_no}: expected '<class>/<clip> <class name>', got {line[:80]!r}")
            rel = fields[0].strip().replace("\\", "/")
            safe_join(root, rel, path, line_no)
            rows.append(Row(rel, rel, map_label(fields[1], classes, path, line=line_no), split, str(path), line_no))
    return rows


def build_manifest(root: Path, fold: int | None, options: dict) -> Manifest:
    """Clips from class folders, split by split folders, split lists or a stable hash."""
    root = Path(options.get("root") or root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: folder dataset root does not exist; pass --root PATH (root/<class>/<clip>/)")
    split_dirs = {s: root / s for s in ("train", "test") if (root / s).is_dir()}
    lists: dict[str, Path] = {}
    for s in ("train", "test"):
        v = options.get(f"{s}_list")
        if v:
            p = Path(str(v)).expanduser()
            lists[s] = p if p.is_absolute() or p.is_file() else root / p
        elif (root / f"{s}.txt").is_file():
            lists[s] = root / f"{s}.txt"
    for s, p in lists.items():
        if not p.is_file():
            raise DataError(f"{p}: {s} list not found (data.options.{s}_list)")

    def build() -> Manifest:
        if len(split_dirs) == 2:
            found = sorted({d.name for s in split_dirs.values() for d in _class_dirs(s)})
            classes = _classes(options, found, root)
            rows = []
            for split, base in split_dirs.items():
                for cdir in _class_dirs(base):
                    label = map_label(cdir.name, classes, base)
                    for clip in _clips_of(cdir):
                        rel = clip.relative_to(root).as_posix()
                        rows.append(Row(rel, rel, label, split, str(base), 0))
        elif lists:
            if set(lists) != {"train", "test"}:
                raise DataError(f"{root}: give both train and test lists (data.options.train_list, test_list)")
            found = [d.name for d in _class_dirs(root)]
            classes = _classes(options, found, root)
            rows = _from_lists(root, classes, lists)
        else:
            frac = float(options.get("test_fraction", 0.2))
            if not 0 < frac < 1:
                raise DataError(f"data.options.test_fraction={frac}: use a value between 0 and 1")
            found = [d.name for d in _class_dirs(root)]
            classes = _classes(options, found, root)
            rows = []
            for cdir in _class_dirs(root):
                label = map_label(cdir.name, classes, root)
                clips = sorted(_clips_of(cdir), key=lambda c: hashlib.sha1(c.relative_to(root).as_posix().encode()).hexdigest())
                n_test = max(1, round(frac * len(clips))) if len(clips) > 1 else 0
                for k, clip in enumerate(clips):
                    rel = clip.relative_to(root).as_posix()
                    rows.append(Row(rel, rel, label, "test" if k < n_test else "train", str(root), 0))
        video = bool(rows) and all(Path(r.rel_path).suffix.lower() in VIDEO_EXTS for r in rows)
        return assemble(dataset="folder", root=root, media_root=root, classes=classes, fold=None, rows=rows,
                        dropped=[], sources=rel_sources(root, list(lists.values())),
                        media="video" if video else "frames", options=options)

    return cached_manifest(dataset="folder", root=root, fold=None,
                           options={**options, "lists": sorted(str(p.resolve()) for p in lists.values())},
                           option_keys=("classes", "test_fraction", "lists"), split_files=list(lists.values()),
                           media_root=root, build=build)


INFO = register_dataset(DatasetInfo(
    name="folder",
    title="Your own clips (one folder per class)",
    classes=(),  # decided by the folder names or data.options.classes: use Manifest.classes
    folds=(None,),
    protocol="single_split",
    build_manifest=build_manifest,
    env_var="DFER_FOLDER_ROOT",
    default_root="folder",
    access="Your own data: no download.",
    layout=("root/train/<class>/<clip>/*.jpg and root/test/<class>/<clip>/  (or <clip>.mp4)\n"
            "or root/<class>/<clip>/ with train.txt/test.txt ('<class>/<clip> <class name>')\n"
            "or root/<class>/<clip>/ alone (stable hashed split, data.options.test_fraction=0.2)"),
    official_counts={},
    description=(
        "Your own clips: class folders (frames or mp4), split by train/test folders, split lists with class "
        "names, or a stable hashed split. Class order: data.options.classes, else alphabetical folder names."
    ),
))
