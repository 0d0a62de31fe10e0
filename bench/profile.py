"""The cost of a method: parameters, MACs per clip (two counters), latency, throughput and peak memory.

Why two FLOP counters (design notes §4, §6.5): DFER papers report "GFLOPs" for one clip at batch 1 in the
multiply-add (MAC) convention, which is what fvcore's `FlopCountAnalysis` counts. fvcore traces with
`torch.jit` and silently skips operators it has no handler for; `torch.utils.flop_counter.FlopCounterMode`
counts eagerly at the dispatcher (2 FLOPs per MAC). Both are run; `gmacs` is the fvcore figure (the
field's convention) and a disagreement above 3 % sets `flop_mismatch`, which catches invisible attention,
custom kernels and untraceable code.

Why fused attention is turned off for counting: timm's `Attention` modules call
`F.scaled_dot_product_attention` when `fused_attn` is on. Stock fvcore has no handler for that operator and
would count attention as zero (a ViT-S/16 loses ~8 % of its MACs, a 800-token video ViT ~25 %). The
`fused_attn` attribute of every module that has one is therefore set to False while counting (the same
effect as `TIMM_FUSED_ATTN=0` before timm is imported, or `timm.layers.set_fused_attn(False)` before the
model is built, but it also works on a model built already), then restored, so latency is measured with
the kernels the model really uses. As a safety net for non-timm code, an fvcore handler for
`aten::scaled_dot_product_attention` is registered with the same MAC count FlopCounterMode uses, and
FlopCounterMode gets a formula for the CPU flash kernel where the installed torch lacks one. Recurrent
layers (LSTM/GRU, the CNN+RNN family) are invisible to both stock counters; both get a handler here.

Latency is only comparable within one `latency_key` (device slug + torch version + precision).
"""

from __future__ import annotations

import contextlib
import logging
import math
import platform
import re
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

FLOP_MISMATCH_TOL = 0.03  # relative disagreement between the two counters that sets `flop_mismatch`
PRECISIONS = ("fp32", "bf16", "fp16")

# ----------------------------------------------------------------------------------------------------------
# helpers


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) = sum of numel over unique parameters (never thop's module-rule count)."""
    params = list(model.parameters())  # parameters() already de-duplicates shared tensors
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return int(total), int(trainable)


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)", "", text.lower())
    text = re.sub(r"\b(cpu|processor|with|radeon graphics)\b", "", text)
    text = re.sub(r"@.*$", "", text)  # nominal clock
    return re.sub(r"[^a-z0-9.]+", "-", text).strip("-.")[:48] or "unknown"


def _cpu_model_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def device_slug(device: str | torch.device = "cpu") -> str:
    """'cpu-<model>-<threads>t' or 'cuda-<gpu name>': the hardware part of a latency key."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return "cuda-" + _slug(torch.cuda.get_device_name(dev))
    return f"cpu-{_slug(_cpu_model_name())}-{torch.get_num_threads()}t"


def latency_key(device: str | torch.device = "cpu", precision: str = "fp32") -> str:
    """Latencies are only ever compared between profiles with the same key."""
    torch_v = re.sub(r"[^A-Za-z0-9.]+", "-", torch.__version__)
    return f"{device_slug(device)}_pt{torch_v}_{precision}"


class _LogitsOnly(nn.Module):
    """Tracing needs a tensor output; methods may return a tuple/dict whose logits come first."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from bench.api import logits_of

        return logits_of(self.model(x))


@contextlib.contextmanager
def _unfused_attention(model: nn.Module) -> Iterator[int]:
    """Temporarily set `fused_attn=False` on every module that has the flag (timm attention blocks), and turn off
    nn.MultiheadAttention's inference fast path, whose fused kernel (aten::_native_multi_head_attention) neither
    counter sees (an open_clip / nn.TransformerEncoderLayer block would otherwise lose its projections too)."""
    saved = []
    for m in model.modules():
        if isinstance(getattr(m, "fused_attn", None), bool):
            saved.append((m, m.fused_attn))
            m.fused_attn = False
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield len(saved)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for m, v in saved:
            m.fused_attn = v


