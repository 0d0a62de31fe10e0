"""FineCLIPER (Chen, Huang, Dong, Zheng & Shao, ACM MM 2024, arXiv 2407.02157): reimplementation from the paper.
No code is available (the project page cites github.com/HaroldChen19/FineCLIPER; not obtainable here); what the
paper states is taken from its project page (framework figure, Tables 1-9; /work/notes/papers §2). Everything the
paper leaves open is a model.kwargs switch, listed below with the default we chose.

Stated by the paper -> here:
* CLIP ViT-B/16 (Table 8 also B/32, L/14: `arch`), every CLIP weight frozen; only adapters (and the fusion
  weights) are tuned. Adapter = FC-down -> GELU -> FC-up with a skip connection.
* Video encoder (frames, low level): per block LN -> MSA -> adapter (serial, after MSA) -> residual; LN -> MLP
  with an adapter in parallel scaled by s = 0.5 (Table 9 best; `adapter_scale`): the AIM layout the figure shows.
* Label encoder: per class a positive prompt "A person with an expression of {label}." and a negative one "A
  person with an expression of no {label}." (Table 7: "no"), frozen CLIP text tower with a Positive Adapter set
  and a Negative Adapter set.
* Middle level: face-parsing maps and landmarks per frame (FaceXFormer in the paper; precomputed here and read
  as streams), rendered as images (coloured parsing map; landmark dots drawn on the face), each encoded by a
  frozen image tower with its own adapters (Parsing / Landmark Encoder).
* High level: an MLLM (Video-LLaVA) description of the facial movements with the emotion words removed
  (precomputed text stream), encoded by the frozen text tower with one adapter (Fine-grained Text Encoder),
  aligned with the video feature (Semantic Alignment).
* Multi-modal fusion with learned (adaptive) weights (Fig. 4); similarities to the positive and negative label
  embeddings; ~20 M tunable parameters for the full model (Fig. 5, Table 1: 13 / 19 / 14 / 20 M for frames only
  / + parsing & landmarks / + text / full).

Streams (data.streams; the core calls forward(x, streams={...}), each optional: a missing stream's branch is
skipped and its fusion weight left out; `bench profile` therefore counts the frames-only path):
* `parsing`: `<clip id>.npy`, one row per video frame: uint8 (N, h, w) class ids in [0, parsing_classes)
  (FaceXFormer's 11: background, skin, l/r brow, l/r eye, nose, upper lip, inner mouth, lower lip, hair),
  coloured with a fixed palette (class 0 black); or uint8 (N, h, w, 3) an already rendered RGB map. Any h x w
  (resized: nearest for ids, bilinear for RGB).
* `landmarks`: `<clip id>.npy`, float32 (N, L, 2): (x, y) of L landmarks (68 for FaceXFormer) normalised to
  [0, 1] by the frame's width and height (the frame as the model sees it: square face crops; the core does not
  move them with crops/flips, hence the recipe's crop- and flip-free training). Points outside [0, 1] are
  skipped. Rendered as dots of radius `landmark_radius` px (0: size // 112, at least 1) in green on the frame
  (`landmark_render=on_face`) or white on black (`blank`).
* `description`: `<clip id>.txt`, UTF-8, the refined MLLM description of the whole clip (cut to 77 tokens).

Choices the paper leaves open (switch = default):
* adapter bottlenecks: `video_bottleneck`=192 (AIM's 0.25 x 768), `text_bottleneck`=128 (0.25 x 512, label
  encoders: attention + MLP adapters per block), `desc_bottleneck`=64 (fine-grained text: one adapter per block,
  after attention), `aux_bottleneck`=80 (parsing / landmark towers, attention + MLP adapters). These reproduce
  the paper's tunable counts: 13.42 / 19.36 / 14.22 / 20.16 M (paper 13 / 19 / 14 / 20 M);
  `adapter_zero_init`=True (fc2 zeroed, AIM: training starts from frozen CLIP), `mlp_adapter_skip`=False (the
  parallel MLP adapter adds only its residual; the serial attention adapter keeps its skip), `adapter_scale` s
  on the parallel MLP adapter only.
* parsing / landmark towers share the frozen CLIP image tower (only their adapters are separate; frozen, so this
  equals frozen copies at a lower total parameter count).
* temporal model: `temporal`=mean (mean of the per-frame projected CLS features; the figure shows no temporal
  module) | transformer (DFER-CLIP's 1-layer temporal net on the video stream, trainable, +2.1 M).
* label words: `label_words`=noun ("happiness", "anger", ...) | adjective | raw; prompt templates
  `pos_template` / `neg_template`.
* similarity: cosine x `logit_scale`=100 (fixed, CLIP's); the logits are `s cos(f, t+) - neg_in_logits * s cos(f,
  t-)` with `neg_in_logits`=1.0 (0 = positive prompts only).
* loss (criterion; model.loss keys): CE on the logits (the core) + `pn_weight`=1.0 x the positive/negative
  binary term, mean over classes of BCE(sigmoid(s (cos+ - cos-)), y_c) (the two-way softmax over a class's
  positive and negative prompt: "is / is not this emotion") + `align_weight`=1.0 x the semantic alignment term,
  symmetric InfoNCE between the video feature and the description feature over the batch at scale
  `align_scale`=100 (only when descriptions are given).
* fusion: `fusion`=learned (softmax over learned logits, zeros at init, of the features present) | fixed (video
  `video_weight`=0.5, the rest shared equally: Fig. 4's fixed baselines) | mean; `desc_in_fusion`=True (the
  description feature is also fused, not only aligned). Features are L2-normalised before and after fusion.
* input: pixels in [0, 1], normalised with OpenAI CLIP's mean/std in the model (`normalize`), so rendered
  parsing / landmark images get the same preprocessing.
* recipe (NOT STATED in the paper): AIM's AdamW lr 3e-4, wd 0.05, cosine with 3 warm-up epochs, 30 epochs,
  batch 32; 16 frames (16 segments x 1, DFER-CLIP's sampling) at 224²; no random crop / flip (streams would
  not follow them); one test view; last epoch. The sampling is DFER-CLIP's loader index for index (the harness's
  `tsn` sampler with `pad=edge`; zengqunzhao/DFER-CLIP dataloader/video_dataloader.py @ d10d5a4, n frames):
  training frame k*(n//16) + U{0..n//16-1} (the last n mod 16 frames never drawn), test int(t/2 + k*t), t = n/16;
  a clip of n < 16 frames is edge-padded (0..n-1, then n-1 repeated).

Sizes (B/16, 7 classes, measured here): 169.78 M params (CLIP 149.62 M without logit_scale + 20.16 M tunable);
310.26 GMACs for the frames-only forward at 16x224² (fvcore with attention counted; FlopCounterMode within
0.1%): 281.3 G image tower (16 x 17.58) + ~23 G video adapters + the 14 label prompts (cut at their EOT). Each
extra visual stream adds about the image-tower cost again, a description one text-tower pass. The paper gives
no GFLOPs.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import InputSpec, Paper, Recipe, WeightsSource, register_method, register_variant
from bench.losses import Criterion, classification_criterion

from ._clip_layers import (
    BlockAdapters,
    Normalize,
    TemporalTransformer,
    TextTower,
    build_clip,
    check_arch,
    clip_state_dict,
    encode_image,
    frames_of,
    l2norm,
    label_text,
    map_clip_keys,
    tokenize,
)

PAPER = Paper(authors="Chen, Huang, Dong, Zheng & Shao",
              title="FineCLIPER: Multi-modal Fine-grained CLIP for Dynamic Facial Expression Recognition with AdaptERs",
              venue="ACM MM", year=2024, arxiv="2407.02157", code="")

STREAMS = ("parsing", "landmarks", "description")
FUSED = ("video", "parsing", "landmarks", "description")  # order of the fusion logits


def palette(classes: int) -> torch.Tensor:
    """(K, 3) colours in [0, 1]: class 0 black, the others evenly spaced hues (fully saturated)."""
    cols = [(0.0, 0.0, 0.0)] + [colorsys.hsv_to_rgb(i / max(classes - 1, 1), 1.0, 1.0) for i in range(classes - 1)]
    return torch.tensor(cols, dtype=torch.float32)


def adapter_stack(layers: int, dim: int, bottleneck: int, scale: float, attn: bool, mlp: bool, mlp_skip: bool,
                  zero_init: bool) -> nn.ModuleList:
    return nn.ModuleList(BlockAdapters(dim, bottleneck, attn=attn, mlp=mlp, scale=scale, attn_skip=True,
                                       mlp_skip=mlp_skip, zero_init=zero_init) for _ in range(layers))


def render_parsing(maps: torch.Tensor, size: int, colours: torch.Tensor) -> torch.Tensor:
    """(N, h, w) class ids or (N, h, w, 3) uint8 RGB -> (N, 3, size, size) in [0, 1]."""
    if maps.dim() == 4 and maps.shape[-1] == 3:
        img = maps.permute(0, 3, 1, 2).float() / 255.0
        return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    ids = F.interpolate(maps[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    ids = ids.clamp_(0, colours.shape[0] - 1)
    return colours[ids].permute(0, 3, 1, 2)


def render_landmarks(points: torch.Tensor, frames: torch.Tensor | None, size: int, radius: int) -> torch.Tensor:
    """(N, L, 2) normalised (x, y) -> (N, 3, size, size): green dots on `frames` ((N, 3, S, S) in [0, 1]) or
    white dots on black when `frames` is None. Dots: the landmark's pixel dilated to a (2r+1)² square."""
    n = points.shape[0]
    pts = points.float()
    inside = ((pts >= 0) & (pts <= 1)).all(-1)
    px = (pts[..., 0] * (size - 1)).round().long().clamp(0, size - 1)
    py = (pts[..., 1] * (size - 1)).round().long().clamp(0, size - 1)
    mask = torch.zeros(n, size * size, device=points.device)
    mask.scatter_(1, py * size + px, inside.float())
    mask = mask.view(n, 1, size, size)
    if radius > 0:
        mask = F.max_pool2d(mask, 2 * radius + 1, stride=1, padding=radius)
    if frames is None:
        return mask.expand(n, 3, size, size)
    green = torch.tensor([0.0, 1.0, 0.0], device=points.device).view(1, 3, 1, 1)
    return frames * (1 - mask) + green * mask


