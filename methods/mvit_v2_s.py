"""MViTv2-S (Li et al., CVPR 2022, arXiv 2112.01526) as a plain video-Transformer control for IFDD.

torchvision's `mvit_v2_s` (torchvision.models.video.mvit, the port of facebookresearch/SlowFast's MViTv2-S): the
trunk IFDD's MFViT-XS is cut from (IFDD keeps blocks 0-7, 14, 15 and adds the pyramid, ISSM and LADM; see
methods/ifdd.py), here whole and without ISSM/LADM: cube embedding 3x7x7 stride 2x4x4 -> 16 MultiscaleBlocks
(heads 1-2-2-4x11-8-8, pooled q at blocks 1/3/14, kv strides 8-4-4-2...-1-1, decomposed relative positions,
residual pooling) -> LayerNorm -> class token -> Dropout(0.5) -> Linear. Built from torchvision's `MViT` class
with the mvit_v2_s block settings at the spec's frames/size (torchvision's `mvit_v2_s()` fixes 16x224²), so the
token grid and the relative-position tables follow the input.

Sizes at 16x224², 7 classes: 34,235,527 params, 64.46 GMACs by fvcore (baselines.md [meas]: 34.2 M / 64.5 G;
FlopCounterMode/2 gives 64.22 G: it does not count layer_norm). No DFER paper row exists for MViTv2-S (the SVFAP
table has MViTv2-B, 51 M / 42 G, a different model); literature=() on purpose.

Weights: `k400_mvit_v2_s` = torchvision's MViT_V2_S_Weights.KINETICS400_V1 file (`mvit_v2_s.pth`, a bare
state_dict with torchvision's key names: the same local file IFDD's `k400_mvit_v2_s` source takes). Every key
loads by name; the 400-class `head.*` is dropped (notes['dropped']) and the relative-position tables of another
input size are linearly resized (notes['resized_rel_pos']), as IFDD's converter does. From scratch is allowed but
a video Transformer means little without the K400 file (the reason it is a control only with that file); runs
without it are labelled scratch.

Recipe: IFDD's own recipe, read from methods/ifdd.py so the two never drift (the natural control: same data,
16x224² dense sampling, AdamW, mixup/cutmix, label smoothing, schedule, epochs, batch, test views and selection
rule, per dataset and per protocol `faithful` / `clean`), minus IFDD's model options (lifting loss, ISSM switches).
Differences from IFDD's recipe: none beyond the model and its loss; synthetic is CPU-sized (see below).
"""

from __future__ import annotations

import copy

import torch.nn.functional as F
from torch import nn
from torchvision.models.video.mvit import MSBlockConfig, MViT

from bench.api import InputSpec, Paper, Recipe, WeightsSource, register_method
from bench.methods import ifdd

PAPER = Paper(authors="Li, Wu, Fan, Mangalam, Xiong, Malik & Feichtenhofer",
              title="MViTv2: Improved Multiscale Vision Transformers for Classification and Detection", venue="CVPR",
              year=2022, arxiv="2112.01526", code="github.com/facebookresearch/SlowFast")

# torchvision mvit_v2_s block settings (16 blocks)
HEADS = (1, 2, 2) + (4,) * 11 + (8, 8)
IN_CHANNELS = (96, 96, 192, 192) + (384,) * 11 + (768,)
OUT_CHANNELS = (96, 192, 192) + (384,) * 11 + (768, 768)
STRIDE_Q = ((1, 1, 1), (1, 2, 2), (1, 1, 1), (1, 2, 2)) + ((1, 1, 1),) * 10 + ((1, 2, 2), (1, 1, 1))
STRIDE_KV = ((1, 8, 8), (1, 4, 4), (1, 4, 4)) + ((1, 2, 2),) * 11 + ((1, 1, 1),) * 2


def block_settings() -> list[MSBlockConfig]:
    return [MSBlockConfig(num_heads=HEADS[i], input_channels=IN_CHANNELS[i], output_channels=OUT_CHANNELS[i],
                          kernel_q=[3, 3, 3], kernel_kv=[3, 3, 3], stride_q=list(STRIDE_Q[i]),
                          stride_kv=list(STRIDE_KV[i])) for i in range(len(HEADS))]


def convert_k400(sd: dict, model: nn.Module, notes: dict) -> dict:
    """torchvision mvit_v2_s K400 state_dict -> this model (same names): head dropped, rel-pos tables resized."""
    own = model.state_dict()
    out, dropped, resized = {}, [], []
    for name, value in sd.items():
        if name.startswith("head."):
            dropped.append(name)
            continue
        if "rel_pos" in name and name in own and value.shape[0] != own[name].shape[0]:
            value = F.interpolate(value.t()[None], size=own[name].shape[0], mode="linear")[0].t().contiguous()
            resized.append(name)
        out[name] = value
    notes.update({"dropped": dropped, "resized_rel_pos": resized})
    return out


WEIGHTS = {"k400_mvit_v2_s": WeightsSource(
    "torchvision MViT_V2_S Kinetics-400 state_dict (all blocks by name; head dropped; rel-pos resized to the input)",
    "mvit_v2_s.pth", convert_k400)}


def _without_model(d: dict) -> dict:
    d = copy.deepcopy(d)
    d.pop("model", None)
    return d


_PROTOCOLS = {name: _without_model(p) for name, p in ifdd.IFDD_RECIPE.protocols.items()}
for _p in _PROTOCOLS.values():
    _p["datasets"] = {k: _without_model(v) for k, v in _p.get("datasets", {}).items()}

_DATASETS = {name: _without_model(d) for name, d in ifdd.IFDD_RECIPE.datasets.items()}
# CPU-sized deviation: IFDD's synthetic entry (16 segments at 32², AdamW 1e-4 per-iteration cosine, no mixup, batch
# 8, last epoch) with 3 epochs instead of 4: the 16-block trunk costs 1.06 GMACs per clip at 16x32², 1.4x IFDD's
# 0.77, so 3 epochs keep the run within 10 minutes on 2 cores.
_DATASETS["synthetic"] = copy.deepcopy(_DATASETS["synthetic"])
_DATASETS["synthetic"]["train"]["epochs"] = 3

MVIT_RECIPE = Recipe(defaults=_without_model(ifdd.IFDD_RECIPE.defaults), datasets=_DATASETS, protocols=_PROTOCOLS,
                     default_protocol=ifdd.IFDD_RECIPE.default_protocol)


@register_method("mvit_v2_s", family="Transformer", input=InputSpec(16, 224), paper=PAPER, recipe=MVIT_RECIPE,
                 weights=WEIGHTS, uses_attention=True,
                 test_views_note="IFDD's protocol: DFEW all 16-frame windows; FERV39k/MAFW 1 random window, "
                                 "epoch chosen on test (faithful)")
def mvit_v2_s(num_classes: int, frames: int, size: int, drop_path: float = 0.2, dropout: float = 0.5,
              attention_dropout: float = 0.0) -> nn.Module:
    """MViTv2-S (torchvision), IFDD's trunk without ISSM/LADM: the video-Transformer control for IFDD."""
    return MViT(spatial_size=(size, size), temporal_size=frames, block_setting=block_settings(), residual_pool=True,
                residual_with_cls_embed=False, rel_pos_embed=True, proj_after_attn=True, dropout=dropout,
                attention_dropout=attention_dropout, stochastic_depth_prob=drop_path, num_classes=num_classes)
