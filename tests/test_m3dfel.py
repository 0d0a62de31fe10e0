"""M3DFEL: size against the official code's measurement (NOTES cnn3d §1), both weights sources on state_dicts with
the official key names and shapes (tests/data), DMIN / MHSA / the timm schedule against hand computations, and one
real `bench run` / `bench eval --source official` on synthetic."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench.api import build_model
from bench.methods import m3dfel
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.weights import apply_init, load_weights
from tests.conftest import bench_cli

DATA = Path(__file__).parent / "data"
SETS = ["--set", "data.options.clips_per_class=2", "--set", "data.options.folds=2", "--set",
        "data.options.resolution=32", "--set", "data.frames=8", "--set", "data.size=32"]
TINY = [*SETS, "--epochs", "1", "--batch-size", "2", "--workers", "0", "--no-progress", "--no-latency"]


def _random_state(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {k: (torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(*v, generator=g))
            for k, v in shapes.items()}


@pytest.mark.slow
def test_size_matches_the_official_code():
    """46,823,384 params; 43.19 GMACs by stock fvcore (which skips the BiLSTM) = ours minus the LSTM's 0.042 G."""
    model = build_model("m3dfel", 7)
    total, trainable = count_params(model)
    assert total == trainable == 46_823_384
    macs = count_macs(model, (3, 16, 112, 112))
    lstm = macs["fvcore_by_operator_macs"]["lstm"] / 1e9
    assert abs(lstm - 0.04194304) < 1e-6  # 2 layers x 2 directions x 4 steps x 4(in*h + h*h)
    assert abs((macs["gmacs_fvcore"] - lstm) / 43.19 - 1) < 0.01
    assert abs(macs["gmacs_fvcore"] / 43.23 - 1) < 0.01 and macs["flop_disagreement"] < 0.01


def test_official_key_names_and_shapes():
    keys = json.loads((DATA / "m3dfel_keys.json").read_text())["keys"]
    own = build_model("m3dfel", 7).state_dict()
    assert {k: list(v.shape) for k, v in own.items()} == keys


def test_kinetics400_source_fills_the_instance_backbone(tmp_path):
    facts = json.loads((DATA / "m3dfel_r3d18_k400_keys.json").read_text())
    k400 = _random_state(facts["r3d_keys"])
    fc = {"fc.weight": torch.randn(400, 512), "fc.bias": torch.randn(400)}
    assert facts["r3d_keys"]["fc.weight"] == [400, 512]
    path = tmp_path / "r3d_18-b3b3357e.pth"
    torch.save(k400, path)
    model = build_model("m3dfel", 7)
    report = apply_init(model, METHODS.get("m3dfel"), f"kinetics400:{path}")["report"]
    assert report["unexpected"] == [] and report["mismatched"] == []
    assert sorted(report["notes"]["dropped"]) == ["fc.bias", "fc.weight"]  # the official code drops the fc too
    assert report["loaded"] == 120
    assert all(not k.startswith("features.") for k in report["missing"])
    own = model.state_dict()
    for src, dst in facts["mapping"].items():
        if dst is not None:
            assert torch.equal(own[dst], k400[src]), src
    assert fc["fc.weight"].shape == (400, 512)


def test_official_checkpoint_loads_completely(tmp_path):
    """{'epoch','state_dict','best_wa','best_ua','optimizer'} with DataParallel's 'module.' prefix. (The real file
    also holds args=argparse.Namespace, which torch.load(weights_only=True) refuses: see the report.)"""
    keys = json.loads((DATA / "m3dfel_keys.json").read_text())["keys"]
    sd = {"module." + k: v for k, v in _random_state(keys).items()}
    path = tmp_path / "model_best.pth"
    torch.save({"epoch": 123, "state_dict": sd, "best_wa": 0.69, "best_ua": 0.56, "optimizer": {}}, path)
    model = build_model("m3dfel", 7)
    report = load_weights(model, path, m3dfel.WEIGHTS["official"], "official")
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert len(report.loaded) == 145 and report.notes["epoch"] == 123
    assert torch.equal(model.to_qkv.weight, sd["module.to_qkv.weight"])
    assert torch.equal(model.norm.mean_weight, sd["module.norm.mean_weight"])
    assert torch.equal(model.lstm.weight_hh_l1_reverse, sd["module.lstm.weight_hh_l1_reverse"])


