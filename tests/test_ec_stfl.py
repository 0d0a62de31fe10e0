"""EC-STFL: the loss against a hand computation (loops over samples), the shared term through the criterion (its
own method and another method's features), the r3d_18 size from the official code, the released checkpoint's key
names (tests/data/ec_stfl_r3d18_keys.json) through `bench eval --source official`, and one real `bench run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.api import build_model
from bench.errors import BenchError
from bench.losses import LOSS_TERMS, criterion_for
from bench.methods.ec_stfl import ec_stfl
from bench.profile import count_macs, count_params
from bench.registry import METHODS
from bench.spec import resolve_spec
from bench.weights import apply_init
from tests.conftest import bench_cli, tiny_synthetic_run

KEYS = json.loads((Path(__file__).parent / "data" / "ec_stfl_r3d18_keys.json").read_text())["keys"]


def _by_hand(f: list[list[float]], y: list[int], batch_factor: bool = True, eps: float = 1e-6) -> float:
    """The notes' formula with plain Python loops."""
    b = len(f)
    total = 0.0
    for i in range(b):
        att_sum, n_pos, rep_sum, n_neg = 0.0, 0, 0.0, 0
        for j in range(b):
            d = sum(abs(a - c) for a, c in zip(f[i], f[j], strict=True))
            if y[j] == y[i]:  # i itself included (d = 0)
                att_sum += d
                n_pos += 1
            else:
                rep_sum += 1.0 / (d + eps)
                n_neg += 1
        total += (att_sum / (n_pos + eps)) * (rep_sum / (n_neg + 1 + eps))
    loss = total / b
    return loss / b if batch_factor else loss


@pytest.mark.parametrize("batch_factor", [True, False])
def test_loss_matches_a_hand_computation(batch_factor):
    torch.manual_seed(0)
    f = torch.randn(7, 5, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 2, 2, 2, 3])  # a singleton class (3) and one class alone on its side of the batch
    got = ec_stfl(f, y, batch_factor=batch_factor)
    want = _by_hand(f.tolist(), y.tolist(), batch_factor)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_loss_small_cases_by_hand():
    # two samples, different labels, L1 distance 3: A = 0/(1) = 0 -> loss 0
    f = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    assert ec_stfl(f, torch.tensor([0, 1])).item() == 0.0
    # same label, distance 3: A_i = 3 / 2, no negatives -> R = 0 -> loss 0
    assert ec_stfl(f, torch.tensor([1, 1])).item() == 0.0
    # [a, a', b]: a=(0,0), a'=(1,0), b=(0,2); A_a = 1/2, R_a = (1/2)/2; A_a' = 1/2, R_a' = (1/3)/2; A_b = 0
    f = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    want = (0.5 * 0.25 + 0.5 * (1 / 6)) / 3 / 3
    assert ec_stfl(f, torch.tensor([0, 0, 1])).item() == pytest.approx(want, rel=1e-5)


def test_gradients_are_finite_with_duplicate_features():
    f = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0], [3.0, 1.0]], requires_grad=True)
    loss = ec_stfl(f, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(f.grad).all()


def test_term_in_the_method_criterion_is_ce_plus_ten_times_the_loss():
    spec = resolve_spec("ec_stfl", "dfew")
    assert spec.model.loss["terms"]["ec_stfl"] == {"weight": 10.0, "batch_factor": True}
    criterion = criterion_for(METHODS.get("ec_stfl"), spec)
    torch.manual_seed(0)
    logits, feats = torch.randn(6, 7), torch.rand(6, 512)
    labels = torch.tensor([0, 1, 1, 3, 3, 3])
    targets = F.one_hot(labels, 7).float()
    loss, parts = criterion({"logits": logits, "features": feats}, targets)
    want = F.cross_entropy(logits, labels) + 10 * _by_hand(feats.tolist(), labels.tolist())
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert parts["ec_stfl"] == pytest.approx(10 * _by_hand(feats.tolist(), labels.tolist()), rel=1e-5)
    # the CE-only variant keeps the term at weight 0
    spec_ce = resolve_spec("ec_stfl.ce", "dfew")
    loss_ce, _ = criterion_for(METHODS.get("ec_stfl.ce"), spec_ce)({"logits": logits, "features": feats}, targets)
    assert loss_ce.item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)


