"""MC3-18 (family: 3D CNN): torchvision's `mc3_18` (Tran et al., "A Closer Look at Spatiotemporal Convolutions for
Action Recognition", CVPR 2018, arXiv 1711.11248): a ResNet-18 whose first residual stage uses 3x3x3 convs and whose
stages 2-4 use 1x3x3 convs ("mixed convolutions"), so time is never down-sampled after the 3x7x7 stem.

It is one of the DFEW paper's 3D-CNN baselines. Official code: jiangxingxun/DFEW @
7c1ba78f6fb13b59333b3e831d46d83ab812b10f (no licence file: read for facts only, nothing copied), which builds
`torchvision.models.video.resnet.mc3_18(pretrained=False)` and replaces `fc` by Linear(512, 7). Its README releases
per-fold mc3_18 weights (DFEW, plain extracted frames: WAR 57.02 / UAR 46.50). No MC3-18 row exists in the
literature tables (literature=()).

Size at 16x112², 7 classes: 11.49 M params / 43.40 GMACs (fvcore), measured from torchvision's model (baselines.md
§11 [meas], /work/notes/cnn3d/NOTES.md). DFER tables list no cost for it. The network is torchvision's own class
(`VideoResNet`, BasicBlock, Conv3DSimple + 3 x Conv3DNoTemporal, BasicStem); the state_dict keys are torchvision's.

Recipe (this file defines the DFEW-code recipe that c3d.py and i3d.py share; see `dfew_code_recipe`):
- protocol `dfew_code` (default) = the DFEW repo's trainer: Adam lr 1e-3, default betas, no weight decay (= AdamW
  with weight_decay 0), lr constant (an ExponentialLR(0.9) is built but `scheduler.step()` is never called), plain CE
  (no label smoothing), `train_data_augment: False` in every config (train = test transform: resize, no crop, no
  flip), inputs in [0, 1] without mean/std (`model_pretrain: False`), the test fold evaluated every epoch and a
  checkpoint saved every epoch (best picked on test: `best_on_test`). mc3_18's only launch line is
  DataParallel/run.sh: `--batch_size 128 --num_epoch 200` (the DDP config's batch 32 is per process, x4 GPUs is the
  same 128); train DataLoader without drop_last.
- protocol `bench3d` = the harness's shared 3D-CNN recipe `DFEW_3DCNN_RECIPE` of methods/r3d18.py (imported), which
  r3d18 / r3d18_tv / r2plus1d18 train with, for rows comparable with those. It is NOT the DFEW code's recipe: it
  uses AdamW wd 1e-4 + cosine with 2 warm-up epochs, 50 epochs, RandomResizedCrop (0.8-1) + flip, label smoothing
  0.1, mean/std 0.45/0.225, batch 32, last-epoch selection.
Differences from the DFEW code (protocol dfew_code):
- Frames: official train = 16 distinct indices drawn uniformly at random without replacement and sorted; test =
  `linspace(0, N-1, 16)` cast to int; clips under 16 frames are tiled (repeated) first. Here: the segment sampler
  (one random frame in each of 16 equal segments for training, the segment centres for testing); short clips are
  stretched evenly. The paper's tables used TIM-interpolated 16-frame clips (MATLAB), which the harness has not.
- Resize: official `transforms.Resize(112)` (short side) with no crop; here short side + centre crop (identical for
  DFEW's square face crops).
- Selection metric: the official checkpoints carry UAR and WAR; which one the authors picked is not stated; the
  harness default (UAR) is kept.
- Init: `dfew_init=True` re-initialises the fc weight with kaiming_normal(fan_in, relu), as the DFEW code does for
  every nn.Linear / nn.Conv2d (Conv3d and BN3d keep torchvision's init); `dfew_init=False` keeps torchvision's.
- Seed: official `int(time.time())`; here the run's seed.
In training mode the model returns {"logits", "features"} (features = the 512-d global pool, the fc input), so a
shared loss term such as `ec_stfl` can be added with `--set model.loss.terms.ec_stfl.weight=10`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torchvision.models.video.resnet import BasicBlock, BasicStem, Conv3DNoTemporal, Conv3DSimple, VideoResNet

from bench.api import InputSpec, Paper, Recipe, WeightsSource, register_method
from bench.methods.r3d18 import DFEW_3DCNN_RECIPE
from bench.spec import SECTIONS, deep_merge

PAPER = Paper(authors="Tran et al.", title="A Closer Look at Spatiotemporal Convolutions for Action Recognition",
              venue="CVPR", year=2018, arxiv="1711.11248", code="torchvision.models.video.mc3_18")
DFEW_CODE = "github.com/jiangxingxun/DFEW"

# ----------------------------------------------------------------------------------------------------------
# the DFEW baselines' recipe (jiangxingxun/DFEW main.py + config/*.yaml + libs/Performer.py), shared by the 3D CNNs


def dfew_code_defaults(epochs: int, batch_size: int) -> dict:
    """The DFEW repo's trainer as RunSpec overrides (see the module docstring)."""
    return {
        # train_data_augment False: the test transform in training too (no crop: scale/ratio [1, 1], no flip)
        "data": {"sampler": "segment", "segment_len": 1, "flip": False, "rrc_scale": [1.0, 1.0],
                 "rrc_ratio": [1.0, 1.0], "color_jitter": [0.0, 0.0, 0.0, 0.0], "mean": None, "std": None,
                 "test_views": 1, "test_crops": 1},
        # optim.Adam(params, lr=1e-3): no weight decay (AdamW with wd 0 is the same update); the scheduler is never
        # stepped, so the lr stays 1e-3
        "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.999], "eps": 1e-8,
                  "schedule": "constant", "warmup_epochs": 0.0},
        "reg": {"label_smoothing": 0.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0},
        # DataLoader without drop_last; a checkpoint per epoch evaluated on the test fold (best picked on test)
        "train": {"epochs": epochs, "batch_size": batch_size, "drop_last": False, "selection": "best_on_test"},
    }


