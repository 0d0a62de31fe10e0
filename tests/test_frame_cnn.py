"""Frame CNN + RNN additions: ResNet-18+GRU (analytic size), VGG13/16+LSTM against the notes' measurements of
torchvision VGG heads (notes cnn3d §5), the ImageNet VGG source in torchvision and timm names, synthetic runs."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torchvision

from bench.api import build_model
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.weights import apply_init
from tests.conftest import bench_cli

TINY = ["--fold", "1", "--epochs", "1", "--batch-size", "2", "--workers", "0", "--no-progress", "--no-latency",
        "--set", "data.options.clips_per_class=2", "--set", "data.options.folds=2", "--set",
        "data.options.resolution=32", "--set", "data.frames=4", "--set", "data.size=32"]


def test_r18_gru_size():
    """timm resnet18 trunk 11,176,512 + GRU(512,512) 3*(2*512*512 + 2*512) + Linear(512,7); fvcore sees the
    trunk's 7.778 G and the profile's recurrent handler adds 16 steps x 3*2*512*512 MACs."""
    model = build_model("r18_gru", 7)
    assert isinstance(model.rnn, torch.nn.GRU)
    assert count_params(model)[0] == 11_176_512 + 3 * (2 * 512 * 512 + 2 * 512) + 512 * 7 + 7
    gru_g = 16 * 3 * 2 * 512 * 512 / 1e9
    assert abs(count_macs(model, (3, 16, 112, 112))["gmacs_fvcore"] / (7.778 + gru_g) - 1) < 0.005


# notes cnn3d §5 / measure_vgg_rnn.json, tv vgg (no BN), 16x112², GMACs with the LSTM; BN adds 0.006 M / ~0.1 G
VGG_MEASURED = [("vgg13_lstm", {}, 133.411, 46.723), ("vgg13_lstm.fc6", {}, 133.156, 46.719),
                ("vgg16_lstm", {}, 138.721, 63.37), ("vgg16_lstm.fc6", {}, 138.47, 63.37),
                ("vgg13_lstm", {"bn": False}, 133.411, 46.723), ("vgg13_lstm", {"hidden": 512}, 138.396, 46.803)]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kwargs", "params_m", "gmacs"), VGG_MEASURED)
def test_vgg_lstm_sizes_match_the_notes(name, kwargs, params_m, gmacs):
    model = build_model(name, 7, **kwargs)
    total, trainable = count_params(model)
    assert total == trainable and abs(total / 1e6 / params_m - 1) < 0.01
    assert abs(count_macs(model, (3, 16, 112, 112))["gmacs_fvcore"] / gmacs - 1) < 0.01
    head = kwargs.get("head") or METHODS.get(name).kwargs.get("head", "fc7")
    assert model.rnn.input_size == 4096 and model.rnn.hidden_size == kwargs.get("hidden", 256 if head == "fc7" else 1024)
    if not kwargs:  # the defaults: the zoo's "133 M / 138 M" (truncated to whole millions)
        assert int(total / 1e6) == {"vgg13_lstm": 133, "vgg13_lstm.fc6": 133, "vgg16_lstm": 138, "vgg16_lstm.fc6": 138}[name]


@pytest.mark.slow
def test_imagenet_vgg_loads_in_torchvision_and_timm_names(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.vgg13_bn().state_dict()
    path = tmp_path / "vgg13_bn.pth"
    torch.save(tv, path)
    info = METHODS.get("vgg13_lstm")
    model = build_model("vgg13_lstm", 7)
    rep = apply_init(model, info, f"imagenet:{path}")["report"]
    assert rep["unexpected"] == [] and rep["mismatched"] == []
    assert sorted(rep["missing"]) == sorted(k for k in model.state_dict() if k.startswith(("rnn.", "fc.")))
    assert rep["notes"]["dropped"] == ["classifier.6.bias", "classifier.6.weight"]
    assert torch.equal(model.trunk.classifier[3].weight, tv["classifier.3.weight"])

    fc6 = build_model("vgg13_lstm.fc6", 7)
    rep = apply_init(fc6, info, f"imagenet:{path}")["report"]
    assert rep["unexpected"] == [] and "classifier.3.weight" in rep["notes"]["dropped"]

    tm = timm.create_model("vgg13_bn", pretrained=False).state_dict()  # fc6/fc7 as 7x7 / 1x1 convs
    path = tmp_path / "vgg13_bn_timm.pth"
    torch.save(tm, path)
    model = build_model("vgg13_lstm", 7)
    rep = apply_init(model, info, f"imagenet:{path}")["report"]
    assert rep["unexpected"] == [] and rep["mismatched"] == []
    assert not [k for k in rep["missing"] if k.startswith("trunk.")]
    assert torch.equal(model.trunk.classifier[0].weight, tm["pre_logits.fc1.weight"].reshape(4096, -1))
    assert set(rep["notes"]["dropped"]) == {"head.fc.weight", "head.fc.bias"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["r18_gru", "vgg13_lstm"])
def test_trains_on_synthetic(tmp_path, data_home, name):
    bench_cli(["run", "-m", name, "-d", "synthetic", *TINY], tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    (result,) = (tmp_path / "results" / "runs").rglob("result.json")
    r = json.loads(result.read_text())
    assert r["method"] == name and r["family"] == "CNN+RNN"
