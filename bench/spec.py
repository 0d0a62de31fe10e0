"""A run is a typed, validated spec resolved in layers:

1. the method's input and recipe defaults, 2. its per-dataset overrides, 3. its protocol (and protocol x dataset)
overrides, 4. a variant's builder arguments and loss options, 5. CLI flags, 6. `--set section.key=value`. The
resolved spec is saved with the run and hashed into the run id, so the same spec resumes or skips instead of
duplicating. `NON_SEMANTIC` lists the keys that do not change results: they stay out of the hash and out of
the report's row grouping.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

import yaml

from bench.errors import BenchError, UnknownNameError


@dataclass
class DataCfg:
    frames: int = 16  # frames fed to the model per clip
    size: int = 112  # square input resolution
    # segment (S segments x D consecutive) | dense (T frames at stride s) | tsn (Former-DFER's loader, exactly) |
    # dfew (the DFEW code's: T random distinct indices, sorted, for training; linspace for testing); see
    # bench/data/sampling.py
    sampler: str = "segment"
    segment_len: int = 1  # D, frames per segment (segments = frames / D)
    stride: int = 1  # dense sampler: gap between sampled frames
    # short clips: edge (repeat last index) | repeat_first | repeat_last (IFDD) | zero (tsn: every segment at frame 0)
    pad: str = "edge"
    test_views: int = 1  # temporal views per test video (ignored for test_temporal=all)
    test_temporal: str = "uniform"  # uniform | all (every non-overlapping window) | random
    test_crops: int = 1  # spatial crops per temporal view: 1 (centre) or 3 (left/centre/right)
    aggregate: str = "mean_logits"  # mean_logits | mean_softmax, over the views of a video
    flip: bool = True
    rrc_scale: list[float] = field(default_factory=lambda: [0.8, 1.0])  # RandomResizedCrop scale; [1,1] = off
    rrc_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    color_jitter: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # brightness, contrast, saturation, hue
    interpolation: str = "bilinear"  # bilinear | bicubic
    clamp: bool = True  # clamp to [0,1] after augmentation
    mean: list[float] | None = None  # per-method normalisation; None = feed [0,1]
    std: list[float] | None = None
    root: str | None = None  # dataset root; None = flag / env var / config file
    options: dict = field(default_factory=dict)  # dataset-specific (frame variant, on_bad_clip, ...)
    workers: int = 2
    # where the training augmentation runs: worker (loader processes; the default, right for CPU training) |
    # device (workers only decode; crop, flip and colour jitter run batched on the training device: for GPU runs
    # whose loader cannot keep up) | auto (device on CUDA, else worker). Same draws and operations either way.
    augment_on: str = "worker"
    # clips sampled per training video: 1, or n > 1 for methods that compare differently sampled clips of the
    # same video (the batch is then (B, n, C, T, H, W)); evaluation is unchanged
    train_clips: int = 1
    # extra per-clip inputs a method reads (e.g. landmarks, parsing masks, text): name -> folder (absolute or
    # relative to the dataset root) holding <clip_id>.npy (one row per frame, sampled at the clip's frame
    # indices) or <clip_id>.txt (one text per clip); given to the model as forward(x, streams={name: ...})
    streams: dict = field(default_factory=dict)
    # joint training with a static image set (S4D): {dataset: static_images, root: PATH, rate: 0.5, batch_scale: 2,
    # options: {...}}; each epoch adds rate x (its batches) pure image steps, called model(x, task="image")
    mix: dict = field(default_factory=dict)
    # timm RandAugment config for training clips, one draw per clip applied to every frame, before the crop (MAE-DFER
    # and VideoMAE: rand-m7-n4-mstd0.5-inc1); None = off
    randaugment: str | None = None
    # probability of erasing one box through all frames of a training clip after normalisation, filled with
    # per-pixel N(0,1) noise (VideoMAE / MAE-DFER RandomErasing: mode pixel, one box, the same through time); 0 = off
    random_erasing: float = 0.0


@dataclass
class OptimCfg:
    name: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    decay_norm_bias: bool = False
    # with decay_norm_bias=False: the exact parameter names also exempt from weight decay besides 1-D parameters and
    # biases (a released skip list, e.g. MAE-DFER pre-training's ["mask_token"]); None = every token and position
    # table (timm's rule)
    no_decay_names: list[str] | None = None
    # learning-rate multipliers by parameter-name prefix (first match, longest prefix first), e.g. DFER-CLIP's
    # {"image_encoder.": 1e-3, "prompt_learner.": 0.1}
    lr_groups: dict = field(default_factory=dict)
    # ViT layer-wise lr decay (1.0 = off): lr x decay^(num_layers + 1 - layer_id); the model provides
    # `layer_id(param_name) -> int` (0 = embedding, num_layers + 1 = head) and `num_layers`
    layer_decay: float = 1.0
    schedule: str = "cosine"  # a name in bench.optim.SCHEDULES
    per_iteration: bool = True
    warmup_epochs: float = 1.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    step_epochs: int = 40
    gamma: float = 0.1


@dataclass
class RegCfg:
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.0


@dataclass
class TrainCfg:
    epochs: int = 10
    batch_size: int = 16
    grad_clip: float = 0.0  # max grad norm; 0 = off
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 uses a GradScaler)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    deterministic: bool = False
    selection: str = "last"  # last | best_on_val | best_on_test
    selection_metric: str = "uar"  # uar | war
    eval_every: int = 1  # evaluate the selection split every N epochs (and always at the end)
    val_fraction: float = 0.0  # carve a stratified val split from train when the dataset has none
    drop_last: bool = True
    compile: bool = False
    sampler: str = "shuffle"  # shuffle | class_balanced (draw with replacement, weights 1 / class count)


@dataclass
class ModelCfg:
    init: str = "scratch"  # scratch | <weights source>:<local path>
    kwargs: dict = field(default_factory=dict)  # passed to the method's builder (validated by signature)
    loss: dict = field(default_factory=dict)  # passed to the method's criterion


@dataclass
class RunSpec:
    method: str
    dataset: str
    fold: int | None = None
    seed: int = 0
    protocol: str = "default"
    data: DataCfg = field(default_factory=DataCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    reg: RegCfg = field(default_factory=RegCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    model: ModelCfg = field(default_factory=ModelCfg)

    # ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def semantic_dict(self) -> dict:
        """What changes results: excludes paths, worker counts, the device and where augmentation runs."""
        return semantic_view(self.to_dict())

    def config_hash(self) -> str:
        blob = json.dumps(self.semantic_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def run_id(self) -> str:
        fold = f"f{self.fold}" if self.fold is not None else "f0"
        return f"{self.method}-{self.dataset}-{fold}-s{self.seed}-{self.config_hash()[:8]}"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        spec = cls(method=d["method"], dataset=d["dataset"])
        _apply(spec, {k: v for k, v in d.items() if k not in ("method", "dataset")}, "spec")
        return spec


PRETRAIN_PROTOCOL = "pretrain"  # the protocol name of a `bench pretrain` spec

# keys that never change a result (same draws, same maths): out of the run-id hash and the report's grouping
NON_SEMANTIC = (("data", "root"), ("data", "workers"), ("data", "augment_on"), ("train", "device"))
# keys added after runs were stored: left out of the hash and the grouping while at their default, so a run id
# stored before the key existed still names the same spec (a completed run is still found, never re-run)
ADDED_LATER = (("data", "randaugment"), ("data", "random_erasing"), ("optim", "no_decay_names"))


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def field_default(section: str, key: str) -> Any:
    """Today's default of a spec key (the section dataclass's field)."""
    return _default(next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == key))


def worker_only_augmentation(data: DataCfg) -> bool:
    """Training augmentation that only the loader workers do (several clips per video, RandAugment, erasing)."""
    return data.train_clips > 1 or bool(data.randaugment) or data.random_erasing > 0


def with_defaults(spec_dict: dict) -> dict:
    """A stored spec dict completed with today's defaults for the keys it lacks: a key is only ever added with a
    default that keeps the behaviour of the runs stored before it, so its absence means that default."""
    d = copy.deepcopy(spec_dict)
    for section, cls in SECTIONS.items():
        if isinstance(d.get(section), dict):
            for f in dataclasses.fields(cls):
                d[section].setdefault(f.name, _default(f))
    return d


def semantic_view(spec_dict: dict) -> dict:
    """A spec dict (e.g. read back from a result.json) without the NON_SEMANTIC keys."""
    d = copy.deepcopy(spec_dict)
    for section, key in NON_SEMANTIC:
        (d.get(section) or {}).pop(key, None)
    for section, key in ADDED_LATER:
        default = field_default(section, key)
        if (d.get(section) or {}).get(key, default) == default:
            (d.get(section) or {}).pop(key, None)
    return d


SECTIONS = {"data": DataCfg, "optim": OptimCfg, "reg": RegCfg, "train": TrainCfg, "model": ModelCfg}
FREE_DICTS = {("data", "options"), ("data", "streams"), ("data", "mix"), ("model", "kwargs"), ("model", "loss"), ("optim", "lr_groups")}


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Cast a value (often a string from the CLI) to the declared field type."""
    origin = getattr(typ, "__origin__", None)
    args = getattr(typ, "__args__", ())
    if value is None:
        return None
    if typ is bool or bool in args and not any(a in (int, float) for a in args):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise BenchError(f"{where}: expected true/false, got {value!r}")
        return bool(value)
    if isinstance(value, str) and (origin in (list, dict) or list in [getattr(a, "__origin__", a) for a in args]):
        value = yaml.safe_load(value)
    for t in (int, float, str):
        if typ is t or (t in args and not isinstance(value, (list, dict))):
            if typ is int or (int in args and float not in args):
                if isinstance(value, float) and not value.is_integer():
                    raise BenchError(f"{where}: expected an integer, got {value!r}")
                try:
                    return int(value) if not (isinstance(value, str) and value.lower() == "none") else None
                except (TypeError, ValueError):
                    raise BenchError(f"{where}: expected an integer, got {value!r}") from None
            if t is float:
                try:
                    return float(value)
                except (TypeError, ValueError):
                    raise BenchError(f"{where}: expected a number, got {value!r}") from None
            if t is str:
                return str(value)
    if origin is list and isinstance(value, (list, tuple)):
        inner = args[0] if args else Any
        return [_coerce(v, inner, where) if inner is not Any else v for v in value]
    if origin is dict and isinstance(value, dict):
        return dict(value)
    return value


