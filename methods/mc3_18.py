"""MC3-18 (family: 3D CNN): torchvision's `mc3_18` (Tran et al., "A Closer Look at Spatiotemporal Convolutions for
Action Recognition", CVPR 2018, arXiv 1711.11248): a ResNet-18 whose first residual stage uses 3x3x3 convs and whose
stages 2-4 use 1x3x3 convs ("mixed convolutions"), so time is never down-sampled after the 3x7x7 stem.

It is one of the DFEW paper's 3D-CNN baselines. Official code: jiangxingxun/DFEW @
7c1ba78f6fb13b59333b3e831d46d83ab812b10f (no licence file: read for facts only, nothing copied), which builds
`torchvision.models.video.resnet.mc3_18(pretrained=False)` and replaces `fc` by Linear(512, 7). Its README releases
per-fold mc3_18 weights (DFEW, plain extracted frames: WAR 57.02 / UAR 46.50; row "MC3-18 (DFEW repo)" of
results/reference/literature_added.csv). No MC3-18 row exists in the published comparison tables.

Size at 16x112², 7 classes: 11.49 M params / 43.40 GMACs (fvcore), measured from torchvision's model (baselines.md
§11 [meas], /work/notes/cnn3d/NOTES.md). DFER tables list no cost for it. The network is torchvision's own class
(`VideoResNet`, BasicBlock, Conv3DSimple + 3 x Conv3DNoTemporal, BasicStem); the state_dict keys are torchvision's.

Recipe: protocol `dfew_code` (default) = the DFEW repo's trainer, constant for constant (methods/_baseline_recipes.py:
Adam 1e-3 constant, no weight decay, batch 32, 500 epochs (main.py's default: config/mc3_18.yaml sets no epochs),
no augmentation, [0, 1] inputs, the DFEW sampler, best epoch on test). The only launch line naming mc3_18 is the
older `DataParallel/run.sh` (`--batch_size 128 --num_epoch 200`), whose trainer builds r3d_18 only: not used.
Protocol `bench3d` = the harness's own shared 3D-CNN recipe (AdamW + cosine, crop + flip, mean/std, smoothing 0.1),
for rows comparable with r3d18 / r2plus1d18 under it.
Differences from the DFEW code (protocol dfew_code):
- Resize: official `transforms.Resize(112)` (short side) with no crop; here short side + centre crop (identical for
  DFEW's square face crops).
- Selection metric: the official checkpoints carry UAR and WAR; which one the authors picked is not stated; the
  harness default (UAR) is kept.
- Init: `dfew_init=True` re-initialises the fc weight with kaiming_normal(fan_in, relu), as the DFEW code does for
  every nn.Linear / nn.Conv2d (Conv3d and BN3d keep torchvision's init); `dfew_init=False` keeps torchvision's.
- Seed: official `int(time.time())`; here the run's seed. The frame indices are the official rule exactly (the
  `dfew` sampler), drawn from the run's seeded generator.
- The paper's tables used TIM-interpolated 16-frame clips (DFEW's `clip_224x224_16f` variant, the default here),
  the repo's README numbers plain extracted frames (`--set data.options.variant=clip_224x224`).
In training mode the model returns {"logits", "features"} (features = the 512-d global pool, the fc input), so a
shared loss term such as `ec_stfl` can be added with `--set model.loss.terms.ec_stfl.weight=10`.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.video.resnet import BasicBlock, BasicStem, Conv3DNoTemporal, Conv3DSimple, VideoResNet

from bench.api import InputSpec, Paper, WeightsSource, register_method
from bench.methods._baseline_recipes import (
    bench3d_at,
    convert_dfew,
    dfew_code,
    dfew_linear_init,
    with_protocols,
)

PAPER = Paper(authors="Tran et al.", title="A Closer Look at Spatiotemporal Convolutions for Action Recognition",
              venue="CVPR", year=2018, arxiv="1711.11248", code="torchvision.models.video.mc3_18")
DFEW_CODE = "github.com/jiangxingxun/DFEW"

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

RECIPE = with_protocols("dfew_code", dfew_code=dfew_code("mc3_18", SYNTHETIC), bench3d=bench3d_at(SYNTHETIC))


@register_method("mc3_18", family="3D CNN", input=InputSpec(16, 112), paper=PAPER, recipe=RECIPE, weights=WEIGHTS,
                 literature=("MC3-18 (DFEW repo)",),
                 test_views_note="dfew_code: 16 random sorted frames (train) / linspace (test), 1 view, epoch "
                                 "picked on test")
def mc3_18(num_classes: int, frames: int, size: int, dropout: float = 0.0, dfew_init: bool = True) -> nn.Module:
    """torchvision MC3-18: 3D convs in stage 1, 2D (1x3x3) convs in stages 2-4 (DFEW baseline)."""
    model = mc3_18_net(num_classes, dropout)
    if dfew_init:
        dfew_linear_init(model)
    return model
