"""The contracts between the core and the plug-ins: what a method module and a dataset module register.

A method is one file in `methods/` that calls `register_method(...)` on a builder function (and
`register_variant(...)` for its ablations); a dataset is one file in `datasets/` that calls
`register_dataset(DatasetInfo(...))`. The core never imports a specific method or dataset. `methods/README.md`
is the method contract with a template.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bench.registry import DATASETS, METHODS

if TYPE_CHECKING:
    import torch
    from torch import nn

# ----------------------------------------------------------------------------------------------------------
# methods

# The families of the DFER comparison tables (a method names one; `bench list methods` groups by it).
FAMILIES = ("3D CNN", "CNN+RNN", "CNN+Transformer", "Transformer", "self-supervised ViT", "CLIP-based", "robust",
            "static", "test")

# The label every table cell, log line and result carries for a method that only means something from a
# pretrained file but was run without one.
RANDOM_INIT_LABEL = "random init (not the method)"


@dataclass(frozen=True)
class InputSpec:
    """The input contract of a method: a clip of `frames` RGB frames of `size`x`size`, layout (B,C,T,H,W).

    Stated once: the spec's `data.frames`/`data.size` start from it and builders receive them."""

    frames: int = 16
    size: int = 112
    channels: int = 3


@dataclass(frozen=True)
class Paper:
    """Where a method comes from. `code` is the official repository ("" when none is published)."""

    authors: str
    title: str
    venue: str
    year: int
    arxiv: str = ""
    code: str = ""

    def cite(self) -> str:
        arxiv = f", arXiv {self.arxiv}" if self.arxiv else ""
        return f'{self.authors}, "{self.title}", {self.venue} {self.year}{arxiv}'


# convert(state_dict in the file's names, the model it goes into, notes to fill) -> state_dict in the model's
# names. timm's `checkpoint_filter_fn` idea: a source only renames/reshapes, the core loads and reports.
Converter = Callable[[dict[str, "torch.Tensor"], "nn.Module", dict[str, Any]], dict[str, "torch.Tensor"]]


@dataclass(frozen=True)
class WeightsSource:
    """A kind of local weights file a method can start from or be evaluated with (never downloaded).

    `convert` maps the file's (unwrapped) state_dict to the model's key names; None = the names already
    match. It may record what it did in `notes` (keys it dropped on purpose, tensors it resized). The core
    (`bench.weights.load_weights`) reads the file with `weights_only=True`, applies it and reports.
    """

    description: str
    expected_file: str = ""
    convert: Converter | None = None


@dataclass(frozen=True)
class Recipe:
    """Default hyper-parameters (nested dict in RunSpec shape) and their per-dataset / per-protocol overrides.

    Resolution order: the method's InputSpec -> defaults -> datasets[dataset] -> protocols[protocol] (whose own
    "datasets" key holds protocol x dataset overrides) -> on_cuda[dataset] when the run's device is CUDA (`cuda`,
    `cuda:N`, or `auto` where CUDA is available) -> a variant's kwargs/loss -> CLI flags -> --set.

    `on_cuda` is for recipes whose CPU-sized form cannot show the method (IFDD on `synthetic`): the GPU run gets
    the larger budget without a flag; every value it changes is in the spec, so the two have different run ids.
    """

    defaults: dict = field(default_factory=dict)
    datasets: dict[str, dict] = field(default_factory=dict)
    protocols: dict[str, dict] = field(default_factory=dict)
    default_protocol: str = "default"
    on_cuda: dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class PretrainSpec:
    """Self-supervised pre-training a method defines (`bench pretrain`): `build(frames, size, **kwargs)` returns a
    module whose forward(clips) returns {"loss": scalar, "parts": {name: float}} (train mode); its state_dict
    keys are those of the official pre-training checkpoint, so the method's weights source `loads_with` starts
    the method from a `bench pretrain` checkpoint exactly as from the official file. `recipe` is in RunSpec
    shape (optim/train/data/model.kwargs), resolved like a method recipe (defaults, datasets, ...)."""

    build: Callable[..., Any]
    loads_with: str
    recipe: Recipe = field(default_factory=Recipe)
    description: str = ""


