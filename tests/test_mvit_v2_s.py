"""MViTv2-S control: torchvision's size (baselines.md [meas] 34.2 M / 64.5 G at 16x224²), the same function as
torchvision's `mvit_v2_s` on its own weights, the K400 source (head dropped, rel-pos resized for small inputs),
IFDD's recipe, and one real `bench run` on synthetic."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.video import mvit_v2_s as tv_mvit_v2_s

from bench.api import build_model
from bench.methods import mvit_v2_s as mvit
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.spec import resolve_spec
from bench.weights import apply_init
from tests.conftest import tiny_synthetic_run


@pytest.mark.slow
def test_size_matches_torchvision_measurement():
    model = build_model("mvit_v2_s", 7)
    total, trainable = count_params(model)
    assert total == trainable == 34_235_527
    macs = count_macs(model, (3, 16, 224, 224))
    assert abs(macs["gmacs_fvcore"] / 64.5 - 1) < 0.01 and macs["flop_disagreement"] < 0.01


@pytest.mark.slow
def test_k400_file_loads_into_the_same_function_as_torchvision(tmp_path):
    """A state_dict with torchvision's names (its own mvit_v2_s at 400 classes): every tensor but the head loads;
    with the head copied by hand the port equals torchvision's mvit_v2_s on the same input."""
    torch.manual_seed(0)
    ref = tv_mvit_v2_s(num_classes=400).eval()
    path = tmp_path / "mvit_v2_s.pth"
    torch.save(ref.state_dict(), path)
    model = build_model("mvit_v2_s", 400)
    report = apply_init(model, METHODS.get("mvit_v2_s"), f"k400_mvit_v2_s:{path}")["report"]
    assert report["unexpected"] == [] and report["mismatched"] == [] and report["notes"]["resized_rel_pos"] == []
    assert sorted(report["missing"]) == ["head.1.bias", "head.1.weight"]
    assert sorted(report["notes"]["dropped"]) == ["head.1.bias", "head.1.weight"]
    assert report["loaded"] == len(ref.state_dict()) - 2
    model.head.load_state_dict(ref.head.state_dict())
    model.eval()
    x = torch.rand(1, 3, 16, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)


@pytest.mark.slow
def test_k400_file_at_a_small_input_resizes_relative_positions(tmp_path):
    torch.manual_seed(0)
    src = tv_mvit_v2_s().state_dict()
    path = tmp_path / "mvit_v2_s.pth"
    torch.save(src, path)
    model = build_model("mvit_v2_s", 7, 16, 32)
    report = apply_init(model, METHODS.get("mvit_v2_s"), f"k400_mvit_v2_s:{path}")["report"]
    assert report["unexpected"] == [] and report["mismatched"] == [] and report["loaded"] == len(src) - 2
    resized = report["notes"]["resized_rel_pos"]
    assert "blocks.0.attn.rel_pos_h" in resized and all("rel_pos_t" not in k for k in resized)  # T is still 8
    own = model.state_dict()
    assert torch.equal(own["blocks.0.attn.rel_pos_t"], src["blocks.0.attn.rel_pos_t"])
    assert torch.equal(own["blocks.15.mlp.3.weight"], src["blocks.15.mlp.3.weight"])
    assert own["blocks.0.attn.rel_pos_h"].shape[0] == 2 * 8 - 1  # 8x8 tokens, kv pooled by 8: 2*max(8, 1)-1
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 3, 16, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize("dataset", ["dfew", "ferv39k", "mafw"])
@pytest.mark.parametrize("protocol", ["faithful", "clean"])
def test_recipe_is_ifdds(dataset, protocol):
    ours, ifdd = resolve_spec("mvit_v2_s", dataset, protocol=protocol), resolve_spec("ifdd", dataset, protocol=protocol)
    for section in ("data", "optim", "reg", "train"):
        assert getattr(ours, section) == getattr(ifdd, section), section
    assert ours.model.loss == {} and ours.model.kwargs == {}
    assert resolve_spec("mvit_v2_s", "dfew").data.size == 224 and METHODS.get("mvit_v2_s").family == "Transformer"


@pytest.mark.slow
def test_trains_on_synthetic(tmp_path, data_home):
    r, _ = tiny_synthetic_run("mvit_v2_s", tmp_path, data_home, "--batch-size", "2",
                               "--set", "data.options.resolution=32", "--set", "data.frames=8", "--set", "data.size=32")
    assert r["method"] == "mvit_v2_s" and r["family"] == "Transformer" and r["profile"]["params_total"] > 34e6
    assert mvit.WEIGHTS["k400_mvit_v2_s"].expected_file == "mvit_v2_s.pth"
