"""EC-STFL: expression-clustered spatio-temporal feature learning (Jiang et al., "DFEW: A Large-Scale Database for
Recognizing Dynamic Facial Expressions in the Wild", ACM MM 2020): a loss, not a network.

Official code: CV-AC/ECSTFL @ eaf8a60315436f62b92be9736200d7cc4c7731fd (a 2024 re-release; README licence CC BY-NC-ND
4.0: the formula and recipe are taken, not the code). The 2020 paper's own equation could not be read anywhere, so
this follows the 2024 code (whether the two match is an open question, /work/notes/papers/NOTES.md §4).

The loss (registered as the shared loss term `ec_stfl`, so any method whose training-mode output carries pooled
clip features, {"features": (B, D)}, can use it: `--set model.loss.terms.ec_stfl.weight=10`), for a mini-batch of
B features f with labels y (argmax of the soft targets):
  D_ij = ||f_i - f_j||_1;  P_i = {j : y_j = y_i} (i included),  N_i = {j : y_j != y_i};
  A_i = sum_{j in P_i} D_ij / (|P_i| + eps)          (intra-class compactness; the code counts the positives
                                                       without i and adds 1 back)
  R_i = sum_{j in N_i} 1 / (D_ij + eps) / (|N_i| + 1 + eps)   (mean inverse inter-class distance)
  L_EC = (1/B) * mean_i (A_i * R_i)  with eps = 1e-6.
The extra 1/B of the code (L_EC = (1/B²) sum_i A_i R_i) is the switch `batch_factor` (default True, as released;
False gives mean_i A_i R_i). No class centres, no parameters. Total loss L = CE + gamma * L_EC, gamma = 10 (README
command `--gamma 10`; the argparse default 0 is the CE baseline: variant `ec_stfl.ce`). Computed in float32.

Method `ec_stfl` = the official setup: torchvision `r3d_18(weights=False, num_classes=7)` from scratch, features =
its avgpool output (hooked in the code; returned here in training mode as {"logits", "features"}), 512-d, no
dropout. State_dict keys are torchvision's, so the released checkpoints load unchanged.
Size at 16x112², 7 classes: 33.17 M params / 40.74 GMACs (fvcore), measured from the official code's model (=
torchvision r3d_18, baselines.md §11). The "8.32 G" listed for EC-STFL in DFER tables is the Hara-style 3D ResNet-18
(7x7x7 stem + max-pool, method `r3d18` here) of the 2020 paper, a different backbone from this code's.

Recipe (finetune.py + dataloader): SGD lr 0.01, momentum 0.9, weight decay 1e-4 on every parameter, StepLR(50, 0.1)
per epoch, 200 epochs, batch 32 with drop_last; 16 frames = 8 TSN segments x 2 consecutive frames (random offset per
segment for training, segment centre for testing), 112²; training GroupRandomSizedCrop (area 0.08-1) + horizontal
flip; test resize to 112²; pixels / 255, no mean/std; the best test accuracy over epochs is kept (`best_on_test`,
metric WAR). The official log: DFEW fold 1 WAR 64.08 with EC-STFL vs 62.02 with CE only. The code has one recipe
(DFEW); FERV39k / MAFW use the same.
Differences from the official code: GroupRandomSizedCrop is the harness's RandomResizedCrop with the same area and
aspect ranges (aspect 3/4-4/3 assumed, the TSN default) on the whole clip; the test transform is resize (short side)
+ centre crop, identical for square face crops; the labels of the loss are the argmax of the soft targets
(identical without label smoothing / mixup, which the recipe has not).
Temporal sampling, no difference: the official loader (dataloader/Videos_Dataset.py @ eaf8a60, Former-DFER's rule,
no clip dropped) is the harness's `tsn` sampler with `pad=zero`, index for index (tests/test_sampling.py): training
o_k = k*a + U{0..a-1}, a = (n-1)//8 (the last (n-1) mod 8 start positions are never drawn; n = 9..16 trains on the
fixed 0,1,1,2,...,7,8), test o_k = int(t/2 + k*t), t = (n-1)/8, for n > 9; shorter clips read frames 0,1 eight
times; segment k reads o_k and min(o_k + 1, n - 1). The draws come from the run's seeded generator.
Weights: `official` = the released r3d_ECSTFL_dfew.pth / r3d_dfew.pth (not downloaded here; the code looks for the
typo name r3d_ECSTL_dfew.pth), names already match; its pickled 'recorder' is read as an inert record by the core
(bench/weights.py), so the file loads as released.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.video.resnet import Conv3DSimple

from bench.api import InputSpec, Paper, Recipe, WeightsSource, register_method, register_variant
from bench.errors import BenchError
from bench.losses import register_loss_term
from bench.methods.mc3_18 import VideoResNetFeatures

PAPER = Paper(authors="Jiang, Zong, Zheng, Tang, Xia, Lu & Liu",
              title="DFEW: A Large-Scale Database for Recognizing Dynamic Facial Expressions in the Wild",
              venue="ACM MM", year=2020, code="github.com/CV-AC/ECSTFL")

EPS = 1e-6


def _features(outputs: Any) -> torch.Tensor:
    if isinstance(outputs, dict) and "features" in outputs:
        return outputs["features"]
    if isinstance(outputs, (tuple, list)) and len(outputs) > 1:
        return outputs[1]
    raise BenchError("loss term ec_stfl needs pooled clip features: the model must return {'logits': ..., "
                     "'features': (B, D)} (or a (logits, features) tuple) in training mode")


def ec_stfl(features: torch.Tensor, labels: torch.Tensor, batch_factor: bool = True, eps: float = EPS) -> torch.Tensor:
    """EC-STFL of (B, D) features and (B,) integer labels (formula in the module docstring), float32."""
    f = features.float().flatten(1)
    b = f.shape[0]
    d = torch.cdist(f, f, p=1)
    same = labels[:, None] == labels[None, :]
    n_pos = same.sum(1).float()  # includes i itself
    n_neg = (~same).sum(1).float()
    attraction = torch.where(same, d, torch.zeros_like(d)).sum(1) / (n_pos + eps)
    repulsion = torch.where(same, torch.zeros_like(d), 1.0 / (d + eps)).sum(1) / (n_neg + 1.0 + eps)
    loss = (attraction * repulsion).mean()
    return loss / b if batch_factor else loss


@register_loss_term("ec_stfl")
def ec_stfl_term(outputs: Any, targets: torch.Tensor, batch_factor: bool = True, eps: float = EPS) -> torch.Tensor:
    """Shared loss term: EC-STFL on outputs['features'] with labels = argmax of the (soft) targets; unweighted (the
    weight, gamma = 10 in the official recipe, is model.loss.terms.ec_stfl.weight)."""
    return ec_stfl(_features(outputs), targets.argmax(-1), batch_factor=bool(batch_factor), eps=float(eps))


# ----------------------------------------------------------------------------------------------------------
# the official backbone and recipe


WEIGHTS = {
    "official": WeightsSource("CV-AC/ECSTFL released r3d_ECSTFL_dfew.pth (or r3d_dfew.pth, CE only): {'epoch', "
                              "'state_dict', 'best_acc', 'optimizer', 'recorder'}, torchvision r3d_18 key names, "
                              "7 classes, no 'module.' prefix", "r3d_ECSTFL_dfew.pth"),
    "kinetics400": WeightsSource("torchvision R3D_18 Kinetics-400 state_dict (same key names; the 400-way fc is "
                                 "reported as mismatched); not the official init (from scratch)",
                                 "r3d_18-b3b3357e.pth"),
}

RECIPE = Recipe(
    defaults={
        "data": {"frames": 16, "size": 112, "sampler": "tsn", "segment_len": 2, "pad": "zero", "flip": True,
                 "rrc_scale": [0.08, 1.0], "rrc_ratio": [3 / 4, 4 / 3], "color_jitter": [0.0, 0.0, 0.0, 0.0],
                 "mean": None, "std": None, "test_views": 1, "test_crops": 1},
        # torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=1e-4): decay on every parameter
        "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
                  "decay_norm_bias": True, "schedule": "step", "step_epochs": 50, "gamma": 0.1,
                  "per_iteration": False, "warmup_epochs": 0.0},
        "reg": {"label_smoothing": 0.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0},
        "train": {"epochs": 200, "batch_size": 32, "drop_last": True, "selection": "best_on_test",
                  "selection_metric": "war"},
        "model": {"loss": {"terms": {"ec_stfl": {"weight": 10.0, "batch_factor": True}}}},
    },
    datasets={
        # CPU-sized deviation (<= 10 min on 2 cores): 8 frames (4 segments x 2) at 48² (3.7 GMACs per clip; a
        # training step measured 1.4x the Hara r3d18's synthetic step: ~6 min), 6 epochs at batch 16 with the StepLR
        # step at epoch 4, area 0.5-1 crops (0.08 loses the small synthetic face), last-epoch selection.
        "synthetic": {"data": {"frames": 8, "size": 48, "rrc_scale": [0.5, 1.0]},
                      "optim": {"step_epochs": 4},
                      "train": {"epochs": 6, "batch_size": 16, "selection": "last"}},
    },
)


@register_method("ec_stfl", family="3D CNN", input=InputSpec(16, 112), paper=PAPER, recipe=RECIPE, weights=WEIGHTS,
                 literature=("EC-STFL",),
                 test_views_note="official: 8 segment centres x 2 frames, 1 view; best test accuracy over epochs")
def ec_stfl_r3d18(num_classes: int, frames: int, size: int) -> nn.Module:
    """EC-STFL: torchvision r3d_18 trained with CE + 10 x the expression-clustered feature loss (official code)."""
    return VideoResNetFeatures([Conv3DSimple] * 4, num_classes)


register_variant("ec_stfl.ce", variant_of="ec_stfl", loss={"terms": {"ec_stfl": {"weight": 0.0}}},
                 description="the same r3d_18 and recipe with gamma = 0 (CE only; the official --gamma default, "
                             "the 62.02 baseline of its log)")
