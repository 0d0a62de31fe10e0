"""I3D-RGB: size measured from piergiaj's / the DFEW code, TF-'SAME' padding by hand, the derived average pool,
piergiaj's rgb_imagenet.pt key names (tests/data/i3d_keys.json) through the `imagenet_kinetics` source, a DFEW-repo
checkpoint through `bench eval --source dfew`, and one real `bench run` on synthetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.api import build_model
from bench.methods.i3d import final_grid, same_padding
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.weights import apply_init
from tests.conftest import bench_cli, tiny_synthetic_run

KEYS = json.loads((Path(__file__).parent / "data" / "i3d_keys.json").read_text())["keys"]


def _piergiaj_state_dict(num_classes: int = 400, batches_tracked: bool = True) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    sd = {}
    for k, shape in KEYS.items():
        if k.endswith("num_batches_tracked"):
            if batches_tracked:
                sd[k] = torch.tensor(7)
            continue
        if k.startswith("logits."):
            shape = [num_classes, *shape[1:]]
        sd[k] = torch.rand(shape) + 0.5 if k.endswith("running_var") else torch.randn(shape) * 0.01
    return sd


@pytest.mark.slow
def test_size_matches_the_official_measurement():
    model = build_model("i3d", 7)
    total, trainable = count_params(model)
    assert abs(total / 12.29e6 - 1) < 0.01 and trainable == total
    assert abs(count_macs(model, (3, 16, 224, 224))["gmacs_fvcore"] / 27.83 - 1) < 0.01
    assert sum(p.numel() for p in build_model("i3d", 400).parameters()) == pytest.approx(12.70e6, rel=0.005)


def test_same_padding_by_hand():
    # k3 s2: size 7 (odd) -> total max(3 - 7 % 2, 0) = 2 -> (1, 1); size 8 -> max(3 - 2, 0) = 1 -> front 0, back 1
    assert same_padding((7,), (3,), (2,)) == [1, 1]
    assert same_padding((8,), (3,), (2,)) == [0, 1]
    # k7 s2 on (16, 224, 224): total 5 everywhere -> front 2, back 3; order (w, w, h, h, t, t) as F.pad wants
    assert same_padding((16, 224, 224), (7, 7, 7), (2, 2, 2)) == [2, 3, 2, 3, 2, 3]
    # k(1,3,3) s(1,2,2) on (8, 112, 112): time no pad, space total 1 -> (0, 1)
    assert same_padding((8, 112, 112), (1, 3, 3), (1, 2, 2)) == [0, 1, 0, 1, 0, 0]
    # k2 s2 on size 1 -> total max(2 - 1, 0) = 1 -> (0, 1)
    assert same_padding((1,), (2,), (2,)) == [0, 1]


@pytest.mark.parametrize(("frames", "size"), [(16, 224), (8, 48), (16, 64), (4, 32), (16, 112)])
def test_average_pool_covers_the_final_grid(frames, size):
    model = build_model("i3d", 5, frames, size).eval()
    seen = {}

    def hook(module, inputs, output):
        seen["in"], seen["out"] = tuple(inputs[0].shape[2:]), tuple(output.shape[2:])

    model.avg_pool.register_forward_hook(hook)
    with torch.no_grad():
        assert model(torch.rand(1, 3, frames, size, size)).shape == (1, 5)
    assert seen["in"] == final_grid(frames, size) and seen["out"] == (1, 1, 1)
    if (frames, size) == (16, 224):
        assert tuple(model.avg_pool.kernel_size) == (2, 7, 7)  # piergiaj's fixed kernel


def test_features_in_training_mode():
    model = build_model("i3d", 5, 8, 48).train()
    out = model(torch.rand(2, 3, 8, 48, 48))
    assert out["logits"].shape == (2, 5) and out["features"].shape == (2, 1024)


def test_key_names_are_piergiajs():
    own = build_model("i3d", 400).state_dict()
    assert {k: list(v.shape) for k, v in own.items()} == KEYS
    bn = build_model("i3d", 7).Conv3d_1a_7x7.bn
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)


@pytest.mark.parametrize("batches_tracked", [True, False])
def test_rgb_imagenet_loads_all_but_the_logits(tmp_path, batches_tracked):
    sd = _piergiaj_state_dict(400, batches_tracked)
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(sd, path)
    model = build_model("i3d", 7)
    report = apply_init(model, METHODS.get("i3d"), f"imagenet_kinetics:{path}")["report"]
    # the 400-way logits are dropped on purpose (the official fine-tune replaces them too) and stay at init
    assert report["notes"]["dropped"] == ["logits.conv3d.bias", "logits.conv3d.weight"]
    assert report["missing"] == ["logits.conv3d.bias", "logits.conv3d.weight"]
    assert report["unexpected"] == [] and report["mismatched"] == []
    assert report["loaded"] == len(KEYS) - 2
    assert ("filled" in report["notes"]) == (not batches_tracked)  # pre-0.4 files: 57 buffers filled with 0
    state = model.state_dict()
    for key in ("Conv3d_1a_7x7.conv3d.weight", "Mixed_4f.b2b.bn.running_var", "Mixed_5c.b3b.conv3d.weight"):
        assert torch.equal(state[key], sd[key])


@pytest.mark.slow
def test_bench_eval_with_a_dfew_repo_checkpoint(tmp_path, data_home):
    sd = _piergiaj_state_dict(7)
    path = tmp_path / "i3d_fold1_epo042_UAR47.61_WAR59.24.pth"
    torch.save({"seed": 1, "epo": 42, "model_state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    proc = bench_cli(["eval", "--checkpoint", str(path), "-m", "i3d", "-d", "synthetic", "--fold", "1",
                      "--source", "dfew", "--workers", "0", "--json",
                      "--set", "data.options.clips_per_class=2", "--set", "data.options.folds=2",
                      "--set", "data.options.resolution=32", "--set", "data.frames=8", "--set", "data.size=32"],
                     tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    ev = json.loads(proc.stdout)
    report = ev["load_report"]
    assert report["missing"] == [] and report["unexpected"] == [] and report["mismatched"] == []
    assert report["loaded"] == len(KEYS)
    assert ev["metrics"]["n_test"] > 0


@pytest.mark.slow
def test_trains_on_synthetic(tmp_path, data_home):
    # 48² keeps a 1x2x2 grid before the last BNs: a last batch of one clip (the DFEW loader keeps it) still trains
    r, _ = tiny_synthetic_run("i3d", tmp_path, data_home, "--batch-size", "2",
                               "--set", "data.options.resolution=48", "--set", "data.frames=8", "--set", "data.size=48")
    assert r["method"] == "i3d" and r["family"] == "3D CNN" and r["profile"]["params_total"] > 12e6
