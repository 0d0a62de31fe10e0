"""Initialisation from LOCAL weight files only (timm's `pretrained_cfg_overlay=dict(file=...)` idea).

`model.init` is `scratch` or `<source>:<path>`, where `<source>` is one of the method's WeightsSource names.
Files load with `torch.load(weights_only=True)`: no pickle from untrusted files. A missing file, or a file
from which no tensor loads, is an error: a run never falls back to random weights silently.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError, UnknownNameError


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a checkpoint file; unwraps {'model': ...}, {'state_dict': ...} and 'module.' prefixes."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BenchError(f"{path}: weights file not found; give the path of a local checkpoint") from None
    except Exception as e:  # noqa: BLE001 - unpickling refused or corrupt file
        raise BenchError(f"{path}: cannot load with weights_only=True ({type(e).__name__}); "
                         "re-save it as a plain state_dict (torch.save(model.state_dict(), path))") from None
    for key in ("model", "state_dict", "model_state", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BenchError(f"{path}: no state_dict found (expected a dict of tensors, or one under 'model'/'state_dict')")
    prefix = "module."
    if obj and all(k.startswith(prefix) for k in obj):
        obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


def load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Load every tensor whose name and shape match; report the rest (a changed head is 'mismatched')."""
    own = module.state_dict()
    loadable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    report = {
        "loaded": sorted(loadable),
        "missing": sorted(k for k in own if k not in state),
        "unexpected": sorted(k for k in state if k not in own),
        "mismatched": sorted(k for k in state if k in own and own[k].shape != state[k].shape),
    }
    module.load_state_dict(loadable, strict=False)
    return report


def generic_load(model: torch.nn.Module, path: Path) -> dict[str, list[str]]:
    return load_matching(model, load_state_dict_file(path))


def apply_init(model: torch.nn.Module, info: Any, init: str) -> dict:
    """Apply `model.init` and return the record stored in every result: kind, path, sha256, key report."""
    if init in ("", "scratch", "random"):
        return {"kind": "scratch", "path": None, "sha256": None}
    if ":" not in init:
        raise BenchError(f"model.init must be 'scratch' or '<source>:<path>' (sources of {info.name}: "
                         f"{', '.join(info.weights) or 'none'}), got {init!r}")
    kind, path_str = init.split(":", 1)
    if kind not in info.weights:
        raise UnknownNameError(f"weights source of {info.name}", kind, info.weights or {"(none)"})
    path = Path(path_str).expanduser()
    if not path.is_file():
        raise BenchError(f"{path}: weights file not found for {kind}; expected {info.weights[kind].expected_file or 'a local checkpoint'}")
    source = info.weights[kind]
    report = (source.load or generic_load)(model, path)
    if not report.get("loaded"):
        raise BenchError(f"{path}: no tensor of this file matches {info.name} ({len(report.get('unexpected', []))} "
                         f"unexpected keys); is it the right checkpoint for '{kind}'?")
    return {"kind": kind, "path": str(path), "sha256": sha256_file(path),
            "report": {k: (v if k != "loaded" else len(v)) for k, v in report.items()}}
