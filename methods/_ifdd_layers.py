"""IFDD network modules (arXiv 2412.13168): embedding, 10-block MViTv2 backbone, pyramid fusion, ISSM, LADM, head.

Every module derives its token grid from the constructor's (frames, size); nothing assumes 16x224^2. The
released behaviour is the default; each deviation from it is a named constructor switch (see `IFDDConfig`
and the deviation ledger in `methods/IFDD.md`). Attention inside the backbone is torchvision's MViTv2
`MultiscaleBlock` (numerically identical to the released copy); the LADM attention uses plain `torch.matmul`
so that fvcore counts it the way it counts the original.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.video.mvit import MSBlockConfig, MultiscaleBlock, PositionalEncoding
from torchvision.ops import MLP, StochasticDepth

# The released "MFViT_XS": MViTv2-S with its stage-3 blocks 8..13 removed (heads, widths, q/kv strides).
XS_HEADS = (1, 2, 2, 4, 4, 4, 4, 4, 8, 8)
XS_IN = (96, 96, 192, 192, 384, 384, 384, 384, 384, 768)
XS_OUT = (96, 192, 192, 384, 384, 384, 384, 384, 768, 768)
XS_STRIDE_Q = ((1, 1, 1), (1, 2, 2), (1, 1, 1), (1, 2, 2), (1, 1, 1), (1, 1, 1), (1, 1, 1), (1, 1, 1), (1, 2, 2),
               (1, 1, 1))
XS_STRIDE_KV = ((1, 8, 8), (1, 4, 4), (1, 4, 4), (1, 2, 2), (1, 2, 2), (1, 2, 2), (1, 2, 2), (1, 2, 2), (1, 1, 1),
                (1, 1, 1))
STAGE_DIMS = (96, 192, 384, 768)
STAGE_LAST_BLOCK = (0, 2, 7, 9)  # a stage ends where the next head count starts
DESCRIPTOR_GRID = 7  # ISSM pools every frame to 7x7 before describing it (released `down_size`)


@dataclass
class IFDDConfig:
    """All architecture switches. Defaults = the released configuration (`faithful`)."""

    num_classes: int = 7
    frames: int = 16
    size: int = 224
    stages: tuple[int, ...] = (2, 3)  # backbone stages fused by the pyramid; (3,) = single stage
    # ablations
    use_issm: bool = True  # False: fixed even/odd frame split
    use_updater: bool = True
    use_predictor: bool = True
    update_first: bool = True  # released WaveSF_preUpdate=True; False = predict then update
    wave_norm: bool = True  # LayerNorm on both branches after the split
    # quirk switches (released value first)
    issm_grid: str = "released"  # released: align_corners=True formula sampled with False | exact
    issm_corr_scale: str = "channels"  # channels: S = F.F^T / C (C=768) | sqrt_descriptor: / sqrt(343)
    lift_residual: str = "value"  # value: + V inside each lifting step | none
    out_mlp_residual: bool = False  # released output MLP has no residual
    lift_target: str = "raw_input"  # raw_input: pair-mean X vs normalised x_a | normalized_input: LN_a(pair-mean X)
    keep_dead_params: bool = True  # keep the 44,625 never-used parameters (exact parameter count)
    backbone_norm_eps: float = 1e-6
    ladm_norm_eps: float = 1e-5
    # regularisation
    drop_path: float = 0.2  # backbone stochastic depth, linear 0 -> drop_path over blocks
    ladm_drop_path: float = 0.2
    head_dropout: float = 0.5
    attention_dropout: float = 0.0
    extra: dict = field(default_factory=dict)


def _ceil_div(n: int, s: int) -> int:
    return -(-n // s)


def embed_grid(frames: int, size: int) -> tuple[int, int, int]:
    """(T, H, W) after the patch embedding: Conv3d k(3,7,7) s(2|1,4,4) p(1,3,3), then the temporal avg-pool."""
    stride_t = 2 if frames > 8 else 1
    t = (frames + 2 - 3) // stride_t + 1
    t //= temporal_pool_factor(frames)
    hw = (size + 6 - 7) // 4 + 1
    return t, hw, hw


def temporal_pool_factor(frames: int) -> int:
    """The released embedding average-pools time by 2 for 32-frame input so the backbone always sees T=8."""
    return max(frames // 16, 1)


class PatchEmbed(nn.Module):
    """MViTv2 cube embedding (3x7x7, stride 2x4x4) plus a temporal average pool for long clips (MAFW: 32 -> 16)."""

    def __init__(self, frames: int, dim: int = 96):
        super().__init__()
        stride_t = 2 if frames > 8 else 1
        self.conv = nn.Conv3d(3, dim, kernel_size=(3, 7, 7), stride=(stride_t, 4, 4), padding=(1, 3, 3))
        k = temporal_pool_factor(frames)
        self.temporal_pool = nn.AvgPool3d((k, 1, 1), stride=(k, 1, 1)) if k > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal_pool(self.conv(x))


class MViTBackbone(nn.Module):
    """The 10 MViTv2 blocks; returns the token tensors (CLS first) at the end of every requested stage.

    The last stage is returned after the final LayerNorm, earlier stages without it (as released).
    """

    def __init__(self, grid: tuple[int, int, int], drop_path: float, attention_dropout: float, norm_eps: float):
        super().__init__()
        norm = partial(nn.LayerNorm, eps=norm_eps)
        self.pos_encoding = PositionalEncoding(XS_IN[0], (grid[1], grid[2]), grid[0], rel_pos_embed=True)
        self.blocks = nn.ModuleList()
        size = list(grid)
        self.stage_grids: list[tuple[int, int, int]] = []
        n = len(XS_HEADS)
        for i in range(n):
            cnf = MSBlockConfig(num_heads=XS_HEADS[i], input_channels=XS_IN[i], output_channels=XS_OUT[i],
                                kernel_q=[3, 3, 3], kernel_kv=[3, 3, 3], stride_q=list(XS_STRIDE_Q[i]),
                                stride_kv=list(XS_STRIDE_KV[i]))
            self.blocks.append(MultiscaleBlock(
                input_size=list(size), cnf=cnf, residual_pool=True, residual_with_cls_embed=False,
                rel_pos_embed=True, proj_after_attn=True, dropout=attention_dropout,
                stochastic_depth_prob=drop_path * i / (n - 1.0), norm_layer=norm))
            size = [_ceil_div(a, s) for a, s in zip(size, XS_STRIDE_Q[i], strict=True)]
            if i in STAGE_LAST_BLOCK:
                self.stage_grids.append((size[0], size[1], size[2]))
        self.norm = norm(XS_OUT[-1])

    def forward(self, x: torch.Tensor, stages: tuple[int, ...]) -> dict[int, torch.Tensor]:
        thw = tuple(x.shape[2:])
        x = self.pos_encoding(x.flatten(2).transpose(1, 2))
        taps: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            x, thw = block(x, thw)
            if i in STAGE_LAST_BLOCK:
                stage = STAGE_LAST_BLOCK.index(i)
                if stage == len(STAGE_LAST_BLOCK) - 1:
                    x = self.norm(x)
                if stage in stages:
                    taps[stage] = x
        return taps


class PyramidFusion(nn.Module):
    """Fuse earlier stages into the last one: a strided dilated 3x3 conv per earlier stage, concat, 1x1 conv.

    (Released PANLayer + CatConv.) Stride = dilation = padding = the nominal grid ratio 2^(last - stage).
    """

    def __init__(self, stages: tuple[int, ...]):
        super().__init__()
        last = stages[-1]
        self.lateral = nn.ModuleList()
        for s in stages[:-1]:
            r = 2 ** (last - s)
            self.lateral.append(nn.Conv2d(STAGE_DIMS[s], STAGE_DIMS[s], 3, stride=r, dilation=r, padding=r, bias=False))
        self.fuse = nn.Conv2d(sum(STAGE_DIMS[s] for s in stages), STAGE_DIMS[last], 1, bias=False)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        lowered = [conv(m) for conv, m in zip(self.lateral, maps[:-1], strict=True)]
        return self.fuse(torch.cat([*lowered, maps[-1]], dim=1))


class InterFrameSplit(nn.Module):
    """ISSM: split T frames into T/2 "approximation" and T/2 "detail" frames at learned continuous positions.

    A 1x1 conv describes each frame, the frame-to-frame correlation (and its negative) goes through a softmax,
    two bias-free linears turn them into offsets in (-2, 2) around the even / odd frames, and the features are
    linearly interpolated in time at those positions with `grid_sample`.
    """

    def __init__(self, frames: int, dim: int, corr_scale: str, grid_mode: str, keep_dead_params: bool):
        super().__init__()
        if corr_scale not in ("channels", "sqrt_descriptor"):
            raise ValueError(f"issm_corr_scale must be channels or sqrt_descriptor, not {corr_scale!r}")
        if grid_mode not in ("released", "exact"):
            raise ValueError(f"issm_grid must be released or exact, not {grid_mode!r}")
        self.frames, self.grid_mode = frames, grid_mode
        self.frame_descriptor = nn.Conv2d(dim, DESCRIPTOR_GRID, kernel_size=1)
        descriptor_len = DESCRIPTOR_GRID**3
        self.corr_scale = 1.0 / dim if corr_scale == "channels" else 1.0 / math.sqrt(descriptor_len)
        half = frames // 2
        self.offset_approx = nn.Linear(frames * frames, half, bias=False)
        self.offset_detail = nn.Linear(frames * frames, half, bias=False)
        self.max_offset = 2.0
        # the released module also builds a T->T->1 MLP it never calls (81 parameters at T=8)
        self.unused_time_project = (
            nn.Sequential(nn.Linear(frames, frames), nn.GELU(), nn.Linear(frames, 1)) if keep_dead_params else None
        )
        self.register_buffer("base_approx", torch.arange(0, frames, 2), persistent=False)
        self.register_buffer("base_detail", torch.arange(1, frames, 2), persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.03)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def positions(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> tuple[torch.Tensor, ...]:
        """Correlation S (B,T,T) and continuous frame positions (B,T/2) of both branches."""
        b, _, c = tokens.shape
        t, h, w = grid
        frames = tokens.view(b, t, h, w, c).permute(0, 1, 4, 2, 3).reshape(b, t * c, h, w)
        frames = F.adaptive_avg_pool2d(frames, DESCRIPTOR_GRID)
        desc = F.gelu(self.frame_descriptor(frames.reshape(b * t, c, DESCRIPTOR_GRID, DESCRIPTOR_GRID)))
        desc = desc.reshape(b, t, -1)
        corr = torch.matmul(self.corr_scale * desc, desc.transpose(1, 2))
        off_a = self.max_offset * torch.tanh(self.offset_approx(corr.softmax(-1).flatten(1)))
        off_d = self.max_offset * torch.tanh(self.offset_detail((-corr).softmax(-1).flatten(1)))
        return corr, self.base_approx + off_a, self.base_detail + off_d

    def to_grid(self, idx: torch.Tensor) -> torch.Tensor:
        """Frame position -> grid_sample coordinate (align_corners=False is used for sampling)."""
        t = self.frames
        if self.grid_mode == "released":
            return 2.0 * idx / max(t - 1, 1) - 1.0  # align_corners=True formula: samples at 8/7*idx - 0.5
        return (2.0 * idx + 1.0) / t - 1.0  # frame idx exactly

    def sample(self, tokens: torch.Tensor, idx: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Interpolate (B, T*H*W, C) tokens at frame positions idx (B,T') -> (B, T'*H*W, C)."""
        b, _, c = tokens.shape
        t, h, w = grid
        src = tokens.view(b, t, h * w * c).transpose(1, 2).unsqueeze(-1)  # (B, HW*C, T, 1)
        y = self.to_grid(idx)[..., None, None]
        coords = torch.cat([torch.zeros_like(y), y], dim=-1)  # (B, T', 1, 2): x=0, y=time
        out = F.grid_sample(src, coords, mode="bilinear", padding_mode="border", align_corners=False)
        return out.squeeze(-1).transpose(1, 2).reshape(b, -1, c)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        corr, idx_a, idx_d = self.positions(tokens, grid)
        x_a, x_d = self.sample(tokens, idx_a, grid), self.sample(tokens, idx_d, grid)
        return x_a, x_d, {"corr": corr, "idx_a": idx_a, "idx_d": idx_d}


