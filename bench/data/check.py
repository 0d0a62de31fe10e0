"""`bench data check`: walk a dataset as laid out on disk and say, per fold and split, whether it is usable.

For every fold it builds the manifest with the bad-clip policy set to collect (never raise), verifying every
frame cheaply (end-of-image markers, zero-byte files; `deep` decodes every frame) on disk every time: a frame
truncated or replaced since the last check is found, whatever the manifest cache says, then reports clips found
against the official counts, missing / empty / corrupt clips, short clips, dropped label-0 rows, and the
fatal list problems (a label outside the class list, a path escaping the root, a clip in both train and
test, a root that belongs to another dataset). Building the manifests also writes the manifest cache, so
the runs that follow start instantly. Usable = every fold built and no bad clip (unless on_bad_clip=skip).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.api import DatasetInfo
from bench.data.roots import missing_message, resolve_root
from bench.errors import BenchError, DataError
from bench.registry import DATASETS

BAD_KINDS = ("missing", "empty", "corrupt")


@dataclass
class SplitReport:
    found: int = 0  # usable clips
    expected: int | None = None  # official count
    listed: int = 0  # rows in the split file after dropping label 0
    missing: int = 0
    empty: int = 0
    corrupt: int = 0
    short: int = 0  # usable clips with fewer frames than the sampling window (padded, never dropped)
    dropped: int = 0  # label-0 rows (DFEW)
    min_frames: int | None = None
    max_frames: int | None = None


@dataclass
class FoldReport:
    fold: int | None
    error: str | None = None
    splits: dict[str, SplitReport] = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)  # first bad clips, for the user to fix
    manifest_checksum: str | None = None


def expected_counts(info: DatasetInfo, options: dict) -> dict:
    """Official counts; a dataset may refine them by option (MAFW with_caption lists, synthetic knobs)."""
    if info.counts_for is not None:
        try:
            return info.counts_for(options)
        except (KeyError, TypeError):
            pass
    return dict(info.official_counts)


def check_dataset(name: str, root: str | None = None, folds: list[int | None] | None = None,
                  options: dict | None = None, *, short: int = 16, deep: bool = False,
                  max_problems: int = 20) -> dict:
    """The check report as a JSON-able dict (see module doc). Raises DataError only for a missing root."""
    info = DATASETS.get(name)
    options = dict(options or {})
    root_path, source = resolve_root(info, root or options.pop("root", None))
    if not root_path.exists() and not info.generated:  # a generated dataset is made by its first manifest build
        raise DataError(missing_message(info, root_path, source))
    want = list(folds) if folds else list(info.folds)
    for f in want:
        if f not in info.folds and info.folds != (None,):
            raise BenchError(f"{name} has folds {', '.join(map(str, info.folds))}, not {f}")
    counts = expected_counts(info, options)
    policy = options.get("on_bad_clip", "error")
    reports: list[FoldReport] = []
    test_sets: dict[int | None, set[str]] = {}
    classes: tuple[str, ...] = info.classes
    for f in want:
        fold = None if info.folds == (None,) else f
        rep = FoldReport(fold)
        opts = {**options, "_collect": True, "verify": "deep" if deep else "tail", "refresh": True}
        try:
            m = info.build_manifest(root_path, fold, opts)
        except BenchError as e:
            rep.error = str(e)
            reports.append(rep)
            continue
        classes = m.classes
        rep.manifest_checksum = m.checksum()
        exp = counts.get(fold)
        for i, split in enumerate(("train", "test")):
            sr = SplitReport(expected=exp[i] if exp else None)
            recs = m.split(split)
            sr.found = len(recs)
            sr.short = sum(r.num_frames < short for r in recs)
            if recs:
                sr.min_frames = min(r.num_frames for r in recs)
                sr.max_frames = max(r.num_frames for r in recs)
            for s in m.skipped:
                if s.get("split") != split:
                    continue
                if s["kind"] in BAD_KINDS:
                    setattr(sr, s["kind"], getattr(sr, s["kind"]) + 1)
                elif s["kind"] == "label0":
                    sr.dropped += 1
            sr.listed = sr.found + sr.missing + sr.empty + sr.corrupt
            rep.splits[split] = sr
        rep.problems = [s for s in m.skipped if s["kind"] in BAD_KINDS][:max_problems]
        test_sets[fold] = {r.clip_id for r in m.split("test")}
        reports.append(rep)

    warnings: list[str] = []
    seen: dict[str, int | None] = {}
    for fold, ids in test_sets.items():
        for cid in ids:
            if cid in seen and fold is not None:
                warnings.append(f"clip {cid} is in the test lists of folds {seen[cid]} and {fold}: "
                                "official test sets are disjoint")
                break
            seen[cid] = fold
    diffs = [(f"fold {rep.fold} {split}" if rep.fold is not None else split, sr.listed, sr.expected)
             for rep in reports for split, sr in rep.splits.items()
             if sr.expected is not None and sr.listed != sr.expected]
    if diffs:
        shown = "; ".join(f"{w}: {a:,} listed vs {b:,} official" for w, a, b in diffs[:2])
        more = f" (and {len(diffs) - 2} more splits)" if len(diffs) > 2 else ""
        warnings.append(f"split lists differ from the official release: {shown}{more}; "
                        "a partial or re-packaged copy? results will not be comparable")
    bad = sum(sr.missing + sr.empty + sr.corrupt for r in reports for sr in r.splits.values())
    usable = all(r.error is None for r in reports) and (bad == 0 or policy == "skip")
    return {
        "dataset": info.name,
        "title": info.title,
        "root": str(root_path),
        "root_source": source,
        "classes": list(classes),
        "verify": "deep" if deep else "tail",
        "short_threshold": short,
        "on_bad_clip": policy,
        "usable": usable,
        "bad_clips": bad,
        "folds": [
            {"fold": r.fold, "error": r.error, "manifest_checksum": r.manifest_checksum,
             "splits": {k: vars(v) for k, v in r.splits.items()}, "problems": r.problems}
            for r in reports
        ],
        "warnings": warnings,
    }


def render(report: dict, console=None) -> None:
    """Rich table of a check report."""
    from rich.console import Console
    from rich.table import Table

    con = console or Console()
    t = Table(title=f"{report['title']} at {report['root']} ({report['root_source']})")
    for col in ("fold", "split", "found", "expected", "missing", "empty", "corrupt",
                f"<{report['short_threshold']}f", "label 0", "frames"):
        t.add_column(col, justify="left" if col in ("fold", "split") else "right")
    for f in report["folds"]:
        name = "-" if f["fold"] is None else str(f["fold"])
        if f["error"]:
            t.add_row(name, "[red]error[/red]", *[""] * 8)
            continue
        for split, s in f["splits"].items():
            ok = s["expected"] is None or s["listed"] == s["expected"]
            exp = "-" if s["expected"] is None else f"{s['expected']:,}"
            found = f"{s['found']:,}" if ok else f"[yellow]{s['found']:,}[/yellow]"
            frames = "-" if s["min_frames"] is None else f"{s['min_frames']}..{s['max_frames']}"

            def red(v: int) -> str:
                return f"[red]{v}[/red]" if v else "0"

            t.add_row(name, split, found, exp, red(s["missing"]), red(s["empty"]), red(s["corrupt"]),
                      str(s["short"]), str(s["dropped"]), frames)
    con.print(t)
    for f in report["folds"]:
        if f["error"]:
            where = f"fold {f['fold']}: " if f["fold"] is not None else ""
            con.print(f"[red]{where}{f['error']}[/red]", highlight=False)
        for p in f["problems"][:5]:
            con.print(f"[red]{p['path']}: {p['reason']}[/red]", highlight=False)
        if len(f["problems"]) > 5:
            con.print(f"... {len(f['problems']) - 5} more bad clips (--json lists them)")
    for w in report["warnings"][:10]:
        con.print(f"[yellow]warning: {w}[/yellow]", highlight=False)
    verdict = "[green]usable[/green]" if report["usable"] else "[red]NOT usable[/red]"
    tail = "" if report["usable"] or report["bad_clips"] == 0 else \
        " (fix the bad clips, or accept skipping them with --on-bad-clip skip)"
    cls = report["classes"]
    shown = ", ".join(cls) if len(cls) <= 11 else ", ".join(cls[:11]) + f", ... ({len(cls)} classes)"
    con.print(f"{report['dataset']}: {verdict}{tail}; classes: {shown}", highlight=False)
