"""One run = one spec = one process (or one torchrun job): data -> model -> train -> evaluate -> result store.

Everything a result depends on is seeded from the spec (sample augmentation, loader order, mixup draws, model
init), and `checkpoints/last.pt` holds model, optimizer, scaler, schedule position, epoch and every RNG state,
written atomically at the end of each epoch. Re-running the same spec resumes from it, so a killed run
finishes with the same metrics as an uninterrupted one; a completed run is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench.api import ClipRecord, Manifest, MethodInfo, logits_of
from bench.data.loader import ClipDataset, make_loader
from bench.data.roots import is_present, missing_message, resolve_root
from bench.data.sampling import views_per_video
from bench.data.transforms import augment_batch
from bench.errors import BenchError, DataError
from bench.evaluate import autocast_ctx, evaluate, save_predictions
from bench.mixup import VideoMixup
from bench.optim import SCHEDULES, build_optimizer, set_lr
from bench.registry import DATASETS, METHODS
from bench.spec import RunSpec
from bench.store import (
    SCHEMA_VERSION,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    environment,
    now_iso,
    run_dir,
    set_status,
)
from bench.weights import apply_init

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- setup helpers
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return torch.device(name)


def resolve_augment_on(name: str, device: torch.device) -> str:
    """`auto` puts the training augmentation on the device only for CUDA: on a CPU run the loader's worker
    processes do it in parallel, the main process would do it serially."""
    if name == "auto":
        return "device" if device.type == "cuda" else "worker"
    return name


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [np_state[0], np_state[1].tolist(), np_state[2], np_state[3], np_state[4]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_to_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def soft_target_ce(spec: RunSpec):
    """Default criterion: cross-entropy against (mixed, smoothed) soft targets, on the logits."""

    def fn(outputs, targets):
        logits = logits_of(outputs)
        loss = torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        return loss, {"ce": float(loss.detach())}

    return fn


def load_manifest(spec: RunSpec) -> Manifest:
    """The dataset resolved for the spec's fold; a clear message with the download route when data is missing."""
    dinfo = DATASETS.get(spec.dataset)
    root, source = resolve_root(dinfo, spec.data.root)
    if not dinfo.generated and not is_present(dinfo, root):
        raise DataError(missing_message(dinfo, root, source))
    return dinfo.build_manifest(root, spec.fold, dict(spec.data.options))


def carve_val(train: list[ClipRecord], fraction: float, seed: int) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """A stratified validation split taken from train (deterministic by seed), for best_on_val selection."""
    rng = random.Random(seed)
    by_class: dict[int, list[ClipRecord]] = {}
    for r in train:
        by_class.setdefault(r.label, []).append(r)
    keep, val = [], []
    for label in sorted(by_class):
        items = by_class[label][:]
        rng.shuffle(items)
        n = int(round(len(items) * fraction))
        val += [ClipRecord(r.clip_id, r.rel_path, r.num_frames, r.label, "val", r.fold) for r in items[:n]]
        keep += items[n:]
    return keep, val


def make_progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, disable=not enabled,
        transient=False,
    )


# ---------------------------------------------------------------------------------------------- the run
@dataclass
class RunState:
    epoch: int = 0  # completed epochs
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"value": -1.0, "epoch": None})