def _apply(obj: Any, overrides: dict, where: str) -> None:
    """Merge a nested override dict into a dataclass, validating every key."""
    hints = get_type_hints(type(obj))
    names = {f.name for f in fields(obj)}
    for key, value in overrides.items():
        if key not in names:
            raise UnknownNameError(f"key in {where}", key, names)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise BenchError(f"{where}.{key} is a section; set its keys, e.g. {key}.{next(iter(f.name for f in fields(current)))}=...")
            _apply(current, value, f"{where}.{key}")
        elif (where.split(".")[-1], key) in FREE_DICTS and isinstance(value, dict):
            merged = copy.deepcopy(current)
            merged.update(value)
            setattr(obj, key, merged)
        else:
            setattr(obj, key, _coerce(value, hints[key], f"{where}.{key}"))


def apply_overrides(spec: RunSpec, flags: dict | None = None, sets: list[str] | None = None) -> RunSpec:
    """Apply CLI flags and --set items to an existing spec (e.g. one read back from a run directory)."""
    _apply(spec, flags or {}, "spec")
    _apply(spec, parse_set(sets or []), "spec")
    validate_spec(spec)
    return spec


def parse_set(items: list[str]) -> dict:
    """`["optim.lr=3e-4", "data.frames=8"]` -> nested dict; values parsed as YAML scalars/lists."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise BenchError(f"--set expects key=value, got {item!r} (e.g. --set optim.lr=3e-4)")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def parse_folds(dataset: str, text: str | None) -> list[int | None]:
    """`None` -> the spec's default fold; 'all' -> every registered fold; '1,3' -> those folds."""
    from bench.registry import DATASETS

    info = DATASETS.get(dataset)
    if text is None:
        return [None]
    if text == "all":
        return list(info.folds)
    try:
        return [int(f) for f in text.split(",")]
    except ValueError:
        raise BenchError(f"--fold/--folds expects a number, a comma list or 'all', got {text!r}") from None


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def runs_on_cuda(device: str) -> bool:
    """Whether a run with this `train.device` trains on CUDA (what selects a recipe's `on_cuda` layer)."""
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return device.startswith("cuda")


