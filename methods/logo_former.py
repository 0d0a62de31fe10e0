"""LOGO-Former (Ma, Sun & Li, "Logo-Former: Local-Global Spatio-Temporal Transformer for Dynamic Facial Expression
Recognition", ICASSP 2023, arXiv 2305.03343): REIMPLEMENTATION FROM THE PAPER. No official PyTorch code is
published; the MindSpore port github.com/pwc-1/paper1 (Former/, @ 61c0595) is self-declared incompatible and does
not run (forward defined at module level, blocks called without the grid, a CIFAR-10 hub backbone, local window
(1,1,1), Dropout(0.2) meaning keep_prob 0.2, no residual around the attentions, token 0 classified, no compact
loss). Only the abstract of the paper was readable here, so the port is used for dimensions only, and every
choice the paper leaves open is a `model.kwargs` switch (or a `model.loss` option) listed below.

Design (abstract + port): a per-frame CNN (ResNet-18 stem..layer3 -> (256, 7, 7) at 112²) -> 1x1 conv token
embedding -> T x 7 x 7 tokens + learnable position tables -> `depth` blocks of
  (1) LOcal attention: multi-head self-attention inside non-overlapping space-time windows (facial muscles move
      locally, expressions change gradually), (2) GlObal attention: every token queries a summary of the whole
      clip, keys/values from a depth-wise strided Conv3d (kernel = stride) + LayerNorm over the (T, H, W) grid
      (DualFormer's GP-MSA, single level, as in the port), (3) FFN (x4, GELU),
-> final LayerNorm -> mean over tokens (or a CLS token) -> Linear; plus a compact loss on the pooled feature.

Switches (model.kwargs; default first) and why:
* embed_dim=256 (port: 512). The paper's 10.27 GFLOPs at 16x112² cannot be reached at 512: the backbone to
  layer3 is 5.63 G and four 512-d FFNs (x4) over 784 tokens alone cost 6.58 G, so any 4-block 512-d model is
  >= 12.3 G (the port's configuration measures 17.6-19.7 G). At 256 (the layer3 width, 8 heads x 32) the model
  measures 9.57 GMACs / 7.08 M params with these defaults (-6.9 % vs 10.27). Note that the same authors' tables
  give Former-DFER 9.11 G where its released code measures 8.32 G (x1.095); 10.27 / 1.095 = 9.38 G, within
  2 % of this default. `logo_former.d512` is the port's width (19.77 M / 19.67 G).
* depth=4, heads=8, mlp_ratio=4.0 (port); stage=3 (backbone cut after layer3, as the port's PyTorch helper;
  4 = whole ResNet-18, 4x4 grid); embed_conv=True (the port's 1x1 conv 256->embed_dim; False needs embed_dim 256).
* local_window=(2,7,7) (t, h, w; the port's (1,1,1) makes attention a no-op): the two consecutive frames of a
  segment x the whole 7x7 face. Windows that do not divide the grid are zero-padded and the padded keys masked
  (e.g. (2,4,4) for spatially local windows).
* global_kernel=(2,1,1): kv summary of 8x7x7 = 392 tokens (the port's intent: resolution / fine_pysize; as written
  it computes a cubic (2,2,2) kernel, 72 keys).
* prenorm_residual=True: x + Attn(LN(x)) around both attentions (DualFormer / TimeSformer; the port has neither
  norm nor residual there, the FFN has both). False = the port as written.
* pool="mean" (port returns token 0 = frame 0 / patch 0, a bug) | "cls" (a CLS token: untouched by local
  attention, a query and a key of the global attention, then FFN).
* pos_emb="divided" (space 49 + time 16 tables, as the port) | "joint" | "none"; trunc-normal std 0.02.
* gelu_tanh=False (exact GELU, as a PyTorch original would be; MindSpore's nn.GELU default is the tanh form).
* attn_drop=0.2, proj_drop=0.2, ffn_drop=0.2 (the port's Dropout(0.2), read as p=0.2), drop_path=(0.01, 0.11)
  (the port: linspace(0, 0.1, depth) + 0.01), head_drop=0.0.
Compact loss (model.loss; formula and weight not recoverable here): compact="contrastive_center" (default,
Qi & Su's contrastive-centre loss on the pooled feature f with learnable class centres c_k:
  L = 1/2 mean_i [ sum_k t_ik ||f_i - c_k||² / (sum_k (1 - t_ik) ||f_i - c_k||² + delta) ], t = soft targets,
i.e. intra-class distance over inter-class distance), or "batch" (no centres: mean squared distance of
same-class pairs in the batch over that of different-class pairs + delta); compact_weight=1.0 (the ratio is
~1/(2(K-1)) at init, below the CE term), compact_delta=1.0. `logo_former.no_compact` trains without it.

Backbone init: the port's PyTorch helper loads the MS-Celeb-1M face ResNet-18 (Resnet18_MS1M_pytorch.pth.tar of
Emotion-FAN: {'state_dict': 'module.' + torchvision names + feature.*/fc.*}); `needs_pretrained="msceleb"`, so a
run without it is labelled random init. An ImageNet torchvision ResNet-18 state_dict also loads ("imagenet").

Recipe (port, = Former-DFER's): SGD lr 0.01 momentum 0.9 wd 1e-4 on all parameters, StepLR(40, 0.1), 100 epochs,
batch 32 (drop_last), 8 segments x 2 frames at 112², random-sized crop (0.08-1) + flip, test resize, no
normalisation, best test WAR over epochs (as the port). Loss: CE + compact (the port's ASL focal loss with 0.1
smoothing is not the paper's). FERV39k: no loader in the port, same recipe assumed. Sizes at 16x112²: see above;
no official params / FLOPs counter exists (paper: 10.27 GFLOPs, params not reported).
Sampling differs from the port's loader (Former/dataloader/dataset_DFEW_MS.py @ 61c0595, Former-DFER's rule; pair
k = frames o_k and min(o_k + 1, n - 1)): the port drops clips of n < 16 frames from train AND test (the harness
keeps them, stretched evenly: frame i*n//16); it trains on o_k = k*a + U{0..a-1}, a = (n-1)//8 (n = 16: o_k = k,
frames 0..8 only), the harness on int(k*(n-1)/8) + U{0..a-1} (the same law only when (n-1) mod 8 <= 1); the test
offsets int(t/2 + k*t), t = (n-1)/8, are identical for n >= 16.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_, use_fused_attn
from torchvision.models.resnet import resnet18

from bench.api import InputSpec, Paper, Recipe, WeightsSource, register_method, register_variant
from bench.errors import UnknownNameError
from bench.losses import Criterion, classification_criterion

PAPER = Paper(authors="Ma, Sun & Li", title="Logo-Former: Local-Global Spatio-Temporal Transformer for Dynamic "
              "Facial Expression Recognition", venue="ICASSP", year=2023, arxiv="2305.03343", code="")


def _triple(v: Sequence[int] | int) -> tuple[int, int, int]:
    t = tuple(int(x) for x in (v if isinstance(v, (list, tuple)) else (v, v, v)))
    if len(t) != 3 or min(t) < 1:
        raise ValueError(f"expected 3 positive ints (t, h, w), got {v!r}")
    return t  # type: ignore[return-value]


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, drop: nn.Dropout,
            fused: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) [masked]) v over (..., L, d); fused = SDPA, else plain matmuls (FLOP-visible)."""
    if fused:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop.p if drop.training else 0.0)
    attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if mask is not None:
        attn = attn.masked_fill(~mask, float("-inf"))
    return drop(attn.softmax(dim=-1)) @ v


