"""MAE-DFER / LGI-Former (Sun, Lian, Liu & Tao, ACM MM 2023, arXiv 2307.02227); official code
github.com/sunlicai/MAE-DFER @ 80b651d (last model change 5e84a29, the `.clone()` fix). Network code is in
`methods/_mae_dfer_layers.py`; this file holds the registrations, recipes, weights converters and the
pre-training objective (`bench pretrain`).

Registered here:
- `mae_dfer`: the LGI-Former fine-tuning model (`vit_base_dim512_no_depth_patch16_160 --depth 16
  --attn_type local_global --lg_region_size 2 5 10 --lg_classify_token_type region`): tubelet 2x16x16 at
  16x160² (8x10x10 = 800 tokens), width 512, depth 16, 8 heads, MLP 4, qkv bias as q_bias/v_bias, LayerNorm
  eps 1e-6, fixed 1-D sinusoid position table (not a parameter, not in the state_dict). Tokens are cut into
  regions of (2,5,10) tokens (8 regions of 100), each with a learnable region token; every block does local
  self-attention inside each region (incl. its region token), global self-attention among the region tokens,
  cross-attention of the patch tokens to the region tokens, then the MLP. Head: LayerNorm(mean of the region
  tokens) -> Linear (init x0.001). Drop path 0.1 (linear over the blocks), one module for the four branches.
- `video_vit`: the same trunk with VideoMAE's plain joint attention (`--attn_type joint`), mean of the patch
  tokens -> fc_norm -> head: the vanilla "self-supervised video ViT" the paper compares the LGI-Former with.
- the pre-training objective (PretrainSpec): masked autoencoding with part-window tube masking (ratio 0.9:
  5 visible tokens per 5x10 window, the same at every token frame), a 4-block 384-wide decoder (6 heads), and
  MSE on the masked tokens' per-tubelet-normalised targets whose second frame is the difference from the
  first (joint appearance + motion targets). Its state_dict keys are the official pre-training checkpoint's,
  so a `bench pretrain` checkpoint loads through `vox2_pretrain` exactly like the released `checkpoint-49.pth`.

Sizes measured from the official code (CPU, fvcore, batch 1; /work/notes/mae_dfer/NOTES.md): LGI-Former
84,878,343 params (84,880,395 with 11 classes; = the official logs) / 49.752 GMACs at 16x160²; joint ViT
51,221,511 / 51.446 GMACs; pre-trainer 92,760,192 params (= the official pre-training log). Paper: 85 M / 50 G.
The LGI-Former has 33.7 M more parameters than the joint ViT (three attention modules per block) but ~3 %
fewer MACs at 800 tokens; the pre-trainer costs 14.05 GMACs at 80 visible tokens (encoder 5.97 + decoder 8.07).
This port gives the same counts (tests/test_mae_dfer.py), and during development it reproduced the official
modules' outputs exactly (max |diff| 0.0 on CPU with shared weights and masks from the official generators:
fine-tune LGI-Former and joint ViT at 16x160², 8x64² with regions (2,2,4) and (2,2,2); pre-trainer predictions
at 16x160² and 16x64² (LGI part_window, joint part_window and tube); targets and loss at 16x160²).

Every difference from the official code:
1. Train augmentation: video RandAugment (rand-m7-n4-mstd0.5-inc1, timm's ops, one draw per clip) and random
   erasing (p 0.25, pixel mode, one box through all frames) are on, as released, except in the CPU-sized synthetic
   recipe; RandAugment resamples with the run's bilinear interpolation (official: bicubic) and works on the
   decoded frames (official: frames squashed to 160x160 first, translations relative to that). Random resized crop (scale 0.08-1,
   ratio 3/4-4/3, one box per clip), flip 0.5, mixup 0.8 / cutmix 1.0 (batch mode, switch 0.5) and label
   smoothing 0.1 are as released. The official code squashes every frame to 160x160 before cropping; the
   harness draws the crop box on the source frame (the same for square face crops).
2. Temporal sampling: dense 16 frames at stride sr (4 on DFEW/MAFW, 1 on FERV39k). Official rule
   (kinetics.py @ 80b651d, VideoClsDatasetFrame.load_video, n frames): training, n > 16*sr: end e uniform in
   [16*sr, n-1], s = e - 16*sr, frames s + floor(k*16*sr/15) for k < 15 and s + 16*sr - 1 for k = 15 (sr 4:
   offsets 0,4,8,12,17,...,59,63, span 64); n <= 16*sr, deterministic: the m = n//sr points floor(j*n/(m-1))
   (m = 1: just 0), then 16 - m copies, all clipped to n-1 (sr 4, n 40: 0,4,8,13,17,22,26,31,35,39 x7).
   Harness: start uniform in [0, n-15*sr-1], frames start + k*sr, edge-padded with n-1 (n 40: 0,4,...,36,
   39 x6). So at sr 4 every training clip differs; at sr 1 they match for n <= 16, and for n > 16 the harness
   also draws the last window (start n-16), which the official never does. Test: official windows start at 0
   and sr*max(ceil(n/sr)-16, 0) on the every-sr-th-frame list padded with its own last entry sr*(ceil(n/sr)-1);
   the harness's start at 0 and max(n-15*sr-1, 0), padded with n-1: exact at sr 1; at sr 4 the second window
   starts 0-3 frames later (n 100: 39 vs 36) and clips of n <= 60 pad with n-1 (n 40: 39 vs 36).
3. Test: official 2 temporal clips (first and last 16 of every sr-th frame) x 2 spatial crops; after the
   160x160 squash the 2 crops are the same frame, so the protocol is 2 temporal views x 1 crop here
   (data.test_views=2, uniform windows at the start and the end), softmax-averaged (mean_softmax). The
   harness resizes the short side and centre-crops instead of squashing (identical for square crops).
4. Selection: the released numbers are last-epoch (`final_test` after epoch 100); the official per-epoch "val"
   is the test set and only picks `checkpoint-best.pth`: here selection = last.
5. One process with the official total batch (3 GPUs x 32 = 96; FERV39k 3 x 40 = 120) instead of 3 DDP ranks.
6. The official in-place writes into x[:,0] / x[:,1:] are written with torch.cat (same values).
7. Pre-training: masks are drawn from torch's global RNG in the model (official: numpy in the loader
   workers); windows not spanning the full width are allowed (official asserts full width); the loss is
   computed in float32; the official decoder pairs the encoder output, which comes out in *region* order,
   with the decoder position table in original token order, so the visible tokens of the second token frame's
   top window and the first frame's bottom window swap decoder positions inside every region pair: kept
   (model.kwargs.decoder_visible_order=official; `original` re-orders them). VoxCeleb2's fixed 160² top crop
   and GroupMultiScaleCrop are approximated by a random resized crop (scale 0.43-1, ratio 0.857-1.167).

Choices: at inputs other than 16x160² the region size defaults to (2, H'/2, W') in tokens (2 token frames x half
the height x the full width: (2,5,10) at 160²; model.kwargs.region_size overrides, it must divide the token
grid), and the pre-training mask window is the region's (h, w). drop_path_unit=official keeps the released
drop-path units (whole regions in the local-attention and MLP branches, whole clips in the global and cross
branches); `clip` drops whole clips everywhere. classify_token (region | org | all) is the official option.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from bench.api import InputSpec, Paper, PretrainSpec, Recipe, WeightsSource, register_method

from ._mae_dfer_layers import IMAGENET_MEAN, IMAGENET_STD, MAEPretrainer, VideoTransformer

PAPER = Paper(authors="Sun, Lian, Liu & Tao",
              title="MAE-DFER: Efficient Masked Autoencoder for Self-supervised Dynamic Facial Expression Recognition",
              venue="ACM MM", year=2023, arxiv="2307.02227", code="github.com/sunlicai/MAE-DFER")

# ----------------------------------------------------------------------------------------------------------
# weights


_PRETRAIN_ONLY = ("decoder.", "encoder_to_decoder.", "mask_token")


def convert_vox2_pretrain(sd: dict, model: nn.Module, notes: dict) -> dict:
    """A pre-training checkpoint ({'model': encoder.*, decoder.*, encoder_to_decoder, mask_token}: the released
    VoxCeleb2 `checkpoint-49.pth` or a `bench pretrain` checkpoint) -> fine-tuning names, as the official
    fine-tuning loader does: strip a leading `encoder.` (or `backbone.`), drop the decoder, mask token,
    encoder_to_decoder and the encoder's final `norm` (the fine-tune model uses a fresh fc_norm), drop `head.*`
    only where its shape differs. What is dropped is listed in notes['dropped']."""
    own = model.state_dict()
    out, dropped = {}, []
    for key, value in sd.items():
        name = key
        for prefix in ("backbone.", "encoder."):
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        if key.startswith(_PRETRAIN_ONLY) or name.startswith("norm."):
            dropped.append(key)
            continue
        if name.startswith("head.") and name in own and own[name].shape != value.shape:
            dropped.append(key)
            continue
        out[name] = value
    notes["dropped"] = sorted(dropped)
    return out


def convert_finetuned(sd: dict, model: nn.Module, notes: dict) -> dict:
    """A released fine-tuned checkpoint ({'model': ...} with the fine-tuning names: lg_region_tokens,
    patch_embed.proj, blocks.i.*, fc_norm, head): the names are already ours."""
    if any(k.startswith(("encoder.", "decoder.")) for k in sd):
        raise ValueError("this is a pre-training checkpoint (encoder./decoder. keys): use the vox2_pretrain source")
    return dict(sd)


def _weights(kind: str) -> dict[str, WeightsSource]:
    if kind == "lgi":
        pre = ("the VoxCeleb2 pre-training checkpoint ({'model': encoder.*, decoder.*, ...}, released "
               "checkpoint-49.pth) or a `bench pretrain` checkpoint of this method")
        fin = "a released MAE-DFER fine-tuned checkpoint (DFEW/MAFW fold or FERV39k; {'model': ...})"
    else:
        pre = ("a joint-attention pre-training checkpoint of the same code (--attn_type joint; no such file is "
               "released) or a `bench pretrain` checkpoint of this method")
        fin = "a fine-tuned joint-attention checkpoint of the same code ({'model': ...})"
    return {"vox2_pretrain": WeightsSource(pre, "checkpoint-49.pth", convert_vox2_pretrain),
            "finetuned": WeightsSource(fin, "checkpoint-99.pth", convert_finetuned)}


# ----------------------------------------------------------------------------------------------------------
# recipes

IMAGENET = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def _lr(base: float, batch: int) -> float:
    """The official linear scaling rule: lr = base x total batch / 256."""
    return base * batch / 256


_FINETUNE_DEFAULTS: dict = {
    # DFEW (and MAFW): 16 frames at sampling rate 4, 160x160, ImageNet normalisation; test = 2 temporal views
    # (the 2 official spatial crops are identical after the square resize), softmax-averaged; last epoch.
    "data": {"frames": 16, "size": 160, "sampler": "dense", "stride": 4, "pad": "edge", "test_temporal": "uniform",
             "test_views": 2, "test_crops": 1, "aggregate": "mean_softmax", "flip": True, "rrc_scale": [0.08, 1.0],
             "rrc_ratio": [3 / 4, 4 / 3], "interpolation": "bilinear", "color_jitter": [0.0, 0.0, 0.0, 0.0],
             "randaugment": "rand-m7-n4-mstd0.5-inc1", "random_erasing": 0.25, **IMAGENET},
    # AdamW (0.9, 0.999), base lr 1e-3 x 96/256, layer decay 0.75, wd 0.05 (not on 1-D params, biases, region
    # tokens), per-step cosine to 1e-6 x 96/256 after 5 warm-up epochs from 0
    "optim": {"name": "adamw", "lr": _lr(1e-3, 96), "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.05,
              "decay_norm_bias": False, "layer_decay": 0.75, "schedule": "cosine", "per_iteration": True,
              "warmup_epochs": 5, "warmup_lr": 0.0, "min_lr": _lr(1e-6, 96)},
    "reg": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mix_prob": 1.0, "switch_prob": 0.5, "label_smoothing": 0.1},
    "train": {"epochs": 100, "batch_size": 96, "grad_clip": 0.0, "precision": "fp16", "drop_last": True,
              "selection": "last"},
    "model": {"kwargs": {"drop_path": 0.1}},
}

_FINETUNE_DATASETS: dict = {
    "dfew": {},  # = the defaults (3 GPUs x 32, sr 4: lr 3.75e-4)
    "mafw": {},  # 3 GPUs x 32, sr 4: lr 3.75e-4 (11 classes)
    # FERV39k: sampling rate 1 and 3 GPUs x 40 = 120: lr 4.6875e-4
    "ferv39k": {"data": {"stride": 1}, "train": {"batch_size": 120},
                "optim": {"lr": _lr(1e-3, 120), "min_lr": _lr(1e-6, 120)}},
    # CPU-sized (deviation): 8 frames at 32x32 (token grid 4x2x2, default regions (2,1,2): 4 regions, the
    # region count of the synthetic pre-training entry, whose checkpoint therefore loads), stride 3, crop scale
    # 0.5-1, batch 16 (lr = 1e-3 x 16/256), 5 epochs with 1 warm-up, no mixup/cutmix, fp32, evaluated once at
    # the end. The architecture is unchanged (85 M parameters, 1.26 GMACs per clip: ~3.2 TFLOP of training per
    # epoch of ~420 clips, estimated at about a minute per epoch on 2 free cores; not timed on an idle machine).
    # From random init this budget checks the pipeline; the ViT does not learn the synthetic task in 5 epochs.
    "synthetic": {"data": {"frames": 8, "size": 32, "stride": 3, "rrc_scale": [0.5, 1.0], "randaugment": None,
                           "random_erasing": 0.0},
                  "optim": {"lr": _lr(1e-3, 16), "min_lr": _lr(1e-6, 16), "warmup_epochs": 1},
                  "reg": {"mixup_alpha": 0.0, "cutmix_alpha": 0.0},
                  "train": {"epochs": 5, "batch_size": 16, "precision": "fp32", "eval_every": 5}},
}

FINETUNE_RECIPE = Recipe(defaults=_FINETUNE_DEFAULTS, datasets=_FINETUNE_DATASETS)

_PRETRAIN_DEFAULTS: dict = {
    # VoxCeleb2 recipe on the training clips: 16 frames at sampling rate 4, 160x160, no flip, multi-scale crop
    # (approximated: scale 0.43-1, ratio 0.857-1.167), ImageNet normalisation (the targets unnormalise it).
    "data": {"frames": 16, "size": 160, "sampler": "dense", "stride": 4, "pad": "edge", "flip": False,
             "rrc_scale": [0.43, 1.0], "rrc_ratio": [0.857, 1.167], "interpolation": "bilinear",
             "color_jitter": [0.0, 0.0, 0.0, 0.0], **IMAGENET},
    # AdamW (0.9, 0.95), wd 0.05, base lr 3e-4 x batch/256 (released run: total batch 160 -> 1.875e-4, peak in
    # its log; the script's 2 x 32 = 64 would give 7.5e-5), 5 warm-up epochs from 0, per-step cosine to
    # 1e-5 x batch/256, 100 epochs (the released checkpoint-49 is the epoch-50 snapshot of this schedule), fp16.
    # No decay on 1-D parameters, biases and the skip list {pos_embed, cls_token, mask_token} matched by exact name:
    # only `mask_token` is a parameter of that name, so the region tokens (encoder.lg_region_tokens) are decayed.
    "optim": {"name": "adamw", "lr": _lr(3e-4, 160), "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.05,
              "decay_norm_bias": False, "no_decay_names": ["mask_token"], "layer_decay": 1.0, "schedule": "cosine", "per_iteration": True,
              "warmup_epochs": 5, "warmup_lr": 0.0, "min_lr": _lr(1e-5, 160)},
    "reg": {"mixup_alpha": 0.0, "cutmix_alpha": 0.0, "label_smoothing": 0.0},
    "train": {"epochs": 100, "batch_size": 160, "grad_clip": 0.0, "precision": "fp16", "drop_last": True},
    "model": {"kwargs": {"mask_ratio": 0.9, "drop_path": 0.0}},
}

PRETRAIN_RECIPE = Recipe(defaults=_PRETRAIN_DEFAULTS, datasets={
    # CPU-sized (deviation): 8 frames at 64x64 (token grid 4x4x4), regions / mask windows (2,2,4): 4 regions,
    # 7 of 8 tokens masked per window (int(0.9 x 8)), 8 visible tokens per clip; batch 16 (lr 3e-4 x 16/256),
    # 5 epochs with 1 warm-up, fp32. The encoder sees 8 tokens and the decoder 64, so an epoch of the ~420
    # synthetic clips is about a minute on 2 free cores (estimated from the MACs).
    "synthetic": {"data": {"frames": 8, "size": 64, "stride": 3},
                  "optim": {"lr": _lr(3e-4, 16), "min_lr": _lr(1e-5, 16), "warmup_epochs": 1},
                  "train": {"epochs": 5, "batch_size": 16, "precision": "fp32"},
                  "model": {"kwargs": {"region_size": [2, 2, 4]}}},
})


# ----------------------------------------------------------------------------------------------------------
# pre-training objective


def build_mae_pretrainer(frames: int, size: int, region_size: Sequence[int] | None = None, mask_ratio: float = 0.9,
                         drop_path: float = 0.0, normalize_target: bool = True, frame_diff_target: bool = True,
                         target_diff_weight: float | None = None, decoder_visible_order: str = "official",
                         mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> MAEPretrainer:
    """MAE-DFER pre-training module (LGI-Former encoder): forward(clips) -> {"loss", "parts": {"pixel",
    "motion"}, ...}; its state_dict has the official pre-training checkpoint's keys. `mean`/`std` must be the
    normalisation of the clips it is fed (the targets are built on the unnormalised pixels)."""
    return MAEPretrainer(frames, size, "local_global", region_size, "part_window", mask_ratio, 4, drop_path,
                         normalize_target, frame_diff_target, target_diff_weight, decoder_visible_order, mean, std)


def build_joint_pretrainer(frames: int, size: int, region_size: Sequence[int] | None = None,
                           mask_type: str = "part_window", mask_ratio: float = 0.9, drop_path: float = 0.0,
                           normalize_target: bool = True, frame_diff_target: bool = True,
                           target_diff_weight: float | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                           std: Sequence[float] = IMAGENET_STD) -> MAEPretrainer:
    """The same objective with the joint-attention encoder (`--attn_type joint`); part_window masking with the
    (2, H'/2, W') windows by default (the objective of the LGI-Former run), or VideoMAE's `tube` masking."""
    return MAEPretrainer(frames, size, "joint", region_size, mask_type, mask_ratio, 4, drop_path, normalize_target,
                         frame_diff_target, target_diff_weight, "original", mean, std)


