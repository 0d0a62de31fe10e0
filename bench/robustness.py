"""Beyond the clean test split: a trained run evaluated on corrupted test clips (`bench eval --run RUN --corrupt`)
and on another dataset's test split through a class mapping (`bench eval --run RUN --on DATASET`).

Corruptions (bench/data/corruptions.py) are applied to every test view inside the data path, after resize and
centre crop and before normalisation, deterministically per (video, corruption, severity), so every method sees
the same corrupted clips. Each (corruption, severity) writes `<run>/corruptions/<name>-s<severity>/eval.json` and
`predictions.npz` atomically; the clean reference is evaluated the same way (`corruptions/clean`) from the same
checkpoint; an evaluation already written is skipped, so an interrupted suite resumes. The model is the run's
selected one (`checkpoints/best.pt` when the run selected an epoch, else `last.pt`).

Cross-corpus: the model's classes are mapped to the target's by emotion name (`CANONICAL`: anger = angry,
happiness = happy, sadness = sad; DFEW, FERV39k and MAFW share the seven basic classes), or by a user's mapping
file (YAML `model class: target class`). Every model class must have a target (else one line refuses the
mapping); target clips of classes no model class maps to (MAFW's contempt, anxiety, helplessness,
disappointment) are left out and counted. Results go to `<run>/cross/<target>-<fold>-<options>/` and are
reported as `SOURCE -> TARGET`, apart from in-domain rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from bench.data import corruptions as C
from bench.errors import BenchError
from bench.registry import DATASETS
from bench.stats import metric_intervals
from bench.store import atomic_write_json, now_iso, writable_dir

CANONICAL = {"anger": "angry", "happiness": "happy", "sadness": "sad", "surprised": "surprise",
             "disgusted": "disgust", "fearful": "fear", "happy": "happy", "sad": "sad", "angry": "angry",
             "neutral": "neutral", "surprise": "surprise", "disgust": "disgust", "fear": "fear"}


def run_checkpoint(run: Path) -> Path:
    """The run's selected model: best.pt when an epoch was selected (best on val / test), else last.pt."""
    run = Path(run)
    if not (run / "result.json").is_file():
        raise BenchError(f"{run}: not a completed run directory (no result.json); pass --run <run dir>")
    result = json.loads((run / "result.json").read_text())
    selection = (result.get("protocol") or {}).get("selection", "last")
    for name in (("best.pt", "last.pt") if selection != "last" else ("last.pt",)):
        if (run / "checkpoints" / name).is_file():
            return run / "checkpoints" / name
    raise BenchError(f"{run}/checkpoints: no checkpoint kept (curated example runs ship without them); re-run the "
                     "run's command to get one")


def corruption_hook(name: str, severity: int) -> Callable:
    """A view hook for ClipDataset: the corruption of one test view, keyed by its video id."""
    return _Hook(name, severity)


class _Hook:
    def __init__(self, name: str, severity: int):
        self.name, self.severity = name, severity

    def __call__(self, x, record=None):
        return C.corrupt(x[None], [record.clip_id], self.name, self.severity)[0]


def _save(out: Path, loaded, metrics: dict, preds: dict, extra: dict) -> dict:
    from bench.evaluate import save_predictions

    labels, pred = preds["labels"], preds["video_scores"].argmax(1)
    metrics["ci"] = metric_intervals(labels, pred, preds["video_scores"].shape[1])
    save_predictions(out / "predictions.npz", preds, extra.get("classes", loaded.manifest.classes))
    result = {"kind": "eval", "created_at": now_iso(), "method": loaded.spec.method, "dataset": loaded.spec.dataset,
              "fold": loaded.spec.fold, "run_id": loaded.spec.run_id, "checkpoint_sha256": loaded.report.sha256,
              "metrics": metrics, **{k: v for k, v in extra.items() if k != "classes"}}
    atomic_write_json(out / "eval.json", result)
    return result


