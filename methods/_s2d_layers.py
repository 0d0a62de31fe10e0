"""Network modules of S2D (`methods/s2d.py` holds the registration, recipe, loss and converters).

Module and parameter names follow MSA-LMC/S2D @ e1b5e5d (`model_finetuning.py`, `landmark/mobilefacenet.py`) so
checkpoints map one to one; the code is written here on timm pieces (PatchEmbed, Block, Attention, trunc_normal_).
Shapes are derived from (frames, size): token grid g = size / 16, landmark input size / 2, conv_4 map g x g.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import Attention, PatchEmbed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ----------------------------------------------------------------------------------------------------------
# frozen MobileFaceNet landmark network (cunjian/pytorch_face_landmark, as vendored in S2D/landmark/)


class ConvBlock(nn.Module):
    """Conv (no bias) + BN + per-channel PReLU (upstream `Conv_block`)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))


class LinearBlock(nn.Module):
    """Conv (no bias) + BN, no activation (upstream `Linear_block`)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class DepthWise(nn.Module):
    """1x1 expand to `groups` channels -> 3x3 depthwise (stride) -> 1x1 linear projection (+ identity)."""

    def __init__(self, cin: int, cout: int, groups: int, stride: int = 2, residual: bool = False):
        super().__init__()
        self.conv = ConvBlock(cin, groups)
        self.conv_dw = ConvBlock(groups, groups, 3, stride, 1, groups=groups)
        self.project = LinearBlock(groups, cout)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        return x + out if self.residual else out


class Residual(nn.Module):
    def __init__(self, channels: int, blocks: int, groups: int):
        super().__init__()
        self.model = nn.Sequential(*[DepthWise(channels, channels, groups, stride=1, residual=True)
                                     for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GDC(nn.Module):
    """Global depthwise 7x7 conv (no padding) -> flatten -> Linear(512, 136, no bias) -> BN1d."""

    def __init__(self, embedding: int):
        super().__init__()
        self.conv_6_dw = LinearBlock(512, 512, 7, 1, 0, groups=512)
        self.linear = nn.Linear(512, embedding, bias=False)
        self.bn = nn.BatchNorm1d(embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(self.conv_6_dw(x).flatten(1)))


class MobileFaceNet(nn.Module):
    """MobileFaceNet([112, 112], 136), output GDC: 68 landmarks. forward -> (landmarks or None, conv_4 map).

    `run_head`: also run conv_45 ... GDC (whose output S2D discards) as the official code does; it only applies
    to the 112² input the GDC's 7x7 kernel is built for (S2D turns it off at any other size)."""

    def __init__(self, embedding: int = 136, run_head: bool = True):
        super().__init__()
        self.run_head = run_head
        self.conv1 = ConvBlock(3, 64, 3, 2, 1)
        self.conv2_dw = ConvBlock(64, 64, 3, 1, 1, groups=64)
        self.conv_23 = DepthWise(64, 64, groups=128)
        self.conv_3 = Residual(64, 4, groups=128)
        self.conv_34 = DepthWise(64, 128, groups=256)
        self.conv_4 = Residual(128, 6, groups=256)
        self.conv_45 = DepthWise(128, 128, groups=512)
        self.conv_5 = Residual(128, 2, groups=256)
        self.conv_6_sep = ConvBlock(128, 512)
        self.output_layer = GDC(embedding)
        for m in self.modules():  # upstream _initialize_weights (only matters without the landmark file)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        feat = self.conv_4(self.conv_34(self.conv_3(self.conv_23(self.conv2_dw(self.conv1(x))))))
        if not self.run_head:
            return None, feat
        out = self.conv_6_sep(self.conv_5(self.conv_45(feat)))
        return self.output_layer(out), feat


