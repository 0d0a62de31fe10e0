"""One run = one spec = one process (or one torchrun job): data -> model -> train -> evaluate -> result store.

Everything a result depends on is seeded from the spec (sample augmentation, loader order, mixup draws, model
init), and `checkpoints/last.pt` holds model, optimizer, scaler, schedule position, epoch and every RNG state,
written atomically at the end of each epoch, before it is evaluated. The evaluation's bookkeeping (history, best
epoch, RNG state after it) goes to the small `checkpoints/evaluated.pt`, so the weights are written once per
epoch. Re-running the same spec resumes from them, so a killed run finishes with the same metrics as an
uninterrupted one; a completed run is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench.api import MethodInfo, build_model
from bench.data.loader import ClipDataset, batches, make_loader, model_inputs
from bench.data.manifest import carve_val, current_checksum, load_manifest
from bench.data.sampling import views_per_video
from bench.data.transforms import augment_batch
from bench.errors import BenchError, DataError, DiskFullError
from bench.evaluate import autocast_ctx, evaluate, save_predictions
from bench.lock import RunLock
from bench.losses import criterion_for
from bench.mixup import VideoMixup
from bench.optim import SCHEDULES, build_optimizer, set_lr
from bench.registry import DATASETS, METHODS
from bench.runtime import resolve_augment_on, resolve_device, rng_state, seed_everything, set_rng_state
from bench.spec import RunSpec
from bench.stats import metric_intervals
from bench.store import (
    atomic_torch_save,
    atomic_write_text,
    check_same_data,
    completed_result,
    environment,
    run_dir,
    run_result,
    set_status,
    writable_dir,
    write_result,
)
from bench.weights import apply_init

log = logging.getLogger(__name__)


def make_progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, disable=not enabled,
        transient=False,
    )


def optimizer_step(loss: torch.Tensor, model: torch.nn.Module, optimizer, scaler, grad_clip: float) -> None:
    """Backward through the (fp16-)scaled loss, optional gradient-norm clipping, optimizer and scaler step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()


