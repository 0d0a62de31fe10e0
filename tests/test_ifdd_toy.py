"""benchmarks/ifdd_toy.py (the IFDD diagnostic of methods/IFDD.md): its toy has the answer it claims, and its
training and probe commands run the real models and append their rows."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "ifdd_toy.py"


def _toy_module():
    spec = importlib.util.spec_from_file_location("ifdd_toy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_size_toy_label_is_the_squares_side():
    toy = _toy_module()
    for size in (32, 64):
        x, y = toy.size_toy(40, size, torch.Generator().manual_seed(3))
        assert x.shape == (40, 3, 16, size, size) and x.min() >= 0 and x.max() <= 1
        # averaged over channels and the 16 frames the noise std is ~0.02: the square (0.9) stands out of 0.5
        bright = (x.mean((1, 2)) > 0.7).sum((1, 2))
        side = torch.round((3 + y.float()) * size / 32)
        assert torch.equal(bright, (side * side).long()), (bright, side)


@pytest.mark.slow
def test_train_and_probe_commands_append_their_rows(tmp_path):
    out = tmp_path / "toy"
    for args in (["train", "--model", "cube_mvit", "--steps", "3", "--transitions", "1", "--kv-stride", "4"],
                 ["probe", "--model", "cube_vit", "--depth", "2", "--train-clips", "28", "--test-clips", "14"]):
        subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(out)], cwd=REPO, check=True,
                       capture_output=True, text=True, timeout=300)
    train, probe = json.loads((out / "findings.json").read_text())
    assert train["model"] == "cube_mvit" and train["transitions"] == [1] and train["kv_stride"] == 4
    # the controls train as every toy row since 2026-12-04 did, whatever r3d18's default protocol becomes
    assert train["optimizer"] == "adamw" and train["label_smoothing"] == 0.1
    assert len(train["ce_per_100"]) == 0 and 0 <= train["test_acc"] <= 100 and train["ce_first40"] > 0
    assert list(probe["probe_acc"]) == ["embed", "block0", "block1"]
    assert probe["command"].startswith("benchmarks/ifdd_toy.py probe --model cube_vit")


def test_the_data_stream_does_not_depend_on_the_init_seed():
    """The toy's batches come from their own generator (`--seed`), so rows of different `--init-seed` train on
    the same clips: drawing them after either initialisation seed gives the same tensors."""
    toy = _toy_module()
    draws = []
    for init in (0, 1):
        torch.manual_seed(init)
        torch.nn.Linear(4, 4)  # an initialisation consumes the global generator
        gen = torch.Generator().manual_seed(0)
        draws.append([toy.size_toy(8, 32, gen) for _ in range(2)])
    for (xa, ya), (xb, yb) in zip(*draws, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.slow
def test_init_seed_is_recorded_and_draws_the_initialisation_only(tmp_path):
    """Two rows of one init seed are identical; another init seed changes the first step's loss on the same
    batch; each row records both seeds and the command that made it."""
    out = tmp_path / "toy"
    for init in ("0", "0", "1"):
        subprocess.run([sys.executable, str(SCRIPT), "train", "--model", "cube_mvit", "--steps", "2", "--transitions",
                        "1", "--init-seed", init, "--out", str(out)], cwd=REPO, check=True, capture_output=True,
                       text=True, timeout=300)
    a, b, c = json.loads((out / "findings.json").read_text())
    assert (a["seed"], a["init_seed"], c["seed"], c["init_seed"]) == (0, 0, 0, 1)
    assert a["ce_first40"] == b["ce_first40"] and a["test_acc"] == b["test_acc"]
    assert a["ce_first40"] != c["ce_first40"]
    assert "--init-seed 1" in c["command"] and "--init-seed 0" in a["command"]
