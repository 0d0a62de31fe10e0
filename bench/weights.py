"""Weights from LOCAL files only (timm's `pretrained_cfg_overlay=dict(file=...)` idea), through one path.

`model.init` is `scratch` or `<source>:<path>`, where `<source>` is one of the method's WeightsSource names.
`load_weights` reads the file with `torch.load(weights_only=True)` (no pickle from untrusted files), unwraps
the usual checkpoint dicts, lets the source's converter rename keys, loads every tensor whose name and shape
match, and returns one `LoadReport`. `bench run --init` and `bench eval --source` both go through it, and the
report is stored in the result. A missing file, or a file from which no tensor loads, is an error: a run never
falls back to random weights silently.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.api import RANDOM_INIT_LABEL, MethodInfo, WeightsSource
from bench.errors import BenchError, UnknownNameError

WRAPPER_KEYS = ("model", "state_dict", "model_state", "module", "model_state_dict")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class LoadReport:
    """What a weights file did to a model. `notes` holds the file's scalar metadata (e.g. the epoch it was
    saved at) and what the converter did on purpose (keys dropped, tensors resized)."""

    source: str
    path: str
    sha256: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys the file did not provide
    unexpected: list[str] = field(default_factory=list)  # file keys (after conversion) the model does not have
    mismatched: list[str] = field(default_factory=list)  # "key: file (..) vs model (..)"
    notes: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The JSON-able form stored in result.json / eval.json (the loaded keys as a count)."""
        out = asdict(self)
        out["loaded"] = len(self.loaded)
        return out


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, scalar metadata) of a checkpoint file: unwraps {'model': ...}, {'state_dict': ...} and a
    DataParallel 'module.' prefix; the metadata are the wrapper's int/float/str entries (e.g. 'epoch')."""
    if not Path(path).is_file():
        raise BenchError(f"{path}: weights file not found; give the path of a local checkpoint")
    scripted = _torchscript_state_dict(path)
    if scripted is not None:
        return scripted, {}
    if Path(path).suffix == ".safetensors":  # open_clip / Hugging Face weight files
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu"), {}
    obj, opaque = _load_weights_only(path)
    meta: dict[str, Any] = {"opaque_objects": opaque} if opaque else {}
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], dict):
                meta.update({k: v for k, v in obj.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)})
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BenchError(f"{path}: no state_dict found (expected a dict of tensors, or one under "
                         f"{'/'.join(repr(k) for k in WRAPPER_KEYS[:2])})")
    prefix = "module."
    if all(k.startswith(prefix) for k in obj):
        obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj, meta


class _Opaque:
    """Stands in for a Python object of a checkpoint's own classes (a training script's meter or logger): it is
    rebuilt as an inert record, so none of that code runs and the tensors beside it still load."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL (\S+)")


def _load_weights_only(path: Path) -> tuple[Any, list[str]]:
    """torch.load(weights_only=True), allowing argparse.Namespace (official checkpoints store their 'args') and
    replacing each other foreign class (e.g. Former-DFER's RecorderMeter) by an inert `_Opaque` record."""
    opaque: list[str] = []
    while True:
        allowed = [argparse.Namespace, *[(_Opaque, name) for name in opaque]]
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True), opaque
        except Exception as e:  # noqa: BLE001 - unpickling refused or corrupt file
            found = _UNSUPPORTED.search(str(e))
            if found and found.group(1) not in opaque and len(opaque) < 16:
                opaque.append(found.group(1))
                continue
            raise BenchError(f"{path}: cannot load with weights_only=True ({type(e).__name__}); re-save it as a "
                             "plain state_dict (torch.save(model.state_dict(), path))") from None


def _torchscript_state_dict(path: Path) -> dict[str, torch.Tensor] | None:
    """The tensors of a TorchScript archive (OpenAI's CLIP `.pt` files are jit archives, which torch.load with
    weights_only=True refuses); read with torch.jit.load, which compiles TorchScript and unpickles no Python
    objects. None when the file is not such an archive."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            if not any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist()):
                return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception:  # noqa: BLE001 - not a zip, or not TorchScript
        return None
    return {k: v for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}


def load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Load every tensor whose name and shape match; report the rest (a changed head is 'mismatched')."""
    own = module.state_dict()
    loadable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(loadable, strict=False)
    return {
        "loaded": sorted(loadable),
        "missing": sorted(k for k in own if k not in state),
        "unexpected": sorted(k for k in state if k not in own),
        "mismatched": sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                             for k in state if k in own and own[k].shape != state[k].shape),
    }


def load_weights(model: torch.nn.Module, path: Path, source: WeightsSource | None = None,
                 source_name: str = "state_dict") -> LoadReport:
    """Load a local file into `model` through `source`'s converter (None: names already match)."""
    path = Path(path).expanduser()
    if not path.is_file():
        expected = source.expected_file if source and source.expected_file else "a local checkpoint"
        raise BenchError(f"{path}: weights file not found for {source_name}; expected {expected}")
    state, meta = read_checkpoint(path)
    notes: dict[str, Any] = dict(meta)
    if source is not None and source.convert is not None:
        try:
            state = source.convert(state, model, notes)
        except (KeyError, ValueError) as e:
            raise BenchError(f"{path}: not a '{source_name}' file ({type(e).__name__}: {e})") from None
    keys = load_matching(model, state)
    return LoadReport(source=source_name, path=str(path), sha256=sha256_file(path), notes=notes, **keys)


def parse_init(info: MethodInfo, init: str) -> tuple[str, Path] | None:
    """`scratch` -> None; `<source>:<path>` -> (source, path), with the source checked against the method."""
    if init in ("", "scratch", "random"):
        return None
    if ":" not in init:
        raise BenchError(f"model.init must be 'scratch' or '<source>:<path>' (sources of {info.name}: "
                         f"{', '.join(info.weights) or 'none'}), got {init!r}")
    kind, path_str = init.split(":", 1)
    if kind not in info.weights:
        raise UnknownNameError(f"weights source of {info.name}", kind, info.weights or {"(none)"})
    return kind, Path(path_str).expanduser()


def init_label(info: MethodInfo, kind: str) -> str:
    """How tables name the init: the source, 'scratch', or 'random init (not the method)'."""
    if kind == "scratch":
        return RANDOM_INIT_LABEL if info.needs_pretrained else "scratch"
    return kind


def apply_init(model: torch.nn.Module, info: MethodInfo, init: str) -> dict:
    """Apply `model.init` and return the record stored in every result: kind, label, path, sha256, report."""
    parsed = parse_init(info, init)
    if parsed is None:
        return {"kind": "scratch", "label": init_label(info, "scratch"), "path": None, "sha256": None,
                "needs_pretrained": info.needs_pretrained or None}
    kind, path = parsed
    report = load_weights(model, path, info.weights[kind], kind)
    if not report.loaded:
        raise BenchError(f"{path}: no tensor of this file matches {info.name} ({len(report.unexpected)} unexpected "
                         f"keys, e.g. {report.unexpected[:2]}); is it the right checkpoint for '{kind}'?")
    label = init_label(info, kind)
    if report.notes.get("pretrained_on"):  # a `bench pretrain` checkpoint says what it was trained on
        label = f"{kind} ({report.notes['pretrained_on']})"
    return {"kind": kind, "label": label, "path": str(path), "sha256": report.sha256,
            "needs_pretrained": info.needs_pretrained or None, "report": report.record()}
