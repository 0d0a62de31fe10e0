"""The contracts between the core and the plug-ins: what a method module and a dataset module register.

A method module (in `methods/`) calls `register_method(...)` on a builder function. A dataset module (in
`datasets/`) calls `register_dataset(DatasetInfo(...))`. The core never imports a specific method or dataset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.registry import DATASETS, METHODS

# ----------------------------------------------------------------------------------------------------------
# methods


@dataclass(frozen=True)
class InputSpec:
    """The input contract of a method: a clip of `frames` RGB frames of `size`x`size`, layout (B,C,T,H,W)."""

    frames: int = 16
    size: int = 112
    channels: int = 3


@dataclass(frozen=True)
class WeightsSource:
    """A kind of local weights file a method can start from (never downloaded at run time).

    `load(model, path) -> dict` loads the file into the model and returns a report with at least
    `missing`, `unexpected` and `mismatched` key lists. None means the generic state_dict loader.
    """

    description: str
    expected_file: str = ""
    load: Callable[[Any, Path], dict] | None = None


@dataclass(frozen=True)
class Recipe:
    """Default hyper-parameters (nested dict in RunSpec shape) and their per-dataset / per-protocol overrides.

    Resolution order: defaults -> datasets[dataset] -> protocols[protocol] (whose own "datasets" key
    holds protocol x dataset overrides) -> CLI flags -> --set key=value.
    """

    defaults: dict = field(default_factory=dict)
    datasets: dict[str, dict] = field(default_factory=dict)
    protocols: dict[str, dict] = field(default_factory=dict)
    default_protocol: str = "default"


# criterion(spec) -> callable(outputs, soft_targets) -> (loss tensor, {part name: float})
CriterionFactory = Callable[[Any], Callable[[Any, Any], tuple[Any, dict[str, float]]]]


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its builder and everything a table or a run needs to know about it."""

    name: str
    family: str  # "3D CNN", "CNN+RNN", "CNN+Transformer", "self-supervised ViT", "CLIP-based", "robust", "static", ...
    build: Callable[..., Any]  # build(num_classes=K, frames=T, size=S, **model.kwargs) -> nn.Module
    input: InputSpec
    test_views: str  # human-readable default test protocol, e.g. "1 clip x 1 crop"
    paper: str
    recipe: Recipe
    weights: dict[str, WeightsSource] = field(default_factory=dict)
    criterion: CriterionFactory | None = None  # None: soft-target cross-entropy on the logits
    parent: str | None = None  # ablation/variant of another method (shown under it)
    description: str = ""
    uses_attention: bool = False  # profile tests then require matmul/bmm in the FLOP breakdown


def register_method(
    name: str,
    *,
    family: str,
    input: InputSpec,
    test_views: str,
    paper: str,
    recipe: Recipe | None = None,
    weights: dict[str, WeightsSource] | None = None,
    criterion: CriterionFactory | None = None,
    parent: str | None = None,
    description: str = "",
    uses_attention: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register `fn(num_classes, frames, size, **kwargs) -> nn.Module` as method `name`."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        METHODS.add(
            name,
            MethodInfo(
                name=name, family=family, build=fn, input=input, test_views=test_views, paper=paper,
                recipe=recipe or Recipe(), weights=weights or {}, criterion=criterion, parent=parent,
                description=description or (fn.__doc__ or "").strip().split("\n")[0],
                uses_attention=uses_attention,
            ),
        )
        return fn

    return deco


# ----------------------------------------------------------------------------------------------------------
# datasets

Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class ClipRecord:
    """One clip of a manifest. `rel_path` is relative to the manifest root (frame folder or video file)."""

    clip_id: str
    rel_path: str
    num_frames: int
    label: int
    split: str
    fold: int | None = None


@dataclass
class Manifest:
    """A dataset resolved for one fold: the clips of each split, labels already mapped by class name."""

    dataset: str
    root: Path
    classes: tuple[str, ...]
    records: list[ClipRecord]
    fold: int | None = None
    media: Literal["frames", "video"] = "frames"
    sources: dict[str, str] = field(default_factory=dict)  # split file -> sha256, for provenance
    skipped: list[dict] = field(default_factory=list)  # bad clips skipped under on_bad_clip=skip
    # what the clips *are* beyond ids/lengths/labels, where that can change under the same spec: `synthetic`
    # sets its variant key (generator version + knobs), so new defaults never reuse results of old data
    variant: str = ""

    def split(self, name: str) -> list[ClipRecord]:
        return [r for r in self.records if r.split == name]

    @property
    def splits(self) -> list[str]:
        return sorted({r.split for r in self.records})

    def checksum(self) -> str:
        """sha256 of the canonical rows: identifies exactly which clips and labels a run saw."""
        h = hashlib.sha256()
        h.update(json.dumps([self.dataset, list(self.classes), self.fold, self.media]).encode())
        if self.variant:
            h.update(f"variant\t{self.variant}\n".encode())
        for r in sorted(self.records, key=lambda r: (r.split, r.rel_path)):
            h.update(f"{r.split}\t{r.rel_path}\t{r.num_frames}\t{r.label}\n".encode())
        return h.hexdigest()


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset.

    `build_manifest(root, fold, options) -> Manifest` reads the split files exactly as released.
    `options` is the run's `data.options` dict (e.g. frame variant, on_bad_clip policy).
    """

    name: str
    title: str
    classes: tuple[str, ...]  # official order
    folds: tuple[int | None, ...]  # (1,2,3,4,5) or (None,) for a single split
    protocol: Literal["mean_over_folds", "single_split"]
    build_manifest: Callable[[Path, int | None, dict], Manifest]
    env_var: str  # e.g. DFER_DFEW_ROOT
    default_root: str  # under the data home, e.g. "DFEW"
    access: str = ""  # how to obtain it (EULA route)
    layout: str = ""  # the folder layout expected
    official_counts: dict[int | None, tuple[int, int]] = field(default_factory=dict)  # fold -> (train, test)
    is_present: Callable[[Path], bool] | None = None
    generated: bool = False  # True for `synthetic`: made on first use instead of downloaded
    description: str = ""


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    return DATASETS.add(info.name, info)


def logits_of(outputs: Any):
    """Methods may return extra tensors in training mode (tuple or dict); the logits come first / as 'logits'."""
    if isinstance(outputs, dict):
        return outputs["logits"]
    if isinstance(outputs, Sequence) and not hasattr(outputs, "shape"):
        return outputs[0]
    return outputs
