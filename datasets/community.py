"""Dataset `list`: community annotation files read as shipped (datasets.md §4), paths relative to a root.

Formats (detected per line, whitespace-separated, no header):
  A. `path num_frames label`  DFER-CLIP, Former-DFER, IAL, MMA-DFER (num_frames is ignored: recounted on disk)
  B. `path label`             MAE-DFER (`.csv` extension, space-separated)

data.options:
  train_list, test_list  the two list files (absolute, or relative to the working directory); `{fold}` in a
                         name is replaced by --fold, e.g. annotation/DFEW_set_{fold}_train.txt
  label_order            REQUIRED, never guessed: the order the list's 0-based integers index into. A named
                         order (see LABEL_ORDERS: dfew, ferv39k_dfew, ferv39k_alpha, mafw_official,
                         dferclip_mafw, mafw_alpha) or an explicit class-name list ("happy,sad,...").
  classes                the order of the manifest (default: the canonical order of that label set: DFEW-style
                         for 7 classes, the official order for MAFW), so results line up with `dfew`/`mafw`.
  prefix                 an absolute prefix to strip from paths (lists that ship the authors' absolute paths)
  root                   the data root (else --root / $DFER_LIST_ROOT / config roots.list)
"""

from __future__ import annotations

from pathlib import Path

from bench.api import DatasetInfo, Manifest, register_dataset
from bench.data.frames import VIDEO_EXTS
from bench.data.lists import numbered_lines, parse_int, safe_join
from bench.errors import DataError

from ._common import Row, assemble, cached_manifest, rel_sources
from .dfew import CLASSES as DFEW_CLASSES

DFEW7 = DFEW_CLASSES
MAFW11 = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety",
          "helplessness", "disappointment")
LABEL_ORDERS: dict[str, tuple[str, ...]] = {
    # DFEW official order minus 1 (DFER-CLIP, Former-DFER, IAL, MAE-DFER, MMA-DFER)
    "dfew": DFEW7,
    # FERV39k in DFEW-style order (MAE-DFER, DFER-CLIP, Former-DFER)
    "ferv39k_dfew": DFEW7,
    "ferv39k": DFEW7,
    # FERV39k alphabetical (IFDD, S2D label_index.txt, M3DFEL)
    "ferv39k_alpha": ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
    # MAFW official order (MAE-DFER, HiCMAE, IFDD)
    "mafw_official": MAFW11,
    "mafw": MAFW11,
    # MAFW in DFER-CLIP's order
    "dferclip_mafw": ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear", "contempt", "anxiety",
                      "helplessness", "disappointment"),
    # MAFW alphabetical (S2D)
    "mafw_alpha": ("anger", "anxiety", "contempt", "disappointment", "disgust", "fear", "happiness", "helplessness",
                   "neutral", "sadness", "surprise"),
}
_HOW = ("declare it with --set data.options.label_order=NAME (one of "
        f"{', '.join(sorted(LABEL_ORDERS))}) or an explicit list "
        "data.options.label_order=happy,sad,neutral,...; see datasets.md §4 for which repo uses which")


def resolve_order(value, what: str = "label_order") -> tuple[str, ...]:
    """A named order or an explicit list of class names (list, or comma-separated string)."""
    if value is None or value == "" or value == []:
        raise DataError(f"dataset 'list': the list's label order is not declared; {_HOW}")
    if isinstance(value, str) and value.lower() in LABEL_ORDERS:
        return LABEL_ORDERS[value.lower()]
    names = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()]
    if len(names) < 2:
        raise DataError(f"data.options.{what}={value!r} is neither a known order nor a class list; {_HOW}")
    if len(set(names)) != len(names):
        raise DataError(f"data.options.{what}={value!r} repeats a class name")
    return tuple(names)


def canonical_classes(order: tuple[str, ...]) -> tuple[str, ...]:
    """The registered order for the same set of names (DFEW-style 7, MAFW official 11), else the given one."""
    for canon in (DFEW7, MAFW11):
        if set(order) == set(canon):
            return canon
    return order


