"""MC3-18: torchvision's model size (baselines.md §11 [meas]), the Kinetics-400 source on torchvision's key names, a
DFEW-repo checkpoint through `bench eval --source dfew`, the DFEW-code recipe and its `bench3d` protocol (= r3d18's
recipe), and one real `bench run` on synthetic."""

from __future__ import annotations

import json

import pytest
import torch
from torchvision.models.video import mc3_18 as tv_mc3_18

from bench.api import build_model
from bench.methods._baseline_recipes import resolved_differences
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.spec import resolve_spec
from bench.weights import apply_init
from tests.conftest import bench_cli, tiny_synthetic_run


def test_size_matches_torchvision_measurement():
    model = build_model("mc3_18", 7)
    total, trainable = count_params(model)
    assert abs(total / 11.49e6 - 1) < 0.01 and trainable == total
    assert abs(count_macs(model, (3, 16, 112, 112))["gmacs_fvcore"] / 43.40 - 1) < 0.01


def test_same_network_as_torchvision_and_features_in_training():
    torch.manual_seed(0)
    ref = tv_mc3_18(num_classes=7).eval()
    model = build_model("mc3_18", 7)
    assert model.load_state_dict(ref.state_dict()) is not None  # strict: identical key names and shapes
    model.eval()
    x = torch.rand(2, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)
    model.train()
    out = model(x)
    assert out["logits"].shape == (2, 7) and out["features"].shape == (2, 512)


def test_dfew_init_reinitialises_only_the_linear_layer():
    torch.manual_seed(0)
    a = build_model("mc3_18", 7)
    torch.manual_seed(0)
    b = build_model("mc3_18", 7, dfew_init=False)
    assert torch.equal(a.stem[0].weight, b.stem[0].weight)  # Conv3d keeps torchvision's init
    # torchvision: normal(0, 0.01); DFEW: kaiming_normal(fan_in, relu) -> std sqrt(2 / 512) = 0.0625
    assert abs(b.fc.weight.std().item() - 0.01) < 0.002 and abs(a.fc.weight.std().item() - 0.0625) < 0.006


def test_kinetics_state_dict_loads_all_but_the_head(tmp_path):
    torch.manual_seed(0)
    kinetics = tv_mc3_18(num_classes=400).state_dict()  # the file's key names and shapes
    path = tmp_path / "mc3_18-a90a0ba3.pth"
    torch.save(kinetics, path)
    model = build_model("mc3_18", 7)
    report = apply_init(model, METHODS.get("mc3_18"), f"kinetics400:{path}")["report"]
    assert report["unexpected"] == [] and report["missing"] == []
    assert sorted(k.split(":")[0] for k in report["mismatched"]) == ["fc.bias", "fc.weight"]
    assert report["loaded"] == len(kinetics) - 2
    assert torch.equal(model.state_dict()["layer2.0.conv1.0.weight"], kinetics["layer2.0.conv1.0.weight"])
    assert model.layer2[0].conv1[0].weight.shape[2] == 1  # Conv3DNoTemporal (1x3x3) in stage 2


def test_recipes_dfew_code_and_bench3d():
    spec = resolve_spec("mc3_18", "dfew")
    assert spec.protocol == "dfew_code"
    o, d, t = spec.optim, spec.data, spec.train
    assert (o.name, o.lr, o.weight_decay, o.schedule) == ("adamw", 1e-3, 0.0, "constant")
    assert (d.frames, d.size, d.flip, d.rrc_scale, d.mean) == (16, 112, False, [1.0, 1.0], None)
    assert (t.batch_size, t.epochs, t.selection, t.drop_last) == (32, 500, "best_on_test", False)
    assert spec.reg.label_smoothing == 0.0 and d.sampler == "dfew"
    # bench3d = exactly the recipe r3d18 / r2plus1d18 resolve to under it
    for dataset in ("dfew", "ferv39k", "mafw"):
        assert resolved_differences("mc3_18", dataset, "bench3d", "r3d18", "bench3d") == {}
    assert resolved_differences("mc3_18", "synthetic", "bench3d", "r3d18", "bench3d") == {"train.epochs": (7, 10)}


def _dfew_checkpoint(path):
    torch.manual_seed(1)
    sd = tv_mc3_18(num_classes=7).state_dict()
    torch.save({"seed": 1234, "epo": 57, "model_state_dict": {f"module.{k}": v for k, v in sd.items()},
                "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]}}, path)
    return sd


@pytest.mark.slow
def test_bench_eval_with_a_dfew_repo_checkpoint(tmp_path, data_home):
    path = tmp_path / "mc3_18_fold1_epo057_UAR46.50_WAR57.02.pth"
    sd = _dfew_checkpoint(path)
    proc = bench_cli(["eval", "--checkpoint", str(path), "-m", "mc3_18", "-d", "synthetic", "--fold", "1",
                      "--source", "dfew", "--workers", "0", "--json",
                      "--set", "data.options.clips_per_class=2", "--set", "data.options.folds=2",
                      "--set", "data.options.resolution=32", "--set", "data.frames=8", "--set", "data.size=32"],
                     tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    ev = json.loads(proc.stdout)
    report = ev["load_report"]
    assert report["missing"] == [] and report["unexpected"] == [] and report["mismatched"] == []
    assert report["loaded"] == len(sd) and report["notes"]["epo"] == 57
    assert ev["metrics"]["n_test"] > 0


@pytest.mark.slow
def test_trains_on_synthetic(tmp_path, data_home):
    r, _ = tiny_synthetic_run("mc3_18", tmp_path, data_home, "--batch-size", "2",
                               "--set", "data.options.resolution=32", "--set", "data.frames=4", "--set", "data.size=32")
    assert r["method"] == "mc3_18" and r["family"] == "3D CNN" and r["profile"]["params_total"] > 11e6