class LocalAttention(nn.Module):
    """MHSA inside non-overlapping (wt, wh, ww) windows of the (T, H, W) token grid (zero-padded + masked)."""

    def __init__(self, dim: int, heads: int, window: tuple[int, int, int], attn_drop: float, proj_drop: float):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.fused_attn = use_fused_attn()

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        b, n, c = x.shape
        wt, wh, ww = (min(w, g) for w, g in zip(self.window, grid, strict=True))
        t, h, w = grid
        pt, ph, pw = (-t) % wt, (-h) % wh, (-w) % ww
        x = x.view(b, t, h, w, c)
        mask = None
        if pt or ph or pw:
            x = F.pad(x, (0, 0, 0, pw, 0, ph, 0, pt))
            valid = F.pad(x.new_ones(1, t, h, w, 1, dtype=torch.bool), (0, 0, 0, pw, 0, ph, 0, pt))
        tp, hp, wp = t + pt, h + ph, w + pw
        nt, nh, nw = tp // wt, hp // wh, wp // ww
        size = wt * wh * ww

        def part(z: torch.Tensor) -> torch.Tensor:
            z = z.view(z.shape[0], nt, wt, nh, wh, nw, ww, z.shape[-1]).permute(0, 1, 3, 5, 2, 4, 6, 7)
            return z.reshape(-1, size, z.shape[-1])

        xw = part(x)  # (B * windows, size, C)
        if pt or ph or pw:
            mask = part(valid)[:, None, None, :, 0].repeat(b, 1, 1, 1)  # (B * windows, 1, 1, size) keys
        qkv = self.qkv(xw).reshape(xw.shape[0], size, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = _attend(qkv[0], qkv[1], qkv[2], mask, self.attn_drop, self.fused_attn)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(xw.shape[0], size, c)))
        out = out.view(b, nt, nh, nw, wt, wh, ww, c).permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, tp, hp, wp, c)
        return out[:, :t, :h, :w].reshape(b, n, c)


