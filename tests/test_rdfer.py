"""RDFER (reimplementation from the paper's description): its size at 16x112² (measured on this code: there is no
official code), the Kinetics-400 source, the multi-clip contract, the key-instance pooling and the hard / noisy
sample-weighting rule against a hand-built batch, and one real `bench run` with data.train_clips=2."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench.api import build_model
from bench.methods import rdfer
from bench.methods.rdfer import EASY, HARD, NOISY, OTHER
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.weights import apply_init
from tests.conftest import tiny_synthetic_run

DATA = Path(__file__).parent / "data"


def _spec(**loss) -> SimpleNamespace:
    return SimpleNamespace(model=SimpleNamespace(loss=loss))


@pytest.mark.slow
def test_size_at_the_m3dfel_input():
    model = build_model("rdfer", 7)
    total, trainable = count_params(model)
    assert total == trainable == 53_130_187
    macs = count_macs(model, (3, 16, 112, 112))
    assert abs(macs["gmacs_fvcore"] / 43.26 - 1) < 0.01 and macs["flop_disagreement"] < 0.01
    assert "matmul" in macs["fvcore_by_operator_macs"] and macs["fvcore_by_operator_macs"]["lstm"] > 0


def test_kinetics400_source_fills_the_instance_backbone(tmp_path):
    facts = json.loads((DATA / "m3dfel_r3d18_k400_keys.json").read_text())
    g = torch.Generator().manual_seed(0)
    k400 = {k: torch.randn(*v, generator=g) if v else torch.tensor(3) for k, v in facts["r3d_keys"].items()}
    path = tmp_path / "r3d_18-b3b3357e.pth"
    torch.save(k400, path)
    model = build_model("rdfer", 7, 8, 32)
    report = apply_init(model, METHODS.get("rdfer"), f"kinetics400:{path}")["report"]
    assert report["unexpected"] == [] and report["mismatched"] == [] and report["loaded"] == 120
    assert sorted(report["notes"]["dropped"]) == ["fc.bias", "fc.weight"]
    assert all(not k.startswith("features.") for k in report["missing"]) and "step_count" in report["missing"]
    assert torch.equal(model.state_dict()["features.4.1.conv2.0.weight"], k400["layer4.1.conv2.0.weight"])


def test_multi_clip_contract_and_step_counter():
    torch.manual_seed(0)
    model = build_model("rdfer", 5, 8, 32)
    x = torch.rand(2, 2, 3, 8, 32, 32)  # (B, n clips, C, T, H, W)
    model.train()
    out = model(x)
    assert out["clip_logits"].shape == (2, 2, 5) and out["logits"].shape == (2, 5)
    assert torch.allclose(out["logits"], out["clip_logits"].mean(1))
    assert out["instance_logits"].shape == (2, 2, 2, 5) and int(out["step"]) == 0
    single = model(x[:, 0])
    assert single["logits"].shape == (2, 5) and "clip_logits" not in single and int(single["step"]) == 1
    assert int(model.state_dict()["step_count"]) == 2  # kept in checkpoints: a resumed run keeps its warm-up count
    model.eval()
    with torch.no_grad():
        both = model(x)
        per_clip = torch.stack([model(x[:, i]) for i in range(2)], 1)
    assert both.shape == (2, 5) and torch.allclose(both, per_clip.mean(1), atol=1e-5)
    assert int(model.step_count) == 2  # eval forwards do not count


def test_soft_key_instance_pooling_against_hand_computation():
    torch.manual_seed(0)
    model = build_model("rdfer", 3, 16, 32, key_tau=0.2, short_window=2).eval()
    with torch.no_grad():
        logits, inst, a = model.clip_forward(torch.rand(2, 3, 16, 32, 32))
    for b in range(2):
        conf = [max(math.exp(v) for v in row) / sum(math.exp(v) for v in row) for row in inst[b].tolist()]
        z = [math.exp(c / 0.2) for c in conf]
        want = [v / sum(z) for v in z]
        assert a[b].tolist() == pytest.approx(want, abs=1e-6)
        for k in range(3):
            assert logits[b, k].item() == pytest.approx(sum(want[n] * inst[b, n, k].item() for n in range(4)), abs=1e-5)
    top = build_model("rdfer", 3, 16, 32, key_pool="topk", key_topk=1).eval()
    with torch.no_grad():
        _, inst, a = top.clip_forward(torch.rand(1, 3, 16, 32, 32))
    assert a.sum().item() == pytest.approx(1.0) and a[0, inst[0].softmax(-1).amax(-1).argmax()].item() == 1.0


# ----------------------------------------------------------------------------------------------------------
# the hard / noisy rule on a hand-built batch (K = 3 classes, n = 2 clips)

CLIP_LOGITS = torch.tensor([
    [[4.0, 0.0, 0.0], [3.0, 0.0, 0.0]],  # y=0: both clips predict 0            -> easy
    [[0.0, 3.0, 0.0], [0.0, 0.0, 2.5]],  # y=1: clips disagree, clip 0 says 1   -> hard
    [[0.0, 0.0, 5.0], [0.0, 0.0, 4.0]],  # y=0: both say 2 with p > 0.96        -> noisy
    [[0.1, 0.0, 0.3], [0.0, 0.0, 0.2]],  # y=1: both say 2 but p(2) ~ 0.38      -> other (unsure, not noisy)
    [[3.0, 0.0, 0.0], [0.0, 2.5, 0.0]],  # y=2: clips disagree, none says 2     -> other
    [[0.0, 0.0, 2.0], [2.5, 0.0, 0.0]],  # y=0: clips disagree, clip 1 says 0   -> hard
])
LABELS = torch.tensor([0, 1, 0, 1, 2, 0])
CATEGORIES = [EASY, HARD, NOISY, OTHER, OTHER, HARD]
KEY_CLIP = [0, 0, 0, 0, 0, 1]  # the more peaked clip of each sample (lowest entropy)


def _smoothed(labels: torch.Tensor, k: int = 3, eps: float = 0.1) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, k).float() * (1 - eps) + eps / k


def _hand_ce(logits: list[float], target: list[float]) -> float:
    lse = math.log(sum(math.exp(v) for v in logits))
    return -sum(t * (v - lse) for t, v in zip(target, logits, strict=True))


def test_categories_of_the_hand_built_batch():
    assert rdfer.categorize(CLIP_LOGITS, LABELS).tolist() == CATEGORIES
    # a stricter noisy threshold turns the confident-wrong sample into 'other'
    assert rdfer.categorize(CLIP_LOGITS, LABELS, noisy_conf=0.99)[2].item() == OTHER
    # js agreement: identical posteriors agree (A = 1); the hard samples' clips are far apart
    score, m = rdfer.agreement_score(torch.stack([CLIP_LOGITS[:, 0]] * 2, 1).softmax(-1), "js")
    assert torch.allclose(score, torch.ones(6)) and m.tolist() == [0, 1, 2, 2, 0, 2]
    assert rdfer.categorize(CLIP_LOGITS, LABELS, agreement="js").tolist()[:3] == [EASY, HARD, NOISY]


@pytest.mark.parametrize("reduction", ["mean", "normalized"])
def test_weighted_loss_against_hand_computation(reduction):
    targets = _smoothed(LABELS)
    crit = rdfer.rdfer_criterion(_spec(warmup_steps=10, w_hard=2.0, w_noisy=0.1, reduction=reduction))
    weight = {EASY: 1.0, HARD: 2.0, NOISY: 0.1, OTHER: 1.0}
    ce = [_hand_ce(CLIP_LOGITS[b, KEY_CLIP[b]].tolist(), targets[b].tolist()) for b in range(6)]
    w = [weight[c] for c in CATEGORIES]
    out = {"logits": CLIP_LOGITS.mean(1), "clip_logits": CLIP_LOGITS, "step": torch.tensor(10)}
    loss, parts = crit(out, targets)
    want = sum(a * b for a, b in zip(w, ce, strict=True)) / (sum(w) if reduction == "normalized" else 6)
    assert loss.item() == pytest.approx(want, rel=1e-5) and parts["weighting"] == 1.0
    assert parts["hard"] == pytest.approx(2 / 6) and parts["noisy"] == pytest.approx(1 / 6)
    assert parts["easy"] == pytest.approx(1 / 6) and parts["other"] == pytest.approx(2 / 6)
    # before the warm-up ends: plain CE on the key clips, categories still logged
    loss, parts = crit({**out, "step": torch.tensor(9)}, targets)
    assert loss.item() == pytest.approx(sum(ce) / 6, rel=1e-5) and parts["weighting"] == 0.0 and parts["hard"] > 0


def test_ce_targets_and_single_clip_fallback():
    targets = _smoothed(LABELS)
    out = {"logits": CLIP_LOGITS.mean(1), "clip_logits": CLIP_LOGITS, "step": torch.tensor(0)}  # in warm-up
    mean_logits = rdfer.rdfer_criterion(_spec(ce_on="mean_logits", warmup_steps=1))(out, targets)[0]
    want = sum(_hand_ce(CLIP_LOGITS[b].mean(0).tolist(), targets[b].tolist()) for b in range(6)) / 6
    assert mean_logits.item() == pytest.approx(want, rel=1e-5)
    clips = rdfer.rdfer_criterion(_spec(ce_on="clips", warmup_steps=1))(out, targets)[0]
    want = sum(_hand_ce(CLIP_LOGITS[b, i].tolist(), targets[b].tolist()) for b in range(6) for i in range(2)) / 12
    assert clips.item() == pytest.approx(want, rel=1e-5)
    # a 5-D batch (eval-style or train_clips=1): plain CE, no categories
    loss, parts = rdfer.rdfer_criterion(_spec())({"logits": CLIP_LOGITS[:, 0], "step": torch.tensor(99)}, targets)
    want = sum(_hand_ce(CLIP_LOGITS[b, 0].tolist(), targets[b].tolist()) for b in range(6)) / 6
    assert loss.item() == pytest.approx(want, rel=1e-5) and "hard" not in parts
    with pytest.raises(Exception, match="unknown"):
        rdfer.rdfer_criterion(_spec(w_hrad=3.0))


def test_recipe_is_m3dfels_with_two_clips():
    from bench.spec import resolve_spec

    r, m = resolve_spec("rdfer", "dfew"), resolve_spec("m3dfel", "dfew")
    assert r.optim == m.optim and r.reg == m.reg and r.train == m.train
    assert r.data.train_clips == 2 and m.data.train_clips == 1 and r.model.loss["warmup_steps"] == 720
    assert resolve_spec("rdfer", "ferv39k").model.loss["warmup_steps"] == 2420
    assert resolve_spec("rdfer.no_weighting", "dfew").model.loss["w_noisy"] == 1.0


@pytest.mark.slow
def test_trains_on_synthetic_with_two_clips(tmp_path, data_home):
    r, result = tiny_synthetic_run("rdfer", tmp_path, data_home, "--batch-size", "2",
                                   "--set", "data.options.resolution=32", "--set", "data.frames=8",
                                   "--set", "data.size=32", "--set", "model.loss.warmup_steps=2")
    assert r["method"] == "rdfer" and r["family"] == "robust" and r["spec"]["data"]["train_clips"] == 2
    lines = [json.loads(x) for x in (result.parent / "metrics.jsonl").read_text().splitlines()]
    parts = lines[-1]["train_loss_parts"]
    assert {"easy", "hard", "noisy", "other", "weighting"} <= set(parts) and 0 < parts["weighting"] <= 1
    assert sum(parts[k] for k in ("easy", "hard", "noisy", "other")) == pytest.approx(1.0)
