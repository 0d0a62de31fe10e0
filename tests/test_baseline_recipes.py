"""The classic baselines' protocols (methods/_baseline_recipes.py): `dfew_code` equals the DFEW trainer's configs
constant for constant (read from a fixture written from the official files, tests/data/dfew_code_configs.json), and
each classic baseline's default protocol is the recipe that produced its literature row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.api import build_model
from bench.methods._baseline_recipes import resolved_differences
from bench.registry import METHODS
from bench.spec import resolve_spec

FACTS = json.loads((Path(__file__).parent / "data" / "dfew_code_configs.json").read_text())
# registered method -> the DFEW trainer's model_name whose config it trains with (r2plus1d_18 has no config of its
# own; every config shares the constants but the size, so r3d_18's stands for it)
DFEW_MODELS = {"r3d18": "r3d_18", "r3d18_tv": "r3d_18", "r2plus1d18": "r3d_18", "mc3_18": "mc3_18", "c3d": "c3d",
               "i3d": "i3d", "r18_lstm": "reslstm"}


def _official(model_name: str) -> dict:
    """main.py's argparse defaults overridden by the model's config (main.py: parser.set_defaults(**config))."""
    return {**FACTS["main_defaults"], **FACTS["configs"][model_name]}


@pytest.mark.parametrize("method", sorted(DFEW_MODELS))
def test_dfew_code_protocol_equals_the_dfew_configs(method):
    cfg = _official(DFEW_MODELS[method])
    spec = resolve_spec(method, "dfew", protocol="dfew_code")
    d, o, t, r = spec.data, spec.optim, spec.train, spec.reg
    # optimizer: torch Adam(params, lr) without weight decay == AdamW with weight_decay 0; default betas / eps
    assert cfg["optimizer"] == "Adam" and (o.name, o.weight_decay, o.betas, o.eps) == ("adamw", 0.0, [0.9, 0.999], 1e-8)
    assert o.lr == float(cfg["lr_init"])  # '1e-3' is a YAML string; argparse converts string defaults
    # lr_strategy builds ExponentialLR(0.9) but Performer never steps it: the lr is constant
    assert cfg["lr_strategy"] is True and FACTS["scheduler_stepped"] is False
    assert (o.schedule, o.warmup_epochs) == ("constant", 0.0)
    assert t.batch_size == cfg["batch_size"] and t.epochs == cfg["num_epoch"]
    assert (t.selection, t.drop_last) == ("best_on_test", False)  # test fold every epoch; DataLoader default
    assert d.frames == cfg["nframe"] and d.size == cfg["size_Resize_te"]
    assert cfg["isconsecutive"] is False and d.sampler == "dfew"
    assert cfg["train_data_augment"] is False  # the test transform (resize) in training too
    assert (d.flip, d.rrc_scale, d.rrc_ratio, d.color_jitter) == (False, [1.0, 1.0], [1.0, 1.0], [0.0] * 4)
    assert (d.randaugment, d.random_erasing, d.test_views, d.test_crops) == (None, 0.0, 1, 1)
    assert cfg["model_pretrain"] is False and (d.mean, d.std) == (None, None)  # no Normalize: [0, 1] pixels
    assert cfg["loss_type"] == "CEL" and (r.label_smoothing, r.mixup_alpha, r.cutmix_alpha) == (0.0, 0.0, 0.0)
    assert spec.model.init == "scratch"
    # model_init: kaiming_normal(fan_in, relu) on every nn.Linear (std sqrt(2 / fan_in)); I3D has none
    assert cfg["model_init"] is True
    torch.manual_seed(0)
    model = build_model(method, 7, frames=16 if method == "c3d" else 8, size=48, **spec.model.kwargs)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if method != "i3d":
        w = linears[-1].weight
        assert abs(w.std().item() / (2.0 / w.shape[1]) ** 0.5 - 1) < 0.15, (method, w.std().item())


def test_the_fixture_is_the_official_configs():
    """What the protocol rests on, as read from the official files (no config overrides the epochs)."""
    sizes = {m: c["size_Resize_te"] for m, c in FACTS["configs"].items()}
    assert sizes == {"c3d": 112, "i3d": 224, "mc3_18": 112, "p3d": 160, "r3d_18": 112, "reslstm": 112}
    assert {c["batch_size"] for c in FACTS["configs"].values()} == {32}
    assert all("num_epoch" not in c for c in FACTS["configs"].values()) and FACTS["main_defaults"]["num_epoch"] == 500
    assert "7c1ba78f6fb13b59333b3e831d46d83ab812b10f" in FACTS["source"]


def test_default_protocols_are_the_recipes_behind_the_literature_rows():
    """Former-DFER's Table 4 DS rows (3D ResNet-18, ResNet18+LSTM, ResNet18+GRU) were trained with Former-DFER's
    recipe; the DFEW code's networks default to the DFEW trainer; the harness's own recipes are named as ours."""
    defaults = {n: METHODS.get(n).recipe.default_protocol for n in
                ("r3d18", "r18_lstm512", "r18_gru", "r18_lstm", "r3d18_tv", "r2plus1d18", "mc3_18", "static_r18")}
    assert defaults == {"r3d18": "former_dfer", "r18_lstm512": "former_dfer", "r18_gru": "former_dfer",
                        "r18_lstm": "dfew_code", "r3d18_tv": "dfew_code", "r2plus1d18": "dfew_code",
                        "mc3_18": "dfew_code", "static_r18": "bench2d"}
    for name in ("r3d18", "r18_lstm512", "r18_gru", "static_r18"):
        for dataset in ("dfew", "ferv39k", "mafw", "synthetic"):
            # the baselines' former_dfer protocol is Former-DFER's own recipe, key for key
            assert resolved_differences(name, dataset, "former_dfer", "former_dfer") == {}, (name, dataset)
    spec = resolve_spec("r3d18", "dfew")
    assert (spec.data.sampler, spec.data.segment_len, spec.data.pad) == ("tsn", 2, "zero")
    assert spec.data.options["variant"] == "clip_224x224"  # Former-DFER reads the full-length frames
    assert (spec.optim.name, spec.optim.lr, spec.optim.schedule, spec.optim.step_epochs) == ("sgd", 0.01, "step", 40)
    # bench3d is one recipe for every 3D CNN that offers it, bench2d one for every frame CNN
    for name in ("r3d18_tv", "r2plus1d18"):
        assert resolved_differences(name, "dfew", "bench3d", "r3d18", "bench3d") == {}
    for name in ("r18_lstm", "r18_lstm512", "r18_gru"):
        assert resolved_differences(name, "synthetic", "bench2d", "static_r18", "bench2d") == {}
    for name in ("r18_lstm512", "r3d18"):
        assert METHODS.get(name).literature  # they carry the rows
    # the DFEW paper's own row (time-interpolated clips), added from the paper's Table 4 with its provenance
    assert METHODS.get("r18_lstm").literature == ("ResNet18-LSTM (DFEW paper, TIM)",)
