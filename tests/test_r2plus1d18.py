"""R(2+1)D-18: the size of torchvision's model (baselines.md §11 [meas]), the Kinetics-400 weights source on a
state_dict with torchvision's key names, and one real `bench run` on synthetic."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.video import r2plus1d_18

from bench.api import build_model
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.weights import apply_init
from tests.conftest import tiny_synthetic_run


def test_size_matches_torchvision_measurement():
    model = build_model("r2plus1d18", 7)
    total, trainable = count_params(model)
    assert abs(total / 31.30e6 - 1) < 0.01 and trainable == total
    assert abs(count_macs(model, (3, 16, 112, 112))["gmacs_fvcore"] / 40.6 - 1) < 0.01


def test_kinetics_state_dict_loads_all_but_the_head(tmp_path):
    torch.manual_seed(0)
    kinetics = r2plus1d_18(num_classes=400).state_dict()  # the file's key names and shapes
    path = tmp_path / "r2plus1d_18-91a641e6.pth"
    torch.save(kinetics, path)
    model = build_model("r2plus1d18", 7)
    record = apply_init(model, METHODS.get("r2plus1d18"), f"kinetics400:{path}")
    report = record["report"]
    assert report["unexpected"] == [] and report["missing"] == []
    assert sorted(k.split(":")[0] for k in report["mismatched"]) == ["fc.bias", "fc.weight"]
    assert report["loaded"] == len(kinetics) - 2
    assert torch.equal(model.state_dict()["layer3.0.conv1.0.0.weight"], kinetics["layer3.0.conv1.0.0.weight"])


@pytest.mark.slow
def test_trains_on_synthetic(tmp_path, data_home):
    r, _ = tiny_synthetic_run("r2plus1d18", tmp_path, data_home, "--batch-size", "4",
                               "--set", "data.options.resolution=32", "--set", "data.size=32")
    assert r["method"] == "r2plus1d18" and r["family"] == "3D CNN" and r["profile"]["params_total"] > 31e6
