"""Every training loss in one place, so the trainer stays method-agnostic.

A criterion maps (model outputs, soft targets) to (loss, {part: value}). Soft targets already carry label
smoothing and mixup/cutmix (`bench.mixup`). The default criterion is soft-target cross-entropy on the logits,
computed in float32 whatever the autocast precision, plus:

* the loss terms a method adds (`classification_criterion(spec, terms=...)`, e.g. IFDD's lifting loss), and
* the shared terms a spec selects: `model.loss.terms: {name: {weight: w, ...}}` with a name registered in
  `LOSS_TERMS` (e.g. any method can train with IAL's intensity-aware loss).

A term is `fn(outputs, targets, **options) -> scalar tensor` and gets the full model outputs (dict/tuple
with extra tensors in training mode), so a term that needs features reads them from there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from bench.api import logits_of
from bench.errors import BenchError
from bench.registry import Registry

Criterion = Callable[[Any, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]
LossTerm = Callable[..., torch.Tensor]
def _load_method_terms() -> None:
    import bench.methods  # noqa: F401  (method files register their shared terms, e.g. intensity_aware)


LOSS_TERMS: Registry[LossTerm] = Registry("loss term", _load_method_terms)


def register_loss_term(name: str) -> Callable[[LossTerm], LossTerm]:
    def deco(fn: LossTerm) -> LossTerm:
        LOSS_TERMS.add(name, fn)
        return fn

    return deco


def soft_target_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k t_k log softmax(z)_k, in float32 (bf16/fp16 logits are upcast first)."""
    return torch.sum(-targets.float() * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def classification_criterion(spec: Any, terms: Mapping[str, Callable[[Any, torch.Tensor], torch.Tensor]] | None = None
                             ) -> Criterion:
    """Soft-target CE on the logits + the method's own `terms` + the shared terms selected in the spec."""
    own = dict(terms or {})
    selected = dict(((spec.model.loss if spec is not None else {}) or {}).get("terms") or {})
    shared: dict[str, tuple[LossTerm, dict]] = {}
    for name, opts in selected.items():
        opts = dict(opts or {})
        fn = LOSS_TERMS.get(name)
        shared[name] = (fn, opts)
        if "weight" not in opts:
            raise BenchError(f"model.loss.terms.{name} needs a weight (e.g. --set model.loss.terms.{name}.weight=0.1)")

    def criterion(outputs: Any, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss = soft_target_ce(logits_of(outputs), targets)
        parts = {"ce": float(loss.detach())}
        for name, fn in own.items():
            value = fn(outputs, targets).float()
            loss = loss + value
            parts[name] = float(value.detach())
        for name, (fn, opts) in shared.items():
            weight = float(opts["weight"])
            value = weight * fn(outputs, targets, **{k: v for k, v in opts.items() if k != "weight"}).float()
            loss = loss + value
            parts[name] = float(value.detach())
        return loss, parts

    return criterion


def criterion_for(info: Any, spec: Any) -> Criterion:
    """The criterion a run trains with: the method's factory, else the default classification criterion."""
    return (info.criterion or classification_criterion)(spec)
