"""DFER-CLIP: sizes against the official code's measurement (NOTES §1.5, §1.10), the prompt splicing against a
hand-built tokenisation, the logits against a hand composition, both weights sources (an open_clip ViT-B-32
state_dict as a plain file and as a traced TorchScript archive; a checkpoint in the official names), the
official schedule and lr groups, and one real run on synthetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.api import build_model
from bench.datasets.dfew import CLASSES as DFEW
from bench.datasets.mafw import CLASSES as MAFW
from bench.methods import dfer_clip as dc
from bench.methods._clip_layers import EOT_ID, SOT_ID, l2norm
from bench.optim import SCHEDULES, build_optimizer, set_lr
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.spec import resolve_spec
from bench.weights import apply_init
from tests.conftest import bench_cli, tiny_synthetic_run

DATA = Path(__file__).parent / "data"
INFO = METHODS.get("dfer_clip")


@pytest.fixture(scope="module")
def small():
    """Official-width model at a CPU size (16 frames: the official temporal table; one 32px patch)."""
    torch.manual_seed(0)
    return build_model("dfer_clip", 7, 16, 32, class_names=DFEW)


@pytest.fixture(scope="module")
def openai_files(tmp_path_factory):
    """open_clip's OpenAI-architecture ViT-B-32 at random init, saved as a plain state_dict."""
    import open_clip

    torch.manual_seed(1)
    clip = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    folder = tmp_path_factory.mktemp("clip")
    plain = folder / "open_clip_vitb32.pt"
    torch.save(clip.state_dict(), plain)
    return clip, plain


def test_sizes_at_the_official_input():
    model = build_model("dfer_clip", 7, class_names=DFEW)
    total, trainable = count_params(model)
    assert abs(total / 153.416e6 - 1) < 0.01 and abs(trainable / 89.988e6 - 1) < 0.01
    assert total == 153_416_448 and trainable == 89_988_352  # official: 153,416,449 (+ the unused logit_scale)
    ctx = model.prompt_learner.ctx
    assert ctx.shape == (7, 8, 512) and ctx.requires_grad and not model.text_encoder.token_embedding.weight.requires_grad
    assert count_params(model.temporal_net)[0] == 2_110_464
    mafw, pos = count_params(build_model("dfer_clip", 11, 16, 32, class_names=MAFW)), 48 * 768  # 50 vs 2 positions
    assert abs((mafw[0] + pos) / 153.433e6 - 1) < 0.01 and abs((mafw[1] + pos) / 90.005e6 - 1) < 0.01


@pytest.mark.slow
def test_gmacs_at_the_official_input_count_clip_attention():
    """91.55 G with attention counted, 90.30 G without (stock fvcore); both counters see CLIP's attention."""
    model = build_model("dfer_clip", 7, class_names=DFEW)
    macs = count_macs(model, (3, 16, 224, 224))
    assert abs(macs["gmacs_fvcore"] / 91.55 - 1) < 0.01
    assert macs["flop_disagreement"] < 0.03
    sdpa = macs["fvcore_by_operator_macs"]["scaled_dot_product_attention"] / 1e9
    assert abs((macs["gmacs_fvcore"] - sdpa) / 90.30 - 1) < 0.01  # what stock fvcore reports
    assert sdpa > 1.2 and "aten::_native_multi_head_attention" not in macs["fvcore_unsupported_ops"]


def test_prompt_splicing_matches_a_hand_built_tokenisation(small):
    from open_clip.tokenizer import _tokenizer

    pl = small.prompt_learner
    x_id = _tokenizer.encode("X")
    assert len(x_id) == 1
    emb = small.text_encoder.token_embedding.weight
    prompts = pl()
    for c, name in enumerate(DFEW):
        desc = _tokenizer.encode(dc.class_text(name))
        ids = [SOT_ID] + x_id * 8 + desc + [EOT_ID]
        row = torch.zeros(77, dtype=torch.long)
        row[: len(ids)] = torch.tensor(ids)
        assert torch.equal(pl.tokenized[c], row), name
        assert torch.equal(prompts[c, 0], emb[SOT_ID])
        assert torch.equal(prompts[c, 1:9], pl.ctx[c])
        assert torch.equal(prompts[c, 9:], emb[row[9:]])
        assert int(pl.eot_positions(emb[EOT_ID])[c]) == 9 + len(desc)
    assert dc.class_text("happy") == dc.class_text("Happiness") == dc.DESCRIPTIONS["happiness"]
    assert dc.class_text("bored") == "a face showing bored."
    assert dc.class_text("angry", "class_name_with_context") == "an expression of anger."


