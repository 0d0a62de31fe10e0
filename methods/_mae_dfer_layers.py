"""Network code of MAE-DFER (see methods/mae_dfer.py for the paper, the official code, sizes and deviations).

Module and parameter names follow the official code (sunlicai/MAE-DFER @ 80b651d) so that its checkpoints load
with renaming only (`encoder.` stripped): `patch_embed.proj`, `blocks.i.{first,second,third}_attn*`, `norm2`,
`mlp.fc1/fc2`, `lg_region_tokens`, `fc_norm`, `head`; the joint-attention ViT uses VideoMAE's
`blocks.i.{norm1,attn.{qkv,q_bias,v_bias,proj},norm2,mlp}`; the pre-trainer `encoder.*`, `decoder.*`,
`encoder_to_decoder`, `mask_token`. The sinusoid position tables are non-persistent buffers (the official code
keeps them as plain tensor attributes): never in a state_dict, never learned.

Attention is written with plain matmul + softmax (no SDPA), so fvcore and FlopCounterMode both count it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

TUBELET = (2, 16, 16)  # (t, h, w) pixels per token
WIDTH, DEPTH, HEADS, MLP_RATIO = 512, 16, 8, 4.0
NORM_EPS = 1e-6
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=NORM_EPS)


def sinusoid_table(n_position: int, dim: int) -> torch.Tensor:
    """(1, n, dim) fixed 1-D sin/cos table over the flat token index: angle = pos / 10000^(2*(j//2)/dim), sin on
    even j, cos on odd j (computed in float64, as the official numpy code, then float32)."""
    pos = torch.arange(n_position, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.empty_like(angle)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.float()[None]


def token_grid(frames: int, size: int) -> tuple[int, int, int]:
    """(T', H', W') tokens of a frames x size x size clip under the 2x16x16 tubelet."""
    t, p = TUBELET[0], TUBELET[1]
    if frames % t or size % p or frames < t or size < p:
        raise ValueError(f"MAE-DFER needs frames divisible by {t} and size divisible by {p} (tubelet 2x16x16), "
                         f"got {frames} frames at {size}px")
    return frames // t, size // p, size // p


def resolve_region_size(grid: Sequence[int], region_size: Sequence[int] | None) -> tuple[int, int, int]:
    """Region size (t, h, w) in tokens. None: the official layout at any input, 2 token-frames x half the height
    x the full width ((2, 5, 10) at 16x160²). It must divide the token grid."""
    if region_size is None:
        if grid[0] % 2 or grid[1] % 2:
            raise ValueError(f"token grid {tuple(grid)}: the default region (2, H/2, W) needs an even T' and H'; "
                             "set model.kwargs.region_size=[t,h,w] dividing it")
        region_size = (2, grid[1] // 2, grid[2])
    region = tuple(int(r) for r in region_size)
    if len(region) != 3 or any(r < 1 or g % r for g, r in zip(grid, region, strict=False)):
        raise ValueError(f"region_size {region_size} must be 3 positive sizes dividing the token grid {tuple(grid)}")
    return region  # type: ignore[return-value]


class PatchEmbed(nn.Module):
    """Conv3d tubelet embedding 3 -> dim, kernel = stride = (2, 16, 16); tokens flattened in (t, h, w) order."""

    def __init__(self, dim: int = WIDTH):
        super().__init__()
        self.proj = nn.Conv3d(3, dim, kernel_size=TUBELET, stride=TUBELET)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class GeneralAttention(nn.Module):
    """Multi-head attention of queries x over `context` (default x): q = Linear(no bias) + q_bias, kv one Linear
    (no bias) with bias [0 (k), v_bias], scale head_dim^-0.5, softmax, proj (bias). Official `GeneralAttention`."""

    def __init__(self, dim: int = WIDTH, num_heads: int = HEADS):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        ctx = x if context is None else context
        kv_bias = torch.cat((torch.zeros_like(self.v_bias), self.v_bias))
        q = F.linear(x, self.q.weight, self.q_bias).reshape(b, n, self.num_heads, -1).transpose(1, 2)
        kv = F.linear(ctx, self.kv.weight, kv_bias).reshape(b, ctx.shape[1], 2, self.num_heads, -1)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Attention(nn.Module):
    """VideoMAE joint self-attention: one qkv Linear (no bias) with bias [q_bias, 0, v_bias], plain matmul."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """VideoMAE pre-norm block: x + DP(attn(norm1 x)), x + DP(mlp(norm2 x)); no layer scale."""

    def __init__(self, dim: int, num_heads: int, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = _norm(dim)
        self.attn = Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = _norm(dim)
        self.mlp = Mlp(dim, int(dim * MLP_RATIO))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


DROP_PATH_UNITS = ("official", "clip")


class LGBlock(nn.Module):
    """LGI-Former block on (B*R, 1+S, C), index 0 of each row = that region's token:

    1. local self-attention inside each region (incl. its region token),
    2. global self-attention among the R region tokens of a clip,
    3. cross-attention of every patch token of the clip (queries) to the updated region tokens (keys/values),
    4. MLP on all tokens. Pre-norm everywhere, one DropPath module for the four residual branches.

    drop_path_unit: 'official' drops a whole *region* in branches 1 and 4 (they act on (B*R, ...)) and a whole
    clip in 2 and 3, as the official code does; 'clip' drops whole clips in all four branches.
    """

    def __init__(self, dim: int = WIDTH, num_heads: int = HEADS, drop_path: float = 0.0,
                 drop_path_unit: str = "official"):
        super().__init__()
        if drop_path_unit not in DROP_PATH_UNITS:
            raise ValueError(f"drop_path_unit must be one of {DROP_PATH_UNITS}, not {drop_path_unit!r}")
        self.drop_path_unit = drop_path_unit
        self.first_attn_norm0 = _norm(dim)
        self.first_attn = GeneralAttention(dim, num_heads)
        self.second_attn_norm0 = _norm(dim)
        self.second_attn = GeneralAttention(dim, num_heads)
        self.third_attn_norm0 = _norm(dim)
        self.third_attn_norm1 = _norm(dim)
        self.third_attn = GeneralAttention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = _norm(dim)
        self.mlp = Mlp(dim, int(dim * MLP_RATIO))

    def _dp_local(self, y: torch.Tensor, b: int) -> torch.Tensor:
        if self.drop_path_unit == "official" or isinstance(self.drop_path, nn.Identity):
            return self.drop_path(y)
        return self.drop_path(y.reshape(b, -1, y.shape[-1])).reshape(y.shape)  # rows of one clip are contiguous

    def forward(self, x: torch.Tensor, b: int) -> torch.Tensor:
        bn, s, c = x.shape
        n = bn // b
        x = x + self._dp_local(self.first_attn(self.first_attn_norm0(x)), b)
        regions = x[:, 0].reshape(b, n, c)
        regions = regions + self.drop_path(self.second_attn(self.second_attn_norm0(regions)))
        local = x[:, 1:].reshape(b, n * (s - 1), c)
        local = local + self.drop_path(self.third_attn(self.third_attn_norm0(local),
                                                       context=self.third_attn_norm1(regions)))
        x = torch.cat((regions.reshape(bn, 1, c), local.reshape(bn, s - 1, c)), dim=1)
        return x + self._dp_local(self.mlp(self.norm2(x)), b)


def region_ids(grid: Sequence[int], region: Sequence[int]) -> torch.Tensor:
    """(N,) region index of every flat (t, h, w) token: (it * nh + ih) * nw + iw."""
    (gt, gh, gw), (rt, rh, rw) = grid, region
    nh, nw = gh // rh, gw // rw
    t = torch.arange(gt)[:, None, None] // rt
    h = torch.arange(gh)[None, :, None] // rh
    w = torch.arange(gw)[None, None, :] // rw
    return ((t * nh + h) * nw + w).flatten()


def region_partition(x: torch.Tensor, grid: Sequence[int], region: Sequence[int]) -> torch.Tensor:
    """(B, N, C) flat (t, h, w) tokens -> (B*R, S, C): regions in (it, ih, iw) order, tokens in (t, h, w) order."""
    b, _, c = x.shape
    (gt, gh, gw), (rt, rh, rw) = grid, region
    x = x.reshape(b, gt // rt, rt, gh // rh, rh, gw // rw, rw, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(-1, rt * rh * rw, c)


class _Trunk(nn.Module):
    """Patch embedding + fixed sinusoid position table + 16 blocks (LGI-Former or joint attention)."""

    def __init__(self, frames: int, size: int, attn_type: str, region_size: Sequence[int] | None,
                 drop_path: float, drop_path_unit: str):
        super().__init__()
        if attn_type not in ("local_global", "joint"):
            raise ValueError(f"attn_type must be 'local_global' or 'joint', not {attn_type!r}")
        self.attn_type = attn_type
        self.grid = token_grid(frames, size)
        self.num_tokens = math.prod(self.grid)
        self.patch_embed = PatchEmbed(WIDTH)
        self.register_buffer("pos_embed", sinusoid_table(self.num_tokens, WIDTH), persistent=False)
        dpr = [float(v) for v in torch.linspace(0, drop_path, DEPTH)]
        if attn_type == "local_global":
            self.region_size = resolve_region_size(self.grid, region_size)
            self.num_regions = math.prod(g // r for g, r in zip(self.grid, self.region_size, strict=True))
            self.blocks = nn.ModuleList(LGBlock(WIDTH, HEADS, dpr[i], drop_path_unit) for i in range(DEPTH))
            self.lg_region_tokens = nn.Parameter(torch.zeros(self.num_regions, WIDTH))
        else:
            self.region_size = None
            self.num_regions = 0
            self.blocks = nn.ModuleList(Block(WIDTH, HEADS, dpr[i]) for i in range(DEPTH))

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def layer_id(self, name: str) -> int:
        """Official `get_layer_id_for_vit`: patch embedding 0, blocks.i -> i+1, everything else (region tokens,
        fc_norm, head) num_layers+1; with optim.layer_decay the lr scale is decay^(num_layers+1-id)."""
        if name.startswith(("patch_embed", "pos_embed", "cls_token", "mask_token")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_layers + 1

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x) + self.pos_embed.to(x.dtype)

    def run_lg(self, x: torch.Tensor, b: int) -> torch.Tensor:
        """(B*R, S, C) partitioned tokens -> (B*R, 1+S, C) after all blocks (index 0: region token)."""
        tokens = self.lg_region_tokens.to(x.dtype)[None, :, None, :].expand(b, -1, -1, -1).reshape(-1, 1, WIDTH)
        x = torch.cat((tokens, x), dim=1)
        for blk in self.blocks:
            x = blk(x, b)
        return x


def _init_classifier(model: nn.Module, init_scale: float) -> None:
    """Official fine-tune init: every Linear trunc_normal(std .02) with zero bias, LayerNorm 1/0, region tokens
    trunc_normal(std .02) (timm bounds +-2, i.e. practically untruncated), Conv3d PyTorch default; head x init_scale."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if getattr(model, "lg_region_tokens", None) is not None:
        nn.init.trunc_normal_(model.lg_region_tokens, std=0.02)
    with torch.no_grad():
        model.head.weight.mul_(init_scale)
        model.head.bias.mul_(init_scale)


class VideoTransformer(_Trunk):
    """The fine-tuning model: LGI-Former (attn_type 'local_global') or the vanilla joint-attention ViT.

    classify_token (LGI-Former only): 'region' (released: mean of the R region tokens), 'org' (mean of the patch
    tokens) or 'all' (both); the joint ViT averages its patch tokens. Then fc_norm (LayerNorm) and the head.
    Returns logits (B, K) in train and eval mode.
    """

    def __init__(self, num_classes: int, frames: int = 16, size: int = 160, attn_type: str = "local_global",
                 region_size: Sequence[int] | None = None, drop_path: float = 0.1, drop_path_unit: str = "official",
                 classify_token: str = "region", init_scale: float = 0.001):
        super().__init__(frames, size, attn_type, region_size, drop_path, drop_path_unit)
        if classify_token not in ("region", "org", "all"):
            raise ValueError(f"classify_token must be 'region', 'org' or 'all', not {classify_token!r}")
        self.classify_token = classify_token
        self.fc_norm = _norm(WIDTH)
        self.head = nn.Linear(WIDTH, num_classes)
        _init_classifier(self, init_scale)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = self.embed(x)
        if self.attn_type == "joint":
            for blk in self.blocks:
                x = blk(x)
            return self.fc_norm(x.mean(1))
        x = self.run_lg(region_partition(x, self.grid, self.region_size), b)
        x = x.reshape(b, self.num_regions, -1, WIDTH)
        if self.classify_token == "region":
            pooled = x[:, :, 0].mean(1)
        elif self.classify_token == "org":
            pooled = x[:, :, 1:].mean((1, 2))
        else:
            pooled = x.mean((1, 2))
        return self.fc_norm(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


# ----------------------------------------------------------------------------------------------------------
# pre-training (masked autoencoder with pixel + frame-difference targets)


def part_window_mask(batch: int, grid: Sequence[int], window: Sequence[int], ratio: float,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Official `part_window` (TubeWindowMaskingGenerator) masks, one per clip: each token frame is cut into
    windows of `window` = (h, w) tokens; in every window exactly int(ratio * h*w) tokens are masked at random
    positions (the rest visible); the same 2-D mask is used at every token frame (tube). Draws come from torch's
    global RNG (of `device`). Returns bool (B, N), True = masked, flat (t, h, w) order."""
    gt, gh, gw = grid
    wh, ww = window
    if gh % wh or gw % ww:
        raise ValueError(f"mask window {tuple(window)} must divide the token frame {(gh, gw)}")
    per_win = wh * ww
    n_vis = per_win - int(ratio * per_win)
    if n_vis < 1:
        raise ValueError(f"mask ratio {ratio} leaves no visible token in a {wh}x{ww} window")
    nh, nw = gh // wh, gw // ww
    rank = torch.rand(batch, nh, nw, per_win, device=device).argsort(-1).argsort(-1)
    masked = (rank >= n_vis).reshape(batch, nh, nw, wh, ww).permute(0, 1, 3, 2, 4).reshape(batch, 1, gh * gw)
    return masked.expand(batch, gt, gh * gw).reshape(batch, gt * gh * gw)


def tube_mask(batch: int, grid: Sequence[int], ratio: float, device: torch.device | str | None = None) -> torch.Tensor:
    """Official `tube` masks (TubeMaskingGenerator): int(ratio * H'W') random positions per frame, tiled over T'."""
    gt, gh, gw = grid
    n_vis = gh * gw - int(ratio * gh * gw)
    rank = torch.rand(batch, gh * gw, device=device).argsort(-1).argsort(-1)
    return (rank >= n_vis)[:, None, :].expand(batch, gt, gh * gw).reshape(batch, -1)


def tubelet_targets(clips: torch.Tensor, mean: Sequence[float], std: Sequence[float], normalize: bool = True,
                    frame_diff: bool = True) -> torch.Tensor:
    """Pre-training targets (B, N, 2*16*16*3) in the decoder's (p0, p1, p2, c) layout, c fastest.

    Unnormalise the clip to [0,1]; cut into 2x16x16 tubelets; per tubelet and channel (v - mean) / (sqrt(unbiased
    var) + 1e-6) over its 512 pixels; then (frame_diff) the second frame of every tubelet is replaced by its
    difference from the first (the official frame-difference target, group size 2 = the tubelet depth, taken
    after the normalisation)."""
    b, c, t, h, w = clips.shape
    pt, ph, pw = TUBELET
    m = torch.as_tensor(mean, dtype=clips.dtype, device=clips.device).view(1, 3, 1, 1, 1)
    s = torch.as_tensor(std, dtype=clips.dtype, device=clips.device).view(1, 3, 1, 1, 1)
    v = clips * s + m
    v = v.reshape(b, c, t // pt, pt, h // ph, ph, w // pw, pw).permute(0, 2, 4, 6, 3, 5, 7, 1)
    v = v.reshape(b, -1, pt * ph * pw, c)  # (B, N, 512 pixels in (p0, p1, p2) order, C)
    if normalize:
        v = (v - v.mean(dim=-2, keepdim=True)) / (v.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    v = v.reshape(b, v.shape[1], pt, ph * pw, c)
    if frame_diff:
        v = torch.cat((v[:, :, :1], v[:, :, 1:] - v[:, :, :1]), dim=2)
    return v.reshape(b, v.shape[1], -1)


class PretrainEncoder(_Trunk):
    """The trunk on the visible tokens + a final LayerNorm (`encoder.norm`, dropped at fine-tuning)."""

    def __init__(self, frames: int, size: int, attn_type: str, region_size: Sequence[int] | None, drop_path: float):
        super().__init__(frames, size, attn_type, region_size, drop_path, "official")
        self.norm = _norm(WIDTH)
        if attn_type == "local_global":
            self.register_buffer("token_region", region_ids(self.grid, self.region_size), persistent=False)

    def forward(self, x: torch.Tensor, vis_idx: torch.Tensor, region_order_out: bool) -> torch.Tensor:
        """x (B,3,T,H,W); vis_idx (B, Nv) visible flat indices in increasing order. Returns (B, Nv, C) encoded
        visible tokens: in original order, or (region_order_out, the official LG output) in region order."""
        b = x.shape[0]
        x = self.embed(x)
        x = torch.gather(x, 1, vis_idx[..., None].expand(-1, -1, WIDTH))
        if self.attn_type == "joint":
            for blk in self.blocks:
                x = blk(x)
            return self.norm(x)
        # group the visible tokens by region (stable: original order inside a region): every region holds the
        # same number of visible tokens under part_window masking with window = region (h, w)
        reg = self.token_region[vis_idx]
        per_region = torch.zeros(b, self.num_regions, dtype=torch.long, device=reg.device)
        per_region.scatter_add_(1, reg, torch.ones_like(reg))
        if bool((per_region != per_region[:1, :1]).any()):
            raise ValueError("every region must hold the same number of visible tokens (use part_window masking "
                             "with the window equal to the region's (h, w))")
        order = torch.argsort(reg * self.num_tokens + vis_idx, dim=1)  # region-major, then original index
        xr = torch.gather(x, 1, order[..., None].expand(-1, -1, WIDTH))
        xr = self.run_lg(xr.reshape(b * self.num_regions, -1, WIDTH), b)[:, 1:].reshape(b, -1, WIDTH)
        if not region_order_out:
            xr = torch.empty_like(xr).scatter_(1, order[..., None].expand(-1, -1, WIDTH), xr)
        return self.norm(xr)


class PretrainDecoder(nn.Module):
    """4 VideoMAE blocks (width 384, 6 heads, MLP 1536), then LayerNorm + Linear 384 -> 1536 on the last tokens."""

    def __init__(self, dim: int = 384, depth: int = 4, num_heads: int = 6, out_dim: int = 1536):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, num_heads) for _ in range(depth))
        self.norm = _norm(dim)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, return_token_num: int) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x[:, -return_token_num:]))


class MAEPretrainer(nn.Module):
    """MAE-DFER pre-training: part-window tube masking, LGI-Former encoder on the visible tokens, a 384-wide
    decoder, and MSE on the masked tokens' per-tubelet-normalised pixel + frame-difference targets.

    forward(clips, mask=None) -> {"loss", "parts": {"pixel", "motion"}, "pred", "target", "mask"}: the mask is
    drawn from torch's global RNG when not given. `pixel` is the MSE of the first frame of each masked tubelet
    (appearance), `motion` of the second (its difference from the first); loss = 0.5 * (pixel + motion) = the
    official single MSE, or (1-w) * pixel + w * motion with target_diff_weight = w.
    """

    def __init__(self, frames: int = 16, size: int = 160, attn_type: str = "local_global",
                 region_size: Sequence[int] | None = None, mask_type: str = "part_window", mask_ratio: float = 0.9,
                 decoder_depth: int = 4, drop_path: float = 0.0, normalize_target: bool = True,
                 frame_diff_target: bool = True, target_diff_weight: float | None = None,
                 decoder_visible_order: str = "official", mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        if mask_type not in ("part_window", "tube"):
            raise ValueError(f"mask_type must be 'part_window' or 'tube', not {mask_type!r}")
        if mask_type == "tube" and attn_type == "local_global":
            raise ValueError("the LGI-Former encoder needs part_window masking (equal visible tokens per region)")
        if decoder_visible_order not in ("official", "original"):
            raise ValueError(f"decoder_visible_order must be 'official' or 'original', not {decoder_visible_order!r}")
        self.encoder = PretrainEncoder(frames, size, attn_type, region_size, drop_path)
        self.decoder = PretrainDecoder(384, decoder_depth, 6, 3 * math.prod(TUBELET))
        self.encoder_to_decoder = nn.Linear(WIDTH, 384, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 384))
        self.register_buffer("decoder_pos", sinusoid_table(self.encoder.num_tokens, 384), persistent=False)
        self.mask_type, self.mask_ratio = mask_type, float(mask_ratio)
        self.window = (self.encoder.region_size[1:] if attn_type == "local_global"
                       else resolve_region_size(self.encoder.grid, region_size)[1:])
        self.normalize_target, self.frame_diff_target = normalize_target, frame_diff_target
        self.target_diff_weight = target_diff_weight
        self.decoder_visible_order = decoder_visible_order
        self.mean, self.std = tuple(mean), tuple(std)
        self._init_official()

    def _init_official(self) -> None:
        """Encoder/decoder Linear xavier_uniform + zero bias, LayerNorm 1/0; region tokens and mask token
        trunc_normal(std .02) truncated at +-std; encoder_to_decoder and the Conv3d keep PyTorch's default."""
        for module in (self.encoder, self.decoder):
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.LayerNorm):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
        if self.encoder.attn_type == "local_global":
            nn.init.trunc_normal_(self.encoder.lg_region_tokens, std=0.02, a=-0.02, b=0.02)
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)

    def draw_mask(self, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
        if self.mask_type == "tube":
            return tube_mask(batch, self.encoder.grid, self.mask_ratio, device)
        return part_window_mask(batch, self.encoder.grid, self.window, self.mask_ratio, device)

    def predict(self, clips: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N_masked, 1536) decoder output for the masked tokens (in original index order)."""
        b = clips.shape[0]
        order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)  # visible first, then masked; index order
        n_vis = int((~mask[0]).sum())
        vis_idx, mask_idx = order[:, :n_vis], order[:, n_vis:]
        region_order = self.decoder_visible_order == "official" and self.encoder.attn_type == "local_global"
        x_vis = self.encoder_to_decoder(self.encoder(clips, vis_idx, region_order))
        pos = self.decoder_pos.to(x_vis.dtype).expand(b, -1, -1)
        pos_vis = torch.gather(pos, 1, vis_idx[..., None].expand(-1, -1, pos.shape[-1]))
        pos_mask = torch.gather(pos, 1, mask_idx[..., None].expand(-1, -1, pos.shape[-1]))
        x = torch.cat((x_vis + pos_vis, self.mask_token.to(x_vis.dtype) + pos_mask), dim=1)
        return self.decoder(x, mask_idx.shape[1])

    def targets(self, clips: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t = tubelet_targets(clips.float(), self.mean, self.std, self.normalize_target, self.frame_diff_target)
            order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)[:, int((~mask[0]).sum()):]
            return torch.gather(t, 1, order[..., None].expand(-1, -1, t.shape[-1]))

    def forward(self, clips: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        if mask is None:
            mask = self.draw_mask(clips.shape[0], clips.device)
        mask = mask.to(device=clips.device, dtype=torch.bool)
        pred = self.predict(clips, mask)
        target = self.targets(clips, mask)
        err = (pred.float() - target).pow(2).reshape(*pred.shape[:2], TUBELET[0], -1)
        pixel, motion = err[:, :, 0].mean(), err[:, :, 1].mean()
        w = self.target_diff_weight
        loss = 0.5 * (pixel + motion) if w is None else (1.0 - w) * pixel + w * motion
        return {"loss": loss, "parts": {"pixel": float(pixel.detach()), "motion": float(motion.detach())},
                "pred": pred, "target": target, "mask": mask}
