"""Shared CLIP pieces of the CLIP-based methods (`dfer_clip`, `clip_zeroshot`, `fine_cliper`); private module.

* `build_clip(arch, image_size)`: open_clip's CLIP with OpenAI's architecture (QuickGELU), random init, built
  with open_clip's own attention block (`block_type="custom"`: `F.linear` + `F.scaled_dot_product_attention`)
  instead of `nn.MultiheadAttention`. The state_dict names are the same 302 names as OpenAI's file. Why not the
  default block: in eval mode under `no_grad`, `nn.MultiheadAttention` takes PyTorch's fused fast path
  (`aten::_native_multi_head_attention`), which neither fvcore nor FlopCounterMode sees -- in-/out-projections
  included -- so both counters agree on 2.95 instead of 4.41 GMACs per ViT-B/32 frame and the 3% cross-check
  cannot catch it. The custom block computes the same function (open_clip's own class).
* `TextTower`: CLIP's text side under OpenAI's names, encoding token ids or spliced token embeddings, with the
  EOT read-out and optional adapters; `encode_image`: the image tower with optional adapters.
* `Adapter` / `BlockAdapters`: bottleneck adapters (down -> GELU -> up, optional skip), AIM-style placement.
* `TemporalTransformer`: DFER-CLIP's temporal net on timm's `Block`.
* `clip_state_dict` / `map_clip_keys` / `resize_visual_pos`: converters for an OpenAI `.pt` (TorchScript,
  partly fp16, 3 extra scalar entries) or an open_clip state_dict (identical names), see NOTES §2.
* `tokenize`, `canonical_emotion`, emotion word tables: prompt text helpers.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

SOT_ID, EOT_ID, CONTEXT_LENGTH = 49406, 49407, 77
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
ARCHS = ("ViT-B-32", "ViT-B-16")
JIT_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")  # scalars in OpenAI's TorchScript files
TEXT_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


# ----------------------------------------------------------------------------------------------------------
# towers


def build_clip(arch: str = "ViT-B-32", image_size: int = 224, quick_gelu: bool = True) -> nn.Module:
    """open_clip CLIP (OpenAI layout, QuickGELU by default) at `image_size`, random init, counted attention."""
    import open_clip

    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    cfg = copy.deepcopy(open_clip.get_model_config(arch))
    patch = cfg["vision_cfg"]["patch_size"]
    if image_size < patch:
        raise ValueError(f"{arch}: size {image_size} is below one {patch}px patch")
    cfg["vision_cfg"].update(image_size=image_size, block_type="custom")
    cfg["text_cfg"].update(block_type="custom")
    return open_clip.CLIP(embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"],
                          quick_gelu=quick_gelu)


class Adapter(nn.Module):
    """Bottleneck adapter: fc2(GELU(fc1(x))) (+ x when `skip`). `zero_init` zeroes fc2 (AIM): starts as identity
    (skip) or as zero (no skip), so the frozen model's function is the starting point."""

    def __init__(self, dim: int, bottleneck: int, skip: bool = True, zero_init: bool = True):
        super().__init__()
        self.skip = skip
        self.fc1 = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(bottleneck, dim)
        if zero_init:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc2(self.act(self.fc1(x)))
        return x + h if self.skip else h


class BlockAdapters(nn.Module):
    """The adapters of one transformer block: `attn` (serial, on the attention output, before the residual add)
    and `mlp` (parallel to the MLP on the same LN'd input, scaled by `scale`). Either may be None."""

    def __init__(self, dim: int, bottleneck: int, attn: bool = True, mlp: bool = True, scale: float = 0.5,
                 attn_skip: bool = True, mlp_skip: bool = False, zero_init: bool = True):
        super().__init__()
        self.scale = scale
        self.attn = Adapter(dim, bottleneck, attn_skip, zero_init) if attn else None
        self.mlp = Adapter(dim, bottleneck, mlp_skip, zero_init) if mlp else None


def run_blocks(resblocks: nn.ModuleList, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
               adapters: Sequence[BlockAdapters] | None = None) -> torch.Tensor:
    """open_clip CustomResidualAttentionBlocks (batch first), with per-block adapters inserted:
    x + A_attn(attn(ln_1 x)); then x + mlp(ln_2 x) + s * A_mlp(ln_2 x)."""
    if adapters is None:
        for blk in resblocks:
            x = blk(x, attn_mask=attn_mask)
        return x
    for blk, ad in zip(resblocks, adapters, strict=True):
        h = blk.ln_attn(blk.attn(blk.ln_1(x), attn_mask=attn_mask))
        if ad.attn is not None:
            h = ad.attn(h)
        x = x + blk.ls_1(h)
        y = blk.ln_2(x)
        h = blk.mlp(y)
        if ad.mlp is not None:
            h = h + ad.scale * ad.mlp(y)
        x = x + blk.ls_2(h)
    return x


