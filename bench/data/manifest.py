"""The dataset a spec resolves to: its manifest (with a clear message when the data is missing) and an
optional validation split carved from train."""

from __future__ import annotations

import random
from typing import Any

from bench.api import ClipRecord, Manifest
from bench.data.roots import is_present, missing_message, resolve_root
from bench.errors import DataError
from bench.registry import DATASETS


def load_manifest(spec: Any) -> Manifest:
    """The dataset resolved for the spec's fold; a clear message with the download route when data is missing."""
    dinfo = DATASETS.get(spec.dataset)
    root, source = resolve_root(dinfo, spec.data.root)
    if not dinfo.generated and not is_present(dinfo, root):
        raise DataError(missing_message(dinfo, root, source))
    return dinfo.build_manifest(root, spec.fold, dict(spec.data.options))


def current_checksum(spec: Any) -> str | None:
    """The manifest checksum the spec resolves to now, or None when its data is not on this machine."""
    try:
        return load_manifest(spec).checksum()
    except DataError:
        return None


def carve_val(train: list[ClipRecord], fraction: float, seed: int) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """A stratified validation split taken from train (deterministic by seed), for best_on_val selection."""
    rng = random.Random(seed)
    by_class: dict[int, list[ClipRecord]] = {}
    for r in train:
        by_class.setdefault(r.label, []).append(r)
    keep, val = [], []
    for label in sorted(by_class):
        items = by_class[label][:]
        rng.shuffle(items)
        n = int(round(len(items) * fraction))
        val += [ClipRecord(r.clip_id, r.rel_path, r.num_frames, r.label, "val", r.fold) for r in items[:n]]
        keep += items[n:]
    return keep, val