def _sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for aten::scaled_dot_product_attention: q@k^T + attn@v MACs (as FlopCounterMode / 2)."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(i) for i in inputs[:3])
    batch = math.prod(q[:-2])
    lq, e = q[-2], q[-1]
    lk, ev = k[-2], v[-1]
    return int(batch * lq * lk * e + batch * lq * lk * ev)


def _rnn_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for aten::lstm/gru/rnn_*: every 2-D weight is applied once per time step and sample.

    MACs = (T*B) * sum(numel of W_ih and W_hh over layers and directions); biases and gate non-linearities
    are not counted (as for Linear). Stock fvcore counts recurrent layers as zero.
    """
    from fvcore.nn.jit_handles import get_shape

    x = get_shape(inputs[0])
    steps_x_batch = math.prod(x[:-1])
    weights = [get_shape(v) for v in inputs[2].node().inputs()]  # the prim::ListConstruct of params
    return int(steps_x_batch * sum(math.prod(w) for w in weights if w is not None and len(w) == 2))


def _fvcore_count(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Total MACs, per-operator MACs and unsupported-operator counts from fvcore, without its log noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import touches deprecated torch.jit APIs
        from fvcore.nn import FlopCountAnalysis

    loggers = [logging.getLogger(n) for n in ("fvcore", "fvcore.nn.jit_analysis")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings and fvcore's "unsupported operator" chatter
            fca = FlopCountAnalysis(model, (x,))
            fca.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop_jit)
            for op in ("aten::lstm", "aten::gru", "aten::rnn_tanh", "aten::rnn_relu"):
                fca.set_op_handle(op, _rnn_flop_jit)
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            total = int(fca.total())
            by_op = {str(k): int(v) for k, v in fca.by_operator().items()}
            unsupported = {str(k): int(v) for k, v in fca.unsupported_ops().items()}
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)
    return {"total": total, "by_operator": by_op, "unsupported": unsupported}


def _flopcounter_count(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """FlopCounterMode total and per-operator counts, converted to MACs (its native unit is 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode, flop_registry, sdpa_flop_count

    def cpu_sdpa(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
        return int(sdpa_flop_count(query_shape, key_shape, value_shape))

    # Some torch releases (pytorch #195460) have no formula for the CPU flash kernel and count SDPA as 0.
    custom = {}
    cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None and cpu_flash not in flop_registry and cpu_flash.default not in flop_registry:
        custom[cpu_flash] = cpu_sdpa
    def cpu_lstm_layer(input_shape: Any, w_ih: Any, w_hh: Any, *args: Any, **kwargs: Any) -> int:
        # one layer and direction of a CPU (oneDNN) LSTM; the layer runs over all T*B positions
        return 2 * math.prod(input_shape[:-1]) * (math.prod(w_ih) + math.prod(w_hh))

    mkldnn_rnn = getattr(torch.ops.aten, "mkldnn_rnn_layer", None)
    if mkldnn_rnn is not None and mkldnn_rnn not in flop_registry and mkldnn_rnn.default not in flop_registry:
        custom[mkldnn_rnn] = cpu_lstm_layer
    with FlopCounterMode(display=False, custom_mapping=custom) as fc:
        model(x)
    total = int(fc.get_total_flops())
    glob = fc.get_flop_counts().get("Global", {})
    by_op = {str(k): int(v) // 2 for k, v in glob.items()}
    return {"total_macs": total // 2, "total_flops": total, "by_operator": by_op}


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """MACs of one sample (batch 1 prepended to `input_shape`), eval mode, fp32, no_grad, on CPU."""
    was_training = model.training
    model.eval()
    wrapped = _LogitsOnly(model)
    x = torch.randn((1, *input_shape), dtype=torch.float32, device=_model_device(model))
    out: dict[str, Any] = {}
    try:
        with torch.no_grad(), _unfused_attention(model) as n_unfused:
            try:
                fv = _fvcore_count(wrapped, x)
                out["fvcore_error"] = None
            except Exception as e:  # an untraceable model must still get a (flagged) profile
                fv = {"total": None, "by_operator": {}, "unsupported": {}}
                out["fvcore_error"] = f"{type(e).__name__}: {e}"[:500]
            fc = _flopcounter_count(wrapped, x)
    finally:
        model.train(was_training)
    g_fv = fv["total"] / 1e9 if fv["total"] is not None else None
    g_fc = fc["total_macs"] / 1e9
    if g_fv is not None:
        denom = max(g_fv, g_fc)
        disagreement = abs(g_fv - g_fc) / denom if denom > 0 else 0.0
    else:
        disagreement = None
    out.update({
        "gmacs": g_fv if g_fv is not None else g_fc,
        "gmacs_source": "fvcore" if g_fv is not None else "flopcounter",
        "gmacs_fvcore": g_fv,
        "gmacs_flopcounter": g_fc,
        "flop_disagreement": disagreement,
        "flop_mismatch": disagreement is None or disagreement > FLOP_MISMATCH_TOL,
        "fvcore_unsupported_ops": fv["unsupported"],
        "fvcore_by_operator_macs": fv["by_operator"],
        "flopcounter_by_operator_macs": fc["by_operator"],
        "fused_attn_disabled_modules": n_unfused,
        "flop_count_input": [1, *input_shape],
    })
    return out


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


# ----------------------------------------------------------------------------------------------------------
# latency


def _cpu_peak_live_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes of tensors alive during one call on the CPU (activations and workspaces, not the weights).

    RSS cannot show this once the allocator has cached its pages (after warm-up, or in a process that already
    trained), so the allocations are read from the profiler: each op's own allocations at its start, each free
    where it happens, summed in time order. The CPU counterpart of `torch.cuda.max_memory_allocated` - base."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _autocast(dev: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=dev.type, dtype=dtype)
    return contextlib.nullcontext()


def _time_calls(fn: Callable[[], Any], dev: torch.device, iters: int) -> list[float]:
    times = []
    for _ in range(iters):
        _sync(dev)
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return times


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], *, device: str = "cpu",
                    precision: str = "fp32", throughput_batch: int = 8, warmup_iters: int | None = None,
                    warmup_s: float | None = None, iters: int | None = None,
                    throughput_iters: int | None = None) -> dict[str, Any]:
    """Batch-1 latency (median/p90 ms), clips/s at `throughput_batch`, and peak memory.

    Warm-up runs until both `warmup_iters` iterations and `warmup_s` seconds are done (defaults 10/1 s on
    CUDA, 3/0.5 s on CPU); each timed call is bracketed by `torch.cuda.synchronize()` on CUDA. On CUDA a
    throughput batch that runs out of memory is halved until it fits (timm's back-off).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    warmup_iters = warmup_iters if warmup_iters is not None else (10 if cuda else 3)
    warmup_s = warmup_s if warmup_s is not None else (1.0 if cuda else 0.5)
    iters = iters if iters is not None else (50 if cuda else 20)
    throughput_iters = throughput_iters if throughput_iters is not None else max(3, iters // 5)

    was_training = model.training
    model.eval().to(dev)
    cudnn_bench = torch.backends.cudnn.benchmark
    if cuda:
        torch.backends.cudnn.benchmark = True
    x1 = torch.randn((1, *input_shape), device=dev)
    try:
        with torch.inference_mode(), _autocast(dev, precision):
            def run1() -> Any:
                return model(x1)

            t_start, n = time.perf_counter(), 0
            while n < warmup_iters or time.perf_counter() - t_start < warmup_s:
                run1()
                n += 1
            _sync(dev)
            warm_done = n
            if cuda:
                torch.cuda.reset_peak_memory_stats(dev)
                base = torch.cuda.memory_allocated(dev)
                times = _time_calls(run1, dev, iters)
                peak_b, kind = torch.cuda.max_memory_allocated(dev), "cuda_max_memory_allocated"
                peak_delta = peak_b - base
            else:
                times = _time_calls(run1, dev, iters)
                # weights + the call's peak of live tensors: what cuda.max_memory_allocated reports on a GPU
                weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
                peak_b = peak_delta = weights + _cpu_peak_live_bytes(run1)
                kind = "cpu_weights_plus_profiler_peak_live_tensors"

            batch, tput, tput_times = throughput_batch, None, []
            while batch >= 1:
                try:
                    xb = torch.randn((batch, *input_shape), device=dev)
                    model(xb)  # one warm-up call at this batch size
                    tput_times = _time_calls(lambda xb=xb: model(xb), dev, throughput_iters)
                    tput = batch * len(tput_times) / sum(tput_times)
                    break
                except torch.cuda.OutOfMemoryError:
                    if not cuda:
                        raise
                    torch.cuda.empty_cache()
                    batch //= 2
    finally:
        torch.backends.cudnn.benchmark = cudnn_bench
        model.train(was_training)
    ms = sorted(t * 1e3 for t in times)
    p90 = ms[min(len(ms) - 1, math.ceil(0.9 * len(ms)) - 1)]
    return {
        "key": latency_key(dev, precision),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if cuda else _cpu_model_name(),
        "threads": torch.get_num_threads(),
        "precision": precision,
        "batch": 1,
        "warmup_iters": warm_done,
        "iters": iters,
        "median_ms": statistics.median(ms),
        "p90_ms": p90,
        "mean_ms": statistics.fmean(ms),
        "min_ms": ms[0],
        "throughput_batch": batch if tput is not None else None,
        "throughput_clips_per_s": tput,
        "throughput_iters": len(tput_times),
        "peak_mem_mb": peak_b / 2**20 if cuda else peak_delta / 2**20,
        "peak_mem_kind": kind,
    }


def measure_train_throughput(model: nn.Module, input_shape: tuple[int, ...], *, batch: int = 8,
                             device: str = "cpu", precision: str = "fp32", iters: int = 5,
                             warmup_iters: int = 2) -> dict[str, Any]:
    """Clips/s of full training steps (forward, summed-logit loss, backward, SGD update) on random clips already
    on `device`: the throughput `bench sweep --paper` turns into GPU-hours. The weights are restored after."""
    from bench.api import logits_of

    dev = torch.device(device)
    was_training = model.training
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.to(dev).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-6)
    x = torch.randn((batch, *input_shape), device=dev)

    def step() -> None:
        with _autocast(dev, precision):
            loss = logits_of(model(x)).float().logsumexp(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    try:
        for _ in range(warmup_iters):
            step()
        times = _time_calls(step, dev, iters)
    finally:
        model.load_state_dict(state)
        model.train(was_training)
    return {"key": latency_key(dev, precision), "device": str(dev), "precision": precision, "batch": batch,
            "iters": iters, "step_s_median": statistics.median(times),
            "clips_per_s": batch / statistics.median(times)}


# ----------------------------------------------------------------------------------------------------------
# public API


def profile_model(model: nn.Module, input_shape: tuple[int, ...], *, views_per_video: float = 1.0,
                  device: str = "cpu", precision: str = "fp32", latency: bool = True,
                  throughput_batch: int = 8, warmup_iters: int | None = None, warmup_s: float | None = None,
                  iters: int | None = None, train_batch: int | None = None) -> dict[str, Any]:
    """Params, MACs of one clip (fvcore + FlopCounterMode cross-check), optionally latency, and with
    `train_batch` the training throughput (clips/s of full steps at that batch).

    `input_shape` is the shape of ONE sample without the batch dimension, e.g. (3, 16, 112, 112) for a
    (B,C,T,H,W) video model; batch 1 is prepended for counting. MACs are always counted on CPU in fp32
    (the paper convention); latency runs on `device` in `precision`. Everything returned is JSON-safe.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    input_shape = tuple(int(s) for s in input_shape)
    total, trainable = count_params(model)
    orig_device = _model_device(model)
    model.to("cpu")
    macs = count_macs(model, input_shape)
    out: dict[str, Any] = {
        "params_total": total,
        "params_trainable": trainable,
        "input_shape": list(input_shape),
        **macs,
        "views_per_video": float(views_per_video),
        "gmacs_per_video": macs["gmacs"] * float(views_per_video),
        "precision": precision,
        "torch": torch.__version__,
        "latency_key": latency_key(device, precision),
        "latency": None,
        "train": None,
    }
    if train_batch:
        out["train"] = measure_train_throughput(model, input_shape, batch=train_batch, device=device,
                                                precision=precision)
    if latency:
        out["latency"] = measure_latency(model, input_shape, device=device, precision=precision,
                                         throughput_batch=throughput_batch, warmup_iters=warmup_iters,
                                         warmup_s=warmup_s, iters=iters)
    model.to(orig_device)
    return out


def profile_method(method_name: str, num_classes: int = 7, frames: int | None = None, size: int | None = None,
                   views_per_video: float | None = None, dataset: str | None = None, **kw: Any) -> dict[str, Any]:
    """Build a registered method at its own input (or at `dataset`'s recipe input, or `frames`/`size`) and
    profile it. `views_per_video` defaults to the test views of the recipe (temporal views x crops); for an
    "all windows" protocol it depends on the clip lengths, so 1.0 is used and `views_source` says so.
    Extra keyword arguments go to `profile_model`.
    """
    from bench.api import build_model
    from bench.registry import DATASETS, METHODS  # lazy: importing the registry loads every method module
    from bench.spec import default_data, describe_views, resolve_spec, views_of

    info = METHODS.get(method_name)
    if dataset is not None:
        data = resolve_spec(method_name, dataset).data
        class_names = DATASETS.get(dataset).classes or None
        num_classes = len(DATASETS.get(dataset).classes) or num_classes  # `folder`/`list` learn classes from data
    else:
        data, class_names = default_data(method_name), None
    frames, size = int(frames or data.frames), int(size or data.size)
    model = build_model(info, num_classes, frames, size, class_names)
    if views_per_video is not None:
        views, source = float(views_per_video), "argument"
    else:
        recipe_views = views_of(data)
        views, source = (recipe_views, "recipe test views") if recipe_views else \
            (1.0, "1.0: the recipe tests every window, a count that depends on the clip lengths")
    prof = profile_model(model, (info.input.channels, frames, size, size), views_per_video=views, **kw)
    return {
        "method": method_name,
        "family": info.family,
        "num_classes": num_classes,
        "frames": frames,
        "size": size,
        "test_views": describe_views(data),
        "views_source": source,
        "uses_attention": info.uses_attention,
        **prof,
    }


def profile_file(results: Any, profile: dict[str, Any]) -> Any:
    """Where `bench profile` keeps a profile: results/profiles/<method>/<C x T x H x W>__<latency key>.json."""
    from pathlib import Path

    key = (profile.get("latency") or {}).get("key") or profile.get("latency_key")
    shape = "x".join(str(s) for s in profile.get("input_shape", []))
    return Path(results) / "profiles" / profile["method"] / f"{shape}__{key}.json"


def format_profile_table(profiles: list[dict[str, Any]]) -> Any:
    """A rich Table of profiles; latencies are printed with their key so cross-device rows are not compared."""
    from rich.table import Table

    def f(x: Any, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    table = Table(title="Method cost (MACs: 1 clip, batch 1, fp32; GMACs = fvcore, MAC convention)")
    for col, justify in [("method", "left"), ("input", "left"), ("params (M)", "right"), ("GMACs", "right"),
                         ("FlopCounter/2", "right"), ("diff", "right"), ("views", "right"),
                         ("GMACs/video", "right"), ("lat. median (ms)", "right"), ("p90 (ms)", "right"),
                         ("clips/s", "right"), ("peak mem (MB)", "right"), ("latency key", "left")]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for i, p in enumerate(profiles):
        lat = p.get("latency") or {}
        diff = p.get("flop_disagreement")
        diff_s = "-" if diff is None else f"{100 * diff:.1f}%"
        if p.get("flop_mismatch"):
            diff_s = f"[bold red]{diff_s} ![/]"
        shape = p.get("input_shape") or []
        table.add_row(
            str(p.get("method", p.get("name", i))),
            "x".join(str(s) for s in shape[1:]) if len(shape) == 4 else "x".join(map(str, shape)),
            f(p.get("params_total", 0) / 1e6, ".2f"),
            f(p.get("gmacs"), ".3f"),
            f(p.get("gmacs_flopcounter"), ".3f"),
            diff_s,
            f(p.get("views_per_video"), "g"),
            f(p.get("gmacs_per_video"), ".2f"),
            f(lat.get("median_ms"), ".2f"),
            f(lat.get("p90_ms"), ".2f"),
            f(lat.get("throughput_clips_per_s"), ".1f"),
            f(lat.get("peak_mem_mb"), ".0f"),
            lat.get("key", p.get("latency_key", "-")) if lat else "-",
        )
    return table
