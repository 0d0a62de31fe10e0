"""Former-DFER (Zhao & Liu, "Former-DFER: Dynamic Facial Expression Recognition Transformer", ACM MM 2021);
official code github.com/zengqunzhao/Former-DFER @ 1b5ad6f (models unchanged since the first commit 6c28494,
which also holds the training logs). MIT licence. Written here from the facts of that code, not copied.

Model (`GenerateModel` = S-Former -> T-Former -> fc):
* S-Former: ResNet-18 (torchvision BasicBlocks [2,2,2,2], 7x7 stem + max-pool) per frame, with ONE pre-norm
  transformer layer after layer3: the (256, 7, 7) map -> 49 tokens + a learnable position table (no CLS), dim
  256, 8 heads x 32, MLP 512; back to the map -> layer4 -> global average pool -> 512-d per frame.
* T-Former: CLS + learnable position table over the 16 frame features, 3 pre-norm layers (dim 512, 8 heads x 64,
  MLP 1024), CLS -> Linear(512, 7). No final LayerNorm anywhere, no dropout / drop-path (all 0).
* Layer: x + Attn(LN(x)); x + MLP(LN(x)). qkv Linear without bias, output projection with bias, scale
  head_dim^-0.5; MLP with the tanh-approximate GELU (the code writes the tanh formula by hand). Built here from
  timm `Block`s (same maths and parameter layout; the converter renames lucidrains-style keys).
* Init: ResNet convs kaiming_normal(fan_out, relu), BN 1/0 (torchvision's rule, identical); Linear/LayerNorm
  PyTorch defaults; both position tables and the CLS token `torch.randn` (std 1, not truncated).
* Input: 16 frames = 8 segments x 2 consecutive frames (TSN offsets: random per segment in training, centre at
  test), 112², pixels in [0, 1] with NO mean/std normalisation.

Sizes at 16x112² measured from the official code (notes former_logo §1.5): 18,031,943 params (all trainable) /
8.319 GMACs fvcore (conv 7.758, linear 0.518, attention einsum 0.021, BN 0.020, LN 0.002); this port gives the
same. Tables cite 18 M / 9.11 G: the 9.11 G is UNEXPLAINED. thop, fvcore and ptflops all give 8.30-8.32 G on the
released model, elementwise ops add ~0.02 G, and no structural variant tried (S-Former depth 2/3, wider heads,
T-Former depth 4/6) gives 9.11 G at 18 M; the repo has no FLOPs code. We report 8.32 G measured, 9.11 G [tab].

Recipe (main_DFEW.py / main_FERV39K.py, identical): SGD lr 0.01, momentum 0.9, wd 1e-4 on EVERY parameter
(BN/LN/position tables included: `decay_norm_bias`), StepLR(40, x0.1) stepped per epoch, 100 epochs, batch 32
(drop_last), plain CE, no warm-up/AMP/clipping/EMA/mixup/label smoothing. Train aug: Inception random-sized crop
(area 0.08-1, aspect 3/4-4/3) to 112 + horizontal flip; test: one clip, squashed to 112x112. Selection: the official
code evaluates the test split every epoch and reports the best test WAR (the paper's DFEW WAR 65.70 is exactly
the mean of the five per-fold best-epoch test accuracies), so `selection=best_on_test`, metric WAR (flagged in
the tables). MAFW has no official code (its numbers come from the MAFW paper): the DFEW recipe is used.

Weights: the released DFEW fold models (Google Drive, not inspected) are presumably the training checkpoints
{'epoch', 'state_dict' (DataParallel: 'module.' prefix), 'best_acc' (CUDA tensor), 'optimizer', 'recorder'}.
They load as released, nothing to re-save (`--init official:FILE`, `bench eval --source official`): the core
reads files with torch.load(weights_only=True) (bench/weights.py `_load_weights_only`, argparse.Namespace
allow-listed) and rebuilds every other class the unpickler refuses - the pickled `__main__.RecorderMeter` and the
numpy arrays it holds (`numpy.core.multiarray._reconstruct` or `numpy._core...`, `numpy.ndarray`, `numpy.dtype`)
- as an inert record (none of its code runs), named in the load report's notes['opaque_objects'].
The converter maps the official names (tests/data/former_dfer_keys.json) to ours; nothing is dropped.

Frame indices: the official loader (`dataloader/dataset_DFEW.py` and `dataloader/dataset_FERV39K.py` @ 1b5ad6f, the
same code, VideoDataset(num_segments=8, duration=2); n = the frame count of the annotation list) is the harness's
`tsn` sampler with `pad=zero`, index for index (bench/data/sampling.py; tests/test_sampling.py checks it against the
formulas for n = 1..200): training d = (n-1)//8, s_k = k*d + U{0..d-1} (one draw per segment; the last (n-1) % 8
frames are never sampled; n = 9..16 gives the fixed 0,1,1,2,...,7,8), n <= 8 every s_k = 0 (0,1 eight times);
test n >= 10 s_k = int(tick/2 + tick*k), tick = (n-1)/8, n <= 9 0,1 eight times; each start s reads s and s+1
(s+1 only while s < n-1). The draws come from the run's seeded generator (official: numpy's global one). The
official lists name full-length face frames (`DFEW_Face/00001 144 1`), so the DFEW entry reads the full-length
variant (`data.options.variant=clip_224x224`) instead of the 16-frame time-interpolated default.

Differences from the official code (harness conventions, not model changes):
* Crop aspect ratio. Official `GroupRandomSizedCrop` (`dataloader/video_transform.py`): area U(0.08, 1) x frame
  area, aspect ratio uniform in [3/4, 4/3], w = round(sqrt(area*r)), h = round(sqrt(area/r)), then w and h
  swapped with probability 1/2; up to 10 tries. Here (bench/data/transforms.py `_rrc_params`, torchvision's
  rule): aspect ratio log-uniform in [3/4, 4/3], no swap. Fallback after 10 failed tries: official
  `GroupScale(112)` (short side) + random 112 crop, here the whole frame (its own aspect ratio being in range)
  resized: the same on square frames.
* Frame order: the official list indexes a clip's files in string order (`glob` + `sort()`), the harness in
  frame-number order (the same when names are zero-padded, as in DFEW's full-length release).
* test resize: the core resizes the short side then centre-crops (the official code squashes to 112x112);
  identical on the square face crops of DFEW / FERV39k (224x224; both resample 224 -> 112 bilinear, PIL vs
  torchvision antialiased).
* the paper-era DFEW loader dropped clips with < 16 frames (11 train / 3 test clips of fold 1 only); the harness
  keeps every clip of the official split, as the current official loader does.
* frames / size other than 16 / 112 are allowed (the official code hard-codes them): the S-Former token grid
  and both position tables are derived from the input.
"""