def test_shared_term_on_another_methods_features():
    assert "ec_stfl" in LOSS_TERMS
    spec = resolve_spec("i3d", "synthetic", sets=["model.loss.terms.ec_stfl.weight=10",
                                                  "model.loss.terms.ec_stfl.batch_factor=false"])
    model = build_model("i3d", 5, 8, 32).train()
    loss, parts = criterion_for(METHODS.get("i3d"), spec)(model(torch.rand(4, 3, 8, 32, 32)),
                                                          F.one_hot(torch.tensor([0, 0, 2, 4]), 5).float())
    loss.backward()
    assert parts["ec_stfl"] > 0 and torch.isfinite(loss)
    with pytest.raises(BenchError, match="features"):
        LOSS_TERMS.get("ec_stfl")(torch.randn(2, 5), F.one_hot(torch.tensor([0, 1]), 5).float())


def test_size_matches_the_official_r3d18():
    model = build_model("ec_stfl", 7)
    total, trainable = count_params(model)
    assert abs(total / 33.17e6 - 1) < 0.01 and trainable == total
    assert abs(count_macs(model, (3, 16, 112, 112))["gmacs_fvcore"] / 40.74 - 1) < 0.01


def test_official_recipe():
    spec = resolve_spec("ec_stfl", "dfew")
    o, d, t = spec.optim, spec.data, spec.train
    assert (o.name, o.lr, o.momentum, o.weight_decay, o.schedule, o.step_epochs, o.gamma) == \
        ("sgd", 0.01, 0.9, 1e-4, "step", 50, 0.1)
    assert (d.frames, d.segment_len, d.size, d.rrc_scale, d.flip, d.mean) == (16, 2, 112, [0.08, 1.0], True, None)
    assert (t.epochs, t.batch_size, t.drop_last, t.selection, t.selection_metric) == \
        (200, 32, True, "best_on_test", "war")


def _official_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: (torch.tensor(3) if not shape else torch.randn(shape) * 0.01) for k, shape in KEYS.items()}


def test_released_state_dict_loads_completely(tmp_path):
    sd = _official_state_dict()
    path = tmp_path / "r3d_ECSTFL_dfew.pth"
    torch.save({"epoch": 120, "state_dict": sd, "best_acc": 64.08}, path)
    model = build_model("ec_stfl", 7)
    report = apply_init(model, METHODS.get("ec_stfl"), f"official:{path}")["report"]
    assert report["missing"] == [] and report["unexpected"] == [] and report["mismatched"] == []
    assert report["loaded"] == len(KEYS) == 122 and report["notes"]["best_acc"] == 64.08
    assert torch.equal(model.fc.weight, sd["fc.weight"])


@pytest.mark.slow
def test_bench_eval_with_the_released_checkpoint(tmp_path, data_home):
    path = tmp_path / "r3d_ECSTFL_dfew.pth"
    torch.save({"epoch": 120, "state_dict": _official_state_dict(), "best_acc": 64.08}, path)
    proc = bench_cli(["eval", "--checkpoint", str(path), "-m", "ec_stfl", "-d", "synthetic", "--fold", "1",
                      "--source", "official", "--workers", "0", "--json",
                      "--set", "data.options.clips_per_class=2", "--set", "data.options.folds=2",
                      "--set", "data.options.resolution=32", "--set", "data.frames=4", "--set", "data.size=32"],
                     tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    ev = json.loads(proc.stdout)
    report = ev["load_report"]
    assert report["missing"] == [] and report["unexpected"] == [] and report["loaded"] == len(KEYS)
    assert ev["metrics"]["n_test"] > 0


@pytest.mark.slow
def test_trains_on_synthetic(tmp_path, data_home):
    r, _ = tiny_synthetic_run("ec_stfl", tmp_path, data_home, "--batch-size", "2",
                               "--set", "data.options.resolution=32", "--set", "data.frames=4", "--set", "data.size=32")
    assert r["method"] == "ec_stfl" and r["spec"]["model"]["loss"]["terms"]["ec_stfl"]["weight"] == 10.0