class FineCLIPER(nn.Module):
    def __init__(self, class_names: Sequence[str], frames: int, size: int, arch: str = "ViT-B-16",
                 parsing: bool = True, landmarks: bool = True, description: bool = True,
                 video_bottleneck: int = 192, text_bottleneck: int = 128, desc_bottleneck: int = 64,
                 aux_bottleneck: int = 80, adapter_scale: float = 0.5, adapter_zero_init: bool = True,
                 mlp_adapter_skip: bool = False, pos_template: str = "A person with an expression of {}.",
                 neg_template: str = "A person with an expression of no {}.", label_words: str = "noun",
                 logit_scale: float = 100.0, neg_in_logits: float = 1.0, fusion: str = "learned",
                 video_weight: float = 0.5, desc_in_fusion: bool = True, temporal: str = "mean",
                 parsing_classes: int = 11, landmark_render: str = "on_face", landmark_radius: int = 0,
                 normalize: bool = True):
        super().__init__()
        if fusion not in ("learned", "fixed", "mean"):
            raise ValueError(f"fusion must be learned, fixed or mean, got {fusion!r}")
        if temporal not in ("mean", "transformer"):
            raise ValueError(f"temporal must be mean or transformer, got {temporal!r}")
        if landmark_render not in ("on_face", "blank"):
            raise ValueError(f"landmark_render must be on_face or blank, got {landmark_render!r}")
        clip = build_clip(arch, size)
        self.size = size
        self.class_names = tuple(class_names)
        self.visual = clip.visual
        self.text = TextTower(clip)
        self.visual.requires_grad_(False)
        self.text.requires_grad_(False)
        self.normalize = Normalize() if normalize else nn.Identity()
        v_layers, v_width = len(self.visual.transformer.resblocks), self.visual.transformer.width
        t_layers, t_width = len(self.text.transformer.resblocks), self.text.width
        s, skip, z = adapter_scale, mlp_adapter_skip, adapter_zero_init
        self.video_adapters = adapter_stack(v_layers, v_width, video_bottleneck, s, True, True, skip, z)
        self.pos_adapters = adapter_stack(t_layers, t_width, text_bottleneck, s, True, True, skip, z)
        self.neg_adapters = adapter_stack(t_layers, t_width, text_bottleneck, s, True, True, skip, z)
        self.parsing_adapters = adapter_stack(v_layers, v_width, aux_bottleneck, s, True, True, skip, z) if parsing else None
        self.landmark_adapters = adapter_stack(v_layers, v_width, aux_bottleneck, s, True, True, skip, z) if landmarks else None
        self.desc_adapters = adapter_stack(t_layers, t_width, desc_bottleneck, s, True, False, skip, z) if description else None
        self.temporal = TemporalTransformer(frames, self.visual.output_dim) if temporal == "transformer" else None
        self.fusion, self.video_weight, self.desc_in_fusion = fusion, float(video_weight), desc_in_fusion
        self.fusion_logits = nn.Parameter(torch.zeros(len(FUSED))) if fusion == "learned" else None
        self.logit_scale, self.neg_in_logits = float(logit_scale), float(neg_in_logits)
        self.landmark_render = landmark_render
        self.landmark_radius = landmark_radius or max(1, size // 112)
        labels = [label_text(n, label_words) for n in self.class_names]
        self.register_buffer("pos_tokens", tokenize([pos_template.format(w) for w in labels]), persistent=False)
        self.register_buffer("neg_tokens", tokenize([neg_template.format(w) for w in labels]), persistent=False)
        self.register_buffer("palette", palette(parsing_classes), persistent=False)

    # ------------------------------------------------------------------------------------------------
    def _visual_stream(self, images: torch.Tensor, adapters: nn.ModuleList, b: int, t: int,
                       temporal: nn.Module | None = None) -> torch.Tensor:
        """(B*T, 3, S, S) in [0, 1] -> (B, D) L2-normalised clip feature."""
        f = encode_image(self.visual, self.normalize(images), adapters).view(b, t, -1)
        return l2norm(temporal(f) if temporal is not None else f.mean(1))

    def label_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, D) positive and negative label embeddings, L2-normalised."""
        pos = self.text(self.pos_tokens, self.pos_adapters, truncate=True)
        neg = self.text(self.neg_tokens, self.neg_adapters, truncate=True)
        return l2norm(pos), l2norm(neg)

    def _fuse(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        names = [n for n in FUSED if n in feats]
        stack = torch.stack([feats[n] for n in names])  # (M, B, D)
        if len(names) == 1:
            return stack[0]
        if self.fusion == "learned":
            w = torch.softmax(self.fusion_logits[[FUSED.index(n) for n in names]], dim=0)
        elif self.fusion == "fixed":
            rest = (1.0 - self.video_weight) / (len(names) - 1)
            w = stack.new_tensor([self.video_weight] + [rest] * (len(names) - 1))
        else:
            w = stack.new_full((len(names),), 1.0 / len(names))
        return l2norm((w.view(-1, 1, 1) * stack).sum(0))

    def forward(self, x: torch.Tensor, streams: dict[str, Any] | None = None) -> torch.Tensor | dict:
        streams = streams or {}
        b, t = x.shape[0], x.shape[2]
        frames = frames_of(x)
        video = self._visual_stream(frames, self.video_adapters, b, t, self.temporal)
        feats = {"video": video}
        if self.parsing_adapters is not None and streams.get("parsing") is not None:
            maps = streams["parsing"].to(x.device)
            maps = maps.flatten(0, 1)  # (B*T, h, w[, 3])
            img = render_parsing(maps, self.size, self.palette).to(x.dtype)
            feats["parsing"] = self._visual_stream(img, self.parsing_adapters, b, t)
        if self.landmark_adapters is not None and streams.get("landmarks") is not None:
            pts = streams["landmarks"].to(x.device).flatten(0, 1)  # (B*T, L, 2)
            base = frames if self.landmark_render == "on_face" else None
            img = render_landmarks(pts, base, self.size, self.landmark_radius).to(x.dtype)
            feats["landmarks"] = self._visual_stream(img, self.landmark_adapters, b, t)
        desc = None
        if self.desc_adapters is not None and streams.get("description") is not None:
            texts = streams["description"]
            texts = [texts] if isinstance(texts, str) else list(texts)
            desc = l2norm(self.text(tokenize(texts).to(x.device), self.desc_adapters, truncate=True))
            if self.desc_in_fusion:
                feats["description"] = desc
        fused = self._fuse(feats)
        pos, neg = self.label_features()
        cos_pos, cos_neg = fused @ pos.t(), fused @ neg.t()
        logits = self.logit_scale * (cos_pos - self.neg_in_logits * cos_neg)
        if not self.training:
            return logits
        out = {"logits": logits, "pn_logits": self.logit_scale * (cos_pos - cos_neg), "video": video}
        if desc is not None:
            out["desc"] = desc
        return out


# ----------------------------------------------------------------------------------------------------------
# loss terms


def pos_neg_loss(pn_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over batch and classes of BCE(sigmoid(z_c), t_c), z_c = s (cos+_c - cos-_c): the two-way softmax over
    a class's positive and negative prompt, target 'is this class' (soft targets allowed)."""
    return F.binary_cross_entropy_with_logits(pn_logits.float(), targets.float())


