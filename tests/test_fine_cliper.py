"""FineCLIPER (reimplementation from the paper): tunable parameters per level against the paper's Table 1 band,
adapters as identity at init, the stream renderers, fusion and the pos/neg prompts, the loss terms against hand
computations, the openai_clip source (only adapters / fusion missing), and one real run on synthetic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from bench.api import build_model
from bench.datasets.dfew import CLASSES as DFEW
from bench.methods import fine_cliper as fc
from bench.methods._clip_layers import encode_image
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.spec import resolve_spec
from bench.weights import apply_init
from tests.conftest import bench_cli

DATA = Path(__file__).parent / "data"
INFO = METHODS.get("fine_cliper")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("fine_cliper", 7, 4, 32, class_names=DFEW)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def test_tunable_parameters_per_level_match_the_paper(model):
    """Table 1: 13 M (frames), 19 M (+ parsing & landmarks), 14 M (+ text), 20 M (full); ours within 0.5 M."""
    frames = _count(model.video_adapters) + _count(model.pos_adapters) + _count(model.neg_adapters) + 4  # + fusion
    aux = _count(model.parsing_adapters) + _count(model.landmark_adapters)
    desc = _count(model.desc_adapters)
    assert (frames, aux, desc) == (13_423_108, 5_938_944, 793_344)
    assert frames == 24 * (2 * 768 * 192 + 192 + 768) + 2 * 24 * (2 * 512 * 128 + 128 + 512) + 4
    assert aux == 2 * 24 * (2 * 768 * 80 + 80 + 768) and desc == 12 * (2 * 512 * 64 + 64 + 512)
    for ours, paper in ((frames, 13), (frames + aux, 19), (frames + desc, 14), (frames + aux + desc, 20)):
        assert abs(ours / 1e6 - paper) < 0.5
    total, trainable = count_params(model)
    assert trainable == frames + aux + desc
    assert all(not p.requires_grad for p in model.visual.parameters()) and all(not p.requires_grad for p in model.text.parameters())
    variant = build_model("fine_cliper.frames", 7, 4, 32, class_names=DFEW)
    assert count_params(variant)[1] == frames


def test_adapters_start_as_the_frozen_clip(model):
    torch.manual_seed(1)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encode_image(model.visual, x, model.video_adapters), model.visual(x))
    ad = model.video_adapters[0]
    assert ad.attn.skip and not ad.mlp.skip and ad.scale == 0.5


def test_renderers():
    pts = torch.tensor([[[0.5, 0.5], [1.5, 0.2]]])  # one point at the centre, one outside the frame
    blank = fc.render_landmarks(pts, None, 9, 1)
    assert blank.shape == (1, 3, 9, 9) and blank[0, 0].sum() == 9 and blank[0, :, 3:6, 3:6].min() == 1
    frame = torch.full((1, 3, 9, 9), 0.25)
    on = fc.render_landmarks(pts, frame, 9, 1)
    assert on[0, :, 4, 4].tolist() == [0.0, 1.0, 0.0] and on[0, :, 0, 0].tolist() == [0.25] * 3
    ids = torch.tensor([[[0, 1], [2, 10]]], dtype=torch.uint8)
    pal = fc.palette(11)
    img = fc.render_parsing(ids, 4, pal)
    assert img.shape == (1, 3, 4, 4) and img[0, :, 0, 0].tolist() == [0.0, 0.0, 0.0]
    assert torch.equal(img[0, :, 3, 3], pal[10]) and torch.equal(img[0, :, 0, 3], pal[1])
    rgb = torch.full((1, 6, 6, 3), 255, dtype=torch.uint8)
    assert torch.allclose(fc.render_parsing(rgb, 4, pal), torch.ones(1, 3, 4, 4))


def test_prompts_fusion_and_streams(model):
    from open_clip.tokenizer import _tokenizer

    assert _tokenizer.decode(model.neg_tokens[3, 1:model.neg_tokens[3].argmax()].tolist()).strip() == \
        "a person with an expression of no anger ."
    feats = {n: torch.nn.functional.normalize(torch.randn(2, 512), dim=-1) for n in fc.FUSED}
    mean = sum(feats.values()) / 4
    torch.testing.assert_close(model._fuse(feats), mean / mean.norm(dim=-1, keepdim=True))  # zero logits: equal
    torch.manual_seed(2)
    x = torch.rand(2, 3, 4, 32, 32)
    streams = {"parsing": torch.randint(0, 11, (2, 4, 20, 20), dtype=torch.uint8),
               "landmarks": torch.rand(2, 4, 68, 2), "description": ["the brows rise and the mouth opens.", "lips press."]}
    model.train()
    out = model(x, streams=streams)
    assert set(out) == {"logits", "pn_logits", "video", "desc"} and out["logits"].shape == (2, 7)
    torch.testing.assert_close(out["logits"], out["pn_logits"])  # neg_in_logits = 1
    model.eval()
    with torch.no_grad():
        plain = model(x)
        torch.testing.assert_close(plain, model(x, streams={}))
        pos, neg = model.label_features()
        video = model._visual_stream(x.transpose(1, 2).reshape(8, 3, 32, 32), model.video_adapters, 2, 4)
        torch.testing.assert_close(plain, 100 * (video @ pos.t() - video @ neg.t()), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(model(x, streams=streams), plain)


def test_loss_terms_against_hand_computations():
    z = torch.tensor([[2.0, -1.0, 0.5]])
    t = torch.tensor([[1.0, 0.0, 0.0]])
    sig = [1 / (1 + math.exp(-v)) for v in z[0].tolist()]
    want_pn = -(math.log(sig[0]) + math.log(1 - sig[1]) + math.log(1 - sig[2])) / 3
    assert fc.pos_neg_loss(z, t).item() == pytest.approx(want_pn, rel=1e-6)
    v = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=-1)
    d = torch.nn.functional.normalize(torch.tensor([[0.8, 0.6], [0.0, 1.0]]), dim=-1)
    s = (2.0 * v @ d.t()).tolist()

    def ce(row, i):
        return -(row[i] - math.log(sum(math.exp(r) for r in row)))

    cols = [[s[0][j], s[1][j]] for j in range(2)]
    want = 0.5 * ((ce(s[0], 0) + ce(s[1], 1)) / 2 + (ce(cols[0], 0) + ce(cols[1], 1)) / 2)
    assert fc.alignment_loss(v, d, 2.0).item() == pytest.approx(want, rel=1e-6)
    spec = resolve_spec("fine_cliper", "synthetic", sets=["model.loss.pn_weight=0.5"])
    crit = fc.fine_cliper_criterion(spec)
    logits = torch.tensor([[1.0, 0.0, -1.0]])
    outputs = {"logits": logits, "pn_logits": z, "video": v[:1], "desc": d[:1]}
    loss, parts = crit(outputs, t)
    ce0 = -torch.log_softmax(logits, -1)[0, 0].item()
    assert parts["ce"] == pytest.approx(ce0) and parts["pos_neg"] == pytest.approx(0.5 * want_pn, rel=1e-6)
    assert parts["align"] == pytest.approx(0.0, abs=1e-6)  # one pair: log 1 = 0
    assert loss.item() == pytest.approx(parts["ce"] + parts["pos_neg"] + parts["align"], rel=1e-6)


def test_openai_clip_source_fills_the_frozen_towers(model, tmp_path):
    facts = json.loads((DATA / "fine_cliper_openai_vitb16_keys.json").read_text())
    g = torch.Generator().manual_seed(4)
    sd = {k: (0.02 * torch.randn(shape, generator=g)).half() for k, shape in facts["keys"].items()}
    sd.update({k: torch.tensor(v) for k, v in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408))})
    path = tmp_path / "ViT-B-16.pt"
    torch.save(sd, path)
    rep = apply_init(model, INFO, f"openai_clip:{path}")["report"]
    assert rep["unexpected"] == [] and rep["mismatched"] == []
    new = ("video_adapters.", "pos_adapters.", "neg_adapters.", "parsing_adapters.", "landmark_adapters.",
           "desc_adapters.", "fusion_logits")
    assert rep["missing"] and all(k.startswith(new) for k in rep["missing"])
    assert set(rep["missing"]) == {k for k in model.state_dict() if k.startswith(new)}
    assert set(rep["notes"]["dropped"]) == {"logit_scale", "input_resolution", "context_length", "vocab_size"}
    assert rep["notes"]["resized"] == ["visual.positional_embedding: (197, 768) -> (5, 768)"]
    own = model.state_dict()
    assert torch.equal(own["visual.transformer.resblocks.7.attn.out_proj.weight"],
                       sd["visual.transformer.resblocks.7.attn.out_proj.weight"].float())
    assert torch.equal(own["text.token_embedding.weight"], sd["token_embedding.weight"].float())


@pytest.mark.slow
def test_size_and_cost_at_the_official_input():
    m = build_model("fine_cliper", 7, class_names=DFEW)
    total, trainable = count_params(m)
    assert trainable == 20_155_396 and total == 149_620_736 + trainable  # CLIP B/16 without logit_scale
    macs = count_macs(m, (3, 16, 224, 224))  # frames-only path (no streams in a profile)
    assert macs["flop_disagreement"] < 0.03
    assert abs(macs["gmacs_fvcore"] / 310.26 - 1) < 0.01  # 16 x 17.58 image tower + adapters + 14 label prompts


@pytest.mark.slow
def test_trains_on_synthetic(tmp_path, data_home):
    """One epoch through `bench run` with a precomputed description stream (one .txt per clip); the flip turned on
    here is reported as not applied to the streams."""
    from bench.registry import DATASETS

    options = {"clips_per_class": 2, "folds": 2, "resolution": 32}
    descriptions = tmp_path / "descriptions"
    descriptions.mkdir()
    for r in DATASETS.get("synthetic").build_manifest(data_home / "synthetic", 1, options).records:
        (descriptions / f"{r.clip_id}.txt").write_text("the brows rise and the mouth opens")
    proc = bench_cli(["run", "-m", "fine_cliper", "-d", "synthetic", "--fold", "1", "--epochs", "1", "--batch-size", "2",
                      "--workers", "0", "--no-progress", "--no-latency", "--set", "data.options.clips_per_class=2",
                      "--set", "data.options.folds=2", "--set", "data.options.resolution=32", "--set", "data.frames=4",
                      "--set", f"data.streams.description={descriptions}", "--set", "data.flip=true"],
                     tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    assert "data.streams (description) are given as stored" in " ".join((proc.stdout + proc.stderr).split())
    (result,) = (tmp_path / "results" / "runs").rglob("result.json")
    assert json.loads(result.read_text())["method"] == "fine_cliper"
    lines = [json.loads(x) for x in (result.parent / "metrics.jsonl").read_text().splitlines()]
    assert {"ce", "pos_neg", "align"} <= set(lines[-1]["train_loss_parts"])
