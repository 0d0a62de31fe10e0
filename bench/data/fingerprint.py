"""A fingerprint of a prepared dataset, per fold and split, compared with the official release's known facts.

"My number is lower than reported" is most often a data-preparation difference: the 16-frame time-normalised clips
instead of the full-length frames, other face crops, another resolution, BGR frames, a partial copy. `bench data
check` says whether the layout is there and readable; the fingerprint says whether it is the same data:

* clips per class and split, against the official counts (where the release's counts are known);
* frames per clip (min, 10th percentile, median, mean, 90th percentile, max, clips under 16), against the frame
  variant's known distribution (DFEW's `clip_224x224_16f` has exactly 16; its full-length frames a median of 70);
* frame resolution and aspect (the modal size over a sample of frames) and colour statistics (per-channel mean and
  spread over the same sample, in RGB), against the release where known; a copy whose channel means match the
  reference only after swapping R and B is flagged as BGR;
* duplicated or near-duplicated clips within a split and across the train/test split of a fold: a 64-bit
  difference hash of the first, middle and last frame of every clip; two clips whose three hashes are each within
  3 bits are near-duplicates (0 bits: duplicates). Reported, never deleted;
* unreadable or truncated clips (the data check's end-of-image test).

References: `results/reference/fingerprints/<dataset>.json` (facts from ../shared/docs/datasets.md, each with its
provenance) for DFEW, FERV39k and MAFW; for `synthetic` the reference is the fingerprint of the copy its generator
makes at the data home (the "official release" of an embedded dataset), computed once and cached beside it.
Every mismatch is one line.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.api import ClipRecord, DatasetInfo
from bench.data.frames import read_clip
from bench.data.roots import missing_message, resolve_root
from bench.errors import BenchError, DataError
from bench.registry import DATASETS

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "results" / "reference" / "fingerprints"
NEAR_BITS = 3  # each of a clip's three frame hashes within this many bits of the other clip's: near-duplicate
SHORT = 16
SAMPLE_CLIPS = 120  # clips per split whose frames give the resolution and colour statistics
QUICK_CLIPS = 300  # --quick: clips per split hashed for duplicates (stratified), instead of every clip


def dhash(frame: np.ndarray) -> int:
    """64-bit difference hash of an RGB frame: grey, resized to 9x8, one bit per horizontal gradient sign."""
    from PIL import Image

    grey = Image.fromarray(frame).convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    a = np.asarray(grey, dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def _hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def frame_stats(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    v = np.asarray(values)
    return {"n": int(v.size), "min": int(v.min()), "p10": float(np.percentile(v, 10)),
            "median": float(np.median(v)), "mean": round(float(v.mean()), 2), "p90": float(np.percentile(v, 90)),
            "max": int(v.max()), "under_16": int((v < SHORT).sum()), "all_equal": bool((v == v[0]).all())}


def _stratified(records: list[ClipRecord], n: int, rng: random.Random) -> list[ClipRecord]:
    """Up to n records, classes in proportion (at least one each), reproducibly."""
    if len(records) <= n:
        return list(records)
    by: dict[int, list[ClipRecord]] = {}
    for r in records:
        by.setdefault(r.label, []).append(r)
    out = []
    for recs in by.values():
        k = max(1, round(n * len(recs) / len(records)))
        out += rng.sample(recs, min(k, len(recs)))
    return out


class _Clips:
    """Reads each clip once (first, middle, last frame), whatever fold or split asks for it."""

    def __init__(self, root: Path):
        self.root = root
        self.cache: dict[str, dict[str, Any]] = {}

    def get(self, rec: ClipRecord) -> dict[str, Any]:
        if rec.rel_path not in self.cache:
            idx = sorted({0, rec.num_frames // 2, rec.num_frames - 1})
            try:
                frames = read_clip(self.root / rec.rel_path, idx)
            except DataError as e:
                self.cache[rec.rel_path] = {"error": str(e)}
            else:
                self.cache[rec.rel_path] = {"hashes": [dhash(f) for f in frames], "frames": frames}
        return self.cache[rec.rel_path]


def _pixels(clips: list[dict[str, Any]]) -> dict[str, Any]:
    sizes = Counter((int(c["frames"].shape[1]), int(c["frames"].shape[2])) for c in clips if "frames" in c)
    if not sizes:
        return {}
    (h, w), n = sizes.most_common(1)[0]
    pix = np.concatenate([c["frames"].reshape(-1, 3) for c in clips if "frames" in c]).astype(np.float64) / 255.0
    return {"resolution": [h, w], "resolution_share": round(n / sum(sizes.values()), 3), "aspect": round(w / h, 3),
            "other_sizes": {f"{a}x{b}": k for (a, b), k in sizes.items() if (a, b) != (h, w)},
            "channel_mean": [round(float(x), 4) for x in pix.mean(0)],
            "channel_std": [round(float(x), 4) for x in pix.std(0)]}


def _near_pairs(sigs: dict[str, list[int]]) -> list[tuple[str, str, int]]:
    """(clip, clip, max bit distance) of the near-duplicate pairs, found through 16-bit bands of the middle hash
    (two hashes within 3 bits share at least one of their four bands)."""
    keys = [k for k, h in sigs.items() if h]
    buckets: dict[tuple[int, int], list[str]] = {}
    for k in keys:
        mid = sigs[k][len(sigs[k]) // 2]
        for band in range(4):
            buckets.setdefault((band, (mid >> (16 * band)) & 0xFFFF), []).append(k)
    seen, out = set(), []
    for members in buckets.values():
        if len(members) < 2 or len(members) > 500:  # a huge bucket is a blank frame family: skip it
            continue
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                pair = (a, b) if a < b else (b, a)
                if pair in seen or len(sigs[a]) != len(sigs[b]):
                    continue
                seen.add(pair)
                d = max(_hamming(x, y) for x, y in zip(sigs[a], sigs[b], strict=True))
                if d <= NEAR_BITS:
                    out.append((*pair, d))
    return sorted(out)


def fingerprint(dataset: str, root: str | Path | None = None, folds: list[int | None] | None = None,
                options: dict | None = None, *, quick: bool = False, seed: int = 0,
                progress: Callable[[str], None] | None = None, reference: bool = False) -> dict[str, Any]:
    """The fingerprint of a prepared dataset (JSON-able). Nothing is written into the dataset directory (the
    manifest cache goes to the per-user cache); `reference` is the generator's own copy of an embedded dataset."""
    info = DATASETS.get(dataset)
    options = dict(options or {})
    root_path, source = resolve_root(info, str(root) if root else options.pop("root", None))
    if not root_path.exists() and not info.generated:
        raise DataError(missing_message(info, root_path, source))
    counts = info.counts_for(options) if info.counts_for else info.official_counts
    want = list(folds) if folds else [f for f in info.folds if not counts or f in counts]
    for f in want:
        if f not in info.folds:
            raise BenchError(f"{dataset} has folds {', '.join(map(str, info.folds))}, not {f}; pass --fold with one "
                             "of them")
    out: dict[str, Any] = {"dataset": info.name, "root": str(root_path), "root_source": source,
                           "options": {k: v for k, v in options.items() if not k.startswith("_")},
                           "quick": quick, "folds": []}
    clips: _Clips | None = None
    for f in want:
        fold = None if info.folds == (None,) else f
        if progress:
            progress(f"fold {fold}: reading the lists")
        m = info.build_manifest(root_path, fold, {**options, "_collect": True, "verify": "tail",
                                                  "_readonly_root": not reference})
        if clips is None:
            clips = _Clips(Path(m.root))
            out["media_root"], out["classes"], out["variant"] = str(m.root), list(m.classes), m.variant
        entry: dict[str, Any] = {"fold": fold, "splits": {}, "bad": [s for s in m.skipped
                                                                    if s["kind"] in ("missing", "empty", "corrupt")]}
        sigs: dict[str, dict[str, list[int]]] = {}
        for split in ("train", "test"):
            recs = m.split(split)
            counts = Counter(m.classes[r.label] for r in recs)
            for s in m.skipped:  # a listed clip that is missing / empty / corrupt still belongs to its class
                if s.get("split") == split and s["kind"] in ("missing", "empty", "corrupt"):
                    entry.setdefault("unreadable_by_split", {}).setdefault(split, 0)
                    entry["unreadable_by_split"][split] += 1
            rng = random.Random(f"{seed}/{fold}/{split}")  # the same sample whatever else is fingerprinted
            hashed = _stratified(recs, QUICK_CLIPS, rng) if quick else recs
            if progress:
                progress(f"fold {fold} {split}: hashing {len(hashed)} clips")
            read = {r.rel_path: clips.get(r) for r in hashed}
            # the colour sample: the same clips with or without --quick (the reference is built without it)
            colour = _stratified(recs, SAMPLE_CLIPS, random.Random(f"{seed}/{fold}/{split}/colour"))
            sample = [read[r.rel_path] if r.rel_path in read else clips.get(r) for r in colour]
            sigs[split] = {k: v.get("hashes", []) for k, v in read.items()}
            entry["splits"][split] = {
                "clips": len(recs), "per_class": {c: counts.get(c, 0) for c in m.classes},
                "frames": frame_stats([r.num_frames for r in recs]), "hashed": len(hashed),
                "unreadable_frames": sum("error" in v for v in read.values()), **_pixels(sample)}
        dup: dict[str, Any] = {}
        for name, pool in (("train", sigs["train"]), ("test", sigs["test"])):
            pairs = _near_pairs(pool)
            dup[f"within_{name}"] = {"pairs": len(pairs), "exact": sum(d == 0 for *_, d in pairs),
                                     "examples": [list(p) for p in pairs[:5]]}
        tagged = {f"train:{k}": v for k, v in sigs["train"].items()} | {f"test:{k}": v for k, v in sigs["test"].items()}
        cross = [p for p in _near_pairs(tagged) if p[0].split(":")[0] != p[1].split(":")[0]]
        dup["train_test"] = {"pairs": len(cross), "exact": sum(d == 0 for *_, d in cross),
                             "examples": [list(p) for p in cross[:5]]}
        entry["duplicates"] = dup
        out["folds"].append(entry)
    return out