def alignment_loss(video: torch.Tensor, desc: torch.Tensor, scale: float = 100.0) -> torch.Tensor:
    """Symmetric InfoNCE over the batch between L2-normalised video and description features."""
    sim = scale * video.float() @ desc.float().t()
    labels = torch.arange(sim.shape[0], device=sim.device)
    return 0.5 * (F.cross_entropy(sim, labels) + F.cross_entropy(sim.t(), labels))


def fine_cliper_criterion(spec: Any) -> Criterion:
    """CE (core) + pn_weight x pos_neg_loss + align_weight x alignment_loss (model.loss: pn_weight 1.0,
    align_weight 1.0, align_scale 100)."""
    opts = dict(spec.model.loss) if spec is not None else {}
    pn_w, al_w = float(opts.get("pn_weight", 1.0)), float(opts.get("align_weight", 1.0))
    al_scale = float(opts.get("align_scale", 100.0))

    def pn(outputs: Any, targets: torch.Tensor) -> torch.Tensor:
        if not isinstance(outputs, dict) or pn_w == 0.0:
            return targets.new_zeros((), dtype=torch.float32)
        return pn_w * pos_neg_loss(outputs["pn_logits"], targets)

    def align(outputs: Any, targets: torch.Tensor) -> torch.Tensor:
        if not isinstance(outputs, dict) or "desc" not in outputs or al_w == 0.0:
            return targets.new_zeros((), dtype=torch.float32)
        return al_w * alignment_loss(outputs["video"], outputs["desc"], al_scale)

    return classification_criterion(spec, terms={"pos_neg": pn, "align": align})