# ---------------------------------------------------------------------------------------------- the run
@dataclass
class RunState:
    epoch: int = 0  # completed training epochs
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"value": -1.0, "epoch": None})
    # the last epoch is trained and checkpointed but not yet evaluated (a failed evaluation resumes here)
    pending_eval: bool = False


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
        self.manifest_sha256: str | None = None
        self.saved_epoch = 0  # the last epoch whose checkpoint is on disk (what a re-run resumes after)

    def completed_result(self) -> dict | None:
        """The run's result when it already completed on the data the spec resolves to now (else None)."""
        return completed_result(self.dir, self.spec.dataset, lambda: current_checksum(self.spec))

    def execute(self) -> dict:
        """Skip a completed run; else check the results directory takes files, take the run's lock (a second start
        of the same run refuses: bench.lock), and train, resuming from the last checkpoint."""
        done = self.completed_result()
        if done is not None:
            self.console.print(f"[green]already completed[/]: {self.dir} (same spec hash, same data); skipping")
            return done
        writable_dir(self.dir, flag="--results")  # a read-only or foreign results directory: one line, no work done
        lock = RunLock(self.dir).acquire() if self.rank == 0 else None
        try:
            if lock is not None and lock.took_over:
                self.console.print(f"[yellow]took over the stale lock of this run[/] ({lock.took_over})",
                                   highlight=False, soft_wrap=True)
            done = self.completed_result()  # the holder of the lock may have completed it since the first check
            if done is not None:
                self.console.print(f"[green]already completed[/]: {self.dir} (by another process); skipping")
                return done
            return self._execute_locked()
        finally:
            if lock is not None:
                lock.release()

    def _execute_locked(self) -> dict:
        if self.rank == 0:
            atomic_write_text(self.dir / "spec.yaml", self.spec.to_yaml())
            set_status(self.dir, "running")
            (self.dir / "error.txt").unlink(missing_ok=True)
        try:
            result = self._execute()
        except KeyboardInterrupt:
            self._record_failure("interrupted")
            raise
        except DiskFullError as e:
            self._record_failure("failed", e)
            saved = f"it resumes after epoch {self.saved_epoch}, which is saved" if self.saved_epoch else \
                "no epoch was saved yet, so it starts over"
            raise DiskFullError(f"{e} - {saved}") from e
        except BaseException as e:
            self._record_failure("failed", e)
            raise
        return result

    def _record_failure(self, status: str, e: BaseException | None = None) -> None:
        """`status` and error.txt, as far as the disk allows: on a full or read-only disk these writes fail too, and
        the error the user must read is the one that stopped the run, not this one."""
        if self.rank != 0:
            return
        try:
            set_status(self.dir, status)
            if e is not None:
                atomic_write_text(self.dir / "error.txt", "".join(traceback.format_exception(e)))
        except (OSError, BenchError):
            pass

    # ------------------------------------------------------------------------------------------
    def _execute(self) -> dict:
        spec, info = self.spec, self.info
        t_start = time.time()
        device = self._setup_distributed(resolve_device(spec.train.device))
        seed_everything(spec.seed, spec.train.deterministic)

        manifest = load_manifest(spec)
        self.manifest_sha256 = manifest.checksum()
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
        self.augment_on = resolve_augment_on(spec.data, device)
        train_ds = ClipDataset(manifest, train_recs, spec.data, train=True, seed=spec.seed, on_bad_clip=on_bad,
                               augment_on=self.augment_on)
        test_ds = ClipDataset(manifest, test_recs, spec.data, train=False, seed=spec.seed)
        val_ds = ClipDataset(manifest, val_recs, spec.data, train=False, seed=spec.seed) if val_recs else None

        model = build_model(info, len(classes), spec.data.frames, spec.data.size, classes, **spec.model.kwargs)
        init_record = apply_init(model, info, spec.model.init)
        model.to(device)
        criterion = criterion_for(info, spec)
        optimizer = build_optimizer(model, spec.optim)
        use_scaler = spec.train.precision == "fp16" and device.type == "cuda"
        scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        state = self._resume(model, optimizer, scaler)
        train_model = self._wrap(model, device)
        forward_model = torch.compile(train_model) if spec.train.compile else train_model
        mixup = VideoMixup(len(classes), spec.reg.mixup_alpha, spec.reg.cutmix_alpha, spec.reg.mix_prob,
                           spec.reg.switch_prob, spec.reg.label_smoothing)
        sampler = None
        if self.world > 1:
            if spec.train.sampler != "shuffle":
                raise BenchError(f"train.sampler={spec.train.sampler} is not supported with several processes yet")
            sampler = torch.utils.data.distributed.DistributedSampler(train_ds, shuffle=True, seed=spec.seed,
                                                                      drop_last=spec.train.drop_last)
        evaluation = _Evaluation(self, model, test_ds, val_ds, device)
        self.mix_test: ClipDataset | None = None  # data.mix's image test split (set by _mix_data)
        self.mix = self._mix_data(spec) if spec.data.mix else None

        self.console.print(
            f"[bold]{spec.run_id}[/]  {info.name} on {spec.dataset} fold {spec.fold}: {len(train_recs)} train / "
            f"{len(val_recs)} val / {len(test_recs)} test clips, {spec.data.frames}x{spec.data.size}², "
            f"{spec.train.epochs} epochs, device {device}, init {init_record['label']}"
            + (f", resuming after epoch {state.epoch}" if state.epoch else ""), highlight=False, soft_wrap=True)
        if init_record["label"] != init_record["kind"] and init_record["kind"] == "scratch":
            self.console.print(f"[yellow]{info.name} is meant to start from '{info.needs_pretrained}' "
                               f"({info.weights[info.needs_pretrained].description}); this run is "
                               f"{init_record['label']}. Give --init {info.needs_pretrained}:<file> for the method.[/]",
                               highlight=False, soft_wrap=True)

        if spec.data.streams and (spec.data.flip or list(spec.data.rrc_scale) != [1.0, 1.0]):
            self.console.print(f"[yellow]data.streams ({', '.join(spec.data.streams)}) are given as stored: the "
                               "frames' random crop and flip are not applied to them (spatial streams drift from "
                               "the frames; set data.flip=false and data.rrc_scale=[1,1] to keep them aligned).[/]",
                               highlight=False, soft_wrap=True)

        with make_progress(self.console, self.show_progress and self.rank == 0) as progress:
            if state.pending_eval:  # the last run stopped after training this epoch, in its evaluation
                self._evaluate_and_checkpoint(evaluation, model, optimizer, scaler, state, progress)
            for epoch in range(state.epoch, spec.train.epochs):
                t0 = time.time()
                line = self._train_epoch(epoch, train_ds, sampler, forward_model, model, optimizer, scaler, criterion,
                                         mixup, device, progress)
                line["time_s"] = round(time.time() - t0, 3)
                state.history.append(line)
                state.epoch = epoch + 1
                state.pending_eval = self._evaluates(epoch)
                self._checkpoint(model, optimizer, scaler, state)  # before evaluating: a failed eval loses nothing
                if state.pending_eval:
                    self._evaluate_and_checkpoint(evaluation, model, optimizer, scaler, state, progress)
                self._print_epoch(state.history[-1])

            if self.rank != 0:
                self._barrier()
                return {}
            result = self._finish(model, evaluation, test_recs, state, manifest, init_record, len(train_recs),
                                  len(val_recs), t_start)
        self._barrier()
        return result

    # ------------------------------------------------------------------------------------------
    def _evaluates(self, epoch: int) -> bool:
        return (epoch + 1) % max(self.spec.train.eval_every, 1) == 0 or epoch + 1 == self.spec.train.epochs

    def _mix_data(self, spec: RunSpec) -> tuple[ClipDataset, VideoMixup, float, int]:
        """The static image set of data.mix (S4D's joint training): its training split as one-frame clips."""
        import copy

        from bench.data.roots import resolve_root

        mix = dict(spec.data.mix)
        unknown = set(mix) - {"dataset", "root", "rate", "batch_scale", "options"}
        if unknown or "dataset" not in mix:
            raise BenchError(f"data.mix takes dataset, root, rate, batch_scale, options (got {sorted(mix)})")
        info = DATASETS.get(mix["dataset"])
        root, _ = resolve_root(info, mix.get("root"))
        manifest = info.build_manifest(root, None, dict(mix.get("options") or {}))
        cfg = copy.deepcopy(spec.data)
        cfg.frames, cfg.train_clips, cfg.streams, cfg.sampler, cfg.segment_len = 1, 1, {}, "segment", 1
        records = manifest.split("train")
        if not records:
            raise DataError(f"{root}: the data.mix image set has no training images")
        self.mix_manifest_sha256 = manifest.checksum()
        ds = ClipDataset(manifest, records, cfg, train=True, seed=spec.seed)
        test_records = manifest.split("test")  # logged each evaluated epoch through the image head (S4D's log)
        self.mix_test = ClipDataset(manifest, test_records, cfg, train=False, seed=spec.seed) if test_records else None
        mixup = VideoMixup(len(manifest.classes), spec.reg.mixup_alpha, spec.reg.cutmix_alpha, spec.reg.mix_prob,
                           spec.reg.switch_prob, spec.reg.label_smoothing)
        return ds, mixup, float(mix.get("rate", 0.5)), max(1, round(spec.train.batch_size * float(mix.get("batch_scale", 2))))

    def _steps(self, epoch: int, loader) -> tuple[int, object]:
        """(steps, iterator of (task, batch)): the video batches, and with data.mix the image batches interleaved
        at positions drawn from a generator seeded by the epoch (pure video or pure image steps)."""
        if self.mix is None:
            return len(loader), (("video", b) for b in batches(loader))
        ds, _, rate, batch = self.mix
        ds.set_epoch(epoch)
        images = make_loader(ds, batch, workers=self.spec.data.workers, shuffle=True, drop_last=True,
                             seed=self.spec.seed, epoch=epoch, class_balanced=True)
        n_img = int(rate * len(images))
        total = len(loader) + n_img
        is_image = torch.zeros(total, dtype=torch.bool)
        is_image[torch.randperm(total, generator=torch.Generator().manual_seed(epoch))[:n_img]] = True

        def gen():
            video_it, image_it = iter(batches(loader)), iter(batches(images))
            for flag in is_image.tolist():
                if not flag:
                    yield "video", next(video_it)
                    continue
                try:
                    yield "image", next(image_it)
                except StopIteration:  # restart an exhausted image iterator
                    image_it = iter(batches(images))
                    yield "image", next(image_it)

        return total, gen()

    def _train_epoch(self, epoch: int, train_ds: ClipDataset, sampler, forward_model, model, optimizer, scaler,
                     criterion, mixup: VideoMixup, device: torch.device, progress: Progress) -> dict:
        spec = self.spec
        schedule = SCHEDULES.get(spec.optim.schedule)
        train_ds.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        loader = self._train_loader(train_ds, spec.train.batch_size, epoch, sampler)
        iters, steps = self._steps(epoch, loader)
        mix_gen = torch.Generator().manual_seed(zlib.crc32(f"mix/{spec.seed}/{epoch}".encode()))
        if hasattr(criterion, "set_epoch"):  # criteria with an epoch schedule (S2D's SDL weights)
            criterion.set_epoch(epoch)
        forward_model.train()
        task = progress.add_task(f"epoch {epoch + 1}/{spec.train.epochs}", total=iters, loss="")
        total, parts_sum, n, lr = 0.0, Counter(), 0, 0.0
        for it, (kind, batch) in enumerate(steps):
            lr = schedule(spec.optim, epoch, it, iters, spec.train.epochs)
            set_lr(optimizer, lr)
            clips = batch["clip"].to(device, non_blocking=True)
            if "aug" in batch:  # data.augment_on=device: the loader sent decoded frames and their draws
                clips = augment_batch(clips, batch["aug"], batch["sizes"], spec.data)
            labels = batch["label"].to(device, non_blocking=True)
            extra = {"task": "image"} if kind == "image" else model_inputs(batch, device)
            clips, targets = (self.mix[1] if kind == "image" else mixup)(clips, labels, mix_gen)
            with autocast_ctx(device, spec.train.precision):
                outputs = forward_model(clips, **extra)
            loss, parts = criterion(outputs, targets.to(device))
            if kind == "image":
                parts = {f"image_{k}": v for k, v in parts.items()}
            if not torch.isfinite(loss):
                raise BenchError(f"non-finite loss at epoch {epoch + 1} iteration {it}; lower optim.lr "
                                 "or enable --set train.grad_clip=1.0")
            optimizer_step(loss, model, optimizer, scaler, spec.train.grad_clip)
            total += float(loss.detach())
            parts_sum.update(parts)
            n += 1
            progress.update(task, advance=1, loss=f"loss {total / n:.4f} lr {lr:.2e}")
        progress.remove_task(task)
        return {"epoch": epoch + 1, "lr": lr, "train_loss": total / max(n, 1),
                "train_loss_parts": {k: v / max(n, 1) for k, v in parts_sum.items()}}

    def _train_loader(self, ds: ClipDataset, batch: int, epoch: int, sampler) -> torch.utils.data.DataLoader:
        if sampler is None:
            return make_loader(ds, batch, workers=self.spec.data.workers, shuffle=True,
                               drop_last=self.spec.train.drop_last, seed=self.spec.seed, epoch=epoch,
                               class_balanced=self.spec.train.sampler == "class_balanced")
        return torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=self.spec.data.workers,
                                           drop_last=self.spec.train.drop_last, collate_fn=ds.collate)

    def _evaluate_and_checkpoint(self, evaluation: _Evaluation, model, optimizer, scaler, state: RunState,
                                 progress: Progress) -> None:
        """Evaluate the last trained epoch, keep the selection bookkeeping, then checkpoint again."""
        t0 = time.time()
        line = state.history[-1]
        line.update(evaluation.epoch(state.epoch - 1, state, progress))
        line["time_s"] = round(line.get("time_s", 0.0) + time.time() - t0, 3)
        state.pending_eval = False
        if self.rank == 0:  # the weights did not change since last.pt: only the bookkeeping is written
            atomic_torch_save(self.dir / "checkpoints" / "evaluated.pt", {
                "epoch": state.epoch, "rng": rng_state(), "best": state.best, "history": state.history,
                "config_hash": self.spec.config_hash()})
            self._write_log(state.history)

    def _print_epoch(self, line: dict) -> None:
        ev = line.get("eval")
        self.console.print(f"epoch {line['epoch']}: loss {line['train_loss']:.4f}"
                           + (f", test UAR {ev['uar']:.4f} WAR {ev['war']:.4f}" if ev else "")
                           + (f", val UAR {line['val']['uar']:.4f}" if line.get("val") else "")
                           + (f", image test acc {line['image_test']['war']:.4f}" if line.get("image_test") else "")
                           + f" ({line['time_s']:.0f}s)")

    def _checkpoint(self, model, optimizer, scaler, state: RunState) -> None:
        if self.rank != 0:
            return
        atomic_torch_save(self.dir / "checkpoints" / "last.pt", {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "epoch": state.epoch, "pending_eval": state.pending_eval, "rng": rng_state(), "best": state.best,
            "history": state.history, "config_hash": self.spec.config_hash(), "manifest_sha256": self.manifest_sha256,
        })
        self.saved_epoch = state.epoch
        self._write_log(state.history)

    def _write_log(self, history: list[dict]) -> None:
        atomic_write_text(self.dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))

    def _resume(self, model, optimizer, scaler) -> RunState:
        path = self.dir / "checkpoints" / "last.pt"
        if not path.is_file():
            return RunState()
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if ck.get("config_hash") != self.spec.config_hash():
            raise BenchError(f"{path}: checkpoint belongs to another spec; delete the run directory to start over")
        check_same_data(ck.get("manifest_sha256"), self.manifest_sha256, path, self.dir, self.spec.dataset)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"])
        state = RunState(epoch=ck["epoch"], history=list(ck["history"]), best=dict(ck["best"]),
                         pending_eval=bool(ck.get("pending_eval", False)))
        self.saved_epoch = state.epoch
        evaluated_path = self.dir / "checkpoints" / "evaluated.pt"
        if state.pending_eval and evaluated_path.is_file():  # that epoch's evaluation finished after last.pt
            ev = torch.load(evaluated_path, map_location="cpu", weights_only=True)
            if ev.get("epoch") == state.epoch and ev.get("config_hash") == ck["config_hash"]:
                set_rng_state(ev["rng"])
                state = RunState(epoch=state.epoch, history=list(ev["history"]), best=dict(ev["best"]))
        if self.rank == 0:
            self._write_log(state.history)  # drop log lines of an epoch that was interrupted
        return state

    def _finish(self, model, evaluation: _Evaluation, test_recs, state: RunState, manifest, init_record: dict,
                n_train: int, n_val: int, t_start: float) -> dict:
        spec = self.spec
        last_epoch = state.epoch
        metrics_last, preds_last = evaluation.final(last_epoch, "final test")
        selected_epoch, metrics, preds = last_epoch, metrics_last, preds_last
        if spec.train.selection != "last" and state.best["epoch"] is not None:
            selected_epoch = state.best["epoch"]
            best = torch.load(self.dir / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(best["model"])
            metrics, preds = evaluation.final(selected_epoch, "final test (selected)")
        metrics.update({"epoch": selected_epoch, "split": "test"})
        metrics["ci"] = metric_intervals(preds["labels"], preds["video_scores"].argmax(1), len(manifest.classes))
        metrics_last.update({"epoch": last_epoch, "split": "test"})
        save_predictions(self.dir / "predictions.npz", preds, manifest.classes)

        from bench.profile import profile_model

        device = evaluation.device
        views = float(np.mean([views_per_video(r.num_frames, spec.data) for r in test_recs]))
        profile = profile_model(model.cpu() if device.type == "cpu" else model,
                                (3, spec.data.frames, spec.data.size, spec.data.size),
                                views_per_video=views, device=str(device), precision=spec.train.precision,
                                latency=self.profile_latency)
        result = run_result(
            spec=spec, family=self.info.family, variant_of=self.info.variant_of, duration_s=time.time() - t_start,
            selected_epoch=selected_epoch, views_per_video=views, init=init_record, metrics=metrics,
            metrics_last=metrics_last if spec.train.selection != "last" else None, profile=profile,
            env={**environment(device), "manifest_sha256": self.manifest_sha256, "data_sources": manifest.sources,
                 "augment_on": self.augment_on,
                 **({"mix_manifest_sha256": self.mix_manifest_sha256} if self.mix is not None else {})},
            data={"n_train": n_train, "n_val": n_val, "n_test": len(test_recs), "skipped": manifest.skipped})
        write_result(self.dir, result)
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

        # find_unused_parameters: a head or an expert that gets no input in a step (S4D's image head, MoE routing)
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=True)

    def _barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