class LiftingStep(nn.Module):
    """Cross-attention of one branch (queries) on the other (keys/values), projected; one lifting step.

    `value_residual` adds the un-split value projection V to the attention output (released behaviour).
    """

    def __init__(self, dim: int, heads: int, value_residual: bool):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.value_residual = value_residual
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)  # packed [K | V]
        self.proj = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, n, c = query.shape
        m = context.shape[1]
        q = self.q(query).reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
        kv = self.kv(context).reshape(b, m, 2, self.heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = torch.matmul(self.scale * q, k.transpose(2, 3)).softmax(dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, n, c)
        if self.value_residual:
            out = out + kv[:, :, 1].reshape(b, m, c)
        return self.proj(out)


class SelfAttention(nn.Module):
    """Plain multi-head self-attention with matmul (so fvcore counts it) and a packed q|k|v projection."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = torch.matmul(self.scale * q, k.transpose(2, 3)).softmax(dim=-1)
        return self.proj(torch.matmul(attn, v).transpose(1, 2).reshape(b, n, c))


class LADM(nn.Module):
    """Lifting-based aggregation of dynamic/static information (released `WaveSF_trans_CLS`).

    split (ISSM or even/odd) -> WaveNorm -> updater (x_a += U(x_a, x_d)) -> predictor (x_d -= P(x_d, x_a))
    -> transformer on the detail branch -> learned token compression to one vector. Also returns `pool_a`,
    the target of the lifting loss (mean over channels and time of pair-averaged input minus x_a).
    """

    def __init__(self, cfg: IFDDConfig, grid: tuple[int, int, int], dim: int, heads: int = 8):
        super().__init__()
        t, h, w = grid
        if t % 2:
            raise ValueError(f"LADM needs an even number of backbone frames, got T={t}")
        if cfg.lift_target not in ("raw_input", "normalized_input"):
            raise ValueError(f"lift_target must be raw_input or normalized_input, not {cfg.lift_target!r}")
        if cfg.lift_residual not in ("value", "none"):
            raise ValueError(f"lift_residual must be value or none, not {cfg.lift_residual!r}")
        self.grid, self.cfg = grid, cfg
        eps = cfg.ladm_norm_eps
        if cfg.keep_dead_params:  # released zero position tables, never added (its `pos` branch is off)
            self.unused_spatial_pos = nn.Parameter(torch.zeros(h * w, dim))
            self.unused_temporal_pos = nn.Parameter(torch.zeros(t, dim))
            self.unused_class_pos = nn.Parameter(torch.zeros(dim))
        self.split = (InterFrameSplit(t, dim, cfg.issm_corr_scale, cfg.issm_grid, cfg.keep_dead_params)
                      if cfg.use_issm else None)
        self.norm_approx = nn.LayerNorm(dim, eps=eps) if cfg.wave_norm else nn.Identity()
        self.norm_detail = nn.LayerNorm(dim, eps=eps) if cfg.wave_norm else nn.Identity()
        value_residual = cfg.lift_residual == "value"
        self.update = LiftingStep(dim, heads, value_residual) if cfg.use_updater else None
        self.predict = LiftingStep(dim, heads, value_residual) if cfg.use_predictor else None
        self.out_norm1 = nn.LayerNorm(dim, eps=eps)
        self.out_attn = SelfAttention(dim, heads)
        self.out_norm2 = nn.LayerNorm(dim, eps=eps)
        self.out_mlp = MLP(dim, [4 * dim, dim], activation_layer=nn.GELU, dropout=cfg.attention_dropout, inplace=None)
        self.drop_path = StochasticDepth(cfg.ladm_drop_path, "row")
        self.token_compress = nn.Linear(t // 2 * h * w, 1, bias=False)

    def lift(self, x_a: torch.Tensor, x_d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def do_update(a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
            return a + self.update(a, d) if self.update is not None else a

        def do_predict(a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
            return d - self.predict(d, a) if self.predict is not None else d

        if self.cfg.update_first:
            x_a = do_update(x_a, x_d)
            return x_a, do_predict(x_a, x_d)
        x_d = do_predict(x_a, x_d)
        return do_update(x_a, x_d), x_d

    def forward(self, tokens: torch.Tensor, want_pool_a: bool, probe: dict | None = None):
        t, h, w = self.grid
        b, _, c = tokens.shape
        if self.split is not None:
            x_a, x_d, info = self.split(tokens, self.grid)
            if probe is not None:
                probe.update({"issm_" + k: v for k, v in info.items()})
        else:
            frames = tokens.view(b, t, h * w, c)
            x_a, x_d = frames[:, 0::2].reshape(b, -1, c), frames[:, 1::2].reshape(b, -1, c)
        x_a, x_d = self.norm_approx(x_a), self.norm_detail(x_d)
        x_a, x_d = self.lift(x_a, x_d)
        if probe is not None:
            probe.update(ladm_x_a=x_a, ladm_x_d_lifted=x_d)

        z = x_d + self.drop_path(self.out_attn(self.out_norm1(x_d)))
        y = self.drop_path(self.out_mlp(self.out_norm2(z)))
        x_d = z + y if self.cfg.out_mlp_residual else y
        if probe is not None:
            probe["ladm_x_d_precompress"] = x_d
        x_d = self.token_compress(x_d.transpose(1, 2)).squeeze(-1)
        if not want_pool_a:
            return x_d, None
        return x_d, self.lift_target(tokens, x_a)

    def lift_target(self, tokens: torch.Tensor, x_a: torch.Tensor) -> torch.Tensor:
        """pool_a (B,H,W): mean over (channel, time) of the pair-averaged input frames minus x_a."""
        t, h, w = self.grid
        b, _, c = tokens.shape
        pair_mean = tokens.view(b, t // 2, 2, h * w, c).mean(dim=2)
        if self.cfg.lift_target == "normalized_input":
            pair_mean = self.norm_approx(pair_mean)
        diff = pair_mean - x_a.view(b, t // 2, h * w, c)
        return diff.mean(dim=(1, 3)).view(b, h, w)


class ClassifierHead(nn.Module):
    def __init__(self, dim: int, num_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dropout(x)
        return self.fc(x), x


class IFDD(nn.Module):
    """Embedding -> MViTv2 (10 blocks) -> pyramid fusion -> LADM(ISSM) -> linear head.

    eval: returns logits (B,K). train: (logits, pool_a (B,H,W), x_d (B,768)) for the lifting loss; x_d is the
    post-dropout head input, as in the released code (its in-place dropout overwrote it).
    """

    def __init__(self, cfg: IFDDConfig):
        super().__init__()
        if tuple(sorted(cfg.stages)) != tuple(cfg.stages) or not set(cfg.stages) <= {0, 1, 2, 3}:
            raise ValueError(f"stages must be increasing stage ids in 0..3, got {cfg.stages}")
        self.cfg = cfg
        self.embed = PatchEmbed(cfg.frames)
        grid = embed_grid(cfg.frames, cfg.size)
        self.backbone = MViTBackbone(grid, cfg.drop_path, cfg.attention_dropout, cfg.backbone_norm_eps)
        self.stage_grids = self.backbone.stage_grids
        self.pyramid = PyramidFusion(tuple(cfg.stages)) if len(cfg.stages) > 1 else None
        dim = STAGE_DIMS[cfg.stages[-1]]
        self.ladm = LADM(cfg, self.stage_grids[cfg.stages[-1]], dim)
        self.head = ClassifierHead(dim, cfg.num_classes, cfg.head_dropout)
        self._init_backbone()

    def _init_backbone(self) -> None:
        """Released MViT init: trunc-normal(0.02) linears and rel-pos tables / class token, unit LayerNorms."""
        for m in self.backbone.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for name, p in self.backbone.named_parameters():
            if "rel_pos" in name or "class_token" in name:
                nn.init.trunc_normal_(p, std=0.02)

    def features(self, x: torch.Tensor, probe: dict | None = None) -> torch.Tensor:
        """LADM input tokens X: (B, T*H*W, C) in (t, h, w) order, CLS dropped."""
        x = self.embed(x)
        b, t = x.shape[0], x.shape[2]
        taps = self.backbone(x, tuple(self.cfg.stages))
        maps = []
        for s in self.cfg.stages:
            tok = taps[s][:, 1:]
            _, gh, gw = self.stage_grids[s]
            maps.append(tok.reshape(b, t, gh, gw, -1).permute(0, 1, 4, 2, 3).reshape(b * t, -1, gh, gw))
        if probe is not None:
            probe.update({f"stage{s}_tokens": taps[s] for s in self.cfg.stages})
        fused = self.pyramid(maps) if self.pyramid is not None else maps[-1]
        _, c, gh, gw = fused.shape
        tokens = fused.reshape(b, t, c, gh, gw).permute(0, 1, 3, 4, 2).reshape(b, -1, c)
        if probe is not None:
            probe["fpn_tokens"] = tokens
        return tokens

    def forward(self, x: torch.Tensor, probe: dict | None = None):
        tokens = self.features(x, probe)
        x_d, pool_a = self.ladm(tokens, want_pool_a=self.training, probe=probe)
        logits, head_in = self.head(x_d)
        if self.training:
            return logits, pool_a, head_in
        return logits
