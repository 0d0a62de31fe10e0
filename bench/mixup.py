"""Mixup / CutMix for video clips (B,C,T,H,W) with label smoothing, timm semantics ('batch' mode, pairing
each sample with the reversed batch, lambda corrected to the kept area). CutMix cuts ONE box through all
frames. timm's own Mixup slices the last two dims of a 4D batch, so it is not reused for 5D clips."""

from __future__ import annotations

import math

import torch


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels.view(-1, 1), 1.0 - smoothing + off)


class VideoMixup:
    """Returns (mixed clips, soft targets); the draw comes from an explicit generator (resumable runs)."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.0):
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.prob = prob
        self.switch_prob = switch_prob
        self.smoothing = label_smoothing

    @property
    def active(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, x: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        target = smooth_one_hot(labels, self.num_classes, self.smoothing)
        if not self.active or float(torch.rand((), generator=gen)) >= self.prob:
            return x, target
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or float(torch.rand((), generator=gen)) < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = _beta(alpha, gen)
        flipped = x.flip(0)
        if use_cutmix:
            h, w = x.shape[-2:]
            cut = math.sqrt(1.0 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy = int(torch.randint(0, h, (), generator=gen))
            cx = int(torch.randint(0, w, (), generator=gen))
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
            x = x.clone()
            x[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        else:
            x = x * lam + flipped * (1.0 - lam)
        return x, target * lam + target.flip(0) * (1.0 - lam)


def _beta(alpha: float, gen: torch.Generator) -> float:
    """Beta(alpha, alpha) from two Gamma draws made with our generator (torch's Beta has no generator arg)."""
    g = [_gamma(alpha, gen) for _ in range(2)]
    return g[0] / (g[0] + g[1])


def _gamma(alpha: float, gen: torch.Generator) -> float:
    """Marsaglia-Tsang Gamma(alpha, 1) sampler driven by `gen` (alpha < 1 boosted by U^(1/alpha))."""
    boost = 1.0
    if alpha < 1.0:
        boost = float(torch.rand((), generator=gen)) ** (1.0 / alpha)
        alpha += 1.0
    d = alpha - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        z = float(torch.randn((), generator=gen))
        v = (1.0 + c * z) ** 3
        if v <= 0:
            continue
        u = float(torch.rand((), generator=gen))
        if math.log(max(u, 1e-300)) < 0.5 * z * z + d - d * v + d * math.log(v):
            return d * v * boost
