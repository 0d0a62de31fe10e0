"""M3DFEL (Wang et al., CVPR 2023, "Rethinking the Learning Paradigm for Dynamic Facial Expression Recognition").

Official code: Tencent/TFace `attribute/M3DFEL` (Apache-2.0; added in b06c3ea, merged in 8c650f8, last touched
by 7b2eed2, unchanged at HEAD 171ec14) and the lab's MIT mirror ECNU-Cross-Innovation-Lab/M3DFEL_replicate
@ f1eb486dcbf4df87912975e8840696b014757cda. They compute the same model and training step but are not the same
files. Identical code once docstrings, comments and line wrapping are set aside: the model (`models/M3DFEL.py`),
DMIN and `build_scheduler` (utils.py), main.py, the DFEW dataset's frame sampling and transforms
(`datasets/dataset_DFEW.py` __getitem__ / get_transform), every transform class they use
(`datasets/video_transform.py`; the replicate adds five unused ones), and solver.py's run / train / save (its
validate differs only by a print). Where they differ:
  - options.py: TFace declares `--data_root` but reads `args.root` (it stops there as released); the replicate
    declares `--root` and also writes the options to opt.txt.
  - frame root: TFace `<root>/Clip/clip_224x224/<id>`, the replicate `<root>/Clip/clip_224x224/clip_224x224/<id>`.
  - test loader (`datasets/__init__.py` create_dataloader): the replicate sets drop_last=True on the test loader
    too (at batch 256 the last 32-37 test clips of each DFEW fold are never evaluated); TFace keeps every clip.
  - FERV39k: only the replicate has `datasets/dataset_FERV39K.py` (comma csv.reader with a header skip, so the
    first clip of each split is lost, datasets.md §2.2); TFace always builds DFEWDataset, which cannot parse the
    FERV39k lists.
  - resume (solver.py): TFace @ 7b2eed2 reads the checkpoint with torch.load(weights_only=True), which refuses
    the argparse.Namespace its own save stores under 'args' (before 7b2eed2, and in the replicate: plain
    torch.load).
Written from the facts in /work/notes/cnn3d/NOTES.md §1 (dims, key names, recipe) and the two repositories; no
official source is copied.

Network (input (B, 3, 16, 112, 112) in [0, 1], no mean/std normalisation, as released):
  clip -> bag of T/4 "3D instances" of 4 consecutive sampled frames -> torchvision r3d_18 up to its global pool
  (512-d each) -> 2-layer BiLSTM(512) (1024-d per instance) -> MHSA (8 heads x 128, qkv Linear 1024->3072 without
  bias, no output projection, no residual, no norm) -> DMIN (per-feature statistics over the instances mixed with
  layer statistics by two learned softmax pairs, unbiased instance variance, per-feature affine, no running
  statistics) -> sigmoid gate multiplied onto the LSTM output -> Conv1d(bag, 1, k3, p1) with the instances as
  channels -> Linear(1024, K). No dropout; train and eval return the same logits.
  The module names are the official ones (`features`, `lstm`, `to_qkv`, `norm`, `pwconv`, `fc`), so a checkpoint
  of the official trainer loads with its own key names.

Sizes at 16x112², 7 classes: 46,823,384 params (features 33.166 M, lstm 10.502 M, to_qkv 3.146 M, DMIN 2,052,
pwconv 13, fc 7,175), 43.19 GMACs by stock fvcore, measured from the official code; our profile also counts the
BiLSTM (+0.042 G, which stock fvcore skips), so `bench profile` shows 43.23 G. The 1.66 G / 2 G "FLOPs" of
comparison tables cannot be reproduced from the code (4-frame instances keep T=1 in layer3/4, which makes the
backbone cost 43.2 G instead of one 16-frame r3d_18 pass's 40.7 G).

Weights sources:
- `kinetics400`: torchvision's `r3d_18-b3b3357e.pth` (R3D_18_Weights.KINETICS400_V1, a bare state_dict) into the
  instance backbone: `stem.*` -> `features.0.*`, `layer1..4.*` -> `features.1..4.*`, the 400-class `fc.*`
  dropped (notes['dropped']). This is the official init (torchvision downloads and loads it). Training from
  scratch is allowed (the DFEW 3D-CNN baselines do) but is a deviation: such a run is labelled `scratch`.
- `official`: a checkpoint of the official trainer (`model_best.pth` / `model_latest.pth` =
  {'epoch','state_dict','best_wa','best_ua','optimizer','args'}, keys `module.`-prefixed under DataParallel; the
  core unwraps both) or a bare `M3DFEL.state_dict()`: the names already match (145 keys). No released weights
  were found.

Differences from the official code:
- Frame sampling: official `idx = floor(N*i/16) + floor(U*16)` (jitter up to +15 frames whatever the segment
  length, a fresh draw per frame, clamped to N-1; used at train AND test because `random_sample` is never switched
  off). Closest sampler here: `segment` with `segment_len=1` (TSN: a random frame inside each of 16 equal segments
  for training, the segment centre for testing, deterministic). Short clips are stretched evenly instead of
  clamping onto the last frame.
- Test transform: official resizes straight to 112x112; here resize (short side) + centre crop, identical for
  square face crops.
- LR schedule: timm CosineLRScheduler(t_initial=300*iters, warmup_t=20*iters, warmup_lr_init=0, lr_min=5e-6,
  warmup_prefix=False, t_in_epochs=False) stepped with step_update(epoch*iters + i) after every step, reproduced
  exactly by the schedule `m3dfel_timm` registered here (the cosine runs over the absolute step count and does not
  restart after warm-up; the lr of step g is the value for g-1, as the scheduler is stepped after the update).
- Model selection: official keeps best WAR and best UAR over epochs independently (possibly different epochs);
  the harness selects one epoch on test WAR (`best_on_test`, as the official code selects on test).
- The official `.squeeze()` drops the batch axis at B=1; here the output is always (B, K).
- The official test loader of the replicate drops the last incomplete batch; TFace's (followed here) keeps all.
- Colour jitter is the harness's (brightness/contrast/saturation 0.4, hue 0.4, random order, one draw per clip),
  matching GroupColorJitter(0.4); GroupRandomSizedCrop (area 0.08-1, aspect 3/4-4/3) is the harness's
  RandomResizedCrop with the same ranges (no random w/h swap).
Minimum input: frames must be a multiple of `instance_length` with at least 2 instances (DMIN's unbiased
variance over one instance is undefined); size >= 16.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torchvision.models.video import r3d_18

from bench.api import InputSpec, Paper, Recipe, WeightsSource, register_method
from bench.optim import register_schedule

PAPER = Paper(authors="Wang, Li, Wu, Shen, Liu, Ding & Zhou",
              title="Rethinking the Learning Paradigm for Dynamic Facial Expression Recognition", venue="CVPR",
              year=2023, code="github.com/Tencent/TFace/tree/master/attribute/M3DFEL")

R3D_FEATURE_DIM = 512


# ----------------------------------------------------------------------------------------------------------
# building blocks (imported by methods/rdfer.py)


def r3d18_features() -> nn.Sequential:
    """torchvision r3d_18 without its fc: Sequential(stem, layer1..4, avgpool) -> (N, 512, 1, 1, 1).

    Built from torchvision with weights=None; children()[:-1] exactly as the official code wraps it, so the
    keys are `0.*` (stem), `1..4.*` (layer1..4) and the pool has no parameters."""
    return nn.Sequential(*list(r3d_18(weights=None).children())[:-1])


def split_instances(x: torch.Tensor, instance_length: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B * T/L, C, L, H, W): instance k holds sampled frames kL..kL+L-1 (the official
    `b (t1 t2) c h w -> (b t1) c t2 h w`)."""
    b, c, t, h, w = x.shape
    if t % instance_length:
        raise ValueError(f"frames={t} is not a multiple of instance_length={instance_length}")
    n = t // instance_length
    return x.reshape(b, c, n, instance_length, h, w).transpose(1, 2).reshape(b * n, c, instance_length, h, w)


