"""The recipes the classic DFER baselines were trained with, as protocols a method file puts side by side.

* `dfew_code`: the DFEW dataset paper's trainer, github.com/jiangxingxun/DFEW @ 7c1ba78f6fb13b59333b3e831d46d83ab812b10f
  (no licence file: read for facts only), `DataDistributedParallel/`: `main.py` (defaults), `config/<model>.yaml`,
  `libs/Performer.py` (model, init, optimiser, loop), `libs/DFEW_Dataset.py` (sampling, transforms). It builds
  torchvision r3d_18 / mc3_18 / r2plus1d_18, C3D, P3D, I3D and ResLSTM. Every config says: Adam, lr_init 1e-3,
  batch_size 32 (per DDP process), train_data_augment False, model_pretrain False, model_init True, and
  size_Resize_te 112 (I3D 224, P3D 160); main.py adds num_epoch 500, nframe 16, isconsecutive False, loss CEL,
  lr_strategy True (an ExponentialLR(0.9) that is built but never stepped: the lr stays 1e-3). As RunSpec keys:
  AdamW with weight decay 0 (Adam's update), constant lr, no warm-up, plain CE, no crop/flip/jitter, pixels in
  [0, 1] (`transforms.Resize(size)` + ToTensor, no Normalize), the `dfew` sampler (T distinct random indices,
  sorted / linspace at test: bench/data/sampling.py), drop_last False (the DataLoader's default), and
  `best_on_test` (the trainer evaluates the test fold after every epoch and saves every epoch's checkpoint named
  by its test UAR/WAR; there is no validation split). `model_init` re-draws every nn.Conv2d / nn.Linear weight
  with kaiming_normal(fan_in, relu) and sets BatchNorm2d to 1/0 (`dfew_linear_init`). Launch lines that override
  the configs exist only for r3d_18 (run.sh: `--batch_size=64 --num_epoch=100` on 4 processes) and, in the older
  `DataParallel/run.sh` whose trainer can only build r3d_18, `--batch_size 128 --num_epoch 200` for r3d_18,
  r2plus1d_18 and mc3_18: they are recorded here, not used (the protocol is the configs, constant for constant).
  The seed is `int(time.time())` there, the run's seed here. One listed difference: the trainer's
  DistributedSampler (shuffle on) never has `set_epoch` called (`libs/Performer.py`), so every epoch visits the
  training clips in the same order; here the order is reshuffled every epoch. The selection metric is not stated (both UAR and
  WAR are in every checkpoint's name): the harness default, UAR.
* `former_dfer`: Former-DFER's trainer (methods/former_dfer.py), with which Former-DFER (Zhao & Liu, ACM MM 2021,
  Table 4) trained the "DS" baselines every later table quotes: 3D ResNet-18 46.52 / 58.27, ResNet18+LSTM
  51.32 / 63.85, ResNet18+GRU 51.68 / 64.02 ("Our Former-DFER and baseline models are all trained by dynamic
  sampling"; SGD 0.01, /10 every 40 epochs, 100 epochs, batch 32, from scratch, 8 segments x 2 frames at 112²).
* `bench3d` / `bench2d`: this harness's own tuned recipes (ours, no paper's): AdamW with weight decay, cosine with
  warm-up, 50 epochs, RandomResizedCrop (0.8-1) + flip, mean/std normalisation, label smoothing 0.1. `bench3d` is
  shared by the 3D CNNs, `bench2d` by the frame CNNs and the static control, so rows under one of them differ only
  in the network.

`with_protocols` puts several of these on one method: each protocol is complete on its own (it starts from the
spec's field defaults), with its own per-dataset entries, so none has to undo another.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from bench.api import Recipe
from bench.spec import deep_merge

DFEW_CODE = "github.com/jiangxingxun/DFEW @ 7c1ba78"
# size_Resize_te of DataDistributedParallel/config/<model>.yaml; r2plus1d_18 has no config of its own (the trainer
# builds it with another model's config: all share every other constant)
DFEW_CONFIG_SIZE = {"r3d_18": 112, "mc3_18": 112, "r2plus1d_18": 112, "c3d": 112, "i3d": 224, "p3d": 160,
                    "reslstm": 112}
DFEW_MAIN_EPOCHS = 500  # DataDistributedParallel/main.py --num_epoch default (no launch line for most models)
DFEW_CONFIG_BATCH = 32  # batch_size in every config (per DDP process)

# CPU-sized `synthetic` entry shared by the protocols below unless a method gives its own (<= 10 min on 2 cores):
# 8 frames at 48², 10 epochs of 420 clips at batch 16, last-epoch selection (no per-epoch test pass). A deviation
# in size only; stated in every result's protocol.
CPU_SYNTHETIC = {"data": {"frames": 8, "size": 48}, "train": {"epochs": 10, "batch_size": 16, "selection": "last"}}


def dfew_code(model_name: str, synthetic: dict | None = None) -> dict:
    """The DFEW trainer's constants for `model_name` (a key of DFEW_CONFIG_SIZE) as a protocol."""
    return {
        "data": {"frames": 16, "size": DFEW_CONFIG_SIZE[model_name], "sampler": "dfew", "flip": False,
                 "rrc_scale": [1.0, 1.0], "rrc_ratio": [1.0, 1.0], "color_jitter": [0.0, 0.0, 0.0, 0.0],
                 "mean": None, "std": None, "test_views": 1, "test_crops": 1},
        "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.999], "eps": 1e-8,
                  "schedule": "constant", "warmup_epochs": 0.0},
        "reg": {"label_smoothing": 0.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0},
        "train": {"epochs": DFEW_MAIN_EPOCHS, "batch_size": DFEW_CONFIG_BATCH, "drop_last": False,
                  "selection": "best_on_test"},
        "datasets": {"synthetic": copy.deepcopy(synthetic if synthetic is not None else CPU_SYNTHETIC)},
    }


