"""DFER-CLIP (Zhao & Patras, BMVC 2023, arXiv 2308.13382); official code github.com/zengqunzhao/DFER-CLIP
@ d10d5a4 (MIT; it bundles OpenAI's `clip` package). Shared CLIP pieces: `methods/_clip_layers.py`.

Model (as the official `GenerateModel`): CLIP ViT-B/32 image tower on each of the 16 frames (224², pixels in
[0, 1]: the official code applies no mean/std normalisation) -> 512-d projected CLS features, not normalised ->
temporal transformer (1 layer, 8 x 64 heads, MLP 1024, pre-norm, qkv without bias, tanh-GELU, no final norm,
torch.randn CLS / position embedding) -> CLS output, L2-normalised. Text: per class 8 class-specific learnable
context vectors (std 0.02) spliced into `[SOT] x x x x x x x x <description>. [EOT] 0 ...` (positions 1..8), the
frozen CLIP text tower, read-out at the EOT position, L2-normalised. Logits = cosine / 0.01 (fixed, CLIP's
logit_scale is unused), in train and eval mode; plain CE. Trainable: image tower, temporal net, contexts.

Class descriptions: our own wording of the facial actions each official description names (NOTES §1.7), mapped
by class name (`happy`/`happiness`, ... for the 7 DFEW/FERV39k and the 11 MAFW classes), so the dataset's class
order is free; an unknown name becomes "a face showing <name>.". `text_type` switches to the official
alternatives `class_name` ("<emotion>.") and `class_name_with_context` ("an expression of <emotion>.").

Sizes at 16x224², 7 classes, measured from the official code (NOTES §1.5, §1.10): 153.416 M params / 89.988 M
trainable; 90.30 GMACs with stock fvcore, 91.55 G with attention counted. Ours: 153.416 M - 1 (CLIP's unused
logit_scale is not kept) / 89.988 M, and 91.55 G (fvcore with the core's SDPA handle; FlopCounterMode agrees):
the attention of the CLIP towers is counted because `_clip_layers.build_clip` uses open_clip's own attention
block (with `nn.MultiheadAttention`, PyTorch's eval fast path hides attention and projections from both
counters: 2.95 instead of 4.41 G per frame). MAFW (11 classes): 153.433 M / 90.005 M (official 103.49 G).
The paper's table cites ~92 G. The text tower runs every forward (7 prompts x 77 tokens = 20.9 G of the 91.55 G);
`truncate_text=True` stops each prompt after its EOT (identical logits: the text mask is causal; ~2x less
text compute at the 7 official prompts) and is used by the CPU-sized synthetic recipe only.

Recipe (official, identical for DFEW / FERV39k / MAFW): SGD momentum 0.9, weight decay 1e-4 on every trainable
parameter (`decay_norm_bias`), lr 1e-2 for the temporal net, x1e-3 (1e-5) for the image encoder and x0.1 (1e-3)
for the contexts (`optim.lr_groups`), no warm-up, MultiStepLR at epochs 30 and 40 (gamma 0.1, per epoch;
registered here as schedule `dfer_clip_multistep`, milestones at 60% and 80% of the epochs, so exactly 30/40 at
50 epochs), 50 epochs, batch 48 (drop_last), 16 segments x 1 frame (random frame per segment in training,
segment centres at test), one test view, no normalisation, CE; the model is selected by test WAR
(`best_on_test`, as the official code: it validates on the test split every epoch).

Differences from the official code:
* Class description wording is ours (the notes only summarise the actions named); the `finetuned` source loads
  the authors' own description embeddings (token_suffix) and reads each prompt's EOT position from them.
* CLIP's unused `logit_scale` is dropped (1 parameter); the duplicate registration of the whole CLIP
  (`clip_model_.*`, aliases of the same tensors) is not reproduced: the `finetuned` converter drops those keys
  except `clip_model_.token_embedding.weight` (the only tensor stored there alone).
* Frame sampling (no difference): the official rule (`dataloader/video_dataloader.py` @ d10d5a4, `num_segments=16,
  duration=1`; n = the frame count of the annotation list) is the harness's `tsn` sampler with `pad=edge`, index
  for index (tests/test_sampling.py): training, n >= 16: frame_k = k*(n//16) + U{0..n//16-1} (the last n % 16
  frames are never sampled); n < 16: 0..n-1 then n-1 repeated; test, n >= 17: int(tick/2 + tick*k), tick = n/16,
  n <= 16 the same edge padding. The draws come from the run's seeded generator (official: numpy's global one).
  The official list indexes a clip's files in string order (`glob` + `sort()`), the harness by frame number (the
  same when names are zero-padded). The official DFEW lists point at full-length face frames
  (`DFEW_Frame_Face/00001 144 1`), so the DFEW entry reads the full-length variant (`clip_224x224`).
* Test resize: official `GroupResize(224)` squashes every frame to 224x224 (PIL bilinear); here (test_crops 1)
  the short side is resized to 224 (bilinear, antialiased) and the centre 224x224 is cropped. On square frames
  the two are the same operation, and on 224x224 frames neither resamples (both return the frame unchanged):
  DFEW `clip_224x224` / `clip_224x224_16f` are 224x224 face crops; FERV39k face crops are reported as 224x224
  (datasets.md §2.1, not verified); MAFW's frame size is not verified (the official lists read a `data/faces/`
  folder of unknown origin): on non-square frames the centre crop drops the ends of the long side where the
  official squash distorts the aspect ratio.
* Training crop: official `GroupRandomSizedCrop(224)`: area U(0.08, 1), aspect ratio uniform in [3/4, 4/3] and
  then width/height swapped with probability 1/2, 10 tries, fallback `GroupScale(224)` + random 224 crop; here
  torchvision's rule: aspect ratio log-uniform in [3/4, 4/3] (already symmetric under a swap, so none is drawn),
  fallback the whole frame (for a frame whose own aspect ratio is in range) resized. Both fallbacks give the
  whole frame on square frames.
* FERV39k's rotation jitter (U[-4, 4] degrees) has no spec key and is not applied; the colour jitter (DFEW
  brightness 0.5) is drawn per clip, as official.
* The text features are recomputed in every forward, as official (no caching).

Released checkpoints (official `save_checkpoint`: {'epoch', 'state_dict', 'best_acc', 'optimizer', 'recorder'},
'module.'-prefixed keys; the downloaded files are not inspected here) load as released, nothing to re-save:
`--init finetuned:FILE` / `bench eval --source finetuned`. The core reads every file with
torch.load(weights_only=True) (bench/weights.py `_load_weights_only`): argparse.Namespace is allow-listed, and
any other class the unpickler refuses - here `__main__.RecorderMeter` and the numpy arrays it holds
(`numpy.core.multiarray._reconstruct` or `numpy._core...`, `numpy.ndarray`, `numpy.dtype`) - is rebuilt as an
inert record (no code of it runs) and named in the load report's notes['opaque_objects'];
tests/test_core_options.py covers a foreign RecorderMeter (holding a list) next to an argparse.Namespace;
the numpy arrays of the official RecorderMeter are handled by the same rule (not in a test).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from bench.api import InputSpec, Paper, Recipe, WeightsSource, register_method, register_variant
from bench.optim import register_schedule

from ._clip_layers import (
    EOT_ID,
    TemporalTransformer,
    TextTower,
    build_clip,
    canonical_emotion,
    check_arch,
    clip_state_dict,
    frames_of,
    l2norm,
    map_clip_keys,
    resize_visual_pos,
    tokenize,
)

PAPER = Paper(authors="Zhao & Patras", title="Prompting Visual-Language Models for Dynamic Facial Expression "
              "Recognition", venue="BMVC", year=2023, arxiv="2308.13382", code="github.com/zengqunzhao/DFER-CLIP")

# The official class order of the released prompt learners (DFEW/FERV39k: 7; MAFW: 11), NOTES §1.7.
OFFICIAL_ORDER = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear", "contempt", "anxiety",
                  "helplessness", "disappointment")

# Our own wording (format of the official ones: four facial cues, comma-separated, ", and", final ".").
DESCRIPTIONS = {
    "happiness": "lip corners pulled up into a smile, lifted cheeks, fine creases at the outer corners of the "
                 "eyes, and softly curved eyebrows.",
    "sadness": "watery eyes close to tears, lip corners pulled downward, heavy upper eyelids, and a wrinkled "
               "forehead.",
    "neutral": "a face at rest without muscle tension, lips closed in a flat line, a smooth forehead, and "
               "eyebrows in their usual position.",
    "anger": "eyebrows lowered and pulled together, a hard narrowed stare, lips pressed firmly together, and "
             "widened nostrils.",
    "surprise": "eyes opened wide, the jaw dropped with the mouth open, eyebrows lifted high, and a face held "
                "still for a moment.",
    "disgust": "a wrinkled nose, eyebrows pulled down, a tight mouth with the upper lip drawn in, and squinting "
               "eyes.",
    "fear": "eyebrows raised high, lips parted and stretched, a tense creased brow, and the chin pulled back.",
    "contempt": "one corner of the mouth raised on a single side, uneven eyebrows with one higher than the "
                "other, slightly narrowed eyes, and the chin tilted up.",
    "anxiety": "a strained forehead, lips pressed tightly together, widened pupils, and tense muscles across "
               "the face.",
    "helplessness": "eyebrows sagging at their inner ends, eyes looking downward, lip corners dropped, and a "
                    "blank expression.",
    "disappointment": "lip corners turned down, lowered eyebrows, slightly narrowed eyes, and a visible sigh.",
}
TEXT_TYPES = ("descriptor", "class_name", "class_name_with_context")
N_CTX_PLACEHOLDER = "X"


def class_text(name: str, text_type: str = "descriptor") -> str:
    """The text after the learnable contexts for one class name."""
    key = canonical_emotion(name)
    if text_type == "descriptor":
        return DESCRIPTIONS[key] if key else f"a face showing {name.strip().replace('_', ' ')}."
    word = key or name.strip().replace("_", " ")
    if text_type == "class_name":
        return f"{word}."
    if text_type == "class_name_with_context":
        return f"an expression of {word}."
    raise ValueError(f"text_type must be one of {TEXT_TYPES}, got {text_type!r}")


class PromptLearner(nn.Module):
    """Learnable contexts spliced between the SOT embedding (token_prefix) and the frozen embeddings of the
    class text, ".", EOT and padding (token_suffix): (C, 1 + n_ctx + rest, W). Class-specific (C, n_ctx, W) or
    one generic (n_ctx, W) context, init N(0, 0.02). The buffers are persistent, as official."""

    def __init__(self, texts: list[str], token_embedding: nn.Embedding, n_ctx: int = 8, class_specific: bool = True,
                 ctx_std: float = 0.02):
        super().__init__()
        width = token_embedding.weight.shape[1]
        self.n_ctx = n_ctx
        prompts = [" ".join([N_CTX_PLACEHOLDER] * n_ctx) + " " + t for t in texts]
        tokens = tokenize(prompts)
        self.register_buffer("tokenized", tokens, persistent=False)
        shape = (len(texts), n_ctx, width) if class_specific else (n_ctx, width)
        self.ctx = nn.Parameter(torch.empty(shape).normal_(std=ctx_std))
        with torch.no_grad():
            emb = token_embedding(tokens)
        self.register_buffer("token_prefix", emb[:, :1].clone())
        self.register_buffer("token_suffix", emb[:, 1 + n_ctx:].clone())

    def forward(self) -> torch.Tensor:
        ctx = self.ctx if self.ctx.dim() == 3 else self.ctx.unsqueeze(0).expand(self.token_prefix.shape[0], -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)

    def eot_positions(self, eot_row: torch.Tensor) -> torch.Tensor:
        """(C,) EOT position of each prompt, read from the suffix embeddings (the row equal to the EOT token's
        embedding), so a loaded token_suffix (the authors' descriptions) brings its own positions."""
        match = (self.token_suffix == eot_row).all(-1)
        return 1 + self.n_ctx + match.to(torch.uint8).argmax(-1)


class DFERCLIP(nn.Module):
    """CLIP image tower per frame -> temporal transformer -> cosine against the learnt-prompt text features."""

    def __init__(self, class_names: tuple[str, ...], frames: int, size: int, n_ctx: int = 8,
                 class_specific: bool = True, temporal_layers: int = 1, text_type: str = "descriptor",
                 truncate_text: bool = False, arch: str = "ViT-B-32", temperature: float = 0.01):
        super().__init__()
        clip = build_clip(arch, size)
        self.class_names = tuple(class_names)
        self.class_texts = [class_text(n, text_type) for n in self.class_names]
        self.temperature = temperature
        self.truncate_text = truncate_text
        self.text_encoder = TextTower(clip)
        self.prompt_learner = PromptLearner(self.class_texts, clip.token_embedding, n_ctx, class_specific)
        self.image_encoder = clip.visual
        dim = clip.visual.output_dim
        self.temporal_net = TemporalTransformer(frames, dim, temporal_layers, heads=8, mlp_dim=1024)
        self.text_encoder.requires_grad_(False)

    def text_features(self) -> torch.Tensor:
        prompts = self.prompt_learner()
        eot = self.prompt_learner.eot_positions(self.text_encoder.token_embedding.weight[EOT_ID])
        return self.text_encoder.forward_embeddings(prompts, eot, truncate=self.truncate_text)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[0], x.shape[2]
        frames = self.image_encoder(frames_of(x)).view(b, t, -1)
        video = l2norm(self.temporal_net(frames))
        text = l2norm(self.text_features())
        return video @ text.t() / self.temperature


# ----------------------------------------------------------------------------------------------------------
# weights


def convert_openai_clip(sd: dict[str, torch.Tensor], model: nn.Module, notes: dict[str, Any]) -> dict[str, torch.Tensor]:
    """OpenAI ViT-B-32.pt / open_clip ViT-B-32 state_dict -> image_encoder.* and text_encoder.*; the prompt
    learner's prefix/suffix buffers are recomputed from the file's token embedding (as the official code does
    after loading CLIP); ctx and the temporal net stay at their init (new in the official code too)."""
    sd = clip_state_dict(sd, notes)
    check_arch(sd, model.image_encoder)
    out = map_clip_keys(sd, "image_encoder.", "text_encoder.", notes, model.image_encoder)
    pl = model.prompt_learner
    emb = out["text_encoder.token_embedding.weight"][pl.tokenized.cpu()]
    out["prompt_learner.token_prefix"] = emb[:, :1].clone()
    out["prompt_learner.token_suffix"] = emb[:, 1 + pl.n_ctx:].clone()
    notes["computed"] = ["prompt_learner.token_prefix", "prompt_learner.token_suffix"]
    return out


_TEMPORAL = [(r"temporal_net\.temporal_transformer\.layers\.(\d+)\.0\.fn\.norm\.", r"temporal_net.blocks.\1.norm1."),
             (r"temporal_net\.temporal_transformer\.layers\.(\d+)\.0\.fn\.fn\.to_qkv\.", r"temporal_net.blocks.\1.attn.qkv."),
             (r"temporal_net\.temporal_transformer\.layers\.(\d+)\.0\.fn\.fn\.to_out\.0\.", r"temporal_net.blocks.\1.attn.proj."),
             (r"temporal_net\.temporal_transformer\.layers\.(\d+)\.1\.fn\.norm\.", r"temporal_net.blocks.\1.norm2."),
             (r"temporal_net\.temporal_transformer\.layers\.(\d+)\.1\.fn\.fn\.net\.0\.", r"temporal_net.blocks.\1.mlp.fc1."),
             (r"temporal_net\.temporal_transformer\.layers\.(\d+)\.1\.fn\.fn\.net\.3\.", r"temporal_net.blocks.\1.mlp.fc2.")]
_CLASS_ROWS = ("prompt_learner.ctx", "prompt_learner.token_prefix", "prompt_learner.token_suffix")


def class_permutation(class_names: tuple[str, ...], rows: int) -> list[int]:
    """Row of the official prompt learner (OFFICIAL_ORDER[:rows]) for each of our classes."""
    order = OFFICIAL_ORDER[:rows] if rows in (7, 11) else None
    if order is None:
        if rows != len(class_names):
            raise ValueError(f"the file has {rows} classes, the model {len(class_names)}")
        return list(range(rows))
    perm = []
    for name in class_names:
        key = canonical_emotion(name)
        if key not in order:
            raise ValueError(f"class {name!r} is not one of the file's {rows} classes {order}")
        perm.append(order.index(key))
    return perm


def convert_finetuned(sd: dict[str, torch.Tensor], model: nn.Module, notes: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A DFER-CLIP checkpoint's state_dict (official names; the core strips DataParallel's 'module.') -> ours.

    The whole CLIP registered again as `clip_model_.*` aliases image_encoder/text_encoder: those keys are dropped
    (noted), except `clip_model_.token_embedding.weight` (the text tower's token table lives only there) and
    `clip_model_.logit_scale` (unused; dropped). The temporal net's vit-pytorch names become timm Block names.
    The class rows of ctx/token_prefix/token_suffix are reordered from the official class order to the model's
    class names (MAFW's dataset order differs)."""
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    if "prompt_learner.ctx" not in sd or "temporal_net.cls_token" not in sd:
        raise KeyError("prompt_learner.ctx / temporal_net.cls_token (not a DFER-CLIP checkpoint)")
    out: dict[str, torch.Tensor] = {}
    dropped = []
    for k, v in sd.items():
        if k == "clip_model_.token_embedding.weight":
            out["text_encoder.token_embedding.weight"] = v
        elif k.startswith("temporal_net.temporal_transformer."):
            new = k
            for pat, rep in _TEMPORAL:
                new = re.sub(pat, rep, new)
            out[new] = v
        elif k.startswith(("prompt_learner.", "text_encoder.", "image_encoder.", "temporal_net.")):
            out[k] = v
        else:
            dropped.append(k)
    aliases = sum(k.startswith("clip_model_.") and k != "clip_model_.logit_scale" for k in dropped)
    notes["dropped"] = [f"{aliases} clip_model_.* aliases of image_encoder/text_encoder tensors"] + \
        [k for k in dropped if not k.startswith("clip_model_.") or k == "clip_model_.logit_scale"]
    check_arch({"visual.conv1.weight": out["image_encoder.conv1.weight"]}, model.image_encoder)
    key = "image_encoder.positional_embedding"
    out[key] = resize_visual_pos(out[key].float(), model.image_encoder, notes, key)
    rows = out["prompt_learner.token_prefix"].shape[0]
    perm = class_permutation(model.class_names, rows)
    if perm != list(range(rows)) or rows != len(perm):
        for k in _CLASS_ROWS:
            if k in out and out[k].dim() == 3:
                out[k] = out[k][perm]
        notes["class_rows"] = {n: OFFICIAL_ORDER[i] if rows in (7, 11) else i for n, i in zip(model.class_names, perm, strict=True)}
    eot_row = out["text_encoder.token_embedding.weight"][EOT_ID]
    found = (out["prompt_learner.token_suffix"] == eot_row).all(-1).any(-1)
    if not bool(found.all()):
        raise ValueError("prompt_learner.token_suffix holds no EOT embedding of this file's token table")
    return out


RECIPE = Recipe(
    defaults={
        "data": {"sampler": "tsn", "segment_len": 1, "pad": "edge", "rrc_scale": [0.08, 1.0], "rrc_ratio": [3 / 4, 4 / 3],
                 "flip": True, "color_jitter": [0.0, 0.0, 0.0, 0.0], "mean": None, "std": None, "test_views": 1,
                 "test_crops": 1},
        "optim": {"name": "sgd", "lr": 1e-2, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
                  "decay_norm_bias": True, "lr_groups": {"image_encoder.": 1e-3, "prompt_learner.": 0.1},
                  "schedule": "dfer_clip_multistep", "per_iteration": False, "warmup_epochs": 0.0, "gamma": 0.1},
        "train": {"epochs": 50, "batch_size": 48, "drop_last": True, "selection": "best_on_test",
                  "selection_metric": "war"},
    },
    datasets={
        # brightness U[0.5, 1.5]; the official lists read the full-length frames
        "dfew": {"data": {"color_jitter": [0.5, 0.0, 0.0, 0.0], "options": {"variant": "clip_224x224"}}},
        "ferv39k": {},  # official: rotation U[-4, 4] deg before the crop (no spec key: not applied)
        "mafw": {},
        # CPU-sized deviation (~7 min on 2 cores, ~9.5 CPU-s per step): 8 frames at 32² (one 32px patch per
        # frame), 3 epochs, batch 16, milder crops, prompts stopped at their EOT (same logits), last epoch.
        "synthetic": {"data": {"frames": 8, "size": 32, "rrc_scale": [0.85, 1.0]},
                      "train": {"epochs": 3, "batch_size": 16, "selection": "last"},
                      "model": {"kwargs": {"truncate_text": True}}},
    },
)


@register_schedule("dfer_clip_multistep")
def dfer_clip_multistep(cfg: Any, epoch: int, it: int, iters: int, epochs: int) -> float:
    """MultiStepLR(milestones=[30, 40], gamma) of the official 50-epoch run, per epoch; the milestones scale with
    the epoch count (60% and 80%), so shorter runs keep the shape."""
    milestones = (round(0.6 * epochs), round(0.8 * epochs))
    return cfg.lr * cfg.gamma ** sum(epoch >= m for m in milestones)


WEIGHTS = {
    "openai_clip": WeightsSource(
        "OpenAI CLIP ViT-B-32.pt (TorchScript) or an open_clip ViT-B-32 state_dict (same names): image and text "
        "towers; contexts and temporal net start at their init", "ViT-B-32.pt", convert_openai_clip),
    "finetuned": WeightsSource(
        "a released DFER-CLIP checkpoint as downloaded ({'state_dict': ...} with official names, 'module.' prefix; "
        "its pickled RecorderMeter is read as an inert record) or a bare state_dict", "DFEW-...-model_best.pth",
        convert_finetuned),
}


@register_method("dfer_clip", family="CLIP-based", input=InputSpec(16, 224), paper=PAPER, recipe=RECIPE,
                 weights=WEIGHTS, literature=("DFER-CLIP",), needs_pretrained="openai_clip", uses_attention=True)
def dfer_clip(num_classes: int, frames: int, size: int, class_names: tuple[str, ...] = (), n_ctx: int = 8,
              class_specific: bool = True, temporal_layers: int = 1, text_type: str = "descriptor",
              truncate_text: bool = False, arch: str = "ViT-B-32") -> nn.Module:
    """DFER-CLIP: CLIP ViT-B/32 per frame + temporal transformer, learnt class-specific prompts + descriptions."""
    names = tuple(class_names) or tuple(f"class {i}" for i in range(num_classes))
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    if text_type not in TEXT_TYPES:
        raise ValueError(f"text_type must be one of {TEXT_TYPES}, got {text_type!r}")
    return DFERCLIP(names, frames, size, n_ctx, class_specific, temporal_layers, text_type, truncate_text, arch)


register_variant("dfer_clip.classname_prompts", variant_of="dfer_clip",
                 description="DFER-CLIP with the class name ('<emotion>.') instead of the description (official "
                             "--text-type class_names)", kwargs={"text_type": "class_name"})