def _list_path(value, fold: int | None, key: str) -> Path:
    if not value:
        raise DataError(f"dataset 'list' needs data.options.{key} (a list file, e.g. annotation/DFEW_set_1_{key[:-5]}.txt)")
    s = str(value)
    if "{fold}" in s:
        if fold is None:
            raise DataError(f"data.options.{key}={s!r} has {{fold}} but no --fold was given")
        s = s.replace("{fold}", str(fold))
    p = Path(s).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: list file not found (data.options.{key}); give a path relative to the working directory or absolute")
    return p


def _parse(path: Path, split: str, root: Path, order: tuple[str, ...], classes: tuple[str, ...],
           prefix: str) -> list[Row]:
    target = {c: i for i, c in enumerate(classes)}
    rows = []
    for line_no, line in numbered_lines(path):
        fields = line.replace(",", " ").split()
        if len(fields) not in (2, 3):
            raise DataError(f"{path}:{line_no}: expected 'path num_frames label' or 'path label', got {line[:80]!r}")
        rel = fields[0].replace("\\", "/")
        if prefix and rel.startswith(prefix):
            rel = rel[len(prefix):]
        safe_join(root, rel, path, line_no)
        while rel.startswith("./"):
            rel = rel[2:]
        label = parse_int(fields[-1], path, line_no)
        if not 0 <= label < len(order):
            raise DataError(
                f"{path}:{line_no}: label {label} outside 0..{len(order) - 1} of the declared label order "
                f"({len(order)} classes); check data.options.label_order"
            )
        rows.append(Row(rel, rel.rstrip("/"), target[order[label]], split, str(path), line_no))
    return rows


def build_manifest(root: Path, fold: int | None, options: dict) -> Manifest:
    """Train/test lists in a community format, labels mapped through the declared order by name."""
    order = resolve_order(options.get("label_order"))
    classes = resolve_order(options["classes"], "classes") if options.get("classes") else canonical_classes(order)
    if set(order) - set(classes):
        raise DataError(f"data.options.classes lacks {sorted(set(order) - set(classes))} of the label order")
    root = Path(options.get("root") or root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: list root does not exist; pass --root PATH (the folder the list paths are relative to)")
    train = _list_path(options.get("train_list"), fold, "train_list")
    test = _list_path(options.get("test_list"), fold, "test_list")
    prefix = str(options.get("prefix") or "")

    def build() -> Manifest:
        rows = _parse(train, "train", root, order, classes, prefix) + _parse(test, "test", root, order, classes, prefix)
        video = bool(rows) and all(Path(r.rel_path).suffix.lower() in VIDEO_EXTS for r in rows)
        return assemble(dataset="list", root=root, media_root=root, classes=classes, fold=fold, rows=rows,
                        dropped=[], sources=rel_sources(root, [train, test]), media="video" if video else "frames",
                        options=options)

    opts = {**options, "label_order": list(order), "classes": list(classes), "prefix": prefix,
            "lists": [str(train.resolve()), str(test.resolve())]}
    return cached_manifest(dataset="list", root=root, fold=fold, options=opts,
                           option_keys=("label_order", "classes", "prefix", "lists"), split_files=[train, test],
                           media_root=root, build=build)


INFO = register_dataset(DatasetInfo(
    name="list",
    title="Community annotation lists",
    classes=DFEW7,  # nominal; the real order comes from data.options (use Manifest.classes)
    folds=(None,),
    protocol="single_split",
    build_manifest=build_manifest,
    env_var="DFER_LIST_ROOT",
    default_root="lists",
    access="Your own copy of the data plus a community list (DFER-CLIP, Former-DFER, IAL, MAE-DFER ...).",
    layout=("<root>/<path in the list>     frame folder or video file per list line\n"
            "lists: 'path num_frames label' or 'path label', 0-based labels, declared order (data.options.label_order)"),
    official_counts={},
    description=(
        "Community lists ('path num_frames label' or 'path label') read as shipped, paths relative to the root, "
        "frames recounted on disk. data.options: train_list, test_list ({fold} placeholder), label_order "
        "(required: " + ", ".join(sorted(LABEL_ORDERS)) + " or a class list), classes, prefix. "
        "Labels are mapped by name to DFEW-style (7) or MAFW official (11) order; use Manifest.classes."
    ),
))