# criterion(spec) -> callable(outputs, soft_targets) -> (loss tensor, {part name: float}); see bench.losses
CriterionFactory = Callable[[Any], Callable[[Any, "torch.Tensor"], tuple["torch.Tensor", dict[str, float]]]]


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its builder and everything a table or a run needs to know about it."""

    name: str
    family: str
    build: Callable[..., Any]  # build(num_classes=K, frames=T, size=S, **model.kwargs) -> nn.Module
    input: InputSpec
    paper: Paper
    recipe: Recipe
    weights: dict[str, WeightsSource] = field(default_factory=dict)
    criterion: CriterionFactory | None = None  # None: bench.losses.classification_criterion
    variant_of: str | None = None  # ablation / variant of another method (listed and reported under it)
    kwargs: dict = field(default_factory=dict)  # builder keyword defaults of a variant (model.kwargs layer)
    loss: dict = field(default_factory=dict)  # loss options of a variant (model.loss layer)
    literature: tuple[str, ...] = ()  # its row names ("method" column) in results/reference/literature.csv
    # "" = meaningful from random init; else the weights source without which a run is not the method
    needs_pretrained: str = ""
    description: str = ""
    uses_attention: bool = False  # profile tests then require matmul/bmm in the FLOP breakdown
    test_views_note: str = ""  # protocol detail the resolved data spec cannot say (e.g. released quirks)
    pretrain: PretrainSpec | None = None  # `bench pretrain` objective (in-domain self-supervised pre-training)
    zero_shot: bool = False  # evaluable with no training (`bench eval --zero-shot`): text-prompted methods

    @property
    def parent(self) -> str | None:
        return self.variant_of


def _check_registration(name: str, family: str, weights: Mapping[str, WeightsSource], needs_pretrained: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"method {name}: family {family!r} is not one of {FAMILIES}")
    if needs_pretrained and needs_pretrained not in weights:
        raise ValueError(f"method {name}: needs_pretrained={needs_pretrained!r} is not one of its weights sources")


def register_method(
    name: str,
    *,
    family: str,
    input: InputSpec,
    paper: Paper,
    recipe: Recipe | None = None,
    weights: dict[str, WeightsSource] | None = None,
    criterion: CriterionFactory | None = None,
    literature: Sequence[str] = (),
    needs_pretrained: str = "",
    description: str = "",
    uses_attention: bool = False,
    test_views_note: str = "",
    pretrain: PretrainSpec | None = None,
    zero_shot: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register `fn(num_classes, frames, size, **kwargs) -> nn.Module` as method `name`."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _check_registration(name, family, weights or {}, needs_pretrained)
        METHODS.add(name, MethodInfo(
            name=name, family=family, build=fn, input=input, paper=paper, recipe=recipe or Recipe(),
            weights=dict(weights or {}), criterion=criterion, literature=tuple(literature),
            needs_pretrained=needs_pretrained, uses_attention=uses_attention, test_views_note=test_views_note,
            pretrain=pretrain, zero_shot=zero_shot,
            description=description or (fn.__doc__ or "").strip().split("\n")[0]))
        return fn

    return deco


def register_variant(name: str, *, variant_of: str, description: str, kwargs: dict | None = None,
                     loss: dict | None = None, literature: Sequence[str] = (), **changes: Any) -> MethodInfo:
    """Register a variant of a registered method: the same builder and recipe with other builder arguments
    (`kwargs`) or loss options (`loss`), timm's `resnet18d` idea. `changes` replace other MethodInfo fields."""
    parent = METHODS.get_registered(variant_of)
    info = dataclasses.replace(parent, name=name, variant_of=variant_of, description=description,
                               kwargs={**parent.kwargs, **(kwargs or {})}, loss={**parent.loss, **(loss or {})},
                               literature=tuple(literature), **changes)
    _check_registration(name, info.family, info.weights, info.needs_pretrained)
    return METHODS.add(name, info)


def build_model(method: str | MethodInfo, num_classes: int, frames: int | None = None, size: int | None = None,
                class_names: Sequence[str] | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered method at its own input (or `frames`/`size`), with a variant's fixed arguments. A
    builder that takes `class_names` (text-prompted methods) gets the dataset's class names."""
    import inspect

    info = METHODS.get(method) if isinstance(method, str) else method
    if "class_names" in inspect.signature(info.build).parameters:
        kwargs["class_names"] = tuple(class_names) if class_names else tuple(f"class {i}" for i in range(num_classes))
    return info.build(num_classes=num_classes, frames=frames or info.input.frames, size=size or info.input.size,
                      **{**info.kwargs, **kwargs})


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
    `counts_for(options)` refines `official_counts` when an option changes the lists (MAFW captions).
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
    counts_for: Callable[[dict], dict[int | None, tuple[int, int]]] | None = None
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