from __future__ import annotations

import re
from functools import partial

import torch
import torch.nn as nn
from timm.models.vision_transformer import Block
from torchvision.models.resnet import resnet18

from bench.api import InputSpec, Paper, Recipe, WeightsSource, register_method

PAPER = Paper(authors="Zhao & Liu", title="Former-DFER: Dynamic Facial Expression Recognition Transformer",
              venue="ACM MM", year=2021, code="github.com/zengqunzhao/Former-DFER")

GELU_TANH = partial(nn.GELU, approximate="tanh")


def stage3_grid(size: int) -> int:
    """Side of ResNet-18's layer3 map for a size x size input (7 at 112)."""
    s = (size + 2 * 3 - 7) // 2 + 1  # conv1 7x7 s2 p3
    s = (s + 2 - 3) // 2 + 1  # max-pool 3 s2 p1
    for _ in range(2):  # layer2, layer3: 3x3 s2 p1
        s = (s + 2 - 3) // 2 + 1
    return s


class Transformer(nn.Module):
    """`depth` pre-norm layers (timm Block: LN -> MHSA, LN -> MLP) without a final norm; nn.LayerNorm (eps 1e-5,
    the official one; timm's default LayerNorm has eps 1e-6)."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, gelu_tanh: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio=mlp_dim / dim, qkv_bias=False, proj_bias=True, norm_layer=nn.LayerNorm,
                  act_layer=GELU_TANH if gelu_tanh else nn.GELU) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x


class SFormer(nn.Module):
    """ResNet-18 with one transformer layer on the layer3 tokens; (N, 3, H, W) -> (N, 512)."""

    def __init__(self, size: int, depth: int, gelu_tanh: bool):
        super().__init__()
        r = resnet18(weights=None)  # kaiming_normal(fan_out, relu) convs, BN 1/0: the official init loop
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        self.pos_embedding = nn.Parameter(torch.randn(1, stage3_grid(size) ** 2, 256))
        self.transformer = Transformer(256, depth, heads=8, mlp_dim=512, gelu_tanh=gelu_tanh)
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        n, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2) + self.pos_embedding  # (N, h*w, 256), row-major
        x = self.transformer(tokens).transpose(1, 2).reshape(n, c, h, w)
        return torch.flatten(self.avgpool(self.layer4(x)), 1)


class TFormer(nn.Module):
    """CLS + position table over the per-frame features, `depth` layers, CLS output; (B, T, 512) -> (B, 512)."""

    def __init__(self, frames: int, depth: int, gelu_tanh: bool):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, 512))
        self.pos_embedding = nn.Parameter(torch.randn(1, frames + 1, 512))
        self.transformer = Transformer(512, depth, heads=8, mlp_dim=1024, gelu_tanh=gelu_tanh)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        return self.transformer(x)[:, 0]


class FormerDFER(nn.Module):
    def __init__(self, num_classes: int, frames: int, size: int, s_depth: int = 1, t_depth: int = 3,
                 gelu_tanh: bool = True):
        super().__init__()
        self.s_former = SFormer(size, s_depth, gelu_tanh)
        self.t_former = TFormer(frames, t_depth, gelu_tanh)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape  # harness layout (B, C, T, H, W); the official model takes (B, T, C, H, W)
        feats = self.s_former(x.transpose(1, 2).reshape(b * t, c, h, w)).view(b, t, 512)
        return self.fc(self.t_former(feats))


# ----------------------------------------------------------------------------------------------------------
# weights: official names -> ours

_LAYER = re.compile(r"^(s_former|t_former)\.spatial_transformer\.layers\.(\d+)\.([01])\.fn\.(.+)$")
_SUB = {("0", "norm."): "norm1.", ("0", "fn.to_qkv."): "attn.qkv.", ("0", "fn.to_out.0."): "attn.proj.",
        ("1", "norm."): "norm2.", ("1", "fn.net.0."): "mlp.fc1.", ("1", "fn.net.3."): "mlp.fc2."}


def official_to_port(name: str) -> str:
    """One official key -> ours (ResNet, position tables, CLS and fc keep their names)."""
    m = _LAYER.match(name)
    if not m:
        return name
    part, idx, sub, rest = m.groups()
    for (s, old), new in _SUB.items():
        if s == sub and rest.startswith(old):
            return f"{part}.transformer.blocks.{idx}.{new}{rest[len(old):]}"
    raise KeyError(f"unknown official transformer key {name!r}")


def convert_official(sd: dict, model: nn.Module, notes: dict) -> dict:
    """A Former-DFER state_dict (GenerateModel names; 'module.' already stripped by the core) -> ours."""
    return {official_to_port(k): v for k, v in sd.items()}


WEIGHTS = {"official": WeightsSource(
    "Former-DFER training checkpoint ({'epoch','state_dict','best_acc','optimizer','recorder'}, 'module.' "
    "prefix) or a bare GenerateModel state_dict", "former_dfer_dfew_fd1.pth", convert_official)}

# ----------------------------------------------------------------------------------------------------------
# recipe

_DATA = {"frames": 16, "size": 112, "sampler": "tsn", "segment_len": 2, "pad": "zero",
         "rrc_scale": [0.08, 1.0], "rrc_ratio": [3 / 4, 4 / 3], "flip": True, "color_jitter": [0.0, 0.0, 0.0, 0.0],
         "interpolation": "bilinear", "clamp": True, "mean": None, "std": None,
         "test_temporal": "uniform", "test_views": 1, "test_crops": 1}

RECIPE = Recipe(
    defaults={
        "data": _DATA,
        "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
                  "decay_norm_bias": True, "schedule": "step", "step_epochs": 40, "gamma": 0.1,
                  "per_iteration": False, "warmup_epochs": 0},
        "reg": {"label_smoothing": 0.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0},
        "train": {"epochs": 100, "batch_size": 32, "drop_last": True, "grad_clip": 0.0, "precision": "fp32",
                  "selection": "best_on_test", "selection_metric": "war"},
    },
    datasets={
        "dfew": {"data": {"options": {"variant": "clip_224x224"}}},  # main_DFEW.py; full-length frames
        "ferv39k": {},  # main_FERV39K.py: identical recipe (its loader never filtered short clips)
        "mafw": {},  # no official MAFW code: the DFEW recipe
        # CPU-sized deviation (~10 min on 2 cores): 4 segments x 2 frames at 48², 8 epochs of 420 clips at batch
        # 16, StepLR every 3 epochs, milder crops (area 0.3-1), last epoch kept (not best-on-test). Measured with
        # step 4 / 10 epochs (24 CPU-min): UAR 0.27 after 4 epochs, 0.33 after 8, 0.35 after 10 (fold 1).
        "synthetic": {"data": {"frames": 8, "size": 48, "rrc_scale": [0.3, 1.0]},
                      "optim": {"step_epochs": 3},
                      "train": {"epochs": 8, "batch_size": 16, "selection": "last"}},
    },
)


@register_method("former_dfer", family="CNN+Transformer", input=InputSpec(16, 112), paper=PAPER, recipe=RECIPE,
                 weights=WEIGHTS, literature=("Former-DFER",), uses_attention=True,
                 test_views_note="official: 1 clip (8 segment centres x 2 frames); epoch chosen on test WAR")
def former_dfer(num_classes: int, frames: int, size: int, s_depth: int = 1, t_depth: int = 3,
                gelu_tanh: bool = True) -> nn.Module:
    """Former-DFER: ResNet-18 + 1 spatial transformer layer (S-Former) -> 3-layer temporal transformer."""
    return FormerDFER(num_classes, frames, size, s_depth, t_depth, gelu_tanh)