def former_dfer() -> dict:
    """Former-DFER's recipe (data, optimiser, schedule, selection, per-dataset entries) as a protocol."""
    from bench.methods.former_dfer import RECIPE

    return {**copy.deepcopy(RECIPE.defaults), "datasets": copy.deepcopy(RECIPE.datasets)}


BENCH3D = {
    "data": {"sampler": "segment", "rrc_scale": [0.8, 1.0], "flip": True,
             "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]},
    "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "schedule": "cosine", "warmup_epochs": 2},
    "train": {"epochs": 50, "batch_size": 32},
    "reg": {"label_smoothing": 0.1},
    # CPU-sized: 8 segments at 48x48, 10 epochs (~40 s/epoch on 2 cores for the Hara r3d18)
    "datasets": {"synthetic": {"data": {"frames": 8, "size": 48, "rrc_scale": [0.85, 1.0]},
                               "optim": {"lr": 2e-3, "warmup_epochs": 1}, "train": {"epochs": 10, "batch_size": 16}}},
}

BENCH2D = {
    "data": {"sampler": "segment", "rrc_scale": [0.8, 1.0],
             "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 2},
    "train": {"epochs": 50, "batch_size": 32, "grad_clip": 5.0},
    "reg": {"label_smoothing": 0.1},
    # CPU-sized: 8 segments at 48x48, 10 epochs of 420 clips
    "datasets": {"synthetic": {"data": {"frames": 8, "size": 48, "rrc_scale": [0.85, 1.0]},
                               "optim": {"lr": 2e-3, "warmup_epochs": 1}, "train": {"epochs": 10, "batch_size": 16}}},
}


def with_synthetic(protocol: dict, synthetic: dict) -> dict:
    """`protocol` with its `synthetic` entry updated by `synthetic` (a method's own CPU budget)."""
    out = copy.deepcopy(protocol)
    datasets = out.setdefault("datasets", {})
    datasets["synthetic"] = deep_merge(datasets.get("synthetic", {}), synthetic)
    return out


def bench3d_at(synthetic: dict) -> dict:
    """`bench3d` at a method's own CPU budget: the frames, size and epochs of its `synthetic` entry."""
    data = {k: v for k, v in synthetic.get("data", {}).items() if k in ("frames", "size")}
    return with_synthetic(BENCH3D, {"data": data, "train": {"epochs": synthetic.get("train", {}).get("epochs", 10)}})


def with_protocols(default: str, **protocols: dict) -> Recipe:
    """A recipe offering several complete protocols (`--protocol NAME`), `default` when none is asked for."""
    if default not in protocols:
        raise ValueError(f"default protocol {default!r} is not one of {sorted(protocols)}")
    return Recipe(protocols={name: copy.deepcopy(p) for name, p in protocols.items()}, default_protocol=default)


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


def convert_dfew(sd: dict, model: nn.Module, notes: dict) -> dict:
    """A DFEW-repo checkpoint ({'seed','epo','model_state_dict','optimizer_state_dict'}, 'module.'-prefixed: the
    core unwraps both) already has the model's names; nothing to rename."""
    notes["format"] = "DFEW repo checkpoint (the trainer's key names)"
    return sd


def resolved_differences(method: str, dataset: str, protocol: str, other: str, other_protocol: str | None = None
                         ) -> dict[str, Any]:
    """Keys where two methods' resolved specs differ (data/optim/reg/train): shows that two protocols of different
    methods are the same recipe."""
    from bench.spec import resolve_spec

    a = resolve_spec(method, dataset, protocol=protocol).to_dict()
    b = resolve_spec(other, dataset, protocol=other_protocol).to_dict()
    out = {}
    for section in ("data", "optim", "reg", "train"):
        for k, v in a[section].items():
            if b[section].get(k) != v:
                out[f"{section}.{k}"] = (v, b[section].get(k))
    return out