def test_dmin_against_hand_computation():
    torch.manual_seed(0)
    norm = m3dfel.DMIN(5)
    with torch.no_grad():
        norm.mean_weight.copy_(torch.tensor([0.3, -0.2]))
        norm.var_weight.copy_(torch.tensor([-1.0, 0.5]))
        norm.weight.copy_(torch.rand(1, 5, 1) + 0.5)
        norm.bias.copy_(torch.randn(1, 5, 1))
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    norm = norm.double()
    y = norm(x)
    mw = [math.exp(0.3) / (math.exp(0.3) + math.exp(-0.2)), math.exp(-0.2) / (math.exp(0.3) + math.exp(-0.2))]
    vw = [math.exp(-1.0) / (math.exp(-1.0) + math.exp(0.5)), math.exp(0.5) / (math.exp(-1.0) + math.exp(0.5))]
    for b in range(2):
        mean_in = [sum(x[b, n, c].item() for n in range(4)) / 4 for c in range(5)]
        var_in = [sum((x[b, n, c].item() - mean_in[c]) ** 2 for n in range(4)) / 3 for c in range(5)]  # unbiased
        mean_ln = sum(mean_in) / 5
        var_ln = sum(v + m * m for v, m in zip(var_in, mean_in, strict=True)) / 5 - mean_ln ** 2
        for c in range(5):
            mean = mw[0] * mean_in[c] + mw[1] * mean_ln
            var = vw[0] * var_in[c] + vw[1] * var_ln
            for n in range(4):
                want = (x[b, n, c].item() - mean) / math.sqrt(var + 1e-5) * norm.weight[0, c, 0].item() \
                    + norm.bias[0, c, 0].item()
                assert abs(y[b, n, c].item() - want) < 1e-6  # the mixing scalars are float32-rounded


def test_mhsa_against_per_head_formula():
    torch.manual_seed(0)
    qkv = torch.nn.Linear(16, 48, bias=False).double()
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    out = m3dfel.multi_head_self_attention(x, qkv, heads=4)
    q, k, v = qkv(x).chunk(3, -1)
    for h in range(4):
        s = slice(4 * h, 4 * h + 4)
        attn = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 2.0, -1)  # scale 1/sqrt(4)
        assert torch.allclose(out[..., s], attn @ v[..., s])


def test_forward_shapes_and_batch_one():
    model = build_model("m3dfel", 5, 8, 32).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 32, 32)).shape == (1, 5)  # the official .squeeze() would give (5,)
        a = model(torch.rand(3, 3, 8, 32, 32))
    assert a.shape == (3, 5)
    with pytest.raises(ValueError):
        build_model("m3dfel", 5, 4, 32)  # one instance: DMIN's unbiased variance is undefined


def test_schedule_equals_timm_cosine_scheduler_stepped_like_the_official_solver():
    from timm.scheduler import CosineLRScheduler

    epochs, iters, warm = 12, 5, 3
    cfg = SimpleNamespace(lr=5e-4, warmup_lr=0.0, min_lr=5e-6, warmup_epochs=warm)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = CosineLRScheduler(opt, t_initial=epochs * iters, lr_min=cfg.min_lr, warmup_lr_init=0.0,
                              warmup_t=warm * iters, cycle_limit=1, t_in_epochs=False)
    for epoch in range(epochs):
        for i in range(iters):
            used = opt.param_groups[0]["lr"]  # the lr this optimizer step trains with
            assert abs(m3dfel.m3dfel_timm_schedule(cfg, epoch, i, iters, epochs) - used) < 1e-12, (epoch, i)
            sched.step_update(epoch * iters + i)


def test_recipe():
    from bench.spec import resolve_spec

    spec = resolve_spec("m3dfel", "dfew")
    assert (spec.optim.name, spec.optim.lr, spec.optim.weight_decay, spec.optim.decay_norm_bias) == ("adamw", 5e-4, 0.05, True)
    assert (spec.train.epochs, spec.train.batch_size, spec.optim.warmup_epochs, spec.optim.min_lr) == (300, 256, 20, 5e-6)
    assert spec.reg.label_smoothing == 0.1 and spec.data.color_jitter == [0.4] * 4 and spec.data.rrc_scale == [0.08, 1.0]
    assert spec.train.selection == "best_on_test" and spec.data.mean is None and spec.data.sampler == "segment"
    assert resolve_spec("m3dfel", "ferv39k").optim == spec.optim


@pytest.mark.slow
def test_trains_on_synthetic_and_evaluates_an_official_checkpoint(tmp_path, data_home):
    env = {"DFER_DATA_HOME": str(data_home)}
    bench_cli(["run", "-m", "m3dfel", "-d", "synthetic", "--fold", "1", *TINY], tmp_path, env, check=True)
    (result,) = (tmp_path / "results" / "runs").rglob("result.json")
    r = json.loads(result.read_text())
    assert r["method"] == "m3dfel" and r["family"] == "3D CNN" and r["profile"]["params_total"] > 46e6
    assert r["protocol"]["init"]["kind"] == "scratch"

    torch.manual_seed(0)
    model = build_model("m3dfel", 7, 8, 32)
    sd = {"module." + k: v for k, v in model.state_dict().items()}
    path = tmp_path / "model_best.pth"
    torch.save({"epoch": 5, "state_dict": sd, "best_wa": 0.5, "best_ua": 0.4, "optimizer": {}}, path)
    proc = bench_cli(["eval", "--checkpoint", str(path), "-m", "m3dfel", "-d", "synthetic", "--fold", "1",
                      "--source", "official", "--workers", "0", "--json", *SETS], tmp_path, env, check=True)
    ev = json.loads(proc.stdout)
    assert ev["load_report"]["missing"] == [] and ev["load_report"]["unexpected"] == []
    assert ev["load_report"]["loaded"] == len(sd) and ev["load_report"]["notes"]["epoch"] == 5
    assert ev["metrics"]["n_test"] > 0
