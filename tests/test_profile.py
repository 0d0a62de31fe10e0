"""bench.profile on small real models: params, analytic MACs, counter agreement, attention visibility, latency."""

from __future__ import annotations

import io
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench import profile as P


class TinyC3D(nn.Module):
    def __init__(self, num_classes: int = 7):
        super().__init__()
        self.c1 = nn.Conv3d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm3d(8)
        self.c2 = nn.Conv3d(8, 16, 3, stride=2, padding=1, bias=False)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.c1(x)))
        x = F.relu(self.c2(x))
        return self.fc(x.mean((2, 3, 4)))


class TinyAttention(nn.Module):
    """One self-attention block over tokens, attention written with torch.matmul (or SDPA)."""

    def __init__(self, dim: int = 64, heads: int = 4, sdpa: bool = False, num_classes: int = 7):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.heads, self.sdpa = heads, sdpa
        self.head = nn.Linear(dim, num_classes)
        self.pos = nn.Parameter(torch.zeros(1, 1, dim))  # a bare parameter (thop would miss it)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x + self.pos).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.sdpa:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            o = torch.matmul(torch.matmul(q, k.transpose(-2, -1)) * (c // self.heads) ** -0.5, v)
        return self.head(self.proj(o.transpose(1, 2).reshape(b, n, c)).mean(1))


