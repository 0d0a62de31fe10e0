"""r3d18 is Hara et al.'s 3D ResNet-18: the same logits as kenshohara/3D-ResNets-PyTorch's own model on the same
weights (tests/data/hara_r3d18.json, both shortcut types), and its released checkpoints load through the `hara`
weights source into torchvision's layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.api import build_model
from bench.errors import BenchError
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.weights import apply_init

HARA = json.loads((Path(__file__).parent / "data" / "hara_r3d18.json").read_text())


def hara_fill(keys: dict) -> dict:
    """The deterministic weights the fixture's logits were computed with, in the official key order."""
    out = {}
    for i, (k, shape) in enumerate(keys.items()):
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(0)
            continue
        n = int(np.prod(shape))
        base = torch.from_numpy(np.random.RandomState(i).standard_normal(n)).float()
        if k.endswith("running_var"):
            t = 1.0 + 0.1 * base.abs()
        elif k.endswith("running_mean"):
            t = 0.05 * base
        elif len(shape) == 1:
            t = (1.0 + 0.1 * base) if k.endswith("weight") else 0.05 * base
        else:
            t = base * math.sqrt(2.0 / max(n // shape[0], 1))
        out[k] = t.reshape(shape)
    return out


def _checkpoint(path: Path, shortcut: str) -> dict:
    sd = hara_fill(HARA[f"shortcut_{shortcut}"]["keys"])
    if shortcut == "B":  # master's save_checkpoint: {'epoch', 'arch', 'state_dict', 'optimizer', 'scheduler'}
        torch.save({"epoch": 200, "arch": "resnet-18", "state_dict": sd, "optimizer": {"state": {}, "param_groups": []},
                    "scheduler": {"last_epoch": 200}}, path)
    else:  # CVPR2018 resnet-18-kinetics.pth: DataParallel names
        torch.save({"epoch": 200, "arch": "resnet-18", "state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    return sd


@pytest.mark.parametrize(("shortcut", "classes"), [("B", 700), ("A", 400)])
def test_r3d18_computes_haras_network(tmp_path, shortcut, classes):
    path = tmp_path / f"r3d18_{shortcut}.pth"
    sd = _checkpoint(path, shortcut)
    model = build_model("r3d18", classes, shortcut=shortcut)
    assert count_params(model)[0] == HARA[f"shortcut_{shortcut}"]["params"]
    rep = apply_init(model, METHODS.get("r3d18"), f"hara:{path}")["report"]
    assert rep["missing"] == [] and rep["unexpected"] == [] and rep["mismatched"] == []
    assert rep["loaded"] == len(sd) and rep["notes"]["dropped"] == [] and rep["notes"]["shortcut"] == shortcut
    x = torch.from_numpy(np.random.RandomState(1234).random_sample((2, 3, 16, 112, 112))).float()
    with torch.no_grad():
        logits = model.eval()(x)[:, :8]
    assert torch.allclose(logits, torch.tensor(HARA[f"shortcut_{shortcut}"]["logits"]), atol=2e-3), logits


def test_hara_checkpoint_into_a_7_class_model_drops_only_the_head(tmp_path):
    path = tmp_path / "r3d18_K_200ep.pth"
    _checkpoint(path, "B")
    model = build_model("r3d18", 7)
    rep = apply_init(model, METHODS.get("r3d18"), f"hara:{path}")["report"]
    assert rep["unexpected"] == [] and rep["mismatched"] == []
    assert sorted(rep["missing"]) == ["fc.bias", "fc.weight"] and rep["notes"]["dropped"] == ["fc.bias", "fc.weight"]
    assert rep["notes"]["epoch"] == 200 and rep["notes"]["arch"] == "resnet-18"


def test_a_shortcut_mismatch_names_the_switch(tmp_path):
    path = tmp_path / "resnet-18-kinetics.pth"
    _checkpoint(path, "A")
    with pytest.raises(BenchError, match=r"shortcut A .* --set model.kwargs.shortcut=A") as e:
        apply_init(build_model("r3d18", 7), METHODS.get("r3d18"), f"hara:{path}")
    assert "\n" not in str(e.value)


def test_hara_and_torchvision_stems_cost_what_the_tables_say():
    """8.32 GMACs (the tables' "8") for Hara's stem; 40.7 for torchvision's r3d_18; 33.2 M params both (the 7x7x7
    stem conv has 37,632 more weights than the 3x7x7 one)."""
    hara, tv = build_model("r3d18", 7), build_model("r3d18_tv", 7)
    assert count_params(hara)[0] - count_params(tv)[0] == 64 * 3 * 7 * 7 * (7 - 3)
    assert count_params(hara)[0] == pytest.approx(33.21e6, rel=1e-3)
    assert count_macs(hara, (3, 16, 112, 112))["gmacs_fvcore"] == pytest.approx(8.32, rel=0.005)
    assert count_macs(tv, (3, 16, 112, 112))["gmacs_fvcore"] == pytest.approx(40.7, rel=0.005)


def test_r3d18_tv_loads_a_dfew_repo_checkpoint_as_saved(tmp_path):
    """The DFEW README's r3d_18 weights: torchvision's r3d_18 (names and shapes) under the DFEW trainer's
    'model_state_dict' with DDP's 'module.' prefix load whole into r3d18_tv and give torchvision's logits."""
    from torchvision.models.video import r3d_18

    torch.manual_seed(3)
    reference = r3d_18(num_classes=7).eval()
    path = tmp_path / "r3d_18_fold1_epo042_UAR45.11_WAR55.70.pth"
    torch.save({"seed": 1, "epo": 42, "model_state_dict": {f"module.{k}": v for k, v in
                                                           reference.state_dict().items()}}, path)
    model = build_model("r3d18_tv", 7)
    rep = apply_init(model, METHODS.get("r3d18_tv"), f"dfew:{path}")["report"]
    assert rep["missing"] == [] and rep["unexpected"] == [] and rep["mismatched"] == []
    assert rep["loaded"] == len(reference.state_dict())
    x = torch.rand(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), reference(x), atol=1e-5)
