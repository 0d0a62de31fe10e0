"""MAE-DFER / LGI-Former and the joint-attention video ViT: sizes against the official code, the official
checkpoints' key names (tests/data/mae_dfer_*_keys.json, from the official state_dicts), both weights sources,
the pre-training objective (masking, targets, loss, checkpoint round trip), the layer-decay groups, the
drop-path units, the recipes and one real `bench run` / `bench eval --source` on synthetic."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from bench.api import build_model
from bench.errors import BenchError
from bench.methods import _mae_dfer_layers as L
from bench.methods import mae_dfer as M
from bench.optim import param_groups
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.spec import RunSpec, deep_merge, resolve_spec
from bench.weights import apply_init
from tests.conftest import bench_cli

DATA = Path(__file__).parent / "data"
FINETUNE_KEYS = json.loads((DATA / "mae_dfer_finetune_keys.json").read_text())
PRETRAIN_KEYS = json.loads((DATA / "mae_dfer_pretrain_keys.json").read_text())
SMALL = {"frames": 16, "size": 64, "region_size": (2, 2, 4)}  # 8x4x4 tokens, 8 regions: the official shapes
FRESH = ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]  # what fine-tuning initialises fresh
SYNTHETIC_DATA = ["--set", "data.options.clips_per_class=2", "--set", "data.options.folds=2", "--set",
                  "data.options.resolution=32"]


@pytest.fixture
def fast_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain normal draws instead of truncated normal / xavier where the init does not matter (3x faster)."""
    monkeypatch.setattr(torch.nn.init, "trunc_normal_", lambda t, mean=0.0, std=1.0, **_: t.data.normal_(mean, std))
    monkeypatch.setattr(torch.nn.init, "xavier_uniform_", lambda t, **_: t.data.normal_(0.0, 0.02))


def _official_state_dict(keys: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=gen) * 0.02 for k, shape in keys["keys"].items()}


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------------------------------------
# sizes


@pytest.mark.slow
def test_sizes_match_the_official_code() -> None:
    """84,878,343 / 49.752 GMACs (LGI-Former) and 51,221,511 / 51.446 GMACs (joint ViT) at 16x160², measured
    from the official code with fvcore; FlopCounterMode agrees (it omits only the LayerNorms)."""
    for name, params, gmacs in (("mae_dfer", 84_878_343, 49.752), ("video_vit", 51_221_511, 51.446)):
        model = build_model(name, 7)
        total, trainable = count_params(model)
        assert total == params and trainable == total
        macs = count_macs(model, (3, 16, 160, 160))
        assert abs(macs["gmacs_fvcore"] / gmacs - 1) < 0.01, (name, macs["gmacs_fvcore"])
        assert macs["flop_disagreement"] < 0.03
        del model
    assert count_params(build_model("mae_dfer", 11))[0] == 84_880_395  # MAFW, = the official MAFW log


