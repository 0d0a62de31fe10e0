"""`bench pretrain`: in-domain self-supervised pre-training (the method's PretrainSpec, e.g. MAE-DFER's masked
autoencoding) on the TRAINING clips of one fold only, so a user without the official pre-trained file can still
run a self-supervised method honestly: the fold's test videos are never seen (every clip fed is listed in
`clips_seen.txt`, and checked against the test split).

It is a run like any other: one directory (`results/pretrain/<dataset>/<fold>/<method>/<id>/`), a spec hashed
into the id, a checkpoint every epoch and resume after a kill. It ends with `pretrained.pt`
({'model': state_dict in the official pre-training checkpoint's names, 'pretrained_on': where it came from}),
which `bench run --init <loads_with>:<file>` takes and records as the init, with the deviation from the
official pre-training data stated in the result.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from pathlib import Path

import torch

from bench.data.loader import ClipDataset, batches, make_loader
from bench.data.manifest import load_manifest
from bench.data.transforms import augment_batch
from bench.errors import BenchError
from bench.evaluate import autocast_ctx
from bench.optim import SCHEDULES, build_optimizer, set_lr
from bench.runtime import resolve_augment_on, resolve_device, seed_everything
from bench.spec import RunSpec
from bench.store import (
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    environment,
    now_iso,
    set_status,
)
from bench.train import Run, RunState, make_progress, optimizer_step

RESULT = "pretrain.json"
WEIGHTS = "pretrained.pt"


def pretrain_dir(results: Path, spec: RunSpec) -> Path:
    fold = f"fold{spec.fold}" if spec.fold is not None else "single"
    return Path(results) / "pretrain" / spec.dataset / fold / spec.method / f"pretrain-{spec.run_id}"


class PretrainRun(Run):
    """A `bench pretrain` run: the Run machinery (status, checkpoints, resume, logs) around the method's
    pre-training module, whose forward returns its own loss."""

    def __init__(self, spec: RunSpec, results: Path = Path("results"), **kw):
        super().__init__(spec, results, **kw)
        if self.info.pretrain is None:
            raise BenchError(f"{spec.method} defines no pre-training objective")
        self.dir = pretrain_dir(results, spec)

    @property
    def weights_path(self) -> Path:
        return self.dir / WEIGHTS

    def completed_result(self) -> dict | None:
        path = self.dir / RESULT
        return json.loads(path.read_text()) if path.is_file() else None

    def _execute(self) -> dict:
        spec, pt = self.spec, self.info.pretrain
        t_start = time.time()
        device = self._setup_distributed(resolve_device(spec.train.device))
        seed_everything(spec.seed, spec.train.deterministic)
        manifest = load_manifest(spec)
        self.manifest_sha256 = manifest.checksum()
        train = manifest.split("train")
        test_ids = {r.clip_id for r in manifest.split("test")}
        if not train:
            raise BenchError(f"{spec.dataset} fold {spec.fold} has no training clips to pre-train on")
        self.augment_on = resolve_augment_on(spec.data, device)
        ds = ClipDataset(manifest, train, spec.data, train=True, seed=spec.seed, augment_on=self.augment_on)
        extra = {k: getattr(spec.data, k) for k in ("mean", "std") if k in inspect.signature(pt.build).parameters}
        model = pt.build(frames=spec.data.frames, size=spec.data.size, **spec.model.kwargs, **extra).to(device)
        optimizer = build_optimizer(model, spec.optim)
        scaler = torch.amp.GradScaler(device.type, enabled=spec.train.precision == "fp16" and device.type == "cuda")
        state = self._resume(model, optimizer, scaler)
        seen_file = self.dir / "clips_seen.txt"
        seen = set(seen_file.read_text().split()) if state.epoch and seen_file.is_file() else set()
        schedule = SCHEDULES.get(spec.optim.schedule)
        self.console.print(f"[bold]pretrain-{spec.run_id}[/]  {pt.description or self.info.name + ' pre-training'} on "
                           f"{spec.dataset} fold {spec.fold}: {len(train)} training clips only (the fold's "
                           f"{len(test_ids)} test clips are never read), {spec.train.epochs} epochs, device {device}"
                           + (f", resuming after epoch {state.epoch}" if state.epoch else ""),
                           highlight=False, soft_wrap=True)
        with make_progress(self.console, self.show_progress) as progress:
            for epoch in range(state.epoch, spec.train.epochs):
                t0 = time.time()
                ds.set_epoch(epoch)
                loader = make_loader(ds, spec.train.batch_size, workers=spec.data.workers, shuffle=True,
                                     drop_last=spec.train.drop_last, seed=spec.seed, epoch=epoch)
                iters = len(loader)
                model.train()
                task = progress.add_task(f"pretrain epoch {epoch + 1}/{spec.train.epochs}", total=iters, loss="")
                total, parts_sum, n, lr = 0.0, {}, 0, 0.0
                for it, batch in enumerate(batches(loader)):
                    lr = schedule(spec.optim, epoch, it, iters, spec.train.epochs)
                    set_lr(optimizer, lr)
                    clips = batch["clip"].to(device, non_blocking=True)
                    if "aug" in batch:
                        clips = augment_batch(clips, batch["aug"], batch["sizes"], spec.data)
                    seen.update(train[int(i)].clip_id for i in batch["video"])
                    with autocast_ctx(device, spec.train.precision):
                        out = model(clips)
                    loss = out["loss"].float()
                    if not torch.isfinite(loss):
                        raise BenchError(f"non-finite pre-training loss at epoch {epoch + 1} iteration {it}; lower optim.lr")
                    optimizer_step(loss, model, optimizer, scaler, spec.train.grad_clip)
                    total += float(loss.detach())
                    for k, v in (out.get("parts") or {}).items():
                        parts_sum[k] = parts_sum.get(k, 0.0) + float(v)
                    n += 1
                    progress.update(task, advance=1, loss=f"loss {total / n:.4f} lr {lr:.2e}")
                progress.remove_task(task)
                state.history.append({"epoch": epoch + 1, "lr": lr, "train_loss": total / max(n, 1),
                                      "train_loss_parts": {k: v / max(n, 1) for k, v in parts_sum.items()},
                                      "time_s": round(time.time() - t0, 3)})
                state.epoch = epoch + 1
                atomic_write_text(seen_file, "\n".join(sorted(seen)) + "\n")
                self._checkpoint(model, optimizer, scaler, state)
                self.console.print(f"pretrain epoch {epoch + 1}: loss {state.history[-1]['train_loss']:.4f} "
                                   f"({state.history[-1]['time_s']:.0f}s)")
        leaked = seen & test_ids
        if leaked:  # cannot happen through this code path; a guard for the claim the result makes
            raise BenchError(f"pre-training read {len(leaked)} test clips of fold {spec.fold}, e.g. {sorted(leaked)[:3]}")
        return self._finish_pretrain(model, state, manifest, train, test_ids, seen, t_start, device)

    def _finish_pretrain(self, model, state: RunState, manifest, train, test_ids, seen, t_start, device) -> dict:
        spec, pt = self.spec, self.info.pretrain
        origin = (f"bench pretrain on {spec.dataset} fold {spec.fold}: {len(seen)} of its {len(train)} training clips, "
                  f"{spec.train.epochs} epochs (in-domain; not the official pre-training data)")
        atomic_torch_save(self.weights_path, {"model": model.state_dict(), "pretrained_on": origin,
                                              "method": spec.method, "loads_with": pt.loads_with,
                                              "epochs": spec.train.epochs})
        result = {
            "kind": "pretrain", "status": "completed", "created_at": now_iso(), "run_id": f"pretrain-{spec.run_id}",
            "method": spec.method, "dataset": spec.dataset, "fold": spec.fold, "seed": spec.seed,
            "duration_s": round(time.time() - t_start, 2), "spec": spec.to_dict(), "config_hash": spec.config_hash(),
            "pretrained_on": origin, "weights": str(self.weights_path), "loads_with": pt.loads_with,
            "clips": {"train": len(train), "seen": len(seen), "test_never_seen": len(test_ids),
                      "seen_list": "clips_seen.txt",
                      "seen_sha256": hashlib.sha256("\n".join(sorted(seen)).encode()).hexdigest()},
            "history": state.history,
            "env": {**environment(device), "manifest_sha256": self.manifest_sha256},
            "next": f"bench run -m {spec.method} -d {spec.dataset} --fold {spec.fold} "
                    f"--init {pt.loads_with}:{self.weights_path}",
        }
        atomic_write_json(self.dir / RESULT, result)
        set_status(self.dir, "completed")
        return result


def pretrain(spec: RunSpec, results: Path = Path("results"), **kw) -> dict:
    return PretrainRun(spec, results, **kw).execute()