class _Evaluation:
    """Test (and val) evaluation of a run: per-epoch with model-selection bookkeeping, and the final one."""

    def __init__(self, run: Run, model, test_ds: ClipDataset, val_ds: ClipDataset | None, device: torch.device):
        self.run, self.model, self.test_ds, self.val_ds, self.device = run, model, test_ds, val_ds, device
        spec = run.spec
        self.kw = {"batch_size": spec.train.batch_size, "workers": spec.data.workers, "device": device,
                   "precision": spec.train.precision, "aggregate_how": spec.data.aggregate}

    def _split(self, ds: ClipDataset, epoch: int, desc: str, progress: Progress | None = None):
        ds.set_epoch(epoch)
        return evaluate(self.model, ds, ds.records, ds.classes, desc=desc, progress=progress, **self.kw)

    def epoch(self, epoch: int, state: RunState, progress: Progress) -> dict:
        """Metrics of epoch `epoch` (0-based) on test (and val); keeps best.pt for the selection rule."""
        run = self.run
        out: dict = {}
        if run.rank != 0:
            return out
        m, _ = self._split(self.test_ds, epoch, "test", progress)
        out["eval"] = {"split": "test", "uar": m["uar"], "war": m["war"]}
        if self.val_ds is not None:
            mv, _ = self._split(self.val_ds, epoch, "val", progress)
            out["val"] = {"split": "val", "uar": mv["uar"], "war": mv["war"]}
        if run.mix_test is not None:  # data.mix: the image set's test split, image head
            mi, _ = evaluate(self.model, run.mix_test, run.mix_test.records, run.mix_test.classes, desc="image test",
                             progress=progress, forward_kwargs={"task": "image"}, **self.kw)
            out["image_test"] = {"split": "test", "n": len(run.mix_test.records), "uar": mi["uar"], "war": mi["war"]}
        sel = run.spec.train.selection
        if sel != "last":
            value = (out["val"] if sel == "best_on_val" else out["eval"])[run.spec.train.selection_metric]
            # ties keep the later epoch, as the released IFDD code does (>=)
            if value >= state.best["value"]:
                state.best = {"value": value, "epoch": epoch + 1}
                atomic_torch_save(run.dir / "checkpoints" / "best.pt", {"model": self.model.state_dict(),
                                                                        "epoch": epoch + 1})
        return out

    def final(self, epoch: int, desc: str):
        """The test metrics and per-view predictions of the model as it is now, drawn as at `epoch` (1-based)."""
        return self._split(self.test_ds, epoch - 1, desc)


def run(spec: RunSpec, results: Path = Path("results"), **kw) -> dict:
    return Run(spec, results, **kw).execute()