@pytest.mark.slow
def test_pretrainer_cost_matches_the_official_code() -> None:
    """92,760,192 params; 14.05 GMACs at 16x160² with 80 visible tokens (encoder 5.97 + decoder 8.07)."""
    from fvcore.nn import FlopCountAnalysis

    pre = M.build_mae_pretrainer(16, 160).eval()
    assert count_params(pre)[0] == 92_760_192
    mask = pre.draw_mask(1)

    class Predict(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pre = pre

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pre.predict(x, mask)

    with torch.no_grad():
        flops = FlopCountAnalysis(Predict(), torch.randn(1, 3, 16, 160, 160))
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total, by_module = flops.total() / 1e9, flops.by_module()
    assert abs(total / 14.05 - 1) < 0.01
    assert abs(by_module["pre.encoder"] / 1e9 / 5.97 - 1) < 0.01 and abs(by_module["pre.decoder"] / 1e9 / 8.07 - 1) < 0.01


def test_state_dicts_have_the_official_keys_and_shapes(fast_init: None) -> None:
    """Fine-tune model = the 519 official keys (region tokens [8,512]: 8 regions), pre-trainer = the 575 keys of
    the official pre-training model; no position table in either (fixed, non-persistent)."""
    model = M.mae_dfer(7, **SMALL)
    assert _shapes(model) == FINETUNE_KEYS["keys"]
    assert sum(p.numel() for p in model.parameters()) == FINETUNE_KEYS["num_params"]
    pre = M.build_mae_pretrainer(16, 64, region_size=(2, 2, 4))
    assert _shapes(pre) == PRETRAIN_KEYS["keys"]
    assert sum(p.numel() for p in pre.parameters()) == PRETRAIN_KEYS["num_params"] == 92_760_192


def test_joint_vit_has_videomae_block_keys(fast_init: None) -> None:
    """The joint variant's keys (notes §2): blocks.i.{norm1, attn.{qkv, q_bias, v_bias, proj}, norm2, mlp}."""
    model = M.video_vit(7, 8, 32)
    per_block = {"norm1.weight": [512], "norm1.bias": [512], "attn.q_bias": [512], "attn.v_bias": [512],
                 "attn.qkv.weight": [1536, 512], "attn.proj.weight": [512, 512], "attn.proj.bias": [512],
                 "norm2.weight": [512], "norm2.bias": [512], "mlp.fc1.weight": [2048, 512], "mlp.fc1.bias": [2048],
                 "mlp.fc2.weight": [512, 2048], "mlp.fc2.bias": [512]}
    expected = {"patch_embed.proj.weight": [512, 3, 2, 16, 16], "patch_embed.proj.bias": [512],
                **{f"blocks.{i}.{k}": v for i in range(16) for k, v in per_block.items()},
                "fc_norm.weight": [512], "fc_norm.bias": [512], "head.weight": [7, 512], "head.bias": [7]}
    assert _shapes(model) == expected


def test_region_grid_follows_the_input(fast_init: None) -> None:
    assert L.resolve_region_size((8, 10, 10), None) == (2, 5, 10)  # the official regions at 16x160²
    assert L.resolve_region_size((4, 2, 2), None) == (2, 1, 2)
    with pytest.raises(ValueError, match="region"):
        L.resolve_region_size((4, 3, 3), None)  # 8 frames at 48²: H' odd, set region_size
    with pytest.raises(ValueError, match="divid"):
        L.resolve_region_size((8, 10, 10), (2, 4, 10))
    model = M.mae_dfer(7, 8, 32).eval()
    assert model.grid == (4, 2, 2) and model.region_size == (2, 1, 2) and model.num_regions == 4
    with torch.no_grad():
        assert model(torch.rand(2, 3, 8, 32, 32)).shape == (2, 7)


# ----------------------------------------------------------------------------------------------------------
# weights sources


def test_vox2_pretrain_checkpoint_loads_as_the_official_loader_does(tmp_path: Path, fast_init: None) -> None:
    """The released pre-training file ({'model': 575 keys, 'epoch', 'optimizer', ...}): `encoder.` stripped,
    decoder / mask_token / encoder_to_decoder / encoder.norm dropped (notes['dropped']); fc_norm and head
    missing (fine-tuning initialises them), exactly as in the official fine-tuning log."""
    sd = _official_state_dict(PRETRAIN_KEYS)
    path = tmp_path / "checkpoint-49.pth"
    torch.save({"model": sd, "epoch": 49, "optimizer": {"state": {}, "param_groups": []}}, path)
    model = M.mae_dfer(7, **SMALL)
    record = apply_init(model, METHODS.get("mae_dfer"), f"vox2_pretrain:{path}")
    report = record["report"]
    assert report["missing"] == FRESH and report["unexpected"] == [] and report["mismatched"] == []
    assert report["loaded"] == len(FINETUNE_KEYS["keys"]) - len(FRESH) and report["notes"]["epoch"] == 49
    dropped = sorted(k for k in sd if k.startswith(("decoder.", "encoder_to_decoder.", "mask_token", "encoder.norm.")))
    assert report["notes"]["dropped"] == dropped and len(dropped) == 575 - 515
    own = model.state_dict()
    for key in ("lg_region_tokens", "patch_embed.proj.weight", "blocks.7.third_attn.kv.weight", "blocks.15.mlp.fc2.bias"):
        assert torch.equal(own[key], sd["encoder." + key]), key
    assert record["label"] == "vox2_pretrain" and record["needs_pretrained"] == "vox2_pretrain"


def test_official_file_with_its_args_namespace_loads(tmp_path: Path, fast_init: None) -> None:
    path = tmp_path / "checkpoint-49.pth"
    torch.save({"model": _official_state_dict(PRETRAIN_KEYS), "epoch": 49, "args": argparse.Namespace(lr=1e-3)}, path)
    apply_init(M.mae_dfer(7, **SMALL), METHODS.get("mae_dfer"), f"vox2_pretrain:{path}")


@pytest.mark.slow
def test_bench_pretrain_checkpoint_round_trip(tmp_path: Path, fast_init: None) -> None:
    """A pre-trainer's state_dict saved as {'model': sd} (what `bench pretrain` writes) loads into mae_dfer
    through vox2_pretrain like the official file; here the two synthetic recipes' inputs (pre-training 8x64²
    with regions (2,2,4), fine-tuning 8x32² with the default (2,1,2): 4 regions each)."""
    torch.manual_seed(0)
    pre_spec = METHODS.get("mae_dfer").pretrain
    assert pre_spec.loads_with == "vox2_pretrain" and pre_spec.build is M.build_mae_pretrainer
    synthetic = deep_merge(pre_spec.recipe.defaults, pre_spec.recipe.datasets["synthetic"])
    pre = pre_spec.build(synthetic["data"]["frames"], synthetic["data"]["size"], **synthetic["model"]["kwargs"])
    path = tmp_path / "pretrain.pth"
    torch.save({"model": pre.state_dict()}, path)
    spec = resolve_spec("mae_dfer", "synthetic")
    model = build_model("mae_dfer", 7, spec.data.frames, spec.data.size, **spec.model.kwargs)
    report = apply_init(model, METHODS.get("mae_dfer"), f"vox2_pretrain:{path}")["report"]
    assert report["missing"] == FRESH and report["unexpected"] == [] and report["mismatched"] == []
    assert torch.equal(model.lg_region_tokens, pre.encoder.lg_region_tokens)
    assert torch.equal(model.blocks[3].second_attn.q.weight, pre.encoder.blocks[3].second_attn.q.weight)
    # the joint-attention pair: video_vit from the joint pre-trainer
    joint = METHODS.get("video_vit").pretrain.build(8, 64, region_size=[2, 2, 4])
    torch.save({"model": joint.state_dict()}, path)
    vit = build_model("video_vit", 7, 8, 32)
    report = apply_init(vit, METHODS.get("video_vit"), f"vox2_pretrain:{path}")["report"]
    assert report["missing"] == FRESH and report["unexpected"] == [] and report["mismatched"] == []
    assert torch.equal(vit.blocks[5].attn.qkv.weight, joint.encoder.blocks[5].attn.qkv.weight)


def test_finetuned_checkpoint_loads_completely(tmp_path: Path, fast_init: None) -> None:
    sd = _official_state_dict(FINETUNE_KEYS, seed=1)
    path = tmp_path / "checkpoint-99.pth"
    torch.save({"model": sd, "epoch": 99}, path)
    model = M.mae_dfer(7, **SMALL)
    report = apply_init(model, METHODS.get("mae_dfer"), f"finetuned:{path}")["report"]
    assert report["missing"] == [] and report["unexpected"] == [] and report["mismatched"] == []
    assert report["loaded"] == 519 and torch.equal(model.head.weight, sd["head.weight"])
    torch.save({"model": _official_state_dict(PRETRAIN_KEYS)}, path)
    with pytest.raises(BenchError, match="vox2_pretrain"):
        apply_init(model, METHODS.get("mae_dfer"), f"finetuned:{path}")


@pytest.mark.slow
def test_bench_eval_with_the_finetuned_source(tmp_path: Path, data_home: Path) -> None:
    """A released fine-tuned file (official names, {'model', 'epoch'}) evaluates through `bench eval --source`."""
    sd = _official_state_dict(FINETUNE_KEYS, seed=2)
    path = tmp_path / "checkpoint-99.pth"
    torch.save({"model": sd, "epoch": 99}, path)
    proc = bench_cli(["eval", "--checkpoint", str(path), "-m", "mae_dfer", "-d", "synthetic", "--fold", "1",
                      "--source", "finetuned", "--workers", "0", "--json", "--set", "data.frames=16", "--set",
                      "data.size=64", "--set", "model.kwargs.region_size=[2,2,4]", "--set", "train.batch_size=4",
                      *SYNTHETIC_DATA],
                     tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    ev = json.loads(proc.stdout)
    assert ev["load_report"]["missing"] == [] and ev["load_report"]["unexpected"] == []
    assert ev["load_report"]["loaded"] == 519 and ev["load_report"]["notes"]["epoch"] == 99
    assert 0.0 <= ev["metrics"]["uar"] <= 1.0 and ev["metrics"]["n_test"] > 0


# ----------------------------------------------------------------------------------------------------------
# pre-training objective


def test_part_window_masking_pattern() -> None:
    """Official part_window at 16x160²: 10x10 token frames cut into two 5x10 windows, 45 masked / 5 visible per
    window, the same 2-D mask at all 8 token frames; every (2,5,10) region holds 10 visible tokens."""
    torch.manual_seed(0)
    mask = L.part_window_mask(4, (8, 10, 10), (5, 10), 0.9)
    assert mask.shape == (4, 800) and mask.dtype == torch.bool
    grid = mask.reshape(4, 8, 2, 5, 10)  # (B, T', window, rows, cols)
    assert ((~grid).sum(dim=(3, 4)) == 5).all()
    assert (grid == grid[:, :1]).all()  # tube: identical at every token frame
    assert (~mask).sum(1).tolist() == [80] * 4
    assert not torch.equal(mask[0], mask[1])  # one draw per clip
    regions = L.region_ids((8, 10, 10), (2, 5, 10))
    for b in range(4):
        assert torch.bincount(regions[~mask[b]], minlength=8).tolist() == [10] * 8
    # draws come from torch's global RNG: reproducible under the harness's seed
    torch.manual_seed(7)
    a = L.part_window_mask(2, (4, 4, 4), (2, 4), 0.9)
    torch.manual_seed(7)
    assert torch.equal(a, L.part_window_mask(2, (4, 4, 4), (2, 4), 0.9))
    assert ((~a).reshape(2, 4, 2, 8).sum(-1) == 1).all()  # int(0.9*8)=7 masked of 8


def _hand_targets(clip: torch.Tensor) -> torch.Tensor:
    """Official formula, tubelet by tubelet with loops: (1,3,T,H,W) in [0,1] (mean 0, std 1) -> (N, 1536)."""
    _, c, t, h, w = clip.shape
    rows = []
    for it in range(t // 2):
        for ih in range(h // 16):
            for iw in range(w // 16):
                cube = clip[0, :, 2 * it:2 * it + 2, 16 * ih:16 * ih + 16, 16 * iw:16 * iw + 16]  # (3, 2, 16, 16)
                norm = torch.empty_like(cube)
                for ch in range(c):
                    v = cube[ch]
                    norm[ch] = (v - v.mean()) / (v.std(unbiased=True) + 1e-6)
                norm[:, 1] = norm[:, 1] - norm[:, 0]  # second frame := its difference from the first
                rows.append(norm.permute(1, 2, 3, 0).reshape(-1))  # (p0, p1, p2, c), c fastest
    return torch.stack(rows)


def test_targets_against_a_hand_computation() -> None:
    torch.manual_seed(0)
    clip = torch.rand(1, 3, 4, 32, 16)  # 2 x 2 x 1 tubelets
    hand = _hand_targets(clip)
    ours = L.tubelet_targets(clip, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    assert ours.shape == (1, 4, 1536)
    torch.testing.assert_close(ours[0], hand, atol=1e-5, rtol=1e-5)
    # ImageNet-normalised input: the targets are built on the unnormalised pixels
    mean, std = torch.tensor(L.IMAGENET_MEAN).view(1, 3, 1, 1, 1), torch.tensor(L.IMAGENET_STD).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(L.tubelet_targets((clip - mean) / std, L.IMAGENET_MEAN, L.IMAGENET_STD)[0], hand,
                               atol=1e-4, rtol=1e-4)
    plain = L.tubelet_targets(clip, (0.0,) * 3, (1.0,) * 3, normalize=False, frame_diff=False)
    assert torch.equal(plain[0, 1].view(2, 16, 16, 3)[1, 3, 5], clip[0, :, 1, 16 + 3, 5])


def test_pretrainer_loss_parts_and_reproducibility(fast_init: None) -> None:
    pre = M.build_mae_pretrainer(8, 64, region_size=(2, 2, 4)).train()
    clips = torch.randn(2, 3, 8, 64, 64)
    torch.manual_seed(3)
    out = pre(clips)
    assert set(out) >= {"loss", "parts"} and set(out["parts"]) == {"pixel", "motion"}
    assert out["mask"].shape == (2, 64) and int((~out["mask"]).sum()) == 2 * 8
    assert out["pred"].shape == out["target"].shape == (2, 56, 1536)
    mse = torch.nn.functional.mse_loss(out["pred"], out["target"])  # the official single MSE over masked tokens
    assert out["loss"].item() == pytest.approx(mse.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.5 * (out["parts"]["pixel"] + out["parts"]["motion"]), rel=1e-5)
    out["loss"].backward()
    grads = [p.grad for p in pre.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert pre.mask_token.grad is not None and pre.encoder.lg_region_tokens.grad is not None
    torch.manual_seed(3)
    with torch.no_grad():
        again = pre(clips)
    assert torch.equal(again["mask"], out["mask"]) and float(again["loss"]) == pytest.approx(float(out["loss"]))
    weighted = M.build_mae_pretrainer(8, 64, region_size=(2, 2, 4), target_diff_weight=0.8)
    weighted.load_state_dict(pre.state_dict())
    with torch.no_grad():
        w = weighted(clips, out["mask"])
    assert float(w["loss"]) == pytest.approx(0.2 * w["parts"]["pixel"] + 0.8 * w["parts"]["motion"], rel=1e-5)


def test_decoder_visible_order_quirk(fast_init: None) -> None:
    """The official encoder returns the visible tokens in region order while the decoder adds its position
    table in token order; `official` keeps that pairing, `original` restores token order."""
    torch.manual_seed(0)
    pre = M.build_mae_pretrainer(8, 64, region_size=(2, 2, 4)).eval()
    clips = torch.randn(1, 3, 8, 64, 64)
    mask = pre.draw_mask(1)
    vis = torch.argsort(mask.to(torch.int8), dim=1, stable=True)[:, :8]
    with torch.no_grad():
        region_order = pre.encoder(clips, vis, True)
        token_order = pre.encoder(clips, vis, False)
        perm = torch.argsort(pre.encoder.token_region[vis] * 64 + vis, dim=1)
        torch.testing.assert_close(region_order, token_order[:, perm[0]])
        assert not torch.allclose(region_order, token_order)  # tokens of two frames x two windows interleave
        official = pre.predict(clips, mask)
        pre.decoder_visible_order = "original"
        assert not torch.allclose(official, pre.predict(clips, mask))


# ----------------------------------------------------------------------------------------------------------
# optimiser groups, drop path, recipes


def test_layer_decay_and_weight_decay_groups(fast_init: None) -> None:
    """Official: 18 layer ids (patch_embed 0, blocks.i i+1, the rest 17), scale 0.75^(17-id); no wd on 1-D
    params, biases and the region tokens; the head weight is decayed."""
    model = M.mae_dfer(7, 8, 32)
    cfg = resolve_spec("mae_dfer", "dfew").optim
    assert cfg.layer_decay == 0.75 and model.num_layers == 16
    where = {}
    for g in param_groups(model, cfg):
        for p in g["params"]:
            where[id(p)] = (g["lr_scale"], g["weight_decay"])
    named = dict(model.named_parameters())
    assert where[id(named["patch_embed.proj.weight"])] == (pytest.approx(0.75 ** 17), 0.05)
    assert where[id(named["blocks.0.first_attn.q.weight"])] == (pytest.approx(0.75 ** 16), 0.05)
    assert where[id(named["blocks.15.mlp.fc1.weight"])] == (pytest.approx(0.75), 0.05)
    assert where[id(named["blocks.15.mlp.fc1.bias"])] == (pytest.approx(0.75), 0.0)
    assert where[id(named["blocks.3.second_attn.q_bias"])][1] == 0.0
    assert where[id(named["lg_region_tokens"])] == (pytest.approx(1.0), 0.0)
    assert where[id(named["head.weight"])] == (pytest.approx(1.0), 0.05)
    assert where[id(named["fc_norm.weight"])] == (pytest.approx(1.0), 0.0)


def test_drop_path_units() -> None:
    """official: the local-attention and MLP branches drop single regions (rows of (B*R, S, C)); clip: whole clips."""
    torch.manual_seed(0)
    b, n = 8, 8
    y = torch.ones(b * n, 5, 4)
    official = L.LGBlock(64, 2, drop_path=0.5, drop_path_unit="official").train()
    per_row = official._dp_local(y, b)[:, 0, 0].reshape(b, n)
    assert ((per_row == 0) | (per_row == 2)).all() and (per_row.min(1).values != per_row.max(1).values).any()
    clip = L.LGBlock(64, 2, drop_path=0.5, drop_path_unit="clip").train()
    per_row = clip._dp_local(y, b)[:, 0, 0].reshape(b, n)
    assert (per_row == per_row[:, :1]).all() and per_row.unique().numel() == 2
    with pytest.raises(ValueError, match="drop_path_unit"):
        L.LGBlock(64, 2, drop_path_unit="region")
    # eval mode: no drop, both units the same function
    clip.load_state_dict(official.state_dict())
    x = torch.randn(2 * 4, 6, 64)
    with torch.no_grad():
        torch.testing.assert_close(official.eval()(x, 2), clip.eval()(x, 2))


def test_recipes() -> None:
    """Effective lr = 1e-3 x total batch / 256; FERV39k at sampling rate 1 and batch 120; 2 test views with
    softmax averaging; last epoch; warm-up from 0."""
    dfew, fer, mafw = (resolve_spec("mae_dfer", d) for d in ("dfew", "ferv39k", "mafw"))
    for spec, stride, batch in ((dfew, 4, 96), (fer, 1, 120), (mafw, 4, 96)):
        assert (spec.data.frames, spec.data.size, spec.data.sampler, spec.data.stride) == (16, 160, "dense", stride)
        assert spec.train.batch_size == batch and spec.optim.lr == pytest.approx(1e-3 * batch / 256)
        assert spec.optim.min_lr == pytest.approx(1e-6 * batch / 256) and spec.optim.warmup_lr == 0.0
        assert (spec.data.test_views, spec.data.test_crops, spec.data.aggregate) == (2, 1, "mean_softmax")
        assert spec.train.selection == "last" and spec.train.epochs == 100 and spec.optim.warmup_epochs == 5
        assert spec.optim.betas == [0.9, 0.999] and spec.optim.layer_decay == 0.75
        assert (spec.reg.mixup_alpha, spec.reg.cutmix_alpha, spec.reg.label_smoothing) == (0.8, 1.0, 0.1)
        assert spec.model.kwargs["drop_path"] == 0.1 and spec.data.mean == list(L.IMAGENET_MEAN)
    assert dfew.optim.lr == pytest.approx(3.75e-4) and fer.optim.lr == pytest.approx(4.6875e-4)
    assert resolve_spec("video_vit", "ferv39k").data.stride == 1
    info = METHODS.get("mae_dfer")
    assert info.needs_pretrained == "vox2_pretrain" and info.family == "self-supervised ViT" and info.uses_attention
    assert info.literature == ("MAE-DFER",) and info.paper.arxiv == "2307.02227"


def test_pretrain_recipe_is_a_valid_spec() -> None:
    """The pre-training recipe's sections are RunSpec keys; its model.kwargs are the builder's arguments."""
    import inspect

    for method in ("mae_dfer", "video_vit"):
        pre = METHODS.get(method).pretrain
        allowed = set(inspect.signature(pre.build).parameters) - {"frames", "size"}
        for layer in ({}, pre.recipe.datasets["synthetic"]):
            merged = deep_merge(pre.recipe.defaults, layer)
            spec = RunSpec.from_dict({"method": method, "dataset": "synthetic", **merged})
            assert set(spec.model.kwargs) <= allowed
        spec = RunSpec.from_dict({"method": method, "dataset": "synthetic", **pre.recipe.defaults})
        assert spec.optim.betas == [0.9, 0.95] and spec.optim.lr == pytest.approx(3e-4 * 160 / 256)
        assert (spec.data.frames, spec.data.stride, spec.optim.warmup_epochs, spec.optim.weight_decay) == (16, 4, 5, 0.05)


# ----------------------------------------------------------------------------------------------------------
# end to end


@pytest.mark.slow
def test_trains_on_synthetic(tmp_path: Path, data_home: Path) -> None:
    bench_cli(["run", "-m", "mae_dfer", "-d", "synthetic", "--fold", "1", "--epochs", "1", "--batch-size", "2",
               "--workers", "0", "--no-progress", "--no-latency", *SYNTHETIC_DATA],
              tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    (result,) = (tmp_path / "results" / "runs").rglob("result.json")
    r = json.loads(result.read_text())
    assert r["method"] == "mae_dfer" and r["family"] == "self-supervised ViT" and r["status"] == "completed"
    assert r["profile"]["params_total"] == 84_878_343 - 4 * 512  # 4 regions at 8x32² instead of 8
    assert r["protocol"]["init"]["label"] == "random init (not the method)"


@pytest.mark.slow
def test_bench_pretrain_then_fine_tune_from_its_checkpoint(tmp_path: Path, data_home: Path) -> None:
    """The user's path without the VoxCeleb2 file: `bench pretrain -m mae_dfer` on a fold's training clips, then
    `bench run --init vox2_pretrain:<its pretrained.pt>`; the run loads the whole encoder and says where it came
    from (in-domain pre-training, not the official checkpoint)."""
    env = {"DFER_DATA_HOME": str(data_home)}
    common = ["-d", "synthetic", "--fold", "1", "--epochs", "1", "--batch-size", "2", "--workers", "0",
              "--no-progress", *SYNTHETIC_DATA]
    proc = bench_cli(["pretrain", "-m", "mae_dfer", *common], tmp_path, env, check=True)
    assert "next: bench run -m mae_dfer" in proc.stdout
    (weights,) = (tmp_path / "results" / "pretrain").rglob("pretrained.pt")
    bench_cli(["run", "-m", "mae_dfer", *common, "--no-latency", "--init", f"vox2_pretrain:{weights}"],
              tmp_path, env, check=True)
    (result,) = (tmp_path / "results" / "runs").rglob("result.json")
    init = json.loads(result.read_text())["protocol"]["init"]
    assert init["kind"] == "vox2_pretrain" and init["report"]["missing"] == FRESH
    assert init["report"]["unexpected"] == [] and init["report"]["mismatched"] == []
    assert "bench pretrain on synthetic fold 1" in init["label"] and "not the official" in init["label"]


def test_pretraining_decays_the_region_tokens_as_released(fast_init: None) -> None:
    """Official pre-training: no decay on 1-D parameters, biases and names in {pos_embed, cls_token, mask_token}
    (exact match): the mask token is exempt, the encoder's region tokens are decayed. Fine-tuning exempts them."""
    spec = resolve_spec("mae_dfer", "synthetic", pretrain=True)
    pre = M.build_mae_pretrainer(8, 64, region_size=[2, 2, 4])
    decay_of = {id(p): g["weight_decay"] for g in param_groups(pre, spec.optim) for p in g["params"]}
    names = dict(pre.named_parameters())
    assert decay_of[id(names["mask_token"])] == 0.0 and decay_of[id(names["encoder.lg_region_tokens"])] == 0.05
    weight = next(n for n, p in names.items() if p.ndim == 2 and n.startswith("encoder.blocks."))
    assert decay_of[id(names[weight])] == 0.05
    assert all(decay_of[id(p)] == 0.0 for n, p in names.items() if p.ndim == 1)
    fine = resolve_spec("mae_dfer", "synthetic")
    model = M.mae_dfer(7, **SMALL)
    decay_of = {id(p): g["weight_decay"] for g in param_groups(model, fine.optim) for p in g["params"]}
    assert decay_of[id(model.lg_region_tokens)] == 0.0
