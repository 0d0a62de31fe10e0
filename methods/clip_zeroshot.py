"""CLIP zero-shot label matching (Radford et al., ICML 2021, arXiv 2103.00020; github.com/openai/CLIP), the
text-prompted baseline of zero-shot DFER / compound-expression work (e.g. the CLIP scene-label predictor of Team
RAS, 9th ABAW, arXiv 2507.02205). No training: every frame is scored against one text embedding per class.

Classifier (open_clip's `build_zero_shot_classifier` convention, NOTES §3): per class, each template filled with
the class's label text is encoded by the text tower and L2-normalised; the mean over templates is
L2-renormalised; the columns form W (D, K). A frame's logits are `logit_scale * norm(f) @ W` (fixed 100, as
open_clip's zero-shot evaluation), averaged over the clip's frames (`frame_aggregate=mean_logits`; or
`mean_probs`: log of the mean per-frame softmax, Team RAS's rule). Frames are normalised with OpenAI's mean/std
inside the model (`normalize`), so the data pipeline feeds [0, 1] pixels.

Switches (model.kwargs): `arch` ViT-B-32 (default) | ViT-B-16; `templates` face (our 8 face-expression
templates, default) | imagenet (open_clip's 80 OpenAI ImageNet templates) | simple (its 7) | bare ("{}" only,
Team RAS's bare labels); `label_words` adjective (default: happy, surprised, ...) | noun | raw (the dataset's
class names); `logit_scale` (100; 1.0 gives Team RAS's un-scaled, very flat softmax); `tune` visual (default:
`bench run` fine-tunes the image tower against the fixed zero-shot classifier) | none (everything frozen).

The classifier W is a non-persistent buffer, rebuilt after every `load_state_dict` (a load hook), so a weights
file (`bench eval --source openai_clip`) brings its own text embeddings; prompts are encoded up to their EOT
(causal mask: the same features). The model also exposes `encode_video(x) -> (B, D)` (mean of the L2-normalised
frame embeddings, renormalised) and `encode_text(list[str]) -> (N, D)` (L2-normalised), for feature-level rules
such as pair-wise feature-similarity aggregation (PFSA) of compound expressions.

Sizes at 16x224²: ViT-B/32 151.28 M params (CLIP without logit_scale), 70.62 GMACs per clip (16 x 4.414, text
precomputed); ViT-B/16 149.62 M, 16 x 17.58 G. No official code for the DFER setting exists, so nothing to differ
from; the CLIP towers are open_clip's with OpenAI's weights layout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import InputSpec, Paper, Recipe, WeightsSource, register_method, register_variant

from ._clip_layers import (
    Normalize,
    TextTower,
    build_clip,
    check_arch,
    clip_state_dict,
    frames_of,
    l2norm,
    label_text,
    map_clip_keys,
    tokenize,
)

PAPER = Paper(authors="Radford et al.", title="Learning Transferable Visual Models From Natural Language Supervision",
              venue="ICML", year=2021, arxiv="2103.00020", code="github.com/openai/CLIP")

# our face-expression template set, written for adjectives ("a face that looks happy.")
FACE_TEMPLATES = (
    "a photo of a face that looks {}.",
    "a close-up photo of a face looking {}.",
    "a face that looks {}.",
    "a photo of a person looking {}.",
    "a person whose face looks {}.",
    "a video frame of a person looking {}.",
    "a cropped photo of a face that looks {}.",
    "someone looking {}.",
)


def template_set(name: str) -> list[str | Callable[[str], str]]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    sets = {"face": list(FACE_TEMPLATES), "imagenet": list(OPENAI_IMAGENET_TEMPLATES),
            "simple": list(SIMPLE_IMAGENET_TEMPLATES), "bare": ["{}"]}
    if name not in sets:
        raise ValueError(f"templates must be one of {sorted(sets)}, got {name!r}")
    return sets[name]


def fill(template: str | Callable[[str], str], label: str) -> str:
    return template(label) if callable(template) else template.format(label)


class ZeroShotCLIP(nn.Module):
    """Frames -> CLIP image features -> cosine x scale against the prompt-ensemble classifier -> mean over time."""

    def __init__(self, class_names: Sequence[str], size: int, arch: str = "ViT-B-32", templates: str = "face",
                 label_words: str = "adjective", logit_scale: float = 100.0, frame_aggregate: str = "mean_logits",
                 normalize: bool = True, tune: str = "visual"):
        super().__init__()
        if frame_aggregate not in ("mean_logits", "mean_probs"):
            raise ValueError(f"frame_aggregate must be mean_logits or mean_probs, got {frame_aggregate!r}")
        if tune not in ("visual", "none"):
            raise ValueError(f"tune must be visual or none, got {tune!r}")
        clip = build_clip(arch, size)
        self.visual = clip.visual
        self.text = TextTower(clip)
        self.normalize = Normalize() if normalize else nn.Identity()
        self.class_names = tuple(class_names)
        self.templates = template_set(templates)
        self.labels = [label_text(n, label_words) for n in self.class_names]
        self.logit_scale = float(logit_scale)
        self.frame_aggregate = frame_aggregate
        self.text.requires_grad_(False)
        self.visual.requires_grad_(tune == "visual")
        self.register_buffer("classifier", torch.zeros(self.text.output_dim, len(self.class_names)), persistent=False)
        self.refresh_classifier()
        self.register_load_state_dict_post_hook(lambda module, keys: module.refresh_classifier())

    def prompts(self) -> list[list[str]]:
        """The filled templates of each class."""
        return [[fill(t, label) for t in self.templates] for label in self.labels]

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch: int = 256) -> torch.Tensor:
        """(N, D) L2-normalised text features of free texts (each cut to CLIP's 77 tokens)."""
        dev = self.classifier.device
        out = [l2norm(self.text(tokenize(list(texts[i:i + batch])).to(dev)).float())
               for i in range(0, len(texts), batch)]
        return torch.cat(out) if out else torch.zeros(0, self.text.output_dim, device=dev)

    @torch.no_grad()
    def refresh_classifier(self) -> None:
        """W = stack over classes of renorm(mean over templates of norm(text(template(label))))."""
        per_class = self.prompts()
        flat = self.encode_text([p for ps in per_class for p in ps])
        emb = flat.view(len(per_class), len(self.templates), -1).mean(1)
        self.classifier.copy_(l2norm(emb).t())

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) in [0, 1] -> (B, T, D) L2-normalised frame embeddings."""
        b, t = x.shape[0], x.shape[2]
        return l2norm(self.visual(self.normalize(frames_of(x)))).view(b, t, -1)

    def encode_video(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) in [0, 1] -> (B, D): mean of the normalised frame embeddings, renormalised."""
        return l2norm(self.frame_features(x).mean(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logit_scale * self.frame_features(x) @ self.classifier  # (B, T, K)
        if self.frame_aggregate == "mean_probs":
            return torch.log(F.softmax(logits, dim=-1).mean(1))
        return logits.mean(1)


def convert_openai_clip(sd: dict[str, torch.Tensor], model: nn.Module, notes: dict[str, Any]) -> dict[str, torch.Tensor]:
    """OpenAI ViT-B-32.pt / ViT-B-16.pt (TorchScript) or an open_clip state_dict -> visual.* / text.*."""
    sd = clip_state_dict(sd, notes)
    check_arch(sd, model.visual)
    return map_clip_keys(sd, "visual.", "text.", notes, model.visual)


RECIPE = Recipe(
    defaults={
        # zero-shot: `bench eval --zero-shot` / `--source openai_clip`. For `bench run` (tune=visual): a short
        # fine-tune of the image tower against the fixed text classifier (our choice, not from a paper).
        "data": {"sampler": "segment", "segment_len": 1, "rrc_scale": [0.8, 1.0], "flip": True, "mean": None,
                 "std": None, "test_views": 1, "test_crops": 1},
        "optim": {"name": "adamw", "lr": 1e-5, "weight_decay": 0.05, "schedule": "cosine", "warmup_epochs": 1.0},
        "train": {"epochs": 10, "batch_size": 32, "selection": "last"},
    },
    datasets={
        # CPU-sized deviation (~6 min on 2 cores): 8 frames at 32² (one ViT-B/32 patch), 3 epochs
        "synthetic": {"data": {"frames": 8, "size": 32, "rrc_scale": [0.85, 1.0]},
                      "optim": {"lr": 1e-4}, "train": {"epochs": 3, "batch_size": 16}},
    },
)

WEIGHTS = {"openai_clip": WeightsSource(
    "OpenAI CLIP ViT-B-32.pt / ViT-B-16.pt (TorchScript) or an open_clip state_dict of that architecture (same "
    "names); the zero-shot classifier is rebuilt from the loaded text tower", "ViT-B-32.pt", convert_openai_clip)}


@register_method("clip_zeroshot", family="CLIP-based", input=InputSpec(16, 224), paper=PAPER, recipe=RECIPE,
                 weights=WEIGHTS, needs_pretrained="openai_clip", uses_attention=True, zero_shot=True)
def clip_zeroshot(num_classes: int, frames: int, size: int, class_names: tuple[str, ...] = (),
                  arch: str = "ViT-B-32", templates: str = "face", label_words: str = "adjective",
                  logit_scale: float = 100.0, frame_aggregate: str = "mean_logits", normalize: bool = True,
                  tune: str = "visual") -> nn.Module:
    """CLIP zero-shot: each frame scored against a prompt ensemble per class name, scores averaged over the clip."""
    names = tuple(class_names) or tuple(f"class {i}" for i in range(num_classes))
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    return ZeroShotCLIP(names, size, arch, templates, label_words, logit_scale, frame_aggregate, normalize, tune)


register_variant("clip_zeroshot.b16", variant_of="clip_zeroshot", description="CLIP zero-shot with ViT-B/16",
                 kwargs={"arch": "ViT-B-16"})
register_variant("clip_zeroshot.imagenet", variant_of="clip_zeroshot",
                 description="CLIP zero-shot with open_clip's 80 OpenAI ImageNet templates",
                 kwargs={"templates": "imagenet"})
