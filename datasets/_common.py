"""Shared machinery of the dataset modules: locating folders by search (archives add nesting levels), telling
which dataset a root looks like, counting and verifying clips on disk, the bad-clip policy, and the manifest
cache that makes later runs start instantly.

Manifest cache: `<root>/.dfer-bench/manifests/<dataset>-f<fold>-<key>.json` when the root is writable, else
`$DFER_BENCH_CACHE/manifests/<sha of root>/...` (default `~/.cache/dfer-bench`). The key hashes the options
that change the manifest; the file stores the sha256 of every split file and the mtime of the media folder,
and is ignored (rebuilt) as soon as one of them differs, or with `refresh=True` (`bench data check` always
refreshes: it re-verifies every frame, since a frame changed in place leaves the folder mtimes as they were).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.api import ClipRecord, Manifest
from bench.data import frames as fr
from bench.data.lists import file_sha256
from bench.errors import DataError

CACHE_VERSION = 3
VERIFY_LEVELS = {"count": 0, "tail": 1, "deep": 2}
FIVE_DIGITS = re.compile(r"^\d{5}$")
FERV_SCENES = (
    "Action", "Argue", "Business", "Conflict", "Contest", "Crime", "Crisis", "DailyLife", "ElegantArt",
    "Experiment", "History", "Interview", "Liveshow", "Medicine", "OfficialEvent", "ScholarReport", "School",
    "Social", "Speech", "Talkshow", "Terror", "War",
)


# ----------------------------------------------------------------------------------------------------------
# searching the layout


def subdirs(d: Path) -> list[Path]:
    try:
        with os.scandir(d) as it:
            return sorted((Path(e.path) for e in it if e.is_dir() and not e.name.startswith(".")), key=lambda p: p.name)
    except OSError:
        return []


def walk_dirs(root: Path, max_depth: int) -> Iterable[tuple[Path, int]]:
    """Breadth-first folders under root (root included) up to max_depth, never descending into clip folders
    (all-digit names), so searching a 16k-clip tree stays cheap."""
    q: deque[tuple[Path, int]] = deque([(root, 0)])
    while q:
        d, depth = q.popleft()
        yield d, depth
        if depth >= max_depth:
            continue
        for c in subdirs(d):
            if not c.name.isdigit():
                q.append((c, depth + 1))


def find_dir(root: Path, pred: Callable[[Path], bool], max_depth: int = 4) -> Path | None:
    """Shallowest folder under root satisfying pred."""
    for d, _ in walk_dirs(root, max_depth):
        if pred(d):
            return d
    return None


def find_file(root: Path, names: Iterable[str], max_depth: int = 4) -> Path | None:
    """Shallowest file whose name (case-insensitive) is one of names."""
    want = {n.lower() for n in names}
    for d, _ in walk_dirs(root, max_depth):
        try:
            with os.scandir(d) as it:
                hits = sorted(e.name for e in it if e.is_file() and e.name.lower() in want)
        except OSError:
            continue
        if hits:
            return d / hits[0]
    return None


def has_clip_children(d: Path, pattern: re.Pattern = FIVE_DIGITS, need: int = 1, files: bool = False) -> bool:
    """Whether d holds at least `need` clip folders (or files whose stem matches, with files=True)."""
    n = 0
    try:
        with os.scandir(d) as it:
            for e in it:
                name = e.name.rsplit(".", 1)[0] if files else e.name
                if pattern.match(name) and (e.is_file() if files else e.is_dir()):
                    n += 1
                    if n >= need:
                        return True
    except OSError:
        return False
    return False


def index_clips(base: Path, pattern: re.Pattern = FIVE_DIGITS, max_depth: int = 2,
                exts: tuple[str, ...] | None = None) -> dict[str, str]:
    """clip id -> path relative to base, for clip folders (or files with `exts`) up to max_depth below base.

    Why: official archives unpack either flat (`clip_224x224_16f/00001`) or one folder per part archive
    (`clip_224x224/clip_224x224_part_3/05001`); indexing by id covers both without guessing.
    """
    out: dict[str, str] = {}
    for d, _ in walk_dirs(base, max_depth):
        try:
            with os.scandir(d) as it:
                for e in it:
                    if exts is None:
                        if e.is_dir() and pattern.match(e.name):
                            out.setdefault(e.name, os.path.relpath(e.path, base).replace(os.sep, "/"))
                    else:
                        stem, _, ext = e.name.rpartition(".")
                        if stem and f".{ext.lower()}" in exts and pattern.match(stem) and e.is_file():
                            out.setdefault(stem, os.path.relpath(e.path, base).replace(os.sep, "/"))
        except OSError:
            continue
    return out


def sniff(root: Path) -> str | None:
    """What a root looks like ("DFEW (EmoLabel_DataSplit/)", ...), to explain a root given for the wrong dataset."""
    seen: set[str] = set()
    for d, _ in walk_dirs(root, 3):
        seen.add(d.name.lower())
        try:
            with os.scandir(d) as it:
                seen.update(e.name.lower() for e in it if e.is_file() and not e.name[0].isdigit())
        except OSError:
            pass
    if "emolabel_datasplit" in seen or "clip_224x224_16f" in seen:
        return "DFEW (EmoLabel_DataSplit/, Clip/clip_224x224_16f/)"
    if {"4_setups", "2_clipsforfacecrop", "train_all.csv", "all_scenes"} & seen:
        return "FERV39k (4_setups/All_scenes/, 2_ClipsforFaceCrop/)"
    if {"train & test set", "labels(auto)", "train_test_set"} & seen:
        return "MAFW (Train & Test Set/, data/frames/)"
    return None


def present_or_foreign(root: Path, found: bool) -> bool:
    """is_present: the layout was found, OR the root holds another dataset, so that building the manifest can
    say what the root looks like instead of the generic 'not found / how to obtain it' message."""
    return found or (root.is_dir() and sniff(root) is not None)


def wrong_root(root: Path, dataset: str, wanted: str) -> DataError:
    """'no X found' plus what the root looks like instead."""
    if not root.is_dir():
        return DataError(f"{root}: dataset root does not exist; pass --root PATH (bench data check --dataset {dataset})")
    looks = sniff(root)
    hint = f"; this looks like {looks}: pass the right --dataset or the {dataset} root" if looks and not looks.lower().startswith(dataset.split("_")[0]) else \
        f"; expected layout: bench data check --dataset {dataset} prints it"
    return DataError(f"{root}: no {wanted} found{hint}")


# ----------------------------------------------------------------------------------------------------------
# rows -> manifest


@dataclass
class Row:
    """One parsed list line before it is checked on disk."""

    clip_id: str
    rel_path: str  # relative to the media root
    label: int
    split: str
    source: str  # split file
    line: int


@dataclass
class Problem:
    """A bad clip: kind is missing | empty | corrupt."""

    split: str
    clip_id: str
    path: str
    kind: str
    reason: str


_COUNT_MEMO: dict[tuple[str, int, int], tuple[int, tuple[str, str] | None]] = {}


def inspect_clip(path: Path, level: str = "count") -> tuple[int, tuple[str, str] | None]:
    """(frame count, (kind, reason) of a problem or None). Counting is memoised within a process (folds share
    clips), keyed by the clip folder's mtime; verification reads the frames every time, since a frame truncated
    in place changes no folder mtime."""
    lv = VERIFY_LEVELS[level]
    if lv > 0:
        return _inspect(path, lv)
    try:
        stamp = os.stat(path).st_mtime_ns  # a re-extracted clip folder is inspected again
    except OSError:
        return _inspect(path, lv)
    key = (os.path.abspath(path), lv, stamp)
    if key in _COUNT_MEMO:
        return _COUNT_MEMO[key]
    res = _inspect(path, lv)
    _COUNT_MEMO[key] = res
    return res


def _inspect(path: Path, lv: int) -> tuple[int, tuple[str, str] | None]:
    if path.suffix.lower() in fr.VIDEO_EXTS:
        if not path.is_file():
            return 0, ("missing", "video file is missing")
        try:
            n = fr.count_video_frames(path)
            if lv >= 2:
                fr.read_video(path, sorted({0, n // 2, n - 1}))
        except DataError as e:
            return 0, ("corrupt", str(e).split(": ", 1)[-1])
        return n, None
    if fr.is_image_file(path):  # a static image as a one-frame clip
        if lv >= 1 and (why := fr.verify_frame_file(path, path.stat().st_size)):
            return 1, ("corrupt", f"{path.name}: {why}")
        if lv >= 2:
            try:
                fr.decode_image(path)
            except DataError as err:
                return 1, ("corrupt", f"{path.name}: {str(err).split(': ', 1)[-1]}")
        return 1, None
    if not path.is_dir():
        return 0, ("missing", "clip folder is missing")
    try:
        entries = fr.frame_entries(path)
    except DataError as e:
        return 0, ("empty", str(e).split(": ", 1)[-1])
    for e in entries:
        p = Path(e.path)
        try:
            size = e.stat().st_size
        except OSError:
            return len(entries), ("corrupt", f"{e.name}: cannot stat frame")
        if size == 0:
            return len(entries), ("corrupt", f"{e.name}: frame is an empty file")
        if lv >= 1:
            why = fr.verify_frame_file(p, size)
            if why:
                return len(entries), ("corrupt", f"{e.name}: {why}")
        if lv >= 2:
            try:
                fr.decode_image(p)
            except DataError as err:
                return len(entries), ("corrupt", f"{e.name}: {str(err).split(': ', 1)[-1]}")
    return len(entries), None


def check_disjoint(rows: list[Row], dataset: str, fold: int | None) -> None:
    """A clip in both train and test of a fold is a leak: always an error, never skipped."""
    by_split: dict[str, dict[str, Row]] = {}
    for r in rows:
        by_split.setdefault(r.split, {}).setdefault(r.clip_id, r)
    train, test = by_split.get("train", {}), by_split.get("test", {})
    for cid, r in test.items():
        if cid in train:
            t = train[cid]
            f = f" fold {fold}" if fold is not None else ""
            raise DataError(
                f"{r.source}:{r.line}: clip {cid} is also in the train list {t.source}:{t.line} of {dataset}{f}; "
                "the split files are mixed up, restore the released ones"
            )


def cache_dir_for(root: Path, user_only: bool = False) -> Path:
    """`<root>/.dfer-bench/manifests` when writable, else (or with `user_only`: a caller that must not write into
    the dataset, `bench data verify`) the per-user cache keyed by the root's path."""
    d = root / ".dfer-bench" / "manifests"
    try:
        if not user_only:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
    except OSError:
        pass
    key = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:16]
    d = fr.cache_home() / "manifests" / key
    d.mkdir(parents=True, exist_ok=True)
    return d


