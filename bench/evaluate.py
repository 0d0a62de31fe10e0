"""Multi-view evaluation: every (temporal view x spatial crop) of a video is scored, then aggregated per video.

Predictions are kept per view (video index, view, crop, logits) so metrics and view fusion can be
recomputed offline from `predictions.npz` without re-running the model.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from bench.api import ClipRecord, logits_of
from bench.data.loader import ClipDataset, batches, make_loader, model_inputs
from bench.metrics import compute_metrics


def autocast_ctx(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def predict_views(model: torch.nn.Module, dataset: ClipDataset, *, batch_size: int, workers: int, device: torch.device,
                  precision: str = "fp32", progress: Progress | None = None, desc: str = "eval",
                  forward_kwargs: dict | None = None) -> dict[str, np.ndarray]:
    """Logits of every view: arrays video (N,), view (N,), crop (N,), logits (N,K) with N = views x crops.
    `forward_kwargs` go to every model call (e.g. task="image" for a joint model's image head)."""
    model.eval()
    loader = make_loader(dataset, batch_size, workers=workers, shuffle=False, drop_last=False, seed=0, epoch=0)
    task = progress.add_task(desc, total=len(loader), loss="") if progress else None
    videos, views, crops, logits = [], [], [], []
    for batch in batches(loader):
        clip = batch["clip"].to(device, non_blocking=True)  # B, crops, C, T, H, W
        b, ncrop = clip.shape[:2]
        with autocast_ctx(device, precision):
            out = logits_of(model(clip.flatten(0, 1), **model_inputs(batch, device, ncrop), **(forward_kwargs or {})))
        logits.append(out.float().cpu().view(b, ncrop, -1).flatten(0, 1).numpy())
        videos.append(np.repeat(batch["video"].numpy(), ncrop))
        views.append(np.repeat(batch["view"].numpy(), ncrop))
        crops.append(np.tile(np.arange(ncrop), b))
        if progress:
            progress.advance(task)
    if progress:
        progress.remove_task(task)
    return {"video": np.concatenate(videos), "view": np.concatenate(views), "crop": np.concatenate(crops),
            "logits": np.concatenate(logits)}


def aggregate(preds: dict[str, np.ndarray], num_videos: int, how: str = "mean_logits") -> np.ndarray:
    """Per-video scores (num_videos, K): the mean of the view logits (or of their softmax)."""
    scores = preds["logits"].astype(np.float64)
    if how == "mean_softmax":
        scores = np.exp(scores - scores.max(1, keepdims=True))
        scores /= scores.sum(1, keepdims=True)
    out = np.zeros((num_videos, scores.shape[1]))
    counts = np.bincount(preds["video"], minlength=num_videos).astype(np.float64)
    np.add.at(out, preds["video"], scores)
    if (counts == 0).any():
        raise RuntimeError(f"{int((counts == 0).sum())} test videos got no view: test clips must never be dropped")
    return out / counts[:, None]


def evaluate(model, dataset: ClipDataset, records: list[ClipRecord], classes, *, batch_size: int, workers: int,
             device: torch.device, precision: str, aggregate_how: str, progress: Progress | None = None,
             desc: str = "eval", forward_kwargs: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics of a split and the per-view predictions behind them."""
    preds = predict_views(model, dataset, batch_size=batch_size, workers=workers, device=device, precision=precision,
                          progress=progress, desc=desc, forward_kwargs=forward_kwargs)
    scores = aggregate(preds, len(records), aggregate_how)
    labels = np.array([r.label for r in records])
    metrics = compute_metrics(labels, scores.argmax(1), list(classes))
    preds.update({"video_ids": np.array([r.clip_id for r in records]), "labels": labels, "video_scores": scores})
    return metrics, preds


def save_predictions(path: Path, preds: dict[str, np.ndarray], classes) -> None:
    """predictions.npz: video_ids, labels, per-view (video, view, crop, logits), aggregated video_scores."""
    import io

    from bench.store import atomic_write_bytes

    buf = io.BytesIO()
    np.savez_compressed(buf, classes=np.array(list(classes)), **preds)
    atomic_write_bytes(path, buf.getvalue())