# ----------------------------------------------------------------------------------------------------------
# weights


def convert_openai_clip(sd: dict[str, torch.Tensor], model: nn.Module, notes: dict[str, Any]) -> dict[str, torch.Tensor]:
    """OpenAI ViT-B-16.pt (TorchScript) or an open_clip state_dict -> the frozen visual.* / text.* towers; the
    adapters, fusion weights (and temporal net) are new and stay at their init."""
    sd = clip_state_dict(sd, notes)
    check_arch(sd, model.visual)
    return map_clip_keys(sd, "visual.", "text.", notes, model.visual)


RECIPE = Recipe(
    defaults={
        "data": {"sampler": "tsn", "segment_len": 1, "pad": "edge", "rrc_scale": [1.0, 1.0], "flip": False, "mean": None,
                 "std": None, "test_views": 1, "test_crops": 1},
        "optim": {"name": "adamw", "lr": 3e-4, "weight_decay": 0.05, "schedule": "cosine", "warmup_epochs": 3.0},
        "train": {"epochs": 30, "batch_size": 32, "selection": "last"},
    },
    datasets={
        # CPU-sized deviation (~6 min on 2 cores): 8 frames at 32² (2x2 ViT-B/16 patches), 2 epochs, batch 16
        # (frames only: the synthetic set has no parsing / landmark / description streams)
        "synthetic": {"data": {"frames": 8, "size": 32}, "optim": {"lr": 1e-3, "warmup_epochs": 0.0},
                      "train": {"epochs": 2, "batch_size": 16}},
    },
)