def evaluate_corruptions(run: Path, items: list[tuple[str, int]], *, device: str | None = None,
                         workers: int | None = None, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Clean + every (corruption, severity) of `items` on the run's test split; existing results are kept."""
    from bench.evaluation_cli import evaluate_records, load_checkpoint_model
    from bench.lock import RunLock

    run = Path(run)
    ckpt = run_checkpoint(run)
    out_root = writable_dir(run / "corruptions", flag="--run")
    todo = [("clean", 0)] + list(items)
    done = []
    with RunLock(out_root):
        loaded = None
        for name, severity in todo:
            out = out_root / (name if name == "clean" else f"{name}-s{severity}")
            if (out / "eval.json").is_file():
                done.append(json.loads((out / "eval.json").read_text()))
                continue
            if loaded is None:
                loaded = load_checkpoint_model(ckpt, device=device, workers=workers)
            if progress:
                progress(f"{name}" + (f" severity {severity}" if severity else ""))
            records = loaded.manifest.split("test")
            hook = None if name == "clean" else corruption_hook(name, severity)
            metrics, preds = evaluate_records(loaded, records, view_hook=hook, desc=name)
            done.append(_save(out, loaded, metrics, preds, {
                "corruption": name, "severity": severity, "family": C.FAMILIES.get(name, "clean"),
                "checkpoint": str(ckpt)}))
    return done


# ----------------------------------------------------------------------------------------------------------
# cross-corpus


def load_mapping(path: Path, model_classes: tuple[str, ...], target_classes: tuple[str, ...]) -> dict[str, str]:
    try:
        blob = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise BenchError(f"{path}: not a readable YAML mapping ({type(e).__name__}); write `model class: target class`"
                         " lines") from None
    if not isinstance(blob, dict):
        raise BenchError(f"{path}: expected `model class: target class` lines")
    for k, v in blob.items():
        if str(k) not in model_classes:
            raise BenchError(f"{path}: unknown model class {k!r}; the model's classes are {', '.join(model_classes)}")
        if str(v) not in target_classes:
            raise BenchError(f"{path}: unknown target class {v!r}; the target's classes are "
                             f"{', '.join(target_classes)}")
    return {str(k): str(v) for k, v in blob.items()}


def class_mapping(model_classes: tuple[str, ...], target_classes: tuple[str, ...],
                  user: dict[str, str] | None = None) -> dict[str, str]:
    """model class -> target class, by canonical emotion name (or the user's file); refuses a model class with no
    target."""
    if user is not None:
        mapping = dict(user)
    else:
        by_canon = {CANONICAL.get(t.lower(), t.lower()): t for t in target_classes}
        mapping = {m: by_canon[CANONICAL.get(m.lower(), m.lower())] for m in model_classes
                   if CANONICAL.get(m.lower(), m.lower()) in by_canon}
    missing = [m for m in model_classes if m not in mapping]
    if missing:
        raise BenchError(f"the mapping leaves the model's class(es) {', '.join(missing)} without a target class; give "
                         "--mapping FILE with a `model class: target class` line for each")
    return mapping


def evaluate_on(run: Path, dataset: str, fold: int | None = None, options: dict | None = None,
                mapping_file: Path | None = None, *, device: str | None = None, workers: int | None = None,
                root: str | None = None) -> dict:
    """The run's model on another dataset's test split through a class mapping; written beside the run."""
    from bench.data.loader import ClipDataset
    from bench.data.roots import resolve_root
    from bench.evaluate import aggregate, predict_views
    from bench.evaluation_cli import load_checkpoint_model
    from bench.lock import RunLock
    from bench.metrics import compute_metrics

    run = Path(run)
    ckpt = run_checkpoint(run)
    dinfo = DATASETS.get(dataset)
    fold = fold if fold is not None else dinfo.folds[0]
    if fold not in dinfo.folds:
        raise BenchError(f"{dataset} has folds {', '.join(map(str, dinfo.folds))}, not {fold}; pass --fold")
    options = dict(options or {})
    loaded = load_checkpoint_model(ckpt, device=device, workers=workers)
    source = loaded.spec.dataset
    target = dinfo.build_manifest(resolve_root(dinfo, root)[0], fold, options)
    model_classes = tuple(loaded.manifest.classes)
    user = load_mapping(mapping_file, model_classes, target.classes) if mapping_file else None
    mapping = class_mapping(model_classes, target.classes, user)
    kept = [t for t in target.classes if t in mapping.values()]
    records = [r for r in target.split("test") if target.classes[r.label] in kept]
    excluded = len(target.split("test")) - len(records)
    key = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:8]
    out = writable_dir(run / "cross" / f"{dataset}-f{fold if fold is not None else 0}-{key}", flag="--run")
    with RunLock(out):
        ds = ClipDataset(target, records, loaded.spec.data, train=False, seed=loaded.spec.seed)
        preds = predict_views(loaded.model, ds, batch_size=loaded.spec.train.batch_size, workers=loaded.spec.data.workers,
                              device=loaded.device, precision=loaded.spec.train.precision)
        scores = aggregate(preds, len(records), loaded.spec.data.aggregate)
        to_target = np.array([kept.index(mapping[m]) for m in model_classes])
        pred = to_target[scores.argmax(1)]
        labels = np.array([kept.index(target.classes[r.label]) for r in records])
        metrics = compute_metrics(labels, pred, kept)
        mapped_scores = np.full((len(records), len(kept)), -np.inf)
        for i, m in enumerate(model_classes):  # a target class's score: the best of the model classes mapped to it
            j = kept.index(mapping[m])
            mapped_scores[:, j] = np.maximum(mapped_scores[:, j], scores[:, i])
        preds.update({"video_ids": np.array([r.clip_id for r in records]), "labels": labels,
                      "video_scores": mapped_scores})
        return _save(out, loaded, metrics, preds, {
            "classes": kept, "cross": {"source": source, "target": dataset, "fold": fold, "options": options,
                                       "mapping": mapping, "excluded_clips": excluded,
                                       "mapping_file": str(mapping_file) if mapping_file else None},
            "checkpoint": str(ckpt)})