def attention_macs(n: int, dim: int, heads: int) -> int:
    """q@k^T and attn@v: 2 * heads * n * n * (dim/heads) MACs."""
    return 2 * heads * n * n * (dim // heads)


FAST = dict(latency=False)


def test_params_independent_count():
    m = TinyC3D()
    expected = (8 * 3 * 27 + 8) + (2 * 8) + (16 * 8 * 27) + (16 * 7 + 7)
    m.fc.weight.requires_grad_(False)
    prof = P.profile_model(m, (3, 4, 16, 16), **FAST)
    assert prof["params_total"] == expected
    assert prof["params_trainable"] == expected - 16 * 7
    a = TinyAttention()
    assert P.count_params(a)[0] == 64 * 192 + 192 + 64 * 64 + 64 + 64 * 7 + 7 + 64


def test_linear_exact_macs():
    n = 10
    prof = P.profile_model(nn.Linear(64, 32), (n, 64), **FAST)
    assert prof["gmacs_fvcore"] * 1e9 == pytest.approx(64 * 32 * n, abs=0.5)
    assert prof["gmacs_flopcounter"] * 1e9 == pytest.approx(64 * 32 * n, abs=0.5)
    assert prof["gmacs"] == prof["gmacs_fvcore"] and not prof["flop_mismatch"]
    assert prof["flop_count_input"] == [1, n, 64]


def test_conv3d_analytic_and_agreement():
    m = TinyC3D()
    prof = P.profile_model(m, (3, 4, 16, 16), **FAST)
    c1 = (8 * 4 * 16 * 16) * 3 * 27
    c2 = (16 * 2 * 8 * 8) * 8 * 27
    fv = prof["fvcore_by_operator_macs"]
    assert fv["conv"] == c1 + c2
    assert prof["flopcounter_by_operator_macs"]["aten.convolution"] == c1 + c2
    assert prof["flop_disagreement"] < 0.03 and not prof["flop_mismatch"]
    assert "batch_norm" in fv  # fvcore counts norms, FlopCounterMode does not: the small expected gap


@pytest.mark.parametrize("sdpa", [False, True])
def test_attention_visible_to_both_counters(sdpa):
    n, dim, heads = 96, 64, 4
    prof = P.profile_model(TinyAttention(dim, heads, sdpa=sdpa), (n, dim), **FAST)
    att = attention_macs(n, dim, heads)
    fv, fc = prof["fvcore_by_operator_macs"], prof["flopcounter_by_operator_macs"]
    fv_att = fv.get("matmul", 0) + fv.get("bmm", 0) + fv.get("scaled_dot_product_attention", 0)
    fc_att = sum(v for k, v in fc.items() if "bmm" in k or "matmul" in k or "attention" in k)
    assert fv_att == att and fc_att == att
    if not sdpa:
        assert "matmul" in fv or "bmm" in fv
        assert any("bmm" in k for k in fc)
    assert prof["flop_disagreement"] < 0.03 and not prof["flop_mismatch"]
    linear = n * (dim * 3 * dim + dim * dim) + dim * 7
    assert prof["gmacs"] * 1e9 == pytest.approx(linear + att, abs=0.5)


def test_timm_fused_attention_is_unfused_for_counting():
    timm = pytest.importorskip("timm")
    vit = timm.models.VisionTransformer(img_size=64, patch_size=16, embed_dim=96, depth=2, num_heads=3,
                                        num_classes=7)
    for blk in vit.blocks:
        blk.attn.fused_attn = True  # as after a default build
    prof = P.profile_model(vit, (3, 64, 64), **FAST)
    assert prof["fused_attn_disabled_modules"] == 2
    assert all(blk.attn.fused_attn for blk in vit.blocks)  # restored afterwards
    assert prof["fvcore_by_operator_macs"].get("matmul", 0) == 2 * attention_macs(17, 96, 3)
    assert any("bmm" in k for k in prof["flopcounter_by_operator_macs"])
    assert not prof["flop_mismatch"]


def test_mismatch_flag_on_invisible_op():
    class Hidden(nn.Module):
        """A custom autograd.Function: traced as prim::PythonOp, invisible to fvcore, visible to the mode."""

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(32, 32)

        def forward(self, x):
            return _MM.apply(x, self.lin.weight) + 0 * self.lin(x)

    class _MM(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            return x @ w.t() @ w @ w.t()

        @staticmethod
        def backward(ctx, g):  # pragma: no cover - not used
            raise NotImplementedError

    prof = P.profile_model(Hidden(), (64, 32), **FAST)
    assert prof["flop_mismatch"] and prof["flop_disagreement"] > 0.03
    json.dumps(prof, allow_nan=False)


def test_cpu_peak_memory_sees_the_working_set():
    """Weights plus the peak of live tensors: a conv stack whose activations are 8 MiB each holds two at a time
    (conv + ReLU outputs, then ReLU + second conv outputs), measured after warm-up, where sampled RSS saw ~0."""
    model = nn.Sequential(nn.Conv3d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv3d(32, 32, 3, padding=1), nn.ReLU(),
                          nn.Conv3d(32, 32, 3, padding=1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(32, 7))
    activation_mb = 32 * 16 * 64 * 64 * 4 / 2**20  # 8 MiB
    lat = P.measure_latency(model, (3, 16, 64, 64), iters=3, throughput_batch=1)  # default warm-up
    weights_mb = sum(p.numel() * 4 for p in model.parameters()) / 2**20
    assert lat["peak_mem_kind"] == "cpu_weights_plus_profiler_peak_live_tensors"
    assert lat["peak_mem_mb"] == pytest.approx(weights_mb + 2 * activation_mb, rel=0.05)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_latency_fast_and_keyed(precision):
    prof = P.profile_model(TinyC3D(), (3, 4, 16, 16), precision=precision, views_per_video=4,
                           iters=3, warmup_iters=1, warmup_s=0.0, throughput_batch=2)
    lat = prof["latency"]
    assert lat["iters"] == 3 and lat["batch"] == 1 and lat["warmup_iters"] >= 1
    assert 0 < lat["median_ms"] <= lat["p90_ms"]
    assert lat["throughput_clips_per_s"] > 0 and lat["throughput_batch"] == 2
    assert lat["peak_mem_kind"].startswith("cpu_") and lat["peak_mem_mb"] >= 0
    key = prof["latency_key"]
    assert key == lat["key"] and key.startswith("cpu-") and key.endswith("_" + precision)
    assert f"{torch.get_num_threads()}t" in key and "pt" in key
    assert prof["gmacs_per_video"] == pytest.approx(4 * prof["gmacs"])
    json.dumps(prof, allow_nan=False)


def test_bad_precision():
    with pytest.raises(ValueError):
        P.profile_model(nn.Linear(2, 2), (2,), precision="fp8", latency=False)


def test_profile_method_and_table():
    from bench.api import InputSpec, Paper, Recipe, register_method
    from bench.registry import METHODS

    name = "_test_profile_tiny3d"
    if name not in METHODS:
        @register_method(name, family="test", input=InputSpec(frames=4, size=16), paper=Paper("t", "t", "t", 2026),
                         recipe=Recipe(defaults={"data": {"test_views": 2, "test_crops": 3}}))
        def _build(num_classes: int, frames: int, size: int):
            return TinyC3D(num_classes)

    prof = P.profile_method(name, num_classes=11, latency=False)
    assert prof["method"] == name and prof["input_shape"] == [3, 4, 16, 16]
    assert prof["views_per_video"] == 6.0 and prof["views_source"] == "recipe test views"
    assert prof["test_views"] == "2 clips x 3 crops"
    assert prof["params_total"] == (8 * 3 * 27 + 8) + 16 + 16 * 8 * 27 + 16 * 11 + 11
    lat = P.profile_model(TinyC3D(), (3, 4, 16, 16), iters=2, warmup_iters=1, warmup_s=0.0, throughput_batch=2)
    json.dumps([prof, lat], allow_nan=False)

    from rich.console import Console

    table = P.format_profile_table([prof, lat])
    assert table.row_count == 2
    buf = io.StringIO()
    Console(file=buf, width=250).print(table)
    text = buf.getvalue()
    assert name in text and "4x16x16" in text and lat["latency_key"][:20] in text


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_recurrent_layers_counted_by_both(cls):
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = cls(32, 48, num_layers=2, batch_first=True, bidirectional=True)

        def forward(self, x):
            return self.rnn(x)[0]

    t, i, h, gates = 10, 32, 48, 4 if cls is nn.LSTM else 3
    layer1 = 2 * (gates * h * i + gates * h * h)  # two directions
    layer2 = 2 * (gates * h * 2 * h + gates * h * h)  # input is the concatenated directions
    prof = P.profile_model(Seq(), (t, i), latency=False)
    assert prof["gmacs_fvcore"] * 1e9 == pytest.approx(t * (layer1 + layer2), abs=0.5)
    assert prof["gmacs_flopcounter"] * 1e9 == pytest.approx(t * (layer1 + layer2), abs=0.5)
    assert not prof["fvcore_unsupported_ops"]


def test_multihead_attention_fast_path_is_counted():
    """nn.MultiheadAttention in eval/no_grad takes a fused fast path that no counter sees; counting turns it off,
    so a TransformerEncoderLayer's attention and projections are counted (analytic MACs, both counters)."""
    d, n, ff = 32, 10, 64
    layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=ff, batch_first=True).eval()
    macs = P.count_macs(layer, (n, d))
    expected = n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * ff  # qkv, scores+values, out-proj, FFN
    assert macs["gmacs_flopcounter"] * 1e9 == pytest.approx(expected, rel=0.02)
    assert macs["gmacs_fvcore"] * 1e9 == pytest.approx(expected, rel=0.05)
    assert torch.backends.mha.get_fastpath_enabled()  # restored


@pytest.mark.slow
def test_bench_profile_glob_json_matches_the_measured_sizes(tmp_path):
    """`bench profile -m 'r18_*' --json` through the installed script: one profile per matching method at its own
    input, within 1% of the figures measured from the official code (baselines.md: ResNet-18+LSTM 13.28 M /
    7.78 G; ResNet-18+GRU 12.76 M / 7.80 G at 16x112²; the DFEW code's ResLSTM 17,388,871 / 9.12 G + the LSTM's
    0.055 G), each also written to results/profiles."""
    from tests.conftest import bench_cli

    proc = bench_cli(["profile", "-m", "r18_*", "--no-latency", "--json"], tmp_path, check=True)
    profiles = {p["method"]: p for p in json.loads(proc.stdout)}
    assert sorted(profiles) == ["r18_gru", "r18_lstm", "r18_lstm512"]
    sizes = {"r18_lstm512": (13.28, 7.78), "r18_gru": (12.76, 7.80), "r18_lstm": (17.388871, 9.175)}
    for name, (params_m, gmacs) in sizes.items():
        p = profiles[name]
        assert abs(p["params_total"] / 1e6 / params_m - 1) < 0.01, (name, p["params_total"])
        assert abs(p["gmacs"] / gmacs - 1) < 0.01, (name, p["gmacs"])
    assert len(list((tmp_path / "results").rglob("*.json"))) == 3
