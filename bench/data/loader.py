"""ClipDataset over a manifest split, with test items expanded into (video, temporal view, spatial crop)."""

from __future__ import annotations

import logging
import random
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bench.api import ClipRecord, Manifest
from bench.data.frames import read_clip
from bench.data.sampling import sample_test, sample_train
from bench.data.transforms import collate_frames, eval_transforms, train_frames, train_transform
from bench.errors import BenchError, DataError, from_worker

log = logging.getLogger(__name__)


def _sample_rng(seed: int, epoch: int, index: int) -> random.Random:
    return random.Random(zlib.crc32(f"{seed}/{epoch}/{index}".encode()))


class ClipDataset(Dataset):
    """Train mode: one item per clip, randomly sampled and augmented. Test mode: one item per temporal view;
    the spatial crops of a view come stacked as (V_s, C, T, H, W) and are split by the evaluator.

    `augment_on="device"` (train mode): items carry the decoded uint8 frames and their augmentation draw
    instead of the augmented clip; batch them with `collate` and finish with transforms.augment_batch."""

    def __init__(self, manifest: Manifest, records: list[ClipRecord], cfg, *, train: bool, seed: int = 0,
                 on_bad_clip: str = "error", augment_on: str = "worker", view_hook=None):
        self.root = Path(manifest.root)
        self.classes = manifest.classes
        self.records = records
        self.cfg = cfg
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.on_bad_clip = on_bad_clip
        self.augment_on = augment_on if train else "worker"
        self.collate = collate_frames if self.augment_on == "device" else None
        # test mode: view_hook(clip (C,T,H,W) in [0, 1], record) -> clip, before normalisation (a corruption, a
        # preparation alternative of the data check); picklable for the loader workers
        self.view_hook = view_hook
        self.items: list[tuple[int, int, list[int]]] = []  # (video index, temporal view, frame indices)
        if not train:
            self._expand_views()

    def _expand_views(self) -> None:
        self.items = []
        for vi, rec in enumerate(self.records):
            rng = _sample_rng(self.seed, self.epoch, vi) if self.cfg.test_temporal == "random" else None
            for ti, idx in enumerate(sample_test(rec.num_frames, self.cfg, rng)):
                self.items.append((vi, ti, idx))

    def set_epoch(self, epoch: int) -> None:
        """Random test windows (the released IFDD protocol) change per evaluation, reproducibly by seed."""
        self.epoch = epoch
        if not self.train and self.cfg.test_temporal == "random":
            self._expand_views()

    def __len__(self) -> int:
        return len(self.records) if self.train else len(self.items)

    def __getitem__(self, i: int) -> dict:
        if self.train:
            return self._train_item(i)
        vi, ti, idx = self.items[i]
        rec = self.records[vi]
        clip = read_clip(self.root / rec.rel_path, idx, size=self.cfg.size)
        hook = None if self.view_hook is None else partial(self.view_hook, record=rec)
        crops = torch.stack(eval_transforms(clip, self.cfg, hook))
        return {"clip": crops, "label": rec.label, "video": vi, "view": ti, **self._streams(rec, idx)}

    def _train_item(self, i: int, attempt: int = 0) -> dict:
        rng = _sample_rng(self.seed, self.epoch, i if attempt == 0 else -(i * 31 + attempt))
        rec = self.records[i]
        n_clips = self.cfg.train_clips
        try:
            picks = [sample_train(rec.num_frames, self.cfg, rng) for _ in range(n_clips)]
            clips = [read_clip(self.root / rec.rel_path, idx, size=self.cfg.size) for idx in picks]
        except DataError as e:
            if self.on_bad_clip != "skip" or attempt >= 10:
                raise
            log.warning("skipping bad training clip: %s", e)
            return self._train_item(rng.randrange(len(self.records)), attempt + 1)
        item = {"label": rec.label, "video": i, "view": 0, **self._streams(rec, picks[0])}
        if self.augment_on == "device":
            frames, aug = train_frames(clips[0], self.cfg, rng)
            return {"clip": frames, "aug": aug, **item}
        out = [train_transform(c, self.cfg, rng) for c in clips]
        return {"clip": out[0] if n_clips == 1 else torch.stack(out), **item}

    def _streams(self, rec: ClipRecord, idx: list[int]) -> dict:
        """data.streams of one clip at the sampled frame indices (npy) or whole (txt)."""
        if not self.cfg.streams:
            return {}
        return {"streams": {name: read_stream(self._stream_root(folder), rec.clip_id, idx)
                            for name, folder in self.cfg.streams.items()}}

    def _stream_root(self, folder: str) -> Path:
        p = Path(folder).expanduser()
        return p if p.is_absolute() else self.root / p


def read_stream(folder: Path, clip_id: str, idx: list[int]) -> torch.Tensor | str:
    """One extra input of a clip: <folder>/<clip id>.npy (rows = frames, indexed like the clip's frames, clamped
    to the rows present) or <folder>/<clip id>.txt (UTF-8 text for the whole clip)."""
    stem = clip_id.replace("/", "__")
    npy, txt = folder / f"{stem}.npy", folder / f"{stem}.txt"
    if npy.is_file():
        try:
            arr = np.load(npy, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise DataError(f"{npy}: unreadable stream file ({type(e).__name__}); regenerate it") from None
        rows = np.clip(np.asarray(idx), 0, arr.shape[0] - 1)
        return torch.from_numpy(np.ascontiguousarray(arr[rows]))
    if txt.is_file():
        return txt.read_text(encoding="utf-8").strip()
    raise DataError(f"{folder}: no {npy.name} or {txt.name} for clip {clip_id}; data.streams needs one file per clip")


def model_inputs(batch: dict, device: torch.device, repeat: int = 1) -> dict:
    """Keyword inputs of the model besides the clips: `streams` when the spec declares any (each repeated
    `repeat` times, for the spatial crops of an evaluation batch)."""
    if "streams" not in batch:
        return {}
    out = {}
    for name, value in batch["streams"].items():
        if isinstance(value, torch.Tensor):
            out[name] = value.to(device, non_blocking=True).repeat_interleave(repeat, dim=0)
        else:
            out[name] = [v for v in value for _ in range(repeat)]
    return {"streams": out}


def batches(loader: DataLoader):
    """Iterate a loader; a user error raised in a worker surfaces as its own one line, not a worker traceback."""
    try:
        yield from loader
    except BenchError as e:
        raise from_worker(e) from None


def _worker_init(worker_id: int) -> None:
    """Per-worker seeds for any library RNG a transform might touch (ours use explicit generators)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: ClipDataset, batch_size: int, *, workers: int, shuffle: bool, drop_last: bool,
                seed: int, epoch: int, class_balanced: bool = False) -> DataLoader:
    """`class_balanced` draws len(dataset) clips with replacement, each with weight 1 / its class count."""
    g = torch.Generator()
    g.manual_seed(zlib.crc32(f"loader/{seed}/{epoch}".encode()))
    sampler = None
    if class_balanced:
        labels = torch.tensor([r.label for r in dataset.records])
        weights = 1.0 / torch.bincount(labels).float()[labels]
        sampler = torch.utils.data.WeightedRandomSampler(weights.double(), len(labels), replacement=True, generator=g)
        shuffle = False
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler,
        drop_last=drop_last and len(dataset) >= batch_size,
        num_workers=workers, generator=g, worker_init_fn=_worker_init, persistent_workers=False,
        pin_memory=torch.cuda.is_available(), collate_fn=dataset.collate,
    )