class GlobalAttention(nn.Module):
    """Every token (and the CLS, if any) queries keys/values of a reduced clip: depth-wise Conv3d with
    kernel = stride over the (T, H, W) grid (zero-padded to a multiple), LayerNorm, then kv projection."""

    def __init__(self, dim: int, heads: int, kernel: tuple[int, int, int], attn_drop: float, proj_drop: float):
        super().__init__()
        self.heads, self.kernel = heads, kernel
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, dim * 2, bias=False)
        self.sr = nn.Conv3d(dim, dim, kernel_size=kernel, stride=kernel, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.fused_attn = use_fused_attn()

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int], n_cls: int) -> torch.Tensor:
        b, n, c = x.shape
        hd = c // self.heads
        tokens = x[:, n_cls:].transpose(1, 2).reshape(b, c, *grid)
        pads = [(-g) % k for g, k in zip(grid, self.kernel, strict=True)]
        if any(pads):
            tokens = F.pad(tokens, (0, pads[2], 0, pads[1], 0, pads[0]))
        reduced = self.norm(self.sr(tokens).flatten(2).transpose(1, 2))  # (B, M, C)
        kv_in = torch.cat([x[:, :n_cls], reduced], dim=1) if n_cls else reduced
        q = self.q(x).reshape(b, n, self.heads, hd).transpose(1, 2)
        kv = self.kv(kv_in).reshape(b, kv_in.shape[1], 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        out = _attend(q, kv[0], kv[1], None, self.attn_drop, self.fused_attn)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class LOGOBlock(nn.Module):
    """local attention -> global attention -> FFN (each pre-norm + residual; the attentions without either when
    prenorm_residual=False, as the port is written)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, window: tuple[int, int, int],
                 kernel: tuple[int, int, int], attn_drop: float, proj_drop: float, ffn_drop: float, drop_path: float,
                 prenorm_residual: bool, gelu_tanh: bool):
        super().__init__()
        self.prenorm_residual = prenorm_residual
        self.norm1 = nn.LayerNorm(dim) if prenorm_residual else nn.Identity()
        self.local_attn = LocalAttention(dim, heads, window, attn_drop, proj_drop)
        self.norm2 = nn.LayerNorm(dim) if prenorm_residual else nn.Identity()
        self.global_attn = GlobalAttention(dim, heads, kernel, attn_drop, proj_drop)
        self.norm3 = nn.LayerNorm(dim)
        act = (lambda: nn.GELU(approximate="tanh")) if gelu_tanh else nn.GELU
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act, drop=ffn_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int], n_cls: int) -> torch.Tensor:
        cls, tok = x[:, :n_cls], x[:, n_cls:]
        local = self.local_attn(self.norm1(tok), grid)
        tok = tok + self.drop_path(local) if self.prenorm_residual else local
        x = torch.cat([cls, tok], dim=1) if n_cls else tok
        glob = self.global_attn(self.norm2(x), grid, n_cls)
        x = x + self.drop_path(glob) if self.prenorm_residual else glob
        return x + self.drop_path(self.mlp(self.norm3(x)))


class LOGOFormer(nn.Module):
    def __init__(self, num_classes: int, frames: int, size: int, embed_dim: int = 256, depth: int = 4,
                 heads: int = 8, mlp_ratio: float = 4.0, stage: int = 3, embed_conv: bool = True,
                 local_window: Sequence[int] = (2, 7, 7), global_kernel: Sequence[int] = (2, 1, 1),
                 prenorm_residual: bool = True, pool: str = "mean", pos_emb: str = "divided",
                 gelu_tanh: bool = False, attn_drop: float = 0.2, proj_drop: float = 0.2, ffn_drop: float = 0.2,
                 drop_path: Sequence[float] = (0.01, 0.11), head_drop: float = 0.0):
        super().__init__()
        if pool not in ("mean", "cls"):
            raise UnknownNameError("LOGO-Former pool (model.kwargs.pool)", pool, ("mean", "cls"))
        if pos_emb not in ("divided", "joint", "none"):
            raise UnknownNameError("LOGO-Former pos_emb", pos_emb, ("divided", "joint", "none"))
        if stage not in (3, 4):
            raise ValueError(f"stage must be 3 or 4, got {stage}")
        if embed_dim % heads:
            raise ValueError(f"embed_dim {embed_dim} is not a multiple of heads {heads}")
        r = resnet18(weights=None)
        names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"][:5 + stage - 1]
        self.backbone = nn.Sequential()  # torchvision names: conv1, bn1, ..., layer3 (, layer4)
        for name in names:
            self.backbone.add_module(name, getattr(r, name))
        in_ch = 256 if stage == 3 else 512
        with torch.no_grad():
            side = self.backbone(torch.zeros(1, 3, size, size)).shape[-1]
        self.grid = (frames, side, side)
        if embed_conv:
            self.embed = nn.Conv2d(in_ch, embed_dim, kernel_size=1)
            nn.init.kaiming_uniform_(self.embed.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.embed.bias)
        elif in_ch != embed_dim:
            raise ValueError(f"embed_conv=False needs embed_dim == {in_ch}")
        else:
            self.embed = nn.Identity()
        self.pos_emb = pos_emb
        if pos_emb == "divided":
            self.pos_space = nn.Parameter(torch.zeros(1, side * side, embed_dim))
            self.pos_time = nn.Parameter(torch.zeros(1, frames, embed_dim))
        elif pos_emb == "joint":
            self.pos_joint = nn.Parameter(torch.zeros(1, frames * side * side, embed_dim))
        self.n_cls = 1 if pool == "cls" else 0
        if self.n_cls:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        lo, hi = (float(v) for v in (drop_path if isinstance(drop_path, (list, tuple)) else (drop_path, drop_path)))
        rates = [lo + (hi - lo) * i / max(depth - 1, 1) for i in range(depth)]
        window, kernel = _triple(local_window), _triple(global_kernel)
        self.blocks = nn.ModuleList(
            LOGOBlock(embed_dim, heads, mlp_ratio, window, kernel, attn_drop, proj_drop, ffn_drop, rates[i],
                      prenorm_residual, gelu_tanh) for i in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.head_drop = nn.Dropout(head_drop)
        self.fc = nn.Linear(embed_dim, num_classes)
        # class centres of the compact loss (contrastive-centre mode); used only by the criterion
        self.centers = nn.Parameter(torch.randn(num_classes, embed_dim))
        self._init_transformer()

    def _init_transformer(self) -> None:
        for name, p in self.named_parameters():
            if name.startswith(("pos_", "cls_token")):
                trunc_normal_(p, std=0.02)
        for m in [*self.blocks.modules(), self.fc]:
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        maps = self.embed(self.backbone(x.transpose(1, 2).reshape(b * t, c, h, w)))  # (B*T, D, S, S)
        d = maps.shape[1]
        tokens = maps.flatten(2).transpose(1, 2).reshape(b, t, -1, d)  # (B, T, S*S, D), time-major
        if self.pos_emb == "divided":
            tokens = tokens + self.pos_space[:, None] + self.pos_time[:, :, None]
        tokens = tokens.reshape(b, -1, d)
        if self.pos_emb == "joint":
            tokens = tokens + self.pos_joint
        if self.n_cls:
            tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
        for blk in self.blocks:
            tokens = blk(tokens, self.grid, self.n_cls)
        tokens = self.norm(tokens)
        return tokens[:, 0] if self.n_cls else tokens.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        feats = self.forward_features(x)
        logits = self.fc(self.head_drop(feats))
        if self.training:
            return {"logits": logits, "features": feats, "centers": self.centers}
        return logits


# ----------------------------------------------------------------------------------------------------------
# compact loss

COMPACT_MODES = ("contrastive_center", "batch")


def contrastive_center_loss(feats: torch.Tensor, centers: torch.Tensor, targets: torch.Tensor,
                            delta: float = 1.0) -> torch.Tensor:
    """1/2 mean_i [sum_k t_ik d_ik / (sum_k (1 - t_ik) d_ik + delta)], d_ik = ||f_i - c_k||² (one-hot t: Qi & Su's
    contrastive-centre loss: distance to the own centre over the summed distances to the other centres)."""
    d = (feats[:, None, :] - centers[None]).pow(2).sum(-1)  # (B, K)
    t = targets.float()
    return 0.5 * ((t * d).sum(-1) / ((1 - t) * d).sum(-1).add(delta)).mean()


def batch_compact_loss(feats: torch.Tensor, targets: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Mean squared distance of same-class pairs (i != j) over that of different-class pairs (+ delta), labels =
    argmax of the targets; a batch without such pairs contributes 0 to the missing mean."""
    y = targets.argmax(-1)
    d = torch.cdist(feats, feats).pow(2)
    same = (y[:, None] == y[None]) & ~torch.eye(len(y), dtype=torch.bool, device=y.device)
    diff = y[:, None] != y[None]
    intra = d[same].mean() if same.any() else d.new_zeros(())
    inter = d[diff].mean() if diff.any() else d.new_zeros(())
    return intra / (inter + delta)


def logo_criterion(spec: Any) -> Criterion:
    """CE on the logits + compact_weight x compact loss on the pooled features (training outputs only).

    model.loss keys: compact (contrastive_center | batch), compact_weight (1.0), compact_delta (1.0)."""
    opts = dict(spec.model.loss) if spec is not None else {}
    mode = str(opts.get("compact", "contrastive_center"))
    if mode not in COMPACT_MODES:
        raise UnknownNameError("LOGO-Former compact loss (model.loss.compact)", mode, COMPACT_MODES)
    weight = float(opts.get("compact_weight", 1.0))
    delta = float(opts.get("compact_delta", 1.0))

    def compact(outputs: Any, soft_targets: torch.Tensor) -> torch.Tensor:
        if not isinstance(outputs, dict) or weight == 0.0:
            return soft_targets.new_zeros((), dtype=torch.float32)
        f = outputs["features"].float()
        if mode == "batch":
            return weight * batch_compact_loss(f, soft_targets, delta)
        return weight * contrastive_center_loss(f, outputs["centers"].float(), soft_targets, delta)

    return classification_criterion(spec, terms={"compact": compact})


# ----------------------------------------------------------------------------------------------------------
# weights

def convert_resnet18_backbone(sd: dict, model: nn.Module, notes: dict) -> dict:
    """A ResNet-18 classifier state_dict in torchvision names (the MS-Celeb-1M file of Emotion-FAN after the core
    strips 'module.', or torchvision's ImageNet file) -> backbone.*; fc.* / feature.* (and layer4.* when the
    backbone stops at layer3) are dropped on purpose (notes['dropped'])."""
    own = model.state_dict()
    out, dropped = {}, []
    for k, v in sd.items():
        target = f"backbone.{k}"
        if target in own:
            out[target] = v
        elif k.startswith(("fc.", "feature.", "layer4.")):
            dropped.append(k)
        else:
            out[k] = v  # reported as unexpected
    notes["dropped"] = sorted(dropped)
    return out


WEIGHTS = {
    "msceleb": WeightsSource("MS-Celeb-1M face ResNet-18 (Emotion-FAN's Resnet18_MS1M_pytorch.pth.tar: "
                             "{'state_dict'} with 'module.' + torchvision names); fc/feature/layer4 dropped",
                             "Resnet18_MS1M_pytorch.pth.tar", convert_resnet18_backbone),
    "imagenet": WeightsSource("torchvision ImageNet ResNet-18 state_dict; fc/layer4 dropped", "resnet18-f37072fd.pth",
                              convert_resnet18_backbone),
}

# ----------------------------------------------------------------------------------------------------------
# recipe (the port's, = Former-DFER's)

RECIPE = Recipe(
    defaults={
        "data": {"frames": 16, "size": 112, "sampler": "segment", "segment_len": 2, "pad": "edge",
                 "rrc_scale": [0.08, 1.0], "rrc_ratio": [3 / 4, 4 / 3], "flip": True,
                 "color_jitter": [0.0, 0.0, 0.0, 0.0], "interpolation": "bilinear", "mean": None, "std": None,
                 "test_temporal": "uniform", "test_views": 1, "test_crops": 1},
        "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "decay_norm_bias": True,
                  "schedule": "step", "step_epochs": 40, "gamma": 0.1, "per_iteration": False, "warmup_epochs": 0},
        "reg": {"label_smoothing": 0.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0},
        "train": {"epochs": 100, "batch_size": 32, "drop_last": True, "grad_clip": 0.0,
                  "selection": "best_on_test", "selection_metric": "war"},
        "model": {"loss": {"compact": "contrastive_center", "compact_weight": 1.0, "compact_delta": 1.0}},
    },
    datasets={
        "dfew": {},  # the port's DFEW recipe
        "ferv39k": {},  # no FERV39k loader in the port: the DFEW recipe, assumed
        "mafw": {},  # no MAFW numbers or code: the DFEW recipe
        # CPU-sized deviation (<= 10 min on 2 cores): 4 segments x 2 frames at 48² (3x3 token grid, windows
        # clipped to it), 10 epochs at batch 16, StepLR every 4 epochs, crops 0.3-1, last epoch kept.
        "synthetic": {"data": {"frames": 8, "size": 48, "rrc_scale": [0.3, 1.0]},
                      "optim": {"step_epochs": 4},
                      "train": {"epochs": 10, "batch_size": 16, "selection": "last"}},
    },
)