# ----------------------------------------------------------------------------------------------------------
# references and the comparison


def reference_for(dataset: str, options: dict, variant: str) -> dict[str, Any] | None:
    """The official facts to compare with: the shipped JSON, or (synthetic) the generator's own copy."""
    info = DATASETS.get(dataset)
    if info.generated:
        return _generated_reference(info, options)
    path = REFERENCE_DIR / f"{dataset}.json"
    if not path.is_file():
        return None
    ref = json.loads(path.read_text())
    for k, want in (ref.get("requires_options") or {}).items():
        if (str(options.get(k, False)).lower() in ("1", "true", "yes")) != bool(want):
            return None  # the facts are of another list set (e.g. MAFW's with_caption lists)
    key = variant or ref.get("default_variant", "")
    ref["frames"] = (ref.get("frames_by_variant") or {}).get(key)
    ref["variant"] = key
    return ref


def _generated_reference(info: DatasetInfo, options: dict) -> dict[str, Any]:
    """The fingerprint of the generator's own copy at the data home (generated if needed), cached beside it."""
    from bench.data.roots import data_home

    canonical = data_home() / info.default_root
    knobs = {k: v for k, v in options.items() if not k.startswith("_") and k not in ("on_bad_clip", "verify")}
    m = info.build_manifest(canonical, info.folds[0], dict(knobs))
    from bench.data.frames import cache_home

    cache = cache_home() / "fingerprints" / f"{info.name}-{m.variant}-v2.json"  # v2: the colour sample's rule
    if cache.is_file():
        return json.loads(cache.read_text())
    counts = info.counts_for(knobs) if info.counts_for else info.official_counts  # the folds this variant has
    fp = fingerprint(info.name, canonical, [f for f in info.folds if f in counts] or None, knobs, reference=True)
    ref = {"source": f"the {info.name} generator's own copy at {m.root}", "folds": {
        str(f["fold"]): {s: {k: v.get(k) for k in ("clips", "per_class", "channel_mean")}
                         for s, v in f["splits"].items()} for f in fp["folds"]},
        "frames": {k: fp["folds"][0]["splits"]["train"]["frames"][k] for k in ("min", "median", "max", "all_equal")},
        "resolution": fp["folds"][0]["splits"]["train"].get("resolution"), "generated": True}
    from bench.store import atomic_write_json

    atomic_write_json(cache, ref)
    return ref