def _harness_defaults_like(layers: dict) -> dict:
    """The harness's own default for every key `layers` sets (so a protocol can undo them exactly)."""
    out: dict = {}
    for section, keys in layers.items():
        cfg = SECTIONS[section]()
        out[section] = {k: copy.deepcopy(getattr(cfg, k)) for k in keys}
    return out


def dfew_code_recipe(epochs: int, batch_size: int, synthetic: dict, bench3d_synthetic: dict | None = None) -> Recipe:
    """Recipe with protocol `dfew_code` (default: the DFEW code) and `bench3d` (DFEW_3DCNN_RECIPE of r3d18.py).

    `synthetic` is the CPU-sized override of the dfew_code protocol; `bench3d_synthetic` (default: the shared
    recipe's synthetic entry updated with `synthetic`'s frames/size/epochs) that of bench3d."""
    defaults = dfew_code_defaults(epochs, batch_size)
    # bench3d: undo every dfew_code key (back to the harness defaults r3d18 resolves from), then DFEW_3DCNN_RECIPE
    bench3d = deep_merge(_harness_defaults_like(defaults), DFEW_3DCNN_RECIPE.defaults)
    if bench3d_synthetic is None:
        shape = {"data": {k: v for k, v in synthetic.get("data", {}).items() if k in ("frames", "size")},
                 "train": {k: v for k, v in synthetic.get("train", {}).items() if k == "epochs"}}
        bench3d_synthetic = deep_merge(DFEW_3DCNN_RECIPE.datasets["synthetic"], shape)
    return Recipe(defaults=defaults, datasets={"synthetic": synthetic},
                  protocols={"dfew_code": {}, "bench3d": {**bench3d, "datasets": {"synthetic": bench3d_synthetic}}},
                  default_protocol="dfew_code")