def test_logits_are_cosine_over_0_01_of_the_hand_composed_features(small):
    torch.manual_seed(2)
    x = torch.rand(2, 3, 16, 32, 32)
    small.eval()
    with torch.no_grad():
        logits = small(x)
        frames = small.image_encoder(x.transpose(1, 2).reshape(32, 3, 32, 32)).view(2, 16, -1)
        video = l2norm(small.temporal_net(frames))
        te = small.text_encoder
        pl = small.prompt_learner
        h = pl() + te.positional_embedding
        for blk in te.transformer.resblocks:
            h = blk(h, attn_mask=te.attn_mask)
        h = te.ln_final(h)[torch.arange(7), pl.tokenized.argmax(-1)] @ te.text_projection
        want = 100.0 * video @ l2norm(h).t()
        torch.testing.assert_close(logits, want, rtol=1e-4, atol=1e-4)
        small.truncate_text = True
        try:
            torch.testing.assert_close(small(x), logits, rtol=1e-4, atol=1e-4)  # causal mask: same logits
        finally:
            small.truncate_text = False
    small.train()
    assert small(x).shape == (2, 7)  # same output in train mode


def test_openai_clip_source_from_a_plain_open_clip_state_dict(openai_files):
    clip, plain = openai_files
    facts = json.loads((DATA / "dfer_clip_openai_vitb32_keys.json").read_text())["keys"]
    file_sd = clip.state_dict()
    assert {k: list(v.shape) for k, v in file_sd.items()} == facts  # open_clip's names are OpenAI's
    model = build_model("dfer_clip", 7, 4, 32, class_names=DFEW)
    record = apply_init(model, INFO, f"openai_clip:{plain}")
    rep = record["report"]
    assert rep["unexpected"] == [] and rep["mismatched"] == []
    assert set(rep["missing"]) == {"prompt_learner.ctx"} | {k for k in model.state_dict() if k.startswith("temporal_net.")}
    assert rep["notes"]["dropped"] == ["logit_scale"]
    assert rep["notes"]["resized"] == ["visual.positional_embedding: (50, 768) -> (2, 768)"]
    sd = model.state_dict()
    assert torch.equal(sd["image_encoder.transformer.resblocks.5.attn.in_proj_weight"],
                       file_sd["visual.transformer.resblocks.5.attn.in_proj_weight"])
    assert torch.equal(sd["text_encoder.token_embedding.weight"], file_sd["token_embedding.weight"])
    assert torch.equal(sd["text_encoder.text_projection"], file_sd["text_projection"])
    tok = model.prompt_learner.tokenized
    assert torch.equal(sd["prompt_learner.token_suffix"], file_sd["token_embedding.weight"][tok[:, 9:]])
    assert torch.equal(sd["prompt_learner.token_prefix"][:, 0], file_sd["token_embedding.weight"][tok[:, 0]])


@pytest.mark.slow
def test_openai_clip_source_from_a_traced_torchscript_archive(openai_files, tmp_path):
    """OpenAI's .pt files are TorchScript archives, partly fp16, with 3 scalar entries: a traced open_clip model
    with those scalars, cast to fp16, read through bench.weights.read_checkpoint's TorchScript path."""
    import open_clip

    clip, plain = openai_files
    clip = clip.eval()
    for name, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
        if hasattr(clip, name):
            delattr(clip, name)
        clip.register_buffer(name, torch.tensor(value))
    with torch.no_grad():
        traced = torch.jit.trace_module(clip, {"encode_image": torch.rand(1, 3, 224, 224),
                                               "encode_text": open_clip.tokenize(["a face"])}, check_trace=False)
    traced = traced.half()
    path = tmp_path / "ViT-B-32.pt"
    traced.save(str(path))
    with pytest.raises(Exception):  # noqa: B017 - what torch.load(weights_only=True) does with such a file
        torch.load(path, weights_only=True)
    model = build_model("dfer_clip", 7, 4, 32, class_names=DFEW)
    rep = apply_init(model, INFO, f"openai_clip:{path}")["report"]
    assert rep["unexpected"] == [] and rep["mismatched"] == []
    assert set(rep["missing"]) == {"prompt_learner.ctx"} | {k for k in model.state_dict() if k.startswith("temporal_net.")}
    assert set(rep["notes"]["dropped"]) == {"logit_scale", "attn_mask", "input_resolution", "context_length", "vocab_size"}
    assert rep["notes"]["cast_to_float32"] > 300
    want = clip.state_dict()["visual.transformer.resblocks.3.mlp.c_fc.weight"].half().float()
    assert torch.equal(model.state_dict()["image_encoder.transformer.resblocks.3.mlp.c_fc.weight"], want)


def _official_checkpoint(eot_at: list[int]) -> dict[str, torch.Tensor]:
    """A DFER-CLIP state_dict with the official names and shapes (fp16 to keep the file small), DataParallel
    prefix, the clip_model_.* entries aliasing the encoders as in the real file, EOT rows in token_suffix."""
    facts = json.loads((DATA / "dfer_clip_keys.json").read_text())["keys"]
    g = torch.Generator().manual_seed(3)
    sd: dict[str, torch.Tensor] = {}
    for k, shape in facts.items():
        alias = None
        if k.startswith("clip_model_.visual."):
            alias = "image_encoder." + k[len("clip_model_.visual."):]
        elif k.startswith("clip_model_.") and not k.startswith(("clip_model_.token_embedding", "clip_model_.logit")):
            alias = "text_encoder." + k[len("clip_model_."):]
        sd[k] = sd[alias] if alias in sd else (0.02 * torch.randn(shape, generator=g)).half()
    eot = sd["clip_model_.token_embedding.weight"][EOT_ID]
    for c, j in enumerate(eot_at):
        sd["prompt_learner.token_suffix"][c, j] = eot
    return {"module." + k: v for k, v in sd.items()}


