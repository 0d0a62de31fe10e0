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


def _is_no_decay(name: str, param: torch.Tensor, names: list[str] | None = None) -> bool:
    if param.ndim <= 1 or name.endswith(".bias"):
        return True
    return name in names if names is not None else ("pos" in name or "token" in name)


def param_groups(model: torch.nn.Module, cfg: Any) -> list[dict]:
    """Trainable parameters grouped by (weight decay, lr scale). `decay_norm_bias=False` (default) exempts norms,
    biases, tokens and position tables from weight decay, as timm does (or, given `no_decay_names`, 1-D
    parameters, biases and exactly those names: a released skip list); `True` decays every parameter (as some
    released codes do). The lr scale is the `lr_groups` multiplier of the longest matching name prefix times
    the layer-wise decay factor; `set_lr` multiplies the scheduled lr by it."""
    from bench.errors import BenchError

    if cfg.layer_decay < 1.0 and not (hasattr(model, "layer_id") and hasattr(model, "num_layers")):
        raise BenchError(f"optim.layer_decay={cfg.layer_decay}: {type(model).__name__} has no layer_id()/num_layers; "
                         "use --set optim.layer_decay=1.0")
    prefixes = sorted(cfg.lr_groups, key=len, reverse=True)
    groups: dict[tuple[float, float], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        wd = cfg.weight_decay if cfg.decay_norm_bias or not _is_no_decay(name, p, cfg.no_decay_names) else 0.0
        scale = next((float(cfg.lr_groups[k]) for k in prefixes if name.startswith(k)), 1.0)
        if cfg.layer_decay < 1.0:
            scale *= cfg.layer_decay ** (model.num_layers + 1 - model.layer_id(name))
        groups.setdefault((wd, scale), {"params": [], "weight_decay": wd, "lr_scale": scale})["params"].append(p)
    return list(groups.values())


def build_optimizer(model: torch.nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """AdamW or SGD over `param_groups(model, cfg)`."""
    groups = param_groups(model, cfg)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    raise ValueError(f"unknown optimizer {cfg.name!r} (adamw, sgd)")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