def resolve_spec(
    method: str,
    dataset: str,
    *,
    fold: int | None = None,
    seed: int | None = None,
    protocol: str | None = None,
    flags: dict | None = None,
    sets: list[str] | None = None,
    pretrain: bool = False,
) -> RunSpec:
    """Build the RunSpec for (method, dataset) from the method's recipe, CLI flags and --set overrides.

    `pretrain=True` resolves the spec of the method's self-supervised pre-training (`bench pretrain`) from its
    PretrainSpec recipe instead; its protocol is "pretrain" and model.kwargs go to the pre-training builder."""
    from bench.registry import DATASETS, METHODS

    info = METHODS.get(method)
    dinfo = DATASETS.get(dataset)
    recipe = info.recipe
    if pretrain:
        if info.pretrain is None:
            with_pretrain = [n for n in METHODS.names() if METHODS.get(n).pretrain is not None]
            raise BenchError(f"{method} defines no pre-training objective; methods that do: {', '.join(with_pretrain)}")
        recipe, protocol = info.pretrain.recipe, PRETRAIN_PROTOCOL
    layers: dict = {"data": {"frames": info.input.frames, "size": info.input.size}}
    layers = deep_merge(layers, recipe.defaults)
    layers = deep_merge(layers, recipe.datasets.get(dataset, {}))
    proto = protocol or recipe.default_protocol
    if not pretrain and (recipe.protocols or proto != "default"):
        if proto not in recipe.protocols:
            raise UnknownNameError(f"protocol of {method}", proto, recipe.protocols or {"default"})
        p = copy.deepcopy(recipe.protocols[proto])
        per_ds = p.pop("datasets", {})
        layers = deep_merge(layers, p)
        layers = deep_merge(layers, per_ds.get(dataset, {}))
    top: dict = {}  # what the user and a variant set, over every recipe layer
    if not pretrain and (info.kwargs or info.loss):  # a variant: the parent's recipe with its own arguments
        top = deep_merge(top, {"model": {"kwargs": info.kwargs, "loss": info.loss}})
    top = deep_merge(deep_merge(top, flags or {}), parse_set(sets or []))
    if not pretrain and dataset in recipe.on_cuda:
        device = deep_merge(layers, top).get("train", {}).get("device", TrainCfg.device)
        if runs_on_cuda(str(device)):
            layers = deep_merge(layers, recipe.on_cuda[dataset])
    layers = deep_merge(layers, top)

    spec = RunSpec(method=method, dataset=dataset, protocol=proto)
    _apply(spec, layers, "spec")
    if fold is not None:
        spec.fold = fold
    if spec.fold is None and dinfo.folds != (None,):
        spec.fold = dinfo.folds[0]
    if spec.fold not in dinfo.folds:
        raise BenchError(f"dataset {dataset} has folds {[f for f in dinfo.folds]}, not {spec.fold}")
    if seed is not None:
        spec.seed = seed
    validate_spec(spec)
    return spec