def _cache_candidates(root: Path, name: str) -> list[Path]:
    key = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:16]
    return [root / ".dfer-bench" / "manifests" / name, fr.cache_home() / "manifests" / key / name]


def rel_sources(root: Path, files: list[Path], sums: dict[str, str] | None = None) -> dict[str, str]:
    """split file (relative to the root when inside it) -> sha256, for the manifest's provenance."""
    out = {}
    for p in files:
        try:
            key = os.path.relpath(p, root).replace(os.sep, "/")
            if key.startswith(".."):
                key = str(p)
        except ValueError:
            key = str(p)
        out[key] = (sums or {}).get(str(p)) or file_sha256(p)
    return out


def options_key(options: dict, keys: Iterable[str]) -> str:
    blob = json.dumps({k: options.get(k) for k in sorted(keys)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _media_stamp(media_root: Path) -> int:
    try:
        return media_root.stat().st_mtime_ns
    except OSError:
        return 0


def assemble(*, dataset: str, root: Path, media_root: Path, classes: tuple[str, ...], fold: int | None,
             rows: list[Row], dropped: list[dict], sources: dict[str, str], media: str, options: dict) -> Manifest:
    """Check every listed clip on disk (count frames, optional integrity check), apply the bad-clip policy.

    options: on_bad_clip error|skip (default error), verify count|tail|deep (default count),
    _collect (check: never raise for bad clips, report them in skipped).
    """
    check_disjoint(rows, dataset, fold)
    level = options.get("verify", "count")
    if level not in VERIFY_LEVELS:
        raise DataError(f"data.options.verify={level!r}: use count, tail or deep")
    records: list[ClipRecord] = []
    problems: list[Problem] = []
    for r in rows:
        n, prob = inspect_clip(media_root / r.rel_path, level)
        if prob is not None:
            problems.append(Problem(r.split, r.clip_id, str(media_root / r.rel_path), prob[0], prob[1]))
            continue
        records.append(ClipRecord(r.clip_id, r.rel_path, n, r.label, r.split, fold))
    m = Manifest(dataset=dataset, root=media_root, classes=classes, records=records, fold=fold,
                 media=media, sources=sources, skipped=list(dropped))
    m.skipped.extend({"kind": p.kind, "split": p.split, "clip_id": p.clip_id, "path": p.path, "reason": p.reason}
                     for p in problems)
    return m


def apply_policy(m: Manifest, options: dict) -> Manifest:
    """error (default): the first bad clip becomes a one-line DataError; skip: bad clips stay in skipped."""
    if options.get("_collect"):
        return m
    policy = options.get("on_bad_clip", "error")
    if policy not in ("error", "skip"):
        raise DataError(f"data.options.on_bad_clip={policy!r}: use error or skip")
    bad = [s for s in m.skipped if s["kind"] in ("missing", "empty", "corrupt")]
    if bad and policy == "error":
        b = bad[0]
        f = f" --fold {m.fold}" if m.fold is not None else ""
        more = f" ({len(bad)} bad clips; bench data check --dataset {m.dataset}{f} lists them)" if len(bad) > 1 else ""
        raise DataError(f"{b['path']}: {b['reason']} ({b['split']} clip {b['clip_id']}){more}; "
                        f"{fr._SKIP_HINT}")
    return m


def cached_manifest(*, dataset: str, root: Path, fold: int | None, options: dict, option_keys: Iterable[str],
                    split_files: list[Path], media_root: Path, build: Callable[[], Manifest]) -> Manifest:
    """Load the manifest from the cache when split files, media folder and options are unchanged, else build
    it (through `build`) and store it. The bad-clip policy is applied after loading, so the cache holds every
    problem and serves both policies."""
    level = options.get("verify", "count")
    name = f"{dataset}-f{fold if fold is not None else 0}-{options_key(options, option_keys)}.json"
    try:
        # created first: it may change the media folder's mtime
        cdir: Path | None = cache_dir_for(root, user_only=bool(options.get("_readonly_root")))
    except OSError:
        cdir = None
    sums = {str(p): file_sha256(p) for p in split_files}
    stamp = _media_stamp(media_root)
    if not options.get("refresh"):
        for c in _cache_candidates(root, name):
            try:
                blob = json.loads(c.read_text())
            except (OSError, ValueError):
                continue
            if (blob.get("version") == CACHE_VERSION and blob.get("sources") == sums
                    and blob.get("media_root") == str(media_root) and blob.get("media_stamp") == stamp
                    and VERIFY_LEVELS.get(blob.get("verify"), -1) >= VERIFY_LEVELS[level]):
                m = Manifest(dataset=dataset, root=media_root, classes=tuple(blob["classes"]),
                             records=[ClipRecord(**r) for r in blob["records"]], fold=fold, media=blob["media"],
                             sources=rel_sources(root, split_files, sums), skipped=blob["skipped"])
                return apply_policy(m, options)
    m = build()
    blob = {"version": CACHE_VERSION, "dataset": dataset, "fold": fold, "sources": sums,
            "media_root": str(media_root), "media_stamp": stamp, "verify": level, "classes": list(m.classes),
            "media": m.media, "records": [asdict(r) for r in m.records], "skipped": m.skipped}
    try:
        if cdir is not None:
            tmp = cdir / f".{name}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(blob))
            os.replace(tmp, cdir / name)
    except OSError:
        pass  # a cache we cannot write only costs time
    return apply_policy(m, options)


def require_root(root: Path, dataset: str) -> None:
    """A missing root gets the full 'what it is / how to get it / layout' message."""
    if not root.exists():
        from bench.data.roots import missing_message
        from bench.registry import DATASETS

        try:
            info = DATASETS.get(dataset)
            raise DataError(missing_message(info, root, "the given root"))
        except KeyError:
            raise DataError(f"{root}: dataset root does not exist; pass --root PATH") from None