def compare(fp: dict[str, Any], ref: dict[str, Any] | None) -> list[dict[str, str]]:
    """One line per mismatch between a fingerprint and the reference (and per problem found without one)."""
    lines: list[dict[str, str]] = []

    def add(kind: str, text: str, fix: str = "") -> None:
        lines.append({"kind": kind, "text": text, "fix": fix})

    for f in fp["folds"]:
        where = f"fold {f['fold']}" if f["fold"] is not None else "split"
        if f["bad"]:
            kinds = Counter(b["kind"] for b in f["bad"])
            add("unreadable", f"{where}: {sum(kinds.values())} listed clips unusable "
                f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}), e.g. {f['bad'][0]['path']}",
                "re-extract those clips from the release (bench data check lists them all)")
        for split, s in f["splits"].items():
            if s.get("unreadable_frames"):
                add("unreadable", f"{where} {split}: {s['unreadable_frames']} clips with an unreadable frame",
                    "re-extract them")
            official = (ref or {}).get("folds", {}).get(str(f["fold"]), {}).get(split) if ref else None
            if official:
                if official.get("clips") is not None and official["clips"] != s["clips"]:
                    add("counts", f"{where} {split}: {s['clips']:,} usable clips vs {official['clips']:,} in the "
                        "official release", "a partial or re-packaged copy: use the official split files")
                for cls, n in (official.get("per_class") or {}).items():
                    if s["per_class"].get(cls, 0) != n:
                        add("counts", f"{where} {split}: class {cls} has {s['per_class'].get(cls, 0)} usable clips "
                            f"vs {n} official", "restore that class's clips from the release")
        totals = (ref or {}).get("class_totals")
        if totals:  # every fold holds all the labelled clips, split differently
            both = Counter(f["splits"]["train"]["per_class"]) + Counter(f["splits"]["test"]["per_class"])
            for cls, n in totals.items():
                if both.get(cls, 0) != n:
                    add("counts", f"{where}: class {cls} has {both.get(cls, 0)} usable clips in train + test vs "
                        f"{n} in the release", "restore that class's clips from the release")
        for d, label in (("within_train", "within train"), ("within_test", "within test"),
                         ("train_test", "between train and test")):
            dup = f["duplicates"][d]
            if dup["pairs"]:
                ex = dup["examples"][0]
                add("duplicates", f"{where}: {dup['pairs']} near-duplicate clip pairs {label} ({dup['exact']} exact), "
                    f"e.g. {ex[0]} ~ {ex[1]}",
                    "leaks test clips into training" if d == "train_test" else "reported only, nothing deleted")
    if not fp["folds"]:
        return lines
    first = fp["folds"][0]["splits"]["train"]
    frames = (ref or {}).get("frames")
    if frames and first["frames"].get("n"):
        got = first["frames"]
        if frames.get("all_equal") and not got["all_equal"] or frames.get("all_equal") is False and got["all_equal"]:
            add("variant", f"frames per clip: {got['min']}..{got['max']} (median {got['median']:g}) where the "
                f"reference variant has {frames['min']}..{frames['max']} (median {frames['median']:g}): another frame "
                "variant (full-length vs time-normalised clips)",
                "prepare the variant the method expects, or set data.options.variant to the one you have")
        elif not 0.8 <= got["median"] / max(frames["median"], 1) <= 1.25:
            add("variant", f"frames per clip: median {got['median']:g} vs {frames['median']:g} in the reference: "
                "frames dropped, re-extracted at another frame rate, or another variant",
                "re-extract the frames as released")
    res = (ref or {}).get("resolution")
    if res and first.get("resolution") and list(first["resolution"]) != list(res):
        h, w = first["resolution"]
        add("resolution", f"frames are {h}x{w}, the reference's {res[0]}x{res[1]}: frames re-encoded at another size"
            " (or other face crops)", "use the released frames")
    f0 = fp["folds"][0]
    cm = ((ref or {}).get("folds", {}).get(str(f0["fold"]), {}).get("train") or {}).get("channel_mean")
    got_cm = first.get("channel_mean")  # the same clips sampled as in the reference (same seed and lists)
    if cm and got_cm:
        straight = float(np.abs(np.subtract(cm, got_cm)).sum())
        swapped = float(np.abs(np.subtract(cm, got_cm[::-1])).sum())
        if swapped < straight / 3 and straight > 0.02:
            add("colour", f"channel means {got_cm} look like the reference's {cm} with R and B swapped: BGR frames "
                "(OpenCV writes BGR)", "convert the frames to RGB before writing them")
        elif straight > 0.06:
            add("colour", f"channel means {got_cm} differ from the reference's {cm} by {straight:.3f}: other "
                "colour processing (gamma, normalisation written into the frames, grey frames)",
                "write the frames as released")
    return lines
