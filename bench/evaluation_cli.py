"""`bench eval --checkpoint PATH`: evaluate a saved model on a dataset's test split, with the same views and
metrics as a run, writing eval.json and predictions.npz (never a result.json: no training protocol to record).

The checkpoint goes through the one weights path (`bench.weights.load_weights`): a run's own checkpoint, a
plain state_dict, or an official file through one of the method's weights sources (`--source`). A model the
file does not fully cover is refused: evaluating half-random weights would measure nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from bench.api import ClipRecord, Manifest, build_model
from bench.data.loader import ClipDataset
from bench.data.manifest import load_manifest
from bench.data.roots import resolve_root
from bench.errors import BenchError, UnknownNameError
from bench.evaluate import evaluate, save_predictions
from bench.registry import DATASETS, METHODS
from bench.runtime import resolve_device
from bench.spec import RunSpec, apply_overrides, resolve_spec
from bench.stats import metric_intervals
from bench.store import atomic_write_json, environment, now_iso
from bench.weights import LoadReport, load_weights


def _run_spec_of(checkpoint: Path) -> RunSpec | None:
    """The spec of the run a checkpoint belongs to (…/<run id>/checkpoints/*.pt), if any."""
    spec_file = checkpoint.resolve().parent.parent / "spec.yaml"
    if checkpoint.parent.name == "checkpoints" and spec_file.is_file():
        return RunSpec.from_dict(yaml.safe_load(spec_file.read_text()))
    return None


@dataclass
class LoadedModel:
    """A model with the weights of a checkpoint, its resolved spec, the manifest it is evaluated on and how the
    file loaded."""

    model: torch.nn.Module
    spec: RunSpec
    manifest: Manifest
    report: LoadReport
    device: torch.device


def load_checkpoint_model(checkpoint: Path, *, method: str | None = None, dataset: str | None = None,
                          fold: int | None = None, source: str | None = None, protocol: str | None = None,
                          device: str | None = None, workers: int | None = None, root: Path | None = None,
                          sets: list[str] | None = None, manifest_options: dict | None = None) -> LoadedModel:
    """The model of a checkpoint under the spec it is evaluated with: the run's own spec when the checkpoint is
    inside a run directory, else the method's recipe for the dataset (its official test protocol). A file that
    does not fully cover the model is refused with one line."""
    if not checkpoint.is_file():
        raise BenchError(f"{checkpoint}: checkpoint not found")
    flags: dict = {}
    if device:
        flags.setdefault("train", {})["device"] = device
    if workers is not None:
        flags.setdefault("data", {})["workers"] = workers
    if root is not None:
        flags.setdefault("data", {})["root"] = str(root)
    spec = _run_spec_of(checkpoint)
    if spec is not None and (method in (None, spec.method)) and (dataset in (None, spec.dataset)):
        apply_overrides(spec, flags, sets)
        if fold is not None:
            spec.fold = fold
    else:
        if not method or not dataset:
            raise BenchError(f"{checkpoint}: not inside a run directory; give --method and --dataset")
        spec = resolve_spec(method, dataset, fold=fold, protocol=protocol, flags=flags, sets=sets or [])

    info = METHODS.get(spec.method)
    if source is not None and source not in info.weights:
        raise UnknownNameError(f"weights source of {spec.method} (--source)", source, info.weights or {"(none)"})
    if manifest_options:
        dinfo = DATASETS.get(spec.dataset)
        manifest = dinfo.build_manifest(resolve_root(dinfo, spec.data.root)[0], spec.fold,
                                        {**spec.data.options, **manifest_options})
    else:
        manifest = load_manifest(spec)
    model = build_model(info, len(manifest.classes), spec.data.frames, spec.data.size, manifest.classes,
                        **spec.model.kwargs)
    report = load_weights(model, checkpoint, info.weights.get(source) if source else None, source or "state_dict")
    if report.missing or report.mismatched:
        raise BenchError(f"{checkpoint}: does not fit {spec.method} ({len(report.missing)} missing, "
                         f"{len(report.mismatched)} mismatched keys, e.g. {(report.missing or report.mismatched)[:2]}); "
                         "wrong method, classes or --source?")
    dev = resolve_device(spec.train.device)
    model.to(dev)
    return LoadedModel(model, spec, manifest, report, dev)


def evaluate_records(loaded: LoadedModel, records: list[ClipRecord], *, data=None, view_hook=None,
                     progress=None, desc: str = "eval") -> tuple[dict, dict]:
    """Metrics and predictions of the loaded model on `records` under its spec's test protocol (or `data`, a
    DataCfg), each test view passed through `view_hook` before normalisation."""
    spec = loaded.spec
    ds = ClipDataset(loaded.manifest, records, data or spec.data, train=False, seed=spec.seed, view_hook=view_hook)
    return evaluate(loaded.model, ds, records, loaded.manifest.classes, batch_size=spec.train.batch_size,
                    workers=spec.data.workers, device=loaded.device, precision=spec.train.precision,
                    aggregate_how=(data or spec.data).aggregate, progress=progress, desc=desc)


def evaluate_checkpoint(checkpoint: Path, *, method: str | None = None, dataset: str | None = None,
                        fold: int | None = None, source: str | None = None, protocol: str | None = None,
                        device: str | None = None, workers: int | None = None, root: Path | None = None,
                        sets: list[str] | None = None, out_dir: Path | None = None) -> dict:
    loaded = load_checkpoint_model(checkpoint, method=method, dataset=dataset, fold=fold, source=source,
                                   protocol=protocol, device=device, workers=workers, root=root, sets=sets)
    spec, manifest, report, dev = loaded.spec, loaded.manifest, loaded.report, loaded.device
    test = manifest.split("test")
    metrics, preds = evaluate_records(loaded, test)
    metrics["ci"] = metric_intervals(preds["labels"], preds["video_scores"].argmax(1), len(manifest.classes))
    out_dir = out_dir or Path("results") / "evals" / f"{spec.method}-{spec.dataset}-f{spec.fold or 0}-{report.sha256[:8]}"
    save_predictions(out_dir / "predictions.npz", preds, manifest.classes)
    result = {"kind": "eval", "created_at": now_iso(), "checkpoint": str(checkpoint),
              "checkpoint_sha256": report.sha256, "method": spec.method, "dataset": spec.dataset, "fold": spec.fold,
              "spec": spec.to_dict(), "load_report": report.record(), "metrics": metrics,
              "env": {**environment(dev), "manifest_sha256": manifest.checksum()}, "out_dir": str(out_dir)}
    atomic_write_json(out_dir / "eval.json", result)
    torch.set_grad_enabled(True)
    return result
