"""S2D port: sizes and MACs against the official code, the three weights sources on state_dicts carrying the
official key names and shapes (tests/data/s2d_*.json), the Emotion-Anchor SDL loss against a hand computation
of the official SDL module, the landmark-net input path, the init quirk, the recipes, and one real run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.api import build_model
from bench.errors import BenchError
from bench.methods import _s2d_layers as layers
from bench.methods import s2d
from bench.optim import param_groups
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.spec import resolve_spec
from bench.weights import apply_init, load_weights
from tests.conftest import bench_cli

DATA = Path(__file__).parent / "data"
OFFICIAL = json.loads((DATA / "s2d_official_keys.json").read_text())["keys"]  # S2D state_dict, 7 classes
AFFECTNET = json.loads((DATA / "s2d_affectnet_keys.json").read_text())["keys"]  # what the SFER loader consumes
MOBILEFACENET = json.loads((DATA / "s2d_mobilefacenet_keys.json").read_text())["keys"]
TRAINABLE_PREFIXES = ("patch_embed_prompt.", "prompt_blocks.", "prompt_norms.", "temporal_embedding", "ln_post.",
                      "head.")


@pytest.fixture
def fast_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain normal draws instead of timm's trunc-normal (most of a ViT-B build) where the init does not matter."""
    monkeypatch.setattr(layers, "trunc_normal_", lambda t, mean=0.0, std=1.0, **_: t.data.normal_(mean, std))


def _tensors(keys: dict, dtype: torch.dtype = torch.float32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of the given names and shapes, scaled so that a forward pass stays finite."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in keys.items():
        draw = torch.randn(shape, generator=g)
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7)
            continue
        if "running_var" in k:
            draw = torch.rand(shape, generator=g) + 0.5
        elif len(shape) >= 2 and not k.endswith(("pos_embed", "cls_token", "temporal_embedding")):
            draw = draw / math.sqrt(math.prod(shape[1:]))
        elif len(shape) == 1 and k.endswith(".weight"):
            draw = 1.0 + 0.1 * draw
        else:
            draw = 0.02 * draw
        out[k] = draw.to(dtype)
    return out


def _port_name(k: str) -> str:
    return "temporal_pos_embed" if k == "temporal_embedding" else k


# ----------------------------------------------------------------------------------------------------------
# sizes