def test_finetuned_source_from_the_official_names(tmp_path):
    eot_at = [20, 17, 25, 14, 30, 22, 19]  # the authors' descriptions: their own EOT positions (suffix rows)
    sd = _official_checkpoint(eot_at)
    path = tmp_path / "DFEW-model_best.pth"
    torch.save({"epoch": 12, "state_dict": sd, "best_acc": 71.2}, path)
    order = ("fear", "happy", "sad", "neutral", "angry", "surprise", "disgust")  # our classes, another order
    model = build_model("dfer_clip", 7, 16, 32, class_names=order)
    rep = apply_init(model, INFO, f"finetuned:{path}")["report"]
    assert rep["missing"] == [] and rep["unexpected"] == [] and rep["mismatched"] == []
    assert rep["notes"]["epoch"] == 12
    assert rep["notes"]["dropped"] == ["300 clip_model_.* aliases of image_encoder/text_encoder tensors",
                                       "clip_model_.logit_scale"]
    own = model.state_dict()
    assert rep["loaded"] == len(own)
    perm = [dc.OFFICIAL_ORDER.index(n) for n in ("fear", "happiness", "sadness", "neutral", "anger", "surprise", "disgust")]
    assert torch.equal(own["prompt_learner.ctx"], sd["module.prompt_learner.ctx"][perm].float())
    assert torch.equal(own["temporal_net.blocks.0.attn.qkv.weight"],
                       sd["module.temporal_net.temporal_transformer.layers.0.0.fn.fn.to_qkv.weight"].float())
    assert torch.equal(own["temporal_net.blocks.0.mlp.fc2.bias"],
                       sd["module.temporal_net.temporal_transformer.layers.0.1.fn.fn.net.3.bias"].float())
    assert torch.equal(own["text_encoder.token_embedding.weight"], sd["module.clip_model_.token_embedding.weight"].float())
    emb = model.text_encoder.token_embedding.weight
    assert model.prompt_learner.eot_positions(emb[EOT_ID]).tolist() == [9 + eot_at[i] for i in perm]
    assert dc.class_permutation(MAFW, 11) == [3, 5, 6, 0, 2, 1, 4, 7, 8, 9, 10]
    with pytest.raises(ValueError, match="not one of"):
        dc.class_permutation(("happy", "bored", "sad", "neutral", "angry", "surprise", "fear"), 7)


@pytest.mark.slow
def test_finetuned_checkpoint_through_bench_eval(tmp_path, data_home):
    path = tmp_path / "DFEW-model_best.pth"
    torch.save({"epoch": 3, "state_dict": _official_checkpoint([20] * 7)}, path)
    proc = bench_cli(["eval", "--checkpoint", str(path), "-m", "dfer_clip", "-d", "synthetic", "--fold", "1",
                      "--source", "finetuned", "--workers", "0", "--json", "--set", "data.options.clips_per_class=2",
                      "--set", "data.options.folds=2", "--set", "data.options.resolution=32", "--set",
                      "data.frames=16", "--set", "data.size=32"],
                     tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    ev = json.loads(proc.stdout)
    assert ev["load_report"]["missing"] == [] and ev["load_report"]["unexpected"] == []
    assert ev["load_report"]["notes"]["epoch"] == 3 and ev["metrics"]["n_test"] > 0


def test_official_schedule_lr_groups_and_recipe(small):
    spec = resolve_spec("dfer_clip", "dfew")
    o = spec.optim
    sched = SCHEDULES.get(o.schedule)
    assert [sched(o, e, 0, 10, 50) for e in (0, 29, 30, 39, 40, 49)] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-4])
    opt = build_optimizer(small, o)
    set_lr(opt, sched(o, 0, 0, 10, 50))
    lr = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert lr[id(small.temporal_net.cls_token)] == pytest.approx(1e-2)
    assert lr[id(small.image_encoder.conv1.weight)] == pytest.approx(1e-5)
    assert lr[id(small.prompt_learner.ctx)] == pytest.approx(1e-3)
    assert set(wd.values()) == {1e-4}  # every trainable parameter decays, norms and biases included
    assert id(small.text_encoder.token_embedding.weight) not in lr
    assert (spec.train.epochs, spec.train.batch_size, spec.train.selection) == (50, 48, "best_on_test")
    assert spec.data.color_jitter[0] == 0.5 and spec.data.mean is None and (spec.data.frames, spec.data.size) == (16, 224)


@pytest.mark.slow
def test_trains_on_synthetic(tmp_path, data_home):
    r, _ = tiny_synthetic_run("dfer_clip", tmp_path, data_home, "--batch-size", "2",
                               "--set", "data.options.resolution=32", "--set", "data.frames=4")
    assert r["method"] == "dfer_clip" and r["family"] == "CLIP-based"
    assert r["protocol"]["init"]["label"] == "random init (not the method)"
