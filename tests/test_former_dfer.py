"""Former-DFER: size against the official code's measurement (notes former_logo §1.5), the official checkpoint
names (tests/data/former_dfer_keys.json) through the weights source, the layer maths against a functional
transcription of the official layer (lucidrains-style names), the recipe and sampler of the official code, and
one real `bench run` / `bench eval --source official` on synthetic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.api import build_model
from bench.data.sampling import sample_test
from bench.methods.former_dfer import official_to_port
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.spec import resolve_spec
from bench.weights import apply_init, read_checkpoint
from tests.conftest import bench_cli

KEYS = json.loads((Path(__file__).parent / "data" / "former_dfer_keys.json").read_text())["keys"]
TINY = ["--set", "data.options.clips_per_class=2", "--set", "data.options.folds=2", "--set",
        "data.options.resolution=32", "--set", "data.frames=4", "--set", "data.size=32", "--workers", "0"]


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(s, generator=g) * 0.1)
            for k, s in KEYS.items()}


def test_size_matches_the_official_code():
    model = build_model("former_dfer", 7)
    total, trainable = count_params(model)
    assert total == trainable == 18_031_943
    macs = count_macs(model, (3, 16, 112, 112))
    assert abs(macs["gmacs_fvcore"] / 8.3187 - 1) < 0.01
    assert "matmul" in macs["fvcore_by_operator_macs"]  # attention visible to the counter


def test_key_map_covers_every_official_key_with_its_shape():
    own = build_model("former_dfer", 7).state_dict()
    mapped = {official_to_port(k): v for k, v in KEYS.items()}
    assert len(mapped) == len(KEYS) == len(own) == 169
    assert {k: list(v.shape) for k, v in own.items()} == mapped


def test_training_checkpoint_loads_everything(tmp_path):
    sd = official_state_dict()
    path = tmp_path / "former_dfer_fd1.pth"
    # the training checkpoint without its pickled RecorderMeter (see the method docstring)
    torch.save({"epoch": 90, "state_dict": {f"module.{k}": v for k, v in sd.items()}, "best_acc": torch.tensor(66.21),
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "momentum": 0.9, "params": [0, 1]}]}}, path)
    model = build_model("former_dfer", 7)
    report = apply_init(model, METHODS.get("former_dfer"), f"official:{path}")["report"]
    assert report["missing"] == [] and report["unexpected"] == [] and report["mismatched"] == []
    assert report["loaded"] == 169 and report["notes"]["epoch"] == 90
    own = model.state_dict()
    pairs = {"t_former.spatial_transformer.layers.2.0.fn.fn.to_qkv.weight": "t_former.transformer.blocks.2.attn.qkv.weight",
             "t_former.spatial_transformer.layers.1.0.fn.fn.to_out.0.bias": "t_former.transformer.blocks.1.attn.proj.bias",
             "s_former.spatial_transformer.layers.0.1.fn.fn.net.3.weight": "s_former.transformer.blocks.0.mlp.fc2.weight",
             "s_former.spatial_transformer.layers.0.1.fn.norm.weight": "s_former.transformer.blocks.0.norm2.weight",
             "s_former.layer3.0.downsample.0.weight": "s_former.layer3.0.downsample.0.weight",
             "t_former.cls_token": "t_former.cls_token", "s_former.pos_embedding": "s_former.pos_embedding"}
    for theirs, ours in pairs.items():
        assert torch.equal(own[ours], sd[theirs]), ours


class RecorderMeter:
    """Stands in for the official __main__.RecorderMeter pickled into every training checkpoint."""

    def __init__(self):
        self.epoch_losses = [1.0]


def test_the_released_checkpoint_format_with_its_pickled_recorder_loads(tmp_path):
    """The training checkpoint as the official script writes it: the core reads it with weights_only=True and
    replaces the RecorderMeter by an inert record (notes['opaque_objects'])."""
    sd = official_state_dict(3)
    path = tmp_path / "model_best.pth"
    torch.save({"epoch": 83, "state_dict": {f"module.{k}": v for k, v in sd.items()}, "best_acc": torch.tensor(64.08),
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]}, "recorder": RecorderMeter()},
               path)
    state, meta = read_checkpoint(path)
    assert set(state) == set(KEYS) and any("RecorderMeter" in o for o in meta["opaque_objects"])
    model = build_model("former_dfer", 7)
    report = apply_init(model, METHODS.get("former_dfer"), f"official:{path}")["report"]
    assert report["missing"] == [] and report["unexpected"] == [] and report["loaded"] == 169
    assert torch.equal(model.state_dict()["t_former.pos_embedding"], sd["t_former.pos_embedding"])


def _official_layer(x: torch.Tensor, sd: dict, p: str, heads: int) -> torch.Tensor:
    """One official transformer layer from its state_dict (facts: pre-norm, qkv without bias, tanh GELU)."""
    d = x.shape[-1]
    h = F.layer_norm(x, (d,), sd[p + "0.fn.norm.weight"], sd[p + "0.fn.norm.bias"], eps=1e-5)
    q, k, v = (h @ sd[p + "0.fn.fn.to_qkv.weight"].t()).chunk(3, dim=-1)
    q, k, v = (t.reshape(*t.shape[:2], heads, -1).transpose(1, 2) for t in (q, k, v))
    attn = torch.softmax(torch.einsum("bhid,bhjd->bhij", q, k) * q.shape[-1] ** -0.5, dim=-1)
    out = torch.einsum("bhij,bhjd->bhid", attn, v).transpose(1, 2).reshape(x.shape)
    x = x + out @ sd[p + "0.fn.fn.to_out.0.weight"].t() + sd[p + "0.fn.fn.to_out.0.bias"]
    h = F.layer_norm(x, (d,), sd[p + "1.fn.norm.weight"], sd[p + "1.fn.norm.bias"], eps=1e-5)
    h = h @ sd[p + "1.fn.fn.net.0.weight"].t() + sd[p + "1.fn.fn.net.0.bias"]
    h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h.pow(3))))
    return x + h @ sd[p + "1.fn.fn.net.3.weight"].t() + sd[p + "1.fn.fn.net.3.bias"]


def test_transformers_compute_the_official_maths(tmp_path):
    sd = official_state_dict(1)
    path = tmp_path / "bare.pth"
    torch.save(sd, path)
    model = build_model("former_dfer", 7).eval()
    apply_init(model, METHODS.get("former_dfer"), f"official:{path}")
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        feats = torch.randn(2, 16, 512, generator=g)  # S-Former outputs of 16 frames
        x = torch.cat([sd["t_former.cls_token"].expand(2, -1, -1), feats], 1) + sd["t_former.pos_embedding"]
        for i in range(3):
            x = _official_layer(x, sd, f"t_former.spatial_transformer.layers.{i}.", heads=8)
        ref = x[:, 0] @ sd["fc.weight"].t() + sd["fc.bias"]
        torch.testing.assert_close(model.fc(model.t_former(feats)), ref, atol=1e-4, rtol=1e-4)
        tokens = torch.randn(3, 49, 256, generator=g)
        ref_s = _official_layer(tokens, sd, "s_former.spatial_transformer.layers.0.", heads=8)
        torch.testing.assert_close(model.s_former.transformer(tokens), ref_s, atol=1e-4, rtol=1e-4)


def test_recipe_is_the_official_one():
    spec = resolve_spec("former_dfer", "dfew")
    o, t, d = spec.optim, spec.train, spec.data
    assert (o.name, o.lr, o.momentum, o.weight_decay, o.decay_norm_bias) == ("sgd", 0.01, 0.9, 1e-4, True)
    assert (o.schedule, o.step_epochs, o.gamma) == ("step", 40, 0.1)
    assert (t.epochs, t.batch_size, t.drop_last, t.selection, t.selection_metric) == (100, 32, True, "best_on_test", "war")
    assert (d.frames, d.size, d.sampler, d.segment_len, d.pad, d.mean, d.rrc_scale) == \
        (16, 112, "tsn", 2, "zero", None, [0.08, 1.0])
    assert d.options == {"variant": "clip_224x224"}  # the official lists name the full-length frames
    assert spec.reg.label_smoothing == 0.0 and resolve_spec("former_dfer", "ferv39k").optim == o


def test_test_frames_follow_the_official_rule():
    """Official test offsets: tick = (n-1)/8, offset_i = int(tick/2 + i*tick), frames offset_i and offset_i + 1
    (the whole rule, short clips and training included, is tests/test_sampling.py's)."""
    cfg = resolve_spec("former_dfer", "dfew").data
    for n in range(10, 90):
        tick = (n - 1) / 8
        official = [min(int(tick / 2 + i * tick) + d, n - 1) for i in range(8) for d in range(2)]
        assert sample_test(n, cfg) == [official], n


def _official_names(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our state_dict renamed to the official keys (for a model built at another input size)."""
    back = {official_to_port(k): k for k in KEYS}
    return {back[k]: v for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_run_and_eval_with_the_official_source_on_synthetic(tmp_path, data_home):
    env = {"DFER_DATA_HOME": str(data_home)}
    bench_cli(["run", "-m", "former_dfer", "-d", "synthetic", "--fold", "1", "--epochs", "1", "--batch-size", "2",
               "--no-progress", "--no-latency", *TINY], tmp_path, env, check=True)
    (result,) = (tmp_path / "results" / "runs").rglob("result.json")
    r = json.loads(result.read_text())
    assert r["method"] == "former_dfer" and r["family"] == "CNN+Transformer"
    assert abs(r["profile"]["params_total"] - 18_031_943) < 600_000  # position tables follow the 4x32² input

    torch.manual_seed(0)
    port = build_model("former_dfer", 7, 4, 32)
    path = tmp_path / "former_dfer_dfew_fd1.pth"
    torch.save({"epoch": 87, "state_dict": {f"module.{k}": v for k, v in _official_names(port).items()},
                "best_acc": torch.tensor(20.0), "optimizer": {"state": {}, "param_groups": []},
                "recorder": RecorderMeter()}, path)
    proc = bench_cli(["eval", "--checkpoint", str(path), "-m", "former_dfer", "-d", "synthetic", "--fold", "1",
                      "--source", "official", "--json", *TINY], tmp_path, env, check=True)
    ev = json.loads(proc.stdout)
    rep = ev["load_report"]
    assert rep["missing"] == [] and rep["unexpected"] == [] and rep["loaded"] == 169 and rep["notes"]["epoch"] == 87
    assert ev["metrics"]["n_test"] > 0
