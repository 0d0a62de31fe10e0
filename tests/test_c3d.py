"""C3D: sizes measured from the DFEW code (with BN) and mmaction2 (without), the fc6 width derived from frames/size,
the Sports-1M c3d.pickle source on DavideA's key names, and one real `bench run` on synthetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.api import build_model
from bench.methods.c3d import pool5_grid
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.weights import apply_init
from tests.conftest import tiny_synthetic_run

KEYS = json.loads((Path(__file__).parent / "data" / "c3d_sports1m_keys.json").read_text())["keys"]


@pytest.mark.parametrize(("name", "params_m", "gmacs"), [("c3d", 78.03, 38.59), ("c3d.nobn", 78.02, 38.55)])
def test_size_matches_the_official_measurement(name, params_m, gmacs):
    model = build_model(name, 7)
    total, trainable = count_params(model)
    assert abs(total / (params_m * 1e6) - 1) < 0.01 and trainable == total
    assert abs(count_macs(model, (3, 16, 112, 112))["gmacs_fvcore"] / gmacs - 1) < 0.01


def test_dfew_module_names_and_bn_switch():
    names = [k for k in build_model("c3d", 7).state_dict() if not k.endswith("num_batches_tracked")]
    convs = ["conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b"]
    for c in convs:
        assert f"{c}.weight" in names and f"{c}.bias" in names  # conv bias kept beside the BN (DFEW code)
        assert f"bn{c[4:]}.running_var" in names
    nobn = build_model("c3d.nobn", 7).state_dict()
    assert set(nobn) == {f"{c}.{p}" for c in convs + ["fc6", "fc7", "fc8"] for p in ("weight", "bias")}


@pytest.mark.parametrize(("frames", "size"), [(16, 112), (16, 16), (16, 24), (16, 48), (32, 64), (24, 40)])
def test_fc6_width_is_derived_from_frames_and_size(frames, size):
    model = build_model("c3d", 5, frames, size).eval()
    seen = {}

    def hook(module, inputs, output):
        seen["in"] = inputs[0].shape[1]

    model.fc6.register_forward_hook(hook)
    with torch.no_grad():
        assert model(torch.rand(2, 3, frames, size, size)).shape == (2, 5)
    t, h, w = pool5_grid(frames, size)
    assert seen["in"] == model.fc6.in_features == 512 * t * h * w
    if (frames, size) == (16, 112):
        assert (t, h, w) == (1, 4, 4) and model.fc6.in_features == 8192  # the official constant


def test_too_small_inputs_are_refused():
    with pytest.raises(ValueError, match="16 frames"):
        build_model("c3d", 7, 8, 112)


def test_features_in_training_mode():
    model = build_model("c3d", 5, 16, 24).train()
    out = model(torch.rand(2, 3, 16, 24, 24))
    assert out["logits"].shape == (2, 5) and out["features"].shape == (2, 4096)
    assert (out["features"] >= 0).all()  # fc7 after ReLU, before its dropout


def test_sports1m_pickle_loads_all_but_fc8(tmp_path):
    torch.manual_seed(0)
    sd = {k: torch.randn(shape) * 0.01 for k, shape in KEYS.items()}
    path = tmp_path / "c3d.pickle"
    torch.save(sd, path)
    model = build_model("c3d.nobn", 7)
    report = apply_init(model, METHODS.get("c3d.nobn"), f"sports1m:{path}")["report"]
    # fc8 (487 Sports-1M classes) is dropped on purpose and stays at init; nothing else is missing or left over
    assert report["notes"]["dropped"] == ["fc8.bias", "fc8.weight"]
    assert report["missing"] == ["fc8.bias", "fc8.weight"]
    assert report["unexpected"] == [] and report["mismatched"] == []
    assert report["loaded"] == len(KEYS) - 2
    for key in ("conv1.weight", "conv5b.bias", "fc6.weight", "fc7.weight"):
        assert torch.equal(model.state_dict()[key], sd[key])


@pytest.mark.slow
def test_trains_on_synthetic(tmp_path, data_home):
    r, _ = tiny_synthetic_run("c3d", tmp_path, data_home, "--batch-size", "2",
                               "--set", "data.options.resolution=32", "--set", "data.frames=16", "--set", "data.size=16")
    assert r["method"] == "c3d" and r["family"] == "3D CNN" and r["spec"]["protocol"] == "dfew_code"
