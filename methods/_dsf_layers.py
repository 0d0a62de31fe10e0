"""The trunk shared by IAL (GCA+IAL) and NR-DFERNet (methods/ial.py, methods/nr_dfernet.py), written from the
facts of the two official repositories (muse1998/IAL-for-Facial-Expression-Recognition @39a24b6 and
muse1998/AI-DFERNet @1e0c8bb; the two codes are the same family and were read side by side).

Per frame: a two-conv 3x3 stem (3->64 s2, BN, ReLU, 64->64) + BN + ReLU + max-pool, then three ResNet stages of
one torchvision `BasicBlock` each (64 s1, 128 s2, 256 s2). IAL replaces the residual branch of stages 2-3 by a
`GCABlock` (a depth-wise "global" conv over the whole map -> SE gate 2*sigmoid, r=16 -> smoothed over the clip's
frames as sqrt(w * mean_t(w) + 1e-5), plus an auxiliary classifier on the frame-mean of the global-conv output).

Dynamic-static fusion (`DSFBackbone`): with f the stage-3 maps of the T frames,
* dynamic: f[t+1] - f[t] (t < T-1) through 3 BasicBlocks at 256 ch (the first strided, 1x1 s2 downsample);
* static: f[t] (t < T-1, the last frame is dropped) through a 3x3 s2 conv + BN + ReLU, the g x g positions as
  tokens (token = h*g + w) + a position table, a 2-layer pre-norm transformer (dim 256, 4 heads x 32, MLP 256);
* the sum, flattened channel-major (index c*g*g + h*g + w) to T-1 tokens of 256*g*g (4096 at 112², g = 4).

The official code hard-codes 16 frames and 112² (views `b//16`, `view(-1, 3, 112, 112)`, `view(-1, c, 7, 7)`,
16 position rows, GCA kernels 256//planes*7 = the map size at 112²); here every such number is derived from the
builder's `frames` and `size` (`grid_sizes`), and equals the official one at 16 x 112².

`Transformer` is the vit-pytorch style block the official code uses: pre-norm, qkv without bias, inner dim
heads*dim_head (which need not equal dim, so timm's `Attention` does not fit), scale dim_head**-0.5, output
projection with bias, MLP with the tanh GELU (timm `Mlp`), no final norm, no drop-path, every dropout 0. The
official `Residual` calls each sub-layer twice (the second call only feeds a discarded attention "map"); here
each sub-layer runs once (identical outputs and gradients).

Init as the official ResNet loop: kaiming_normal_(fan_out, relu) for every Conv2d, BN weight 1 / bias 0,
PyTorch defaults for Linear and LayerNorm, N(0, 1) for every position table (`init_like_official`).
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import Mlp
from torch import nn
from torchvision.models.resnet import BasicBlock


def conv_out(n: int, kernel: int = 3, stride: int = 2, padding: int = 1) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def grid_sizes(size: int) -> dict[str, int]:
    """Map sizes of a size x size input: {'stem', 'stage1', 'stage2', 'stage3', 'dsf'} (112: 56, 28, 14, 7, 4)."""
    stem = conv_out(size)
    stage1 = conv_out(stem)  # max-pool k3 s2 p1
    stage2 = conv_out(stage1)
    stage3 = conv_out(stage2)
    return {"stem": stem, "stage1": stage1, "stage2": stage2, "stage3": stage3, "dsf": conv_out(stage3)}


def frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W), frame-major within each clip (the official (B, T, C, H, W) view)."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


# ----------------------------------------------------------------------------------------------------------
# transformer (vit-pytorch style)


class Attention(nn.Module):
    """Multi-head self-attention with inner dim heads*dim_head; attention as plain matmuls (counted by fvcore)."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.scale = dim_head ** -0.5
        inner = heads * dim_head
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, n, self.heads * self.dim_head)
        return self.proj(out)


class Block(nn.Module):
    """x + Attn(LN(x)), then x + MLP(LN(x)) (tanh GELU)."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_dim, act_layer=partial(nn.GELU, approximate="tanh"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, dim_head, mlp_dim) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


# official vit-pytorch names of one Transformer -> ours (used by the converters of both methods)
TRANSFORMER_RENAMES = (
    ("layers.{i}.0.fn.norm.", "blocks.{i}.norm1."),
    ("layers.{i}.0.fn.fn.to_qkv.", "blocks.{i}.attn.qkv."),
    ("layers.{i}.0.fn.fn.to_out.0.", "blocks.{i}.attn.proj."),
    ("layers.{i}.1.fn.norm.", "blocks.{i}.norm2."),
    ("layers.{i}.1.fn.fn.net.0.", "blocks.{i}.mlp.fc1."),
    ("layers.{i}.1.fn.fn.net.3.", "blocks.{i}.mlp.fc2."),
)


# ----------------------------------------------------------------------------------------------------------
# ResNet part


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


def basic_block(cin: int, cout: int, stride: int = 1) -> BasicBlock:
    """torchvision's BasicBlock (3x3 -> BN -> ReLU -> 3x3 -> BN, + identity / 1x1+BN downsample, ReLU)."""
    return BasicBlock(cin, cout, stride, _downsample(cin, cout, stride))