def dfew_linear_init(model: nn.Module) -> nn.Module:
    """DFEW Performer.load_model (model_init True): kaiming_normal_(fan_in, relu) on every nn.Linear / nn.Conv2d
    weight and 1/0 on BatchNorm2d; 3D convs and BN3d are left alone (biases untouched)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        if isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return model


# ----------------------------------------------------------------------------------------------------------
# model


class VideoResNetFeatures(VideoResNet):
    """torchvision VideoResNet (same modules and key names) whose training-mode output also carries the pooled
    clip feature: {"logits", "features"}; eval mode returns the logits. `dropout` > 0 adds a Dropout before fc
    (no parameters, so the key names do not change)."""

    def __init__(self, conv_makers: list, num_classes: int, dropout: float = 0.0):
        super().__init__(block=BasicBlock, conv_makers=conv_makers, layers=[2, 2, 2, 2], stem=BasicStem,
                         num_classes=num_classes)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        features = self.avgpool(x).flatten(1)
        logits = self.fc(self.drop(features))
        if self.training:
            return {"logits": logits, "features": features}
        return logits


def mc3_18_net(num_classes: int, dropout: float = 0.0) -> VideoResNetFeatures:
    """torchvision mc3_18: Conv3DSimple in layer1, Conv3DNoTemporal in layers 2-4."""
    return VideoResNetFeatures([Conv3DSimple] + [Conv3DNoTemporal] * 3, num_classes, dropout)


# ----------------------------------------------------------------------------------------------------------
# weights


def convert_dfew(sd: dict, model: nn.Module, notes: dict) -> dict:
    """A DFEW-repo checkpoint ({'seed','epo','model_state_dict','optimizer_state_dict'}, 'module.'-prefixed: the
    core unwraps both) already has torchvision's names (its fc is Linear(512, 7)); nothing to rename."""
    notes["format"] = "DFEW repo checkpoint (torchvision key names)"
    return sd


WEIGHTS = {
    "kinetics400": WeightsSource("torchvision MC3_18 Kinetics-400 state_dict (MC3_18_Weights.KINETICS400_V1; same key "
                                 "names; the 400-way fc is reported as mismatched and left at its init). Trained on "
                                 "Kinetics with mean [0.43216, 0.394666, 0.37645] / std [0.22803, 0.22145, 0.216989]",
                                 "mc3_18-a90a0ba3.pth"),
    "dfew": WeightsSource("a DFEW-repo mc3_18 checkpoint (README release or its trainer: "
                          "mc3_18_fold{k}_epo{NNN}_UAR.._WAR...pth, 'model_state_dict', 'module.' prefix; 7 classes; "
                          "trained on [0,1] inputs without normalisation)", "mc3_18_fold1_epo*.pth", convert_dfew),
}

# CPU-sized deviation (<= 10 min on 2 cores for ~420 clips): 8 frames at 48² (4.0 GMACs per clip; a training step
# measured 1.46x the Hara r3d18's synthetic step, so ~7 min for 7 epochs), batch 16, last-epoch selection (no
# per-epoch test pass). The rest is the DFEW-code recipe (Adam 1e-3 constant, no augmentation).
SYNTHETIC = {"data": {"frames": 8, "size": 48}, "train": {"epochs": 7, "batch_size": 16, "selection": "last"}}

RECIPE = dfew_code_recipe(epochs=200, batch_size=128, synthetic=SYNTHETIC)


@register_method("mc3_18", family="3D CNN", input=InputSpec(16, 112), paper=PAPER, recipe=RECIPE, weights=WEIGHTS,
                 literature=(),
                 test_views_note="DFEW code: 16 uniformly drawn frames (train) / linspace (test), 1 view, epoch "
                                 "picked on test")
def mc3_18(num_classes: int, frames: int, size: int, dropout: float = 0.0, dfew_init: bool = True) -> nn.Module:
    """torchvision MC3-18: 3D convs in stage 1, 2D (1x3x3) convs in stages 2-4 (DFEW baseline)."""
    model = mc3_18_net(num_classes, dropout)
    if dfew_init:
        dfew_linear_init(model)
    return model


def resolved_differences(method: str, dataset: str, protocol: str, other: str, other_protocol: str | None = None
                         ) -> dict[str, Any]:
    """Keys where two methods' resolved specs differ (data/optim/reg/train): used by the tests and handy to check
    that `bench3d` resolves to the same recipe as r3d18."""
    from bench.spec import resolve_spec

    a = resolve_spec(method, dataset, protocol=protocol).to_dict()
    b = resolve_spec(other, dataset, protocol=other_protocol).to_dict()
    out = {}
    for section in ("data", "optim", "reg", "train"):
        for k, v in a[section].items():
            if b[section].get(k) != v:
                out[f"{section}.{k}"] = (v, b[section].get(k))
    return out
