"""Core options the method files rely on: lr groups and layer-wise decay, the class-balanced sampler, several
training clips per video, extra per-clip input streams, class names for text-prompted builders, and
TorchScript weight files (OpenAI CLIP's format)."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
from torch import nn

from bench.data.loader import ClipDataset, make_loader, model_inputs
from bench.errors import BenchError
from bench.optim import build_optimizer, set_lr
from bench.registry import DATASETS
from bench.spec import OptimCfg, resolve_spec
from bench.weights import read_checkpoint

SMALL = {"clips_per_class": 3, "folds": 2, "resolution": 32}


class Layered(nn.Module):
    num_layers = 2

    def __init__(self):
        super().__init__()
        self.embed, self.block0, self.block1, self.head = (nn.Linear(2, 2) for _ in range(4))

    def layer_id(self, name: str) -> int:
        return {"embed": 0, "block0": 1, "block1": 2, "head": 3}[name.split(".")[0]]


def test_lr_groups_and_layer_decay_scale_the_scheduled_lr():
    model = Layered()
    cfg = OptimCfg(lr=1.0, weight_decay=0.05, layer_decay=0.5, lr_groups={"head.": 10.0, "block": 0.1})
    opt = build_optimizer(model, cfg)
    set_lr(opt, 2.0)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(model.head.weight)] == pytest.approx(2.0 * 10.0 * 0.5 ** 0)
    assert lr_of[id(model.block1.weight)] == pytest.approx(2.0 * 0.1 * 0.5 ** 1)
    assert lr_of[id(model.embed.weight)] == pytest.approx(2.0 * 0.5 ** 3)
    assert wd_of[id(model.embed.bias)] == 0.0 and wd_of[id(model.embed.weight)] == 0.05
    with pytest.raises(BenchError, match="layer_id"):
        build_optimizer(nn.Linear(2, 2), OptimCfg(layer_decay=0.75))


def test_class_balanced_sampler_evens_out_the_classes(tmp_path):
    m = DATASETS.get("synthetic").build_manifest(tmp_path, 1, SMALL)
    recs = [r for r in m.split("train") if r.label in (0, 1)]
    recs = recs + [r for r in recs if r.label == 0] * 4  # class 0 five times as frequent
    spec = resolve_spec("test_tiny", "synthetic", sets=["data.size=32"])
    ds = ClipDataset(m, recs, spec.data, train=True, seed=0)
    counts = collections.Counter()
    for epoch in range(20):
        loader = make_loader(ds, 4, workers=0, shuffle=True, drop_last=False, seed=0, epoch=epoch, class_balanced=True)
        idx = list(loader.sampler)
        counts.update(recs[i].label for i in idx)
    share = counts[0] / (counts[0] + counts[1])
    assert 0.4 < share < 0.6  # ~0.83 without balancing
    again = make_loader(ds, 4, workers=0, shuffle=True, drop_last=False, seed=0, epoch=3, class_balanced=True)
    assert list(again.sampler) == list(make_loader(ds, 4, workers=0, shuffle=True, drop_last=False, seed=0, epoch=3,
                                                   class_balanced=True).sampler)


def test_several_training_clips_per_video(tmp_path):
    m = DATASETS.get("synthetic").build_manifest(tmp_path, 1, SMALL)
    spec = resolve_spec("test_tiny", "synthetic", sets=["data.size=32", "data.frames=4", "data.train_clips=3"])
    ds = ClipDataset(m, m.split("train"), spec.data, train=True, seed=0)
    clip = ds[0]["clip"]
    assert clip.shape == (3, 3, 4, 32, 32)
    assert not torch.equal(clip[0], clip[1])  # differently sampled / augmented clips of one video
    with pytest.raises(BenchError, match="train_clips"):
        resolve_spec("test_tiny", "synthetic", sets=["data.train_clips=2", "data.augment_on=device"])


def test_streams_are_read_at_the_sampled_frames(tmp_path):
    m = DATASETS.get("synthetic").build_manifest(tmp_path / "d", 1, SMALL)
    folder = tmp_path / "landmarks"
    folder.mkdir()
    texts = tmp_path / "text"
    texts.mkdir()
    for r in m.records:
        np.save(folder / f"{r.clip_id}.npy", np.arange(r.num_frames, dtype=np.float32)[:, None].repeat(2, 1))
        (texts / f"{r.clip_id}.txt").write_text(f"clip {r.clip_id}")
    spec = resolve_spec("test_tiny", "synthetic", sets=["data.size=32", "data.frames=4",
                                                        f"data.streams.lmk={folder}", f"data.streams.desc={texts}"])
    test = ClipDataset(m, m.split("test"), spec.data, train=False, seed=0)
    item = test[0]
    _, _, idx = test.items[0]
    assert item["streams"]["lmk"][:, 0].tolist() == [float(i) for i in idx]
    assert item["streams"]["desc"] == f"clip {test.records[0].clip_id}"
    batch = torch.utils.data.default_collate([test[0], test[1]])
    inputs = model_inputs(batch, torch.device("cpu"), repeat=3)["streams"]
    assert inputs["lmk"].shape == (6, 4, 2) and len(inputs["desc"]) == 6 and inputs["desc"][2] == item["streams"]["desc"]
    (folder / f"{test.records[1].clip_id}.npy").unlink()
    with pytest.raises(BenchError, match="data.streams needs one file per clip"):
        test[1]


def test_text_prompted_builders_get_the_class_names():
    from bench.api import InputSpec, Paper, build_model, register_method
    from bench.registry import METHODS

    name = "_test_class_names"
    if name not in METHODS:
        @register_method(name, family="test", input=InputSpec(4, 16), paper=Paper("t", "t", "t", 2026))
        def _build(num_classes: int, frames: int, size: int, class_names: tuple[str, ...]):
            model = nn.Linear(1, num_classes)
            model.class_names = class_names
            return model

    assert build_model(name, 2, class_names=["happy", "sad"]).class_names == ("happy", "sad")
    assert resolve_spec(name, "synthetic").method == name  # class_names is not a model.kwargs key


def test_torchscript_weight_files_are_read(tmp_path):
    scripted = torch.jit.script(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    path = tmp_path / "ViT-B-32.pt"
    scripted.save(str(path))
    with pytest.raises(Exception):  # noqa: B017 - what weights_only=True does with such a file
        torch.load(path, weights_only=True)
    state, meta = read_checkpoint(path)
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"} and meta == {}
    assert torch.equal(state["2.weight"], scripted.state_dict()["2.weight"])


def test_checkpoints_with_foreign_objects_load_without_running_their_code(tmp_path):
    """Released checkpoints (Former-DFER, DFER-CLIP, EC-STFL) pickle their training script's objects next to the
    weights; the tensors load under weights_only=True, the objects become inert records named in the notes."""
    import argparse
    import sys
    import types

    module = types.ModuleType("fake_training_utils")

    class RecorderMeter:  # a class the loading process does not have
        def __init__(self):
            self.epochs = [1, 2, 3]

    RecorderMeter.__module__ = "fake_training_utils"
    RecorderMeter.__qualname__ = "RecorderMeter"
    module.RecorderMeter = RecorderMeter
    sys.modules["fake_training_utils"] = module
    path = tmp_path / "model_best.pth"
    try:
        torch.save({"state_dict": {"module.fc.weight": torch.ones(2, 3)}, "recorder": RecorderMeter(), "epoch": 7,
                    "args": argparse.Namespace(lr=0.01)}, path)
    finally:
        del sys.modules["fake_training_utils"]
    state, meta = read_checkpoint(path)
    assert set(state) == {"fc.weight"} and meta["epoch"] == 7
    assert meta["opaque_objects"] == ["fake_training_utils.RecorderMeter"]