class Run:
    """Owns one run directory. `execute()` trains (resuming if possible), evaluates and writes result.json."""

    def __init__(self, spec: RunSpec, results: Path = Path("results"), *, console: Console | None = None,
                 progress: bool = True, profile_latency: bool = True):
        self.spec = spec
        self.info: MethodInfo = METHODS.get(spec.method)
        self.dir = run_dir(Path(results), spec)
        self.console = console or Console(stderr=True)
        self.show_progress = progress
        self.profile_latency = profile_latency
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))

    @property
    def result_path(self) -> Path:
        return self.dir / "result.json"

    def completed_result(self) -> dict | None:
        """The run's result when it already completed on the data the spec resolves to now, else None; a result
        computed on other data (same spec hash) stops with a one-line error instead of being reused."""
        if not self.result_path.is_file():
            return None
        done = json.loads(self.result_path.read_text())
        self._check_same_data(done.get("env", {}).get("manifest_sha256"), self.result_path)
        return done

    def execute(self) -> dict:
        done = self.completed_result()
        if done is not None:
            self.console.print(f"[green]already completed[/]: {self.dir} (same spec hash, same data); skipping")
            return done
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            atomic_write_text(self.dir / "spec.yaml", self.spec.to_yaml())
            set_status(self.dir, "running")
            (self.dir / "error.txt").unlink(missing_ok=True)
        try:
            result = self._execute()
        except KeyboardInterrupt:
            if self.rank == 0:
                set_status(self.dir, "interrupted")
            raise
        except BaseException as e:
            if self.rank == 0:
                set_status(self.dir, "failed")
                atomic_write_text(self.dir / "error.txt", "".join(traceback.format_exception(e)))
            raise
        return result

    # ------------------------------------------------------------------------------------------
    def _execute(self) -> dict:
        spec, info = self.spec, self.info
        t_start = time.time()
        device = self._setup_distributed(resolve_device(spec.train.device))
        seed_everything(spec.seed, spec.train.deterministic)

        manifest = load_manifest(spec)
        self.manifest, self.manifest_sha256 = manifest, manifest.checksum()
        classes = manifest.classes
        train_recs, test_recs, val_recs = manifest.split("train"), manifest.split("test"), manifest.split("val")
        if not val_recs and spec.train.val_fraction > 0:
            train_recs, val_recs = carve_val(train_recs, spec.train.val_fraction, spec.seed)
        if spec.train.selection == "best_on_val" and not val_recs:
            raise BenchError(f"selection best_on_val needs a validation split; {spec.dataset} has none: "
                             "add --set train.val_fraction=0.1 or use --set train.selection=last")
        if not train_recs or not test_recs:
            raise DataError(f"{spec.dataset}: fold {spec.fold} has {len(train_recs)} train and {len(test_recs)} test clips")
        on_bad = spec.data.options.get("on_bad_clip", "error")
        self.augment_on = resolve_augment_on(spec.data.augment_on, device)
        train_ds = ClipDataset(manifest, train_recs, spec.data, train=True, seed=spec.seed, on_bad_clip=on_bad,
                               augment_on=self.augment_on)
        test_ds = ClipDataset(manifest, test_recs, spec.data, train=False, seed=spec.seed)
        val_ds = ClipDataset(manifest, val_recs, spec.data, train=False, seed=spec.seed) if val_recs else None

        model = info.build(num_classes=len(classes), frames=spec.data.frames, size=spec.data.size, **spec.model.kwargs)
        init_record = apply_init(model, info, spec.model.init)
        model.to(device)
        criterion = (info.criterion or soft_target_ce)(spec)
        optimizer = build_optimizer(model, spec.optim)
        use_scaler = spec.train.precision == "fp16" and device.type == "cuda"
        scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        state = self._resume(model, optimizer, scaler)
        train_model = self._wrap(model, device)
        forward_model = torch.compile(train_model) if spec.train.compile else train_model
        mixup = VideoMixup(len(classes), spec.reg.mixup_alpha, spec.reg.cutmix_alpha, spec.reg.mix_prob,
                           spec.reg.switch_prob, spec.reg.label_smoothing)
        schedule = SCHEDULES.get(spec.optim.schedule)
        batch = spec.train.batch_size
        sampler = None
        if self.world > 1:
            sampler = torch.utils.data.distributed.DistributedSampler(train_ds, shuffle=True, seed=spec.seed,
                                                                      drop_last=spec.train.drop_last)

        self.console.print(
            f"[bold]{spec.run_id}[/]  {info.name} on {spec.dataset} fold {spec.fold}: {len(train_recs)} train / "
            f"{len(val_recs)} val / {len(test_recs)} test clips, {spec.data.frames}x{spec.data.size}², "
            f"{spec.train.epochs} epochs, device {device}, init {init_record['kind']}"
            + (f", resuming after epoch {state.epoch}" if state.epoch else ""))

        with make_progress(self.console, self.show_progress and self.rank == 0) as progress:
            for epoch in range(state.epoch, spec.train.epochs):
                t0 = time.time()
                train_ds.set_epoch(epoch)
                if sampler is not None:
                    sampler.set_epoch(epoch)
                loader = self._train_loader(train_ds, batch, epoch, sampler)
                iters = len(loader)
                mix_gen = torch.Generator().manual_seed(zlib.crc32(f"mix/{spec.seed}/{epoch}".encode()))
                forward_model.train()
                task = progress.add_task(f"epoch {epoch + 1}/{spec.train.epochs}", total=iters, loss="")
                total, parts_sum, n = 0.0, Counter(), 0
                lr = 0.0
                for it, b in enumerate(loader):
                    lr = schedule(spec.optim, epoch, it, iters, spec.train.epochs)
                    set_lr(optimizer, lr)
                    x = b["clip"].to(device, non_blocking=True)
                    if "aug" in b:  # data.augment_on=device: the loader sent decoded frames and their draws
                        x = augment_batch(x, b["aug"], b["sizes"], spec.data)
                    y = b["label"].to(device, non_blocking=True)
                    x, targets = mixup(x, y, mix_gen)
                    with autocast_ctx(device, spec.train.precision):
                        outputs = forward_model(x)
                    loss, parts = criterion(outputs, targets.to(device))
                    if not torch.isfinite(loss):
                        raise BenchError(f"non-finite loss at epoch {epoch + 1} iteration {it}; lower optim.lr "
                                         "or enable --set train.grad_clip=1.0")
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if spec.train.grad_clip > 0:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.train.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    total += float(loss.detach())
                    parts_sum.update(parts)
                    n += 1
                    progress.update(task, advance=1, loss=f"loss {total / n:.4f} lr {lr:.2e}")
                progress.remove_task(task)
                line = {"epoch": epoch + 1, "lr": lr, "train_loss": total / max(n, 1),
                        "train_loss_parts": {k: v / max(n, 1) for k, v in parts_sum.items()}}
                last_epoch = epoch + 1 == spec.train.epochs
                if (epoch + 1) % max(spec.train.eval_every, 1) == 0 or last_epoch:
                    line.update(self._evaluate_epoch(model, test_ds, val_ds, test_recs, val_recs, classes, device,
                                                     epoch, progress, state))
                line["time_s"] = round(time.time() - t0, 3)
                state.history.append(line)
                state.epoch = epoch + 1
                self._checkpoint(model, optimizer, scaler, state, iters)
                ev = line.get("eval")
                self.console.print(f"epoch {epoch + 1}: loss {line['train_loss']:.4f}"
                                   + (f", test UAR {ev['uar']:.4f} WAR {ev['war']:.4f}" if ev else "")
                                   + (f", val UAR {line['val']['uar']:.4f}" if line.get("val") else "")
                                   + f" ({line['time_s']:.0f}s)")

            if self.rank != 0:
                self._barrier()
                return {}
            result = self._finish(model, test_ds, test_recs, classes, device, state, manifest, init_record,
                                  len(train_recs), len(val_recs), t_start, progress)
        self._barrier()
        return result

    # ------------------------------------------------------------------------------------------
    def _train_loader(self, ds: ClipDataset, batch: int, epoch: int, sampler) -> torch.utils.data.DataLoader:
        if sampler is None:
            return make_loader(ds, batch, workers=self.spec.data.workers, shuffle=True,
                               drop_last=self.spec.train.drop_last, seed=self.spec.seed, epoch=epoch)
        return torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=self.spec.data.workers,
                                           drop_last=self.spec.train.drop_last, collate_fn=ds.collate)

    def _evaluate_epoch(self, model, test_ds, val_ds, test_recs, val_recs, classes, device, epoch, progress, state) -> dict:
        """Per-epoch evaluation (rank 0) and model selection bookkeeping."""
        spec = self.spec
        out: dict = {}
        if self.rank != 0:
            return out
        kw = {"batch_size": spec.train.batch_size, "workers": spec.data.workers, "device": device,
              "precision": spec.train.precision, "aggregate_how": spec.data.aggregate, "progress": progress}
        test_ds.set_epoch(epoch)
        m, _ = evaluate(model, test_ds, test_recs, classes, desc="test", **kw)
        out["eval"] = {"split": "test", "uar": m["uar"], "war": m["war"]}
        if val_ds is not None:
            val_ds.set_epoch(epoch)
            mv, _ = evaluate(model, val_ds, val_recs, classes, desc="val", **kw)
            out["val"] = {"split": "val", "uar": mv["uar"], "war": mv["war"]}
        sel = spec.train.selection
        if sel != "last":
            source = out["val"] if sel == "best_on_val" else out["eval"]
            value = source[spec.train.selection_metric]
            # ties keep the later epoch, as the released IFDD code does (>=)
            if value >= state.best["value"]:
                state.best = {"value": value, "epoch": epoch + 1}
                atomic_torch_save(self.dir / "checkpoints" / "best.pt", {"model": model.state_dict(), "epoch": epoch + 1})
        return out

    def _checkpoint(self, model, optimizer, scaler, state: RunState, iters: int) -> None:
        if self.rank != 0:
            return
        atomic_torch_save(self.dir / "checkpoints" / "last.pt", {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "scheduler": {"name": self.spec.optim.schedule, "epoch": state.epoch, "iters_per_epoch": iters},
            "epoch": state.epoch, "rng": rng_state(), "best": state.best, "history": state.history,
            "config_hash": self.spec.config_hash(), "manifest_sha256": self.manifest_sha256,
        })
        self._write_log(state.history)

    def _write_log(self, history: list[dict]) -> None:
        atomic_write_text(self.dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))

    def _check_same_data(self, recorded: str | None, path: Path, manifest: Manifest | None = None) -> None:
        """A result or checkpoint is reused only for the data it was computed on: same spec is not enough when
        the data behind it changed (a regenerated `synthetic` variant, an edited split file)."""
        if recorded is None:
            return
        if manifest is None:
            try:
                manifest = load_manifest(self.spec)
            except DataError:  # data not on this machine: nothing to compare with, the result stands
                return
        current = manifest.checksum()
        if current != recorded:
            raise BenchError(f"{path}: computed on other data than {self.spec.dataset} resolves to now (manifest "
                             f"{recorded[:12]} vs {current[:12]}); move {self.dir} away to run again")

    def _resume(self, model, optimizer, scaler) -> RunState:
        path = self.dir / "checkpoints" / "last.pt"
        if not path.is_file():
            return RunState()
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if ck.get("config_hash") != self.spec.config_hash():
            raise BenchError(f"{path}: checkpoint belongs to another spec; delete the run directory to start over")
        self._check_same_data(ck.get("manifest_sha256"), path, self.manifest)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"])
        state = RunState(epoch=ck["epoch"], history=list(ck["history"]), best=dict(ck["best"]))
        if self.rank == 0:
            self._write_log(state.history)  # drop log lines of an epoch that was interrupted
        return state

    def _finish(self, model, test_ds, test_recs, classes, device, state: RunState, manifest: Manifest, init_record,
                n_train, n_val, t_start, progress) -> dict:
        spec = self.spec
        kw = {"batch_size": spec.train.batch_size, "workers": spec.data.workers, "device": device,
              "precision": spec.train.precision, "aggregate_how": spec.data.aggregate, "progress": progress}
        last_epoch = state.epoch
        test_ds.set_epoch(last_epoch - 1)
        metrics_last, preds_last = evaluate(model, test_ds, test_recs, classes, desc="final test", **kw)
        selected_epoch, metrics, preds = last_epoch, metrics_last, preds_last
        if spec.train.selection != "last" and state.best["epoch"] is not None:
            selected_epoch = state.best["epoch"]
            best = torch.load(self.dir / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(best["model"])
            test_ds.set_epoch(selected_epoch - 1)
            metrics, preds = evaluate(model, test_ds, test_recs, classes, desc="final test (selected)", **kw)
        metrics.update({"epoch": selected_epoch, "split": "test"})
        metrics_last.update({"epoch": last_epoch, "split": "test"})
        save_predictions(self.dir / "predictions.npz", preds, classes)

        from bench.profile import profile_model

        views = float(np.mean([views_per_video(r.num_frames, spec.data) for r in test_recs]))
        profile = profile_model(model.cpu() if device.type == "cpu" else model,
                                (3, spec.data.frames, spec.data.size, spec.data.size),
                                views_per_video=views, device=str(device), precision=spec.train.precision,
                                latency=self.profile_latency)
        result = {
            "schema_version": SCHEMA_VERSION, "run_id": spec.run_id, "status": "completed", "created_at": now_iso(),
            "duration_s": round(time.time() - t_start, 2),
            "method": spec.method, "family": self.info.family, "parent": self.info.parent, "dataset": spec.dataset,
            "fold": spec.fold, "seed": spec.seed, "protocol_name": spec.protocol, "config_hash": spec.config_hash(),
            "spec": spec.to_dict(),
            "protocol": {
                "frames": spec.data.frames, "size": spec.data.size, "sampler": spec.data.sampler,
                "stride": spec.data.stride, "segment_len": spec.data.segment_len,
                "test_temporal": spec.data.test_temporal, "test_views": spec.data.test_views,
                "test_crops": spec.data.test_crops, "views_per_video": views, "aggregate": spec.data.aggregate,
                "selection": spec.train.selection, "selection_metric": spec.train.selection_metric,
                "selected_epoch": selected_epoch, "epochs": spec.train.epochs, "init": init_record,
                "normalisation": "none" if spec.data.mean is None else "mean/std",
            },
            "metrics": metrics,
            "metrics_last": metrics_last if spec.train.selection != "last" else None,
            "profile": profile,
            "env": {**environment(device), "manifest_sha256": self.manifest_sha256, "data_sources": manifest.sources,
                    "augment_on": self.augment_on},
            "data": {"n_train": n_train, "n_val": n_val, "n_test": len(test_recs), "skipped": manifest.skipped},
            "artifacts": {"predictions": "predictions.npz", "metrics_log": "metrics.jsonl",
                          "checkpoint": "checkpoints/last.pt"},
        }
        atomic_write_json(self.result_path, result)
        set_status(self.dir, "completed")
        return result

    # ------------------------------------------------------------------------------------------ distributed
    def _setup_distributed(self, device: torch.device) -> torch.device:
        if self.world <= 1:
            return device
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return device

    def _wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        if self.world <= 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def _barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def run(spec: RunSpec, results: Path = Path("results"), **kw) -> dict:
    return Run(spec, results, **kw).execute()
