"""IAL (GCA+IAL): size against the official code's measurement, the official checkpoint names through the weights
source and `bench eval --source`, the intensity-aware loss (the shared term and IAL's criterion) against hand
computations and the official -9999 masking, the GCA frame smoothing, the recipe, and one real synthetic run.

Official key names and shapes: tests/data/ial_official_keys.json (from the official GenerateModel at 16x112²)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.api import build_model
from bench.losses import LOSS_TERMS, criterion_for
from bench.methods import ial
from bench.methods._dsf_layers import GCA
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.spec import resolve_spec
from bench.weights import apply_init
from tests.conftest import bench_cli

KEYS = json.loads((Path(__file__).parent / "data" / "ial_official_keys.json").read_text())["keys"]
OFFICIAL_PARAMS = 19_083_527  # [meas] official GenerateModel, 16x112²
OFFICIAL_GMACS = 5.647  # [meas] fvcore, eval, batch 1
UNUSED_PARAMS = 146_752  # never used by the official forward


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the official names and shapes, 'module.'-prefixed as the official main.py saves."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in KEYS.items():
        counter = name.endswith("num_batches_tracked")
        out["module." + name] = torch.tensor(7, dtype=torch.long) if counter else torch.randn(shape, generator=g)
    return out


@pytest.fixture(scope="module")
def official_size_model():
    return build_model("ial", 7)


def test_size_matches_the_official_code(official_size_model):
    total, trainable = count_params(official_size_model)
    assert total == OFFICIAL_PARAMS and trainable == total  # exact, and within 1% of baselines.md's 19.08 M
    assert abs(total / 19.08e6 - 1) < 0.01
    macs = count_macs(official_size_model, (3, 16, 112, 112))
    assert abs(macs["gmacs_fvcore"] / OFFICIAL_GMACS - 1) < 0.01, macs["gmacs_fvcore"]
    assert macs["flop_disagreement"] < 0.03
    lean = build_model("ial", 7, keep_unused=False)
    assert count_params(lean)[0] == OFFICIAL_PARAMS - UNUSED_PARAMS


def test_official_state_dict_loads_through_the_weights_source(tmp_path, official_size_model):
    sd = official_state_dict()
    path = tmp_path / "pretrain_DFEW.pth"
    torch.save(sd, path)
    model = official_size_model
    record = apply_init(model, METHODS.get("ial"), f"official:{path}")
    report = record["report"]
    assert report["missing"] == [] and report["unexpected"] == [] and report["mismatched"] == []
    assert report["loaded"] == len(KEYS) == len(model.state_dict())
    own = model.state_dict()
    pairs = {
        "s_former.layer2.0.gc.0.weight": "backbone.layer2.0.gca.global_conv.weight",
        "s_former.layer3.0.fc1.0.weight": "backbone.layer3.0.gca.fc1.weight",
        "s_former.layer2.0.AUX_fc.1.weight": "backbone.layer2.0.gca.aux_head.1.weight",
        "s_former.layer4.2.bn2.running_var": "backbone.dynamic.2.bn2.running_var",
        "s_former.patch_embedding.0.weight": "backbone.static_embed.0.weight",
        "s_former.pos_embedding_pos": "backbone.static_pos",
        "s_former.pos_embedding": "temporal_pos",
        "s_former.pos_transformer.layers.1.0.fn.fn.to_qkv.weight": "backbone.static_transformer.blocks.1.attn.qkv.weight",
        "s_former.temporal_transformer.layers.0.1.fn.fn.net.3.bias": "temporal_transformer.blocks.0.mlp.fc2.bias",
        "s_former.temporal_transformer.layers.1.0.fn.norm.weight": "temporal_transformer.blocks.1.norm1.weight",
        "s_former.conv1.3.weight": "backbone.stem.conv1.3.weight",
        "fc_f.weight": "head.weight",
        "s_former.layer1.0.glb.weight": "unused.layer1__0__glb.weight",
        "s_former.bias": "unused.bias",
    }
    for official, port in pairs.items():
        assert torch.equal(own[port], sd["module." + official]), (official, port)
    # the inverse names give back exactly the official key set
    assert set(ial.to_official_names(own)) == set(KEYS)


def test_lean_model_drops_exactly_the_unused_official_tensors(tmp_path):
    path = tmp_path / "pretrain_DFEW.pth"
    torch.save(official_state_dict(), path)
    model = build_model("ial", 7, keep_unused=False)
    report = apply_init(model, METHODS.get("ial"), f"official:{path}")["report"]
    assert report["missing"] == [] and report["unexpected"] == [] and report["mismatched"] == []
    dropped = set(report["notes"]["dropped"])
    expected = {k for k in KEYS if any(k == p or k.startswith(p + ".") for p in ial.UNUSED_OFFICIAL)}
    assert dropped == expected and sum(math.prod(KEYS[k]) for k in dropped) == UNUSED_PARAMS


def test_official_table_is_cut_for_fewer_frames(tmp_path):
    """An official (16-row) checkpoint into an 8-frame model at 112²: the temporal table keeps its first 8 rows."""
    sd = official_state_dict()
    path = tmp_path / "pretrain_DFEW.pth"
    torch.save(sd, path)
    model = build_model("ial", 7, frames=8)
    report = apply_init(model, METHODS.get("ial"), f"official:{path}")["report"]
    assert report["missing"] == [] and report["mismatched"] == [] and report["notes"]["sliced"]
    assert torch.equal(model.temporal_pos, sd["module.s_former.pos_embedding"][:, :8])


@pytest.mark.slow
def test_bench_eval_with_an_official_checkpoint(tmp_path, data_home):
    torch.save(official_state_dict(), tmp_path / "pretrain_DFEW.pth")
    proc = bench_cli(["eval", "--checkpoint", str(tmp_path / "pretrain_DFEW.pth"), "-m", "ial", "-d", "synthetic",
                      "--fold", "1", "--source", "official", "--workers", "0", "--json",
                      "--set", "data.options.clips_per_class=2", "--set", "data.options.folds=2",
                      "--set", "data.options.resolution=32", "--set", "data.frames=16", "--set", "data.size=112"],
                     tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    ev = json.loads(proc.stdout)
    report = ev["load_report"]
    assert report["missing"] == [] and report["unexpected"] == [] and report["loaded"] == len(KEYS)
    assert ev["metrics"]["n_test"] > 0


# ----------------------------------------------------------------------------------------------------------
# the intensity-aware loss


def _official_ial(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """main.py's formulation: -99999 on the target to find j*, -9999 on every other logit, CE (float64 masks)."""
    k = logits.shape[1]
    target_mask = F.one_hot(target, k).double()
    res_max = torch.max(logits + target_mask * -99999, dim=1).indices
    resmax_mask = F.one_hot(res_max, k).double()
    return F.cross_entropy(logits - 9999 * (1 - target_mask - resmax_mask), target)