def parameters_to_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of `module` into a buffer of the same name (same state_dict keys, same forward).

    The landmark net is a separate frozen model in the official code (not part of S2D's parameters, state_dict
    or optimiser): as buffers its weights travel with the model (device moves, checkpoints) while
    `model.parameters()` - and so the parameter count and the optimiser - cover exactly the official S2D."""
    for m in module.modules():
        for name, p in list(m.named_parameters(recurse=False)):
            delattr(m, name)
            m.register_buffer(name, p.detach().clone())
    return module


# ----------------------------------------------------------------------------------------------------------
# S2D: Multi-View Complementary Prompters + Temporal-Modeling Adapters on a frozen ViT-B/16


def tokens_to_map(tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """(N, g*g, D) -> (N, D, g, g) (official `token2feature`)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], grid, grid)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(N, D, g, g) -> (N, g*g, D) (official `feature2token`)."""
    return x.flatten(2).transpose(1, 2)


class Fovea(nn.Module):
    """Per channel: softmax over the positions of (s * u), times u; s is a learnable scalar (init 10)."""

    def __init__(self):
        super().__init__()
        self.smooth = nn.Parameter(torch.full((1,), 10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        u = x.reshape(n, c, h * w)
        return (torch.softmax(u * self.smooth, dim=-1) * u).reshape(n, c, h, w)


class Adapter(nn.Module):
    """D_fc1 (768 -> 192) -> GELU -> [timm Attention(192, 8 heads, no qkv bias)] -> D_fc2 (192 -> 768), no skip."""

    def __init__(self, dim: int, ratio: float, attention: bool):
        super().__init__()
        hidden = int(dim * ratio)
        self.D_fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.attn = Attention(hidden, num_heads=8, qkv_bias=False) if attention else nn.Identity()
        self.D_fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.D_fc2(self.attn(self.act(self.D_fc1(x))))


class TMAdapter(nn.Module):
    """Temporal adapter (attention over the T frames at each spatial position) -> LayerNorm (eps 1e-5, the
    nn.LayerNorm default the official code uses here) -> spatial adapter (no attention)."""

    def __init__(self, dim: int, frames: int, ratio: float):
        super().__init__()
        self.frames = frames
        self.T_Adapter = Adapter(dim, ratio, attention=True)
        self.norm = nn.LayerNorm(dim)
        self.S_Adapter = Adapter(dim, ratio, attention=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, n, d = x.shape
        t = self.frames
        xt = x.reshape(nt // t, t, n, d).transpose(1, 2).reshape(-1, t, d)  # (b t) n d -> (b n) t d
        xt = self.T_Adapter(xt)
        x = xt.reshape(nt // t, n, t, d).transpose(1, 2).reshape(nt, n, d)  # back to (b t) n d
        return self.S_Adapter(self.norm(x))


class PromptBlock(nn.Module):
    """One MCP ("Multi-View Complementary Prompter") + TMA. Inputs: the (LayerNorm-ed) RGB token map and the
    landmark map, each (N, 768, g, g); the official code concatenates them on channels and splits them again.
    Returns (MCP prompt map (N, 768, g, g), TMA output tokens (N, g*g, 768))."""

    def __init__(self, dim: int, hidden: int, frames: int, ratio: float):
        super().__init__()
        self.conv0_0 = nn.Conv2d(dim, hidden, 1)
        self.conv0_1 = nn.Conv2d(dim, hidden, 1)
        self.conv1x1 = nn.Conv2d(hidden, dim, 1)
        self.fovea = Fovea()
        self.TMA = TMAdapter(dim, frames, ratio)
        for p in self.parameters():  # official: xavier on every >1-D parameter (Linears are re-drawn later)
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, rgb: torch.Tensor, lmk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tma = self.TMA(map_to_tokens(rgb))
        prompt = self.conv1x1(self.fovea(self.conv0_0(rgb)) + self.conv0_1(lmk))
        return prompt, tma


class PromptPatchEmbed(nn.Module):
    """1x1 conv from the landmark map (128 channels) to 768-d tokens (official `Prompt_PatchEmbed`)."""

    def __init__(self, in_chans: int, dim: int, grid: int):
        super().__init__()
        self.grid = grid
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.grid, self.grid):
            raise ValueError(f"landmark map {tuple(x.shape[-2:])} does not match the token grid {self.grid}")
        return map_to_tokens(self.proj(x))


class I3DHead(nn.Module):
    """Mean over time -> Dropout (omitted at p=0) -> Linear. Returns (logits, pooled feature after dropout)."""

    def __init__(self, dim: int, num_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.fc_cls = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # x: (B, T, D)
        x = x.mean(dim=1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.fc_cls(x), x


class S2D(nn.Module):
    """S2D: frozen ViT-B/16 per frame, a prompter + TMA before every block, temporal embedding, ln_post, I3D head;
    the frozen MobileFaceNet (`landmark`, weights as buffers) turns the same frames into the 128-channel
    landmark map. forward(x (B,3,T,H,W)) -> logits (eval) or {"logits", "features"} (train)."""

    def __init__(self, num_classes: int, frames: int, size: int, *, dim: int = 768, depth: int = 12, heads: int = 12,
                 patch: int = 16, prompt_hidden: int = 8, adapter_ratio: float = 0.25, head_dropout: float = 0.5,
                 adapter_init: str = "faithful", landmark_input: str = "imagenet_rgb", landmark_head: bool = True,
                 landmark_channels: int = 128):
        super().__init__()
        if size % patch or size < 2 * patch:
            raise ValueError(f"S2D needs a size that is a multiple of {patch} and at least {2 * patch}, got {size}")
        if adapter_init not in ("faithful", "zero"):
            raise ValueError(f"adapter_init must be 'faithful' or 'zero', not {adapter_init!r}")
        if landmark_input not in ("imagenet_rgb", "bgr01"):
            raise ValueError(f"landmark_input must be 'imagenet_rgb' or 'bgr01', not {landmark_input!r}")
        self.frames, self.size, self.grid = frames, size, size // patch
        self.landmark_size = size // 2  # official: 224 -> 112 (MobileFaceNet's input); conv_4 is then g x g
        self.landmark_input = landmark_input
        norm = partial(nn.LayerNorm, eps=1e-6)

        self.patch_embed = PatchEmbed(img_size=size, patch_size=patch, in_chans=3, embed_dim=dim)
        self.patch_embed_prompt = PromptPatchEmbed(landmark_channels, dim, self.grid)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid ** 2 + 1, dim))
        # official name `temporal_embedding`; "pos" in the name keeps it out of weight decay in bench.optim, as the
        # official no_weight_decay() list does (the converters rename it)
        self.temporal_pos_embed = nn.Parameter(torch.zeros(1, frames, dim))
        self.prompt_blocks = nn.Sequential(*[PromptBlock(dim, prompt_hidden, frames, adapter_ratio)
                                             for _ in range(depth)])
        self.prompt_norms = nn.Sequential(*[norm(dim) for _ in range(depth)])  # [depth-1] is never used
        self.blocks = nn.Sequential(*[Block(dim, heads, 4.0, qkv_bias=True, norm_layer=norm, act_layer=nn.GELU)
                                      for _ in range(depth)])
        self.ln_post = norm(dim)
        self.head = I3DHead(dim, num_classes, head_dropout)

        self.apply(self._init_linear_and_norm)  # official VisionTransformer init, over the prompt blocks too
        trunc_normal_(self.cls_token, std=0.02)
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.temporal_pos_embed, std=0.02)
        if adapter_init == "zero":  # what Adapter.__init__ intends; the official code overwrites it (std .02)
            for m in self.modules():
                if isinstance(m, Adapter):
                    nn.init.zeros_(m.D_fc2.weight)

        self.landmark = parameters_to_buffers(MobileFaceNet(136, run_head=landmark_head and self.landmark_size == 112))
        self.register_buffer("input_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        # frozen as in the official code (trainable iff the name contains prompt/Adapter/ln_post/head/temporal_...)
        for name, p in self.named_parameters():
            p.requires_grad_(name.startswith(("patch_embed_prompt.", "prompt_blocks.", "prompt_norms.",
                                               "temporal_pos_embed", "ln_post.", "head.")))
        self.landmark_source: dict | None = None  # set by the builder when landmark weights are loaded

    @staticmethod
    def _init_linear_and_norm(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> S2D:
        super().train(mode)
        self.landmark.eval()  # official: model2.eval() for the whole run (BN running statistics)
        return self

    @torch.no_grad()
    def landmark_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) model input -> conv_4 map (N, 128, g, g). Official: the ImageNet-normalised RGB tensor is
        resized to 112² (bilinear, align_corners=True) and fed as is; `bgr01` feeds what MobileFaceNet was
        trained on instead (un-normalised to [0, 1], channels flipped to BGR)."""
        x = frames
        if self.landmark_input == "bgr01":
            x = (x * self.input_std.to(x.dtype) + self.input_mean.to(x.dtype)).flip(1)
        if tuple(x.shape[-2:]) != (self.landmark_size, self.landmark_size):
            x = F.interpolate(x, size=(self.landmark_size, self.landmark_size), mode="bilinear", align_corners=True)
        return self.landmark(x)[1]

    def forward_features(self, x: torch.Tensor, lmk: torch.Tensor) -> torch.Tensor:
        """Per-frame tokens: x (N, 3, H, W), lmk (N, 128, g, g) -> class token after ln_post (N, 768)."""
        x = self.patch_embed(x)
        a = self.patch_embed_prompt(lmk)
        norm0 = self.prompt_norms[0]
        g = self.grid
        prompt, tma = self.prompt_blocks[0](tokens_to_map(norm0(x), g), tokens_to_map(norm0(a), g))
        prompt = map_to_tokens(prompt)
        a = prompt  # after the first prompter the "landmark" stream is the previous prompt
        x = x + tma + prompt
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        nt, n, d = x.shape
        x = (x.view(nt // self.frames, self.frames, n, d) + self.temporal_pos_embed.unsqueeze(2)).view(nt, n, d)
        for i, block in enumerate(self.blocks):
            if i >= 1:
                u = self.prompt_norms[i - 1](x)
                prompt, tma = self.prompt_blocks[i](tokens_to_map(u[:, 1:], g), tokens_to_map(norm0(a), g))
                prompt = map_to_tokens(prompt)
                a = prompt
                x = torch.cat([x[:, :1], x[:, 1:] + tma + prompt], dim=1)
            x = block(x)
        return self.ln_post(x)[:, 0]

    def forward(self, x: torch.Tensor, streams: dict | None = None):
        b, c, t, h, w = x.shape
        if t != self.frames:
            raise ValueError(f"S2D was built for {self.frames} frames, got {t}")
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        lmk = self.landmark_features(frames)
        feats = self.forward_features(frames, lmk)
        logits, pooled = self.head(feats.view(b, t, -1))
        if self.training:
            return {"logits": logits, "features": pooled}
        return logits
