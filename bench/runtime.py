"""Process-level set-up shared by training, evaluation and profiling: device choice, seeds and RNG state."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from bench.errors import BenchError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return torch.device(name)


def resolve_augment_on(data, device: torch.device) -> str:
    """`auto` puts the training augmentation on the device only for CUDA, and only when it can run there (not with
    several clips per video, RandAugment or random erasing, which run in the workers): on a CPU run the loader's
    worker processes do it in parallel, the main process would do it serially."""
    from bench.spec import worker_only_augmentation

    if data.augment_on == "auto":
        return "device" if device.type == "cuda" and not worker_only_augmentation(data) else "worker"
    return data.augment_on


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [np_state[0], np_state[1].tolist(), np_state[2], np_state[3], np_state[4]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_to_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