def test_intensity_aware_loss_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 3.0, 1.0, 2.5], [1.0, 1.0, 4.0, 0.0]])
    target = torch.tensor([0, 3, 1])
    # by hand: j* = 1 (z=1.0) for row 0, j* = 1 (3.0) for row 1, j* = 2 (4.0) for row 2
    expected = (math.log(1 + math.exp(1.0 - 2.0)) + math.log(1 + math.exp(3.0 - 2.5))
                + math.log(1 + math.exp(4.0 - 1.0))) / 3
    value = ial.intensity_aware_loss(logits, F.one_hot(target, 4).float())
    assert value.dtype == torch.float32 and value.item() == pytest.approx(expected, rel=1e-6)
    assert value.item() == pytest.approx(_official_ial(logits, target).item(), rel=1e-6)
    # the target is the argmax of soft targets (label smoothing / mixup), and dict outputs are read as logits
    soft = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7], [0.2, 0.6, 0.1, 0.1]])
    assert ial.intensity_aware_loss({"logits": logits}, soft).item() == pytest.approx(expected, rel=1e-6)


def test_intensity_aware_gradient_matches_the_official_formulation():
    torch.manual_seed(0)
    logits = torch.randn(6, 7, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 7, (6,))
    ours = torch.autograd.grad(ial.intensity_aware_loss(logits, F.one_hot(target, 7).double()), logits)[0]
    theirs = torch.autograd.grad(_official_ial(logits, target), logits)[0]
    assert torch.allclose(ours.double(), theirs, atol=1e-7)
    assert (ours != 0).sum() == 12  # only the target and the largest other logit of each row get a gradient


def test_intensity_aware_is_a_shared_term_for_any_method():
    assert LOSS_TERMS.get("intensity_aware") is ial.intensity_aware_loss
    spec = resolve_spec("r3d18", "synthetic", sets=["model.loss.terms.intensity_aware.weight=0.1"])
    criterion = criterion_for(METHODS.get("r3d18"), spec)
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    targets = F.one_hot(torch.tensor([0]), 4).float()
    loss, parts = criterion(logits, targets)
    ce = -F.log_softmax(logits, -1)[0, 0].item()
    term = 0.1 * math.log(1 + math.exp(-1.0))
    assert parts["intensity_aware"] == pytest.approx(term, rel=1e-6)
    assert loss.item() == pytest.approx(ce + term, rel=1e-6)