def _at_least(low: float) -> tuple[Any, str]:
    return (lambda v: v >= low), f"at least {low}"


_RANGES = {  # (section, key): (test, what the value must be)
    ("train", "epochs"): _at_least(1), ("train", "batch_size"): _at_least(1), ("train", "eval_every"): _at_least(1),
    ("data", "frames"): _at_least(1), ("data", "size"): _at_least(8), ("data", "stride"): _at_least(1),
    ("data", "segment_len"): _at_least(1), ("data", "test_views"): _at_least(1), ("data", "workers"): _at_least(0),
    ("data", "train_clips"): _at_least(1), ("optim", "layer_decay"): ((lambda v: 0 < v <= 1), "in (0, 1]"),
    ("optim", "lr"): ((lambda v: v > 0), "positive"), ("optim", "weight_decay"): _at_least(0),
    ("optim", "warmup_epochs"): _at_least(0), ("train", "grad_clip"): _at_least(0),
    ("reg", "mixup_alpha"): _at_least(0), ("reg", "cutmix_alpha"): _at_least(0),
    ("train", "val_fraction"): ((lambda v: 0 <= v < 1), "in [0, 1)"),
    ("reg", "label_smoothing"): ((lambda v: 0 <= v < 1), "in [0, 1)"),
    ("data", "random_erasing"): ((lambda v: 0 <= v <= 1), "in [0, 1]"),
}


def default_data(method: str) -> DataCfg:
    """The data section of a method's recipe without any dataset override (its input, sampling, test views)."""
    from bench.registry import METHODS

    info = METHODS.get(method)
    layers = deep_merge({"frames": info.input.frames, "size": info.input.size},
                        info.recipe.defaults.get("data", {}))
    proto = info.recipe.protocols.get(info.recipe.default_protocol, {})
    layers = deep_merge(layers, proto.get("data", {}))
    cfg = DataCfg()
    _apply(cfg, layers, "data")
    return cfg


