"""CLIP zero-shot: the classifier against a hand computation of the prompt-ensemble rule, the clip scores against
a hand composition, encode_video / encode_text, the openai_clip source (classifier rebuilt from the loaded text
tower), sizes, and one real run on synthetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.api import build_model
from bench.datasets.dfew import CLASSES as DFEW
from bench.errors import BenchError
from bench.methods import clip_zeroshot as zs
from bench.methods._clip_layers import OPENAI_MEAN, OPENAI_STD, tokenize
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.weights import apply_init
from tests.conftest import bench_cli

DATA = Path(__file__).parent / "data"
INFO = METHODS.get("clip_zeroshot")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("clip_zeroshot", 7, 4, 32, class_names=DFEW).eval()


def _hand_classifier(m) -> torch.Tensor:
    cols = []
    with torch.no_grad():
        for label in m.labels:
            tokens = tokenize([t.format(label) for t in zs.FACE_TEMPLATES])
            x = m.text.token_embedding(tokens) + m.text.positional_embedding  # full 77 positions, no truncation
            for blk in m.text.transformer.resblocks:
                x = blk(x, attn_mask=m.text.attn_mask)
            f = m.text.ln_final(x)[torch.arange(len(tokens)), tokens.argmax(-1)] @ m.text.text_projection
            f = f / f.norm(dim=-1, keepdim=True)
            mean = f.mean(0)
            cols.append(mean / mean.norm())
    return torch.stack(cols, 1)


def test_classifier_is_the_renormalised_mean_of_normalised_template_embeddings(model):
    assert model.labels == ["happy", "sad", "neutral", "angry", "surprised", "disgusted", "fearful"]
    assert model.prompts()[4][2] == "a face that looks surprised."
    torch.testing.assert_close(model.classifier, _hand_classifier(model), rtol=1e-5, atol=1e-5)
    assert torch.allclose(model.classifier.norm(dim=0), torch.ones(7))


def test_clip_scores_are_100_cosines_averaged_over_frames(model):
    torch.manual_seed(1)
    x = torch.rand(2, 3, 4, 32, 32)
    with torch.no_grad():
        frames = x.transpose(1, 2).reshape(8, 3, 32, 32)
        mean, std = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
        f = model.visual((frames - mean) / std)
        f = f / f.norm(dim=-1, keepdim=True)
        per_frame = (100.0 * f @ model.classifier).view(2, 4, 7)
        torch.testing.assert_close(model(x), per_frame.mean(1), rtol=1e-4, atol=1e-4)
        model.frame_aggregate = "mean_probs"
        try:
            torch.testing.assert_close(model(x), per_frame.softmax(-1).mean(1).log(), rtol=1e-4, atol=1e-5)
        finally:
            model.frame_aggregate = "mean_logits"
        video = model.encode_video(x)
        want = f.view(2, 4, -1).mean(1)
        torch.testing.assert_close(video, want / want.norm(dim=-1, keepdim=True), rtol=1e-5, atol=1e-5)
        text = model.encode_text(["a face that looks happy.", "someone looking sad."])
        assert text.shape == (2, 512) and torch.allclose(text.norm(dim=-1), torch.ones(2))
        one = model.encode_text([t.format("happy") for t in zs.FACE_TEMPLATES]).mean(0)
        torch.testing.assert_close(one / one.norm(), model.classifier[:, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_openai_clip_source_rebuilds_the_classifier(model, tmp_path):
    import open_clip

    torch.manual_seed(2)
    clip = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    file_sd = clip.state_dict()
    facts = json.loads((DATA / "dfer_clip_openai_vitb32_keys.json").read_text())["keys"]
    assert {k: list(v.shape) for k, v in file_sd.items()} == facts
    path = tmp_path / "ViT-B-32.bin"
    torch.save({"module." + k: v for k, v in file_sd.items()}, path)  # an open_clip training save (DDP prefix)
    before = model.classifier.clone()
    rep = apply_init(model, INFO, f"openai_clip:{path}")["report"]
    assert rep["missing"] == [] and rep["unexpected"] == [] and rep["mismatched"] == []
    assert rep["notes"]["dropped"] == ["logit_scale"]
    assert torch.equal(model.state_dict()["text.transformer.resblocks.2.mlp.c_proj.weight"],
                       file_sd["transformer.resblocks.2.mlp.c_proj.weight"])
    assert not torch.allclose(model.classifier, before)
    torch.testing.assert_close(model.classifier, _hand_classifier(model), rtol=1e-5, atol=1e-5)
    b16 = {k: v for k, v in file_sd.items()}
    b16["visual.conv1.weight"] = torch.zeros(768, 3, 16, 16)
    torch.save(b16, tmp_path / "ViT-B-16.pt")
    with pytest.raises(BenchError, match="another CLIP architecture"):
        apply_init(model, INFO, f"openai_clip:{tmp_path / 'ViT-B-16.pt'}")


def test_template_sets_and_switches():
    assert len(zs.template_set("imagenet")) == 80 and len(zs.template_set("simple")) == 7
    assert zs.fill(zs.template_set("imagenet")[0], "happy") == "a bad photo of a happy."
    assert zs.template_set("bare") == ["{}"]
    with pytest.raises(ValueError):
        zs.template_set("nope")


@pytest.mark.slow
def test_sizes_at_the_official_input():
    m = build_model("clip_zeroshot", 7, class_names=DFEW)
    total, trainable = count_params(m)
    assert total == 151_277_312 and trainable == 87_849_216  # CLIP ViT-B/32 without logit_scale; image tower tunes
    macs = count_macs(m, (3, 16, 224, 224))
    assert abs(macs["gmacs_fvcore"] / (16 * 4.4138) - 1) < 0.01 and macs["flop_disagreement"] < 0.03


@pytest.mark.slow
def test_trains_on_synthetic(tmp_path, data_home):
    bench_cli(["run", "-m", "clip_zeroshot", "-d", "synthetic", "--fold", "1", "--epochs", "1", "--batch-size", "2",
               "--workers", "0", "--no-progress", "--no-latency", "--set", "data.options.clips_per_class=2",
               "--set", "data.options.folds=2", "--set", "data.options.resolution=32", "--set", "data.frames=4"],
              tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    (result,) = (tmp_path / "results" / "runs").rglob("result.json")
    assert json.loads(result.read_text())["method"] == "clip_zeroshot"