def test_ial_criterion_is_ce_plus_aux_plus_ial():
    spec = resolve_spec("ial", "dfew")
    assert spec.model.loss["terms"] == {"intensity_aware": {"weight": 0.1}}
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0]])
    aux2 = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    aux3 = torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, 5.0]], requires_grad=True)
    target = torch.tensor([1, 2])
    loss, parts = criterion_for(METHODS.get("ial"), spec)({"logits": logits, "aux": [aux2, aux3]},
                                                         F.one_hot(target, 3).float())
    ce = F.cross_entropy(logits, target).item()
    aux = 0.05 * F.cross_entropy(aux2, target).item()
    ial_value = (math.log(1 + math.exp(2.0 - 1.0)) + math.log(1 + math.exp(3.0 - 1.0))) / 2
    assert parts["ce"] == pytest.approx(ce, rel=1e-6) and parts["aux"] == pytest.approx(aux, rel=1e-6)
    assert parts["intensity_aware"] == pytest.approx(0.1 * ial_value, rel=1e-6)
    assert loss.item() == pytest.approx(ce + aux + 0.1 * ial_value, rel=1e-6)
    loss.backward()
    assert aux3.grad is not None and torch.count_nonzero(aux3.grad) == 0  # weight 0: a zero (not absent) gradient


# ----------------------------------------------------------------------------------------------------------
# GCA and the model


def test_gca_gate_by_hand():
    """w = 2 sigmoid(fc2(relu(fc1(global conv)))), w' = sqrt(w * mean over the clip's T frames + 1e-5)."""
    torch.manual_seed(0)
    frames, channels, size = 4, 32, 5
    gca = GCA(channels, size, frames, num_classes=3).train()
    x = torch.randn(2 * frames, channels, size, size)
    out, aux = gca(x)
    g = (x * gca.global_conv.weight.view(1, channels, size, size)).sum((2, 3))  # depth-wise conv over the map
    hidden = torch.relu(g @ gca.fc1.weight.view(-1, channels).t())
    w = 2 * torch.sigmoid(hidden @ gca.fc2.weight.view(channels, -1).t())
    w = w.view(2, frames, channels)
    gate = torch.sqrt(w * w.mean(1, keepdim=True) + 1e-5).view(2 * frames, channels, 1, 1)
    assert torch.allclose(out, x * gate, atol=1e-5)
    aux_ref = g.view(2, frames, channels).mean(1) @ gca.aux_head[0].weight.t() @ gca.aux_head[1].weight.t()
    assert torch.allclose(aux, aux_ref, atol=1e-5)
    assert gca.eval()(x)[1] is None  # no aux head at test


def test_clips_are_independent_and_frames_derive_from_the_input():
    """The GCA clip mean and the temporal views use the built T (8 here, 16 in the official code): changing clip 1
    leaves clip 0's logits unchanged; training mode returns the logits and the two aux heads."""
    torch.manual_seed(0)
    model = build_model("ial", 5, frames=8, size=32).eval()
    x = torch.rand(2, 3, 8, 32, 32)
    with torch.no_grad():
        a = model(x)
        x[1] = torch.rand(3, 8, 32, 32)
        b = model(x)
    assert a.shape == (2, 5) and torch.allclose(a[0], b[0], atol=1e-5) and not torch.allclose(a[1], b[1])
    out = model.train()(x)
    assert set(out) == {"logits", "aux", "features"} and [t.shape for t in out["aux"]] == [(2, 5), (2, 5)]
    with pytest.raises(ValueError, match="built for 8 frames"):
        model(torch.rand(1, 3, 16, 32, 32))


def test_official_recipe():
    spec = resolve_spec("ial", "dfew")
    o, t, d = spec.optim, spec.train, spec.data
    assert (o.name, o.lr, o.momentum, o.weight_decay, o.decay_norm_bias) == ("sgd", 1e-3, 0.9, 0.1, True)
    assert (o.schedule, o.step_epochs, o.gamma, o.warmup_epochs) == ("step", 7, 0.5, 0.0)
    assert (t.batch_size, t.selection, t.selection_metric, t.drop_last) == (40, "best_on_test", "war", True)
    assert (d.frames, d.size, d.sampler, d.segment_len, d.test_views) == (16, 112, "segment", 1, 1)
    assert d.rrc_scale == [0.85, 1.0] and d.color_jitter[0] == 0.6 and d.mean is None
    assert spec.model.loss["aux_weights"] == [0.05, 0.0]


@pytest.mark.slow
def test_trains_on_synthetic(tmp_path, data_home):
    bench_cli(["run", "-m", "ial", "-d", "synthetic", "--fold", "1", "--epochs", "1", "--batch-size", "2",
               "--workers", "0", "--no-progress", "--no-latency", "--set", "data.options.clips_per_class=2",
               "--set", "data.options.folds=2", "--set", "data.options.resolution=32", "--set", "data.size=32",
               "--set", "data.frames=8"], tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    (result,) = (tmp_path / "results" / "runs").rglob("result.json")
    r = json.loads(result.read_text())
    assert r["method"] == "ial" and r["status"] == "completed" and r["spec"]["model"]["loss"]["terms"]
    assert r["profile"]["params_total"] > 1e6
