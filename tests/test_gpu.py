"""CUDA paths (marker `gpu`, skipped without CUDA; run with `pytest -m gpu` on a GPU machine, or
benchmarks/gpu_check.sh): first whether IFDD learns on `synthetic` under its CUDA recipe, then mixed-precision
train steps of IFDD and r3d18 with and without torch.compile, the device-side augmentation against the CPU
worker path, and the profile keyed by the CUDA device."""

from __future__ import annotations

import json

import pytest
import torch

from bench.api import build_model
from bench.losses import criterion_for
from bench.registry import METHODS
from bench.spec import resolve_spec
from tests.conftest import bench_cli

pytestmark = pytest.mark.gpu


def test_ifdd_learns_on_synthetic_under_its_cuda_recipe(tmp_path):
    """`bench run -m ifdd -d synthetic` on CUDA takes the recipe's on_cuda layer (112x112, 4x the clips, 30 epochs)
    and must leave chance and beat the static control trained on the same clips (issue: IFDD on synthetic)."""
    ifdd = resolve_spec("ifdd", "synthetic", sets=["train.device=cuda"])
    clips, res = ifdd.data.options["clips_per_class"], ifdd.data.options["resolution"]
    env = {"DFER_DATA_HOME": str(tmp_path / "data")}
    uar = {}
    same_clips = ["--set", f"data.options.clips_per_class={clips}", "--set", f"data.options.resolution={res}"]
    for method, extra in [("ifdd", []), ("static_r18", same_clips)]:
        bench_cli(["run", "-m", method, "-d", "synthetic", "--fold", "1", "--device", "cuda", "--no-progress",
                   "--no-latency", *extra], tmp_path, env, timeout=1800, check=True)
        (result,) = (tmp_path / "results" / "runs").rglob(f"{method}-*/result.json")
        uar[method] = 100 * json.loads(result.read_text())["metrics"]["uar"]
    print(f"synthetic fold 1 on CUDA, {clips} clips per class: UAR ifdd {uar['ifdd']:.1f}, static_r18 "
          f"{uar['static_r18']:.1f} (chance 14.3)")
    assert uar["ifdd"] > 14.29 + 10, uar
    assert uar["ifdd"] > uar["static_r18"], uar


@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compile"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize(("name", "frames", "size"), [("ifdd", 16, 112), ("r3d18", 16, 112)])
def test_mixed_precision_train_step(name, frames, size, precision, compile_):
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model(name, 7, frames, size).to(dev).train()
    step_model = torch.compile(model) if compile_ else model
    criterion = criterion_for(METHODS.get(name), resolve_spec(name, "dfew"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    x = torch.rand(2, 3, frames, size, size, device=dev)
    y = torch.nn.functional.one_hot(torch.tensor([0, 3], device=dev), 7).float()
    losses = []
    for _ in range(3):
        with torch.autocast("cuda", dtype=dtype):
            out = step_model(x)
        loss, _ = criterion(out, y)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss))
    assert losses[-1] < losses[0]  # the same batch three times: the loss goes down


def test_device_augmentation_matches_the_worker_path_within_one_level(tmp_path):
    """augment_batch on CUDA vs the CPU worker transform, same draws: equal within 1/255 (uint8 resize in float)."""
    from bench.data.loader import ClipDataset
    from bench.data.transforms import augment_batch
    from bench.registry import DATASETS

    m = DATASETS.get("synthetic").build_manifest(tmp_path / "syn", 1, {"clips_per_class": 2, "folds": 2,
                                                                         "resolution": 64})
    spec = resolve_spec("r3d18", "synthetic", sets=["data.color_jitter=[0.4,0.4,0.4,0.1]", "data.size=48"])
    recs = m.split("train")[:4]
    worker = ClipDataset(m, recs, spec.data, train=True, seed=0)
    device = ClipDataset(m, recs, spec.data, train=True, seed=0, augment_on="device")
    for i in range(len(recs)):
        ref = worker[i]["clip"]
        item = device.collate([device[i]])
        out = augment_batch(item["clip"].cuda(), item["aug"], item["sizes"], spec.data)[0].cpu()
        std = torch.tensor(spec.data.std).view(3, 1, 1, 1)
        assert torch.allclose(out, ref, atol=1.01 / 255 / float(std.min())), (out - ref).abs().max()


def test_profile_is_keyed_by_the_cuda_device():
    from bench.profile import profile_method

    prof = profile_method("r3d18", device="cuda", precision="bf16", iters=5, warmup_iters=2, warmup_s=0.0)
    lat = prof["latency"]
    assert lat["key"].startswith("cuda-") and lat["key"].endswith("_bf16") and lat["device"].startswith("cuda")
    assert lat["median_ms"] > 0 and lat["peak_mem_kind"] == "cuda_max_memory_allocated"
    assert prof["gmacs"] == pytest.approx(8.32, rel=0.01)  # counted on CPU in fp32 whatever the device