@register_method("logo_former", family="CNN+Transformer", input=InputSpec(16, 112), paper=PAPER, recipe=RECIPE,
                 weights=WEIGHTS, criterion=logo_criterion, literature=("LOGO-Former",), needs_pretrained="msceleb",
                 uses_attention=True, description="LOGO-Former, reimplementation from the paper: ResNet-18 to layer3 "
                 "-> local space-time window + global (DWConv3d-reduced) attention x4 -> mean pool; compact loss",
                 test_views_note="port: 1 clip (8 segment centres x 2 frames); epoch chosen on test WAR")
def logo_former(num_classes: int, frames: int, size: int, embed_dim: int = 256, depth: int = 4, heads: int = 8,
                mlp_ratio: float = 4.0, stage: int = 3, embed_conv: bool = True,
                local_window: Sequence[int] = (2, 7, 7), global_kernel: Sequence[int] = (2, 1, 1),
                prenorm_residual: bool = True, pool: str = "mean", pos_emb: str = "divided", gelu_tanh: bool = False,
                attn_drop: float = 0.2, proj_drop: float = 0.2, ffn_drop: float = 0.2,
                drop_path: Sequence[float] = (0.01, 0.11), head_drop: float = 0.0) -> nn.Module:
    """LOGO-Former (reimplementation from the paper): local + global spatio-temporal attention, compact loss."""
    return LOGOFormer(num_classes, frames, size, embed_dim, depth, heads, mlp_ratio, stage, embed_conv, local_window,
                      global_kernel, prenorm_residual, pool, pos_emb, gelu_tanh, attn_drop, proj_drop, ffn_drop,
                      drop_path, head_drop)


register_variant("logo_former.d512", variant_of="logo_former", kwargs={"embed_dim": 512},
                 description="LOGO-Former at the MindSpore port's width (1x1 conv to 512): ~20 G, twice the paper's")
register_variant("logo_former.no_compact", variant_of="logo_former", loss={"compact_weight": 0.0},
                 description="LOGO-Former trained with CE only (no compact loss)")
register_variant("logo_former.batch_compact", variant_of="logo_former", loss={"compact": "batch"},
                 description="LOGO-Former with the centre-free in-batch compact loss")