@pytest.mark.parametrize(("classes", "total", "trainable"), [(7, 95_055_571, 9_258_451), (11, 95_058_647, 9_261_527)])
def test_parameter_counts_and_frozen_set(classes: int, total: int, trainable: int, fast_init: None) -> None:
    model = build_model("s2d", classes)
    assert count_params(model) == (total, trainable)  # exact (the tolerance is 1%)
    assert classes != 7 or (total, trainable) == (s2d.PARAMS_TOTAL, s2d.PARAMS_TRAINABLE)
    official_rule = {n for n in OFFICIAL if n.startswith(TRAINABLE_PREFIXES)}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {_port_name(n) for n in official_rule}
    # the landmark net: buffers (a separate frozen model in the official code), 1,007,248 weights
    assert not any(n.startswith("landmark.") for n, _ in model.named_parameters())
    weights = sum(b.numel() for n, b in model.named_buffers() if n.startswith("landmark.")
                  and not n.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert weights == s2d.LANDMARK_WEIGHTS


def test_state_dict_keys_are_the_official_ones(fast_init: None) -> None:
    sd = build_model("s2d", 7).state_dict()
    s2d_keys = {k: list(v.shape) for k, v in sd.items() if not k.startswith("landmark.")}
    assert s2d_keys == {_port_name(k): v for k, v in OFFICIAL.items()}
    lmk = {k[len("landmark."):]: list(v.shape) for k, v in sd.items() if k.startswith("landmark.")}
    assert lmk == MOBILEFACENET


def _fvcore_total(module: torch.nn.Module, inputs: tuple) -> tuple[int, dict]:
    from fvcore.nn import FlopCountAnalysis

    for m in module.modules():
        if isinstance(getattr(m, "fused_attn", None), bool):
            m.fused_attn = False
    with torch.no_grad():
        fca = FlopCountAnalysis(module, inputs)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        return int(fca.total()), {str(k): int(v) for k, v in fca.by_operator().items()}


class _WithoutLandmark(torch.nn.Module):
    """S2D on precomputed landmark maps: the figure measured from the official code (landmark net excluded)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor, lmk: torch.Tensor) -> torch.Tensor:
        return self.model.head(self.model.forward_features(frames, lmk).view(1, frames.shape[0], -1))[0]


@pytest.mark.slow
def test_gmacs_at_the_official_input() -> None:
    """310.72 G (S2D, attention counted) + 3.64 G (landmark net, 16 frames at 112²); the profile counts the whole
    forward (313.94 G: fvcore's tracer prunes the landmark head whose output is discarded)."""
    model = build_model("s2d", 7).eval()
    macs = count_macs(model, (3, 16, 224, 224))
    whole = macs["gmacs_fvcore"]
    assert abs(whole / (s2d.GMACS_S2D + s2d.GMACS_LANDMARK) - 1) < 0.01
    assert abs(whole / (s2d.GMACS_S2D + s2d.GMACS_LANDMARK_TO_CONV4) - 1) < 0.001
    assert macs["flop_disagreement"] < 0.03

    alone, by_op = _fvcore_total(_WithoutLandmark(model), (torch.randn(16, 3, 224, 224), torch.randn(16, 128, 14, 14)))
    assert abs(alone / 1e9 / s2d.GMACS_S2D - 1) < 0.01
    assert abs(by_op["matmul"] / 1e9 / 11.68 - 1) < 0.01  # 12 trunk + 12 adapter attentions per frame
    assert abs(by_op["linear"] / 1e9 / 295.46 - 1) < 0.01

    landmark = count_macs(model.landmark, (3, 112, 112))["gmacs_fvcore"] * 16
    assert abs(landmark / s2d.GMACS_LANDMARK - 1) < 0.01


# ----------------------------------------------------------------------------------------------------------
# the landmark net and its input


def test_landmark_net_is_frozen_in_eval_and_sees_the_model_input(fast_init: None) -> None:
    model = build_model("s2d", 7, 4, 32).train()
    assert not model.landmark.training and model.training and not model.landmark.run_head
    frames = torch.randn(3, 3, 32, 32)
    ref = F.interpolate(frames, size=(16, 16), mode="bilinear", align_corners=True)
    for name in ("conv1", "conv2_dw", "conv_23", "conv_3", "conv_34", "conv_4"):
        ref = getattr(model.landmark, name)(ref)
    torch.testing.assert_close(model.landmark_features(frames), ref)
    assert ref.shape == (3, 128, 2, 2)

    fixed = build_model("s2d", 7, 4, 32, landmark_input="bgr01")
    fixed.load_state_dict(model.state_dict())
    mean, std = torch.tensor(layers.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(layers.IMAGENET_STD).view(1, 3, 1, 1)
    bgr = (frames * std + mean).flip(1)
    torch.testing.assert_close(fixed.landmark_features(frames), _conv4(fixed, bgr))
    assert build_model("s2d", 7, 2, 224).landmark.run_head  # the official input: the discarded head runs too


def _conv4(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = F.interpolate(x, size=(model.landmark_size,) * 2, mode="bilinear", align_corners=True)
    for name in ("conv1", "conv2_dw", "conv_23", "conv_3", "conv_34", "conv_4"):
        x = getattr(model.landmark, name)(x)
    return x


def test_forward_shapes_and_training_outputs(fast_init: None) -> None:
    model = build_model("s2d", 5, 4, 48).train()
    out = model(torch.randn(2, 3, 4, 48, 48))
    assert out["logits"].shape == (2, 5) and out["features"].shape == (2, 768)
    out["logits"].sum().backward()
    unused = sorted(n for n, p in model.named_parameters() if p.requires_grad and p.grad is None)
    assert unused == ["prompt_norms.11.bias", "prompt_norms.11.weight"]  # created and counted, never used
    with pytest.raises(ValueError, match="frames"):
        model(torch.randn(1, 3, 8, 48, 48))


# ----------------------------------------------------------------------------------------------------------
# init


def test_init_matches_the_official_constructor() -> None:
    model = build_model("s2d", 7, 4, 32)
    block = model.prompt_blocks[3]
    fc2 = block.TMA.T_Adapter.D_fc2.weight
    assert 0.018 < fc2.std().item() < 0.022  # the zero init is overwritten (quirk kept by default)
    assert abs(block.conv0_0.weight.std().item() - math.sqrt(2 / (768 + 8))) < 0.004  # xavier-uniform
    assert block.conv1x1.bias.abs().max().item() <= 1 / math.sqrt(8) and block.conv1x1.bias.abs().max() > 0.2
    assert block.fovea.smooth.item() == 10.0 and torch.all(block.TMA.T_Adapter.D_fc1.bias == 0)
    assert block.TMA.norm.eps == 1e-5 and model.prompt_norms[0].eps == 1e-6 and model.ln_post.eps == 1e-6
    assert 0.018 < model.head.fc_cls.weight.std().item() < 0.022
    zero = build_model("s2d", 7, 4, 32, adapter_init="zero")
    assert all(torch.all(b.TMA.T_Adapter.D_fc2.weight == 0) and torch.all(b.TMA.S_Adapter.D_fc2.weight == 0)
               for b in zero.prompt_blocks)


def test_weight_decay_groups_follow_the_official_no_decay_list(fast_init: None) -> None:
    model = build_model("s2d", 7, 4, 32)
    spec = resolve_spec("s2d", "dfew")
    decayed = {id(p) for g in param_groups(model, spec.optim) if g["weight_decay"] > 0 for p in g["params"]}
    named = dict(model.named_parameters())
    assert id(named["temporal_pos_embed"]) not in decayed  # official no_weight_decay(): temporal_embedding
    assert id(named["prompt_blocks.0.fovea.smooth"]) not in decayed and id(named["ln_post.weight"]) not in decayed
    assert id(named["prompt_blocks.0.TMA.T_Adapter.D_fc1.weight"]) in decayed
    assert id(named["prompt_blocks.0.conv0_0.weight"]) in decayed and id(named["head.fc_cls.weight"]) in decayed
    assert all(p.requires_grad for g in param_groups(model, spec.optim) for p in g["params"])


# ----------------------------------------------------------------------------------------------------------
# weights


def _affectnet_file(tmp_path: Path, dtype: torch.dtype = torch.float32) -> tuple[Path, dict]:
    """Pretrain-AffectNet-7.pth as the loader sees it: 'model_state_dict', `norm.*`, an embedded landmark net and
    the SFER classifier heads (dropped by the official loader / not loaded)."""
    sd = _tensors(AFFECTNET, dtype)
    sd.update({"landmark.backbone.conv1.conv.weight": torch.randn(64, 3, 3, 3), "head.weight": torch.randn(7, 768),
               "head.bias": torch.randn(7), "weak_head.weight": torch.randn(7, 768)})
    path = tmp_path / "Pretrain-AffectNet-7.pth"
    torch.save({"model_state_dict": sd, "epoch": 9}, path)
    return path, sd


def _mobilefacenet_file(tmp_path: Path) -> tuple[Path, dict]:
    sd = _tensors(MOBILEFACENET, seed=1)
    path = tmp_path / "mobilefacenet_model_best.pth.tar"
    torch.save({"state_dict": sd, "epoch": 30, "best_prec1": 0.5}, path)
    return path, sd


def test_affectnet_source_loads_the_static_model(tmp_path: Path, fast_init: None) -> None:
    path, sd = _affectnet_file(tmp_path)
    model = build_model("s2d", 7)
    head_before = model.head.fc_cls.weight.clone()
    with pytest.warns(UserWarning, match="landmark net is random"):
        record = apply_init(model, METHODS.get("s2d"), f"affectnet:{path}")
    report = record["report"]
    assert record["label"] == "affectnet" and report["unexpected"] == [] and report["mismatched"] == []
    assert report["loaded"] == len(AFFECTNET)
    # what the SFER file does not hold (temporal modules, head) and the landmark net (no landmark_weights given)
    tma = {_port_name(k) for k in OFFICIAL if ".TMA." in k or k in ("temporal_embedding", "head.fc_cls.weight",
                                                                    "head.fc_cls.bias")}
    landmark = {f"landmark.{k}" for k in MOBILEFACENET}
    assert set(report["missing"]) == tma | landmark
    notes = report["notes"]
    assert notes["dropped_landmark_keys"] == 1 and sorted(notes["dropped_head"]) == ["head.bias", "head.weight",
                                                                                      "weak_head.weight"]
    assert notes["epoch"] == 9 and "NOT LOADED" in notes["landmark"]
    own = model.state_dict()
    assert torch.equal(own["ln_post.weight"], sd["norm.weight"]) and torch.equal(own["pos_embed"], sd["pos_embed"])
    assert torch.equal(own["blocks.11.mlp.fc2.weight"], sd["blocks.11.mlp.fc2.weight"])
    assert torch.equal(own["prompt_blocks.4.fovea.smooth"], sd["prompt_blocks.4.fovea.smooth"])
    assert torch.equal(own["patch_embed_prompt.proj.weight"], sd["patch_embed_prompt.proj.weight"])
    assert torch.equal(model.head.fc_cls.weight, head_before)


def test_affectnet_plus_landmark_weights_give_the_full_model(tmp_path: Path, fast_init: None) -> None:
    """The second file is a builder argument; the converter then reports the landmark net as provided."""
    mfn_path, mfn = _mobilefacenet_file(tmp_path)
    path, _ = _affectnet_file(tmp_path)
    model = build_model("s2d", 7, landmark_weights=str(mfn_path))
    assert model.landmark_source["path"] == str(mfn_path)
    assert torch.equal(model.landmark.conv_4.model[5].project.bn.running_var, mfn["conv_4.model.5.project.bn.running_var"])
    assert torch.equal(model.landmark.output_layer.linear.weight, mfn["output_layer.linear.weight"])
    report = apply_init(model, METHODS.get("s2d"), f"affectnet:{path}")["report"]
    assert not any(k.startswith("landmark.") for k in report["missing"])
    assert str(mfn_path) in report["notes"]["landmark"]
    assert torch.equal(model.landmark.conv1.prelu.weight, mfn["conv1.prelu.weight"])  # not overwritten


def test_affectnet_converter_rules(fast_init: None) -> None:
    model = build_model("s2d", 7, 4, 32)
    sd = _tensors(AFFECTNET)
    del sd["patch_embed_prompt.proj.weight"]
    with pytest.raises(KeyError, match="patch_embed_prompt"):  # the official loader requires it
        s2d.convert_affectnet(dict(sd), model, {})
    sd["patch_embed_prompt.proj.weight"] = torch.randn(768, 64, 1, 1)  # another landmark net: dropped, as official
    notes: dict = {}
    out = s2d.convert_affectnet(sd, model, notes)
    assert "patch_embed_prompt.proj.weight" not in out and "patch_embed_prompt.proj.bias" in out
    assert out["pos_embed"].shape == (1, 5, 768) and notes["resized"]  # 224-grid table into the 32² model


def test_mobilefacenet_source_and_build_time_loader(tmp_path: Path, fast_init: None) -> None:
    path, sd = _mobilefacenet_file(tmp_path)
    model = build_model("s2d", 7, 4, 32)
    report = apply_init(model, METHODS.get("s2d"), f"mobilefacenet:{path}")["report"]
    assert report["loaded"] == len(MOBILEFACENET) and report["unexpected"] == [] and report["mismatched"] == []
    assert all(not k.startswith("landmark.") for k in report["missing"])
    assert torch.equal(model.landmark.conv_34.conv_dw.conv.weight, sd["conv_34.conv_dw.conv.weight"])
    old = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}  # older files: still load
    torch.save({"state_dict": old}, tmp_path / "old.pth")
    build_model("s2d", 7, 4, 32, landmark_weights=str(tmp_path / "old.pth"))
    torch.save({"state_dict": {k: v for k, v in sd.items() if not k.startswith("conv_5.")}}, tmp_path / "bad.pth")
    with pytest.raises(BenchError, match="MobileFaceNet"):
        build_model("s2d", 7, 4, 32, landmark_weights=str(tmp_path / "bad.pth"))


@pytest.fixture(scope="module")
def finetuned_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """An official fine-tuned checkpoint (as re-saved without 'args'; fp16 to keep the file small) and the
    MobileFaceNet file."""
    tmp = tmp_path_factory.mktemp("s2d_ft")
    sd = _tensors(OFFICIAL, torch.float16, seed=2)
    path = tmp / "s2d_dfew_fold1.pth"
    torch.save({"model": sd, "optimizer": None, "epoch": 57, "scaler": {"scale": 65536.0}}, path)
    mfn, _ = _mobilefacenet_file(tmp)
    return path, mfn, sd


def test_finetuned_source_at_the_official_size(finetuned_files: tuple, fast_init: None) -> None:
    path, mfn, sd = finetuned_files
    model = build_model("s2d", 7, landmark_weights=str(mfn))
    report = load_weights(model, path, s2d.WEIGHTS["finetuned"], "finetuned")
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert report.notes["epoch"] == 57 and str(mfn) in report.notes["landmark"]
    own = model.state_dict()
    assert torch.equal(own["temporal_pos_embed"], sd["temporal_embedding"].float())
    assert torch.equal(own["prompt_blocks.7.TMA.T_Adapter.attn.qkv.weight"],
                       sd["prompt_blocks.7.TMA.T_Adapter.attn.qkv.weight"].float())
    assert torch.equal(own["head.fc_cls.bias"], sd["head.fc_cls.bias"].float())


@pytest.mark.slow
def test_bench_eval_with_a_finetuned_checkpoint(finetuned_files: tuple, tmp_path: Path, data_home: Path) -> None:
    """`bench eval --source finetuned` of a 224² official checkpoint at the synthetic 8x32² input: embeddings
    resized, landmark net from model.kwargs.landmark_weights, nothing missing (eval refuses partial models)."""
    path, mfn, _ = finetuned_files
    proc = bench_cli(["eval", "--checkpoint", str(path), "-m", "s2d", "-d", "synthetic", "--fold", "1", "--source",
                      "finetuned", "--workers", "0", "--json", "--set", "data.options.clips_per_class=2",
                      "--set", "data.options.folds=2", "--set", "data.options.resolution=32",
                      "--set", f"model.kwargs.landmark_weights={mfn}"],
                     tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    ev = json.loads(proc.stdout[proc.stdout.index("{"):])
    report = ev["load_report"]
    assert report["missing"] == [] and report["unexpected"] == [] and report["mismatched"] == []
    assert len(report["notes"]["resized"]) == 2 and ev["metrics"]["n_test"] > 0


# ----------------------------------------------------------------------------------------------------------
# Emotion-Anchor self-distillation


def _official_sdl_target(features: torch.Tensor, queue: torch.Tensor, probe: torch.Tensor, k: int) -> torch.Tensor:
    """SDL.forward / cacu_cosine_similarity, sample by sample."""
    c = queue.shape[0]
    out = torch.zeros(features.shape[0], c)
    for i in range(features.shape[0]):
        x = features[i].expand(c, queue.shape[1], -1)
        sim = F.cosine_similarity(F.normalize(queue, dim=2), F.normalize(x, dim=2), dim=2)
        top, idx = sim.topk(k, dim=1)
        p = (top.unsqueeze(2) * probe[torch.arange(c).unsqueeze(1), idx]).reshape(-1, c)
        out[i] = p.sum(0) / top.sum()
    return out


def test_sdl_soft_target_by_hand() -> None:
    g = torch.Generator().manual_seed(0)
    queue, probe = torch.rand(7, 16, 768, generator=g), torch.rand(7, 16, 7, generator=g)
    features = torch.randn(5, 768, generator=g)
    torch.testing.assert_close(s2d.sdl_soft_target(features, queue, probe, 2),
                               _official_sdl_target(features, queue, probe, 2), atol=1e-5, rtol=1e-5)


def test_sdl_weight_schedule() -> None:
    table = {0: 0.0, 29: 0.0, 30: 0.01, 49: 0.01, 50: 0.1, 59: 0.1, 60: 0.5, 79: 0.5, 80: 1.0, 99: 1.0}
    assert {e: s2d.sdl_weight(e) for e in table} == table


def _outputs(seed: int, b: int = 4, c: int = 7) -> tuple[dict, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits, features = torch.randn(b, c, generator=g), torch.randn(b, 768, generator=g)
    labels = torch.tensor([seed % c, (seed + 3) % c, (seed + 3) % c, 1])[:b]
    return {"logits": logits, "features": features}, F.one_hot(labels, c).float()


def test_sdl_criterion_counts_steps_and_keeps_the_official_queue_bug() -> None:
    crit = s2d.s2d_criterion(resolve_spec("s2d", "ferv39k", sets=["model.loss.steps_per_epoch=1"]))
    for step in range(21):  # epochs 0..20: the term is not computed
        _, parts = crit(*_outputs(step))
        assert parts["sdl"] == 0.0
    assert crit.queues is None and crit.epoch == 21
    _, parts = crit(*_outputs(21))  # epoch 21: queues exist, weight 0
    assert parts["sdl"] == 0.0 and crit.queues is not None
    initial = crit.queues.queue.clone(), crit.queues.probe.clone()
    for step in range(22, 30):
        crit(*_outputs(step))
    outputs, targets = _outputs(30)  # epoch 30: weight 0.01, target from the (never updated) random queues
    expected_target = _official_sdl_target(outputs["features"], *initial, 2)
    expected = 0.01 * F.binary_cross_entropy_with_logits(outputs["logits"], expected_target)
    loss, parts = crit(outputs, targets)
    assert parts["sdl"] == pytest.approx(float(expected), rel=1e-5)
    assert float(loss) == pytest.approx(parts["ce"] + parts["sdl"], rel=1e-6)
    for step in range(31, 100):  # the rest of the 100 epochs: epoch % 100 != 0, the queue is never filled
        crit(*_outputs(step))
    assert torch.equal(crit.queues.queue, initial[0]) and torch.equal(crit.queues.probe, initial[1])


def test_sdl_queue_updates_fixed_and_with_a_reachable_frequency() -> None:
    for sets, update_epoch in ((["model.loss.sdl_update=every_step"], 21), (["model.loss.sdl_update_freq=25"], 25)):
        crit = s2d.s2d_criterion(resolve_spec("s2d", "ferv39k", sets=["model.loss.steps_per_epoch=1", *sets]))
        for step in range(update_epoch):
            crit(*_outputs(step))
        before = crit.queues.queue.clone() if crit.queues is not None else None
        outputs, targets = _outputs(update_epoch)
        crit(outputs, targets)
        labels = targets.argmax(1).tolist()
        cls = labels[2]  # samples 1 and 2 share a class: pushed in order, sample 2 is the newest entry
        assert torch.equal(crit.queues.queue[cls, -1], outputs["features"][2])
        assert torch.equal(crit.queues.queue[cls, -2], outputs["features"][1])
        torch.testing.assert_close(crit.queues.probe[cls, -1], torch.softmax(outputs["logits"][2], 0))
        if before is not None:
            untouched = [c for c in range(7) if c not in labels]
            assert torch.equal(crit.queues.queue[untouched], before[untouched])


def test_sdl_epoch_source_and_options() -> None:
    assert s2d.S2DCriterion(resolve_spec("s2d", "ferv39k")).steps_per_epoch == 31088 // 16
    crit = s2d.s2d_criterion(resolve_spec("s2d", "ferv39k", sets=["model.loss.steps_per_epoch=1000"]))
    crit.set_epoch(80)  # a trainer that knows the epoch overrides the step count
    _, parts = crit(*_outputs(0))
    assert crit.epoch == 80 and parts["sdl"] > 0
    _, parts = s2d.s2d_criterion(resolve_spec("s2d", "dfew"))(*_outputs(0))
    assert set(parts) == {"ce"}
    with pytest.raises(BenchError, match="steps_per_epoch"):
        s2d.s2d_criterion(resolve_spec("s2d", "synthetic", sets=["model.loss.sdl=true",
                                                                 "data.options.clips_per_class=4"]))
    with pytest.raises(BenchError, match="sdl_updte"):
        s2d.s2d_criterion(resolve_spec("s2d", "ferv39k", sets=["model.loss.sdl_updte=every_step"]))


# ----------------------------------------------------------------------------------------------------------
# recipes and the oversampling variant


def test_recipes_follow_the_official_scripts() -> None:
    for dataset in ("dfew", "mafw", "ferv39k"):
        spec = resolve_spec("s2d", dataset)
        o, d, t = spec.optim, spec.data, spec.train
        assert (o.name, o.lr, o.weight_decay, o.warmup_epochs, o.warmup_lr, o.min_lr) == ("adamw", 2e-5, 0.05, 2, 0.0,
                                                                                            6.25e-10)
        assert o.schedule == "cosine" and o.per_iteration and t.epochs == 100 and t.batch_size == 16
        assert (d.frames, d.size, d.sampler, d.stride, d.test_views, d.test_crops) == (16, 224, "dense", 1, 2, 1)
        assert d.aggregate == "mean_softmax" and d.rrc_scale == [0.08, 1.0] and d.mean == list(layers.IMAGENET_MEAN)
        assert (t.selection, t.selection_metric, t.precision, t.sampler) == ("best_on_test", "war", "fp16", "shuffle")
        fer = dataset == "ferv39k"
        assert (spec.reg.mixup_alpha, spec.reg.cutmix_alpha, spec.reg.label_smoothing) == ((0.0, 0.0, 0.0) if fer
                                                                                         else (0.8, 1.0, 0.1))
        assert spec.model.kwargs["head_dropout"] == (0.0 if fer else 0.5) and spec.model.loss["sdl"] is fer
    info = METHODS.get("s2d")
    assert info.needs_pretrained == "affectnet" and info.literature == ("S2D",) and info.uses_attention
    assert set(info.weights) == {"affectnet", "mobilefacenet", "finetuned"}


def test_oversampling_variant() -> None:
    info = METHODS.get("s2d.oversampling")
    assert info.variant_of == "s2d" and info.literature == ("S2D (w/ oversampling)",)
    for dataset in ("dfew", "ferv39k", "mafw", "synthetic"):
        spec = resolve_spec("s2d.oversampling", dataset)
        assert spec.train.sampler == "class_balanced"
        assert spec.model.loss["sdl"] is (dataset == "ferv39k")  # the dataset's loss options are kept
        s2d.s2d_criterion(spec)
    assert resolve_spec("s2d", "dfew").train.sampler == "shuffle"


# ----------------------------------------------------------------------------------------------------------
# end to end


@pytest.mark.slow
def test_bench_run_on_synthetic_with_both_files(tmp_path: Path, data_home: Path) -> None:
    """One real `bench run` from the two files (AffectNet static model + MobileFaceNet): the 224² tables are
    resized into the 32² model, the landmark net is reported as loaded, the run completes with a profile."""
    mfn, _ = _mobilefacenet_file(tmp_path)
    affectnet, _ = _affectnet_file(tmp_path, torch.float16)
    proc = bench_cli(["run", "-m", "s2d", "-d", "synthetic", "--fold", "1", "--init", f"affectnet:{affectnet}",
                      "--set", f"model.kwargs.landmark_weights={mfn}", "--set", "data.options.clips_per_class=2",
                      "--set", "data.options.folds=2", "--set", "data.options.resolution=32", "--epochs", "1",
                      "--batch-size", "2", "--workers", "0", "--no-progress", "--no-latency"],
                     tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    assert "random init" not in proc.stdout
    (result_file,) = (tmp_path / "results" / "runs").rglob("result.json")
    result = json.loads(result_file.read_text())
    assert result["status"] == "completed" and result["protocol"]["init"]["kind"] == "affectnet"
    report = result["protocol"]["init"]["report"]
    assert report["unexpected"] == [] and str(mfn) in report["notes"]["landmark"]
    assert len(report["notes"]["resized"]) == 1  # pos_embed; the SFER file has no temporal embedding
    profile = result["profile"]
    assert profile["params_total"] == 95_055_571 - 196 * 768 + 4 * 768 - 8 * 768
    assert profile["params_trainable"] == 9_258_451 - 8 * 768 and profile["gmacs"] > 0
