"""S4D (methods/s4d.py) and the static image dataset (datasets/static_images.py).

Sizes against the official code (/work/notes/s4d/NOTES.md §2: 100,513,646 params, 83.14 GMACs traced at 16x160²;
baselines.md has no [meas] row for S4D, so the notes' measurement is the reference); both weights sources on
state_dicts carrying the official key names and shapes (tests/data/s4d_*_keys.json); the MoE routing, capacity and
balance loss against hand computations; the image path; the recipe; one real `bench run` on synthetic; the
folder-per-class image dataset on a fixture written here.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.api import build_model
from bench.data.frames import read_clip
from bench.errors import DataError
from bench.optim import param_groups
from bench.profile import count_macs, count_params
from bench.registry import DATASETS, METHODS
from bench.spec import resolve_spec
from bench.weights import apply_init
from tests.conftest import bench_cli

DATA = Path(__file__).parent / "data"
FINETUNE_KEYS = json.loads((DATA / "s4d_finetune_keys.json").read_text())["keys"]
PRETRAIN_KEYS = json.loads((DATA / "s4d_pretrain_keys.json").read_text())["keys"]
TINY = ["--set", "data.options.clips_per_class=2", "--set", "data.options.folds=2", "--set",
        "data.options.resolution=32", "--workers", "0", "--no-progress", "--no-latency"]


def _s4d():
    from bench.methods import s4d

    return s4d


def _tiny(frames: int = 4, size: int = 32, **kw):
    """A narrow S4D (64 wide, 4 blocks, MoE in blocks 2-3) for behaviour tests."""
    return _s4d().S4D(7, frames, size, **{"embed_dim": 64, "depth": 4, "num_heads": 2, "moe_from": 2, **kw})


def _state_dict(keys: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) for k, shape in keys.items()}


# ----------------------------------------------------------------------------------------------------------
# sizes


def test_params_and_state_dict_match_the_official_model():
    torch.manual_seed(0)
    model = build_model("s4d", 7)
    assert count_params(model) == (100_513_646, 100_513_646)  # all trainable, as the official log prints
    sd = model.state_dict()
    assert list(sd) == list(FINETUNE_KEYS)  # same names, same order, pos_embed not in the state_dict
    assert {k: list(v.shape) for k, v in sd.items()} == FINETUNE_KEYS
    assert count_params(build_model("s4d", 11))[0] == 100_516_722  # MAFW: head.video 11


@pytest.mark.slow
def test_gmacs_at_the_official_input():
    """fvcore at 16x160², eval (noise off), random init: within 1% of the 83.14 G traced from the official code
    (traced MACs depend on routing: the no-drop bound is 83.65 G, plain ViT-B 80.76 G); the image path 9.08 G."""
    torch.manual_seed(0)
    model = build_model("s4d", 7)
    video = count_macs(model, (3, 16, 160, 160))
    assert abs(video["gmacs_fvcore"] / 83.14 - 1) < 0.01, video["gmacs_fvcore"]
    assert 80.76 < video["gmacs_fvcore"] < 83.65 + 1e-3 and video["flop_disagreement"] < 0.03
    image = count_macs(model, (3, 1, 160, 160))
    assert abs(image["gmacs_fvcore"] / 9.08 - 1) < 0.01, image["gmacs_fvcore"]


# ----------------------------------------------------------------------------------------------------------
# weights


@pytest.fixture(scope="module")
def finetuned_file(tmp_path_factory) -> tuple[Path, dict]:
    """An official fine-tuning checkpoint (utils.save_model format without 'args')."""
    sd = _state_dict(FINETUNE_KEYS, seed=1)
    path = tmp_path_factory.mktemp("s4d") / "checkpoint-best.pth"
    torch.save({"model": sd, "optimizer": None, "epoch": 37,
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                           "_growth_tracker": 0}}, path)
    return path, sd


def test_pretrained_mae_checkpoint_loads_the_trunk(tmp_path):
    sd = _state_dict(PRETRAIN_KEYS, seed=2)
    path = tmp_path / "vit_base_voxceleb2+affectnet_100.pt"
    torch.save({"model": sd, "optimizer": {}, "epoch": 100, "loss": 0.31, "steps": 12345, "scaler": {}}, path)
    torch.manual_seed(0)
    model = build_model("s4d", 7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    record = apply_init(model, METHODS.get("s4d"), f"s4d_pretrain:{path}")
    report = record["report"]
    assert record["label"] == "s4d_pretrain" and record["needs_pretrained"] == "s4d_pretrain"
    assert report["unexpected"] == [] and report["mismatched"] == []
    assert report["loaded"] == 158  # patch_embed + 12 blocks = 86.23 M, as the official loader loads
    fresh = sorted(k for k in before if ".moe_layer." in k or k.startswith(("fc_norm.", "head.")))
    assert report["missing"] == fresh and len(fresh) == 380 - 158
    # what the official non-strict loader also leaves out: the encoder's final LN, the decoder, the projection
    dropped = report["notes"]["dropped"]
    assert sorted(dropped) == sorted(k for k in PRETRAIN_KEYS if not k.startswith("encoder.") or
                                     k.startswith("encoder.norm."))
    assert {"mask_token", "encoder_to_decoder.weight", "encoder.norm.weight", "decoder.head.weight"} <= set(dropped)
    assert report["notes"]["epoch"] == 100 and "blocks.6.moe_layer" in report["notes"]["fresh"]
    now = model.state_dict()
    for k in ("patch_embed.proj.weight", "blocks.3.attn.q_bias", "blocks.11.mlp.fc2.weight", "blocks.7.attn.qkv.weight"):
        assert torch.equal(now[k], sd["encoder." + k]), k
    for k in fresh:  # experts, routers, fc_norm and heads keep their init (experts are NOT copied from the MLP)
        assert torch.equal(now[k], before[k]), k


def test_finetuned_checkpoint_loads_everything(finetuned_file):
    path, sd = finetuned_file
    model = build_model("s4d", 7)
    record = apply_init(model, METHODS.get("s4d"), f"finetuned:{path}")
    report = record["report"]
    assert report["missing"] == [] and report["unexpected"] == [] and report["mismatched"] == []
    assert report["loaded"] == 380 and report["notes"]["epoch"] == 37
    now = model.state_dict()
    for k in ("blocks.9.moe_layer.experts.5.fc1.weight", "blocks.6.moe_layer.router.noise_linear.bias",
              "head.image.weight", "head.video.bias", "fc_norm.weight"):
        assert torch.equal(now[k], sd[k]), k


def test_sources_refuse_each_others_files(tmp_path):
    s4d = _s4d()
    with pytest.raises(ValueError, match="finetuned"):
        s4d.convert_pretrain({"blocks.0.norm1.weight": torch.zeros(768)}, None, {})
    with pytest.raises(ValueError, match="s4d_pretrain"):
        s4d.convert_finetuned({"encoder.blocks.0.norm1.weight": torch.zeros(768)}, None, {})


def test_finetuned_checkpoint_with_its_args_namespace(tmp_path):
    path = tmp_path / "checkpoint-best.pth"
    sd = {k: torch.zeros(v) for k, v in FINETUNE_KEYS.items() if k.startswith(("fc_norm.", "head."))}
    torch.save({"model": sd, "optimizer": None, "epoch": 3, "scaler": {}, "args": argparse.Namespace(lr=4e-5)}, path)
    record = apply_init(_tiny(embed_dim=768, num_heads=12), METHODS.get("s4d"), f"finetuned:{path}")
    assert record["report"]["loaded"] == len(sd)


@pytest.mark.slow
def test_bench_eval_with_the_finetuned_source(finetuned_file, tmp_path, data_home):
    path, _ = finetuned_file
    proc = bench_cli(["eval", "--checkpoint", str(path), "-m", "s4d", "-d", "synthetic", "--fold", "1",
                      "--source", "finetuned", "--json", *[a for a in TINY if a not in ("--no-progress", "--no-latency")]],
                     tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    ev = json.loads(proc.stdout)
    assert ev["load_report"]["missing"] == [] and ev["load_report"]["unexpected"] == []
    assert ev["load_report"]["loaded"] == 380 and ev["load_report"]["notes"]["epoch"] == 37
    assert ev["metrics"]["n_test"] > 0 and 0.0 <= ev["metrics"]["uar"] <= 1.0


# ----------------------------------------------------------------------------------------------------------
# MoE: routing, capacity, balance loss


def _moe(dim=6, hidden=3, experts=4, top_k=2, cf=1.0, seed=0):
    torch.manual_seed(seed)
    moe = _s4d().MixtureOfAdapterExperts(dim, hidden, experts, top_k, cf)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return moe.eval()


def test_router_gates_are_a_softmax_over_the_top2():
    moe = _moe()
    h = torch.randn(2, 5, 6)
    gates, idx, logits = moe.router(h, noisy=False)
    ref_logits = h @ moe.router.topkroute_linear.weight.T + moe.router.topkroute_linear.bias
    assert torch.allclose(logits, ref_logits, atol=1e-6)
    top = ref_logits.topk(2, dim=-1)
    expected = torch.zeros_like(ref_logits).scatter(-1, top.indices, torch.softmax(top.values, -1))
    assert torch.allclose(gates, expected, atol=1e-6) and torch.allclose(gates.sum(-1), torch.ones(2, 5))
    assert ((gates > 0).sum(-1) == 2).all()
    torch.manual_seed(3)
    _, _, noisy = moe.router(h, noisy=True)
    torch.manual_seed(3)
    eps = torch.randn_like(ref_logits)
    std = F.softplus(h @ moe.router.noise_linear.weight.T + moe.router.noise_linear.bias)
    assert torch.allclose(noisy, ref_logits + eps * std, atol=1e-6)


@pytest.mark.parametrize("cf", [1.0, 0.5, 0.0])
def test_capacity_drops_in_flat_sample_major_order(cf):
    """Reference: walk tokens in (sample, token) order; an expert takes an assignment while it has taken fewer
    than int(B*N*k/E*cf); the output is the gate-weighted sum of the kept experts (no renormalisation)."""
    moe = _moe(cf=cf)
    h = torch.randn(3, 4, 6)
    out = moe(h)
    gates, idx, _ = moe.router(h, noisy=False)
    cap = int(3 * 4 * 2 / 4 * cf) if cf > 0 else 10**9
    taken = [0] * 4
    ref = torch.zeros(3, 4, 6)
    dropped = 0
    for b in range(3):
        for n in range(4):
            for e in sorted(idx[b, n].tolist()):
                if taken[e] < cap:
                    taken[e] += 1
                    ref[b, n] += gates[b, n, e] * moe.experts[e](h[b, n][None])[0]
                else:
                    dropped += 1
    assert torch.allclose(out, ref, atol=1e-5)
    if cf == 0.5:
        assert dropped > 0  # the half capacity really drops
    if cf == 0.0:
        assert dropped == 0


def test_balance_loss_matches_the_switch_formula_and_its_gradient():
    torch.manual_seed(0)
    b, n, e = 2, 5, 4
    logits = torch.randn(b, n, e, requires_grad=True)
    idx = logits.topk(2, dim=-1).indices
    value = _s4d().balance_loss(logits, idx, e)
    f = torch.zeros(b, e)
    for i in range(b):
        for t in range(n):
            for k in idx[i, t].tolist():
                f[i, k] += 1.0 / n
    p = logits.detach().mean(dim=1)
    expected = sum(float(f[i, k] * p[i, k]) for i in range(b) for k in range(e)) / (b * e) * e**2
    assert math.isclose(float(value.detach()), expected, rel_tol=1e-5)
    assert torch.allclose(f.sum(1), torch.full((b,), 2.0))
    value.backward()  # only through P (the raw noisy logits): d/dlogit[i,t,k] = E² f[i,k] / (B E N)
    assert torch.allclose(logits.grad, (e**2 * f / (b * e * n))[:, None, :].expand(b, n, e), atol=1e-6)


def test_training_outputs_and_criterion_weight():
    s4d = _s4d()
    model = _tiny().train()
    x = torch.randn(2, 3, 4, 32, 32)
    out = model(x)
    assert set(out) == {"logits", "moe_balance"} and out["logits"].shape == (2, 7)
    layers = model.moe_layers()
    assert len(layers) == 2 and math.isclose(float(out["moe_balance"]), float(sum(m.aux for m in layers)), rel_tol=1e-6)
    targets = F.one_hot(torch.tensor([1, 4]), 7).float()
    ce = float(torch.sum(-targets * F.log_softmax(out["logits"], -1), -1).mean())
    for weight in (0.0, 1e-3):
        spec = SimpleNamespace(model=SimpleNamespace(loss={"balance_weight": weight}))
        loss, parts = s4d.s4d_criterion(spec)(out, targets)
        assert math.isclose(float(loss), ce + weight * float(out["moe_balance"]), rel_tol=1e-5, abs_tol=1e-7)
        assert math.isclose(parts["moe_balance"], weight * float(out["moe_balance"]), rel_tol=1e-5, abs_tol=1e-9)
    assert resolve_spec("s4d", "dfew").model.loss["balance_weight"] == 0.0  # the official runs
    assert resolve_spec("s4d.balance_loss", "dfew").model.loss["balance_weight"] == 1e-3  # the intended setting


def test_eval_is_deterministic_unless_the_official_noise_is_switched_on():
    x = torch.randn(2, 3, 4, 32, 32)
    torch.manual_seed(0)
    model = _tiny().eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(1)
        a = model(x)["logits"]
        torch.manual_seed(2)
        assert not torch.allclose(a, model(x)["logits"])  # training routes with noise
    torch.manual_seed(0)
    official = _tiny(router_noise_eval=True).eval()
    with torch.no_grad():
        assert not torch.allclose(official(x), official(x))


# ----------------------------------------------------------------------------------------------------------
# image path, position table, layer decay


def test_position_table_is_the_videomae_sinusoid():
    table = _s4d().sinusoid_table(800, 768)
    for pos, j in [(0, 0), (0, 1), (5, 10), (5, 11), (799, 766), (123, 401)]:
        angle = pos / 10000 ** (2 * (j // 2) / 768)
        assert math.isclose(float(table[pos, j]), math.sin(angle) if j % 2 == 0 else math.cos(angle), abs_tol=1e-6)
    model = _tiny(frames=16, size=160, embed_dim=768, depth=1, num_heads=12, moe_from=1)
    assert model.pos_embed.shape == (1, 800, 768) and "pos_embed" not in model.state_dict()


def test_images_take_one_tubelet_slot0_positions_and_the_image_head():
    torch.manual_seed(0)
    model = _tiny().eval()  # built for 4 frames: 2 x 2 x 2 tokens
    img = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = model(img)
        assert out.shape == (3, 7)
        assert torch.equal(out, model(img[:, :, None]))  # (B,C,H,W) == (B,C,1,H,W)
        assert torch.allclose(out, model(img[:, :, None].expand(-1, -1, 4, -1, -1), task="image"), atol=1e-6)
        # PadIm2Video: one image = a clip of 2 copies (one tubelet), positions of temporal slot 0
        feats = model.forward_features(img[:, :, None])
        tokens = model.patch_embed.proj(img[:, :, None].repeat(1, 1, 2, 1, 1)).flatten(2).transpose(1, 2)
        x = tokens + model.pos_embed[:, :4]
        for blk in model.blocks:
            x = blk(x)
        assert torch.allclose(feats, model.fc_norm(x.mean(1)), atol=1e-5)
        assert torch.allclose(out, model.head["image"](feats), atol=1e-6)
        video = torch.randn(3, 3, 4, 32, 32)
        assert torch.allclose(model(video), model.head["video"](model.forward_features(video)), atol=1e-6)
    with pytest.raises(ValueError, match="task"):
        model(video, task="audio")


def test_layer_decay_groups_follow_videomae():
    model = _s4d().S4D(7, 4, 32)  # the full ViT-B layout, 12 blocks
    cfg = resolve_spec("s4d", "dfew").optim
    assert cfg.layer_decay == 0.75 and model.num_layers == 12
    scale = {}
    for g in param_groups(model, cfg):
        for p in g["params"]:
            scale[id(p)] = (g["lr_scale"], g["weight_decay"])
    named = dict(model.named_parameters())
    assert math.isclose(scale[id(named["patch_embed.proj.weight"])][0], 0.75**13)
    assert math.isclose(scale[id(named["blocks.6.moe_layer.experts.0.fc1.weight"])][0], 0.75**6)  # 0.178
    assert math.isclose(scale[id(named["blocks.11.moe_layer.router.topkroute_linear.weight"])][0], 0.75)
    assert scale[id(named["head.video.weight"])] == (1.0, 0.05) and scale[id(named["fc_norm.weight"])] == (1.0, 0.0)
    assert scale[id(named["blocks.0.attn.q_bias"])][1] == 0.0 and scale[id(named["blocks.0.attn.qkv.weight"])][1] == 0.05


def test_recipe_is_the_official_one():
    spec = resolve_spec("s4d", "dfew")
    d, o, r, t = spec.data, spec.optim, spec.reg, spec.train
    assert (d.frames, d.size, d.sampler, d.stride, d.test_views, d.test_crops, d.aggregate) == \
        (16, 160, "dense", 4, 2, 1, "mean_softmax")
    assert d.rrc_scale == [0.08, 1.0] and d.mean == [0.485, 0.456, 0.406] and d.std == [0.229, 0.224, 0.225]
    assert (o.name, o.lr, o.weight_decay, o.warmup_epochs, o.warmup_lr, o.schedule) == ("adamw", 4e-5, 0.05, 5, 0.0, "cosine")
    assert (r.mixup_alpha, r.cutmix_alpha, r.label_smoothing) == (0.8, 1.0, 0.1)
    assert (t.epochs, t.batch_size, t.precision, t.selection, t.selection_metric) == (100, 16, "fp16", "best_on_test", "war")
    assert resolve_spec("s4d", "ferv39k").data.stride == 1 and resolve_spec("s4d", "mafw").data.stride == 4
    info = METHODS.get("s4d")
    assert info.needs_pretrained == "s4d_pretrain" and info.literature == ("S4D (UniLearn)",) and info.uses_attention


# ----------------------------------------------------------------------------------------------------------
# the static image dataset


def _image(path: Path, value: int, fmt: str = "JPEG") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 24, 3), value, dtype=np.uint8)).save(path, fmt)


def _affectnet_like(root: Path) -> Path:
    """train/ and val/ (AffectNet: val = test), class names in assorted spellings, contempt present."""
    for split, n in (("train", 2), ("val", 1)):
        for cls in ("neutral", "Happiness", "angry", "surprise", "contempt"):
            for k in range(n):
                _image(root / split / cls / f"{k:04d}.jpg", 10 * k + 1)
    _image(root / "train" / "sad" / "0000.png", 99, "PNG")
    (root / "train" / "sad" / "notes.txt").write_text("not an image")
    return root


def _static():
    from bench.datasets import static_images

    return static_images


def test_static_images_manifest(tmp_path):
    ds = _static()
    root = _affectnet_like(tmp_path / "AffectNet")
    m = ds.build_manifest(root, None, {})
    assert m.classes == ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")  # S4D head.image order
    assert m.splits == ["test", "train"] and all(r.num_frames == 1 for r in m.records)
    train = {r.rel_path: r.label for r in m.split("train")}
    assert train == {"train/neutral/0000.jpg": 0, "train/neutral/0001.jpg": 0, "train/Happiness/0000.jpg": 1,
                     "train/Happiness/0001.jpg": 1, "train/angry/0000.jpg": 6, "train/angry/0001.jpg": 6,
                     "train/surprise/0000.jpg": 3, "train/surprise/0001.jpg": 3, "train/sad/0000.png": 2}
    assert {r.rel_path for r in m.split("test")} == {f"val/{c}/0000.jpg" for c in ("neutral", "Happiness", "angry",
                                                                                   "surprise")}
    assert m.split("test")[0].clip_id == m.split("test")[0].rel_path.rsplit(".", 1)[0]
    excluded = [s for s in m.skipped if s["kind"] == "excluded"]
    assert len(excluded) == 3 and all("contempt" in s["path"] for s in excluded)
    # the 8-class order keeps contempt; an explicit list; the cache gives the same manifest
    m8 = ds.build_manifest(root, None, {"classes": "affectnet8"})
    assert len(m8.records) == len(m.records) + 3 and m8.classes[-1] == "contempt"
    assert ds.build_manifest(root, None, {}).checksum() == m.checksum()
    # a new image changes the class folder: the cached manifest is not reused
    _image(root / "train" / "neutral" / "0002.jpg", 5)
    assert len(ds.build_manifest(root, None, {}).split("train")) == 10


def test_static_images_numbered_folders_bad_files_and_errors(tmp_path):
    ds = _static()
    root = tmp_path / "RAF-DB"
    for k in range(1, 8):
        _image(root / "train" / str(k) / "a.jpg", k)
        _image(root / "test" / str(k) / "b.jpg", k)
    m = ds.build_manifest(root, None, {"classes": "rafdb"})
    assert m.classes == ("surprise", "fear", "disgust", "happy", "sad", "anger", "neutral")
    assert {r.rel_path: r.label for r in m.split("test")}["test/4/b.jpg"] == 3  # RAF-DB 4 = happiness
    with pytest.raises(DataError, match="numbered folders"):
        ds.build_manifest(root, None, {"classes": "neutral,happy"})
    (root / "train" / "1" / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        ds.build_manifest(root, None, {"classes": "rafdb", "refresh": True})
    m = ds.build_manifest(root, None, {"classes": "rafdb", "on_bad_clip": "skip"})
    assert len(m.split("train")) == 7 and any(s["kind"] == "empty" for s in m.skipped)
    (root / "train" / "1" / "empty.jpg").unlink()
    _image(root / "train" / "bored" / "c.jpg", 3)
    with pytest.raises(DataError, match="bored"):
        ds.build_manifest(root, None, {"classes": "rafdb"})
    with pytest.raises(DataError, match="train/"):
        ds.build_manifest(tmp_path / "RAF-DB" / "test", None, {})


def test_static_images_is_a_registered_dataset(tmp_path):
    _static()
    root = _affectnet_like(tmp_path / "AffectNet")
    info = DATASETS.get("static_images")
    assert info.is_present(root) and not info.is_present(tmp_path)
    from bench.data.manifest import load_manifest

    spec = resolve_spec("s4d", "static_images", sets=[f"data.root={root}", "data.frames=1"])
    assert load_manifest(spec).classes[1] == "happy"


def test_read_clip_reads_a_folder_holding_one_image(tmp_path):
    _image(tmp_path / "clip" / "0.jpg", 77)
    clip = read_clip(tmp_path / "clip", [0] * 4)
    assert clip.shape == (4, 20, 24, 3) and abs(int(clip[2, 5, 5, 0]) - 77) <= 2


def test_static_image_records_load_through_the_clip_dataset(tmp_path):
    from bench.data.loader import ClipDataset

    root = _affectnet_like(tmp_path / "AffectNet")
    m = _static().build_manifest(root, None, {})
    spec = resolve_spec("s4d", "static_images", sets=[f"data.root={root}", "data.frames=1", "data.size=32"])
    item = ClipDataset(m, m.split("train"), spec.data, train=True)[0]
    assert item["clip"].shape == (3, 1, 32, 32)


@pytest.mark.slow
def test_joint_training_with_static_images(tmp_path, data_home):
    """s4d trains on synthetic through `bench run` (video only, from random init, labelled so), and with data.mix:
    image batches of a static_images set interleaved with the video batches (S4D's --mode joint); the image head
    trains only in the joint run, and the image set is recorded with the result."""
    root = _affectnet_like(tmp_path / "AffectNet")
    base = ["run", "-m", "s4d", "-d", "synthetic", "--fold", "1", "--epochs", "1", "--batch-size", "2", *TINY]
    env = {"DFER_DATA_HOME": str(data_home)}
    bench_cli([*base, "--results", "video"], tmp_path, env, check=True)
    (video,) = (tmp_path / "video").rglob("result.json")
    r = json.loads(video.read_text())
    assert r["method"] == "s4d" and r["family"] == "self-supervised ViT"
    assert r["profile"]["params_total"] == 100_513_646
    assert r["protocol"]["init"]["label"] == "random init (not the method)"
    bench_cli([*base, "--results", "joint", "--set", "data.mix.dataset=static_images", "--set", f"data.mix.root={root}",
               "--set", "data.mix.rate=1.0", "--set", "data.mix.batch_scale=1"], tmp_path, env, check=True)
    (joint,) = (tmp_path / "joint").rglob("result.json")
    log = [json.loads(x) for x in (joint.parent / "metrics.jsonl").read_text().splitlines()]
    assert "image_ce" in log[0]["train_loss_parts"] and "ce" in log[0]["train_loss_parts"]
    image_test = log[0]["image_test"]  # the val/ folder (AffectNet's test split): 4 images of the 7-class order
    assert image_test["n"] == 4 and 0.0 <= image_test["war"] <= 1.0 and 0.0 <= image_test["uar"] <= 1.0
    video_log = (video.parent / "metrics.jsonl").read_text()
    assert "image_test" not in video_log
    assert json.loads(joint.read_text())["env"]["mix_manifest_sha256"]
    heads = [torch.load(next((tmp_path / d).rglob("last.pt")), weights_only=True)["model"]["head.image.weight"]
             for d in ("video", "joint")]
    assert not torch.equal(heads[0], heads[1])  # same seed and init: only the image steps moved it