def views_of(data: DataCfg) -> float | None:
    """Test views per video of a data spec: temporal views x crops, None when it depends on the clip length."""
    if data.test_temporal == "all":
        return None
    return float(data.test_views * data.test_crops)


def describe_views(data: DataCfg) -> str:
    """'2 clips x 1 crop', 'all 16-frame windows x 1 crop', '1 random clip x 1 crop'."""
    crops = f"{data.test_crops} crop{'s' if data.test_crops > 1 else ''}"
    if data.test_temporal == "all":
        return f"all {data.frames}-frame windows x {crops}"
    kind = "random " if data.test_temporal == "random" else ""
    return f"{data.test_views} {kind}clip{'s' if data.test_views > 1 else ''} x {crops}"


def validate_spec(spec: RunSpec) -> None:
    """Cross-field checks and builder-signature checks for model kwargs, with one-line errors."""
    from bench.registry import METHODS

    info = METHODS.get(spec.method)
    choices = {
        ("data", "sampler"): ("segment", "dense", "tsn", "dfew"),
        ("data", "pad"): ("edge", "repeat_first", "repeat_last", "zero"),
        ("data", "test_temporal"): ("uniform", "all", "random"),
        ("data", "aggregate"): ("mean_logits", "mean_softmax"),
        ("data", "interpolation"): ("bilinear", "bicubic"),
        ("data", "augment_on"): ("worker", "device", "auto"),
        ("optim", "name"): ("adamw", "sgd"),
        ("train", "precision"): ("fp32", "bf16", "fp16"),
        ("train", "selection"): ("last", "best_on_val", "best_on_test"),
        ("train", "selection_metric"): ("uar", "war"),
        ("train", "sampler"): ("shuffle", "class_balanced"),
    }
    for (sec, key), allowed in choices.items():
        value = getattr(getattr(spec, sec), key)
        if value not in allowed:
            raise UnknownNameError(f"value for {sec}.{key}", str(value), allowed)
    for (sec, key), (ok, rule) in _RANGES.items():
        value = getattr(getattr(spec, sec), key)
        if not ok(value):
            raise BenchError(f"{sec}.{key}={value}: must be {rule}")
    if spec.data.train_clips > 1 and spec.data.augment_on == "device":
        raise BenchError("data.train_clips > 1 needs data.augment_on=worker")
    if (spec.data.randaugment or spec.data.random_erasing) and spec.data.augment_on == "device":
        raise BenchError("data.randaugment and data.random_erasing run in the loader workers: "
                         "they need data.augment_on=worker")
    if spec.data.randaugment:
        from bench.data.transforms import rand_augment_op

        rand_augment_op(spec.data.randaugment, spec.data.size, spec.data.interpolation)  # a bad string fails here
    if spec.data.test_crops not in (1, 3):
        raise BenchError("data.test_crops must be 1 (centre) or 3 (left/centre/right)")
    if spec.data.sampler in ("segment", "tsn") and spec.data.frames % spec.data.segment_len:
        raise BenchError(f"data.frames={spec.data.frames} is not a multiple of data.segment_len={spec.data.segment_len}")
    from bench.optim import SCHEDULES

    SCHEDULES.get(spec.optim.schedule)
    allowed = builder_kwargs(info.pretrain.build if spec.protocol == PRETRAIN_PROTOCOL and info.pretrain else info.build)
    if allowed is not None:
        for key in spec.model.kwargs:
            if key not in allowed:
                raise UnknownNameError(f"model.kwargs key of {spec.method}", key, sorted(allowed))


def builder_kwargs(build: Any) -> set[str] | None:
    """The keyword arguments a builder takes beyond (num_classes, frames, size); None when it takes any. A builder
    that forwards **kwargs to a config class names it in `build.accepts_kwargs_of` (its parameters count)."""
    params = inspect.signature(build).parameters
    names = {k for k, p in params.items() if p.kind is not p.VAR_KEYWORD} - {"num_classes", "frames", "size",
                                                                             "class_names"}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        target = getattr(build, "accepts_kwargs_of", None)
        if target is None:
            return None
        names |= set(inspect.signature(target).parameters) - {"num_classes", "frames", "size", "extra"}
    return names
