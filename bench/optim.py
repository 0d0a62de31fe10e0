"""Optimisers and learning-rate schedules. Schedules are a registry so a method can add the exact schedule
of its released code (e.g. IFDD's per-epoch cosine with its warm-up overshoot) without touching the trainer."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from bench.registry import Registry

# schedule(optim_cfg, epoch, it, iters_per_epoch, epochs) -> absolute learning rate for this step
Schedule = Callable[[Any, int, int, int, int], float]
SCHEDULES: Registry[Schedule] = Registry("schedule")


def register_schedule(name: str) -> Callable[[Schedule], Schedule]:
    def deco(fn: Schedule) -> Schedule:
        SCHEDULES.add(name, fn)
        return fn

    return deco


@register_schedule("cosine")
def cosine(cfg: Any, epoch: int, it: int, iters: int, epochs: int) -> float:
    """Linear warm-up then cosine decay to `min_lr`, per iteration (or per epoch when `per_iteration` is off)."""
    t = epoch + (it / max(iters, 1) if cfg.per_iteration else 0.0)
    if t < cfg.warmup_epochs:
        return cfg.warmup_lr + (cfg.lr - cfg.warmup_lr) * t / cfg.warmup_epochs
    span = max(epochs - cfg.warmup_epochs, 1e-8)
    progress = min((t - cfg.warmup_epochs) / span, 1.0)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


@register_schedule("step")
def step(cfg: Any, epoch: int, it: int, iters: int, epochs: int) -> float:
    """StepLR: multiply by `gamma` every `step_epochs` epochs (Former-DFER, IAL)."""
    return cfg.lr * cfg.gamma ** (epoch // max(cfg.step_epochs, 1))


@register_schedule("constant")
def constant(cfg: Any, epoch: int, it: int, iters: int, epochs: int) -> float:
    return cfg.lr


def _is_no_decay(name: str, param: torch.Tensor) -> bool:
    return param.ndim <= 1 or name.endswith(".bias") or "pos" in name or "token" in name or "rel_pos" in name


def build_optimizer(model: torch.nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """AdamW or SGD. `decay_norm_bias=False` (default) exempts norms, biases, tokens and position tables
    from weight decay, as timm does; `True` decays every parameter (as some released codes do)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if cfg.decay_norm_bias:
        groups = [{"params": [p for _, p in params], "weight_decay": cfg.weight_decay}]
    else:
        decay = [p for n, p in params if not _is_no_decay(n, p)]
        no_decay = [p for n, p in params if _is_no_decay(n, p)]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    raise ValueError(f"unknown optimizer {cfg.name!r} (adamw, sgd)")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr
