"""Run specs: layered resolution, validation with close-name errors, stable run ids."""

from __future__ import annotations

import pytest

from bench.errors import BenchError, UnknownNameError
from bench.registry import METHODS, Registry
from bench.spec import RunSpec, parse_set, resolve_spec


def test_layers_apply_in_order():
    info = METHODS.get("r3d18")
    base = resolve_spec("r3d18", "dfew")
    proto = info.recipe.protocols[info.recipe.default_protocol]
    assert base.protocol == info.recipe.default_protocol and base.optim.lr == proto["optim"]["lr"]
    assert base.data.size == 112 and base.fold == 1
    syn = resolve_spec("r3d18", "synthetic")  # protocol x dataset override
    assert syn.data.size == proto["datasets"]["synthetic"]["data"]["size"]
    assert syn.train.epochs == proto["datasets"]["synthetic"]["train"]["epochs"]
    other = resolve_spec("r3d18", "synthetic", protocol="bench3d")  # another protocol, complete on its own
    assert other.optim.name == "adamw" and other.data.mean == [0.45, 0.45, 0.45] and syn.data.mean is None
    flags = resolve_spec("r3d18", "synthetic", flags={"train": {"epochs": 3}, "optim": {"lr": 0.5}})
    assert flags.train.epochs == 3 and flags.optim.lr == 0.5
    top = resolve_spec("r3d18", "synthetic", flags={"optim": {"lr": 0.5}}, sets=["optim.lr=0.25", "data.frames=8"])
    assert top.optim.lr == 0.25 and top.data.frames == 8  # --set beats flags


def test_set_parses_types_and_lists():
    spec = resolve_spec("r3d18", "synthetic", sets=["data.rrc_scale=[0.5, 1.0]", "train.deterministic=true",
                                                    "data.options.intensity=0.7", "train.epochs=2"])
    assert spec.data.rrc_scale == [0.5, 1.0]
    assert spec.train.deterministic is True and spec.train.epochs == 2
    assert spec.data.options["intensity"] == 0.7
    assert parse_set(["a.b.c=1"]) == {"a": {"b": {"c": 1}}}
    with pytest.raises(BenchError, match="key=value"):
        parse_set(["optim.lr"])


def test_unknown_names_give_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean r3d18"):
        resolve_spec("r3d1", "synthetic")
    with pytest.raises(UnknownNameError, match="synthetic"):
        resolve_spec("r3d18", "synthetc")
    with pytest.raises(UnknownNameError, match="did you mean lr"):
        resolve_spec("r3d18", "synthetic", sets=["optim.lrr=1"])
    with pytest.raises(UnknownNameError, match="selection"):
        resolve_spec("r3d18", "synthetic", sets=["train.selection=best"])
    with pytest.raises(UnknownNameError, match="dropout"):
        resolve_spec("r3d18", "synthetic", sets=["model.kwargs.dropuot=0.1"])
    with pytest.raises(BenchError, match="integer"):
        resolve_spec("r3d18", "synthetic", sets=["train.epochs=two"])


def test_run_id_is_derived_from_the_semantic_spec():
    a = resolve_spec("r3d18", "dfew", fold=2, seed=1)
    b = resolve_spec("r3d18", "dfew", fold=2, seed=1, flags={"data": {"workers": 7, "root": "/elsewhere"}})
    c = resolve_spec("r3d18", "dfew", fold=2, seed=1, sets=["optim.lr=0.1"])
    assert a.run_id == b.run_id  # paths and worker counts do not change results
    assert a.run_id != c.run_id
    assert a.run_id.startswith("r3d18-dfew-f2-s1-")
    assert RunSpec.from_dict(a.to_dict()).run_id == a.run_id  # what is saved reloads to the same id


def test_registry_rejects_duplicates():
    reg: Registry[int] = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="twice"):
        reg.add("a", 2)
    assert reg.names("a*") == ["a"]


def test_cuda_layer_applies_only_on_cuda_and_under_the_user_layers():
    """IFDD's `synthetic` recipe has an on_cuda layer (its CPU budget cannot show the method): a CUDA run takes it,
    a CPU run does not, and --epochs / --set still win over it."""
    import torch

    cpu = resolve_spec("ifdd", "synthetic", flags={"train": {"device": "cpu"}})
    cuda = resolve_spec("ifdd", "synthetic", flags={"train": {"device": "cuda:1"}})
    on_cuda = METHODS.get("ifdd").recipe.on_cuda["synthetic"]
    assert (cpu.data.size, cpu.train.epochs, cpu.data.options) == (32, 4, {})
    assert cuda.data.size == on_cuda["data"]["size"] and cuda.train.epochs == on_cuda["train"]["epochs"]
    assert cuda.data.options["clips_per_class"] == on_cuda["data"]["options"]["clips_per_class"]
    assert cuda.data.frames == cpu.data.frames and cuda.optim.lr == cpu.optim.lr  # the rest is the CPU recipe
    assert cuda.run_id != cpu.run_id
    user = resolve_spec("ifdd", "synthetic", flags={"train": {"device": "cuda", "epochs": 2}}, sets=["data.size=48"])
    assert (user.train.epochs, user.data.size) == (2, 48)
    auto = resolve_spec("ifdd", "synthetic")
    assert auto.run_id == (cuda.run_id if torch.cuda.is_available() else cpu.run_id)
    # only the dataset the layer names: DFEW on CUDA is the DFEW recipe
    assert resolve_spec("ifdd", "dfew", flags={"train": {"device": "cuda"}}).run_id == resolve_spec(
        "ifdd", "dfew", flags={"train": {"device": "cpu"}}).run_id