WEIGHTS = {"openai_clip": WeightsSource(
    "OpenAI CLIP ViT-B-16.pt (TorchScript) or an open_clip ViT-B-16 state_dict (same names): the frozen towers; "
    "adapters and fusion weights start at their init", "ViT-B-16.pt", convert_openai_clip)}


@register_method("fine_cliper", family="CLIP-based", input=InputSpec(16, 224), paper=PAPER, recipe=RECIPE,
                 weights=WEIGHTS, criterion=fine_cliper_criterion, literature=("FineCLIPER",),
                 needs_pretrained="openai_clip", uses_attention=True,
                 zero_shot=True)  # zero-initialised adapters: before training it is CLIP with pos/neg prompts
def fine_cliper(num_classes: int, frames: int, size: int, class_names: tuple[str, ...] = (), arch: str = "ViT-B-16",
                parsing: bool = True, landmarks: bool = True, description: bool = True, video_bottleneck: int = 192,
                text_bottleneck: int = 128, desc_bottleneck: int = 64, aux_bottleneck: int = 80,
                adapter_scale: float = 0.5, adapter_zero_init: bool = True, mlp_adapter_skip: bool = False,
                pos_template: str = "A person with an expression of {}.",
                neg_template: str = "A person with an expression of no {}.", label_words: str = "noun",
                logit_scale: float = 100.0, neg_in_logits: float = 1.0, fusion: str = "learned",
                video_weight: float = 0.5, desc_in_fusion: bool = True, temporal: str = "mean",
                parsing_classes: int = 11, landmark_render: str = "on_face", landmark_radius: int = 0,
                normalize: bool = True) -> nn.Module:
    """FineCLIPER (reimplementation from the paper): frozen CLIP ViT-B/16 + adapters, pos/neg label prompts,
    parsing / landmark / MLLM-description streams, learned fusion."""
    names = tuple(class_names) or tuple(f"class {i}" for i in range(num_classes))
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    return FineCLIPER(names, frames, size, arch, parsing, landmarks, description, video_bottleneck, text_bottleneck,
                      desc_bottleneck, aux_bottleneck, adapter_scale, adapter_zero_init, mlp_adapter_skip,
                      pos_template, neg_template, label_words, logit_scale, neg_in_logits, fusion, video_weight,
                      desc_in_fusion, temporal, parsing_classes, landmark_render, landmark_radius, normalize)


register_variant("fine_cliper.frames", variant_of="fine_cliper", description="FineCLIPER, frames only (low level; "
                 "Table 1: 13 M tunable)", kwargs={"parsing": False, "landmarks": False, "description": False})
register_variant("fine_cliper.middle", variant_of="fine_cliper", description="FineCLIPER, frames + parsing + "
                 "landmarks ('*', 19 M tunable)", kwargs={"description": False})
register_variant("fine_cliper.high", variant_of="fine_cliper", description="FineCLIPER, frames + MLLM "
                 "description ('†', 14 M tunable)", kwargs={"parsing": False, "landmarks": False})
register_variant("fine_cliper.b32", variant_of="fine_cliper", description="FineCLIPER full, CLIP ViT-B/32 "
                 "(Table 8)", kwargs={"arch": "ViT-B-32"})