# ----------------------------------------------------------------------------------------------------------
# registrations

_TEST_VIEWS_NOTE = ("official: 2 temporal clips x 2 spatial crops, the crops identical after the 160x160 squash "
                    "(= 2 views here); released numbers are last-epoch (its per-epoch 'val' is the test set)")
_COMMON: dict[str, Any] = dict(family="self-supervised ViT", input=InputSpec(16, 160), paper=PAPER,
                               recipe=FINETUNE_RECIPE, needs_pretrained="vox2_pretrain", uses_attention=True,
                               test_views_note=_TEST_VIEWS_NOTE)


@register_method("mae_dfer", weights=_weights("lgi"), literature=("MAE-DFER",),
                 pretrain=PretrainSpec(build=build_mae_pretrainer, loads_with="vox2_pretrain", recipe=PRETRAIN_RECIPE,
                                       description="MAE-DFER masked appearance + motion autoencoding (part-window "
                                                   "tube masking 0.9, LGI-Former encoder, 4-block decoder)"),
                 **_COMMON)
def mae_dfer(num_classes: int, frames: int, size: int, region_size: Sequence[int] | None = None,
             drop_path: float = 0.1, drop_path_unit: str = "official", classify_token: str = "region",
             init_scale: float = 0.001) -> nn.Module:
    """MAE-DFER's LGI-Former (ViT 512x16 with region tokens: local, global and cross attention per block)."""
    return VideoTransformer(num_classes, frames, size, "local_global", region_size, drop_path, drop_path_unit,
                            classify_token, init_scale)


@register_method("video_vit", weights=_weights("joint"),
                 pretrain=PretrainSpec(build=build_joint_pretrainer, loads_with="vox2_pretrain",
                                       recipe=PRETRAIN_RECIPE,
                                       description="the MAE-DFER objective with the joint-attention encoder"),
                 **_COMMON)
def video_vit(num_classes: int, frames: int, size: int, drop_path: float = 0.1, init_scale: float = 0.001) -> nn.Module:
    """VideoMAE-style joint-attention ViT 512x16 (MAE-DFER's trunk without the LGI blocks)."""
    return VideoTransformer(num_classes, frames, size, "joint", None, drop_path, "official", "region", init_scale)
