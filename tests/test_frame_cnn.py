"""Frame CNN + RNN: the DFEW code's ResNet18-LSTM against the official file (key names, size, logits on the same
weights, its checkpoint layout), the BasicBlock ResNet-18+LSTM/GRU (analytic sizes), VGG13/16+LSTM against the
notes' measurements of torchvision VGG heads (notes cnn3d §5), the ImageNet VGG source in torchvision and timm
names, synthetic runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
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


# ----------------------------------------------------------------------------------------------------------
# r18_lstm: the DFEW code's ResNet18-LSTM (jiangxingxun/DFEW @ 7c1ba78, makemodel/ResLSTM.py)

RESLSTM = json.loads((Path(__file__).parent / "data" / "dfew_reslstm.json").read_text())


def dfew_fill(keys: dict) -> dict:
    """The deterministic weights tests/data/dfew_reslstm.json's logits were computed with (in the official key
    order): numpy RandomState(i) normals, BN around 1/0, weights scaled by sqrt(2 / fan_in)."""
    out = {}
    for i, (k, shape) in enumerate(keys.items()):
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(0)
            continue
        n = int(np.prod(shape)) if shape else 1
        base = torch.from_numpy(np.random.RandomState(i).standard_normal(n)).float()
        if k.endswith("running_var"):
            t = 1.0 + 0.1 * base
        elif k.endswith("running_mean"):
            t = 0.05 * base
        elif "bn" in k or "downsample.1" in k:
            t = (1.0 + 0.1 * base) if k.endswith("weight") else 0.05 * base
        else:
            t = base * math.sqrt(2.0 / max(n // shape[0] if len(shape) > 1 else n, 1))
        out[k] = t.reshape(shape)
    return out


def test_r18_lstm_is_the_dfew_codes_network():
    """Same key names and shapes as the official file, its parameter count, and its logits on the same weights."""
    model = build_model("r18_lstm", 7).eval()
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == RESLSTM["keys"]
    assert count_params(model)[0] == RESLSTM["params"] == 17_388_871
    model.load_state_dict(dfew_fill(RESLSTM["keys"]))
    x = torch.from_numpy(np.random.RandomState(1234).random_sample((2, 3, 16, 112, 112))).float()
    with torch.no_grad():
        logits = model(x)
    assert torch.allclose(logits, torch.tensor(RESLSTM["logits"]), atol=2e-4), logits


def test_r18_lstm_size_and_both_counters():
    """9.12 GMACs of convs/BN/fc (FlopCounterMode and fvcore agree) + the 3-layer LSTM's 16 x 3,407,872 MACs that
    the profile's recurrent handler adds: 9.18 G at 16x112²."""
    macs = count_macs(build_model("r18_lstm", 7), (3, 16, 112, 112))
    lstm = 16 * (4 * (2048 * 256 + 256 * 256) + 2 * 4 * (256 * 256 + 256 * 256)) / 1e9
    assert macs["fvcore_by_operator_macs"]["lstm"] / 1e9 == pytest.approx(lstm)
    assert macs["gmacs_fvcore"] == pytest.approx(9.12 + lstm, rel=0.002)
    assert macs["flop_disagreement"] < 0.01
    for size in (32, 48, 224):  # the average pool spans the final grid at any size (the official one: 4 at 112²)
        assert build_model("r18_lstm", 7, frames=8, size=size).eval()(torch.rand(1, 3, 8, size, size)).shape == (1, 7)


def test_r18_lstm_loads_a_dfew_checkpoint_as_saved(tmp_path):
    """The DFEW trainer's checkpoint: {'seed','epo','model_state_dict' (DDP 'module.' prefix),
    'optimizer_state_dict'}: every tensor loads through the `dfew` source, nothing missing or unexpected."""
    sd = dfew_fill(RESLSTM["keys"])
    path = tmp_path / "reslstm_fold1_epo042_UAR42.86_WAR53.08.pth"
    torch.save({"seed": 1606000000, "epo": 42, "model_state_dict": {f"module.{k}": v for k, v in sd.items()},
                "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]}}, path)
    model = build_model("r18_lstm", 7)
    rep = apply_init(model, METHODS.get("r18_lstm"), f"dfew:{path}")["report"]
    assert rep["missing"] == [] and rep["unexpected"] == [] and rep["mismatched"] == []
    assert rep["loaded"] == len(sd) and rep["notes"]["epo"] == 42
    assert torch.equal(model.state_dict()["LSTM.weight_ih_l0"], sd["LSTM.weight_ih_l0"])


def test_r18_lstm512_is_the_basicblock_network_with_the_former_dfer_row():
    """The network formerly registered as r18_lstm: timm ResNet-18 + LSTM(512), last step, 13.28 M."""
    model = build_model("r18_lstm512", 7)
    assert isinstance(model.rnn, torch.nn.LSTM) and model.rnn.num_layers == 1 and model.rnn.hidden_size == 512
    assert count_params(model)[0] == 11_176_512 + 4 * (2 * 512 * 512 + 2 * 512) + 512 * 7 + 7
    assert METHODS.get("r18_lstm512").literature == ("ResNet18-LSTM",)