def instance_tokens(features: nn.Module, x: torch.Tensor, instance_length: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, T/L, 512): every instance through the r3d_18 trunk and its global pool."""
    b, t = x.shape[0], x.shape[2]
    return features(split_instances(x, instance_length)).flatten(1).reshape(b, t // instance_length, -1)


def multi_head_self_attention(x: torch.Tensor, to_qkv: nn.Linear, heads: int) -> torch.Tensor:
    """M3DFEL's MHSA: q, k, v = to_qkv(x).chunk(3); softmax(q k^T / sqrt(d)) v per head, heads concatenated; no
    output projection and no residual. Plain matmuls so both FLOP counters see the attention."""
    b, n, _ = x.shape
    q, k, v = to_qkv(x).chunk(3, dim=-1)
    d = q.shape[-1] // heads
    q, k, v = (t.reshape(b, n, heads, d).transpose(1, 2) for t in (q, k, v))
    attn = torch.matmul(q, k.transpose(-1, -2)) * d ** -0.5
    out = torch.matmul(attn.softmax(dim=-1), v)
    return out.transpose(1, 2).reshape(b, n, heads * d)


class DMIN(nn.Module):
    """Dynamic Multi-Instance Normalisation on (B, N, C): instance statistics (per sample and feature, over the N
    instances; unbiased variance) mixed with layer statistics (over all N x C values, built from the unbiased
    instance variance) by softmax(mean_weight) / softmax(var_weight); per-feature affine. Same in train and eval."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, num_features, 1))
        self.bias = nn.Parameter(torch.zeros(1, num_features, 1))
        self.mean_weight = nn.Parameter(torch.ones(2))
        self.var_weight = nn.Parameter(torch.ones(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, C, N)
        mean_in = x.mean(-1, keepdim=True)
        var_in = x.var(-1, keepdim=True)  # unbiased (N - 1), as released
        mean_ln = mean_in.mean(1, keepdim=True)
        var_ln = (var_in + mean_in ** 2).mean(1, keepdim=True) - mean_ln ** 2
        mw = self.mean_weight.softmax(0)
        vw = self.var_weight.softmax(0)
        mean = mw[0] * mean_in + mw[1] * mean_ln
        var = vw[0] * var_in + vw[1] * var_ln
        y = (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
        return y.transpose(1, 2)


class M3DFEL(nn.Module):
    """Bag of 3D instances -> r3d_18 -> BiLSTM -> MHSA -> DMIN -> sigmoid gate -> Conv1d over instances -> FC."""

    def __init__(self, num_classes: int = 7, frames: int = 16, instance_length: int = 4, hidden: int = 512,
                 lstm_layers: int = 2, heads: int = 8):
        super().__init__()
        if frames % instance_length or frames // instance_length < 2:
            raise ValueError(f"M3DFEL needs frames ({frames}) = k x instance_length ({instance_length}) with k >= 2")
        self.instance_length = instance_length
        self.bag_size = frames // instance_length
        self.heads = heads
        dim = 2 * hidden
        self.features = r3d18_features()
        self.lstm = nn.LSTM(R3D_FEATURE_DIM, hidden, num_layers=lstm_layers, batch_first=True, bidirectional=True)
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.norm = DMIN(dim)
        self.pwconv = nn.Conv1d(self.bag_size, 1, kernel_size=3, stride=1, padding=1)
        self.fc = nn.Linear(dim, num_classes)

    def gated_instances(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> gated instance features (B, N, 1024)."""
        tokens = instance_tokens(self.features, x, self.instance_length)
        ori, _ = self.lstm(tokens)
        att = multi_head_self_attention(ori, self.to_qkv, self.heads)
        return ori * torch.sigmoid(self.norm(att))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bag = self.pwconv(self.gated_instances(x)).flatten(1)  # (B, 1, 1024) -> (B, 1024)
        return self.fc(bag)


# ----------------------------------------------------------------------------------------------------------
# weights


def convert_kinetics400(sd: dict, model: nn.Module, notes: dict) -> dict:
    """torchvision r3d_18 K400 state_dict -> `features.*` (stem -> 0, layer1..4 -> 1..4); fc dropped on purpose.
    Keys of another file stay unchanged and are reported as unexpected."""
    index = {"stem.": "0.", "layer1.": "1.", "layer2.": "2.", "layer3.": "3.", "layer4.": "4."}
    own = model.state_dict()
    prefix = next((p for p in ("features.", "backbone.features.") if any(k.startswith(p) for k in own)), "features.")
    out, dropped = {}, []
    for name, value in sd.items():
        head = next((k for k in index if name.startswith(k)), None)
        if head is not None:
            out[prefix + index[head] + name[len(head):]] = value
        elif name.startswith("fc."):
            dropped.append(name)
        else:
            out[name] = value
    notes["dropped"] = dropped
    return out


WEIGHTS = {
    "kinetics400": WeightsSource(
        "torchvision R3D_18 Kinetics-400 state_dict (the official init) into the instance backbone; fc dropped",
        "r3d_18-b3b3357e.pth", convert_kinetics400),
    "official": WeightsSource(
        "a checkpoint of the official M3DFEL trainer (model_best.pth: {'epoch','state_dict',...}, maybe "
        "'module.'-prefixed) or a bare M3DFEL state_dict; key names already match", "model_best.pth", None),
}


# ----------------------------------------------------------------------------------------------------------
# schedule and recipe


@register_schedule("m3dfel_timm")
def m3dfel_timm_schedule(cfg: Any, epoch: int, it: int, iters: int, epochs: int) -> float:
    """timm CosineLRScheduler(t_initial=epochs*iters, warmup_t=warmup_epochs*iters, warmup_lr_init=warmup_lr,
    lr_min=min_lr, warmup_prefix=False, cycle_limit=1, t_in_epochs=False), stepped with step_update(g) after
    optimizer step g: step g trains with the value for t = g - 1 (the first step with warmup_lr)."""
    t = max(epoch * iters + it - 1, 0)
    warmup_t = cfg.warmup_epochs * iters
    if t < warmup_t:
        return cfg.warmup_lr + t * (cfg.lr - cfg.warmup_lr) / warmup_t
    t_initial = epochs * iters
    if t >= t_initial:
        return cfg.min_lr
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * t / t_initial))


DEFAULTS: dict = {  # imported by methods/rdfer.py
    # uniform positions with random jitter -> the harness's segment sampler (see the module docstring)
    "data": {"frames": 16, "size": 112, "sampler": "segment", "segment_len": 1, "test_views": 1, "test_crops": 1,
             "flip": True, "rrc_scale": [0.08, 1.0], "rrc_ratio": [3 / 4, 4 / 3], "interpolation": "bilinear",
             "color_jitter": [0.4, 0.4, 0.4, 0.4], "clamp": True, "mean": None, "std": None},
    # AdamW over model.parameters(): one group, weight decay on every parameter
    "optim": {"name": "adamw", "lr": 5e-4, "weight_decay": 0.05, "betas": [0.9, 0.999], "eps": 1e-8,
              "decay_norm_bias": True, "schedule": "m3dfel_timm", "per_iteration": True, "warmup_epochs": 20,
              "warmup_lr": 0.0, "min_lr": 5e-6},
    "reg": {"label_smoothing": 0.1, "mixup_alpha": 0.0, "cutmix_alpha": 0.0},
    # batch 256 in total (DataParallel over 4 GPUs), train drop_last; the test fold is evaluated every epoch
    "train": {"epochs": 300, "batch_size": 256, "drop_last": True, "selection": "best_on_test",
              "selection_metric": "war"},
}

M3DFEL_RECIPE = Recipe(
    defaults=DEFAULTS,
    # options.py has no per-dataset configs: DFEW and FERV39k use the defaults.
    datasets={
        # CPU-sized deviation (<= 10 min on 2 cores): 8 frames (2 instances of 4) at 32², 5 epochs of 420 clips
        # at batch 16, 1 warm-up epoch, lr 1e-3 over the shortened schedule, area 0.5-1 crops (0.08 loses the
        # small synthetic face), lighter colour jitter. Stated in every result's spec.
        "synthetic": {"data": {"frames": 8, "size": 32, "rrc_scale": [0.5, 1.0], "color_jitter": [0.2, 0.2, 0.2, 0.0]},
                      "optim": {"lr": 1e-3, "warmup_epochs": 1, "min_lr": 1e-5},
                      "train": {"epochs": 5, "batch_size": 16, "selection": "last"}},
    },
)


@register_method("m3dfel", family="3D CNN", input=InputSpec(16, 112), paper=PAPER, recipe=M3DFEL_RECIPE,
                 weights=WEIGHTS, literature=("M3DFEL",), uses_attention=True,
                 test_views_note="official: 1 jittered view per video, best WAR and best UAR over epochs on test "
                                 "taken independently")
def m3dfel(num_classes: int, frames: int, size: int, instance_length: int = 4) -> nn.Module:
    """M3DFEL: 4-frame 3D instances through r3d_18, BiLSTM, MHSA + DMIN gate, Conv1d bag pooling (MIL)."""
    return M3DFEL(num_classes, frames, instance_length)