class GCA(nn.Module):
    """Global convolution-attention gate of IAL (one per GCA block).

    `global_conv`: depth-wise conv whose kernel is the whole map (map x map, no padding, no bias) -> (N, C, 1, 1).
    Gate w = 2 * sigmoid(fc2(relu(fc1(g)))) (1x1 convs C -> C/r -> C, no bias), smoothed over the clip's frames:
    w' = sqrt(w * mean_t(w) + 1e-5). `aux_head`: Linear(C, 2C) -> Linear(2C, K), no bias, no activation, on the
    frame-mean of the global-conv output (so its loss reaches the global conv and the trunk).
    """

    def __init__(self, channels: int, map_size: int, frames: int, num_classes: int, reduction: int = 16,
                 eps: float = 1e-5):
        super().__init__()
        self.frames, self.eps = frames, eps
        self.global_conv = nn.Conv2d(channels, channels, map_size, groups=channels, bias=False)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)
        self.aux_head = nn.Sequential(nn.Linear(channels, 2 * channels, bias=False),
                                      nn.Linear(2 * channels, num_classes, bias=False))

    def forward(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        n, c = out.shape[:2]
        g = self.global_conv(out)  # (B*T, C, 1, 1)
        per_clip = g.view(n // self.frames, self.frames, c)
        aux = self.aux_head(per_clip.mean(1)) if self.training else None
        w = 2.0 * torch.sigmoid(self.fc2(torch.relu(self.fc1(g))))
        w = w.view(n // self.frames, self.frames, c, 1, 1)
        w = torch.sqrt(w * w.mean(1, keepdim=True) + self.eps).view(n, c, 1, 1)
        return out * w, aux


class GCABlock(BasicBlock):
    """BasicBlock whose residual branch is rescaled by the GCA gate before the identity is added."""

    def __init__(self, cin: int, cout: int, stride: int, map_size: int, frames: int, num_classes: int):
        super().__init__(cin, cout, stride, _downsample(cin, cout, stride))
        self.gca = GCA(cout, map_size, frames, num_classes)
        self.aux: torch.Tensor | None = None  # training mode: the aux logits of the last forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out, self.aux = self.gca(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


class Stem(nn.Module):
    """conv1 = [3x3 s2 3->64, BN, ReLU, 3x3 64->64], then bn1, ReLU, max-pool 3 s2 (official names)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, 1, 1, bias=False))
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class DSFBackbone(nn.Module):
    """Stem + stages 1-3 (GCA in stages 2-3 when `gca`) + dynamic-static fusion -> (B, T-1, 256*g*g) tokens."""

    def __init__(self, frames: int, size: int, num_classes: int, gca: bool = False, dynamic_blocks: int = 3,
                 static_depth: int = 2, heads: int = 4, dim_head: int = 32, static_mlp: int = 256):
        super().__init__()
        if frames < 2:
            raise ValueError(f"the dynamic-static fusion needs at least 2 frames, got {frames}")
        self.frames, self.size = frames, size
        grids = grid_sizes(size)
        self.grid = grids["dsf"]
        self.dim = 256 * self.grid * self.grid
        self.stem = Stem()
        self.layer1 = nn.Sequential(basic_block(64, 64))
        if gca:
            self.layer2 = nn.Sequential(GCABlock(64, 128, 2, grids["stage2"], frames, num_classes))
            self.layer3 = nn.Sequential(GCABlock(128, 256, 2, grids["stage3"], frames, num_classes))
        else:
            self.layer2 = nn.Sequential(basic_block(64, 128, 2))
            self.layer3 = nn.Sequential(basic_block(128, 256, 2))
        self.dynamic = nn.Sequential(*[basic_block(256, 256, 2 if i == 0 else 1) for i in range(dynamic_blocks)])
        self.static_embed = nn.Sequential(nn.Conv2d(256, 256, 3, 2, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU())
        self.static_pos = nn.Parameter(torch.randn(1, self.grid * self.grid, 256))
        self.static_transformer = Transformer(256, static_depth, heads, dim_head, static_mlp)

    def _take_aux(self) -> list[torch.Tensor]:
        """The GCA auxiliary logits (stage 2, stage 3) of this forward, cleared from the blocks (training mode
        only; [] in eval mode or without GCA)."""
        out = []
        for layer in (self.layer2, self.layer3):
            for blk in layer:
                if isinstance(blk, GCABlock):
                    if blk.aux is not None:
                        out.append(blk.aux)
                    blk.aux = None
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, C, T, H, W) -> fused tokens (B, T-1, 256*g*g) and the GCA aux logits (training mode)."""
        b, _, t, h, w = x.shape
        if t != self.frames or h != self.size or w != self.size:
            raise ValueError(f"built for {self.frames} frames at {self.size}², got {t} frames at {h}x{w}")
        f = self.layer3(self.layer2(self.layer1(self.stem(frames_to_batch(x)))))
        c, s = f.shape[1], f.shape[-1]
        f = f.view(b, t, c, s, s)
        diff = (f[:, 1:] - f[:, :-1]).reshape(b * (t - 1), c, s, s)
        static = self.static_embed(f[:, :-1].reshape(b * (t - 1), c, s, s))
        g = static.shape[-1]
        tokens = static.flatten(2).transpose(1, 2) + self.static_pos
        static = self.static_transformer(tokens).transpose(1, 2).reshape(b * (t - 1), c, g, g)
        fused = static + self.dynamic(diff)
        return fused.reshape(b, t - 1, c * g * g), self._take_aux()


def init_like_official(model: nn.Module) -> None:
    """kaiming_normal_(fan_out, relu) for every Conv2d; BN weight 1 / bias 0 (the official ResNet loop)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------------------------------------
# official checkpoints


class Unused(nn.Module):
    """Parameters the official model defines but never uses, kept under `unused.` so the official parameter count
    and state_dict round-trip exactly (official 's_former.a.b.c' -> 'unused.a__b__c', tensors and modules)."""

    SEP = "__"

    def __init__(self, modules: dict[str, nn.Module] | None = None, params: dict[str, nn.Parameter] | None = None):
        super().__init__()
        for name, module in (modules or {}).items():
            self.add_module(name.replace(".", self.SEP), module)
        for name, param in (params or {}).items():
            self.register_parameter(name.replace(".", self.SEP), param)


def unused_name(official: str) -> str:
    """'s_former.layer1.0.glb' -> 'layer1__0__glb': the name of a never-used official tensor/module in `Unused`."""
    return official.removeprefix("s_former.").replace(".", Unused.SEP)


def rename_official(sd: dict[str, torch.Tensor], renames: list[tuple[str, str]],
                    unused_prefixes: tuple[str, ...], keep_unused: bool, notes: dict) -> dict[str, torch.Tensor]:
    """Official key names -> ours: the first matching (old prefix, new prefix) of `renames`; a key under one of
    `unused_prefixes` (official names of never-used tensors/modules) goes to `unused.` or, when the model has
    no `unused` part, is dropped and listed in notes['dropped']. Keys matching nothing are returned unchanged
    (the load then reports them as unexpected)."""
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    by_length = sorted(unused_prefixes, key=len, reverse=True)
    for key, value in sd.items():
        dead = next((p for p in by_length if key == p or key.startswith(p + ".")), None)
        if dead is not None:
            if keep_unused:
                out["unused." + unused_name(dead) + key[len(dead):]] = value
            else:
                dropped.append(key)
            continue
        for old, new in renames:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    if dropped:
        notes["dropped"] = sorted(dropped)
    return out


def official_names(sd: dict[str, torch.Tensor], renames: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """The inverse of `rename_official`: port names -> official names ('unused.a__b.c' -> 's_former.a.b.c')."""
    inverse = sorted(((new, old) for old, new in renames), key=lambda p: len(p[0]), reverse=True)
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.startswith("unused."):
            head, _, rest = key[len("unused."):].partition(".")
            key = "s_former." + head.replace(Unused.SEP, ".") + ("." + rest if rest else "")
        else:
            for new, old in inverse:
                if key.startswith(new):
                    key = old + key[len(new):]
                    break
        out[key] = value
    return out


def transformer_renames(old: str, new: str, depth: int = 2) -> list[tuple[str, str]]:
    return [(old + a.format(i=i), new + b.format(i=i)) for i in range(depth) for a, b in TRANSFORMER_RENAMES]


def fit_position_table(sd: dict[str, torch.Tensor], key: str, model: nn.Module, notes: dict) -> None:
    """A (1, 16, D) official temporal table into a model built for T < 16 frames: the first T rows (what the
    official `pos[:, :n]` slicing uses); noted in notes['sliced']."""
    own = model.state_dict().get(key)
    value = sd.get(key)
    if own is None or value is None or value.shape == own.shape:
        return
    if value.ndim == 3 and value.shape[2] == own.shape[2] and value.shape[1] > own.shape[1]:
        sd[key] = value[:, : own.shape[1]].contiguous()
        notes.setdefault("sliced", []).append(f"{key}: {tuple(value.shape)} -> {tuple(own.shape)}")


__all__ = ["Attention", "Block", "DSFBackbone", "GCA", "GCABlock", "Stem", "Transformer", "Unused", "basic_block",
           "conv_out", "fit_position_table", "frames_to_batch", "grid_sizes", "init_like_official", "official_names",
           "rename_official", "transformer_renames", "unused_name"]
