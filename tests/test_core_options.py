"""Core options the method files rely on: lr groups and layer-wise decay, the class-balanced sampler, several
training clips per video, extra per-clip input streams, class names for text-prompted builders, and
TorchScript weight files (OpenAI CLIP's format), and the video RandAugment / random erasing of the ViT recipes."""

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


# ----------------------------------------------------------------------------------------------------------
# RandAugment and random erasing (MAE-DFER's fine-tuning augmentation)


def _clip(seed: int = 0, t: int = 6, size: int = 40) -> np.ndarray:
    return (np.random.RandomState(seed).rand(t, size, size, 3) * 255).astype(np.uint8)


def test_randaugment_draws_once_per_clip_as_timm_does_per_frame():
    """Every frame gets the ops, probabilities and magnitudes that timm's own transform draws from the same global
    state; the global generators are left as they were."""
    import random

    from PIL import Image
    from timm.data.auto_augment import rand_augment_transform

    from bench.data.transforms import rand_augment

    cfg = resolve_spec("r3d18", "synthetic", sets=["data.randaugment=rand-m7-n4-mstd0.5-inc1"]).data
    clip = _clip()
    before = random.getstate(), np.random.get_state()[1].copy()
    out = rand_augment(clip, cfg, random.Random(3))
    assert random.getstate() == before[0] and np.array_equal(np.random.get_state()[1], before[1])
    seed = random.Random(3).getrandbits(32)
    timm_op = rand_augment_transform("rand-m7-n4-mstd0.5-inc1", {"translate_const": int(40 * 0.45),
                                                                  "interpolation": Image.BILINEAR})
    for t in range(len(clip)):
        random.seed(seed)
        np.random.seed(seed)
        assert np.array_equal(out[t], np.asarray(timm_op(Image.fromarray(clip[t])))), t
    same = rand_augment(np.repeat(clip[:1], 4, 0), cfg, random.Random(3))
    assert all(np.array_equal(same[0], f) for f in same) and not np.array_equal(same[0], clip[0])
    assert not np.array_equal(rand_augment(clip, cfg, random.Random(4)), out)


def test_random_erasing_is_one_box_of_noise_through_all_frames():
    import random

    from bench.data.transforms import train_transform

    base = resolve_spec("r3d18", "synthetic").data
    erased_cfg = resolve_spec("r3d18", "synthetic", sets=["data.random_erasing=1.0"]).data
    clip = _clip(1, t=5, size=64)
    plain, erased = train_transform(clip, base, random.Random(7)), train_transform(clip, erased_cfg, random.Random(7))
    changed = (plain != erased).any(dim=0).any(dim=0)  # (S,S): pixels changed in any channel or frame
    rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
    box = erased[:, :, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # one filled rectangle
    assert 0.02 * 48 * 48 * 0.5 <= box.shape[-1] * box.shape[-2] <= 48 * 48 / 3 * 1.5
    assert all(torch.equal(box[:, 0], box[:, t]) for t in range(1, box.shape[1]))  # the same through time
    assert abs(float(box.std()) - 1.0) < 0.3  # N(0,1) noise
    off = resolve_spec("r3d18", "synthetic", sets=["data.random_erasing=0.0"]).data
    assert torch.equal(train_transform(clip, off, random.Random(7)), plain)


def test_new_augmentation_keys_keep_stored_run_ids_and_fail_as_one_line():
    """Keys added after runs were stored stay out of the run id at their default (a stored run is still found);
    set, they change it. Bad values and the device-side augmentation are one-line errors."""
    import hashlib
    import json

    from bench.spec import ADDED_LATER

    spec = resolve_spec("r3d18", "synthetic")
    stored = spec.to_dict()
    for section, key in ADDED_LATER:  # a spec written before the keys existed
        del stored[section][key]
    for key in ("root", "workers", "augment_on"):
        stored["data"].pop(key)
    stored["train"].pop("device")
    assert spec.config_hash() == hashlib.sha256(json.dumps(stored, sort_keys=True, default=str).encode()).hexdigest()
    assert resolve_spec("r3d18", "synthetic", sets=["data.random_erasing=0.25"]).run_id != spec.run_id
    for sets, message in ((["data.randaugment=bogus-m7"], "not a timm RandAugment string"),
                          (["data.random_erasing=1.5"], "data.random_erasing=1.5: must be in [0, 1]"),
                          (["data.random_erasing=0.25", "data.augment_on=device"], "need data.augment_on=worker")):
        with pytest.raises(BenchError, match=message.replace("[", r"\[").replace("]", r"\]")):
            resolve_spec("r3d18", "synthetic", sets=sets)


@pytest.mark.parametrize("method", ["mae_dfer", "video_vit", "s2d", "s4d"])
def test_vit_recipes_use_the_released_augmentation(method):
    """The released fine-tuning scripts of MAE-DFER, S2D and S4D (VideoMAE's loader): --aa rand-m7-n4-mstd0.5-inc1,
    --reprob 0.25; the CPU-sized synthetic recipe leaves both out."""
    for dataset in ("dfew", "ferv39k", "mafw"):
        data = resolve_spec(method, dataset).data
        assert (data.randaugment, data.random_erasing) == ("rand-m7-n4-mstd0.5-inc1", 0.25), dataset
    data = resolve_spec(method, "synthetic").data
    assert (data.randaugment, data.random_erasing) == (None, 0.0)