def encode_image(visual: nn.Module, x: torch.Tensor, adapters: Sequence[BlockAdapters] | None = None) -> torch.Tensor:
    """open_clip VisionTransformer forward (embeddings, blocks, ln_post on CLS, @ proj) with optional adapters."""
    if adapters is None:
        return visual(x)
    x = visual._embeds(x)
    x = run_blocks(visual.transformer.resblocks, x, None, adapters)
    pooled, _ = visual._pool(x)
    return pooled @ visual.proj if visual.proj is not None else pooled


class TextTower(nn.Module):
    """CLIP's text side with OpenAI's names (token_embedding, positional_embedding, transformer, ln_final,
    text_projection), taken from an open_clip CLIP. Output: the projected feature at the EOT position."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask.clone(), persistent=False)
        self.width = self.positional_embedding.shape[1]
        self.context_length = self.positional_embedding.shape[0]

    @property
    def output_dim(self) -> int:
        return self.text_projection.shape[1]

    def forward_embeddings(self, x: torch.Tensor, eot: torch.Tensor, adapters: Sequence[BlockAdapters] | None = None,
                           truncate: bool = False) -> torch.Tensor:
        """(N, L, W) token embeddings + (N,) EOT positions -> (N, D). `truncate` drops the positions after the
        last EOT first: with the causal mask no earlier position sees them, so the features are identical
        (up to float rounding) at a fraction of the cost."""
        length = x.shape[1]
        if truncate:
            length = int(eot.max()) + 1
            x = x[:, :length]
        x = x + self.positional_embedding[:length].to(x.dtype)
        x = run_blocks(self.transformer.resblocks, x, self.attn_mask[:length, :length], adapters)
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        return x @ self.text_projection

    def forward(self, tokens: torch.Tensor, adapters: Sequence[BlockAdapters] | None = None,
                truncate: bool = True) -> torch.Tensor:
        """(N, 77) token ids -> (N, D) (not normalised)."""
        return self.forward_embeddings(self.token_embedding(tokens), tokens.argmax(-1), adapters, truncate)


class TemporalTransformer(nn.Module):
    """DFER-CLIP's `Temporal_Transformer_Cls` (vit-pytorch style) on timm Blocks: [CLS; frame features] + learned
    position embedding (both torch.randn, std 1), pre-norm blocks (qkv without bias, tanh-GELU MLP), no final
    norm, output at the CLS position."""

    def __init__(self, frames: int, dim: int = 512, depth: int = 1, heads: int = 8, mlp_dim: int = 1024):
        from timm.models.vision_transformer import Block

        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, frames + 1, dim))
        act = partial(nn.GELU, approximate="tanh")
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio=mlp_dim / dim, qkv_bias=False, proj_bias=True,
                                          act_layer=act, norm_layer=nn.LayerNorm) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, D)."""
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embedding[:, : x.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return x[:, 0]


def frames_of(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W), frame-major within each clip."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


class Normalize(nn.Module):
    """(x - mean) / std per channel of (N, 3, H, W) images in [0, 1] (OpenAI CLIP's preprocessing)."""

    def __init__(self, mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


# ----------------------------------------------------------------------------------------------------------
# weights


def clip_state_dict(sd: dict[str, torch.Tensor], notes: dict[str, Any]) -> dict[str, torch.Tensor]:
    """An OpenAI `.pt` (as read by bench.weights: TorchScript tensors) or an open_clip state_dict -> the 302 CLIP
    entries in float32. Drops the TorchScript scalars and a saved `attn_mask` (a constant), recorded in notes."""
    if "visual.conv1.weight" not in sd or "token_embedding.weight" not in sd:
        raise KeyError("visual.conv1.weight / token_embedding.weight (not a CLIP state_dict in OpenAI/open_clip names)")
    dropped = [k for k in sd if k in JIT_EXTRA_KEYS or k == "attn_mask"]
    if dropped:
        notes.setdefault("dropped", []).extend(dropped)
    halves = sorted(k for k, v in sd.items() if v.dtype == torch.float16)
    if halves:
        notes["cast_to_float32"] = len(halves)
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items() if k not in dropped}


def check_arch(sd: dict[str, torch.Tensor], visual: nn.Module) -> None:
    """ValueError when the file's patch size / width is not the model's (e.g. a B/16 file for a B/32 model)."""
    want, got = tuple(visual.conv1.weight.shape), tuple(sd["visual.conv1.weight"].shape)
    if want != got:
        raise ValueError(f"visual.conv1.weight is {got} in the file, the model's is {want} "
                         "(a file of another CLIP architecture; see model.kwargs.arch)")


def resize_visual_pos(pos: torch.Tensor, visual: nn.Module, notes: dict[str, Any], key: str) -> torch.Tensor:
    """Resize a (1 + g*g, W) CLIP position table to the model's grid (bicubic, antialias: open_clip's rule)."""
    from types import SimpleNamespace

    from open_clip.model import resize_pos_embed

    if pos.shape == visual.positional_embedding.shape:
        return pos
    state = {"visual.positional_embedding": pos}
    resize_pos_embed(state, SimpleNamespace(visual=visual))
    notes.setdefault("resized", []).append(f"{key}: {tuple(pos.shape)} -> {tuple(state['visual.positional_embedding'].shape)}")
    return state["visual.positional_embedding"]


def map_clip_keys(sd: dict[str, torch.Tensor], visual_prefix: str | None, text_prefix: str | None,
                  notes: dict[str, Any], visual: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """CLIP names -> the model's: `visual.*` -> visual_prefix + *, text keys -> text_prefix + key (None: dropped,
    noted). `logit_scale` is dropped (the CLIP methods here use fixed scales), noted. The visual position table
    is resized to the model's grid when `visual` is given."""
    out: dict[str, torch.Tensor] = {}
    dropped = []
    for k, v in sd.items():
        if k.startswith("visual."):
            if visual_prefix is None:
                dropped.append(k)
                continue
            if k == "visual.positional_embedding" and visual is not None:
                v = resize_visual_pos(v, visual, notes, k)
            out[visual_prefix + k[len("visual."):]] = v
        elif k.startswith(TEXT_KEYS):
            if text_prefix is None:
                dropped.append(k)
                continue
            out[text_prefix + k] = v
        else:
            dropped.append(k)  # logit_scale (unused: fixed scales) and anything unknown
    if dropped:
        notes.setdefault("dropped", []).extend(sorted(dropped) if len(dropped) < 20 else [f"{len(dropped)} keys"])
    return out


# ----------------------------------------------------------------------------------------------------------
# text


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """CLIP BPE (open_clip's SimpleTokenizer = OpenAI's): (N, 77) int64, [SOT] ... [EOT] 0 ...; too long texts
    are cut and still end with EOT."""
    import open_clip

    return open_clip.tokenize(list([texts] if isinstance(texts, str) else texts), context_length=context_length)


# canonical emotion keys (MAFW's 11 names as nouns) and the spellings datasets use for them
_SYNONYMS = {
    "happiness": ("happy", "happiness", "happily", "joy"), "sadness": ("sad", "sadness", "sadly"),
    "neutral": ("neutral", "neutrality"), "anger": ("angry", "anger", "angrily"),
    "surprise": ("surprise", "surprised", "surprising"), "disgust": ("disgust", "disgusted", "disgustedly"),
    "fear": ("fear", "fearful", "fearfully", "afraid", "scared"), "contempt": ("contempt", "contemptuous"),
    "anxiety": ("anxiety", "anxious"), "helplessness": ("helplessness", "helpless"),
    "disappointment": ("disappointment", "disappointed"),
}
_CANON = {s: k for k, syn in _SYNONYMS.items() for s in syn}
NOUN = {k: k for k in _SYNONYMS}
ADJECTIVE = {"happiness": "happy", "sadness": "sad", "neutral": "neutral", "anger": "angry", "surprise": "surprised",
             "disgust": "disgusted", "fear": "fearful", "contempt": "contemptuous", "anxiety": "anxious",
             "helplessness": "helpless", "disappointment": "disappointed"}


def canonical_emotion(name: str) -> str | None:
    """'Happy' / 'happiness' / 'HAPPINESS' -> 'happiness'; None for a name that is not one of the 11 emotions."""
    return _CANON.get(name.strip().lower().replace("_", " ").replace("-", " "))


def label_text(name: str, words: str = "raw") -> str:
    """A class name as prompt text: `raw` (the name, '_' -> ' '), `noun` ('happiness') or `adjective` ('happy');
    names that are not one of the 11 emotions stay raw."""
    if words not in ("raw", "noun", "adjective"):
        raise ValueError(f"label words must be raw, noun or adjective, got {words!r}")
    key = canonical_emotion(name)
    if words == "raw" or key is None:
        return name.strip().replace("_", " ")
    return (NOUN if words == "noun" else ADJECTIVE)[key]


def l2norm(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


