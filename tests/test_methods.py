"""Every registered method: builds, trains one step, and its cost is counted consistently.

FLOPs are counted twice, by fvcore and by torch's FlopCounterMode / 2; they must agree within 3% for every
method, and attention must be visible to the counter for methods that declare it. Methods are checked at
their own input, except the IFDD family (37 M params, ~48 GMACs at 16x224²), which is checked at 16x64² to
keep CI short; tests/test_ifdd.py checks IFDD's exact counts at its released input.
"""

from __future__ import annotations

import pytest
import torch

from bench.profile import count_macs
from bench.registry import METHODS
from bench.spec import resolve_spec
from bench.train import soft_target_ce


def _test_input(name: str) -> tuple[int, int]:
    info = METHODS.get(name)
    return (info.input.frames, 64) if name.split(".")[0] == "ifdd" else (info.input.frames, info.input.size)


@pytest.mark.parametrize("name", METHODS.names())
def test_builds_trains_and_counts_consistently(name):
    info = METHODS.get(name)
    frames, size = _test_input(name)
    model = info.build(num_classes=5, frames=frames, size=size)

    # one training step through the method's own criterion, as the trainer calls it
    criterion = (info.criterion or soft_target_ce)(resolve_spec(name, "synthetic"))
    x = torch.rand(2, 3, frames, 32 if size > 64 else size, 32 if size > 64 else size)
    if name.split(".")[0] == "ifdd":
        x = torch.rand(2, 3, frames, size, size)
    targets = torch.nn.functional.one_hot(torch.tensor([0, 3]), 5).float()
    model.train()
    loss, parts = criterion(model(x), targets)
    loss.backward()
    assert torch.isfinite(loss) and parts
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 5)

    # the cost of one clip, counted by both counters
    macs = count_macs(model, (3, frames, size, size))
    assert macs["gmacs_fvcore"] is not None, macs.get("fvcore_error")
    assert macs["flop_disagreement"] < 0.03, (macs["gmacs_fvcore"], macs["gmacs_flopcounter"])
    if info.uses_attention:
        ops = " ".join(macs["flopcounter_by_operator_macs"]) + " ".join(macs["fvcore_by_operator_macs"])
        assert any(k in ops for k in ("bmm", "matmul", "einsum", "scaled_dot_product")), ops


@pytest.mark.parametrize(("name", "params_m", "gmacs"), [("r3d18", 33.21, 8.32), ("r18_lstm", 13.28, 7.78)])
def test_baseline_sizes_match_dfer_tables(name, params_m, gmacs):
    """baselines.md: Hara 3D ResNet-18 33.21 M / 8.32 G; ResNet-18+LSTM 13.28 M / 7.78 G at 16x112².

    The tables' 7.78 G leaves the LSTM out (fvcore skips aten::lstm); our profile counts its 0.03 G, hence
    the 0.5% tolerance."""
    model = METHODS.get(name).build(num_classes=7)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / 1e6 - params_m) < 0.01
    assert abs(count_macs(model, (3, 16, 112, 112))["gmacs_fvcore"] / gmacs - 1) < 0.005
